"""Sessions kept on the server (issue 12, item 2): the service and the pages that use it.

The service functions run on a real session of both databases; the pages through the
test client, whose cookie holds only the session id and the CSRF token.
"""

from __future__ import annotations

import logging
from datetime import timedelta

import pytest
from flask.testing import FlaskClient
from sqlmodel import Session, select

from backend.security import ABSOLUTE_TIMEOUT, IDLE_TIMEOUT, LAST_SEEN_STEP, SESSION_ID_KEY
from backend.services.sessions import (
    MAX_DEVICE_LENGTH,
    check_user_session,
    device_label,
    end_user_session,
    end_user_sessions,
    open_session_counts,
    open_user_sessions,
    session_digest,
    start_user_session,
    touch_user_session,
)
from reminders.data.models import AuditEvent, User, UserSession
from reminders.data.pruning import SESSION_RETENTION, prune_user_sessions
from reminders.data.statuses import SessionEnd
from tests.backend.dashboard.conftest import PASSWORD, csrf_of, post_form, sign_in
from tests.conftest import reread

FIREFOX_WINDOWS = "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:128.0) Gecko/20100101 Firefox/128.0"
SAFARI_IPHONE = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 "
    "(KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1"
)
LONG_NAME = "Marie-Françoise Van den Bossche-Lefèvre"


def rows_of(session: Session, user: User) -> list[UserSession]:
    """Every session row of ``user`` as committed, oldest first."""
    reread(session)
    return list(
        session.exec(
            select(UserSession).where(UserSession.user_id == user.id).order_by(UserSession.id)
        ).all()
    )


def browser(app, user: User, user_agent: str = FIREFOX_WINDOWS) -> FlaskClient:
    """A new test client signed in as ``user`` through the form, sending ``user_agent``."""
    client = app.test_client()
    client.environ_base["HTTP_USER_AGENT"] = user_agent
    response = sign_in(client, user.email)
    assert response.status_code == 302, response.status_code
    return client


# --- the service ------------------------------------------------------------------------


def test_a_session_row_holds_the_ids_digest_and_the_limits(session, make_user, clock) -> None:
    user, _ = make_user(name=LONG_NAME)
    session_id = start_user_session(session, user, clock.now, FIREFOX_WINDOWS)
    session.commit()
    row = rows_of(session, user)[0]
    assert len(session_id) >= 43 and session_id not in row.id_hash
    assert row.id_hash == session_digest(session_id) and len(row.id_hash) == 64
    assert row.device == "Firefox on Windows"
    assert row.created_at == row.last_seen_at == clock.now
    assert row.expires_at == clock.now + ABSOLUTE_TIMEOUT
    assert row.ended_at is None and row.ended_reason is None
    # Two sign-ins never share an id.
    assert start_user_session(session, user, clock.now) != session_id


def test_check_refuses_unknown_ended_idle_expired_and_deactivated(
    session, make_user, clock
) -> None:
    user, _ = make_user()
    ids = {name: start_user_session(session, user, clock.now) for name in ("a", "b", "c")}
    session.commit()
    assert check_user_session(session, ids["a"], clock.now).user.id == user.id
    assert check_user_session(session, "not-a-session-id", clock.now).row is None
    assert check_user_session(session, "", clock.now).row is None
    assert check_user_session(session, "x" * 10_000, clock.now).row is None
    assert check_user_session(session, session_digest(ids["a"]), clock.now).row is None

    row_a = check_user_session(session, ids["a"], clock.now).row
    assert end_user_session(session, row_a, clock.now, SessionEnd.SIGNED_OUT)
    assert not end_user_session(session, row_a, clock.now, SessionEnd.IDLE)  # first reason stays
    session.commit()
    ended = check_user_session(session, ids["a"], clock.now)
    assert ended.user is None and ended.end is None
    assert rows_of(session, user)[0].ended_reason == "signed_out"

    # Idle: exactly the limit is still in, a second more is out.
    at_limit = clock.now + IDLE_TIMEOUT
    assert check_user_session(session, ids["b"], at_limit).user is not None
    idle = check_user_session(session, ids["b"], at_limit + timedelta(seconds=1))
    assert idle.user is None and idle.end is SessionEnd.IDLE

    # Absolute: past the limit even a session used a second ago is out.
    late = clock.now + ABSOLUTE_TIMEOUT + timedelta(seconds=1)
    row_c = check_user_session(session, ids["c"], clock.now).row
    row_c.last_seen_at = late - timedelta(seconds=1)
    session.add(row_c)
    session.commit()
    expired = check_user_session(session, ids["c"], late)
    assert expired.user is None and expired.end is SessionEnd.EXPIRED

    # A deactivated user's session is refused, to be ended as such.
    user.is_active = False
    session.add(user)
    session.commit()
    refused = check_user_session(session, ids["b"], clock.now)
    assert refused.user is None and refused.end is SessionEnd.USER_DEACTIVATED


