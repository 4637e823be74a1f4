"""Issue 12, item 3: API tokens replayed over real HTTP after they expired, were revoked
(from the dashboard and from the command line) or their user was deactivated; and one
team's admin against another team's tokens.
"""

from __future__ import annotations

import re

import requests
from sqlmodel import Session, select

from reminders.data.models import ApiToken
from tests.conftest import Clock, bearer, reread
from tests.security.conftest import PASSWORD, LiveServer, Ward, csrf_of, signed_in

API = "/api/v1"
_SECRET = re.compile(r"mabc_[A-Za-z0-9_-]{43}")


def _patient(live_server: LiveServer, ward: Ward, token: str) -> requests.Response:
    return requests.get(
        live_server(f"{API}/patients/{ward.ids['patient_id']}"), headers=bearer(token), timeout=30
    )


def _browser(live_server: LiveServer, email: str) -> tuple[requests.Session, str]:
    """A browser signed in as ``email`` through the real form, and its CSRF token."""
    browser = requests.Session()
    page = browser.get(live_server("/login"), timeout=30)
    browser.post(
        live_server("/login"),
        data={"email": email, "password": PASSWORD, "csrf_token": csrf_of(page.text)},
        timeout=30,
    )
    queue = browser.get(live_server("/queue"), timeout=30)
    assert "/login" not in queue.url
    return browser, csrf_of(queue.text)


def _token_id(session: Session, secret: str) -> int:
    prefix = secret[len("mabc_") : len("mabc_") + 8]
    return reread(session).exec(select(ApiToken.id).where(ApiToken.prefix == prefix)).one()


def test_an_expired_token_gets_401_on_a_patient_route(
    live_server: LiveServer, ward: Ward, clock: Clock
) -> None:
    assert _patient(live_server, ward, ward.token).status_code == 200
    clock.advance(days=365)  # make_user's tokens work 365 days
    answer = _patient(live_server, ward, ward.token)
    assert answer.status_code == 401
    assert answer.json() == {"error": "unauthorized", "message": "token expired"}
    assert answer.headers["WWW-Authenticate"].startswith('Bearer realm="api"')
    assert "Marie-Françoise" not in answer.text and "+32" not in answer.text


def test_a_token_created_and_revoked_from_the_dashboard_gets_401(
    live_server: LiveServer, ward: Ward, session: Session
) -> None:
    browser, csrf = signed_in(live_server, ward)
    created = browser.post(
        live_server("/account/tokens"),
        data={"name": "Intégration labo Saint-Luc", "days": "30", "csrf_token": csrf},
        timeout=30,
    )
    assert created.status_code == 201
    assert created.headers["Cache-Control"] == "no-store"
    secret = _SECRET.search(created.text).group(0)
    assert secret not in str(browser.cookies.get_dict())
    assert secret not in browser.get(live_server("/account/tokens"), timeout=30).text
    assert _patient(live_server, ward, secret).status_code == 200
    token_id = _token_id(session, secret)
    revoked = browser.post(
        live_server(f"/account/tokens/{token_id}/revoke"),
        data={"csrf_token": csrf},
        allow_redirects=False,
        timeout=30,
    )
    assert revoked.status_code == 302
    answer = _patient(live_server, ward, secret)
    assert answer.status_code == 401 and answer.json()["message"] == "token revoked"
    assert 'error="invalid_token"' in answer.headers["WWW-Authenticate"]
    assert _patient(live_server, ward, ward.token).status_code == 200  # only that one


def test_a_token_revoked_from_the_command_line_gets_401(
    live_server: LiveServer, ward: Ward, session: Session
) -> None:
    runner = live_server.app.test_cli_runner()
    created = runner.invoke(
        args=["tokens", "create", "--email", ward.admin.email, "--name", "Script de garde"]
    )
    assert created.exit_code == 0, created.output
    secret = created.output.strip().splitlines()[-1]
    assert _patient(live_server, ward, secret).status_code == 200
    listed = runner.invoke(args=["tokens", "list", "--email", ward.admin.email])
    assert secret not in listed.output and secret[5:13] in listed.output
    revoked = runner.invoke(args=["tokens", "revoke", str(_token_id(session, secret))])
    assert revoked.exit_code == 0, revoked.output
    answer = _patient(live_server, ward, secret)
    assert answer.status_code == 401 and answer.json()["message"] == "token revoked"


def test_a_deactivated_users_token_gets_401(live_server: LiveServer, ward: Ward, make_user) -> None:
    nurse, token = make_user(team="Team A", role="nurse")
    assert _patient(live_server, ward, token).status_code == 200
    browser, csrf = signed_in(live_server, ward)
    done = browser.post(
        live_server(f"/admin/users/{nurse.id}/active"),
        data={"active": "0", "csrf_token": csrf},
        allow_redirects=False,
        timeout=30,
    )
    assert done.status_code == 302
    answer = _patient(live_server, ward, token)
    assert answer.status_code == 401 and answer.json()["error"] == "unauthorized"


def test_another_teams_admin_can_neither_list_nor_revoke_a_teams_tokens(
    live_server: LiveServer, ward: Ward, make_user, session: Session
) -> None:
    intruder, _ = make_user(
        team="Team B", role="admin", password=PASSWORD, email="admin@clinique-b.example"
    )
    browser, csrf = _browser(live_server, intruder.email)
    listing = browser.get(live_server("/admin/tokens"), timeout=30)
    assert listing.status_code == 200
    for secret_part in (ward.token, ward.token[5:13]):
        assert secret_part not in listing.text
    assert ward.admin.email not in listing.text
    victim = _token_id(session, ward.token)
    for path in (f"/admin/tokens/{victim}/revoke", f"/account/tokens/{victim}/revoke"):
        refused = browser.post(
            live_server(path), data={"csrf_token": csrf}, allow_redirects=False, timeout=30
        )
        assert refused.status_code == 404, path
    assert reread(session).get(ApiToken, victim).revoked_at is None
    assert _patient(live_server, ward, ward.token).status_code == 200
