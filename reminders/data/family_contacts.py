"""A patient's family contacts as the engine and the web read them: state, look-ups, stops.

A contact gets copies only while the patient's consent to share with them stands (recorded,
not withdrawn) and they have not replied STOP (:func:`contact_state`). The care team's
changes (add, update, consent, remove) are web services (``backend.services.family``);
the engine reads who gets a copy (:func:`copy_recipients`), who a phone number is
(:func:`contacts_by_phone`), and records a contact's STOP and START. Functions take
``session`` (and ``now`` where they write); the caller commits.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from sqlalchemy import update
from sqlmodel import Session, col, select

from reminders.data.db import get_owned
from reminders.data.models import FamilyContact, OutboundMessage, Patient, Team
from reminders.data.statuses import FamilyContactState, OutboxStatus, Recipient

#: Contacts per patient: a few people of a family; more is a list to tidy up first.
MAX_CONTACTS = 5

#: What a copy is: of the urgent advice, or the nudge after two unanswered check-ins.
CopyKind = Literal["urgent", "nudge"]


def contact_state(contact: FamilyContact) -> FamilyContactState:
    """Whether ``contact`` gets copies now (consent withdrawn wins over a STOP)."""
    if contact.consent_recorded_at is None or contact.consent_withdrawn_at is not None:
        return FamilyContactState.CONSENT_WITHDRAWN
    if contact.opted_out_at is not None:
        return FamilyContactState.OPTED_OUT
    return FamilyContactState.ACTIVE


def contacts_of(session: Session, patient_id: int) -> list[FamilyContact]:
    """The patient's contacts, in the order they were added."""
    return list(
        session.exec(
            select(FamilyContact)
            .where(FamilyContact.patient_id == patient_id)
            .order_by(col(FamilyContact.created_at), col(FamilyContact.id))
        ).all()
    )


def get_contact(session: Session, patient_id: int, contact_id: int) -> FamilyContact:
    """The patient's contact ``contact_id``; NotFound when it is another patient's or none."""
    return get_owned(session, FamilyContact, contact_id, "family contact", patient_id=patient_id)


def copy_recipients(session: Session, patient_id: int, kind: CopyKind) -> list[FamilyContact]:
    """The contacts who get a copy of ``kind`` now: consent standing, no STOP, copies wanted."""
    wanted = FamilyContact.copies_urgent if kind == "urgent" else FamilyContact.copies_nudges
    return list(
        session.exec(
            select(FamilyContact)
            .where(
                FamilyContact.patient_id == patient_id,
                col(FamilyContact.consent_recorded_at).is_not(None),
                col(FamilyContact.consent_withdrawn_at).is_(None),
                col(FamilyContact.opted_out_at).is_(None),
                col(wanted).is_(True),
            )
            .order_by(col(FamilyContact.id))
        ).all()
    )


def contacts_by_phone(session: Session, phone: str) -> list[tuple[FamilyContact, Patient, Team]]:
    """Every contact with this E.164 number whose patient is active, with the patient and team.

    Whatever the contact's state: a STOP, a START or a message from them is theirs to send
    whether or not they get copies now. A discharged patient's contacts are nobody's.
    """
    rows = session.exec(
        select(FamilyContact, Patient, Team)
        .join(Patient, col(Patient.id) == FamilyContact.patient_id)
        .join(Team, col(Team.id) == Patient.team_id)
        .where(FamilyContact.phone == phone, col(Patient.discharged_at).is_(None))
        .order_by(col(FamilyContact.id))
    ).all()
    return [(contact, patient, team) for contact, patient, team in rows]


def cancel_pending_copies(session: Session, contact: FamilyContact, reason: str) -> None:
    """Cancel every unsent SMS to ``contact`` (a STOP, a withdrawn consent, a removal)."""
    outbox = OutboundMessage.__table__
    session.execute(
        update(outbox)
        .where(
            outbox.c.patient_id == contact.patient_id,
            outbox.c.recipient == Recipient.FAMILY,
            outbox.c.to_phone == contact.phone,
            outbox.c.status == OutboxStatus.PENDING,
        )
        .values(status=OutboxStatus.CANCELLED, error_reason=reason)
    )


def record_contact_opt_out(session: Session, contact: FamilyContact, now: datetime) -> None:
    """The contact replied STOP: their copies stop (the patient's SMS do not)."""
    if contact.opted_out_at is None:
        contact.opted_out_at = now
        contact.updated_at = now
        session.add(contact)
    cancel_pending_copies(session, contact, "family contact replied STOP")


def record_contact_opt_in(session: Session, contact: FamilyContact, now: datetime) -> None:
    """The contact replied START: copies go to them again (if the patient's consent stands)."""
    if contact.opted_out_at is not None:
        contact.opted_out_at = None
        contact.updated_at = now
        session.add(contact)
