"""Logs: one JSON object per line with a request or job id, and no patient data in any line.

Issue 16, item 3. Everything the process logs (the root logger, from DEBUG) goes through
the real handler and formatter (:func:`backend.logs.install_logging`) while a real
patient's day runs: a lab result through the API, a fever reply through Twilio's signed
webhook, a nurse's dashboard view, and the clock's jobs with a dispatch pass. Then every
line must be JSON with its id, and no line may hold the patient's phone number (in any
spelling), a part of her name, the text of an SMS either way or the lab value. The
werkzeug development server and gunicorn write their request lines through the same
formatter, without the calendar link's token.
"""

from __future__ import annotations

import io
import json
import logging
import os
import re
import secrets
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime
from pathlib import Path
from threading import Event
from typing import Any

import pytest
import requests
from flask import Flask
from sqlmodel import Session, select
from werkzeug.serving import make_server

from backend.db import get_engine
from backend.logs import (
    CompanionHandler,
    JsonFormatter,
    TextFormatter,
    install_logging,
    redact,
    request_id_from,
)
from reminders import logcontext
from reminders.data.models import InboundMessage, OutboundMessage, Patient, User
from reminders.dispatch import run_dispatcher
from reminders.gateways import ConsoleGateway
from reminders.jobs import run_due
from tests.backend.dashboard.conftest import PASSWORD, sign_in
from tests.backend.test_config import free_port
from tests.backend.test_report_rule_ids_migration import migrate
from tests.conftest import Clock, bearer
from tests.twilio_fake import FAKE_AUTH_TOKEN, inbound_sms_params, signed_form_post, wait_until

ROOT = Path(__file__).resolve().parents[2]
NAME = "Marie-Thérèse Vandenbroucke-Delacroix"
PHONE = "+32 470 12 34 56"
#: Every way the number may be written: E.164, national, with and without spaces.
PHONE_SPELLINGS = ("+32470123456", "+32 470 12 34 56", "0470123456", "0470 12 34 56", "470123456")
REPLY = "39,4"  # a fever, with a decimal comma, from a French-speaking patient
LAB_VALUE = 123457.0  # CMV PCR copies/mL: a number nothing else in a log would be
BASE = "https://companion.test"
OUR_NUMBER = "+32460000000"


@pytest.fixture
def captured() -> Iterator[io.StringIO]:
    """Every record of the process, from DEBUG, through the real JSON handler, as text."""
    stream = io.StringIO()
    root = logging.getLogger()
    level = root.level
    install_logging("json", logging.DEBUG, stream)
    try:
        yield stream
    finally:
        for handler in [h for h in root.handlers if isinstance(h, CompanionHandler)]:
            root.removeHandler(handler)
        root.setLevel(level)


def json_lines(stream: io.StringIO) -> list[dict[str, Any]]:
    """Each line of ``stream`` decoded; fails on a line that is not one JSON object."""
    entries = []
    for line in stream.getvalue().splitlines():
        entry = json.loads(line)
        assert isinstance(entry, dict), line
        assert {"timestamp", "level", "logger", "message"} <= entry.keys(), line
        entries.append(entry)
    return entries


def assert_no_patient_data(text: str, *more: str) -> None:
    """No spelling of the phone, no part of the name, none of ``more`` in ``text``."""
    name_parts = re.split(r"[\s-]+", NAME)
    for secret in (*PHONE_SPELLINGS, NAME, *name_parts, *more):
        assert secret not in text, secret


