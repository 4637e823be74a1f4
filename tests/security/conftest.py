"""The attack suite's fixtures: the real app served over real HTTP, and a team to attack.

``live_server`` serves the ``app`` fixture of ``tests/conftest.py`` (so every test runs on
SQLite and on PostgreSQL) with werkzeug's ``make_server`` in a thread on 127.0.0.1 and a
free port. Tests talk to it with ``requests`` only: what a client on the network sends is
what the app receives, with no test-client shortcut (a body that is never read stays unread).
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

import pytest
import requests
from flask import Flask
from sqlmodel import Session
from werkzeug.routing import Rule
from werkzeug.serving import make_server

from backend import create_app
from backend.db import get_engine
from backend.services.oncall import add_shift
from reminders.data.models import Team, User
from tests.conftest import FIXED_NOW, bearer
from tests.twilio_fake import FAKE_AUTH_TOKEN, twilio_signature

#: The public URL the app believes it is served at (Twilio signs it); the socket is loopback.
PUBLIC_BASE = "https://companion.test"
PASSWORD = "correct horse battery staple"
#: Long, accented, hyphenated: names as the wards really hold them.
LONG_NAME = "Marie-Françoise Van den Bossche-Lefèvre"


@dataclass
class LiveServer:
    """A running server: its base URL on loopback and the app it serves."""

    url: str
    app: Flask

    def __call__(self, path: str) -> str:
        """The absolute URL of ``path`` on this server."""
        return self.url + path


@contextmanager
def serving(app: Flask) -> Iterator[LiveServer]:
    """Serve ``app`` on 127.0.0.1 and a free port, in a thread, until the block ends."""
    app.config["TWILIO_AUTH_TOKEN"] = FAKE_AUTH_TOKEN
    app.config["PUBLIC_BASE_URL"] = PUBLIC_BASE
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, name="live-server", daemon=True)
    thread.start()
    try:
        yield LiveServer(f"http://127.0.0.1:{server.server_port}", app)
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


@pytest.fixture
def live_server(app: Flask) -> Iterator[LiveServer]:
    """The real app on 127.0.0.1 and a free port, in a thread, for the length of one test."""
    with serving(app) as server:
        yield server


@pytest.fixture
def worker_app(app: Flask) -> Iterator[Callable[..., Flask]]:
    """Another app instance (a second web worker) on ``app``'s database, clock and secret.

    Keyword arguments override its configuration (e.g. ``TRUSTED_PROXY_COUNT=1``).
    """
    made: list[Flask] = []

    def factory(**overrides: Any) -> Flask:
        keys = (
            "TESTING", "DATABASE_URL", "SECRET_KEY", "SESSION_COOKIE_SECURE",
            "PUBLIC_BASE_URL", "DEFAULT_REGION", "CLOCK",
        )  # fmt: skip
        worker = create_app({**{key: app.config[key] for key in keys}, **overrides})
        worker.instance_path = app.instance_path
        made.append(worker)
        return worker

    yield factory
    for worker in made:
        get_engine(worker).dispose()


@dataclass
class Ward:
    """Team A: an admin with a password and an API token, a patient, a plan, an alert, a course."""

    admin: User
    token: str
    ids: dict[str, Any]

    @property
    def auth(self) -> dict[str, str]:
        """The admin's bearer header."""
        return bearer(self.token)


