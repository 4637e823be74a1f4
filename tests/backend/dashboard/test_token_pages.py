"""The API token pages: a user's own tokens (created and shown once, revoked), the team's for admins."""

from __future__ import annotations

import logging
import re

import pytest
from flask.testing import FlaskClient
from sqlmodel import Session, select

from reminders.data.models import ApiToken, AuditEvent, User
from tests.backend.dashboard.conftest import PASSWORD, csrf_of, post_form, sign_in
from tests.conftest import bearer, reread

LONG_NAME = "Marie-Françoise Van den Bossche-Lefèvre"
_SECRET = re.compile(r"mabc_[A-Za-z0-9_-]{43}")


def text(response) -> str:
    return response.get_data(as_text=True)


def _create(client: FlaskClient, name: str = "Ward 5 lab import", days: str = "30"):
    return post_form(client, "/account/tokens", {"name": name, "days": days}, "/account/tokens")


def _tokens_of(session: Session, user: User) -> list[ApiToken]:
    return reread(session).exec(select(ApiToken).where(ApiToken.user_id == user.id)).all()


def test_the_header_links_to_the_users_api_tokens(client: FlaskClient, signed_in) -> None:
    signed_in()
    assert 'href="/account/tokens"' in text(client.get("/queue"))


def test_a_new_token_is_shown_once_and_works(
    client: FlaskClient, signed_in, session: Session, caplog: pytest.LogCaptureFixture
) -> None:
    nurse = signed_in()
    with caplog.at_level(logging.DEBUG):
        created = _create(client, name=f"Intégration {LONG_NAME}"[:80])
    assert created.status_code == 201, text(created)
    assert created.headers["Cache-Control"] == "no-store"
    secrets = _SECRET.findall(text(created))
    assert len(set(secrets)) == 1, "the answer shows the new token (and no other)"
    secret = secrets[0]
    assert "shown only this once" in text(created)
    # It works on the API, as this user.
    answer = client.get("/api/v1/patients", headers=bearer(secret))
    assert answer.status_code == 200
    # Never again: not on the list page, not in the session cookie, not in the logs.
    listing = text(client.get("/account/tokens"))
    assert secret not in listing and secret[5:] not in listing
    assert secret[5:13] in listing  # the public prefix, to recognise it
    with client.session_transaction() as browser:
        assert secret not in repr(dict(browser))
    cookie = client.get_cookie("session")
    assert cookie is None or secret not in cookie.value
    assert secret not in caplog.text and secret[5:] not in caplog.text
    row = _tokens_of(session, nurse)[-1]
    assert row.name == f"Intégration {LONG_NAME}"[:80].strip()
    assert row.created_by_user_id == nurse.id
    audit = session.exec(select(AuditEvent).where(AuditEvent.action == "create_api_token")).all()
    assert [(e.user_id, e.target) for e in audit][-1] == (nurse.id, f"token:{row.id}")


def test_the_list_shows_name_prefix_dates_and_status_never_a_token(
    client: FlaskClient, signed_in, session: Session, clock
) -> None:
    nurse = signed_in()
    _create(client, name="Short-lived", days="1")
    clock.advance(days=2)
    sign_in(client, nurse.email)  # the session timed out meanwhile
    page = text(client.get("/account/tokens"))
    row = next(t for t in _tokens_of(session, nurse) if t.name == "Short-lived")
    assert "Short-lived" in page and f"mabc_{row.prefix}…" in page
    assert "expired" in page and "Tue 3 Mar 2026 10:00 UTC" in page  # created Mon 2 Mar + 1 day
    assert _SECRET.search(page) is None


@pytest.mark.parametrize(
    ("name", "days", "field"),
    [("", "30", "name"), ("x" * 81, "30", "name"), ("two\nlines", "30", "name"),
     ("ok", "0", "days"), ("ok", "366", "days"),
     ("ok", "thirty", "days"), ("ok", "", "days"), ("ok", "2.5", "days")],
)  # fmt: skip
def test_a_bad_form_is_a_422_next_to_the_field_and_writes_nothing(
    client: FlaskClient, signed_in, session: Session, name: str, days: str, field: str
) -> None:
    nurse = signed_in()
    before = len(_tokens_of(session, nurse))
    answer = _create(client, name=name, days=days)
    assert answer.status_code == 422
    assert f'id="token-f-{field}"' in text(answer) and 'aria-invalid="true"' in text(answer)
    assert _SECRET.search(text(answer)) is None
    assert len(_tokens_of(session, nurse)) == before


def test_a_name_already_live_is_a_409_on_the_form(
    client: FlaskClient, signed_in, session: Session
) -> None:
    nurse = signed_in()
    assert _create(client, name="Lab import").status_code == 201
    again = _create(client, name="Lab import")
    assert again.status_code == 409 and "already a live token" in text(again)
    assert _SECRET.search(text(again)) is None
    assert len(_tokens_of(session, nurse)) == 2  # the sign-in fixture's one, and the first


