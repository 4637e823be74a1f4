"""The on-call API: rota, on call now, escalation policy and one's own profile.

Admins change the rota and the policy, every member reads them; another team's shift is
a 404 like one that does not exist; each request leaves its audit row (and a refused one
none); local times are the team's, across the DST change. SQLite and PostgreSQL.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from flask.testing import FlaskClient
from sqlalchemy import func
from sqlmodel import Session, select

from reminders.data.models import AuditEvent, OnCallShift, Team, User
from tests.conftest import bearer, reread

API = "/api/v1"
ANNE = "Dr Anne-Sophie Vandenbroucke-Lefèvre"
TEAM = "Hématologie — Saint-Luc"


@pytest.fixture
def ward(make_user: Callable[..., Any], session: Session) -> dict[str, Any]:
    """An admin, a nurse with a phone (Anne) and an admin of another team, with their tokens."""
    admin, admin_token = make_user(team=TEAM, role="admin", name="Marie-Françoise Lefèvre")
    anne, anne_token = make_user(team=TEAM, role="nurse", name=ANNE, phone="+32 470 11 22 33")
    stranger, stranger_token = make_user(
        team="Onco-hématologie — CHU Liège", role="admin", phone="+32 470 99 88 77"
    )
    return {
        "admin": bearer(admin_token),
        "anne": bearer(anne_token),
        "stranger": bearer(stranger_token),
        "anne_id": anne.id,
        "stranger_id": stranger.id,
        "team_id": admin.team_id,
    }


def rows(session: Session) -> list[tuple[str, str | None, str]]:
    reread(session)
    found = session.exec(select(AuditEvent).order_by(AuditEvent.id)).all()
    return [(r.action, r.target, r.channel) for r in found if r.action != "create_api_token"]


def shift_count(session: Session) -> int:
    return reread(session).exec(select(func.count()).select_from(OnCallShift)).one()


def test_an_admin_puts_a_nurse_on_call_across_the_dst_change_and_everyone_reads_it(
    client: FlaskClient, session: Session, ward: dict[str, Any]
) -> None:
    made = client.post(
        f"{API}/oncall/shifts",
        json={
            "user_id": ward["anne_id"],
            "role": "primary",
            "starts_at": "2026-03-28T20:00",
            "ends_at": "2026-03-29T02:30",
        },
        headers=ward["admin"],
    )
    assert made.status_code == 201, made.json
    saved = made.json["shift"]
    assert saved["user_name"] == ANNE and saved["covers"] is True
    assert (saved["starts_at"], saved["ends_at"]) == (
        "2026-03-28T19:00:00Z",
        "2026-03-29T01:00:00Z",
    )
    assert saved["ends_local"] == "2026-03-29T03:00:00+02:00"
    assert "02:30 does not exist" in made.json["notes"][0]
    rota = client.get(f"{API}/oncall/shifts?from=2026-03-28&to=2026-03-29", headers=ward["anne"])
    assert rota.status_code == 200
    assert rota.json["timezone"] == "Europe/Brussels" and rota.json["from"] == "2026-03-28"
    assert [s["id"] for s in rota.json["shifts"]] == [saved["id"]]
    # Not in the default window (14 days from Monday 2 March).
    assert client.get(f"{API}/oncall/shifts", headers=ward["anne"]).json["shifts"] == []
    assert rows(session)[-3:] == [
        ("edit_oncall_rota", f"shift:{saved['id']}", "api"),
        ("view_oncall", "rota:list", "api"),
        ("view_oncall", "rota:list", "api"),
    ]


def test_on_call_now_names_the_primary_and_the_gaps_without_phone_numbers(
    client: FlaskClient, ward: dict[str, Any]
) -> None:
    client.post(
        f"{API}/oncall/shifts",
        json={
            "user_id": ward["anne_id"],
            "role": "primary",
            "starts_at": "2026-03-02T08:00:00+01:00",
            "ends_at": "2026-03-02T20:00:00+01:00",
        },
        headers=ward["admin"],
    )
    now = client.get(f"{API}/oncall/now", headers=ward["anne"])
    assert now.status_code == 200
    assert now.json["primary"] == {
        "user_id": ward["anne_id"],
        "name": ANNE,
        "until": "2026-03-02T19:00:00Z",
    }
    assert now.json["backup"] is None and now.json["fallback_phone"] is None
    assert now.json["gaps"] == {"primary": "2026-03-02T19:00:00Z", "backup": "2026-03-02T10:00:00Z"}
    assert "Nobody is backup now." in now.json["warnings"]
    assert "+32470112233" not in now.get_data(as_text=True)


def test_only_admins_change_the_rota_and_the_policy_and_refusals_leave_no_row(
    client: FlaskClient, session: Session, ward: dict[str, Any]
) -> None:
    body = {
        "user_id": ward["anne_id"],
        "role": "backup",
        "starts_at": "2026-03-03T08:00",
        "ends_at": "2026-03-03T20:00",
    }
    shift_id = client.post(f"{API}/oncall/shifts", json=body, headers=ward["admin"]).json["shift"][
        "id"
    ]
    before = rows(session)
    policy = {
        "steps": [{"after_minutes": 0, "target": "fallback", "channels": ["sms"]}],
        "repeat_every_minutes": 5,
    }
    refused = [
        client.post(f"{API}/oncall/shifts", json=body, headers=ward["anne"]),
        client.patch(
            f"{API}/oncall/shifts/{shift_id}", json={"role": "primary"}, headers=ward["anne"]
        ),
        client.delete(f"{API}/oncall/shifts/{shift_id}", headers=ward["anne"]),
        client.put(f"{API}/oncall/policy", json=policy, headers=ward["anne"]),
        client.delete(f"{API}/oncall/policy", headers=ward["anne"]),
    ]
    assert [r.status_code for r in refused] == [403] * 5
    assert refused[0].json == {
        "error": "forbidden",
        "message": "only an admin of the team can change this",
    }
    assert rows(session) == before and shift_count(session) == 1
    # Every member reads the policy.
    assert client.get(f"{API}/oncall/policy", headers=ward["anne"]).json["is_default"] is True


def test_another_teams_shift_is_a_404_like_one_that_does_not_exist(
    client: FlaskClient, session: Session, ward: dict[str, Any]
) -> None:
    body = {
        "user_id": ward["anne_id"],
        "role": "primary",
        "starts_at": "2026-03-03T08:00",
        "ends_at": "2026-03-03T20:00",
    }
    shift_id = client.post(f"{API}/oncall/shifts", json=body, headers=ward["admin"]).json["shift"][
        "id"
    ]
    before = rows(session)
    for method, json in (("PATCH", {"role": "backup"}), ("DELETE", None)):
        theirs = client.open(
            f"{API}/oncall/shifts/{shift_id}", method=method, json=json, headers=ward["stranger"]
        )
        nobody = client.open(
            f"{API}/oncall/shifts/987654", method=method, json=json, headers=ward["stranger"]
        )
        assert (
            (theirs.status_code, theirs.json)
            == (nobody.status_code, nobody.json)
            == (
                404,
                {"error": "not_found", "message": "no such shift"},
            )
        )
    # Nor can another team's admin put this team's nurse on their rota.
    stolen = client.post(f"{API}/oncall/shifts", json=body, headers=ward["stranger"])
    assert stolen.status_code == 422 and stolen.json["field"] == "user_id"
    assert client.get(f"{API}/oncall/shifts", headers=ward["stranger"]).json["shifts"] == []
    assert reread(session).get(OnCallShift, shift_id).role == "primary"
    assert rows(session) == [*before, ("view_oncall", "rota:list", "api")]  # the list only


@pytest.mark.parametrize(
    ("body", "status", "field"),
    [
        ({"ends_at": "2026-03-03T07:00"}, 422, "ends_at"),
        ({"ends_at": "2026-03-12T08:00"}, 422, "ends_at"),  # more than 7 days
        ({"starts_at": "0001-01-01T00:00"}, 422, "starts_at"),
        ({"ends_at": "9999-12-31T23:59:59-12:00"}, 422, "ends_at"),
        ({"role": "chief"}, 422, "role"),
        ({"user_id": "2"}, 422, "user_id"),  # a string is not an id
        ({"user_id": 987654}, 422, "user_id"),
        ({"user_id": "admin"}, 422, "user_id"),
    ],
)
def test_a_bad_shift_is_refused_naming_its_field(
    client: FlaskClient, session: Session, ward: dict[str, Any], body: dict, status: int, field: str
) -> None:
    valid = {
        "user_id": ward["anne_id"],
        "role": "primary",
        "starts_at": "2026-03-03T08:00",
        "ends_at": "2026-03-03T20:00",
    }
    response = client.post(f"{API}/oncall/shifts", json={**valid, **body}, headers=ward["admin"])
    assert response.status_code == status, response.json
    assert response.json["field"].split(".")[0] == field
    assert shift_count(session) == 0


def test_a_clinician_without_a_phone_cannot_be_put_on_call(
    client: FlaskClient, session: Session, ward: dict[str, Any]
) -> None:
    admin_id = (
        reread(session)
        .exec(select(User.id).where(User.role == "admin", User.team_id == ward["team_id"]))
        .one()
    )
    response = client.post(
        f"{API}/oncall/shifts",
        json={
            "user_id": admin_id,
            "role": "primary",
            "starts_at": "2026-03-03T08:00",
            "ends_at": "2026-03-03T20:00",
        },
        headers=ward["admin"],
    )
    assert response.status_code == 409
    assert response.json["field"] == "user_id"
    assert "could not be paged" in response.json["message"]


def test_the_policy_is_put_refused_and_reset_by_an_admin(
    client: FlaskClient, session: Session, ward: dict[str, Any]
) -> None:
    own = {
        "steps": [
            {"after_minutes": 0, "target": "primary", "channels": ["sms", "voice"]},
            {"after_minutes": 10, "target": "fallback", "channels": ["voice"]},
        ],
        "repeat_every_minutes": 10,
    }
    saved = client.put(f"{API}/oncall/policy", json=own, headers=ward["admin"])
    assert saved.status_code == 200
    assert {k: saved.json[k] for k in own} == own and saved.json["is_default"] is False
    late_first = {**own, "steps": [{**own["steps"][0], "after_minutes": 3}, own["steps"][1]]}
    refused = client.put(f"{API}/oncall/policy", json=late_first, headers=ward["admin"])
    assert refused.status_code == 422 and refused.json["field"] == "steps[0].after_minutes"
    no_fallback = {**own, "steps": own["steps"][:1]}
    refused = client.put(f"{API}/oncall/policy", json=no_fallback, headers=ward["admin"])
    assert refused.status_code == 422 and refused.json["field"] == "steps"
    assert reread(session).get(Team, ward["team_id"]).escalation_policy == own
    reset = client.delete(f"{API}/oncall/policy", headers=ward["admin"])
    assert reset.status_code == 200 and reset.json["is_default"] is True
    assert reread(session).get(Team, ward["team_id"]).escalation_policy is None
    team_id = ward["team_id"]
    assert [r for r in rows(session) if r[0] == "update_escalation_policy"] == [
        ("update_escalation_policy", f"policy:team:{team_id}", "api")
    ] * 2


def test_a_user_sets_their_own_phone_and_language_and_nobody_elses(
    client: FlaskClient, session: Session, ward: dict[str, Any]
) -> None:
    mine = client.patch(
        f"{API}/me", json={"phone": "0470 55 66 77", "language": "fr"}, headers=ward["admin"]
    )
    assert mine.status_code == 200
    assert (mine.json["phone"], mine.json["language"]) == ("+32470556677", "fr")
    taken = client.patch(f"{API}/me", json={"phone": "+32470556677"}, headers=ward["anne"])
    assert taken.status_code == 409 and taken.json["field"] == "phone"
    assert (
        client.patch(f"{API}/me", json={"language": "de"}, headers=ward["anne"]).status_code == 422
    )
    assert client.patch(f"{API}/me", json={"user_id": 1}, headers=ward["anne"]).status_code == 422
    cleared = client.patch(f"{API}/me", json={"phone": None}, headers=ward["anne"])
    assert cleared.status_code == 200 and cleared.json["phone"] is None
    assert cleared.json["language"] == "en"  # not given: unchanged
    admin = (
        reread(session)
        .exec(select(User).where(User.role == "admin", User.team_id == ward["team_id"]))
        .one()
    )
    assert admin.phone == "+32470556677"
    profile_rows = [r for r in rows(session) if r[0] == "update_profile"]
    assert [r[1] for r in profile_rows] == [f"user:{admin.id}", f"user:{ward['anne_id']}"]
    assert "+32470556677" not in repr(rows(session))
