"""Fixtures for the care-team pages: signed-in clients, CSRF tokens and a treated patient."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, date, datetime
from typing import Any

import pytest
from flask.testing import FlaskClient
from sqlmodel import Session, select

from backend.schemas import ProphylaxisConfirmIn
from backend.services.prophylaxis import confirm_course
from reminders.data.models import Patient, Plan, ProphylaxisCourse, Team, User

PASSWORD = "correct horse battery"
#: Tuesday of the first treatment week: a dose tomorrow, so dose reminders are in the outbox.
TUESDAY = datetime(2026, 3, 3, 10, 0, tzinfo=UTC)
PLAN_START = date(2026, 3, 2)

_TOKEN = re.compile(r'name="csrf_token" value="([^"]+)"')


def csrf_of(client: FlaskClient, url: str = "/login") -> str:
    """The CSRF token of the client's session, read from a page's form."""
    page = client.get(url)
    match = _TOKEN.search(page.get_data(as_text=True))
    assert match, f"no CSRF token on {url} ({page.status_code})"
    return match.group(1)


def sign_in(client: FlaskClient, email: str, password: str = PASSWORD) -> Any:
    """Post the sign-in form (with its CSRF token); returns the response."""
    token = csrf_of(client)
    return client.post("/login", data={"email": email, "password": password, "csrf_token": token})


def post_form(client: FlaskClient, url: str, data: dict[str, Any], page: str = "/queue") -> Any:
    """POST ``data`` with the session's CSRF token (read from ``page``)."""
    return client.post(url, data={**data, "csrf_token": csrf_of(client, page)})


@pytest.fixture
def team_user(make_user) -> Callable[..., User]:
    """A user who can sign in (default: a nurse of Team A)."""

    def factory(team: str = "Team A", role: str = "nurse", **overrides: Any) -> User:
        user, _ = make_user(team=team, role=role, password=PASSWORD, **overrides)
        return user

    return factory


@pytest.fixture
def signed_in(client: FlaskClient, team_user) -> Callable[..., User]:
    """Sign the test client in as a new user of ``team`` with ``role``."""

    def factory(team: str = "Team A", role: str = "nurse") -> User:
        user = team_user(team, role)
        response = sign_in(client, user.email)
        assert response.status_code == 302, response.get_data(as_text=True)
        return user

    return factory


@pytest.fixture
def treated(
    session: Session, make_patient, make_plan, clock
) -> Callable[..., tuple[Patient, Plan]]:
    """A consenting patient of a team on alemtuzumab s.c. with two confirmed prophylaxis courses."""

    def factory(team_id: int, **overrides: Any) -> tuple[Patient, Plan]:
        team = session.get(Team, team_id)
        team.oncall_phone = "+32470999999"
        session.add(team)
        session.commit()
        patient = make_patient(team_id, **overrides)
        plan = make_plan(patient, "alemtuzumab_sc", PLAN_START)
        # A member of the team confirms the two courses the plan proposed (both mandatory).
        nurse = session.exec(select(User).where(User.team_id == team_id)).first()
        for course in session.exec(
            select(ProphylaxisCourse).where(ProphylaxisCourse.plan_id == plan.id)
        ).all():
            confirm_course(
                session,
                course,
                patient,
                ProphylaxisConfirmIn(
                    drug=course.regimen_entry, dose_text="as prescribed", times=["08:00", "20:00"]
                ),
                nurse.id,
                clock.now,
            )
        session.commit()
        return patient, plan

    return factory
