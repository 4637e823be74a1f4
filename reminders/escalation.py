"""Escalating an urgent alert until a human acknowledges it: pages, calls, the timeline.

Decide apart from deliver: the pure core decides which steps are due
(:func:`reminders.core.escalation.steps_due`) and what a page says
(:mod:`reminders.core.oncall_text`); this module resolves each step's target with the
rota (:mod:`reminders.data.oncall`), queues the SMS and calls in the outbox (urgent,
to the clinician's own phone) and writes each step on the alert's timeline
(``AlertEvent``), all in the caller's transaction; the dispatcher delivers.

A step whose target is missing (nobody on the rota, no phone on the profile) falls
through at once to the next target, primary -> backup -> fallback number, and says
so on the timeline: an urgent alert never waits for nobody.
"""

from __future__ import annotations

import logging
from datetime import datetime

from sqlmodel import Session, select

from reminders.core.escalation import EscalationPolicy, step_of, steps_due
from reminders.core.oncall_text import alert_code, initials, kind_label, voice_page
from reminders.core.templates import render
from reminders.data.alerts import record_event
from reminders.data.models import (
    Alert,
    AlertEvent,
    FamilyContact,
    OutboundMessage,
    Patient,
    Team,
    User,
)
from reminders.data.oncall import on_call, team_policy
from reminders.data.statuses import (
    AlertEventKind,
    AlertStatus,
    Channel,
    OnCallRole,
    PageOutcome,
    PageTarget,
    ReportedBy,
)
from reminders.outbox import enqueue_message

logger = logging.getLogger(__name__)

#: Outbox kinds of pages (the SMS templates' keys, and the call).
PAGE_SMS_FIRST = "oncall_alert"
#: The first page of an alert a family member's message raised: they, not the patient,
#: were told to call.
PAGE_SMS_FIRST_FAMILY = "oncall_alert_family"
PAGE_SMS_AGAIN = "oncall_reescalation"
PAGE_CALL = "oncall_call"
#: The language of pages to the fallback number, which belongs to no one clinician.
FALLBACK_LANGUAGE = "en"
#: Who is tried when a step's target is missing, in order.
_FALL_THROUGH = {
    PageTarget.PRIMARY: (PageTarget.PRIMARY, PageTarget.BACKUP, PageTarget.FALLBACK),
    PageTarget.BACKUP: (PageTarget.BACKUP, PageTarget.FALLBACK),
    PageTarget.FALLBACK: (PageTarget.FALLBACK,),
}


def start_escalation(session: Session, alert: Alert, now: datetime) -> int:
    """Take the steps due at once for a new urgent alert (step 0: the primary's SMS)."""
    return escalate_alert(session, alert, now)


def escalate_alert(session: Session, alert: Alert, now: datetime) -> int:
    """Take every step of ``alert``'s escalation due at ``now``; return the pages queued.

    Only an open urgent alert escalates; ``Alert.escalation_count`` counts the steps
    taken, so each step is taken once (and the outbox's keys make a page queued twice
    stored once).
    """
    if alert.severity != "urgent" or alert.status != AlertStatus.OPEN:
        return 0
    team = session.get_one(Team, alert.team_id)
    policy, _ = team_policy(team)
    queued = 0
    for step in steps_due(policy, alert.created_at, alert.escalation_count, now):
        queued += _take_step(session, alert, team, policy, step, now)
        alert.escalation_count = step + 1
    if queued:
        alert.oncall_notified_at = now
    session.add(alert)
    return queued


def escalate_alerts(session: Session, now: datetime) -> int:
    """The clock's job: take the due steps of every open urgent alert; return the pages queued."""
    alerts = session.exec(
        select(Alert).where(Alert.severity == "urgent", Alert.status == AlertStatus.OPEN)
    ).all()
    return sum(escalate_alert(session, alert, now) for alert in alerts)


def _take_step(
    session: Session, alert: Alert, team: Team, policy: EscalationPolicy, step: int, now: datetime
) -> int:
    taken = step_of(policy, step)
    for target in _FALL_THROUGH[PageTarget(taken.target)]:
        found = _reach(session, team, target, now)
        if isinstance(found, str):
            _event(
                session, alert, now, AlertEventKind.SKIPPED, step=step, target=target, detail=found
            )
            continue
        user, phone = found
        for channel in taken.channels:
            _page(session, alert, team, step, target, Channel(channel), user, phone, now)
        return len(taken.channels)
    logger.error("alert %s: step %s reached nobody (no rota, no fallback number)", alert.id, step)
    return 0


def _reach(
    session: Session, team: Team, target: PageTarget, now: datetime
) -> tuple[User | None, str] | str:
    """(user, phone) to page for ``target``, or why nobody can be paged."""
    if target is PageTarget.FALLBACK:
        return (None, team.oncall_phone) if team.oncall_phone else "the team has no fallback number"
    role = OnCallRole.PRIMARY if target is PageTarget.PRIMARY else OnCallRole.BACKUP
    shift = on_call(session, team.id, role, now)
    if shift is None:
        return f"no {role} on call"
    user = shift[1]
    if not user.phone:
        return f"the {role} on call has no phone number on their profile"
    return user, user.phone


