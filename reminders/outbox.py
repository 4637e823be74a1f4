"""The SMS outbox: planning passes write due messages into it; dispatchers send them.

A planning pass (:func:`materialise_due_messages`) turns every consenting
patient's plan and prophylaxis events into outbox rows for the next 24 hours.
It is idempotent: each row has a ``dedupe_key`` made of the patient, the plan or
course, the event key, the message variant and the event's local date, and
rows are inserted with ON CONFLICT DO NOTHING, so running a pass twice (or two
clocks by mistake) stores nothing twice. A message whose moment passed while the
system was down is stored as pending while still fresh, otherwise as missed.

When a plan or the patient's preferences change, :func:`replan_patient` deletes
the patient's unsent plan-derived rows and plans them again from the new state.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import phonenumbers
from sqlalchemy import delete
from sqlalchemy.dialects import postgresql, sqlite
from sqlmodel import Session, select

from backend.models import (
    DoseRecord,
    OutboundMessage,
    Patient,
    Plan,
    PlanHold,
    ProphylaxisCourse,
    Team,
)
from reminders.core.messaging import ContactPrefs, MessagePlan, max_freshness, messages_for_event
from reminders.core.planner import PlannedEvent, plan_doses, plan_events, prophylaxis_events
from reminders.core.regimens import get_regimen
from reminders.core.templates import render
from reminders.specs import build_plan_spec, build_prophylaxis_spec

#: How far ahead a planning pass writes messages.
PLANNING_HORIZON = timedelta(hours=24)
INSERT_CHUNK = 2_000


@dataclass(frozen=True)
class PatientContext:
    """What rendering needs to know about a patient and their team."""

    patient: Patient
    team: Team
    drug: str | None


def sms_allowed(patient: Patient) -> bool:
    """True when the patient agreed to SMS, did not opt out and has a reachable number."""
    return patient.sms_consent and not patient.opted_out and patient.sms_blocked_reason is None


def display_phone(e164: str) -> str:
    """A phone number as people read it (+32 2 555 01 23), still GSM-7 and dialable."""
    try:
        return phonenumbers.format_number(
            phonenumbers.parse(e164), phonenumbers.PhoneNumberFormat.INTERNATIONAL
        )
    except phonenumbers.NumberParseException:
        return e164


def _number(value: Any) -> Any:
    return int(value) if isinstance(value, float) and value.is_integer() else value


def template_values(context: PatientContext, event: PlannedEvent | None = None) -> dict[str, Any]:
    """Values for every template placeholder (each template uses the ones it needs)."""
    team = context.team
    patient = context.patient
    values: dict[str, Any] = {
        "first_name": patient.display_name.split()[0] if patient.display_name.strip() else "",
        "team_name": team.name,
        "team_phone": display_phone(team.care_phone) if team.care_phone else team.name,
        "drug": context.drug or "",
        "patient_ref": f"P{patient.id}",
        "place": team.name,
    }
    if event is None:
        return values
    details = dict(event.details)
    values.update(
        {
            "time": event.local.strftime("%H:%M"),
            "date": event.local.strftime("%d/%m"),
            "observation_hours": _number(details.get("observation_hours") or 2),
            "premedication": "; ".join(details.get("items") or ()) or event.title,
            "medicine": details.get("drug") or event.title,
        }
    )
    return values


def render_for(
    context: PatientContext, template: str, event: PlannedEvent | None = None, **extra: Any
) -> str:
    """Render ``template`` in the patient's language, honouring discreet mode."""
    values = template_values(context, event)
    values.update(extra)
    # Without a known drug the discreet wording reads naturally ("your treatment").
    discreet = context.patient.discreet or not context.drug
    return render(template, context.patient.language, discreet=discreet, **values)


