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
from functools import wraps
from typing import Any

from flask import redirect, request, url_for
from sqlmodel import Session

from backend.api import default_region, request_now
from backend.dashboard.forms import FieldKind, FormState, validate_form
from backend.dashboard.web import (
    bp,
    current_user,
    flash_refusal,
    refuse_change,
    render_page,
    save_change,
    viewed_patient,
)
from backend.db import get_session
from backend.schemas_family import ConsentIn, FamilyContactIn, FamilyContactUpdate
from backend.services import family as family_service
from backend.services.patients import get_patient
from reminders.data.errors import InvalidInput, ServiceError
from reminders.data.family_contacts import (
    MAX_CONTACTS,
    contact_state,
    contacts_of,
    delivery_stops,
    get_contact,
)
from reminders.data.models import FamilyContact, Patient
from reminders.data.statuses import AuditAction, ConsentMethod
from reminders.optout import UNREACHABLE_CODES, BlockCause

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

#: A change of one contact: applies it and returns the sentence that confirms it.
ContactChange = Callable[[Session, Patient, FamilyContact], str]


@bp.get("/patients/<int:patient_id>/family")
def family(patient_id: int) -> Any:
    """The patient's family contacts and the form to add one."""
    return _family_page(viewed_patient(patient_id, AuditAction.VIEW_FAMILY_CONTACTS), NEW_CONTACT)


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


def contact_change(action: AuditAction) -> Callable[[ContactChange], Callable[..., Any]]:
    """Make a view of one contact's change out of ``change(session, patient, contact)``.

    The view reads the patient through the user's team and the contact through the
    patient; ``change`` applies the change and returns the sentence that confirms it. It is
    saved with its audit row; a refusal (a :class:`ServiceError`) is undone and said on the
    page, not as an error page. Either way the user goes back to the family page.
    """

    def decorate(change: ContactChange) -> Callable[..., Any]:
        @wraps(change)
        def view(patient_id: int, contact_id: int) -> Any:
            session = get_session()
            record = get_patient(session, current_user().team_id, patient_id)
            contact = get_contact(session, record.id, contact_id)
            to = url_for("dashboard.family", patient_id=record.id)
            try:
                message = change(session, record, contact)
            except ServiceError as error:
                flash_refusal(error)
                return redirect(to)
            return save_change(action, record.id, f"family_contact:{contact_id}", message, to)

        return view

    return decorate


@bp.post("/patients/<int:patient_id>/family/<int:contact_id>/copies")
@contact_change(AuditAction.UPDATE_FAMILY_CONTACT)
def family_copies(session: Session, record: Patient, contact: FamilyContact) -> str:
    """Choose which copies the contact gets (urgent advice, nudges)."""
    data, _ = validate_form(FamilyContactUpdate, request.form, COPY_FIELDS)
    family_service.update_contact(
        session, record, contact, data, request_now(), region=default_region()
    )
    return f"Copies for {contact.name} saved."


@bp.post("/patients/<int:patient_id>/family/<int:contact_id>/consent")
@contact_change(AuditAction.RECORD_FAMILY_CONSENT)
def record_family_consent(session: Session, record: Patient, contact: FamilyContact) -> str:
    """Record the patient's consent for the contact again (after a withdrawal)."""
    data, _ = validate_form(ConsentIn, request.form, {"method": "optional"})
    if data is None:
        raise InvalidInput("choose how the patient gave consent", field="method")
    family_service.record_consent(
        session, record, contact, data.method, current_user().id, request_now()
    )
    return f"Consent recorded: {contact.name} gets copies again."


@bp.post("/patients/<int:patient_id>/family/<int:contact_id>/consent/withdraw")
@contact_change(AuditAction.WITHDRAW_FAMILY_CONSENT)
def withdraw_family_consent(session: Session, record: Patient, contact: FamilyContact) -> str:
    """The patient withdrew consent: nothing more goes to the contact."""
    family_service.withdraw_consent(session, contact, current_user().id, request_now())
    return f"Consent withdrawn: nothing more goes to {contact.name}."


@bp.post("/patients/<int:patient_id>/family/<int:contact_id>/remove")
@contact_change(AuditAction.REMOVE_FAMILY_CONTACT)
def remove_family_contact(session: Session, record: Patient, contact: FamilyContact) -> str:
    """Delete the contact (and what was still to go to them)."""
    name = contact.name
    family_service.remove_contact(session, contact)
    return f"{name} removed: their number is deleted."


def _stop_notes(session: Session, contacts: list[FamilyContact]) -> dict[int, str]:
    """How each contact stopped by a delivery error stopped (the others replied STOP).

    ``opted_out_at`` records both (no column tells them apart): the page must not say
    "replied STOP" of a number that cannot get SMS, which the team has to check.
    """
    notes = {}
    for contact_id, alert in delivery_stops(session, contacts).items():
        code = alert.details.get("error_code") or ""
        if alert.details.get("cause") == BlockCause.CARRIER_OPT_OUT:
            notes[contact_id] = f"opted out at the carrier (Twilio {code})"
        else:
            what = UNREACHABLE_CODES.get(code, "unreachable number")
            notes[contact_id] = (
                f"the number cannot get SMS ({what}, Twilio {code}): check it with the patient"
            )
    return notes


def _family_page(record: Patient, form: FormState, status: int = 200, **context: Any) -> Any:
    session = get_session()
    contacts = contacts_of(session, record.id)
    return render_page(
        "family.html",
        status,
        p=record,
        form=form,
        contacts=contacts,
        stop_notes=_stop_notes(session, contacts),
        contact_state=contact_state,
        max_contacts=MAX_CONTACTS,
        consent_methods=[(m.value, m.value.capitalize()) for m in ConsentMethod],
        region=default_region(),
        **context,
    )


def _show_again(record: Patient) -> Any:
    return lambda state, status: _family_page(record, state, status)
