"""Issue 12, item 2: a copied session cookie opens nothing once the session has ended.

A browser signs in through the real form on a live server; a copy of its cookie is taken
(what an attacker with a shared computer, a proxy log or a stolen laptop has) and checked
to open the patient page. Then the session ends in each way a session can end (sign-out,
"sign out everywhere" from another device, an admin, a deactivation, idle and absolute
limits on the injected clock) and the copy is replayed: it is sent to the sign-in page
and sees no patient. Forged and unknown session ids, and another team's admin, get nowhere.
"""

from __future__ import annotations

import secrets

import pytest
import requests
from sqlmodel import Session, select

from backend.security import SESSION_ID_KEY
from reminders.data.models import AuditEvent, User, UserSession
from reminders.data.statuses import SessionEnd
from tests.conftest import Clock, reread
from tests.security.conftest import (
    LONG_NAME,
    PASSWORD,
    LiveServer,
    Ward,
    csrf_of,
    signed_in,
)

#: The session cookie's name (Flask's default, not changed by the app).
COOKIE = "session"
NURSE_NAME = "Anne-Sophie Vanderlinden-Dupont"


@pytest.fixture
def nurse_email(ward: Ward, make_user) -> str:
    """A nurse of the ward's team who signs in with :data:`PASSWORD`."""
    nurse, _ = make_user(
        team="Team A",
        role="nurse",
        password=PASSWORD,
        name=NURSE_NAME,
        email="anne-sophie.vanderlinden@hopital.example",
    )
    return nurse.email


def patient_url(live_server: LiveServer, ward: Ward) -> str:
    """The URL of the ward's patient page (it shows the patient's name)."""
    return live_server(f"/patients/{ward.ids['patient_id']}")


def copy_of(browser: requests.Session) -> str:
    """The value of the browser's session cookie, as an attacker would copy it."""
    value = browser.cookies.get(COOKIE)
    assert value, "the browser holds no session cookie"
    return value


def replay(live_server: LiveServer, ward: Ward, cookie: str) -> requests.Response:
    """Open the patient page with nothing but ``cookie`` (a fresh client, no redirects)."""
    return requests.get(
        patient_url(live_server, ward),
        cookies={COOKIE: cookie},
        allow_redirects=False,
        timeout=30,
    )


def assert_opens(live_server: LiveServer, ward: Ward, cookie: str) -> None:
    """The copy opens the patient page: what the later refusals take away."""
    response = replay(live_server, ward, cookie)
    assert response.status_code == 200, response.status_code
    assert LONG_NAME in response.text


def assert_refused(live_server: LiveServer, ward: Ward, cookie: str) -> None:
    """The copy is sent to the sign-in page, and nothing on the way names the patient."""
    response = replay(live_server, ward, cookie)
    assert response.status_code == 302, response.status_code
    assert response.headers["Location"].startswith("/login")
    assert LONG_NAME not in response.text
    followed = requests.get(patient_url(live_server, ward), cookies={COOKIE: cookie}, timeout=30)
    assert followed.status_code == 200 and followed.url.startswith(live_server("/login"))
    assert LONG_NAME not in followed.text
    assert "Sign in" in followed.text


def ended_reasons(session: Session, email: str) -> set[str | None]:
    """The end reasons of every session row of the user ``email``."""
    reread(session)
    user = session.exec(select(User).where(User.email == email)).one()
    rows = session.exec(select(UserSession).where(UserSession.user_id == user.id)).all()
    return {row.ended_reason for row in rows}


def test_a_copied_cookie_is_refused_after_sign_out(
    live_server: LiveServer, ward: Ward, session: Session
) -> None:
    browser, csrf = signed_in(live_server, ward)
    stolen = copy_of(browser)
    assert_opens(live_server, ward, stolen)
    out = browser.post(
        live_server("/logout"), data={"csrf_token": csrf}, allow_redirects=False, timeout=30
    )
    assert out.status_code == 302 and out.headers["Location"] == "/login"
    assert_refused(live_server, ward, stolen)
    assert ended_reasons(session, ward.admin.email) == {SessionEnd.SIGNED_OUT.value}
    # The signed-out browser itself is out too.
    assert browser.get(patient_url(live_server, ward), timeout=30).url.startswith(
        live_server("/login")
    )


