"""Fixtures for the care-team pages: signed-in clients, CSRF tokens and a treated patient."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest
from flask.testing import FlaskClient

from reminders.data.models import User
from tests.conftest import PLAN_START

__all__ = ["PASSWORD", "PLAN_START", "TUESDAY", "csrf_of", "post_form", "sign_in"]

PASSWORD = "correct horse battery"
#: Tuesday of the first treatment week: a dose tomorrow, so dose reminders are in the outbox.
TUESDAY = datetime(2026, 3, 3, 10, 0, tzinfo=UTC)

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
