"""SMS to a patient's family contacts: what they get, copies of urgent advice, nudges.

Each message is rendered in the contact's language with the patient's region (the
emergency number where the patient is) and names the patient by first name only, spelt in
GSM-7 (``PatientContext.patient_values``): no drug, no disease, no temperature. It is an
outbox row (``recipient`` family, the contact's number in ``to_phone``) queued in the
caller's transaction, so a copy of urgent advice exists together with the alert or not at
all. Who gets copies is :func:`reminders.data.family_contacts.copy_recipients` (consent
standing, no STOP). A non-urgent message waits out the patient's quiet hours here, when it
is queued: the dispatcher sends a family row when it is due.
"""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

from sqlmodel import Session, col, select

from reminders.core.messaging import defer_past_quiet_hours
from reminders.core.regions import get_region
from reminders.core.templates import render
from reminders.data.family_contacts import copy_recipients
from reminders.data.models import CheckIn, FamilyContact, Patient
from reminders.data.statuses import CheckInState, Recipient
from reminders.outbox import enqueue_message
from reminders.rendering import PatientContext, patient_context


def render_for_contact(
    context: PatientContext, contact: FamilyContact, template: str, **values: object
) -> str:
    """``template`` for ``contact``: their language, the patient's region and first name."""
    patient = context.patient
    return render(
        template,
        contact.language,
        region=get_region(patient.region),
        **{**context.patient_values, **values},
    )


def queue_for_contact(
    session: Session,
    context: PatientContext,
    contact: FamilyContact,
    template: str,
    *,
    dedupe_key: str,
    now: datetime,
    urgent: bool = False,
) -> bool:
    """Queue ``template`` to ``contact``; False when it was queued before (same key).

    An urgent one goes at once (and wakes the dispatchers); any other waits for the end
    of the patient's quiet hours, the family's evening being the patient's.
    """
    patient = context.patient
    due_at = now if urgent else _after_quiet_hours(patient, now)
    return enqueue_message(
        session,
        team_id=patient.team_id,
        patient_id=patient.id,
        recipient=Recipient.FAMILY,
        to_phone=contact.phone,
        kind=template,
        body=render_for_contact(context, contact, template),
        dedupe_key=dedupe_key,
        now=now,
        due_at=due_at,
        urgent=urgent,
    )


def _after_quiet_hours(patient: Patient, now: datetime) -> datetime:
    """``now``, or the end of the patient's quiet hours when ``now`` falls in them."""
    local = now.astimezone(ZoneInfo(patient.timezone))
    return defer_past_quiet_hours(local, patient.quiet_start, patient.quiet_end)


def copy_urgent_advice(
    session: Session, context: PatientContext, provider_sid: str, now: datetime
) -> int:
    """Tell each consenting contact that the patient reported a warning sign and was told
    to call the team (the patient's message ``provider_sid``); how many were queued.

    Once per message and contact (``dedupe_key``): a repeated delivery copies nothing again.
    """
    queued = 0
    for contact in copy_recipients(session, context.patient.id, "urgent"):
        queued += queue_for_contact(
            session,
            context,
            contact,
            "family_urgent_copy",
            dedupe_key=f"family{contact.id}:urgent:{provider_sid}",
            now=now,
            urgent=True,
        )
    return queued


def unanswered_streak_start(session: Session, checkin: CheckIn) -> int | None:
    """The first check-in of the run of unanswered ones ``checkin`` ends, when it is the
    second (or later) in a row; None when the one before it was answered (or none).

    Check-ins are taken in the order they were opened; any state but unanswered (an
    answered one, an unprompted report) ends the run.
    """
    earlier = session.exec(
        select(CheckIn.id, CheckIn.state)
        .where(
            CheckIn.patient_id == checkin.patient_id,
            CheckIn.id != checkin.id,
            col(CheckIn.opened_at) <= checkin.opened_at,
        )
        .order_by(col(CheckIn.opened_at).desc(), col(CheckIn.id).desc())
        .limit(50)
    ).all()
    start = None
    for checkin_id, state in earlier:
        if state != CheckInState.UNANSWERED:
            break
        start = checkin_id
    return start


def nudge_after_unanswered(
    session: Session, patient: Patient, checkin: CheckIn, now: datetime
) -> int:
    """Nudge each consenting contact when ``checkin`` is the second unanswered in a row.

    Once per run of unanswered check-ins (its first check-in is in the ``dedupe_key``): a
    third unanswered one nudges nobody again. Returns how many were queued.
    """
    start = unanswered_streak_start(session, checkin)
    if start is None:
        return 0
    contacts = copy_recipients(session, patient.id, "nudge")
    if not contacts:
        return 0
    context = patient_context(session, patient)
    return sum(
        queue_for_contact(
            session,
            context,
            contact,
            "family_checkin_nudge",
            dedupe_key=f"family{contact.id}:nudge:checkin{start}",
            now=now,
        )
        for contact in contacts
    )


def send_family_info(
    session: Session, patient: Patient, contact: FamilyContact, now: datetime
) -> bool:
    """Tell a contact whose consent was just recorded what they will get, and how to STOP.

    Once per recording of consent (its instant is in the ``dedupe_key``).
    """
    stamp = contact.consent_recorded_at or now
    return queue_for_contact(
        session,
        patient_context(session, patient),
        contact,
        "family_info",
        dedupe_key=f"family{contact.id}:info:{stamp.isoformat()}",
        now=now,
    )