def test_last_seen_is_written_at_most_once_a_minute(session, make_user, clock) -> None:
    user, _ = make_user()
    start_user_session(session, user, clock.now)
    session.commit()
    row = rows_of(session, user)[0]
    assert not touch_user_session(session, row, clock.now + LAST_SEEN_STEP - timedelta(seconds=1))
    assert touch_user_session(session, row, clock.now + LAST_SEEN_STEP)
    session.commit()
    assert rows_of(session, user)[0].last_seen_at == clock.now + LAST_SEEN_STEP
    # Never backwards, and never on an ended session.
    assert not touch_user_session(session, row, clock.now + timedelta(seconds=30))
    end_user_session(session, row, clock.now, SessionEnd.SIGNED_OUT)
    assert not touch_user_session(session, row, clock.now + timedelta(hours=1))
    session.commit()
    assert rows_of(session, user)[0].last_seen_at == clock.now + LAST_SEEN_STEP


def test_end_user_sessions_ends_only_that_users_open_sessions(session, make_user, clock) -> None:
    user, _ = make_user()
    colleague, _ = make_user()
    for _ in range(3):
        start_user_session(session, user, clock.now)
    start_user_session(session, colleague, clock.now)
    session.commit()
    old = rows_of(session, user)[0]
    end_user_session(session, old, clock.now, SessionEnd.SIGNED_OUT)
    session.commit()
    assert open_session_counts(session, user.team_id, clock.now) == {user.id: 2, colleague.id: 1}
    assert end_user_sessions(session, user.id, clock.now, SessionEnd.ENDED_BY_ADMIN) == 2
    session.commit()
    reasons = [row.ended_reason for row in rows_of(session, user)]
    assert reasons == ["signed_out", "ended_by_admin", "ended_by_admin"]
    assert open_user_sessions(session, user.id, clock.now) == []
    assert len(open_user_sessions(session, colleague.id, clock.now)) == 1
    assert end_user_sessions(session, user.id, clock.now, SessionEnd.ENDED_BY_ADMIN) == 0


def test_open_sessions_leave_out_idle_and_expired_ones(session, make_user, clock) -> None:
    user, _ = make_user()
    start_user_session(session, user, clock.now - ABSOLUTE_TIMEOUT - timedelta(minutes=1))
    start_user_session(session, user, clock.now - IDLE_TIMEOUT - timedelta(minutes=1))
    start_user_session(session, user, clock.now - timedelta(minutes=5))
    start_user_session(session, user, clock.now)
    session.commit()
    listed = open_user_sessions(session, user.id, clock.now)
    assert [row.created_at for row in listed] == [clock.now, clock.now - timedelta(minutes=5)]
    assert open_session_counts(session, user.team_id, clock.now) == {user.id: 2}
    assert open_session_counts(session, user.team_id + 1, clock.now) == {}


def test_prune_deletes_rows_ended_or_expired_over_thirty_days_ago(
    session, make_user, clock
) -> None:
    user, _ = make_user()
    month = SESSION_RETENTION
    # (started, ended) pairs relative to now; None: never ended.
    cases = {
        "ended long ago": (month + timedelta(days=2), month + timedelta(days=1)),
        "expired long ago": (month + timedelta(days=1), None),
        "ended recently": (timedelta(days=3), timedelta(days=2)),
        "expired recently": (timedelta(days=2), None),
        "open": (timedelta(minutes=5), None),
    }
    for started, _ended in cases.values():
        start_user_session(session, user, clock.now - started)
    session.commit()
    for row, (_, ended) in zip(rows_of(session, user), cases.values(), strict=True):
        if ended is not None:
            end_user_session(session, row, clock.now - ended, SessionEnd.SIGNED_OUT)
    session.commit()
    assert prune_user_sessions(session, clock.now) == 2
    session.commit()
    kept = rows_of(session, user)
    assert [row.created_at for row in kept] == [
        clock.now - started for name, (started, _) in cases.items() if "long ago" not in name
    ]
    assert prune_user_sessions(session, clock.now) == 0
    # The open session is never pruned, however short the retention asked for.
    assert prune_user_sessions(session, clock.now, keep=timedelta(0)) == 2
    session.commit()
    (kept,) = rows_of(session, user)
    assert kept.created_at == clock.now - cases["open"][0]


