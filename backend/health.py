"""``/healthz`` and ``/readyz``: is the process alive, and can it do its work.

* ``GET /healthz``: 200 as long as the process answers; touches nothing else (a load
  balancer or an orchestrator restarts a process that stops answering this).
* ``GET /readyz``: 200 when the database answers (one connection, a version look-up,
  within ``READINESS_TIMEOUT_SECONDS``), its migrations are at the scripts' head, and the
  SMS gateway is configured (the console gateway only in development); 503 otherwise.
  The JSON body names each check and what failed, never a secret, a host name or patient
  data (the driver's reason for an outage goes to the log, in one line).

Both are on a blueprint of their own: no sign-in, no CSRF (GET only), no throttling,
nothing stored (``Cache-Control: no-store``). The readiness check opens a new connection
each time (no pool): a pooled connection would answer even when no new one can be made
(a SQLite file moved away, a server refusing connections).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from alembic.script import ScriptDirectory
from flask import Blueprint, Flask, Response, current_app, jsonify
from sqlalchemy import inspect, text
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.pool import NullPool

from backend.config import in_development
from reminders.data.db import database_unavailable, make_engine, outage_reason

logger = logging.getLogger(__name__)

bp = Blueprint("health", __name__)

NO_STORE = {"Cache-Control": "no-store"}
#: Alembic's table of applied revisions (its default name; ``backend/migrations/env.py``
#: keeps it).
VERSION_TABLE = "alembic_version"


@dataclass(frozen=True)
class Check:
    """One readiness check: its name, whether it passed, and a short public detail."""

    name: str
    ok: bool
    detail: str = "ok"


@dataclass
class ReadinessProbe:
    """What ``/readyz`` needs, made once per app: its own engine, and answers that cannot
    change while the process runs (the scripts' head, the gateway's configuration),
    computed on the first probe rather than when the app is created."""

    engine: Engine
    timeout: float
    config: dict[str, Any]
    _fixed: dict[str, Any] = field(default_factory=dict)

    def script_heads(self) -> set[str]:
        """The head revision(s) of the migration scripts this code ships."""
        if "heads" not in self._fixed:
            from backend.migrations import alembic_config

            scripts = ScriptDirectory.from_config(alembic_config(self.config["DATABASE_URL"]))
            self._fixed["heads"] = set(scripts.get_heads())
        return self._fixed["heads"]

    def gateway_check(self) -> Check:
        """The SMS gateway's configuration, checked by the gateway's own factory."""
        if "gateway" not in self._fixed:
            self._fixed["gateway"] = gateway_check(self.config)
        return self._fixed["gateway"]


def gateway_check(config: dict[str, Any]) -> Check:
    """Twilio with what it needs (``gateway_from_config`` decides), or the console in
    development. Its refusals name variables, never their values."""
    from reminders.gateways import gateway_from_config

    try:
        gateway_from_config(config)
    except ValueError as exc:
        return Check("gateway", False, str(exc))
    backend = str(config.get("SMS_BACKEND") or "console").lower()
    if backend == "console" and not in_development(config):
        return Check("gateway", False, "SMS_BACKEND is console outside development: no SMS leave")
    return Check("gateway", True, backend)


@dataclass(frozen=True)
class DatabaseState:
    """What one connection found: the revisions the database is at, or why it failed.

    ``problem`` ("unreachable" or "error") may be shown to anyone; ``reason`` (the
    driver's first line, which names a host and port) goes to the log and the operator.
    """

    revisions: set[str] | None
    problem: str | None = None
    reason: str | None = None


def database_state(probe: ReadinessProbe) -> DatabaseState:
    """Connect once (within the probe's timeout) and read the migration revision."""
    try:
        with probe.engine.connect() as connection:
            if connection.dialect.name == "postgresql":
                milliseconds = max(int(probe.timeout * 1000), 1)
                connection.exec_driver_sql(f"SET statement_timeout = {milliseconds}")
            return DatabaseState(set(current_revisions(connection)))
    except Exception as exc:  # any failure is "not ready", never a 500
        if database_unavailable(exc):
            return DatabaseState(None, "unreachable", outage_reason(exc))
        return DatabaseState(None, "error", type(exc).__name__)


def current_revisions(connection: Connection) -> list[str]:
    """The revisions in Alembic's version table (none before the first migration).

    Read directly: Alembic's ``MigrationContext`` logs two lines each time it is made,
    and a load balancer probes every few seconds.
    """
    if not inspect(connection).has_table(VERSION_TABLE):
        return []
    return list(connection.execute(text(f"SELECT version_num FROM {VERSION_TABLE}")).scalars())


def migration_problem(revisions: set[str], heads: set[str]) -> str | None:
    """What to do when the database is not at the scripts' head, else None."""
    if revisions == heads:
        return None
    found = ", ".join(sorted(revisions)) or "none (never migrated)"
    return f"database at {found}, code at {', '.join(sorted(heads))}: run `db upgrade`"


def database_checks(probe: ReadinessProbe) -> list[Check]:
    """The database answers within the timeout, and its revision is the scripts' head."""
    state = database_state(probe)
    if state.revisions is None:
        logger.warning("readiness: database %s: %s", state.problem, state.reason)
        return [
            Check("database", False, state.problem or "error"),
            Check("migrations", False, "not checked: no database"),
        ]
    heads = probe.script_heads()
    problem = migration_problem(state.revisions, heads)
    if problem is not None:
        return [Check("database", True), Check("migrations", False, problem)]
    return [Check("database", True), Check("migrations", True, ", ".join(sorted(heads)))]


def readiness(probe: ReadinessProbe) -> list[Check]:
    """Every readiness check, in the order an operator fixes them."""
    return [*database_checks(probe), probe.gateway_check()]


@bp.get("/healthz")
def healthz() -> Response:
    """200: the process is alive (nothing else is checked)."""
    response = jsonify({"status": "ok"})
    response.headers.update(NO_STORE)
    return response


@bp.get("/readyz")
def readyz() -> tuple[Response, int]:
    """200 when every readiness check passes, else 503; the body names each check."""
    checks = readiness(current_app.extensions["readiness"])
    failed = [check.name for check in checks if not check.ok]
    body = {
        "status": "unavailable" if failed else "ready",
        "failed": failed,
        "checks": {check.name: {"ok": check.ok, "detail": check.detail} for check in checks},
    }
    response = jsonify(body)
    response.headers.update(NO_STORE)
    return response, 503 if failed else 200


def init_app(app: Flask) -> None:
    """Register the endpoints and the readiness probe's engine (no connection yet)."""
    timeout = float(app.config["READINESS_TIMEOUT_SECONDS"])
    engine = make_engine(app.config["DATABASE_URL"], connect_timeout=timeout, poolclass=NullPool)
    app.extensions["readiness"] = ReadinessProbe(engine, timeout, app.config)
    app.register_blueprint(bp)
