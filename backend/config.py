"""Configuration: defaults, then the environment, then the test dict (Flask tutorial order).

Only :func:`load_environment` picks the app's variables, and only when the app is created,
out of the process environment laid over the ``.env`` file (:func:`environment_with_env_file`,
the one reader of ``.env`` for every entry point). Every variable is listed in ``.env.example``.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, MutableMapping
from pathlib import Path
from typing import Any

from reminders.data.retention import (
    DELIVERY_DETAILS_DAYS,
    MIN_DELIVERY_DETAILS_DAYS,
    UNKNOWN_SENDER_SMS_DAYS,
)

#: Environment variables the app reads, with a short description (``.env.example`` mirrors it).
ENVIRONMENT_VARIABLES: dict[str, str] = {
    "DATABASE_URL": "SQLAlchemy URL; default sqlite file instance/companion.sqlite3",
    "SECRET_KEY": "signs session cookies and CSRF tokens",
    "PUBLIC_BASE_URL": "public https base URL (Twilio signature checks, status callbacks)",
    "DEFAULT_REGION": "region for national phone numbers, e.g. BE or US",
    "SMS_BACKEND": "console (default) or twilio",
    "TWILIO_ACCOUNT_SID": "Twilio account SID",
    "TWILIO_AUTH_TOKEN": "Twilio auth token (also verifies webhook signatures)",
    "TWILIO_FROM_NUMBER": "sending number in E.164",
    "TWILIO_MESSAGING_SERVICE_SID": "messaging service SID (instead of a from number)",
    "TWILIO_VOICE_FROM_NUMBER": "caller number of on-call page calls (default: the from number)",
    "TWILIO_API_BASE_URL": "self-hosted Twilio-compatible endpoint (tests, staging)",
    "TWILIO_TIMEOUT_SECONDS": "timeout of every request to Twilio",
    "DISPATCH_LEASE_SECONDS": "a message claimed longer ago than this by a dispatcher that "
    "never recorded its outcome is checked with Twilio and retried (default 120)",
    "DATABASE_CONNECT_TIMEOUT_SECONDS": "PostgreSQL: give up a connection attempt after this "
    "long (an unreachable server is then a 503, not a hung request; default 10)",
    "SESSION_COOKIE_SECURE": "1 to send the session cookie over https only (default 1)",
    "DEMO_DATA": "1 to create a demo team, user and patient when the database is empty",
    "MAX_CONTENT_LENGTH": "largest request body in bytes; larger ones get 413 (default 1048576)",
    "MAX_JSON_DEPTH": "deepest nesting of a JSON body; deeper ones get 400 (default 32)",
    "TRUSTED_PROXY_COUNT": "reverse proxies in front of the app whose X-Forwarded-For and "
    "X-Forwarded-Proto are trusted (default 0: the headers are ignored)",
    "API_TOKEN_LIFETIME_DAYS": "days a new API token works unless its creator picks another "
    "lifetime (default 90, at most 365)",
    "DEPLOYMENT": "production (default) or development: `doctor` accepts the development "
    "secret and http only in development, whose logs default to text",
    "LOG_FORMAT": "json (one object per line; default outside development) or text",
    "LOG_LEVEL": "lowest level logged: DEBUG, INFO (default), WARNING or ERROR",
    "READINESS_TIMEOUT_SECONDS": "/readyz gives up on the database after this long (default 2)",
    "UNKNOWN_SENDER_SMS_RETENTION_DAYS": "days an SMS from a number no patient has is kept, "
    "then deleted (default 30)",
    "DELIVERY_DETAILS_RETENTION_DAYS": "days the delivery details of a sent SMS (number, "
    "provider id and status, error) are kept, then cleared (default 90, at least 7)",
    "METRICS_TOKEN": "bearer token Prometheus sends to read /metrics (at least 32 characters)",
    "METRICS_ALLOWED_NETWORKS": "CIDRs, comma-separated, that may read /metrics without the "
    "token (/metrics is a 404 while neither this nor METRICS_TOKEN is set)",
    "PROMETHEUS_MULTIPROC_DIR": "directory where every process writes its metrics "
    "(prometheus_client's multiprocess mode); set it in the process environment, not .env",
}

_BOOLEAN_KEYS = {"SESSION_COOKIE_SECURE", "DEMO_DATA"}
# TWILIO_TIMEOUT_SECONDS is not among them: ``reminders.gateways.gateway_from_config``
# parses and checks it, in one place, with a message naming the variable.
_FLOAT_KEYS = {
    "DISPATCH_LEASE_SECONDS",
    "DATABASE_CONNECT_TIMEOUT_SECONDS",
    "READINESS_TIMEOUT_SECONDS",
}
_INT_KEYS = {
    "MAX_CONTENT_LENGTH",
    "MAX_JSON_DEPTH",
    "TRUSTED_PROXY_COUNT",
    "API_TOKEN_LIFETIME_DAYS",
    "UNKNOWN_SENDER_SMS_RETENTION_DAYS",
    "DELIVERY_DETAILS_RETENTION_DAYS",
}

#: The values of ``DEPLOYMENT``.
PRODUCTION = "production"
DEVELOPMENT = "development"
DEPLOYMENTS = (PRODUCTION, DEVELOPMENT)
#: The values of ``LOG_FORMAT`` and ``LOG_LEVEL``.
LOG_FORMATS = ("json", "text")
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")

#: The longest lifetime an API token may have, in days (a leaked token stops working
#: within a year at most; ``API_TOKEN_LIFETIME_DAYS`` and every creator's choice are capped).
MAX_API_TOKEN_LIFETIME_DAYS = 365


def default_config(instance_path: str) -> dict[str, Any]:
    """The embedded defaults: a SQLite file under ``instance/`` and SMS printed to the console."""
    return {
        "SECRET_KEY": "dev-only-secret-change-me",
        "DATABASE_URL": f"sqlite:///{os.path.join(instance_path, 'companion.sqlite3')}",
        "PUBLIC_BASE_URL": "http://127.0.0.1:5000",
        "DEFAULT_REGION": "BE",
        "SMS_BACKEND": "console",
        "TWILIO_ACCOUNT_SID": None,
        "TWILIO_AUTH_TOKEN": None,
        "TWILIO_FROM_NUMBER": None,
        "TWILIO_MESSAGING_SERVICE_SID": None,
        "TWILIO_VOICE_FROM_NUMBER": None,
        "TWILIO_API_BASE_URL": None,
        "TWILIO_TIMEOUT_SECONDS": None,  # reminders.gateways.DEFAULT_TWILIO_TIMEOUT
        "DISPATCH_LEASE_SECONDS": 120.0,
        # Below gunicorn's 30 s worker timeout, above a busy server's slow accept.
        "DATABASE_CONNECT_TIMEOUT_SECONDS": 10.0,
        "SESSION_COOKIE_SECURE": True,
        "SESSION_COOKIE_HTTPONLY": True,
        "SESSION_COOKIE_SAMESITE": "Lax",
        "DEMO_DATA": False,
        "API_PAGE_SIZE_MAX": 200,
        "JSON_SORT_KEYS": False,
        # Software limits (operating choices, not clinical numbers): the largest legitimate
        # request is a care-team form or a 1,600-character SMS; nothing nests deeper than a
        # plan's options. See backend.hardening.
        "MAX_CONTENT_LENGTH": 1024 * 1024,
        "MAX_JSON_DEPTH": 32,
        # The client address (sign-in throttling) is the socket's peer unless the operator
        # says how many proxies stand in front: a header anyone can send is not trusted.
        "TRUSTED_PROXY_COUNT": 0,
        # A quarter: long enough for an integration, short enough that a forgotten or
        # leaked token stops working on its own (see backend.services.tokens).
        "API_TOKEN_LIFETIME_DAYS": 90,
        # Production unless told otherwise: a forgotten setting must make `doctor` stricter,
        # never laxer. scripts/run says development.
        "DEPLOYMENT": PRODUCTION,
        "LOG_FORMAT": None,  # json, or text in development (check_config decides)
        "LOG_LEVEL": "INFO",
        # A load balancer probes every few seconds and waits about as long: an answer in
        # 2 s, even from a server that does not answer, keeps the probe meaningful.
        "READINESS_TIMEOUT_SECONDS": 2.0,
        # Retention (reminders.data.retention, which says why these periods): SMS from
        # unknown numbers deleted after 30 days, delivery details of sent SMS after 90.
        "UNKNOWN_SENDER_SMS_RETENTION_DAYS": UNKNOWN_SENDER_SMS_DAYS,
        "DELIVERY_DETAILS_RETENTION_DAYS": DELIVERY_DETAILS_DAYS,
        # /metrics is off until one of them is set (backend.metrics_endpoint).
        "METRICS_TOKEN": None,
        "METRICS_ALLOWED_NETWORKS": None,
        "PROMETHEUS_MULTIPROC_DIR": None,
    }


def load_environment(environ: Mapping[str, str]) -> dict[str, Any]:
    """Pick the known variables out of ``environ``, converting booleans and numbers."""
    values: dict[str, Any] = {}
    for key in ENVIRONMENT_VARIABLES:
        raw = environ.get(key)
        if raw is None or raw == "":
            continue
        if key in _BOOLEAN_KEYS:
            values[key] = raw.strip().lower() in {"1", "true", "yes", "on"}
        elif key in _FLOAT_KEYS:
            values[key] = float(raw)
        elif key in _INT_KEYS:
            values[key] = int(raw)
        else:
            values[key] = raw
    return values


#: The file of local settings, in the directory the process starts in (the repository root
#: for scripts/run, the Procfile's processes and gunicorn).
ENV_FILE_NAME = ".env"

# KEY=VALUE with an optional "export " (shell-compatible files), the key a shell name.
_ENV_LINE = re.compile(r"^(?:export\s+)?([A-Za-z_][A-Za-z0-9_]*)\s*=\s*(.*)$")


def read_env_file(path: Path) -> dict[str, str]:
    """The ``KEY=VALUE`` lines of a ``.env`` file; ``{}`` when there is no such file.

    Blank lines and lines starting with ``#`` are skipped, and so is a comment after an
    unquoted value (whitespace then ``#``); a value wrapped in matching single or double
    quotes loses them and is kept whole; nothing is expanded. Raises ValueError naming the
    file and the number of a line that is not an assignment (never its text: it may be a
    secret).
    """
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}
    values: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        match = _ENV_LINE.match(stripped)
        if match is None:
            raise ValueError(f"{path}, line {number}: expected KEY=VALUE")
        key, value = match.group(1), match.group(2).strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        else:
            # "KEY=value  # why" as in shell files; a "#" inside a value (a secret) stays.
            value = re.split(r"\s+#", value, maxsplit=1)[0]
        values[key] = value
    return values


def environment_with_env_file(environ: Mapping[str, str], directory: Path) -> dict[str, str]:
    """``environ`` laid over the ``.env`` file of ``directory``: a variable set in the process
    environment wins, so an operator's or a platform's setting is never silently replaced.

    The only reader of ``.env``: :func:`backend.create_app` calls it for the web app, every
    ``flask`` command (the clock and the dispatchers too) and gunicorn. Flask's own loader
    is switched off (``FLASK_SKIP_DOTENV=1``), and so is honcho's (``--env /dev/null``), so
    that no process reads the file another way.
    """
    return {**read_env_file(directory / ENV_FILE_NAME), **environ}


def in_development(config: Mapping[str, Any]) -> bool:
    """True when ``DEPLOYMENT`` says this is a developer's machine."""
    return config.get("DEPLOYMENT") == DEVELOPMENT


def check_config(config: MutableMapping[str, Any]) -> None:
    """Refuse settings the app cannot run with, naming the variable (at start-up, not later).

    Also settles ``LOG_FORMAT`` when it is not set (text in development, else json).
    Raises ValueError.
    """
    if config.get("DEPLOYMENT") not in DEPLOYMENTS:
        raise ValueError(
            f"DEPLOYMENT must be one of {', '.join(DEPLOYMENTS)}, got {config.get('DEPLOYMENT')!r}"
        )
    if not config.get("LOG_FORMAT"):
        config["LOG_FORMAT"] = "text" if in_development(config) else "json"
    if config["LOG_FORMAT"] not in LOG_FORMATS:
        raise ValueError(
            f"LOG_FORMAT must be one of {', '.join(LOG_FORMATS)}, got {config['LOG_FORMAT']!r}"
        )
    config["LOG_LEVEL"] = str(config.get("LOG_LEVEL") or "INFO").upper()
    if config["LOG_LEVEL"] not in LOG_LEVELS:
        raise ValueError(f"LOG_LEVEL must be one of {', '.join(LOG_LEVELS)}")
    timeout = config.get("READINESS_TIMEOUT_SECONDS")
    if not isinstance(timeout, int | float) or isinstance(timeout, bool) or timeout <= 0:
        raise ValueError(f"READINESS_TIMEOUT_SECONDS must be a positive number, got {timeout!r}")
    days = config.get("API_TOKEN_LIFETIME_DAYS")
    if (
        not isinstance(days, int)
        or isinstance(days, bool)
        or not (1 <= days <= MAX_API_TOKEN_LIFETIME_DAYS)
    ):
        raise ValueError(
            f"API_TOKEN_LIFETIME_DAYS must be a whole number of days from 1 to "
            f"{MAX_API_TOKEN_LIFETIME_DAYS}, got {days!r}"
        )
    _check_days(config, "UNKNOWN_SENDER_SMS_RETENTION_DAYS", 1)
    _check_days(config, "DELIVERY_DETAILS_RETENTION_DAYS", MIN_DELIVERY_DETAILS_DAYS)


def _check_days(config: Mapping[str, Any], key: str, minimum: int) -> None:
    """Refuse a retention period that is not a whole number of days of at least ``minimum``."""
    days = config.get(key)
    if not isinstance(days, int) or isinstance(days, bool) or days < minimum:
        raise ValueError(f"{key} must be a whole number of days, at least {minimum}, got {days!r}")
