"""Pill confirmations: a TAKEN reply records adherence for the reminders it answers.

A TAKEN answers the newest pill reminder sent within :data:`PILL_CONFIRMATION_WINDOW`
and every reminder of the same round (sent within :data:`PILL_ROUND` of it), each
confirmed once.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import bindparam
from sqlalchemy.dialects import postgresql, sqlite
from sqlmodel import Session, select

from reminders.data.models import OutboundMessage, Patient, PillConfirmation
from reminders.data.statuses import ACCEPTED_OUTBOX_STATUSES

#: A TAKEN reply confirms a pill reminder sent within this window.
PILL_CONFIRMATION_WINDOW = timedelta(hours=12)
#: Pill reminders sent this close together are one round (08:00 cotrimoxazole and acyclovir).
PILL_ROUND = timedelta(minutes=30)
_RECENT_PILL_REMINDERS = (
    select(OutboundMessage)
    .where(
        OutboundMessage.patient_id == bindparam("patient_id"),
        OutboundMessage.expects == "taken",
        OutboundMessage.status.in_(ACCEPTED_OUTBOX_STATUSES),
        OutboundMessage.sent_at >= bindparam("since"),
    )
    .order_by(OutboundMessage.sent_at.desc())
)
# A reminder already confirmed (a second TAKEN, or two replies handled at once by two
# web workers) adds nothing: the unique (patient, reminder) pair decides in the insert,
# where a look-up first would let both replies pass it and fail the second at commit.
_PILL_TABLE = PillConfirmation.__table__
_INSERT_PILL_CONFIRMATIONS = {
    name: dialect.insert(_PILL_TABLE).on_conflict_do_nothing(
        index_elements=["patient_id", "event_key"]
    )
    for name, dialect in (("sqlite", sqlite), ("postgresql", postgresql))
}


def last_pill_reminder(session: Session, patient_id: int, now: datetime) -> OutboundMessage | None:
    """The newest pill reminder sent to the patient within the confirmation window."""
    return _recent_pill_reminders(session, patient_id, now).first()


def pill_round(session: Session, patient_id: int, newest: OutboundMessage) -> list[OutboundMessage]:
    """Every pill reminder of the same round as ``newest`` (one TAKEN answers them all)."""
    since = newest.sent_at - PILL_ROUND
    return [
        m
        for m in _recent_pill_reminders(session, patient_id, newest.sent_at).all()
        if m.sent_at >= since
    ]


def _recent_pill_reminders(session: Session, patient_id: int, now: datetime) -> Any:
    """Pill reminders sent within the confirmation window before ``now``, newest first."""
    return session.exec(
        _RECENT_PILL_REMINDERS,
        params={"patient_id": patient_id, "since": now - PILL_CONFIRMATION_WINDOW},
    )


def confirm_pill(session: Session, patient: Patient, pill: OutboundMessage, now: datetime) -> None:
    """Record adherence for every reminder of the round ``pill`` belongs to, once each."""
    rows = [
        {
            "patient_id": patient.id,
            "course_id": reminder.course_id,
            "event_key": reminder.dedupe_key,
            "confirmed_at": now,
        }
        for reminder in pill_round(session, patient.id, pill)
    ]
    if rows:
        session.execute(_INSERT_PILL_CONFIRMATIONS[session.get_bind().dialect.name], rows)
