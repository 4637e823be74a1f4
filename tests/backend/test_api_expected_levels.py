"""Expected levels through the API: set, list, end; refusals name the field; audited; team-scoped.

Issue 14, item 7 (hazard H-55), on SQLite and PostgreSQL.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from flask.testing import FlaskClient
from sqlalchemy import func
from sqlmodel import Session, select

from reminders.conversations import handle_inbound_sms
from reminders.core.clinical_rules import clinical_rules
from reminders.data.models import AuditEvent, ExpectedLevel, SymptomReport
from tests.conftest import FIXED_NOW, bearer, reread

NURSE = "Marie-Françoise Van den Bossche-Lefèvre"
REASON = "rituximab dose 1 this morning: slight fever expected"
FEVER = clinical_rules().fever
URL = "/api/v1/patients/{}/expected-levels"


def body(**overrides: Any) -> dict[str, Any]:
    values = {
        "up_to_c": 37.8,
        "expires_at": (FIXED_NOW + timedelta(hours=24)).isoformat(),
        "reason": REASON,
    }
    return {**values, **overrides}


@pytest.fixture
def ward(make_user, make_patient) -> dict[str, Any]:
    nurse, token = make_user(team="Hématologie — Saint-Luc", name=NURSE)
    _, stranger = make_user(team="Team B")
    patient = make_patient(nurse.team_id, display_name="Anne-Sophie Dubois-Verhaegen")
    return {"nurse": nurse, "token": token, "stranger": stranger, "patient": patient}


def audit_rows(session: Session, action: str) -> list[AuditEvent]:
    reread(session)
    return list(session.exec(select(AuditEvent).where(AuditEvent.action == action)).all())


def level_count(session: Session) -> int:
    reread(session)
    return session.exec(select(func.count()).select_from(ExpectedLevel)).one()


def test_a_nurse_notes_a_level_lists_it_and_ends_it_each_step_audited(
    client: FlaskClient, session: Session, ward, clock
) -> None:
    pid, headers = ward["patient"].id, bearer(ward["token"])
    made = client.post(URL.format(pid), json=body(), headers=headers)
    assert made.status_code == 201, made.json
    level = made.json
    assert (level["up_to_c"], level["reason"], level["noted_by"]) == (37.8, REASON, NURSE)
    assert level["state"] == "in_force" and level["ended_at"] is None
    [row] = audit_rows(session, "set_expected_level")
    assert (row.patient_id, row.target, row.channel) == (
        pid,
        f"expected_level:{level['id']}",
        "api",
    )
    assert row.user_id == ward["nurse"].id

    again = client.post(URL.format(pid), json=body(up_to_c=37.6), headers=headers)
    assert again.status_code == 409 and "end it" in again.json["message"]

    clock.advance(hours=2)
    ended = client.post(URL.format(pid) + "/end", headers=headers)
    assert ended.status_code == 200, ended.json
    assert ended.json["state"] == "ended" and ended.json["ended_by"] == NURSE
    assert ended.json["ended_at"].startswith("2026-03-02T12:00")
    [row] = audit_rows(session, "end_expected_level")
    assert (row.patient_id, row.target) == (pid, f"expected_level:{level['id']}")
    assert client.post(URL.format(pid) + "/end", headers=headers).status_code == 409

    listed = client.get(URL.format(pid), headers=headers)
    assert listed.status_code == 200
    assert [(item["id"], item["state"]) for item in listed.json] == [(level["id"], "ended")]
    assert len(audit_rows(session, "view_expected_levels")) == 1
    # No health data in the trail: ids and actions only.
    rows = session.exec(select(AuditEvent)).all()
    assert {r.action for r in rows} >= {"set_expected_level", "end_expected_level"}
    dumped = " ".join(f"{r.action} {r.target}" for r in rows)
    assert "rituximab" not in dumped and "37.8" not in dumped and NURSE not in dumped


def test_a_level_expires_by_itself(client: FlaskClient, ward, clock) -> None:
    pid, headers = ward["patient"].id, bearer(ward["token"])
    client.post(URL.format(pid), json=body(), headers=headers)
    clock.advance(hours=24)
    assert client.get(URL.format(pid), headers=headers).json[0]["state"] == "expired"
    assert client.post(URL.format(pid) + "/end", headers=headers).status_code == 409
    # A new one may be noted once the old one expired.
    assert (
        client.post(
            URL.format(pid),
            json=body(expires_at=(clock.now + timedelta(hours=6)).isoformat()),
            headers=headers,
        ).status_code
        == 201
    )


@pytest.mark.parametrize(
    ("overrides", "field", "words"),
    [
        ({"up_to_c": FEVER.threshold_c}, "up_to_c", "below 38.0 C"),
        ({"up_to_c": 38.6}, "up_to_c", "below 38.0 C"),
        ({"up_to_c": 37.4}, "up_to_c", "at least 37.5 C"),
        ({"up_to_c": 37.85}, "up_to_c", "one decimal"),
        ({"up_to_c": "37.8 C"}, "up_to_c", ""),
        ({"expires_at": (FIXED_NOW - timedelta(hours=1)).isoformat()}, "expires_at", "future"),
        ({"expires_at": (FIXED_NOW + timedelta(days=8)).isoformat()}, "expires_at", "7 days"),
        ({"expires_at": "2026-03-03T08:00:00"}, "expires_at", "time zone offset"),
        ({"expires_at": "9999-12-31T23:59:59-12:00"}, "expires_at", ""),
        ({"reason": ""}, "reason", "why"),
        ({"reason": "x" * 501}, "reason", ""),
        ({"up_to_c": None}, "up_to_c", ""),
    ],
)
def test_bad_input_is_refused_naming_the_field_and_writes_nothing(
    client: FlaskClient, session: Session, ward, overrides, field, words
) -> None:
    response = client.post(
        URL.format(ward["patient"].id), json=body(**overrides), headers=bearer(ward["token"])
    )
    assert response.status_code == 422, response.json
    assert response.json["field"] == field and words in response.json["message"]
    assert level_count(session) == 0 and audit_rows(session, "set_expected_level") == []


def test_a_missing_field_is_refused(client: FlaskClient, ward) -> None:
    for name in ("up_to_c", "expires_at", "reason"):
        values = body()
        del values[name]
        response = client.post(
            URL.format(ward["patient"].id), json=values, headers=bearer(ward["token"])
        )
        assert response.status_code == 422 and response.json["field"] == name


def test_another_teams_patient_is_a_404_kept_in_the_owners_trail(
    client: FlaskClient, session: Session, ward
) -> None:
    pid = ward["patient"].id
    client.post(URL.format(pid), json=body(), headers=bearer(ward["token"]))
    stranger = bearer(ward["stranger"])
    for method, url, json in (
        ("POST", URL.format(pid), body(up_to_c=37.6)),
        ("POST", URL.format(pid) + "/end", None),
        ("GET", URL.format(pid), None),
    ):
        response = client.open(url, method=method, json=json, headers=stranger)
        assert response.status_code == 404, (method, url, response.json)
    reread(session)
    [level] = session.exec(select(ExpectedLevel)).all()
    assert level.ended_at is None and level.up_to_c == 37.8
    refused = audit_rows(session, "refused_other_team")
    assert len(refused) == 3
    assert {(r.team_id, r.patient_id) for r in refused} == {(ward["nurse"].team_id, pid)}
    assert client.get(URL.format(999999), headers=stranger).status_code == 404


def test_a_discharged_patient_gets_no_level(client: FlaskClient, ward) -> None:
    pid, headers = ward["patient"].id, bearer(ward["token"])
    discharged = client.post(
        f"/api/v1/patients/{pid}/discharge", json={"reason": "moved"}, headers=headers
    )
    assert discharged.status_code == 200
    assert client.post(URL.format(pid), json=body(), headers=headers).status_code == 409


def test_a_level_set_through_the_api_quiets_the_next_sms_reading(
    app, client: FlaskClient, session: Session, ward
) -> None:
    patient, headers = ward["patient"], bearer(ward["token"])
    assert client.post(URL.format(patient.id), json=body(), headers=headers).status_code == 201
    result = handle_inbound_sms(
        session,
        provider_sid="SMexpected1",
        from_phone=patient.phone,
        body="37.7",
        now=FIXED_NOW + timedelta(hours=1),
    )
    session.commit()
    assert result.reply and "measure again" not in result.reply
    [report] = session.exec(select(SymptomReport)).all()
    assert f"expected: {REASON} (noted by {NURSE})" in report.summary
    reports = client.get(f"/api/v1/patients/{patient.id}/reports", headers=headers).json
    assert [r["temperature_c"] for r in reports] == [37.7]
