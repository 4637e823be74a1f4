"""``/healthz`` and ``/readyz`` with the database up, really down, hung, and behind on migrations.

Issue 16, item 1. The database is migrated with Alembic (the readiness check compares its
revision with the scripts' head), on SQLite and on PostgreSQL. The outage is real: on
PostgreSQL the app reaches the server through a TCP proxy that refuses connections or
accepts them and never answers (``tests/db_proxy.py``); on SQLite the database file's
directory is moved away.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from alembic.script import ScriptDirectory
from flask import Flask
from sqlalchemy.engine import make_url

from backend import create_app
from backend.cli import upgrade_database
from backend.db import get_engine
from backend.health import gateway_check
from backend.migrations import alembic_config
from tests.backend.test_report_rule_ids_migration import migrate
from tests.conftest import POSTGRES_URL, empty_postgres_schema
from tests.db_proxy import DatabaseOutage, TcpProxy
from tests.twilio_fake import FAKE_ACCOUNT_SID, FAKE_AUTH_TOKEN

#: The scripts' head, read from the migrations themselves so that a new one needs no edit here.
HEAD = ScriptDirectory.from_config(alembic_config("sqlite://")).get_current_head()
BEHIND = "0011_patient_region"

#: A production configuration whose gateway is complete (Twilio, well-formed credentials).
TWILIO = {
    "SMS_BACKEND": "twilio",
    "TWILIO_ACCOUNT_SID": FAKE_ACCOUNT_SID,
    "TWILIO_AUTH_TOKEN": FAKE_AUTH_TOKEN,
    "TWILIO_FROM_NUMBER": "+3225550123",
}


@pytest.fixture
def migrated(db_engine_name: str, tmp_path: Path) -> Iterator[DatabaseOutage]:
    """A database of this run's engine migrated to ``BEHIND``, behind an outage switch
    (the app uses its ``url``)."""
    if db_engine_name == "sqlite":
        directory = tmp_path / "database"
        directory.mkdir()
        url = f"sqlite:///{directory / 'ready.sqlite3'}"
        migrate(url, {}, BEHIND)
        yield DatabaseOutage(url, directory=directory)
        return
    with empty_postgres_schema("ready") as schema:
        options = {"options": f"-csearch_path={schema}"}
        migrate(POSTGRES_URL, options, BEHIND)
        server = make_url(POSTGRES_URL)
        proxy = TcpProxy(server.host or "127.0.0.1", server.port or 5432).start()
        through = server.set(host="127.0.0.1", port=proxy.port).update_query_dict(options)
        outage = DatabaseOutage(through.render_as_string(hide_password=False), proxy=proxy)
        try:
            yield outage
        finally:
            outage.close()


def make_app(url: str, tmp_path: Path, **config: Any) -> Flask:
    """The app in production on ``url``, with a complete Twilio configuration by default."""
    app = create_app(
        {
            "TESTING": True,
            "DATABASE_URL": url,
            "SECRET_KEY": "test-secret",
            "PUBLIC_BASE_URL": "https://companion.test",
            "DEPLOYMENT": "production",
            **TWILIO,
            **config,
        }
    )
    app.instance_path = str(tmp_path / "instance")
    return app


def ready(app: Flask) -> tuple[int, dict[str, Any], dict[str, str]]:
    """``GET /readyz`` without credentials: status, JSON body, headers."""
    answer = app.test_client().get("/readyz")
    return answer.status_code, answer.get_json(), dict(answer.headers)


def test_readiness_follows_the_database_up_down_and_back(
    migrated: DatabaseOutage, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    outage = migrated
    app = make_app(outage.url, tmp_path)
    upgrade_database(app)
    get_engine(app).dispose()
    client = app.test_client()

    status, body, headers = ready(app)
    assert status == 200, body
    assert body == {
        "status": "ready",
        "failed": [],
        "checks": {
            "database": {"ok": True, "detail": "ok"},
            "migrations": {"ok": True, "detail": HEAD},
            "gateway": {"ok": True, "detail": "twilio"},
        },
    }
    assert headers["Cache-Control"] == "no-store" and "Set-Cookie" not in headers

    outage.cut(get_engine(app))
    try:
        caplog.clear()
        with caplog.at_level(logging.INFO):
            status, body, headers = ready(app)
        assert status == 503, body
        assert body["status"] == "unavailable"
        assert body["failed"] == ["database", "migrations"]
        assert body["checks"]["database"] == {"ok": False, "detail": "unreachable"}
        assert body["checks"]["gateway"]["ok"] is True
        assert headers["Cache-Control"] == "no-store"
        # The body names no host, port, file or secret; the log has the reason, in one line.
        text = str(body)
        port = make_url(outage.url).port
        for secret in ("127.0.0.1", "sqlite3", FAKE_AUTH_TOKEN, *([str(port)] if port else [])):
            assert secret not in text, text
        warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
        assert len(warnings) == 1 and "readiness: database unreachable" in warnings[0]

        # The process itself is alive: /healthz touches no database.
        alive = client.get("/healthz")
        assert alive.status_code == 200 and alive.get_json() == {"status": "ok"}
        assert alive.headers["Cache-Control"] == "no-store"
    finally:
        outage.restore()

    assert ready(app)[0] == 200  # the same app, no restart


def test_a_database_behind_the_migrations_is_not_ready_until_upgraded(
    migrated: DatabaseOutage, tmp_path: Path
) -> None:
    app = make_app(migrated.url, tmp_path)

    status, body, _ = ready(app)

    assert status == 503 and body["failed"] == ["migrations"], body
    assert body["checks"]["database"]["ok"] is True
    detail = body["checks"]["migrations"]["detail"]
    assert BEHIND in detail and HEAD in detail and "db upgrade" in detail

    upgrade_database(app)
    assert ready(app)[0] == 200


def test_the_gateway_must_be_configured(migrated: DatabaseOutage, tmp_path: Path) -> None:
    url = migrated.url
    configurations: list[tuple[dict[str, Any], str | None]] = [
        ({"SMS_BACKEND": "console"}, "SMS_BACKEND is console outside development"),
        ({"TWILIO_AUTH_TOKEN": None}, "SMS_BACKEND=twilio needs TWILIO_AUTH_TOKEN"),
        (
            {"TWILIO_FROM_NUMBER": None},
            "needs TWILIO_FROM_NUMBER or TWILIO_MESSAGING_SERVICE_SID",
        ),
        ({"SMS_BACKEND": "console", "DEPLOYMENT": "development"}, None),
        ({}, None),
    ]
    app = make_app(url, tmp_path)
    upgrade_database(app)
    for changes, refusal in configurations:
        app = make_app(url, tmp_path, **changes)
        status, body, _ = ready(app)
        if refusal is None:
            assert status == 200, (changes, body)
            continue
        assert status == 503 and body["failed"] == ["gateway"], (changes, body)
        assert refusal in body["checks"]["gateway"]["detail"], (changes, body)
        assert FAKE_AUTH_TOKEN not in str(body)


def test_no_sign_in_no_cookie_no_csrf_and_any_request_id(app: Flask) -> None:
    client = app.test_client()
    for path in ("/healthz", "/readyz"):
        answer = client.get(path, headers={"X-Request-ID": "lb-probe-42"})
        assert answer.status_code in (200, 503), path  # never the sign-in redirect
        assert (
            "Set-Cookie" not in answer.headers and answer.headers["X-Request-ID"] == "lb-probe-42"
        )
        assert client.head(path).status_code in (200, 503)
        assert client.post(path).status_code == 405  # no form, no CSRF to check


@pytest.mark.postgresql_only
def test_a_server_that_never_answers_is_not_ready_within_the_timeout(
    migrated: DatabaseOutage, tmp_path: Path
) -> None:
    outage = migrated
    app = make_app(outage.url, tmp_path, READINESS_TIMEOUT_SECONDS=2.0)
    upgrade_database(app)
    get_engine(app).dispose()
    assert outage.proxy is not None
    outage.proxy.hang()
    try:
        started = time.monotonic()
        status, body, _ = ready(app)
        waited = time.monotonic() - started
    finally:
        outage.proxy.restore()
    assert status == 503 and body["checks"]["database"]["ok"] is False, body
    # libpq's connect_timeout is whole seconds (and at least 2): the answer comes within it.
    assert waited < 5, f"{waited:.1f} s"


def test_the_gateway_check_never_shows_a_credential() -> None:
    check = gateway_check({**TWILIO, "TWILIO_API_BASE_URL": "ftp://twilio.test"})
    assert not check.ok and "TWILIO_API_BASE_URL" in check.detail
    assert FAKE_AUTH_TOKEN not in check.detail and FAKE_ACCOUNT_SID not in check.detail
