"""The database goes away: the web app answers 503 with Retry-After, the CLI says so in one line.

Issue 12, item 7. The outage is real: on PostgreSQL the app reaches the server through a
TCP proxy that drops its connections and refuses new ones (``tests/db_proxy.py``); on
SQLite the database file's directory is moved away. Errors that are not an outage (a
cancelled statement, a missing table) stay 500s: only "unreachable" is a 503.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, date, datetime
from pathlib import Path

import pytest
from flask import Flask
from sqlalchemy import create_engine, text
from sqlalchemy.exc import OperationalError
from sqlmodel import Session

from backend import create_app
from backend.db import get_engine
from backend.schemas import PatientIn, PlanIn
from backend.services.patients import create_patient
from backend.services.plans import start_plan
from backend.services.teams import create_user
from reminders.data.db import database_unavailable
from reminders.data.models import Patient, User
from tests.conftest import bearer, issue_test_token
from tests.db_proxy import DatabaseOutage, database_outage
from tests.twilio_fake import FAKE_AUTH_TOKEN, inbound_sms_params, signed_form_post

NOW = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)
PASSWORD = "correct horse battery"
NAME = "Marie-Françoise Van den Bossche-Lefèvre"
PHONE = "+32 470 12 34 56"
BASE = "https://companion.test"


@pytest.fixture
def outage(db_engine_name: str, database_url: str, tmp_path: Path) -> Iterator[DatabaseOutage]:
    """An outage switch for this run's database engine."""
    with database_outage(db_engine_name, database_url, tmp_path) as outage:
        yield outage


@pytest.fixture
def outage_app(outage: DatabaseOutage, tmp_path: Path) -> Iterator[Flask]:
    """The app on the database behind the outage switch."""
    app = create_app(
        {
            "TESTING": True,
            "DATABASE_URL": outage.url,
            "SECRET_KEY": "test-secret",
            "SESSION_COOKIE_SECURE": False,
            "PUBLIC_BASE_URL": BASE,
            "DEFAULT_REGION": "BE",
            "TWILIO_AUTH_TOKEN": FAKE_AUTH_TOKEN,
        }
    )
    app.instance_path = str(tmp_path / "instance")
    yield app
    get_engine(app).dispose()


@pytest.fixture
def team(outage_app: Flask) -> tuple[User, str, Patient]:
    """A nurse (with a password and an API token) and her patient on alemtuzumab s.c."""
    with Session(get_engine(outage_app), expire_on_commit=False) as session:
        user = create_user(
            session,
            email="nurse@outage.example",
            team_name="Hématologie Saint-Luc",
            role="nurse",
            now=NOW,
            password=PASSWORD,
            care_phone="+32 2 764 11 11",
        )
        # This app has no CLOCK: its requests are checked against the real time.
        token = issue_test_token(session, user, datetime.now(UTC))
        patient = create_patient(
            session,
            user.team_id,
            PatientIn(display_name=NAME, phone=PHONE, sms_consent=True, language="fr"),
            NOW,
            region="BE",
        )
        start_plan(
            session,
            patient,
            PlanIn(regimen_id="alemtuzumab_sc", start_date=date(2026, 3, 2)),
            None,
            NOW,
        )
        session.commit()
    return user, token, patient


def _outage_records(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.levelno >= logging.WARNING]


def _assert_one_clean_line(records: list[logging.LogRecord]) -> None:
    assert len(records) == 1, [r.getMessage() for r in records]
    record = records[0]
    message = record.getMessage()
    assert record.exc_info is None and record.exc_text is None, message
    assert "\n" not in message and "unreachable" in message, message
    for secret in (NAME, PHONE, PHONE.replace(" ", ""), "Lefèvre"):
        assert secret not in message, message


def test_api_answers_503_with_retry_after_and_recovers(
    outage_app: Flask,
    outage: DatabaseOutage,
    team: tuple[User, str, Patient],
    caplog: pytest.LogCaptureFixture,
) -> None:
    _, token, patient = team
    client = outage_app.test_client()
    url = f"/api/v1/patients/{patient.id}"
    assert client.get(url, headers=bearer(token)).status_code == 200

    outage.cut(get_engine(outage_app))
    try:
        for method in ("get", "patch"):
            caplog.clear()
            with caplog.at_level(logging.INFO):
                answer = getattr(client, method)(
                    url, headers=bearer(token), json={"display_name": NAME}
                )
            assert answer.status_code == 503, answer.get_data(as_text=True)[:500]
            assert int(answer.headers["Retry-After"]) > 0
            assert answer.get_json()["error"] == "unavailable"
            _assert_one_clean_line(_outage_records(caplog))
    finally:
        outage.restore()

    # The same app (no restart) serves again once the database is back.
    answer = client.get(url, headers=bearer(token))
    assert answer.status_code == 200 and answer.get_json()["display_name"] == NAME


def test_pages_and_webhooks_answer_503_while_the_database_is_down(
    outage_app: Flask,
    outage: DatabaseOutage,
    team: tuple[User, str, Patient],
    caplog: pytest.LogCaptureFixture,
) -> None:
    from tests.backend.dashboard.conftest import sign_in

    user, _, patient = team
    client = outage_app.test_client()
    assert sign_in(client, user.email).status_code == 302
    assert client.get(f"/patients/{patient.id}").status_code == 200

    outage.cut(get_engine(outage_app))
    try:
        caplog.clear()
        with caplog.at_level(logging.INFO):
            page = client.get(f"/patients/{patient.id}")
        assert page.status_code == 503 and int(page.headers["Retry-After"]) > 0
        text_body = page.get_data(as_text=True)
        assert "Traceback" not in text_body and NAME not in text_body
        _assert_one_clean_line(_outage_records(caplog))

        caplog.clear()
        with caplog.at_level(logging.INFO):
            params = inbound_sms_params(PHONE.replace(" ", ""), "39.6", "+32 2 764 11 11")
            hook = signed_form_post(client, f"{BASE}/twilio/sms", params, FAKE_AUTH_TOKEN)
        assert hook.status_code == 503 and int(hook.headers["Retry-After"]) > 0
        _assert_one_clean_line(_outage_records(caplog))
    finally:
        outage.restore()
    assert client.get(f"/patients/{patient.id}").status_code == 200


