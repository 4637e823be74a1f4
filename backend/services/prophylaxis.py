"""Prophylaxis courses: entered by the care team, stopped only by the care team.

The stop rule (:func:`reminders.core.prophylaxis.stop_eligibility`) says when a
course *may* stop; a user confirms it. Stopping a course that is not eligible
needs an explicit override reason, which is kept.
"""

from __future__ import annotations

from datetime import datetime

from sqlmodel import Session, select

from backend.errors import Conflict, InvalidInput, NotFound
from backend.models import LabResult, Patient, Plan, ProphylaxisCourse
from backend.schemas import ProphylaxisIn, ProphylaxisStopIn
from backend.services import local_today
from backend.services.messaging import resync_patient_messages
from backend.services.patients import get_patient
from backend.services.plans import effective_status, spec_for
from reminders.core.planner import plan_doses
from reminders.core.prophylaxis import StopEligibility, stop_eligibility


def add_course(
    session: Session, patient: Patient, data: ProphylaxisIn, now: datetime
) -> ProphylaxisCourse:
    """Start a prophylaxis course for ``patient`` with the dose and times the team entered."""
    if data.plan_id is not None:
        plan = session.get(Plan, data.plan_id)
        if plan is None or plan.patient_id != patient.id:
            raise InvalidInput("no such plan for this patient", field="plan_id")
    course = ProphylaxisCourse(patient_id=patient.id, created_at=now, **data.model_dump())
    session.add(course)
    session.flush()
    resync_patient_messages(session, patient, now)
    return course


def get_course(session: Session, team_id: int, course_id: int) -> tuple[ProphylaxisCourse, Patient]:
    """The course ``course_id`` and its patient, within ``team_id``."""
    course = session.get(ProphylaxisCourse, course_id)
    if course is None:
        raise NotFound("no such prophylaxis course")
    try:
        return course, get_patient(session, team_id, course.patient_id)
    except NotFound as exc:
        raise NotFound("no such prophylaxis course") from exc


def courses_of(session: Session, patient_id: int) -> list[ProphylaxisCourse]:
    """The patient's courses, newest first."""
    return list(
        session.exec(
            select(ProphylaxisCourse)
            .where(ProphylaxisCourse.patient_id == patient_id)
            .order_by(ProphylaxisCourse.start_date.desc(), ProphylaxisCourse.id.desc())
        ).all()
    )


def eligibility(
    session: Session, course: ProphylaxisCourse, patient: Patient, now: datetime
) -> StopEligibility:
    """Evaluate the stop rule for ``course`` as of ``now``."""
    plans = (
        [session.get(Plan, course.plan_id)]
        if course.plan_id is not None
        else list(session.exec(select(Plan).where(Plan.patient_id == patient.id)).all())
    )
    finished = bool(plans)
    last_given = None
    for plan in plans:
        doses = plan_doses(spec_for(session, plan, patient))
        if effective_status(plan, doses) not in ("completed", "stopped"):
            finished = False
        given = [d.date for d in doses if d.status == "given" and d.date is not None]
        if given and (last_given is None or max(given) > last_given):
            last_given = max(given)
    cd4 = session.exec(
        select(LabResult).where(LabResult.patient_id == patient.id, LabResult.kind == "cd4")
    ).all()
    zone_today = local_today(patient.timezone, now)
    return stop_eligibility(
        treatment_finished=finished,
        last_dose_given=last_given,
        min_months_after_last_dose=course.min_months_after_last_dose,
        cd4_rule=course.cd4_rule,
        cd4_results=[(local_today(patient.timezone, r.taken_at), r.value) for r in cd4],
        today=zone_today,
    )


def stop_course(
    session: Session,
    course: ProphylaxisCourse,
    patient: Patient,
    data: ProphylaxisStopIn,
    user_id: int,
    now: datetime,
) -> ProphylaxisCourse:
    """Stop ``course`` on the care team's confirmation."""
    if course.status != "active":
        raise Conflict("course is already stopped")
    status = eligibility(session, course, patient, now)
    if not status.eligible and not data.override_reason:
        raise Conflict(
            "not eligible to stop yet: "
            + "; ".join(status.missing)
            + " (give override_reason to stop anyway)",
            field="override_reason",
        )
    note_parts = [
        p
        for p in (data.note, f"override: {data.override_reason}" if data.override_reason else None)
        if p
    ]
    course.status = "stopped"
    course.stopped_on = local_today(patient.timezone, now)
    course.stopped_by = user_id
    course.stop_note = "; ".join(note_parts) or None
    session.add(course)
    session.flush()
    resync_patient_messages(session, patient, now)
    return course
