"""Sign-in, throttling (never a lockout), session timeouts, sign-out and CSRF on the pages."""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

from flask.testing import FlaskClient
from sqlmodel import select

from backend.security import SESSION_ID_KEY
from backend.services.sessions import session_digest
from backend.services.signin import DEVICE_COOKIE
from reminders.data.models import AuditEvent, LoginThrottle, User, UserSession
from tests.backend.dashboard.conftest import PASSWORD, csrf_of, post_form, sign_in
from tests.conftest import reread


def sign_in_from(client: FlaskClient, address: str, email: str, password: str = PASSWORD) -> Any:
    """Post the sign-in form as a client at ``address``."""
    token = csrf_of(client)
    return client.post(
        "/login",
        data={"email": email, "password": password, "csrf_token": token},
        environ_base={"REMOTE_ADDR": address},
    )


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


def test_failed_sign_ins_slow_down_but_never_lock_the_account(
    client, team_user, session, clock
) -> None:
    user = team_user()
    for _ in range(4):  # three free failures; the fourth is checked and costs 1 s
        assert sign_in(client, user.email, "wrong password").status_code == 401
    waiting = sign_in(client, user.email)  # the right password, not checked yet
    assert waiting.status_code == 429
    assert waiting.headers["Retry-After"] == "1"
    page = waiting.get_data(as_text=True)
    assert "Too many sign-in attempts" in page and "wait 1 second " in page
    assert "not a lock" in page
    clock.advance(seconds=1)
    assert sign_in(client, user.email).status_code == 302
    reread(session)
    assert session.get(User, user.id).last_login_at == clock.now
    assert not hasattr(User, "failed_logins") and not hasattr(User, "locked_until")


def test_a_success_resets_the_delays(client, team_user, session, clock) -> None:
    user = team_user()
    for wait in (0, 0, 0, 0, 1, 2):
        clock.advance(seconds=wait)
        assert sign_in(client, user.email, "wrong password").status_code == 401
    assert sign_in(client, user.email).headers["Retry-After"] == "4"
    clock.advance(seconds=4)
    assert sign_in(client, user.email).status_code == 302
    for _ in range(4):
        assert sign_in(client, user.email, "wrong password").status_code == 401
    assert sign_in(client, user.email).headers["Retry-After"] == "1"


def test_a_waiting_unknown_email_looks_like_a_waiting_account(client, team_user) -> None:
    user = team_user()
    unknown = "nobody@nowhere.example"
    answers = {}
    for email in (user.email, unknown):
        for _ in range(4):
            sign_in(client, email, "wrong password")
        answers[email] = sign_in(client, email, "wrong password")
    known_page, unknown_page = (
        answers[e].get_data(as_text=True).replace(e, "") for e in (user.email, unknown)
    )
    assert answers[user.email].status_code == answers[unknown].status_code == 429
    assert answers[user.email].headers["Retry-After"] == answers[unknown].headers["Retry-After"]
    assert known_page == unknown_page


def test_failures_from_one_address_do_not_slow_the_user_at_another(app, team_user, session) -> None:
    user = team_user()
    stranger, nurse = app.test_client(), app.test_client()
    for _ in range(6):
        sign_in_from(stranger, "203.0.113.66", user.email, "wrong password")
    assert sign_in_from(stranger, "203.0.113.66", user.email).status_code == 429
    assert sign_in_from(nurse, "192.0.2.10", user.email).status_code == 302
    # Only HMAC keys are stored: no email, no address.
    reread(session)
    stored = repr([row.model_dump() for row in session.exec(select(LoginThrottle)).all()])
    assert user.email not in stored and "203.0.113" not in stored and "192.0.2" not in stored


def test_a_known_browser_gets_through_a_strangers_delays_on_its_address(app, team_user) -> None:
    user = team_user()
    nurse, stranger = app.test_client(), app.test_client()
    signed_in = sign_in_from(nurse, "192.0.2.10", user.email)
    assert signed_in.status_code == 302
    cookie = next(
        value
        for value in signed_in.headers.getlist("Set-Cookie")
        if value.startswith(f"{DEVICE_COOKIE}=")
    )
    assert "Path=/login" in cookie and "HttpOnly" in cookie and "SameSite=Lax" in cookie
    assert "Max-Age=2592000" in cookie  # 30 days
    assert user.email not in cookie
    for _ in range(6):  # the same shared address, without her browser's cookie
        sign_in_from(stranger, "192.0.2.10", user.email, "wrong password")
    assert sign_in_from(stranger, "192.0.2.10", user.email).status_code == 429
    assert sign_in_from(nurse, "192.0.2.10", user.email).status_code == 302


def test_sign_in_logs_no_email_address_or_password(client, team_user, caplog) -> None:
    user = team_user()
    caplog.set_level(logging.INFO)
    for _ in range(5):
        sign_in(client, user.email, "wrong password")
    sign_in(client, user.email)
    assert "sign-in refused unchecked (pair brake)" in caplog.text
    for secret in (user.email, "wrong password", PASSWORD, "127.0.0.1"):
        assert secret not in caplog.text


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
