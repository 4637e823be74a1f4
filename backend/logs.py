"""Logs of the web app, the clock and the dispatchers: one line per record, JSON or text.

``LOG_FORMAT=json`` (the default outside development) writes one JSON object per line:
``timestamp`` (UTC, ISO 8601), ``level``, ``logger``, ``message``, ``pid``, the
``request_id`` of a web request or the ``job_id`` of a clock job or dispatcher pass
(:mod:`reminders.logcontext`), and ``exception`` when there is a traceback.
``LOG_FORMAT=text`` is for a developer's console. Both go to stderr, installed on the root
logger by :func:`init_app` when the app is created (never for tests, whose logs pytest
captures: they install the formatter themselves).

The code never logs a phone number, an SMS text, a name or a lab value; as a safety net,
both formatters replace anything shaped like an international phone number, the token
of a calendar feed link (``/calendar/<token>.ics``, a credential) in any path, and the
values of any query string (a dashboard search may be a name), in the message and in
the traceback (:func:`redact`). The werkzeug development server's
request lines and gunicorn's (``gunicorn.conf.py``) go through the same formatters.

Each web request gets an id: a sane ``X-Request-ID`` from the client or the proxy in
front, else a new one; the answer carries it back in ``X-Request-ID``.
"""

from __future__ import annotations

import json
import logging
import re
import sys
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from flask import Flask
from flask.logging import default_handler
from werkzeug.wsgi import ClosingIterator

from backend.config import check_config, default_config, environment_with_env_file, load_environment
from reminders import logcontext

#: A phone number in international form, as people and libraries write it: "+", a
#: country code, then digits with optional spaces, dots, dashes or brackets; also
#: URL-encoded ("%2B32..."), as in a query string or a form body. At least 8 digits, so
#: that "+1 day" or a version number is left alone.
_PHONE = re.compile(r"(?:\+|%2[bB])[1-9](?:[\s.\-()/]{0,2}\d){7,14}")
#: The token of a calendar feed link in a path (backend.calendar_feed).
_CALENDAR_TOKEN = re.compile(r"(/calendar/)[^/\s?#\"']+(\.ics)")
#: A path or URL with a query string: the values go (a dashboard search may be a name,
#: a sign-in redirect's ``next`` holds another query), the parameters' names stay. The
#: request lines of werkzeug and gunicorn, and the referrer in gunicorn's, are such.
_QUERY = re.compile(r"(/[^\s?#\"']*)\?([^\s#\"']*)")
#: Terminal colours (werkzeug colours its request lines on a terminal).
_ANSI = re.compile(r"\x1b\[[0-9;]*m")

PHONE_MASK = "[phone]"
TOKEN_MASK = "[token]"


def redact(text: str) -> str:
    """``text`` without phone-number-like strings, calendar tokens, query-string values or
    terminal colours."""
    text = _PHONE.sub(PHONE_MASK, text)
    text = _CALENDAR_TOKEN.sub(rf"\g<1>{TOKEN_MASK}\g<2>", text)
    text = _QUERY.sub(_query_names, text)
    return _ANSI.sub("", text)


def _query_names(match: re.Match[str]) -> str:
    names = (part.partition("=")[0] for part in match.group(2).split("&") if part)
    return f"{match.group(1)}?{'&'.join(names)}"


class JsonFormatter(logging.Formatter):
    """One JSON object per line (non-ASCII kept as is), redacted (:func:`redact`)."""

    def format(self, record: logging.LogRecord) -> str:
        """The record as one line of JSON."""
        entry: dict[str, Any] = {
            "timestamp": datetime.fromtimestamp(record.created, UTC).isoformat(
                timespec="milliseconds"
            ),
            "level": record.levelname,
            "logger": record.name,
            "message": redact(record.getMessage()),
            "pid": record.process,
        }
        log_id = logcontext.current_id()
        if log_id is not None:
            entry[f"{log_id.kind}_id"] = log_id.value
        if record.exc_info:
            entry["exception"] = redact(self.formatException(record.exc_info))
        elif record.exc_text:
            entry["exception"] = redact(record.exc_text)
        if record.stack_info:
            entry["stack"] = redact(self.formatStack(record.stack_info))
        return json.dumps(entry, ensure_ascii=False, default=str)


