"""The data-rights pages on SQLite and PostgreSQL: admins download the record and erase it.

An admin reaches the page from the patient page, downloads the JSON record and the FHIR
Bundle (validated by ``fhir.resources``), is refused an erasure without typing ERASE, then
erases and sees the pseudonym to note; every step is in the audit trail. A nurse gets 403
everywhere (and no link), another team's admin a 404.
"""

from __future__ import annotations

import json

from fhir.resources.R4B.bundle import Bundle
from sqlmodel import select

from reminders.data.models import AuditEvent, OutboundMessage, Patient
from reminders.data.statuses import OutboxStatus
from tests.backend.dashboard.conftest import post_form
from tests.conftest import reread

NAME = "Marie-Thérèse Vandenbroucke-Delacroix"
TEAM = "Hématologie — Saint-Luc"


def text_of(response) -> str:
    return response.get_data(as_text=True)


def test_an_admin_downloads_the_record_and_erases_the_contact_details(
    client, session, signed_in, treated
) -> None:
    admin = signed_in(TEAM, "admin")
    patient, _ = treated(admin.team_id, display_name=NAME, hospital_ref="HUB-2026-004178")
    rights_url = f"/patients/{patient.id}/rights"
    assert rights_url in text_of(client.get(f"/patients/{patient.id}"))
    page = client.get(rights_url)
    assert page.status_code == 200 and "Type ERASE to confirm" in text_of(page)

    record = client.get(f"/patients/{patient.id}/record.json")
    assert record.status_code == 200 and record.mimetype == "application/json"
    assert "attachment" in record.headers["Content-Disposition"]
    assert record.headers["Cache-Control"] == "no-store"
    assert json.loads(text_of(record))["patient"]["display_name"] == NAME
    bundle = client.get(f"/patients/{patient.id}/record.fhir.json")
    assert bundle.mimetype == "application/fhir+json"
    Bundle.model_validate_json(text_of(bundle))

    refused = post_form(client, f"/patients/{patient.id}/erase", {"confirm": "erase"}, rights_url)
    assert refused.status_code == 422 and "type ERASE to confirm" in text_of(refused)
    assert reread(session).get(Patient, patient.id).display_name == NAME

    done = post_form(client, f"/patients/{patient.id}/erase", {"confirm": "ERASE"}, rights_url)
    assert done.status_code == 200, text_of(done)
    stored = reread(session).get(Patient, patient.id)
    assert stored.erased_at is not None and stored.display_name.startswith("erased-")
    assert f'id="pseudonym">{stored.display_name}<' in text_of(done)
    assert NAME not in text_of(done)
    assert not session.exec(
        select(OutboundMessage).where(
            OutboundMessage.patient_id == patient.id,
            OutboundMessage.status == OutboxStatus.PENDING,
            OutboundMessage.recipient == "patient",
        )
    ).all()
    again = client.get(rights_url)
    assert 'id="pseudonym"' not in text_of(again)
    assert "were erased on" in text_of(again) and 'name="confirm"' not in text_of(again)
    assert "contact details erased" in text_of(client.get(f"/patients/{patient.id}"))

    rows = session.exec(
        select(AuditEvent)
        .where(AuditEvent.patient_id == patient.id, AuditEvent.channel == "dashboard")
        .order_by(AuditEvent.id)
    ).all()
    assert [(r.action, r.target) for r in rows if r.action != "view_patient"] == [
        ("export_record", f"patient:{patient.id}:json"),
        ("export_record", f"patient:{patient.id}:fhir"),
        ("erase_contact_details", f"patient:{patient.id}"),
    ]
    assert all(r.user_id == admin.id for r in rows)


def test_nurses_get_403_and_other_teams_404(client, session, signed_in, team_user, treated) -> None:
    owner = team_user(TEAM, "admin")
    patient, _ = treated(owner.team_id, display_name=NAME)
    signed_in(TEAM, "nurse")
    assert f"/patients/{patient.id}/rights" not in text_of(client.get(f"/patients/{patient.id}"))
    for path in ("rights", "record.json", "record.fhir.json"):
        assert client.get(f"/patients/{patient.id}/{path}").status_code == 403, path
    erase = post_form(client, f"/patients/{patient.id}/erase", {"confirm": "ERASE"})
    assert erase.status_code == 403

    client.post("/logout", data={"csrf_token": ""})
    client.delete_cookie("session")
    signed_in("Oncologie — Mont-Godinne", "admin")
    assert client.get(f"/patients/{patient.id}/record.json").status_code == 404
    erase = post_form(client, f"/patients/{patient.id}/erase", {"confirm": "ERASE"})
    assert erase.status_code == 404
    assert reread(session).get(Patient, patient.id).display_name == NAME
