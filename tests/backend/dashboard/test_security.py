"""Sign-in, lockout, session timeouts, sign-out and CSRF on the care-team pages."""

from __future__ import annotations

from datetime import timedelta

from sqlmodel import select

from backend.models import AuditEvent, User, UserSession
from backend.security import LOCKOUT, MAX_FAILED_LOGINS, SESSION_ID_KEY, LoginThrottle
from backend.services.sessions import session_digest
from tests.backend.dashboard.conftest import PASSWORD, csrf_of, post_form, sign_in
from tests.conftest import reread


def test_sign_in_sets_a_protected_session_cookie(client, team_user, session) -> None:
    user = team_user()
    client.application.config["SESSION_COOKIE_SECURE"] = True
    response = sign_in(client, user.email.upper())  # emails are not case-sensitive
    assert response.status_code == 302 and response.headers["Location"] == "/queue"
    cookie = next(
        value for value in response.headers.getlist("Set-Cookie") if value.startswith("session=")
    )
    assert "HttpOnly" in cookie and "Secure" in cookie and "SameSite=Lax" in cookie
    assert "Expires=" in cookie  # a permanent session: the absolute timeout is the cookie's too
    assert client.application.config["PERMANENT_SESSION_LIFETIME"] == timedelta(hours=12)
    reread(session)
    assert (
        session.exec(select(AuditEvent).where(AuditEvent.action == "login")).one().user_id
        == user.id
    )


def test_pages_need_a_signed_in_user(client) -> None:
    response = client.get("/patients/1?x=1")
    assert response.status_code == 302
    assert response.headers["Location"].startswith("/login?next=")
    assert client.get("/login").status_code == 200


def test_a_wrong_password_and_an_unknown_email_get_the_same_answer(client, team_user) -> None:
    user = team_user()
    wrong = sign_in(client, user.email, "not the password")
    unknown = sign_in(client, "nobody@nowhere.example", "not the password")
    assert wrong.status_code == unknown.status_code == 401

    def strip(response) -> str:
        body = response.get_data(as_text=True)
        return body.replace(user.email, "").replace("nobody@nowhere.example", "")

    assert strip(wrong) == strip(unknown)
    assert "Sign-in failed" in wrong.get_data(as_text=True)


def test_lockout_after_five_failures_for_fifteen_minutes(client, team_user, session, clock) -> None:
    user = team_user()
    for _ in range(MAX_FAILED_LOGINS):
        assert sign_in(client, user.email, "wrong password").status_code == 401
    reread(session)
    locked = session.get(User, user.id)
    assert locked.locked_until == clock.now + LOCKOUT
    # Locked: even the right password is refused, with the same generic message.
    refused = sign_in(client, user.email)
    assert refused.status_code == 401
    assert "Sign-in failed" in refused.get_data(as_text=True)
    clock.advance(minutes=14)
    assert sign_in(client, user.email).status_code == 401
    clock.advance(minutes=2)
    assert sign_in(client, user.email).status_code == 302
    reread(session)
    assert session.get(User, user.id).failed_logins == 0


def test_a_success_resets_the_failure_count(client, team_user, session) -> None:
    user = team_user()
    for _ in range(MAX_FAILED_LOGINS - 1):
        sign_in(client, user.email, "wrong password")
    assert sign_in(client, user.email).status_code == 302
    reread(session)
    assert session.get(User, user.id).failed_logins == 0
    assert session.get(User, user.id).locked_until is None


def test_the_address_throttle_slows_guessing_across_accounts(client, team_user, app) -> None:
    app.extensions["dashboard_login_throttle"] = LoginThrottle(limit=3)
    users = [team_user() for _ in range(4)]
    for user in users[:3]:
        assert sign_in(client, user.email, "wrong password").status_code == 401
    response = sign_in(client, users[3].email)
    assert response.status_code == 429
    assert "Too many failed sign-ins" in response.get_data(as_text=True)


