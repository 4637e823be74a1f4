"""A patient's family contacts as the engine and the web read them: state, look-ups, stops.

A contact gets copies only while the patient's consent to share with them stands (recorded,
not withdrawn) and they have not replied STOP (:func:`contact_state`). The care team's
changes (add, update, consent, remove) are web services (``backend.services.family``);
the engine reads who gets a copy (:func:`copy_recipients`), who a phone number is
(:func:`contacts_by_phone`), and records a contact's STOP and START. A copy Twilio refuses
or fails because the contact opted out at the carrier or the number cannot get SMS stops
their copies the same way (``reminders.optout``); :func:`delivery_stops` tells the pages
which stops were such an error rather than the contact's STOP. Functions take ``session``
(and ``now`` where they write); the caller commits.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from sqlalchemy import update
from sqlmodel import Session, col, select

from reminders.data.db import get_owned
from reminders.data.models import Alert, FamilyContact, OutboundMessage, Patient, Team
from reminders.data.statuses import FamilyContactState, OutboxStatus, Recipient

#: Contacts per patient: a few people of a family; more is a list to tidy up first.
MAX_CONTACTS = 5

#: What a copy is: of the urgent advice, or the nudge after two unanswered check-ins.
CopyKind = Literal["urgent", "nudge"]

#: The alert kind of a copy to a family contact that did not arrive (``reminders.optout``,
#: ``reminders.delivery``): not the patient's ``sms_undeliverable``, which means the
#: companion can no longer reach the patient.
FAMILY_UNDELIVERABLE_KIND = "family_sms_undeliverable"


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


def contact_with_phone(session: Session, patient_id: int, phone: str) -> FamilyContact | None:
    """The patient's contact with this number (one at most), whatever their state; None if none.

    None too for a contact removed, or given a new number, since a copy went to ``phone``.
    """
    return session.exec(
        select(FamilyContact).where(
            FamilyContact.patient_id == patient_id, FamilyContact.phone == phone
        )
    ).first()


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


def record_contact_opt_out(
    session: Session,
    contact: FamilyContact,
    now: datetime,
    *,
    reason: str = "family contact replied STOP",
) -> bool:
    """The contact replied STOP (or their number refuses SMS): their copies stop, not the patient's.

    ``reason`` is written on the cancelled copies. True when this call stopped the
    contact, False when they were stopped already (the first stop's time is kept).
    """
    stopped_now = contact.opted_out_at is None
    if stopped_now:
        contact.opted_out_at = now
        contact.updated_at = now
        session.add(contact)
    cancel_pending_copies(session, contact, reason)
    return stopped_now


def delivery_stops(session: Session, contacts: list[FamilyContact]) -> dict[int, Alert]:
    """For each stopped contact whose stop was a delivery error, the alert that reported it.

    ``opted_out_at`` is also the stop of a carrier opt-out (Twilio 21610) or of a number
    that cannot get SMS (``reminders.optout``), and the table has no column for the cause:
    the alert raised with the stop holds it (``details``: ``family_contact_id``, ``cause``,
    ``error_code``). Such an alert is raised only by the call that stopped the contact, so
    one raised at or after ``opted_out_at`` is that stop's; a contact missing from the
    answer replied STOP.
    """
    stopped = {c.id: c for c in contacts if c.opted_out_at is not None}
    if not stopped:
        return {}
    since = min(c.opted_out_at for c in stopped.values() if c.opted_out_at is not None)
    alerts = session.exec(
        select(Alert)
        .where(
            col(Alert.patient_id).in_({c.patient_id for c in stopped.values()}),
            Alert.kind == FAMILY_UNDELIVERABLE_KIND,
            col(Alert.created_at) >= since,
        )
        .order_by(col(Alert.created_at), col(Alert.id))
    ).all()
    found: dict[int, Alert] = {}
    for alert in alerts:
        details = alert.details or {}
        contact = stopped.get(details.get("family_contact_id"))
        # A failure alert without a cause stopped nobody (a refusal for another reason).
        if contact is None or not details.get("cause") or contact.opted_out_at is None:
            continue
        if alert.created_at >= contact.opted_out_at:
            found[contact.id] = alert  # oldest first: the newest wins
    return found


def record_contact_opt_in(session: Session, contact: FamilyContact, now: datetime) -> None:
    """The contact replied START: copies go to them again (if the patient's consent stands)."""
    if contact.opted_out_at is not None:
        contact.opted_out_at = None
        contact.updated_at = now
        session.add(contact)
