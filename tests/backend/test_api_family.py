"""Family contacts through the API: consent first, state, refusals naming the field, audit, team.

Issue 15, item 6, on SQLite and PostgreSQL.
"""

from __future__ import annotations

from typing import Any

import pytest
from flask.testing import FlaskClient
from sqlmodel import Session, select

from reminders.data.models import AuditEvent, FamilyContact, OutboundMessage
from tests.conftest import bearer, reread

URL = "/api/v1/patients/{}/family-contacts"
DAUGHTER = "Zoë Vandenbroucke-Delacroix"


def contact_body(**overrides: Any) -> dict[str, Any]:
    values = {
        "name": DAUGHTER,
        "phone": "0471 98 76 54",
        "language": "nl",
        "relationship": "dochter",
        "consent_method": "verbal",
    }
    return {**values, **overrides}


@pytest.fixture
def ward(make_user, make_patient) -> dict[str, Any]:
    nurse, token = make_user(team="Hématologie — Saint-Luc", name="Anne-Sophie Lambert")
    _, stranger = make_user(team="Team B")
    patient = make_patient(
        nurse.team_id, display_name="Marie-Thérèse Vandenbroucke-Delacroix", language="fr"
    )
    return {"nurse": nurse, "token": token, "stranger": stranger, "patient": patient}


def actions(session: Session) -> list[tuple[str, str | None]]:
    reread(session)
    rows = session.exec(
        select(AuditEvent).where(AuditEvent.action.like("%family%")).order_by(AuditEvent.id)
    ).all()
    return [(row.action, row.target) for row in rows]


def family_sms(session: Session) -> list[OutboundMessage]:
    reread(session)
    return list(
        session.exec(
            select(OutboundMessage)
            .where(OutboundMessage.recipient == "family")
            .order_by(OutboundMessage.id)
        ).all()
    )


def test_a_nurse_adds_a_contact_with_consent_changes_withdraws_records_and_removes_it(
    client: FlaskClient, session: Session, ward, clock
) -> None:
    pid, headers = ward["patient"].id, bearer(ward["token"])
    made = client.post(URL.format(pid), json=contact_body(), headers=headers)
    assert made.status_code == 201, made.json
    contact = made.json
    assert contact["phone"] == "+32471987654" and contact["name"] == DAUGHTER
    assert contact["state"] == "active" and contact["consent_method"] == "verbal"
    assert contact["consent_recorded_by"] == ward["nurse"].id
    cid = contact["id"]
    # They are told, in Dutch, what they will get and how to stop it.
    [info] = family_sms(session)
    assert (info.kind, info.to_phone, info.patient_id) == ("family_info", "+32471987654", pid)
    assert "Marie-Thérèse" in info.body and "STOP" in info.body and "zorgteam" in info.body

    listed = client.get(URL.format(pid), headers=headers)
    assert listed.status_code == 200 and [c["id"] for c in listed.json] == [cid]

    changed = client.patch(
        f"{URL.format(pid)}/{cid}", json={"copies_nudges": False}, headers=headers
    )
    assert changed.status_code == 200 and changed.json["copies_nudges"] is False

    clock.advance(minutes=5)
    withdrawn = client.post(f"{URL.format(pid)}/{cid}/consent/withdraw", headers=headers)
    assert withdrawn.status_code == 200 and withdrawn.json["state"] == "consent_withdrawn"
    again = client.post(f"{URL.format(pid)}/{cid}/consent/withdraw", headers=headers)
    assert again.status_code == 409

    clock.advance(minutes=5)
    recorded = client.post(
        f"{URL.format(pid)}/{cid}/consent", json={"method": "written"}, headers=headers
    )
    assert recorded.status_code == 200 and recorded.json["state"] == "active"
    assert recorded.json["consent_method"] == "written"
    assert recorded.json["consent_withdrawn_at"] is None
    twice = client.post(
        f"{URL.format(pid)}/{cid}/consent", json={"method": "verbal"}, headers=headers
    )
    assert twice.status_code == 409
    assert [m.kind for m in family_sms(session)] == ["family_info", "family_info"]

    removed = client.delete(f"{URL.format(pid)}/{cid}", headers=headers)
    assert removed.status_code == 200 and removed.json == {"id": cid, "removed": True}
    reread(session)
    assert session.exec(select(FamilyContact)).all() == []
    target = f"family_contact:{cid}"
    assert actions(session) == [
        ("add_family_contact", target),
        ("view_family_contacts", f"patient:{pid}"),
        ("update_family_contact", target),
        ("withdraw_family_consent", target),
        ("record_family_consent", target),
        ("remove_family_contact", target),
    ]


def test_no_contact_without_the_patients_consent_and_refusals_name_the_field(
    client: FlaskClient, session: Session, ward
) -> None:
    pid, headers = ward["patient"].id, bearer(ward["token"])
    no_consent = contact_body()
    del no_consent["consent_method"]
    refused = client.post(URL.format(pid), json=no_consent, headers=headers)
    assert refused.status_code == 422 and refused.json["field"] == "consent_method"
    unknown = client.post(URL.format(pid), json=contact_body(consent_method="nod"), headers=headers)
    assert unknown.status_code == 422 and unknown.json["field"] == "consent_method"
    bad_phone = client.post(URL.format(pid), json=contact_body(phone="12"), headers=headers)
    assert bad_phone.status_code == 422 and bad_phone.json["field"] == "phone"
    own = client.post(
        URL.format(pid), json=contact_body(phone=ward["patient"].phone), headers=headers
    )
    assert own.status_code == 422 and own.json["field"] == "phone"
    assert "patient's own number" in own.json["message"]
    assert client.post(URL.format(pid), json=contact_body(), headers=headers).status_code == 201
    listed = client.post(URL.format(pid), json=contact_body(phone="+32471987654"), headers=headers)
    assert listed.status_code == 409 and listed.json["field"] == "phone"
    nulled = client.patch(f"{URL.format(pid)}/1", json={"name": None}, headers=headers)
    assert nulled.status_code == 422 and nulled.json["field"] == "name"
    reread(session)
    assert len(session.exec(select(FamilyContact)).all()) == 1


def test_another_teams_patient_and_contact_are_a_404(
    client: FlaskClient, session: Session, ward
) -> None:
    pid = ward["patient"].id
    made = client.post(URL.format(pid), json=contact_body(), headers=bearer(ward["token"]))
    cid = made.json["id"]
    stranger = bearer(ward["stranger"])
    assert client.get(URL.format(pid), headers=stranger).status_code == 404
    assert client.delete(f"{URL.format(pid)}/{cid}", headers=stranger).status_code == 404
    assert (
        client.post(f"{URL.format(pid)}/{cid}/consent/withdraw", headers=stranger).status_code
        == 404
    )
    reread(session)
    assert session.get(FamilyContact, cid).consent_withdrawn_at is None
    assert ("refused_other_team", f"patient:{pid}") in [
        (row.action, row.target) for row in session.exec(select(AuditEvent)).all()
    ]