def test_a_patients_day_logs_json_lines_with_ids_and_nothing_about_her(
    app: Flask,
    make_user: Callable[..., tuple[User, str]],
    make_patient: Callable[..., Patient],
    make_plan: Callable[..., Any],
    session: Session,
    clock: Clock,
    captured: io.StringIO,
) -> None:
    app.config.update(TWILIO_AUTH_TOKEN=FAKE_AUTH_TOKEN, PUBLIC_BASE_URL=BASE)
    clock.now = datetime(2026, 3, 17, 17, 5, tzinfo=UTC)
    nurse, token = make_user(team="Hématologie — Saint-Luc", password=PASSWORD)
    patient = make_patient(nurse.team_id, display_name=NAME, phone=PHONE, language="fr")
    make_plan(patient, "alemtuzumab_sc", date(2026, 3, 2))
    client = app.test_client()
    captured.truncate(0)
    captured.seek(0)

    lab = client.post(
        f"/api/v1/patients/{patient.id}/labs",
        headers={**bearer(token), "X-Request-ID": "api-lab-1"},
        json={"kind": "cmv_pcr", "value": LAB_VALUE, "taken_at": clock.now.isoformat()},
    )
    assert lab.status_code == 201, lab.get_data(as_text=True)
    assert lab.headers["X-Request-ID"] == "api-lab-1"
    params = inbound_sms_params(PHONE.replace(" ", ""), REPLY, OUR_NUMBER)
    hook = signed_form_post(client, f"{BASE}/twilio/sms", params, FAKE_AUTH_TOKEN)
    assert hook.status_code == 200 and hook.headers["X-Request-ID"]
    assert sign_in(client, nurse.email).status_code == 302
    page = client.get(f"/patients/{patient.id}")
    assert page.status_code == 200 and NAME in page.get_data(as_text=True)
    sent = io.StringIO()
    summary = run_due(get_engine(app), ConsoleGateway(stream=sent), clock.now)
    assert summary["sent"] >= 1, summary  # the urgent advice and the on-call page at least

    entries = json_lines(captured)
    web = [e for e in entries if "request_id" in e]
    jobs = [e for e in entries if "job_id" in e]
    assert any("signed in" in e["message"] for e in web), entries
    assert any(e["message"].startswith("planning pass:") for e in jobs), entries
    assert any(e["message"].startswith("dispatch:") for e in jobs), entries
    assert {e["job_id"].split("-")[0] for e in jobs} >= {"planning", "dispatch"}
    # Each job run has its own id; the lines of one run share it.
    planning = {e["job_id"] for e in jobs if e["message"].startswith("planning pass:")}
    assert len(planning) == 1
    outside = [e for e in entries if "request_id" not in e and "job_id" not in e]
    assert not outside, outside

    # Nothing about her: the number, the name, the SMS either way, the lab value.
    with Session(get_engine(app)) as check:
        bodies = [m.body for m in check.exec(select(OutboundMessage)).all()]
        replies = [m.body for m in check.exec(select(InboundMessage)).all()]
    assert replies == [REPLY] and bodies and NAME.split()[0] in sent.getvalue()
    # The line's own clock is left out: at 20:10:39.4 its timestamp reads like her fever.
    # Each line is written out again unescaped, so an accented name cannot hide as \u00e9.
    logged = "\n".join(
        json.dumps({k: v for k, v in e.items() if k != "timestamp"}, ensure_ascii=False)
        for e in entries
    )
    fragments = {body[i : i + 24] for body in bodies for i in range(0, max(len(body) - 24, 1), 12)}
    assert_no_patient_data(logged, REPLY, "39.4", "123457", *fragments)


def test_the_safety_net_masks_numbers_and_calendar_tokens_even_in_a_traceback(
    captured: io.StringIO,
) -> None:
    token = secrets.token_urlsafe(32)
    logger = logging.getLogger("tests.leaky")
    with logcontext.job_id("leak-check") as job:
        logger.warning("would send to %s and %s", PHONE, "+1 (555) 010-4477")
        try:
            raise ValueError(f"no patient with number {PHONE} for /calendar/{token}.ics")
        except ValueError:
            logger.exception("failed on GET /calendar/%s.ics?to=%%2B32470123456", token)

    entries = json_lines(captured)
    assert [e["job_id"] for e in entries] == [job, job]
    assert entries[0]["message"] == "would send to [phone] and [phone]"
    assert entries[1]["message"] == "failed on GET /calendar/[token].ics?to"
    assert "ValueError: no patient with number [phone]" in entries[1]["exception"]
    assert_no_patient_data(captured.getvalue(), token, "5550104477", "010-4477")


def test_redaction_leaves_ordinary_numbers_alone() -> None:
    line = "outbox 1234567: 3 segments; at 2026-03-17T17:05:00+01:00; +1 day; took 12.5 ms"
    assert redact(line) == line
    assert redact("/calendar/abc_DEF-123.ics") == "/calendar/[token].ics"
    assert (
        redact('"GET /patients?q=Peeters&page=2 HTTP/1.1" 200')
        == '"GET /patients?q&page HTTP/1.1" 200'
    )
    assert redact("https://companion.test/login?next=%2Fpatients%3Fq%3DPeeters") == (
        "https://companion.test/login?next"
    )
    assert redact("\x1b[32mGET /healthz\x1b[0m") == "GET /healthz"


def test_request_ids_are_kept_when_sane_and_replaced_otherwise() -> None:
    assert request_id_from("lb-3f9a.7:2") == "lb-3f9a.7:2"
    for header in (None, "", "x" * 129, "two words", "id\r\nX-Evil: 1", "+32470123456"):
        replaced = request_id_from(header)
        assert re.fullmatch(r"[0-9a-f]{32}", replaced), (header, replaced)


