"""Family-contact routes: list, add (with the patient's consent), change, remove; consent.

A contact gets copies of the patient's urgent advice and a nudge after two unanswered
check-ins only while the patient's consent stands and they have not replied STOP
(``state``). Each route reads the patient through the caller's team (another team's
patient is a 404), declares its audit action and leaves the commit to ``@audited``.
"""

from __future__ import annotations

from datetime import datetime

from sqlmodel import Session

from backend.api import api, current_user, default_region, responses, spec
from backend.api.auditing import audit, audited
from backend.api.patients import patient_list, patient_request
from backend.schemas_family import (
    ConsentIn,
    FamilyContactIn,
    FamilyContactOut,
    FamilyContactRemoved,
    FamilyContactUpdate,
)
from backend.serializers import from_attributes
from backend.services import family as family_service
from reminders.data.family_contacts import contact_state, contacts_of, get_contact
from reminders.data.models import FamilyContact, Patient
from reminders.data.statuses import AuditAction

TAGS = ["patients"]
PATH = "/patients/<int:patient_id>/family-contacts"
#: The answers of a change: 409 (discharged, number listed already, consent state), 422.
CHANGE = responses(HTTP_200=FamilyContactOut, HTTP_409=None, HTTP_422=None)


def contact_out(contact: FamilyContact) -> FamilyContactOut:
    """A contact with its state now."""
    return from_attributes(FamilyContactOut, contact, state=contact_state(contact))


def contact_request(
    patient_id: int, contact_id: int
) -> tuple[Session, Patient, FamilyContact, datetime]:
    """The request's session, the patient (through the caller's team), their contact, now."""
    session, patient, now = patient_request(patient_id)
    return session, patient, get_contact(session, patient.id, contact_id), now


def _contacts_out(session: Session, patient: Patient, now: datetime) -> list[FamilyContactOut]:
    return [contact_out(contact) for contact in contacts_of(session, patient.id)]


@api.get(PATH)
@spec.validate(resp=responses(HTTP_200=list[FamilyContactOut]), tags=TAGS)
@audited(AuditAction.VIEW_FAMILY_CONTACTS)
def list_family_contacts(patient_id: int):
    """The patient's family contacts, in the order they were added, each with its state."""
    return patient_list(patient_id, _contacts_out)


@api.post(PATH)
@spec.validate(
    json=FamilyContactIn,
    resp=responses(HTTP_201=FamilyContactOut, HTTP_409=None, HTTP_422=None),
    tags=TAGS,
)
@audited(AuditAction.ADD_FAMILY_CONTACT)
def add_family_contact(patient_id: int, json: FamilyContactIn):
    """Add a family contact with the patient's consent (``consent_method``), recorded now.

    422 naming ``phone`` for an invalid number or the patient's own; 409 for a number
    listed already, a sixth contact or a discharged patient. The contact is told by SMS
    what they will get and how to stop it.
    """
    session, patient, now = patient_request(patient_id)
    contact = family_service.add_contact(
        session, patient, json, current_user().id, now, region=default_region()
    )
    audit(patient.id, f"family_contact:{contact.id}")
    return contact_out(contact), 201


@api.patch(f"{PATH}/<int:contact_id>")
@spec.validate(json=FamilyContactUpdate, resp=CHANGE, tags=TAGS)
@audited(AuditAction.UPDATE_FAMILY_CONTACT)
def update_family_contact(patient_id: int, contact_id: int, json: FamilyContactUpdate):
    """Change a contact's name, number, language, relationship or which copies they get."""
    session, patient, contact, now = contact_request(patient_id, contact_id)
    family_service.update_contact(session, patient, contact, json, now, region=default_region())
    audit(patient.id, f"family_contact:{contact.id}")
    return contact_out(contact)


@api.delete(f"{PATH}/<int:contact_id>")
@spec.validate(resp=responses(HTTP_200=FamilyContactRemoved), tags=TAGS)
@audited(AuditAction.REMOVE_FAMILY_CONTACT)
def remove_family_contact(patient_id: int, contact_id: int):
    """Remove a contact: their number is deleted and nothing more goes to them."""
    session, patient, contact, _ = contact_request(patient_id, contact_id)
    family_service.remove_contact(session, contact)
    audit(patient.id, f"family_contact:{contact_id}")
    return FamilyContactRemoved(id=contact_id)


@api.post(f"{PATH}/<int:contact_id>/consent")
@spec.validate(json=ConsentIn, resp=CHANGE, tags=TAGS)
@audited(AuditAction.RECORD_FAMILY_CONSENT)
def record_family_consent(patient_id: int, contact_id: int, json: ConsentIn):
    """Record the patient's consent again after a withdrawal; 409 while it stands."""
    session, patient, contact, now = contact_request(patient_id, contact_id)
    family_service.record_consent(session, patient, contact, json.method, current_user().id, now)
    audit(patient.id, f"family_contact:{contact.id}")
    return contact_out(contact)


@api.post(f"{PATH}/<int:contact_id>/consent/withdraw")
@spec.validate(resp=CHANGE, tags=TAGS)
@audited(AuditAction.WITHDRAW_FAMILY_CONSENT)
def withdraw_family_consent(patient_id: int, contact_id: int):
    """The patient withdrew consent: nothing more goes to the contact; 409 if withdrawn."""
    session, patient, contact, now = contact_request(patient_id, contact_id)
    family_service.withdraw_consent(session, contact, current_user().id, now)
    audit(patient.id, f"family_contact:{contact.id}")
    return contact_out(contact)