def test_only_an_unreachable_database_counts_as_an_outage(
    outage: DatabaseOutage, db_engine_name: str
) -> None:
    engine = create_engine(outage.url)
    try:
        # A statement error on a live database is a bug or a timeout, not an outage.
        with pytest.raises(OperationalError) as not_outage, engine.connect() as conn:
            if db_engine_name == "postgresql":
                conn.execute(text("SET statement_timeout = 1"))
                conn.execute(text("SELECT pg_sleep(1)"))
            else:
                conn.execute(text("SELECT * FROM no_such_table"))
        assert not database_unavailable(not_outage.value)
        assert not database_unavailable(ValueError("unrelated"))

        engine.dispose()
        outage.cut()
        try:
            with pytest.raises(OperationalError) as down, engine.connect() as conn:
                conn.execute(text("SELECT 1"))
        finally:
            outage.restore()
        assert database_unavailable(down.value)
        # Also when wrapped by another error raised while handling it.
        try:
            raise RuntimeError("pass failed") from down.value
        except RuntimeError as wrapped:
            assert database_unavailable(wrapped)
    finally:
        engine.dispose()


@pytest.mark.parametrize(
    "args",
    [
        ["reminders", "run-due", "--now", "2026-03-02T10:00:00Z"],
        ["reminders", "dispatch", "--once"],
        ["demo"],
        ["create-user", "nurse2@outage.example", "--team", "Hématologie Saint-Luc"],
        ["db", "upgrade"],
    ],
    ids=["run-due", "dispatch-once", "demo", "create-user", "db-upgrade"],
)
def test_cli_commands_print_one_line_and_fail(
    outage_app: Flask, outage: DatabaseOutage, args: list[str]
) -> None:
    outage.cut(get_engine(outage_app))
    try:
        result = outage_app.test_cli_runner().invoke(args=args)
    finally:
        outage.restore()
    output = result.output.strip()
    assert result.exit_code != 0, output
    assert len(output.splitlines()) == 1, output
    assert output.startswith("Error: the database is unreachable"), output
    assert "Traceback" not in output


def test_cli_process_prints_one_line_on_stderr(outage: DatabaseOutage, tmp_path: Path) -> None:
    env = {
        **os.environ,
        "DATABASE_URL": outage.url,
        "PUBLIC_BASE_URL": BASE,
        "PYTHONUNBUFFERED": "1",
    }
    outage.cut()
    try:
        done = subprocess.run(
            [sys.executable, "-m", "flask", "--app", "backend", "reminders", "run-due"],
            env=env,
            cwd=Path(__file__).resolve().parents[2],
            capture_output=True,
            text=True,
            timeout=60,
        )
    finally:
        outage.restore()
    lines = done.stderr.strip().splitlines()
    assert done.returncode != 0, done.stderr
    assert len(lines) == 1 and lines[0].startswith("Error: the database is unreachable"), (
        done.stderr[-3000:]
    )


@pytest.mark.postgresql_only
def test_a_database_that_stops_answering_is_a_503_within_the_connect_timeout(
    outage: DatabaseOutage, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Packets dropped rather than refused: a request must not hang until the worker is killed."""
    assert outage.proxy is not None
    app = create_app(
        {
            "TESTING": True,
            "DATABASE_URL": outage.url,
            "DATABASE_CONNECT_TIMEOUT_SECONDS": 2,
            "SECRET_KEY": "test-secret",
            "PUBLIC_BASE_URL": BASE,
        }
    )
    app.instance_path = str(tmp_path / "instance")
    with Session(get_engine(app), expire_on_commit=False) as session:
        user = create_user(
            session, email="nurse@outage.example", team_name="Hématologie", role="nurse", now=NOW
        )
        token = issue_test_token(session, user, datetime.now(UTC))  # this app has no CLOCK
        session.commit()
    client = app.test_client()
    assert client.get("/api/v1/patients", headers=bearer(token)).status_code == 200

    outage.proxy.hang()
    try:
        caplog.clear()
        started = time.monotonic()
        with caplog.at_level(logging.INFO):
            answer = client.get("/api/v1/patients", headers=bearer(token))
        waited = time.monotonic() - started
    finally:
        outage.restore()
        get_engine(app).dispose()
    assert answer.status_code == 503 and int(answer.headers["Retry-After"]) > 0
    assert waited < 8, waited
    _assert_one_clean_line(_outage_records(caplog))


def test_the_default_connect_timeout_is_bounded_below_the_web_workers_timeout() -> None:
    """Gunicorn kills a worker silent for 30 s: the database gives up before that (a 503)."""
    from backend.config import default_config, load_environment

    assert 0 < default_config("/tmp")["DATABASE_CONNECT_TIMEOUT_SECONDS"] < 30
    assert load_environment({"DATABASE_CONNECT_TIMEOUT_SECONDS": "5"}) == {
        "DATABASE_CONNECT_TIMEOUT_SECONDS": 5.0
    }
