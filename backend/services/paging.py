"""Acknowledging an alert from the phone: an ``ACK`` reply, a key pressed on a page call.

Each acknowledges as the clinician the page went to (the user whose own phone sent
the SMS, the user the call was placed to), stops the escalation (an acknowledged alert
takes no more steps), writes the alert's timeline and the audit trail. A phone that
belongs to no active care-team member acknowledges nothing: its message goes the way
of any SMS (the patient conversation, or the unknown-number path).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlmodel import Session, select

from backend.services.audit import record_audit
from reminders.core.oncall_text import ack_reply, alert_id_from_code, voice_words
from reminders.data.alerts import acknowledge_alert
from reminders.data.models import Alert, OutboundMessage, User
from reminders.data.statuses import AlertEventKind, AlertStatus, AuditAction, AuditChannel, Channel
from reminders.escalation import record_page_event


def acknowledge_by_sms(session: Session, from_phone: str, code: str, now: datetime) -> str | None:
    """Acknowledge the alert ``code`` names for the clinician whose phone is ``from_phone``.

    Returns the SMS answer (in the clinician's language), or None when no active user
    has this phone (the caller then treats the message as any other SMS). A code of
    another team's alert, a closed alert or a mistyped code acknowledges nothing and
    gets the same "no open alert of your team" answer (nothing about other teams).
    """
    users = session.exec(
        select(User).where(User.phone == from_phone, User.is_active.is_(True)).order_by(User.id)
    ).all()
    if not users:
        return None
    alert_id = alert_id_from_code(code)
    alert = session.get(Alert, alert_id) if alert_id is not None else None
    user = next((u for u in users if alert is not None and u.team_id == alert.team_id), None)
    language = (user or users[0]).language
    if alert is None or user is None or alert.status == AlertStatus.RESOLVED:
        return ack_reply(language, "ack_unknown", code)
    if alert.status == AlertStatus.ACKNOWLEDGED:
        return ack_reply(language, "ack_already", code)
    acknowledge_alert(session, alert, user.id, now, channel=Channel.SMS)
    _audit_acknowledgement(session, user, alert, now, AuditChannel.SMS)
    return ack_reply(language, "ack_done", code)


@dataclass(frozen=True)
class CallAnswer:
    """What a page call says next: its voice language and the sentence."""

    voice_language: str
    text: str


def page_of_call(session: Session, page_id: int) -> tuple[OutboundMessage, Alert] | None:
    """The voice page ``page_id`` and its alert; None for anything else."""
    page = session.get(OutboundMessage, page_id)
    if page is None or page.channel != Channel.VOICE or page.alert_id is None:
        return None
    return page, session.get_one(Alert, page.alert_id)


def page_language(session: Session, page: OutboundMessage) -> str:
    """The language of the clinician a page went to (the fallback number's: English)."""
    user = session.get(User, page.user_id) if page.user_id is not None else None
    return user.language if user is not None else "en"


def acknowledge_by_key(
    session: Session, page: OutboundMessage, alert: Alert, digits: str, now: datetime
) -> CallAnswer | None:
    """A key pressed on page call ``page``: 1 acknowledges; anything else: None (ask again).

    The acknowledgement is the paged clinician's; a call to the team's fallback number
    belongs to no user, and its key press acknowledges with no user, saying so on the
    timeline and in the audit trail.
    """
    language = page_language(session, page)
    if digits.strip() != "1":
        return None
    if alert.status == AlertStatus.RESOLVED:
        return CallAnswer(*voice_words(language, "call_not_open"))
    if alert.status == AlertStatus.ACKNOWLEDGED:
        return CallAnswer(*voice_words(language, "call_already"))
    user = session.get(User, page.user_id) if page.user_id is not None else None
    if user is not None and (not user.is_active or user.team_id != alert.team_id):
        record_page_event(
            session,
            page,
            now,
            AlertEventKind.REFUSED,
            detail="key pressed by a user no longer active in the team",
        )
        return CallAnswer(*voice_words(language, "call_not_open"))
    acknowledge_alert(
        session,
        alert,
        user.id if user is not None else None,
        now,
        channel=Channel.VOICE,
        detail=None if user is not None else "key pressed on the call to the fallback number",
    )
    _audit_acknowledgement(session, user, alert, now, AuditChannel.PHONE)
    return CallAnswer(*voice_words(language, "call_acknowledged"))


def _audit_acknowledgement(
    session: Session, user: User | None, alert: Alert, now: datetime, channel: AuditChannel
) -> None:
    record_audit(
        session,
        user,
        AuditAction.ACKNOWLEDGE_ALERT,
        alert.patient_id,
        now,
        target=f"alert:{alert.id}",
        team_id=alert.team_id,
        channel=channel,
    )
