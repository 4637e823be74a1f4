"""Discharge: the team ends its care of a patient, which stops their SMS and frees their number."""

from __future__ import annotations

from datetime import datetime

from sqlmodel import Session, select

from backend.services.plans import effective_status, spec_for
from reminders.core.planner import plan_doses
from reminders.core.prophylaxis import ENDED_COURSE_STATUSES
from reminders.data.errors import Conflict
from reminders.data.models import Patient, Plan, ProphylaxisCourse
from reminders.data.statuses import OPEN_PLAN_STATUSES
from reminders.outbox import cancel_pending_for_patient


def discharge_patient(
    session: Session, patient: Patient, user_id: int | None, reason: str, now: datetime
) -> Patient:
    """End the team's care of ``patient``: no more SMS, and their number is free again.

    Refused (Conflict) while a plan is still open (not stopped or completed) or a
    prophylaxis course is active or proposed: a discharge must not end reminders the
    team has not ended itself (the companion never ends a course by itself).
    """
    if patient.discharged_at is not None:
        raise Conflict("patient is already discharged")
    unfinished = []
    for plan in session.exec(
        select(Plan).where(Plan.patient_id == patient.id, Plan.status.in_(OPEN_PLAN_STATUSES))
    ).all():
        if effective_status(plan, plan_doses(spec_for(session, plan, patient))) != "completed":
            unfinished.append("stop the open plan")
            break
    courses = session.exec(
        select(ProphylaxisCourse.id).where(
            ProphylaxisCourse.patient_id == patient.id,
            ProphylaxisCourse.stopped_on.is_(None),
            ProphylaxisCourse.status.not_in(sorted(ENDED_COURSE_STATUSES)),
        )
    ).first()
    if courses is not None:
        unfinished.append("stop or decline the prophylaxis courses")
    if unfinished:
        raise Conflict("before discharging, " + " and ".join(unfinished))
    patient.discharged_at, patient.discharged_by = now, user_id
    patient.discharge_reason = reason
    patient.updated_at = now
    session.add(patient)
    cancel_pending_for_patient(session, patient.id, "patient discharged")
    session.flush()
    return patient
