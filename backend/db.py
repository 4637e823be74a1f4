"""The database: one engine per app, one session per request or job.

SQLite runs in WAL mode with a busy timeout so that the web process, the clock
and a dispatcher can share the file; PostgreSQL is reached through psycopg 3
(``postgresql+psycopg://``). Nothing here runs at import time.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from flask import Flask, current_app, g, request
from sqlalchemy import event
from sqlalchemy.engine import Engine
from sqlmodel import Session, create_engine

SQLITE_BUSY_TIMEOUT_MS = 15_000


def make_engine(url: str, **kwargs: Any) -> Engine:
    """Create the engine for ``url``, with SQLite tuned for several processes."""
    # Statement parameters are patient data (phone numbers, SMS text, lab values):
    # keep them out of exception messages and logs.
    kwargs.setdefault("hide_parameters", True)
    if url.startswith("sqlite"):
        engine = create_engine(
            url,
            connect_args={"check_same_thread": False, "timeout": SQLITE_BUSY_TIMEOUT_MS / 1000},
            **kwargs,
        )
        event.listen(engine, "connect", _sqlite_on_connect)
        # pysqlite's own transaction handling defers BEGIN; emitting it ourselves makes
        # SELECT ... then UPDATE atomic and lets "BEGIN IMMEDIATE" claim a write lock.
        event.listen(engine, "begin", _sqlite_on_begin)
        return engine
    kwargs.setdefault("pool_pre_ping", True)
    return create_engine(url, **kwargs)


def _sqlite_on_connect(dbapi_connection: Any, _record: Any) -> None:
    dbapi_connection.isolation_level = None  # autocommit at the driver; SQLAlchemy emits BEGIN
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def _sqlite_on_begin(connection: Any) -> None:
    # A writer starts with BEGIN IMMEDIATE: it takes the write lock at once and so
    # queues on busy_timeout, instead of failing with "database is locked" when a
    # read transaction tries to upgrade after another process wrote. Readers stay
    # DEFERRED so they never block anyone (WAL).
    mode = connection.get_execution_options().get("sqlite_begin", "DEFERRED")
    connection.exec_driver_sql(f"BEGIN {mode}")


def writer(engine: Engine) -> Engine:
    """``engine`` for a unit of work that will write (IMMEDIATE transactions on SQLite)."""
    if engine.dialect.name != "sqlite":
        return engine
    return engine.execution_options(sqlite_begin="IMMEDIATE")


def init_app(app: Flask) -> None:
    """Create the app's engine and close the request session at teardown."""
    engine = make_engine(app.config["DATABASE_URL"])
    app.extensions["db_engine"] = engine
    app.teardown_appcontext(_close_request_session)


def get_engine(app: Flask | None = None) -> Engine:
    """The engine of ``app`` (default: the current app)."""
    return (app or current_app).extensions["db_engine"]


def get_session() -> Session:
    """The session of the current request (or app context), opened on first use."""
    if "db_session" not in g:
        engine = get_engine()
        if request.method not in ("GET", "HEAD", "OPTIONS"):
            engine = writer(engine)
        g.db_session = Session(engine, expire_on_commit=False)
    return g.db_session


def _close_request_session(exc: BaseException | None) -> None:
    session: Session | None = g.pop("db_session", None)
    if session is None:
        return
    if exc is not None:
        session.rollback()
    session.close()


@contextmanager
def session_scope(engine: Engine, *, write: bool = True) -> Iterator[Session]:
    """A session for one job or command: commits on success, rolls back on error."""
    session = Session(writer(engine) if write else engine, expire_on_commit=False)
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


def is_sqlite(engine: Engine) -> bool:
    """True when ``engine`` talks to SQLite (one writer at a time)."""
    return engine.dialect.name == "sqlite"
