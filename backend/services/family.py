"""A patient's family contacts: add, change, remove, and the patient's consent to share.

Consent is per contact (the patient may agree to tell their daughter and not their
brother) and comes first: a contact is added only with the consent recorded in the same
change (who, when, how), because keeping a third person's number and texting them about
the patient needs the patient's agreement. Withdrawing consent keeps the row, shown as
withdrawn, and stops every copy at once (pending ones are cancelled); it can be recorded
again. A contact whose consent stands is told by SMS what they will get and how to STOP.
Functions take ``session`` and ``now``; the caller audits and commits.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.exc import IntegrityError
from sqlmodel import Session

from backend.schemas_family import FamilyContactIn, FamilyContactUpdate
from backend.services.patients import normalize_phone
from reminders.data.errors import Conflict, InvalidInput
from reminders.data.family_contacts import (
    MAX_CONTACTS,
    cancel_pending_copies,
    contact_state,
    contacts_of,
)
from reminders.data.models import FamilyContact, Patient
from reminders.data.statuses import ConsentMethod, FamilyContactState
from reminders.family import send_family_info

LISTED_ALREADY = "this number is already one of the patient's family contacts"
PATIENTS_OWN = "this is the patient's own number: give the family member's"


def _contact_phone(
    session: Session, patient: Patient, raw: str, region: str, *, own_id: int | None = None
) -> str:
    """``raw`` as E.164, refused when it is the patient's or another contact's of theirs."""
    phone = normalize_phone(raw, region)
    if phone == patient.phone:
        raise InvalidInput(PATIENTS_OWN, field="phone")
    if any(c.phone == phone and c.id != own_id for c in contacts_of(session, patient.id)):
        raise Conflict(LISTED_ALREADY, field="phone")
    return phone


def _in_care(patient: Patient) -> None:
    if patient.discharged_at is not None:
        raise Conflict("this patient is discharged: nothing would reach their family")


def _flush(session: Session, contact: FamilyContact) -> None:
    """Write ``contact``; Conflict when the same number was listed meanwhile (the unique
    ``(patient, phone)`` decides a race; the savepoint keeps the transaction usable)."""
    try:
        with session.begin_nested():
            session.add(contact)
            session.flush()
    except IntegrityError as exc:
        raise Conflict(LISTED_ALREADY, field="phone") from exc


def add_contact(
    session: Session,
    patient: Patient,
    data: FamilyContactIn,
    user_id: int | None,
    now: datetime,
    *,
    region: str,
) -> FamilyContact:
    """Add a family contact with the patient's consent recorded now by ``user_id``.

    InvalidInput (``phone``) for the patient's own number or no valid number; Conflict for
    a discharged patient, a number listed already or more than :data:`MAX_CONTACTS`.
    """
    _in_care(patient)
    if len(contacts_of(session, patient.id)) >= MAX_CONTACTS:
        raise Conflict(
            f"this patient has {MAX_CONTACTS} family contacts: remove one first", field="phone"
        )
    contact = FamilyContact(
        patient_id=patient.id,
        name=data.name,
        phone=_contact_phone(session, patient, data.phone, region),
        language=data.language or patient.language,
        relationship=data.relationship,
        copies_urgent=data.copies_urgent,
        copies_nudges=data.copies_nudges,
        consent_method=data.consent_method,
        consent_recorded_at=now,
        consent_recorded_by=user_id,
        created_by=user_id,
        created_at=now,
        updated_at=now,
    )
    _flush(session, contact)
    send_family_info(session, patient, contact, now)
    return contact


def update_contact(
    session: Session,
    patient: Patient,
    contact: FamilyContact,
    data: FamilyContactUpdate,
    now: datetime,
    *,
    region: str,
) -> FamilyContact:
    """Change the fields set in ``data``; a new number is told what it will get.

    A new number starts without a STOP (the old number's STOP was that phone's), and the
    old number's unsent copies are cancelled.
    """
    _in_care(patient)
    changes = data.model_dump(exclude_unset=True)
    for key, value in changes.items():
        if value is None:
            raise InvalidInput("may not be null", field=key)
    new_phone = None
    if "phone" in changes:
        phone = _contact_phone(session, patient, changes.pop("phone"), region, own_id=contact.id)
        if phone != contact.phone:
            cancel_pending_copies(session, contact, "family contact's number changed")
            new_phone = phone
    for key, value in changes.items():
        setattr(contact, key, value)
    if new_phone is not None:
        contact.phone, contact.opted_out_at = new_phone, None
    contact.updated_at = now
    _flush(session, contact)
    if new_phone is not None and contact_state(contact) is FamilyContactState.ACTIVE:
        send_family_info(session, patient, contact, now)
    return contact


def record_consent(
    session: Session,
    patient: Patient,
    contact: FamilyContact,
    method: ConsentMethod,
    user_id: int | None,
    now: datetime,
) -> FamilyContact:
    """Record the patient's consent (again) for ``contact``; Conflict while it stands."""
    _in_care(patient)
    if contact.consent_recorded_at is not None and contact.consent_withdrawn_at is None:
        raise Conflict("the patient's consent for this contact is recorded already")
    contact.consent_method = method
    contact.consent_recorded_at, contact.consent_recorded_by = now, user_id
    contact.consent_withdrawn_at = contact.consent_withdrawn_by = None
    contact.updated_at = now
    _flush(session, contact)
    send_family_info(session, patient, contact, now)
    return contact


def withdraw_consent(
    session: Session, contact: FamilyContact, user_id: int | None, now: datetime
) -> FamilyContact:
    """The patient withdrew consent: nothing more goes to ``contact`` (unsent copies are
    cancelled); the row stays, shown as withdrawn. Conflict when it was withdrawn already."""
    if contact.consent_withdrawn_at is not None or contact.consent_recorded_at is None:
        raise Conflict("the patient's consent for this contact is withdrawn already")
    contact.consent_withdrawn_at, contact.consent_withdrawn_by = now, user_id
    contact.updated_at = now
    cancel_pending_copies(session, contact, "patient withdrew consent")
    _flush(session, contact)
    return contact


def remove_contact(session: Session, contact: FamilyContact) -> None:
    """Delete ``contact`` and cancel what was still to go to them (the audit row stays)."""
    cancel_pending_copies(session, contact, "family contact removed")
    session.delete(contact)
    session.flush()