@pytest.mark.parametrize(
    ("user_agent", "label"),
    [
        (FIREFOX_WINDOWS, "Firefox on Windows"),
        (SAFARI_IPHONE, "Safari on iPhone"),
        (
            "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
            "Chrome/126.0.0.0 Safari/537.36 Edg/126.0.0.0",
            "Edge on Windows",
        ),
        (
            "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) "
            "Chrome/126.0.0.0 Mobile Safari/537.36",
            "Chrome on Android",
        ),
        (
            "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_5) AppleWebKit/605.1.15 (KHTML, like "
            "Gecko) Version/17.5 Safari/605.1.15",
            "Safari on macOS",
        ),
        ("Mozilla/5.0 (X11; Linux x86_64) SomeKiosk/1.0", "A browser on Linux"),
        ("python-requests/2.32.3", "Unknown device"),
        ("", "Unknown device"),
        (None, "Unknown device"),
        ("<script>alert(1)</script>" * 200, "Unknown device"),
    ],
)
def test_device_label_is_made_of_known_names_only(user_agent, label) -> None:
    assert device_label(user_agent) == label
    assert len(device_label(user_agent)) <= MAX_DEVICE_LENGTH


# --- the pages --------------------------------------------------------------------------


def test_the_cookie_holds_only_a_session_id_and_the_csrf_token(app, team_user, session) -> None:
    user = team_user()
    client = browser(app, user)
    with client.session_transaction() as cookie:
        assert set(cookie) - {"_permanent"} == {SESSION_ID_KEY, "csrf_token"}
        session_id = cookie[SESSION_ID_KEY]
    (row,) = rows_of(session, user)
    assert row.id_hash == session_digest(session_id) and row.device == "Firefox on Windows"


def test_a_page_view_writes_last_seen_at_most_once_a_minute(app, team_user, session, clock) -> None:
    user = team_user()
    client = browser(app, user)
    signed_in_at = clock.now
    for seconds in (10, 30, 59):
        clock.now = signed_in_at + timedelta(seconds=seconds)
        assert client.get("/queue").status_code == 200
        assert rows_of(session, user)[0].last_seen_at == signed_in_at
    clock.now = signed_in_at + timedelta(seconds=60)
    assert client.get("/queue").status_code == 200
    assert rows_of(session, user)[0].last_seen_at == clock.now


def test_idle_precision_stays_within_a_minute(app, team_user, session, clock) -> None:
    user = team_user()
    client = browser(app, user)
    clock.advance(seconds=59)  # used, not written: last seen stays at sign-in
    assert client.get("/queue").status_code == 200
    clock.advance(minutes=30, seconds=1 - 59)  # 30 min 1 s after the write, 29 min 2 s after use
    response = client.get("/queue")
    assert response.status_code == 302 and "expired=1" in response.headers["Location"]
    assert rows_of(session, user)[0].ended_reason == "idle"


def test_an_expired_session_ends_its_row(app, team_user, session, clock) -> None:
    user = team_user()
    client = browser(app, user)
    for _ in range(12 * 3):  # busy all shift long: a request every 20 minutes
        clock.advance(minutes=20)
        assert client.get("/queue").status_code == 200  # 12 hours to the second: still in
    clock.advance(seconds=1)
    assert client.get("/queue").status_code == 302
    (row,) = rows_of(session, user)
    assert row.ended_reason == "expired" and row.ended_at == clock.now


def test_sign_out_ends_the_row_and_a_replayed_cookie_is_refused(
    app, team_user, session, clock
) -> None:
    user = team_user()
    client = browser(app, user)
    with client.session_transaction() as cookie:
        copied = dict(cookie)
    clock.advance(minutes=5)
    response = post_form(client, "/logout", {})
    assert response.status_code == 302 and response.headers["Location"] == "/login"
    (row,) = rows_of(session, user)
    assert row.ended_reason == "signed_out" and row.ended_at == clock.now
    replay = app.test_client()
    with replay.session_transaction() as cookie:
        cookie.update(copied)
    refused = replay.get("/patients")
    assert refused.status_code == 302 and refused.headers["Location"].startswith("/login")
    # Refused, the replayed cookie is emptied of its id (the CSRF token stays for the form).
    with replay.session_transaction() as cookie:
        assert SESSION_ID_KEY not in cookie
    actions = [
        e.action for e in session.exec(select(AuditEvent).where(AuditEvent.user_id == user.id))
    ]
    assert [a for a in actions if a in ("login", "logout")] == ["login", "logout"]