def test_sign_out_everywhere_from_a_second_device_ends_the_first(
    live_server: LiveServer, ward: Ward, session: Session
) -> None:
    ward_phone, _ = signed_in(live_server, ward)
    stolen = copy_of(ward_phone)
    desk, _ = signed_in(live_server, ward)
    account = desk.get(live_server("/account"), timeout=30)
    assert account.status_code == 200
    assert account.text.count("(this session)") == 1
    assert_opens(live_server, ward, stolen)
    out = desk.post(
        live_server("/account/sign-out-everywhere"),
        data={"csrf_token": csrf_of(account.text)},
        allow_redirects=False,
        timeout=30,
    )
    assert out.status_code == 302 and out.headers["Location"] == "/login"
    assert_refused(live_server, ward, stolen)
    assert_refused(live_server, ward, copy_of(ward_phone))
    assert desk.get(patient_url(live_server, ward), timeout=30).url.startswith(
        live_server("/login")
    )
    assert ended_reasons(session, ward.admin.email) == {SessionEnd.SIGNED_OUT_EVERYWHERE.value}
    audit = session.exec(select(AuditEvent).where(AuditEvent.action == "sign_out_everywhere")).one()
    assert audit.user_id == ward.admin.id and audit.target == f"user:{ward.admin.id}"


def test_an_admin_ends_a_members_sessions(
    live_server: LiveServer, ward: Ward, session: Session, nurse_email: str
) -> None:
    nurse, _ = signed_in(live_server, ward, nurse_email)
    stolen = copy_of(nurse)
    assert_opens(live_server, ward, stolen)
    admin, _ = signed_in(live_server, ward)
    page = admin.get(live_server("/admin"), timeout=30)
    assert "1 open session" in page.text
    member_id = _user_id(session, nurse_email)
    ended = admin.post(
        live_server(f"/admin/users/{member_id}/sessions/end"),
        data={"csrf_token": csrf_of(page.text)},
        allow_redirects=False,
        timeout=30,
    )
    assert ended.status_code == 302 and ended.headers["Location"] == "/admin"
    assert_refused(live_server, ward, stolen)
    assert ended_reasons(session, nurse_email) == {SessionEnd.ENDED_BY_ADMIN.value}
    # The admin's own session goes on.
    assert admin.get(patient_url(live_server, ward), timeout=30).status_code == 200
    audit = session.exec(select(AuditEvent).where(AuditEvent.action == "end_user_sessions")).one()
    assert audit.user_id == ward.admin.id and audit.target == f"user:{member_id}"


def test_deactivating_a_member_ends_their_sessions_at_once(
    live_server: LiveServer, ward: Ward, session: Session, nurse_email: str
) -> None:
    nurse, _ = signed_in(live_server, ward, nurse_email)
    stolen = copy_of(nurse)
    assert_opens(live_server, ward, stolen)
    admin, csrf = signed_in(live_server, ward)
    member_id = _user_id(session, nurse_email)
    done = admin.post(
        live_server(f"/admin/users/{member_id}/active"),
        data={"csrf_token": csrf, "active": "0"},
        allow_redirects=False,
        timeout=30,
    )
    assert done.status_code == 302
    assert ended_reasons(session, nurse_email) == {SessionEnd.USER_DEACTIVATED.value}
    assert_refused(live_server, ward, stolen)


