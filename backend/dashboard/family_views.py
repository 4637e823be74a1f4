"""The family contacts page of a patient: who gets copies, the patient's consent, changes.

* ``/patients/<id>/family``: the contacts (state, consent, copies) and a form to add one,
  which records the patient's consent with it (no contact without it).
* ``POST /patients/<id>/family``: add a contact.
* ``POST /patients/<id>/family/<contact_id>/consent`` and ``.../consent/withdraw``: record
  the patient's consent again, or withdraw it (the row stays, nothing more is sent).
* ``POST /patients/<id>/family/<contact_id>/copies``: which copies the contact gets.
* ``POST /patients/<id>/family/<contact_id>/remove``: delete the contact.

Every route reads the patient through the user's team (another team's patient is a 404,
kept in that team's audit trail); viewing and every change are audited with the API's
actions.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from flask import redirect, request, url_for
from sqlmodel import Session

from backend.api import default_region, request_now
from backend.dashboard.forms import FieldKind, FormState, validate_form
from backend.dashboard.web import (
    audit,
    bp,
    current_user,
    flash_refusal,
    refuse_change,
    render_page,
    save_change,
)
from backend.db import get_session
from backend.schemas_family import ConsentIn, FamilyContactIn, FamilyContactUpdate
from backend.services import family as family_service
from backend.services.patients import get_patient
from reminders.data.errors import ServiceError
from reminders.data.family_contacts import MAX_CONTACTS, contact_state, contacts_of, get_contact
from reminders.data.models import FamilyContact, Patient
from reminders.data.statuses import AuditAction, ConsentMethod

CONTACT_FIELDS: dict[str, FieldKind] = {
    "name": "text",
    "phone": "text",
    "language": "optional",
    "relationship": "text",
    "copies_urgent": "bool",
    "copies_nudges": "bool",
    "consent_method": "optional",
}
COPY_FIELDS: dict[str, FieldKind] = {"copies_urgent": "bool", "copies_nudges": "bool"}
#: A new contact's form starts with both copies ticked (what the patient usually asks for).
NEW_CONTACT = FormState(values={"copies_urgent": True, "copies_nudges": True})


@bp.get("/patients/<int:patient_id>/family")
def family(patient_id: int) -> Any:
    """The patient's family contacts and the form to add one."""
    record = get_patient(get_session(), current_user().team_id, patient_id)
    audit(AuditAction.VIEW_FAMILY_CONTACTS, record.id, f"patient:{record.id}")
    get_session().commit()
    return _family_page(record, NEW_CONTACT)


@bp.post("/patients/<int:patient_id>/family")
def add_family_contact(patient_id: int) -> Any:
    """Add a contact with the patient's consent, recorded now by the signed-in user."""
    session = get_session()
    record = get_patient(session, current_user().team_id, patient_id)
    data, state = validate_form(FamilyContactIn, request.form, CONTACT_FIELDS)
    if data is None:
        return _family_page(record, state, 422)
    try:
        contact = family_service.add_contact(
            session, record, data, current_user().id, request_now(), region=default_region()
        )
    except ServiceError as error:
        return refuse_change(error, state.values, CONTACT_FIELDS, _show_again(record))
    return save_change(
        AuditAction.ADD_FAMILY_CONTACT,
        record.id,
        f"family_contact:{contact.id}",
        f"{contact.name} added: they get an SMS saying what they will receive.",
        url_for("dashboard.family", patient_id=record.id),
    )


@bp.post("/patients/<int:patient_id>/family/<int:contact_id>/copies")
def family_copies(patient_id: int, contact_id: int) -> Any:
    """Choose which copies the contact gets (urgent advice, nudges)."""
    session, record, contact = _contact_of(patient_id, contact_id)
    data, _ = validate_form(FamilyContactUpdate, request.form, COPY_FIELDS)
    return _change(
        lambda: family_service.update_contact(
            session, record, contact, data, request_now(), region=default_region()
        ),
        AuditAction.UPDATE_FAMILY_CONTACT,
        record,
        contact_id,
        f"Copies for {contact.name} saved.",
    )


@bp.post("/patients/<int:patient_id>/family/<int:contact_id>/consent")
def record_family_consent(patient_id: int, contact_id: int) -> Any:
    """Record the patient's consent for the contact again (after a withdrawal)."""
    session, record, contact = _contact_of(patient_id, contact_id)
    data, _ = validate_form(ConsentIn, request.form, {"method": "optional"})
    if data is None:
        flash_refusal(ServiceError("choose how the patient gave consent", field="method"))
        return redirect(url_for("dashboard.family", patient_id=record.id))
    return _change(
        lambda: family_service.record_consent(
            session, record, contact, data.method, current_user().id, request_now()
        ),
        AuditAction.RECORD_FAMILY_CONSENT,
        record,
        contact_id,
        f"Consent recorded: {contact.name} gets copies again.",
    )


@bp.post("/patients/<int:patient_id>/family/<int:contact_id>/consent/withdraw")
def withdraw_family_consent(patient_id: int, contact_id: int) -> Any:
    """The patient withdrew consent: nothing more goes to the contact."""
    session, record, contact = _contact_of(patient_id, contact_id)
    return _change(
        lambda: family_service.withdraw_consent(session, contact, current_user().id, request_now()),
        AuditAction.WITHDRAW_FAMILY_CONSENT,
        record,
        contact_id,
        f"Consent withdrawn: nothing more goes to {contact.name}.",
    )


@bp.post("/patients/<int:patient_id>/family/<int:contact_id>/remove")
def remove_family_contact(patient_id: int, contact_id: int) -> Any:
    """Delete the contact (and what was still to go to them)."""
    session, record, contact = _contact_of(patient_id, contact_id)
    name = contact.name
    return _change(
        lambda: family_service.remove_contact(session, contact),
        AuditAction.REMOVE_FAMILY_CONTACT,
        record,
        contact_id,
        f"{name} removed: their number is deleted.",
    )


def _contact_of(patient_id: int, contact_id: int) -> tuple[Session, Patient, FamilyContact]:
    """The request's session, the patient (through the user's team) and their contact."""
    session = get_session()
    record = get_patient(session, current_user().team_id, patient_id)
    return session, record, get_contact(session, record.id, contact_id)


def _change(
    apply: Callable[[], object], action: AuditAction, record: Patient, contact_id: int, message: str
) -> Any:
    """Apply a change of one contact; a refusal is said on the page, not as an error page."""
    to = url_for("dashboard.family", patient_id=record.id)
    try:
        apply()
    except ServiceError as error:
        flash_refusal(error)
        return redirect(to)
    return save_change(action, record.id, f"family_contact:{contact_id}", message, to)


def _family_page(record: Patient, form: FormState, status: int = 200, **context: Any) -> Any:
    return render_page(
        "family.html",
        status,
        p=record,
        form=form,
        contacts=contacts_of(get_session(), record.id),
        contact_state=contact_state,
        max_contacts=MAX_CONTACTS,
        consent_methods=[(m.value, m.value.capitalize()) for m in ConsentMethod],
        region=default_region(),
        **context,
    )


def _show_again(record: Patient) -> Any:
    return lambda state, status: _family_page(record, state, status)
