"""The on-call pages: "on call now" on the queue, the rota and policy pages for admins, /account.

Forms need the session's CSRF token; bad input is refused in place (422/409), never a
500; every change leaves the API's audit row with the "dashboard" channel. SQLite and
PostgreSQL.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import datetime
from typing import Any

import pytest
from flask.testing import FlaskClient
from sqlmodel import Session, select

from backend.services.oncall import add_shift
from reminders.data.models import AuditEvent, OnCallShift, Team, User
from tests.backend.dashboard.conftest import post_form, sign_in
from tests.conftest import FIXED_NOW, reread

ANNE = "Dr Anne-Sophie Vandenbroucke-Lefèvre"
BRAM = "Bram Van den Heuvel-Dubois"
TEAM = "Hématologie — Saint-Luc"


@pytest.fixture
def ward(session: Session, team_user: Callable[..., User]) -> dict[str, Any]:
    """An admin, Anne (physician) and Bram (nurse) with phones; a clinician of another team."""
    admin = team_user(TEAM, "admin", name="Marie-Françoise Lefèvre")
    anne = team_user(TEAM, "physician", name=ANNE, phone="+32 470 11 22 33")
    bram = team_user(TEAM, "nurse", name=BRAM, phone="+32 470 22 33 44")
    stranger = team_user("Onco-hématologie — CHU Liège", "admin", phone="+32 470 99 88 77")
    team = session.get(Team, admin.team_id)
    team.oncall_phone = "+3227641111"
    session.commit()
    return {"admin": admin, "anne": anne, "bram": bram, "stranger": stranger, "team": team}


def put_on_call(session: Session, ward: dict[str, Any], who: str, role: str, start, end):
    session.commit()  # no read transaction left open: SQLite would refuse this write
    made, _ = add_shift(
        session,
        ward["team"],
        user_id=ward[who].id,
        role=role,
        starts_at=start,
        ends_at=end,
        actor=None,
        now=FIXED_NOW,
    )
    session.commit()
    return made


def text(response: Any) -> str:
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", response.get_data(as_text=True)))


def audit_rows(session: Session) -> list[tuple[str, str | None, str]]:
    reread(session)
    rows = session.exec(select(AuditEvent).order_by(AuditEvent.id)).all()
    # Sign-ins and the queue's own rows (the CSRF token is read from a page) aside.
    return [
        (r.action, r.target, r.channel)
        for r in rows
        if r.channel == "dashboard" and r.action not in ("login", "list_alerts")
    ]


def test_the_queue_says_who_is_on_call_now_with_the_backup_and_the_fallback(
    client: FlaskClient, session: Session, ward: dict[str, Any]
) -> None:
    put_on_call(session, ward, "anne", "primary", datetime(2026, 3, 2, 8), datetime(2026, 3, 2, 20))
    put_on_call(session, ward, "bram", "backup", datetime(2026, 3, 2, 8), datetime(2026, 3, 3, 8))
    sign_in(client, ward["bram"].email)
    page = text(client.get("/queue"))
    assert (
        f"On call now {ANNE} (until Mon 2 Mar 20:00) , backup {BRAM} (until Tue 3 Mar 08:00) ; "
        "fallback +3227641111" in page
    )
    assert "Nobody is primary from Mon 2 Mar 20:00 CET." in page
    assert 'href="tel:+3227641111"' in client.get("/queue").get_data(as_text=True)


def test_the_queue_warns_when_nobody_is_primary(
    client: FlaskClient, session: Session, ward: dict[str, Any]
) -> None:
    sign_in(client, ward["bram"].email)
    html = client.get("/queue").get_data(as_text=True)
    assert "oncall-missing" in html
    assert "Nobody is primary" in text(client.get("/queue"))
    assert "Nobody is primary now." in html


def test_nurses_cannot_open_or_post_the_admin_pages(
    client: FlaskClient, session: Session, ward: dict[str, Any]
) -> None:
    made = put_on_call(
        session, ward, "anne", "primary", datetime(2026, 3, 3, 8), datetime(2026, 3, 3, 20)
    )
    sign_in(client, ward["bram"].email)
    for path in ("/admin/oncall", "/admin/escalation"):
        assert client.get(path).status_code == 403
    for path in (
        "/admin/oncall/shifts",
        f"/admin/oncall/shifts/{made.id}/delete",
        "/admin/oncall/timezone",
        "/admin/escalation",
        "/admin/escalation/reset",
    ):
        assert post_form(client, path, {"timezone": "UTC"}).status_code == 403, path
    assert reread(session).get(OnCallShift, made.id) is not None
    assert audit_rows(session) == []


def test_an_admin_adds_a_shift_across_the_dst_change_and_sees_it_in_the_rota(
    client: FlaskClient, session: Session, ward: dict[str, Any]
) -> None:
    sign_in(client, ward["admin"].email)
    page = client.get("/admin/oncall")
    assert page.status_code == 200
    assert f"{BRAM}</option>" in page.get_data(as_text=True)
    assert "Marie-Françoise Lefèvre (no phone)</option>" in page.get_data(as_text=True)
    added = post_form(
        client,
        "/admin/oncall/shifts",
        {
            "user_id": str(ward["anne"].id),
            "role": "primary",
            "starts_at": "2026-03-28T20:00",
            "ends_at": "2026-03-29T02:30",
        },
        "/admin/oncall",
    )
    assert added.status_code == 302, text(added)
    shift = reread(session).exec(select(OnCallShift)).one()
    shift_id = shift.id
    assert shift.ends_at.isoformat() == "2026-03-29T01:00:00+00:00"
    rota = text(client.get("/admin/oncall?from=2026-03-28"))
    assert "02:30 does not exist on Sun 29 Mar 2026" in rota
    assert "Shift added: primary from Sat 28 Mar 20:00 CET to Sun 29 Mar 03:00 CEST." in rota
    assert f"Sat 28 Mar 20:00 – Sun 29 Mar 03:00 primary {ANNE}" in rota
    assert audit_rows(session) == [("edit_oncall_rota", f"shift:{shift_id}", "dashboard")]
    removed = post_form(client, f"/admin/oncall/shifts/{shift_id}/delete", {}, "/admin/oncall")
    assert removed.status_code == 302
    assert reread(session).get(OnCallShift, shift_id) is None
    assert "Shift removed." in text(client.get("/admin/oncall"))


@pytest.mark.parametrize(
    ("change", "status", "field", "message"),
    [
        ({"ends_at": "2026-03-03T07:00"}, 422, "ends_at", "The shift must end after it starts."),
        ({"starts_at": "0001-01-01T08:00"}, 422, "starts_at", "between 1900-01-01"),
        ({"ends_at": "tomorrow"}, 422, "ends_at", "Enter a date and time."),
        ({"user_id": ""}, 422, "user_id", "This field is required."),
        ({"role": "chief"}, 422, "role", "Choose one of the options."),
        ({"user": "admin"}, 409, "user_id", "has no phone number on their profile"),
        ({"user": "stranger"}, 422, "user_id", "No such member of your team."),
    ],
)
def test_a_bad_shift_is_refused_in_place_and_nothing_is_saved(
    client: FlaskClient,
    session: Session,
    ward: dict[str, Any],
    change: dict[str, str],
    status: int,
    field: str,
    message: str,
) -> None:
    sign_in(client, ward["admin"].email)
    form = {
        "user_id": str(ward["anne"].id),
        "role": "backup",
        "starts_at": "2026-03-03T08:00",
        "ends_at": "2026-03-03T20:00",
    }
    change = dict(change)  # the parameters are shared by the SQLite and PostgreSQL runs
    if "user" in change:
        form["user_id"] = str(ward[change.pop("user")].id)
    refused = post_form(client, "/admin/oncall/shifts", {**form, **change}, "/admin/oncall")
    assert refused.status_code == status
    html = refused.get_data(as_text=True)
    assert f'id="shift-f-{field}-error"' in html and message in html
    assert 'aria-invalid="true"' in html
    assert reread(session).exec(select(OnCallShift)).all() == []


def test_another_teams_shift_is_not_found_from_the_pages(
    client: FlaskClient, session: Session, ward: dict[str, Any], team_user
) -> None:
    made = put_on_call(
        session, ward, "anne", "primary", datetime(2026, 3, 3, 8), datetime(2026, 3, 3, 20)
    )
    other_admin = team_user("Onco-hématologie — CHU Liège", "admin")
    sign_in(client, other_admin.email)
    refused = post_form(client, f"/admin/oncall/shifts/{made.id}/delete", {}, "/admin/oncall")
    assert refused.status_code == 404
    assert reread(session).get(OnCallShift, made.id) is not None
    assert ANNE not in client.get("/admin/oncall").get_data(as_text=True)


def test_the_rota_time_zone_is_changed_or_refused_in_place(
    client: FlaskClient, session: Session, ward: dict[str, Any]
) -> None:
    sign_in(client, ward["admin"].email)
    refused = post_form(
        client, "/admin/oncall/timezone", {"timezone": "Europe/Atlantis"}, "/admin/oncall"
    )
    assert refused.status_code == 422 and 'id="zone-f-timezone-error"' in refused.get_data(
        as_text=True
    )
    done = post_form(
        client, "/admin/oncall/timezone", {"timezone": "Europe/Paris"}, "/admin/oncall"
    )
    assert done.status_code == 302
    assert reread(session).get(Team, ward["team"].id).timezone == "Europe/Paris"
    assert audit_rows(session) == [("edit_oncall_rota", f"team:{ward['team'].id}", "dashboard")]


def test_an_admin_edits_and_resets_the_escalation_policy(
    client: FlaskClient, session: Session, ward: dict[str, Any]
) -> None:
    sign_in(client, ward["admin"].email)
    page = client.get("/admin/escalation")
    assert page.status_code == 200 and "The team follows the default policy" in text(page)
    html = page.get_data(as_text=True)
    assert 'id="f-step-3-target"' in html and 'id="f-step-5-after_minutes"' in html  # 2 empty rows
    form = {
        "step-0-after_minutes": "0",
        "step-0-target": "primary",
        "step-0-channels": ["sms", "voice"],
        "step-1-after_minutes": "",
        "step-1-target": "primary",
        "step-2-after_minutes": "10",
        "step-2-target": "backup",
        "step-2-channels": "voice",
        "step-3-after_minutes": "10",
        "step-3-target": "fallback",
        "step-3-channels": "sms",
        "repeat_every_minutes": "10",
    }
    refused = post_form(client, "/admin/escalation", form, "/admin/escalation")
    assert refused.status_code == 422
    html = refused.get_data(as_text=True)
    # The error names the form's row (the third step typed is row 4 of the form).
    assert 'id="f-step-3-after_minutes-error"' in html
    assert "Step 4: after (minutes): Must be later than the step before." in html
    assert 'value="10"' in html and "checked" in html  # what was typed is kept
    assert reread(session).get(Team, ward["team"].id).escalation_policy is None
    saved = post_form(
        client, "/admin/escalation", {**form, "step-3-after_minutes": "15"}, "/admin/escalation"
    )
    assert saved.status_code == 302
    assert reread(session).get(Team, ward["team"].id).escalation_policy == {
        "steps": [
            {"after_minutes": 0, "target": "primary", "channels": ["sms", "voice"]},
            {"after_minutes": 10, "target": "backup", "channels": ["voice"]},
            {"after_minutes": 15, "target": "fallback", "channels": ["sms"]},
        ],
        "repeat_every_minutes": 10,
    }
    assert "The team follows its own policy." in text(client.get("/admin/escalation"))
    no_fallback = {k: v for k, v in form.items() if not k.startswith("step-3")}
    refused = post_form(client, "/admin/escalation", no_fallback, "/admin/escalation")
    assert refused.status_code == 422 and "must page the fallback number" in text(refused)
    assert post_form(client, "/admin/escalation/reset", {}, "/admin/escalation").status_code == 302
    assert reread(session).get(Team, ward["team"].id).escalation_policy is None
    team_id = ward["team"].id
    assert [r for r in audit_rows(session) if r[0] == "update_escalation_policy"] == [
        ("update_escalation_policy", f"policy:team:{team_id}", "dashboard")
    ] * 2


def test_a_user_sets_their_phone_and_language_on_their_account_page(
    client: FlaskClient, session: Session, ward: dict[str, Any]
) -> None:
    admin = ward["admin"]
    sign_in(client, admin.email)
    page = client.get("/account")
    assert page.status_code == 200 and 'id="profile-f-phone"' in page.get_data(as_text=True)
    bad = post_form(client, "/account/profile", {"phone": "12", "language": "fr"}, "/account")
    assert bad.status_code == 422 and 'id="profile-f-phone-error"' in bad.get_data(as_text=True)
    taken = post_form(
        client, "/account/profile", {"phone": "+32 470 11 22 33", "language": "fr"}, "/account"
    )
    assert taken.status_code == 409 and "already on another user" in text(taken)
    done = post_form(
        client, "/account/profile", {"phone": "0470 55 66 77", "language": "nl"}, "/account"
    )
    assert done.status_code == 302
    stored = reread(session).get(User, admin.id)
    assert (stored.phone, stored.language) == ("+32470556677", "nl")
    assert 'value="+32470556677"' in client.get("/account").get_data(as_text=True)
    assert ("update_profile", f"user:{admin.id}", "dashboard") in audit_rows(session)
    # Someone on the rota keeps a phone.
    sign_in(client, ward["anne"].email)
    put_on_call(session, ward, "anne", "backup", datetime(2026, 3, 3, 8), datetime(2026, 3, 3, 20))
    kept = post_form(client, "/account/profile", {"phone": "", "language": "en"}, "/account")
    assert kept.status_code == 409 and "on the on-call rota" in text(kept)
    assert reread(session).get(User, ward["anne"].id).phone == "+32470112233"