def test_the_account_page_lists_the_users_open_sessions(app, team_user, session, clock) -> None:
    user = team_user(name=LONG_NAME)
    phone = browser(app, user, SAFARI_IPHONE)
    clock.advance(minutes=2)
    desk = browser(app, user)
    colleague = team_user()
    browser(app, colleague, "Mozilla/5.0 (X11; Linux x86_64) Firefox/128.0")
    # An ended session is not listed.
    gone = browser(app, user, "Mozilla/5.0 (Windows NT 10.0) Chrome/126.0 Safari/537.36")
    post_form(gone, "/logout", {})
    page = desk.get("/account")
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    assert LONG_NAME in html
    assert html.count("(this session)") == 1
    assert "Firefox on Windows <strong" in html  # this one is marked
    assert "Safari on iPhone" in html
    assert "Chrome on Windows" not in html and "Firefox on Linux" not in html
    assert "Mon 2 Mar 10:00 UTC" in html and "Mon 2 Mar 10:02 UTC" in html
    # The header links to it.
    assert 'href="/account"' in phone.get("/queue").get_data(as_text=True)


def test_sign_out_everywhere_needs_csrf_and_ends_every_session_of_the_user(
    app, team_user, session
) -> None:
    user = team_user()
    colleague = team_user()
    phone = browser(app, user, SAFARI_IPHONE)
    desk = browser(app, user)
    other = browser(app, colleague)
    assert desk.post("/account/sign-out-everywhere").status_code == 400
    assert desk.get("/queue").status_code == 200
    response = post_form(desk, "/account/sign-out-everywhere", {}, page="/account")
    assert response.status_code == 302 and response.headers["Location"] == "/login"
    assert "signed out on every device" in desk.get("/login").get_data(as_text=True)
    assert {row.ended_reason for row in rows_of(session, user)} == {"signed_out_everywhere"}
    for client in (phone, desk):
        assert client.get("/queue").status_code == 302
    assert other.get("/queue").status_code == 200
    event = session.exec(select(AuditEvent).where(AuditEvent.action == "sign_out_everywhere")).one()
    assert (event.user_id, event.team_id, event.target) == (
        user.id,
        user.team_id,
        f"user:{user.id}",
    )
    # Signing in again works, with a new session.
    assert sign_in(desk, user.email).status_code == 302
    assert len(rows_of(session, user)) == 3


def test_an_admin_ends_a_members_sessions_from_the_team_page(app, team_user, session) -> None:
    admin = team_user(role="admin")
    nurse = team_user(name=LONG_NAME)
    ward = browser(app, nurse)
    browser(app, nurse, SAFARI_IPHONE)
    admin_client = browser(app, admin)
    page = admin_client.get("/admin").get_data(as_text=True)
    assert "2 open sessions" in page
    assert f'action="/admin/users/{nurse.id}/sessions/end"' in page
    assert f'action="/admin/users/{admin.id}/sessions/end"' not in page  # own: account page
    response = post_form(admin_client, f"/admin/users/{nurse.id}/sessions/end", {}, page="/admin")
    assert response.status_code == 302 and response.headers["Location"] == "/admin"
    assert "2 open session(s) ended" in admin_client.get("/admin").get_data(as_text=True)
    assert {row.ended_reason for row in rows_of(session, nurse)} == {"ended_by_admin"}
    assert ward.get("/queue").status_code == 302
    assert admin_client.get("/queue").status_code == 200
    event = session.exec(select(AuditEvent).where(AuditEvent.action == "end_user_sessions")).one()
    assert (event.user_id, event.target) == (admin.id, f"user:{nurse.id}")


