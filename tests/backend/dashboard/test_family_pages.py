"""The family contacts page: consent first, the refusals in place, each change audited.

Over HTTP with the test client, on SQLite and PostgreSQL (the page's accessibility is
checked in Chromium by ``test_family_browser.py``).
"""

from __future__ import annotations

import html
from collections.abc import Callable

import pytest
from flask.testing import FlaskClient
from sqlmodel import Session, select

from reminders.data.models import AuditEvent, FamilyContact, OutboundMessage, Patient, Plan, User
from tests.backend.dashboard.conftest import post_form
from tests.conftest import reread

NAME = "Marie-Thérèse Vandenbroucke-Delacroix"
DAUGHTER = "Zoë Vandenbroucke"


@pytest.fixture
def ward(
    signed_in: Callable[..., User], treated: Callable[..., tuple[Patient, Plan]]
) -> tuple[User, Patient]:
    nurse = signed_in("Hématologie — Saint-Luc")
    patient, _ = treated(nurse.team_id, display_name=NAME, language="fr")
    return nurse, patient


def text(response) -> str:
    return response.get_data(as_text=True)


def contact_form(**overrides: str) -> dict[str, str]:
    values = {
        "name": DAUGHTER,
        "phone": "0471 98 76 54",
        "relationship": "dochter",
        "language": "nl",
        "copies_urgent": "on",
        "copies_nudges": "on",
        "consent_method": "verbal",
    }
    return {**values, **overrides}


def test_a_nurse_adds_a_contact_with_consent_and_manages_it(
    client: FlaskClient, session: Session, ward
) -> None:
    nurse, patient = ward
    page_url = f"/patients/{patient.id}/family"
    assert f'href="{page_url}"' in text(client.get(f"/patients/{patient.id}"))
    empty = client.get(page_url)
    assert empty.status_code == 200 and "No family contact yet" in text(empty)

    added = post_form(client, page_url, contact_form(), page_url)
    assert added.status_code == 302
    shown = text(client.get(page_url))
    assert DAUGHTER in shown and "+32471987654" in shown and "verbal" in shown
    contact = reread(session).exec(select(FamilyContact)).one()
    assert (contact.consent_recorded_by, contact.language) == (nurse.id, "nl")
    info = session.exec(select(OutboundMessage).where(OutboundMessage.kind == "family_info")).one()
    assert info.to_phone == "+32471987654" and info.recipient == "family"

    contact_id = contact.id
    base = f"{page_url}/{contact_id}"
    assert post_form(client, f"{base}/copies", {"copies_urgent": "on"}, page_url).status_code == 302
    assert reread(session).get(FamilyContact, contact.id).copies_nudges is False
    assert post_form(client, f"{base}/consent/withdraw", {}, page_url).status_code == 302
    withdrawn = text(client.get(page_url))
    assert "consent withdrawn" in withdrawn and "Record consent" in withdrawn
    assert post_form(client, f"{base}/consent", {"method": "written"}, page_url).status_code == 302
    assert reread(session).get(FamilyContact, contact.id).consent_method == "written"
    assert post_form(client, f"{base}/remove", {}, page_url).status_code == 302
    assert reread(session).exec(select(FamilyContact)).all() == []
    rows = session.exec(
        select(AuditEvent).where(AuditEvent.action.like("%family%")).order_by(AuditEvent.id)
    ).all()
    # Every view (each form reads its token from the page) and every change, on the pages.
    changes = [r.action for r in rows if r.action != "view_family_contacts"]
    assert changes == [
        "add_family_contact",
        "update_family_contact",
        "withdraw_family_consent",
        "record_family_consent",
        "remove_family_contact",
    ]
    assert {r.channel for r in rows} == {"dashboard"} and len(rows) > len(changes)
    assert {r.target for r in rows if r.action in changes} == {f"family_contact:{contact_id}"}
    assert {r.patient_id for r in rows} == {patient.id}


def test_no_contact_is_added_without_consent_or_with_the_patients_own_number(
    client: FlaskClient, session: Session, ward
) -> None:
    _, patient = ward
    page_url = f"/patients/{patient.id}/family"
    refused = post_form(client, page_url, contact_form(consent_method=""), page_url)
    assert refused.status_code == 422
    assert 'id="family-f-consent_method-error"' in text(refused)
    assert DAUGHTER in text(refused)  # what was typed is kept
    own = post_form(client, page_url, contact_form(phone=patient.phone), page_url)
    assert own.status_code == 422 and "patient's own number" in html.unescape(text(own))
    assert 'id="family-f-phone-error"' in text(own)
    assert reread(session).exec(select(FamilyContact)).all() == []
