"""The database seen from the web: one engine per app, one session per request.

Engines, job sessions and outage detection live below, in :mod:`reminders.data.db`;
this module only ties them to Flask's app and request context.
"""

from __future__ import annotations

from typing import Any

from flask import Flask, current_app, g, request
from sqlalchemy.engine import Engine
from sqlmodel import Session
from werkzeug.exceptions import NotFound
from werkzeug.routing import IntegerConverter

from reminders.data.db import make_engine, writer
from reminders.data.models import MAX_ID


class DatabaseIdConverter(IntegerConverter):
    """``<int:...>`` in a URL: an id larger than an INTEGER column holds is a 404.

    Werkzeug's own converter takes any number of digits, and a 20-digit id then overflows
    the database driver (a 500) instead of finding nothing. (A ``max`` on the converter
    would answer 405, not 404: Werkzeug counts the other methods' rules as matches.)
    """

    def to_python(self, value: str) -> Any:
        number = super().to_python(value)
        if number > MAX_ID:
            raise NotFound()
        return number


def init_app(app: Flask) -> None:
    """Create the app's engine and close the request session at teardown.

    Also bounds ``<int:...>`` URL ids to what the database holds (routes added later).
    """
    app.url_map.converters["int"] = DatabaseIdConverter
    engine = make_engine(
        app.config["DATABASE_URL"],
        connect_timeout=app.config.get("DATABASE_CONNECT_TIMEOUT_SECONDS"),
    )
    app.extensions["db_engine"] = engine
    # Built once: every webhook is a write, and a new options engine per request is waste.
    app.extensions["db_writer_engine"] = writer(engine)
    app.teardown_appcontext(_close_request_session)


def get_engine(app: Flask | None = None) -> Engine:
    """The engine of ``app`` (default: the current app)."""
    return (app or current_app).extensions["db_engine"]


def get_session() -> Session:
    """The session of the current request (or app context), opened on first use."""
    if "db_session" not in g:
        extensions = current_app.extensions
        reads_only = request.method in ("GET", "HEAD", "OPTIONS")
        engine = extensions["db_engine"] if reads_only else extensions["db_writer_engine"]
        g.db_session = Session(engine, expire_on_commit=False)
    return g.db_session


def _close_request_session(exc: BaseException | None) -> None:
    session: Session | None = g.pop("db_session", None)
    if session is None:
        return
    if exc is not None:
        session.rollback()
    session.close()
