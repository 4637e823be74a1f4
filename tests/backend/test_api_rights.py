"""The data-rights API on SQLite and PostgreSQL: admins of the patient's team only, audited.

The export answers the JSON record and the FHIR Bundle; the
erasure needs ``{"confirm": "ERASE"}``, answers the pseudonym once and refuses a second
time; a nurse gets 403 and leaves no row; another team's admin gets 404, kept in the
patient's team's trail.
"""

from __future__ import annotations

from fhir.resources.R4B.bundle import Bundle
from sqlmodel import select

from backend.api import API_PREFIX
from reminders.data.models import AuditEvent, OutboundMessage, Patient
from reminders.data.statuses import OutboxStatus
from tests.conftest import bearer, reread

NAME = "Marie-Thérèse Vandenbroucke-Delacroix"


def trail(session, patient_id):
    """(action, target, channel, user id) of the patient's audit rows, oldest first."""
    reread(session)
    rows = session.exec(
        select(AuditEvent).where(AuditEvent.patient_id == patient_id).order_by(AuditEvent.id)
    ).all()
    return [(r.action, r.target, r.channel, r.user_id) for r in rows]


def test_admins_export_the_record_in_both_formats_and_erase_it_once(
    client, session, make_user, treated
) -> None:
    admin, token = make_user(team="Hématologie — Saint-Luc", role="admin")
    patient, _ = treated(admin.team_id, display_name=NAME, hospital_ref="HUB-2026-004178")
    headers = bearer(token)
    url = f"{API_PREFIX}/patients/{patient.id}"
    pending = session.exec(
        select(OutboundMessage).where(
            OutboundMessage.patient_id == patient.id,
            OutboundMessage.status == OutboxStatus.PENDING,
        )
    ).all()

    record = client.get(f"{url}/record", headers=headers)
    assert record.status_code == 200, record.json
    assert record.json["format"] == "mab-companion/patient-record"
    assert record.json["format_version"] == 1
    assert record.json["patient"]["display_name"] == NAME
    assert len(record.json["prophylaxis_courses"]) == 2

    fhir = client.get(f"{url}/record/fhir", headers=headers)
    assert fhir.status_code == 200
    Bundle.model_validate(fhir.json)

    refused = client.post(f"{url}/erase", json={"confirm": "yes"}, headers=headers)
    assert refused.status_code == 422 and refused.json["field"] == "confirm"
    erased = client.post(f"{url}/erase", json={"confirm": "ERASE"}, headers=headers)
    assert erased.status_code == 200, erased.json
    pseudonym = erased.json["pseudonym"]
    assert pseudonym.startswith("erased-") and erased.json["cancelled_sms"] == len(pending)
    again = client.post(f"{url}/erase", json={"confirm": "ERASE"}, headers=headers)
    assert again.status_code == 409

    # Irreversible: not even by putting a number back.
    patched = client.patch(url, json={"phone": "+32 470 12 34 56"}, headers=headers)
    assert patched.status_code == 409
    shown = client.get(url, headers=headers).json
    assert shown["display_name"] == shown["phone"] == shown["hospital_ref"] == pseudonym
    assert trail(session, patient.id)[-4:] == [
        ("export_record", f"patient:{patient.id}:json", "api", admin.id),
        ("export_record", f"patient:{patient.id}:fhir", "api", admin.id),
        ("erase_contact_details", f"patient:{patient.id}", "api", admin.id),
        ("view_patient", f"patient:{patient.id}", "api", admin.id),
    ]
    # The record after erasure: the pseudonym, and the trail of who read and erased it.
    after = client.get(f"{url}/record", headers=headers).json
    assert after["patient"]["display_name"] == pseudonym
    assert after["patient"]["erased_at"] is not None
    assert ("erase_contact_details", admin.id, "admin") in {
        (row["action"], row["user_id"], row["user_role"]) for row in after["access_audit"]
    }


def test_nurses_and_other_teams_cannot(client, session, make_user, treated) -> None:
    admin, _ = make_user(team="Hématologie — Saint-Luc", role="admin")
    _, nurse_token = make_user(team="Hématologie — Saint-Luc", role="nurse")
    stranger, stranger_token = make_user(team="Oncologie — Mont-Godinne", role="admin")
    patient, _ = treated(admin.team_id, display_name=NAME)
    url = f"{API_PREFIX}/patients/{patient.id}"
    before = trail(session, patient.id)

    for method, path, body in (
        ("GET", "/record", None),
        ("GET", "/record/fhir", None),
        ("POST", "/erase", {"confirm": "ERASE"}),
    ):
        nurse = client.open(url + path, method=method, json=body, headers=bearer(nurse_token))
        assert nurse.status_code == 403, (path, nurse.json)
    assert trail(session, patient.id) == before

    other = client.post(f"{url}/erase", json={"confirm": "ERASE"}, headers=bearer(stranger_token))
    assert other.status_code == 404
    assert trail(session, patient.id)[-1] == (
        "refused_other_team",
        f"patient:{patient.id}",
        "api",
        stranger.id,
    )
    assert reread(session).get(Patient, patient.id).display_name == NAME