def test_idle_and_absolute_limits_on_the_injected_clock(
    live_server: LiveServer, ward: Ward, session: Session, clock: Clock
) -> None:
    idle, _ = signed_in(live_server, ward)
    idle_copy = copy_of(idle)
    busy, _ = signed_in(live_server, ward)
    busy_copy = copy_of(busy)
    clock.advance(minutes=29)
    assert_opens(live_server, ward, busy_copy)
    clock.advance(minutes=2)  # the first browser: 31 minutes without a request
    assert_refused(live_server, ward, idle_copy)
    # The second browser is used every 20 minutes, all shift long: ended after 12 hours.
    for _ in range(12 * 3 - 2):
        clock.advance(minutes=20)
        assert_opens(live_server, ward, busy_copy)
    clock.advance(minutes=20)  # 12 h 11 min after sign-in
    assert_refused(live_server, ward, busy_copy)
    assert ended_reasons(session, ward.admin.email) == {
        SessionEnd.IDLE.value,
        SessionEnd.EXPIRED.value,
    }


def test_forged_and_unknown_session_ids_are_refused(
    live_server: LiveServer, ward: Ward, session: Session
) -> None:
    browser, _ = signed_in(live_server, ward)
    genuine = copy_of(browser)
    assert_opens(live_server, ward, genuine)
    # Correctly signed cookies (an attacker holding the secret key) with ids no sign-in gave.
    serializer = live_server.app.session_interface.get_signing_serializer(live_server.app)
    row = session.exec(select(UserSession)).one()
    forged_ids = [
        secrets.token_urlsafe(32),
        "",
        "x" * 10_000,
        row.id_hash,  # the stored digest is not a session id
        str(row.id),
    ]
    for forged_id in forged_ids:
        cookie = serializer.dumps({SESSION_ID_KEY: forged_id, "csrf_token": "t"})
        assert_refused(live_server, ward, cookie)
    # The old cookie's content (a user id, instants) means nothing any more.
    old_style = serializer.dumps({"uid": ward.admin.id, "auth_at": 0, "seen_at": 9e9})
    assert_refused(live_server, ward, old_style)
    # A tampered cookie (signature broken) and plain garbage.
    assert_refused(live_server, ward, genuine[:-2] + ("AA" if genuine[-2:] != "AA" else "BB"))
    assert_refused(live_server, ward, "garbage")
    # None of this ended or harmed the genuine session.
    assert_opens(live_server, ward, genuine)


def test_another_teams_admin_cannot_end_a_teams_sessions(
    live_server: LiveServer, ward: Ward, session: Session, make_user, nurse_email: str
) -> None:
    nurse, _ = signed_in(live_server, ward, nurse_email)
    stolen = copy_of(nurse)
    other, _ = make_user(
        team="Hématologie — Saint-Luc",
        role="admin",
        password=PASSWORD,
        email="jean-baptiste@saint-luc.example",
    )
    intruder, csrf = signed_in(live_server, ward, other.email)
    for member_id in (_user_id(session, nurse_email), ward.admin.id):
        for path in (f"/admin/users/{member_id}/sessions/end", f"/admin/users/{member_id}/active"):
            response = intruder.post(
                live_server(path),
                data={"csrf_token": csrf, "active": "0"},
                allow_redirects=False,
                timeout=30,
            )
            assert response.status_code == 404, (path, response.status_code)
            assert NURSE_NAME not in response.text and nurse_email not in response.text
    # Nothing ended: the team's sessions go on, and no audit row claims otherwise.
    assert_opens(live_server, ward, stolen)
    assert ended_reasons(session, nurse_email) == {None}
    assert ended_reasons(session, ward.admin.email) == set()
    assert (
        session.exec(select(AuditEvent).where(AuditEvent.action == "end_user_sessions")).all() == []
    )
    # Their "sign out everywhere" ends their own sessions only.
    account = intruder.get(live_server("/account"), timeout=30)
    intruder.post(
        live_server("/account/sign-out-everywhere"),
        data={"csrf_token": csrf_of(account.text)},
        timeout=30,
    )
    assert_opens(live_server, ward, stolen)
    assert ended_reasons(session, other.email) == {SessionEnd.SIGNED_OUT_EVERYWHERE.value}


def _user_id(session: Session, email: str) -> int:
    reread(session)
    return session.exec(select(User).where(User.email == email)).one().id