def test_the_text_format_for_a_developer_names_the_id_and_redacts_too() -> None:
    record = logging.LogRecord("tests", logging.INFO, __file__, 1, "to %s", (PHONE,), None)
    with logcontext.job_id("text") as job:
        line = TextFormatter().format(record)
        entry = json.loads(JsonFormatter().format(record))
    assert line.endswith(f"INFO tests [{job}]: to [phone]"), line
    assert entry["job_id"] == job and entry["message"] == "to [phone]"


def test_the_development_server_logs_requests_without_the_calendar_token(
    app: Flask, captured: io.StringIO
) -> None:
    token = secrets.token_urlsafe(32)
    server = make_server("127.0.0.1", free_port(), app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        base = f"http://127.0.0.1:{server.server_port}"
        feed = requests.get(f"{base}/calendar/{token}.ics?to=%2B32470123456", timeout=10)
        probe = requests.get(f"{base}/healthz", headers={"X-Request-ID": "probe-7"}, timeout=10)
        # A nurse's search for a patient by name, signed out: redirected to sign in.
        search = requests.get(
            f"{base}/patients", params={"q": NAME}, allow_redirects=False, timeout=10
        )
    finally:
        server.shutdown()
        thread.join(timeout=10)
    assert feed.status_code == 404 and probe.headers["X-Request-ID"] == "probe-7"
    assert search.status_code == 302

    requests_logged = [e for e in json_lines(captured) if e["logger"] == "werkzeug"]
    lines = [e["message"] for e in requests_logged]
    assert any('"GET /calendar/[token].ics?to HTTP/1.1" 404' in line for line in lines), lines
    assert any('"GET /patients?q HTTP/1.1" 302' in line for line in lines), lines
    assert any("GET /healthz" in e["message"] for e in requests_logged)
    assert token not in captured.getvalue()
    assert_no_patient_data(captured.getvalue(), "Th%C3%A9r%C3%A8se", "Vandenbroucke")


def answers(url: str) -> bool:
    """True once ``url`` answers 200 (a server still starting refuses or is slow)."""
    try:
        return requests.get(url, timeout=30).status_code == 200
    except requests.ConnectionError:
        return False


@pytest.mark.slow
def test_gunicorn_writes_its_lines_and_access_log_as_json_without_the_token(
    tmp_path: Path,
) -> None:
    token = secrets.token_urlsafe(32)
    port = free_port()
    env = {key: value for key, value in os.environ.items() if not key.startswith("LOG_")}
    url = f"sqlite:///{tmp_path / 'web.sqlite3'}"
    migrate(url, {}, "head")
    env.update(PYTHONPATH=str(ROOT), DATABASE_URL=url, DEPLOYMENT="production")
    config = ["--config", str(ROOT / "gunicorn.conf.py"), "--access-logfile", "-"]
    serve = ["--workers", "1", "--bind", f"127.0.0.1:{port}", "backend:create_app()"]
    server = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", *config, *serve],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        # A worker loads the app after the master listens: on a busy machine that takes
        # longer than wait_for_answer's 5 s read timeout, so the first probe waits longer.
        healthz = f"http://127.0.0.1:{port}/healthz"
        assert wait_until(lambda: answers(healthz), timeout=60, interval=0.1), server.poll()
        feed = requests.get(
            f"http://127.0.0.1:{port}/calendar/{token}.ics",
            headers={"X-Request-ID": "family-phone-1"},
            timeout=10,
        )
    finally:
        server.terminate()
        out, err = server.communicate(timeout=60)
    assert feed.status_code == 404
    lines = [json.loads(line) for line in (out + err).splitlines() if line.strip()]
    access = [e for e in lines if e["logger"] == "gunicorn.access"]
    assert any(
        "/calendar/[token].ics" in e["message"] and e.get("request_id") == "family-phone-1"
        for e in access
    ), lines
    assert any(e["logger"] == "gunicorn.error" for e in lines)
    assert token not in out + err


def test_each_dispatcher_pass_logs_under_its_own_job_id(app: Flask, captured: io.StringIO) -> None:
    stop = Event()
    dispatcher = threading.Thread(
        target=run_dispatcher,
        args=(get_engine(app), ConsoleGateway(stream=io.StringIO())),
        kwargs={"interval": 0.05, "stop": stop, "wakeups": False},
        daemon=True,
    )
    dispatcher.start()
    try:
        assert wait_until(lambda: "first pass done" in captured.getvalue(), timeout=30)
    finally:
        stop.set()
        dispatcher.join(timeout=30)

    first = next(e for e in json_lines(captured) if "first pass done" in e["message"])
    assert re.fullmatch(r"dispatch-[0-9a-f]{32}", first["job_id"]), first