def _page(
    session: Session,
    alert: Alert,
    team: Team,
    step: int,
    target: PageTarget,
    channel: Channel,
    user: User | None,
    phone: str,
    now: datetime,
) -> None:
    patient = session.get_one(Patient, alert.patient_id)
    language = user.language if user is not None else FALLBACK_LANGUAGE
    details = alert.details or {}
    by_family = details.get("reported_by") == ReportedBy.FAMILY
    # The first SMS page of a family report says so in its own words (and who was told
    # to call); the reason carries it everywhere else.
    first_sms = channel is Channel.SMS and step == 0
    reason = kind_label(
        alert.kind,
        language,
        details.get("temperature_c"),
        by_family=by_family and not first_sms,
    )
    if channel is Channel.VOICE:
        kind = PAGE_CALL
        body = voice_page(
            language,
            team_name=team.name,
            patient_initials=initials(patient.display_name),
            hospital_ref=patient.hospital_ref,
            reason=reason,
            callback_phone=patient.phone,
            family_phone=_reporting_family_phone(session, details) if by_family else None,
        ).spoken
    else:
        first = PAGE_SMS_FIRST_FAMILY if by_family else PAGE_SMS_FIRST
        kind = first if step == 0 else PAGE_SMS_AGAIN
        body = render(
            kind,
            language,
            patient_ref=_patient_ref(patient),
            reason=reason,
            team_name=team.name,
            minutes=int((now - alert.created_at).total_seconds() // 60),
            code=alert_code(alert.id),
        )
    key = f"alert{alert.id}:step{step}:{target}:{channel}"
    enqueue_message(
        session,
        team_id=team.id,
        patient_id=alert.patient_id,
        recipient="clinician",
        to_phone=phone,
        channel=channel,
        user_id=user.id if user is not None else None,
        kind=kind,
        body=body,
        dedupe_key=key,
        now=now,
        urgent=True,
        alert_id=alert.id,
    )
    outbound_id = session.exec(
        select(OutboundMessage.id).where(OutboundMessage.dedupe_key == key)
    ).one()
    _event(
        session,
        alert,
        now,
        AlertEventKind.PAGED,
        step=step,
        target=target,
        channel=channel,
        user_id=user.id if user is not None else None,
        outcome=PageOutcome.QUEUED,
        outbound_id=outbound_id,
    )


def _reporting_family_phone(session: Session, details: dict[str, object]) -> str | None:
    """The number of the family contact whose message raised the alert, while still listed."""
    contact_id = details.get("family_contact_id")
    contact = session.get(FamilyContact, contact_id) if isinstance(contact_id, int) else None
    return contact.phone if contact is not None else None


def _patient_ref(patient: Patient) -> str:
    """Initials and hospital reference: all a page names of the patient."""
    who = initials(patient.display_name)
    return f"{who} ({patient.hospital_ref})" if patient.hospital_ref else who


def _event(
    session: Session, alert: Alert, now: datetime, event: AlertEventKind, **fields: object
) -> None:
    record_event(session, alert.id, now, event, **fields)


#: Twilio's final call statuses, as the timeline says them.
CALL_OUTCOMES: dict[str, PageOutcome] = {
    "completed": PageOutcome.ANSWERED,
    "no-answer": PageOutcome.NO_ANSWER,
    "busy": PageOutcome.BUSY,
    "failed": PageOutcome.FAILED,
    "canceled": PageOutcome.CANCELLED,
}


def record_page_outcome(
    session: Session,
    message: OutboundMessage,
    outcome: PageOutcome,
    now: datetime,
    *,
    detail: str | None = None,
) -> bool:
    """Put what became of a page (delivered, answered, no answer, busy, failed) on its alert's timeline.

    False, and nothing written, for a message that is not a page. Each outcome of a
    page is written once (carriers repeat callbacks).
    """
    if message.alert_id is None or message.recipient == "patient":
        return False
    seen = session.exec(
        select(AlertEvent.id).where(
            AlertEvent.outbound_id == message.id,
            AlertEvent.event == AlertEventKind.OUTCOME,
            AlertEvent.outcome == outcome,
        )
    ).first()
    if seen is not None:
        return False
    detail = detail[:200] if detail else None
    record_page_event(session, message, now, AlertEventKind.OUTCOME, outcome=outcome, detail=detail)
    return True


def record_page_event(
    session: Session, page: OutboundMessage, now: datetime, event: AlertEventKind, **fields: object
) -> None:
    """Put a line about ``page`` on its alert's timeline: its channel, clinician and outbox row."""
    assert page.alert_id is not None, "a page belongs to an alert"
    record_event(
        session,
        page.alert_id,
        now,
        event,
        channel=page.channel,
        user_id=page.user_id,
        outbound_id=page.id,
        **fields,
    )