def test_a_user_revokes_their_own_token_and_it_stops_working(
    client: FlaskClient, signed_in, session: Session
) -> None:
    nurse = signed_in()
    secret = _SECRET.search(text(_create(client))).group(0)
    row = next(t for t in _tokens_of(session, nurse) if t.name == "Ward 5 lab import")
    answer = post_form(client, f"/account/tokens/{row.id}/revoke", {}, "/account/tokens")
    assert answer.status_code == 302 and answer.headers["Location"].endswith("/account/tokens")
    page = text(client.get("/account/tokens"))
    assert "revoked: it no longer works" in page and "revoked" in page
    refused = client.get("/api/v1/patients", headers=bearer(secret))
    assert refused.status_code == 401 and refused.json["message"] == "token revoked"
    revoked = (
        reread(session)
        .exec(select(AuditEvent).where(AuditEvent.action == "revoke_api_token"))
        .one()
    )
    assert (revoked.user_id, revoked.target) == (nurse.id, f"token:{row.id}")
    # Revoking again says so, and changes nothing.
    again = post_form(client, f"/account/tokens/{row.id}/revoke", {}, "/account/tokens")
    assert again.status_code == 302
    assert "already revoked" in text(client.get("/account/tokens"))


def test_a_user_cannot_revoke_a_colleagues_token_even_in_the_team(
    client: FlaskClient, signed_in, make_user, session: Session
) -> None:
    signed_in()
    colleague, colleague_token = make_user(team="Team A", role="admin")
    row = _tokens_of(session, colleague)[0]
    answer = post_form(client, f"/account/tokens/{row.id}/revoke", {}, "/account/tokens")
    assert answer.status_code == 404
    assert reread(session).get(ApiToken, row.id).revoked_at is None
    assert client.get("/api/v1/patients", headers=bearer(colleague_token)).status_code == 200


def test_only_admins_see_the_team_tokens_page(client: FlaskClient, signed_in) -> None:
    signed_in(role="nurse")
    assert client.get("/admin/tokens").status_code == 403


def test_an_admin_sees_and_revokes_the_tokens_of_their_team_only(
    client: FlaskClient, signed_in, make_user, session: Session
) -> None:
    admin = signed_in(role="admin")
    member, member_token = make_user(team="Team A", role="nurse", name=LONG_NAME)
    stranger, stranger_token = make_user(team="Team B", role="admin")
    page = text(client.get("/admin/tokens"))
    member_row = _tokens_of(session, member)[0]
    stranger_row = _tokens_of(session, stranger)[0]
    assert LONG_NAME in page and f"mabc_{member_row.prefix}…" in page
    assert stranger.email not in page and f"mabc_{stranger_row.prefix}" not in page
    assert _SECRET.search(page) is None
    assert 'href="/admin/tokens"' in text(client.get("/admin"))
    # Another team's token: 404, untouched.
    other = post_form(client, f"/admin/tokens/{stranger_row.id}/revoke", {}, "/admin/tokens")
    assert other.status_code == 404
    assert client.get("/api/v1/patients", headers=bearer(stranger_token)).status_code == 200
    # A member's token: revoked, audited as the admin's act.
    done = post_form(client, f"/admin/tokens/{member_row.id}/revoke", {}, "/admin/tokens")
    assert done.status_code == 302 and done.headers["Location"].endswith("/admin/tokens")
    assert client.get("/api/v1/patients", headers=bearer(member_token)).status_code == 401
    event = (
        reread(session)
        .exec(select(AuditEvent).where(AuditEvent.action == "revoke_api_token"))
        .one()
    )
    assert (event.user_id, event.team_id, event.target) == (
        admin.id,
        admin.team_id,
        f"token:{member_row.id}",
    )


def test_a_member_added_from_the_dashboard_gets_no_hidden_token(
    client: FlaskClient, signed_in, session: Session
) -> None:
    signed_in(role="admin")
    answer = post_form(
        client,
        "/admin/users",
        {"email": "nouvelle@hopital.example", "name": LONG_NAME, "role": "nurse",
         "password": PASSWORD},
        "/admin",
    )  # fmt: skip
    assert answer.status_code == 302
    member = (
        reread(session).exec(select(User).where(User.email == "nouvelle@hopital.example")).one()
    )
    assert _tokens_of(session, member) == []
    # They sign in and create their own.
    client.post("/logout", data={"csrf_token": csrf_of(client, "/queue")})
    assert sign_in(client, "nouvelle@hopital.example").status_code == 302
    assert _create(client).status_code == 201
    assert len(_tokens_of(session, member)) == 1