def _row(
    context: PatientContext,
    plan: MessagePlan,
    now: datetime,
    *,
    plan_id: int | None,
    course_id: int | None,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    owner = f"plan{plan_id}" if plan_id is not None else f"course{course_id}"
    status = "pending" if now <= plan.not_after else "missed"
    return {
        "team_id": context.team.id,
        "patient_id": context.patient.id,
        "plan_id": plan_id,
        "course_id": course_id,
        "recipient": "patient",
        "kind": plan.template,
        "dedupe_key": f"p{context.patient.id}:{owner}:{plan.key}",
        "body": render_for(context, plan.template, plan.event, **(extra or {})),
        "urgent": False,
        "due_at": plan.send_at,
        "not_after": plan.not_after,
        "next_attempt_at": plan.send_at,
        "status": status,
        "attempts": 0,
        "error_reason": None if status == "pending" else "moment passed while the system was down",
        "created_at": now,
        "expects": plan.expects,
    }


def _messages(
    events: Iterable[PlannedEvent], prefs: ContactPrefs, since: datetime, until: datetime
) -> list[MessagePlan]:
    return [
        message
        for event in events
        for message in messages_for_event(event, prefs)
        if since <= message.send_at < until
    ]


def plan_rows_for_patient(
    context: PatientContext,
    plans: Sequence[Plan],
    holds: dict[int, list[PlanHold]],
    records: dict[int, list[DoseRecord]],
    courses: Sequence[ProphylaxisCourse],
    now: datetime,
    horizon: timedelta = PLANNING_HORIZON,
) -> list[dict[str, Any]]:
    """Outbox rows for one patient's plans and courses between now-freshness and now+horizon."""
    patient = context.patient
    since = now - max_freshness()
    until = now + horizon
    # Events up to a day past the horizon: an evening-before reminder precedes its dose.
    event_end = until + timedelta(days=1)
    prefs = ContactPrefs(patient.timezone, patient.quiet_start, patient.quiet_end)
    rows: list[dict[str, Any]] = []
    for plan in plans:
        spec = build_plan_spec(plan, patient, holds.get(plan.id, ()), records.get(plan.id, ()))
        events = plan_events(spec, since, event_end)
        for message in _messages(events, prefs, max(since, plan.created_at), until):
            extra = _progress(spec, message.event) if message.event.kind == "milestone" else None
            rows.append(_row(context, message, now, plan_id=plan.id, course_id=None, extra=extra))
    for course in courses:
        events = prophylaxis_events(
            build_prophylaxis_spec(course, patient.timezone), since, event_end
        )
        for message in _messages(events, prefs, max(since, course.created_at), until):
            rows.append(_row(context, message, now, plan_id=None, course_id=course.id))
    return rows


def _progress(spec: Any, event: PlannedEvent) -> dict[str, Any]:
    """Doses behind the patient and in total, for a milestone message."""
    doses = [d for d in plan_doses(spec) if d.status != "cancelled"]
    done = sum(1 for d in doses if d.date is not None and d.date < event.local.date())
    return {"done": done, "total": len(doses)}


def insert_ignoring_duplicates(session: Session, rows: list[dict[str, Any]]) -> int:
    """Insert outbox rows, skipping any whose ``dedupe_key`` exists; return how many were new."""
    if not rows:
        return 0
    dialect = session.get_bind().dialect.name
    dialect_insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    table = OutboundMessage.__table__
    inserted = 0
    for start in range(0, len(rows), INSERT_CHUNK):
        chunk = rows[start : start + INSERT_CHUNK]
        # RETURNING counts the new rows on both engines (PostgreSQL reports no rowcount
        # for a batched insert).
        statement = (
            dialect_insert(table)
            .on_conflict_do_nothing(index_elements=["dedupe_key"])
            .returning(table.c.id)
        )
        inserted += len(session.execute(statement, chunk).all())
    return inserted


def _grouped(rows: Iterable[Any], key: str) -> dict[int, list[Any]]:
    groups: dict[int, list[Any]] = defaultdict(list)
    for row in rows:
        groups[getattr(row, key)].append(row)
    return groups


def _drug_name(plan: Plan | None) -> str | None:
    if plan is None:
        return None
    try:
        return get_regimen(plan.regimen_id).drug
    except KeyError:
        return None


def materialise_due_messages(
    session: Session,
    now: datetime,
    *,
    patient_ids: Sequence[int] | None = None,
    horizon: timedelta = PLANNING_HORIZON,
) -> int:
    """Write the next ``horizon`` of messages for every patient who may receive SMS."""
    patient_query = select(Patient).where(
        Patient.sms_consent.is_(True),
        Patient.opted_out.is_(False),
        Patient.sms_blocked_reason.is_(None),
    )
    plan_query = select(Plan)
    course_query = select(ProphylaxisCourse).where(ProphylaxisCourse.status == "active")
    if patient_ids is not None:
        patient_query = patient_query.where(Patient.id.in_(patient_ids))
        plan_query = plan_query.where(Plan.patient_id.in_(patient_ids))
        course_query = course_query.where(ProphylaxisCourse.patient_id.in_(patient_ids))
    patients = session.exec(patient_query).all()
    if not patients:
        return 0
    teams = {t.id: t for t in session.exec(select(Team)).all()}
    plans = _grouped(session.exec(plan_query).all(), "patient_id")
    plan_ids = [p.id for group in plans.values() for p in group]
    holds = _grouped(_rows_for_plans(session, PlanHold, plan_ids, patient_ids), "plan_id")
    records = _grouped(_rows_for_plans(session, DoseRecord, plan_ids, patient_ids), "plan_id")
    courses = _grouped(session.exec(course_query).all(), "patient_id")
    rows: list[dict[str, Any]] = []
    for patient in patients:
        patient_plans = plans.get(patient.id, [])
        patient_courses = courses.get(patient.id, [])
        if not patient_plans and not patient_courses:
            continue
        latest = max(patient_plans, key=lambda p: p.created_at, default=None)
        context = PatientContext(patient, teams[patient.team_id], _drug_name(latest))
        rows.extend(
            plan_rows_for_patient(
                context, patient_plans, holds, records, patient_courses, now, horizon
            )
        )
    return insert_ignoring_duplicates(session, rows)


def _rows_for_plans(
    session: Session, model: Any, plan_ids: list[int], patient_ids: Sequence[int] | None
) -> Sequence[Any]:
    # A full pass loads every hold/record at once (one query) rather than a huge IN list.
    if patient_ids is None:
        return session.exec(select(model)).all()
    if not plan_ids:
        return []
    return session.exec(select(model).where(model.plan_id.in_(plan_ids))).all()


def replan_patient(session: Session, patient_id: int, now: datetime) -> int:
    """Drop the patient's unsent plan-derived messages and plan them again from the current state."""
    session.flush()
    session.execute(
        delete(OutboundMessage).where(
            OutboundMessage.patient_id == patient_id,
            OutboundMessage.status == "pending",
            (OutboundMessage.plan_id.is_not(None)) | (OutboundMessage.course_id.is_not(None)),
        )
    )
    return materialise_due_messages(session, now, patient_ids=[patient_id])


def cancel_pending_for_patient(session: Session, patient_id: int, reason: str) -> None:
    """Cancel every unsent message to the patient (opt-out, unreachable number)."""
    messages = session.exec(
        select(OutboundMessage).where(
            OutboundMessage.patient_id == patient_id,
            OutboundMessage.recipient == "patient",
            OutboundMessage.status == "pending",
        )
    ).all()
    for message in messages:
        message.status = "cancelled"
        message.error_reason = reason
        session.add(message)


def enqueue_message(
    session: Session,
    *,
    team_id: int,
    kind: str,
    body: str,
    dedupe_key: str,
    now: datetime,
    patient_id: int | None = None,
    recipient: str = "patient",
    urgent: bool = False,
    due_at: datetime | None = None,
    not_after: datetime | None = None,
    expects: str | None = None,
    alert_id: int | None = None,
    checkin_id: int | None = None,
) -> bool:
    """Queue one message (a reply, an alert to the on-call number); False if it was queued before."""
    due = due_at or now
    row = {
        "team_id": team_id,
        "patient_id": patient_id,
        "recipient": recipient,
        "kind": kind,
        "dedupe_key": dedupe_key,
        "body": body,
        "urgent": urgent,
        "due_at": due,
        "not_after": not_after,
        "next_attempt_at": due,
        "status": "pending",
        "attempts": 0,
        "created_at": now,
        "expects": expects,
        "alert_id": alert_id,
        "checkin_id": checkin_id,
    }
    return insert_ignoring_duplicates(session, [row]) == 1


def patient_context(session: Session, patient: Patient) -> PatientContext:
    """The rendering context of one patient (team and current drug)."""
    team = session.get(Team, patient.team_id)
    plan = session.exec(
        select(Plan).where(Plan.patient_id == patient.id).order_by(Plan.created_at.desc())
    ).first()
    return PatientContext(patient, team, _drug_name(plan))