def test_sign_in_starts_a_new_session(client, team_user, session) -> None:
    user = team_user()
    with client.session_transaction() as planted:
        planted[SESSION_ID_KEY] = "an-attackers-fixed-session-id"  # session fixation
        planted["planted"] = "yes"
        planted["csrf_token"] = "known-token"
    token = csrf_of(client)
    assert token == "known-token"
    client.post("/login", data={"email": user.email, "password": PASSWORD, "csrf_token": token})
    with client.session_transaction() as current:
        session_id = current[SESSION_ID_KEY]
        assert session_id != "an-attackers-fixed-session-id" and len(session_id) >= 43
        assert "planted" not in current
        assert current["csrf_token"] != "known-token"
        # Nothing else in the cookie (Flask adds its own "_permanent" flag).
        assert set(current) - {"_permanent"} == {SESSION_ID_KEY, "csrf_token"}
    # The row holds the id's digest, never the id itself.
    reread(session)
    row = session.exec(select(UserSession).where(UserSession.user_id == user.id)).one()
    assert row.id_hash == session_digest(session_id) and session_id not in row.id_hash


def test_idle_timeout_after_thirty_minutes(client, signed_in, clock) -> None:
    signed_in()
    clock.advance(minutes=29)
    assert client.get("/queue").status_code == 200
    clock.advance(minutes=29)  # active 29 minutes ago: still in
    assert client.get("/queue").status_code == 200
    clock.advance(minutes=31)
    response = client.get("/queue")
    assert response.status_code == 302 and "expired=1" in response.headers["Location"]
    assert client.get("/queue").status_code == 302


def test_absolute_timeout_after_twelve_hours(client, signed_in, clock) -> None:
    signed_in()
    for _ in range(12 * 3 + 1):  # busy all shift long: a request every 20 minutes
        clock.advance(minutes=20)
        status = client.get("/queue").status_code
    assert status == 302


def test_sign_out_is_a_post_with_csrf(client, signed_in) -> None:
    signed_in()
    assert client.get("/logout").status_code == 405
    assert client.post("/logout").status_code == 400  # no token: refused, still signed in
    assert client.get("/queue").status_code == 200
    response = post_form(client, "/logout", {})
    assert response.status_code == 302 and response.headers["Location"] == "/login"
    assert client.get("/queue").status_code == 302


def test_a_deactivated_user_is_signed_out_at_once(client, signed_in, session) -> None:
    user = signed_in()
    reread(session)
    row = session.get(User, user.id)
    row.is_active = False
    session.add(row)
    session.commit()
    assert client.get("/queue").status_code == 302
    assert sign_in(client, user.email).status_code == 401


def test_login_form_needs_its_csrf_token(client, team_user) -> None:
    user = team_user()
    client.get("/login")
    response = client.post("/login", data={"email": user.email, "password": PASSWORD})
    assert response.status_code == 400
    assert "This form has expired" in response.get_data(as_text=True)


def test_pages_send_security_headers(client, signed_in) -> None:
    signed_in()
    response = client.get("/queue")
    assert "frame-ancestors 'none'" in response.headers["Content-Security-Policy"]
    assert response.headers["Cache-Control"] == "no-store"
    assert response.headers["X-Content-Type-Options"] == "nosniff"


def test_no_open_redirect_after_sign_in(client, team_user) -> None:
    user = team_user()
    token = csrf_of(client)
    for target in ("https://evil.example/", "//evil.example/x", "/\\evil.example"):
        response = client.post(
            "/login",
            data={"email": user.email, "password": PASSWORD, "csrf_token": token, "next": target},
        )
        assert response.headers["Location"] == "/queue", target
        token = csrf_of(client, "/queue")
    response = client.post(
        "/login",
        data={"email": user.email, "password": PASSWORD, "csrf_token": token, "next": "/patients"},
    )
    assert response.headers["Location"] == "/patients"