def test_only_an_admin_of_the_members_team_ends_their_sessions(app, team_user, session) -> None:
    nurse = team_user()
    ward = browser(app, nurse)
    colleague = browser(app, team_user())
    other_admin = browser(app, team_user("Hématologie — Saint-Luc", "admin"))
    forbidden = post_form(colleague, f"/admin/users/{nurse.id}/sessions/end", {})
    assert forbidden.status_code == 403
    not_found = post_form(other_admin, f"/admin/users/{nurse.id}/sessions/end", {})
    assert not_found.status_code == 404
    assert nurse.email not in not_found.get_data(as_text=True)
    unknown = post_form(other_admin, "/admin/users/999999/sessions/end", {})
    assert unknown.status_code == 404
    assert ward.get("/queue").status_code == 200
    assert {row.ended_reason for row in rows_of(session, nurse)} == {None}
    assert (
        session.exec(select(AuditEvent).where(AuditEvent.action == "end_user_sessions")).all() == []
    )


def test_deactivation_ends_every_session_in_the_same_transaction(
    app, team_user, session, clock
) -> None:
    admin = team_user(role="admin")
    nurse = team_user()
    ward = browser(app, nurse)
    browser(app, nurse, SAFARI_IPHONE)
    admin_client = browser(app, admin)
    clock.advance(minutes=3)
    response = post_form(admin_client, f"/admin/users/{nurse.id}/active", {"active": "0"}, "/admin")
    assert response.status_code == 302
    rows = rows_of(session, nurse)
    assert {(row.ended_reason, row.ended_at) for row in rows} == {("user_deactivated", clock.now)}
    assert not session.get(User, nurse.id).is_active
    assert ward.get("/queue").status_code == 302
    # Reactivated, the old sessions stay ended: the member signs in again.
    post_form(admin_client, f"/admin/users/{nurse.id}/active", {"active": "1"}, "/admin")
    assert ward.get("/queue").status_code == 302
    assert sign_in(ward, nurse.email).status_code == 302
    assert ward.get("/queue").status_code == 200
    assert len(rows_of(session, nurse)) == 3


def test_a_refused_deactivation_ends_no_session(app, team_user, session) -> None:
    admin = team_user(role="admin")
    admin_client = browser(app, admin)
    # The last admin cannot deactivate themselves: nothing changes, sessions included.
    response = post_form(admin_client, f"/admin/users/{admin.id}/active", {"active": "0"}, "/admin")
    assert response.status_code == 409
    assert {row.ended_reason for row in rows_of(session, admin)} == {None}
    assert admin_client.get("/queue").status_code == 200


def test_sessions_leave_no_id_email_or_agent_in_the_logs(
    app, team_user, session, caplog, clock
) -> None:
    caplog.set_level(logging.DEBUG)
    user = team_user()
    client = browser(app, user)
    with client.session_transaction() as cookie:
        session_id = cookie[SESSION_ID_KEY]
    post_form(client, "/account/sign-out-everywhere", {}, page="/account")
    other = browser(app, user)
    clock.advance(hours=1)
    other.get("/queue")  # ended as idle
    text = "\n".join(record.getMessage() for record in caplog.records)
    assert f"user {user.id}" in text
    for secret in (session_id, session_digest(session_id), user.email, "Firefox", PASSWORD):
        assert secret not in text


def test_the_login_form_still_works_in_a_tab_whose_session_was_refused(
    app, team_user, clock
) -> None:
    user = team_user()
    client = browser(app, user)
    token = csrf_of(client, "/queue")
    clock.advance(hours=1)
    assert client.get("/queue").status_code == 302
    # The sign-in form opened before (same token) still posts.
    response = client.post(
        "/login", data={"email": user.email, "password": PASSWORD, "csrf_token": token}
    )
    assert response.status_code == 302
    assert client.get("/queue").status_code == 200


def test_signing_in_again_in_the_same_browser_ends_the_previous_session(
    app, team_user, session
) -> None:
    first = team_user(name=LONG_NAME)
    second = team_user()
    client = browser(app, first)
    with client.session_transaction() as cookie:
        copied = dict(cookie)
    # Someone else signs in on the same shared computer without signing out first.
    assert sign_in(client, second.email).status_code == 302
    (old,) = rows_of(session, first)
    assert old.ended_reason == "replaced"
    assert [row.ended_reason for row in rows_of(session, second)] == [None]
    replay = app.test_client()
    with replay.session_transaction() as cookie:
        cookie.update(copied)
    assert replay.get("/queue").status_code == 302
    page = client.get("/account").get_data(as_text=True)
    assert LONG_NAME not in page and page.count("(this session)") == 1