class TextFormatter(logging.Formatter):
    """``time LEVEL logger [id]: message`` for a developer's console, redacted too."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s%(log_id)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        """The record as text (a traceback on the lines after it)."""
        log_id = logcontext.current_id()
        record.log_id = f" [{log_id.value}]" if log_id is not None else ""
        return redact(super().format(record))


#: Loggers whose INFO lines say nothing to an operator: Alembic names each of its
#: plugins whenever a process imports it (every start).
QUIETED_LOGGERS = ("alembic.runtime.plugins",)


class CompanionHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """The handler :func:`install_logging` puts on the root logger (found again by its class)."""


def formatter_for(log_format: str) -> logging.Formatter:
    """The formatter ``LOG_FORMAT`` names (``backend.config.check_config`` checked the name)."""
    return TextFormatter() if log_format == "text" else JsonFormatter()


def install_logging(log_format: str, level: str | int = logging.INFO, stream: Any = None) -> None:
    """Send every record of the process to ``stream`` (stderr) in ``log_format``, from ``level``.

    Replaces the handler an earlier call installed (an app created twice in one process
    logs each line once), and leaves other handlers where they are.
    """
    root = logging.getLogger()
    for handler in [h for h in root.handlers if isinstance(h, CompanionHandler)]:
        root.removeHandler(handler)
    handler = CompanionHandler(stream if stream is not None else sys.stderr)
    handler.setFormatter(formatter_for(log_format))
    root.addHandler(handler)
    root.setLevel(level)
    for name in QUIETED_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)


#: An incoming ``X-Request-ID`` is kept when it looks like an id (a proxy's or a load
#: balancer's, so one request's lines can be followed through both): letters, digits and
#: ``._:-``, at most 128 characters. Anything else (a line break, a name) is replaced.
_SANE_REQUEST_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:\-]{0,127}")

REQUEST_ID_HEADER = "X-Request-ID"


def request_id_from(header: str | None) -> str:
    """The id of a request: its ``X-Request-ID`` when sane (and no phone number), else new."""
    if header and _SANE_REQUEST_ID.fullmatch(header) and redact(header) == header:
        return header
    return logcontext.new_id()


class RequestIdMiddleware:
    """WSGI middleware: each request's id is current while it runs, and sent back.

    Around the whole app (not in ``before_request``), so that a request refused before
    any view (413, a 503 during an outage) still logs with its id.
    """

    def __init__(self, wsgi_app: Callable[..., Iterable[bytes]]) -> None:
        self.wsgi_app = wsgi_app

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        """Run the request with its id current; add ``X-Request-ID`` to the answer."""
        request_id = request_id_from(environ.get("HTTP_X_REQUEST_ID"))

        def start_with_id(status: str, headers: list[tuple[str, str]], *exc_info: Any) -> Any:
            kept = [(k, v) for k, v in headers if k.lower() != REQUEST_ID_HEADER.lower()]
            return start_response(status, [*kept, (REQUEST_ID_HEADER, request_id)], *exc_info)

        token = logcontext.enter("request", request_id)
        try:
            body = self.wsgi_app(environ, start_with_id)
        except BaseException:
            logcontext.leave(token)
            raise
        return ClosingIterator(body, [lambda: logcontext.leave(token)])


def gunicorn_logconfig(environ: Mapping[str, str], directory: Path) -> dict[str, Any]:
    """gunicorn's ``logconfig_dict`` (``gunicorn.conf.py``): its own lines, the access log
    included, through the app's handler and formatter, in the configured format.

    The master process reads the configuration as the app will (``.env`` of ``directory``
    under ``environ``), before any app exists; each worker's app then installs the same.
    """
    config = {
        **default_config("instance"),
        **load_environment(environment_with_env_file(environ, directory)),
    }
    check_config(config)
    formatter = TextFormatter if config["LOG_FORMAT"] == "text" else JsonFormatter
    through_root = {"level": "INFO", "handlers": [], "propagate": True}
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "root": {"level": config["LOG_LEVEL"], "handlers": ["companion"]},
        "loggers": {"gunicorn.error": through_root, "gunicorn.access": through_root},
        "handlers": {
            "companion": {
                "class": f"{__name__}.{CompanionHandler.__name__}",
                "formatter": "companion",
                "stream": "ext://sys.stderr",
            }
        },
        "formatters": {"companion": {"()": f"{__name__}.{formatter.__name__}"}},
    }


def init_app(app: Flask) -> None:
    """Give every request an id; outside tests, install the configured log format."""
    app.wsgi_app = RequestIdMiddleware(app.wsgi_app)  # type: ignore[method-assign]
    if app.testing:
        return  # pytest captures the records; the tests install the formatter themselves
    install_logging(app.config["LOG_FORMAT"], app.config["LOG_LEVEL"])
    # Flask's own handler on the app's logger would write each of its lines a second time.
    app.logger.removeHandler(default_handler)