@pytest.fixture
def ward(live_server: LiveServer, session: Session, make_user, make_patient, make_plan) -> Ward:
    """A team with every kind of object a route can name, created through the real API."""
    admin, token = make_user(
        team="Team A", role="admin", password=PASSWORD, email="marie-francoise@hopital.example"
    )
    nurse, _ = make_user(team="Team A", role="nurse", phone="+32 470 11 22 33")
    team = session.get(Team, admin.team_id)
    team.oncall_phone = "+32470999999"
    session.add(team)
    session.commit()
    # The nurse is primary tomorrow (a shift every rota route can name).
    shift, _ = add_shift(
        session,
        team,
        user_id=nurse.id,
        role="primary",
        starts_at=datetime(2026, 3, 3, 8, 0),
        ends_at=datetime(2026, 3, 3, 20, 0),
        actor=admin,
        now=FIXED_NOW,
    )
    session.commit()
    patient = make_patient(admin.team_id, display_name=LONG_NAME, phone="+32 470 12 34 56")
    plan = make_plan(patient, start_date=date(2026, 3, 2))
    lab = requests.post(
        live_server(f"/api/v1/patients/{patient.id}/labs"),
        json={"kind": "cmv_pcr", "value": 25000, "taken_at": "2026-03-01T08:00:00+01:00"},
        headers=bearer(token),
        timeout=30,
    )
    assert lab.status_code == 201, lab.text
    course = requests.post(
        live_server(f"/api/v1/patients/{patient.id}/prophylaxis"),
        json={
            "drug": "acyclovir",
            "dose_text": "400 mg twice a day",
            "times": ["08:00", "20:00"],
            "start_date": "2026-03-02",
        },
        headers=bearer(token),
        timeout=30,
    )
    assert course.status_code == 201, course.text
    return Ward(
        admin=admin,
        token=token,
        ids={
            "patient_id": patient.id,
            "plan_id": plan.id,
            "alert_id": lab.json()["alerts"][0]["id"],
            "course_id": course.json()["id"],
            "user_id": nurse.id,
            "shift_id": shift.id,
            "index": 2,
            "regimen_id": "alemtuzumab_sc",
            "filename": "index.html",
        },
    )


_CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


def csrf_of(html: str) -> str:
    """The CSRF token of a page's first form."""
    match = _CSRF.search(html)
    assert match, "no CSRF token on the page"
    return match.group(1)


def signed_in(
    live_server: LiveServer, ward: Ward, email: str | None = None
) -> tuple[requests.Session, str]:
    """A browser signed in through the real sign-in form, and its CSRF token.

    As the ward's admin unless ``email`` names another user (whose password is
    :data:`PASSWORD`).
    """
    return browser_signed_in(live_server, email or ward.admin.email)


def browser_signed_in(
    live_server: LiveServer, email: str, password: str = PASSWORD
) -> tuple[requests.Session, str]:
    """A browser signed in as ``email`` through the real sign-in form, and its CSRF token."""
    browser = requests.Session()
    page = browser.get(live_server("/login"), timeout=30)
    response = browser.post(
        live_server("/login"),
        data={"email": email, "password": password, "csrf_token": csrf_of(page.text)},
        allow_redirects=False,
        timeout=30,
    )
    assert response.status_code in (302, 303), response.status_code
    queue = browser.get(live_server("/queue"), timeout=30)
    assert queue.status_code == 200 and "/login" not in queue.url
    return browser, csrf_of(queue.text)


def fill(rule: Rule, ids: dict[str, Any]) -> str:
    """The rule's path with each ``<converter:name>`` replaced by a real id (1 if unknown)."""
    return re.sub(r"<(?:[^:>]+:)?(\w+)>", lambda m: str(ids.get(m.group(1), 1)), rule.rule)


def methods(rule: Rule) -> list[str]:
    """The methods a route really serves (HEAD and OPTIONS are Flask's own)."""
    return sorted((rule.methods or set()) - {"HEAD", "OPTIONS"})


def twilio_post(
    live_server: LiveServer, path: str, params: dict[str, str], **kwargs: Any
) -> requests.Response:
    """POST ``params`` to a webhook with a valid signature over the public URL and the path."""
    signature = twilio_signature(PUBLIC_BASE + path, params, FAKE_AUTH_TOKEN)
    return requests.post(
        live_server(path),
        data=params,
        headers={"X-Twilio-Signature": signature},
        timeout=30,
        **kwargs,
    )
