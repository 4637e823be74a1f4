"""An incoming SMS as the steps that answer it see it.

The stored message (:class:`StoredInbound`), the key of its stored answer
(:func:`reply_key`), the answer's text (:func:`answer`), and the one way a message no
rule can read reaches the care team (:func:`forward_free_text`). Shared by the routing
of a reply (``reminders.conversations``) and the check-in steps (``reminders.checkins``).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import bindparam, update
from sqlmodel import Session

from reminders.core.parser import ParsedReply
from reminders.data.alerts import raise_alert
from reminders.data.models import InboundMessage
from reminders.rendering import PatientContext, render_for

#: An answer to a reply: its template (the stored outbound row's kind) and its text.
Answer = tuple[str, str]

_INBOUND_TABLE = InboundMessage.__table__
_UPDATE_INBOUND_CHECKIN = (
    update(_INBOUND_TABLE)
    .where(_INBOUND_TABLE.c.id == bindparam("inbound_pk"))
    .values(checkin_id=bindparam("new_checkin_id"))
)


@dataclass
class StoredInbound:
    """The stored incoming message, as the rest of a reply needs it."""

    id: int
    provider_sid: str
    body: str
    checkin_id: int | None

    def link_checkin(self, session: Session, checkin_id: int) -> None:
        """Attach the message to the check-in it opened (an unprompted report)."""
        session.execute(
            _UPDATE_INBOUND_CHECKIN, {"inbound_pk": self.id, "new_checkin_id": checkin_id}
        )
        self.checkin_id = checkin_id


def reply_key(provider_sid: str) -> str:
    """The ``dedupe_key`` of the stored reply to the incoming message ``provider_sid``."""
    return f"reply:{provider_sid}"


def answer(context: PatientContext, template: str, **values: object) -> Answer:
    """The answer ``template``, rendered for the patient (in their language)."""
    return template, render_for(context, template, **values)


def forward_free_text(
    session: Session,
    context: PatientContext,
    inbound: StoredInbound,
    parsed: ParsedReply,
    now: datetime,
) -> Answer:
    """A message we could not read: a human reads it (never routine), the patient is told so.

    Red flags never come this way: the parser reports them and they are triaged.
    """
    patient = context.patient
    raise_alert(
        session,
        patient,
        severity="high",
        kind="patient_message",
        reason=("Needs review, message from patient: " + inbound.body)[:500],
        details={
            "inbound_id": inbound.id,
            "needs_review": True,
            "reply_key": reply_key(inbound.provider_sid),
        },
        source="patient SMS (a message the companion could not read is read by a person)",
        now=now,
        dedupe_key=f"message:{inbound.provider_sid}",
    )
    return answer(context, "free_text_ack")
