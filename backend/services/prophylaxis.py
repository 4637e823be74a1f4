"""Prophylaxis courses: entered or confirmed by the care team, stopped only by the care team.

Starting a plan proposes its regimen's courses (``reminders.data.prophylaxis.propose_regimen_courses``);
a user confirms a proposal (with the dose and times they prescribe) or declines it
with a reason. The stop rule (:func:`reminders.core.prophylaxis.stop_eligibility`)
says when an active course *may* stop; a user confirms it. Stopping a course that is
not eligible needs an explicit override reason, which is kept.
"""

from __future__ import annotations

from datetime import datetime

from sqlmodel import Session, select

from backend.schemas import (
    ProphylaxisConfirmIn,
    ProphylaxisDeclineIn,
    ProphylaxisIn,
    ProphylaxisStopIn,
)
from backend.services.messaging import save_and_resync
from backend.services.patients import get_patient
from backend.services.plans import effective_status, spec_for
from reminders.core.dates import local_today
from reminders.core.planner import plan_doses
from reminders.core.prophylaxis import (
    DECIDED_STATUSES,
    CourseStatus,
    StopEligibility,
    stop_eligibility,
)
from reminders.core.regimens import get_regimen
from reminders.data.alerts import resolve_alert
from reminders.data.errors import Conflict, InvalidInput, NotFound
from reminders.data.models import Alert, LabResult, Patient, Plan, ProphylaxisCourse
from reminders.data.prophylaxis import missing_alert_key
from reminders.data.statuses import AlertStatus


def add_course(
    session: Session, patient: Patient, data: ProphylaxisIn, now: datetime
) -> ProphylaxisCourse:
    """Start a prophylaxis course for ``patient`` with the dose and times the team entered."""
    if data.plan_id is not None:
        plan = session.get(Plan, data.plan_id)
        if plan is None or plan.patient_id != patient.id:
            raise InvalidInput("no such plan for this patient", field="plan_id")
    course = ProphylaxisCourse(patient_id=patient.id, created_at=now, **data.model_dump())
    save_and_resync(session, patient, now, course)
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
    """Evaluate the stop rule for ``course`` as of ``now``.

    A proposed or declined course is not running: it can never be "eligible to stop".
    """
    if course.status in (CourseStatus.PROPOSED, CourseStatus.DECLINED):
        return StopEligibility(
            eligible=False,
            earliest_date=None,
            missing=(
                "the course is proposed: a care-team user confirms or declines it"
                if course.status == CourseStatus.PROPOSED
                else "the course was declined: it never ran",
            ),
            satisfied=(),
            source="issue 11 (proposed prophylaxis)",
        )
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
    if course.status == CourseStatus.PROPOSED:
        raise Conflict("course is proposed, not running: confirm or decline it")
    if course.status != CourseStatus.ACTIVE:
        raise Conflict(f"course is already {course.status}")
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
    course.status = CourseStatus.STOPPED
    course.stopped_on = local_today(patient.timezone, now)
    course.stopped_by = user_id
    course.stop_note = "; ".join(note_parts) or None
    save_and_resync(session, patient, now, course)
    return course


def _require_proposed(course: ProphylaxisCourse) -> None:
    if course.status != CourseStatus.PROPOSED:
        raise Conflict(
            f"course is {course.status}: only a proposed course is confirmed or declined"
        )


def confirm_course(
    session: Session,
    course: ProphylaxisCourse,
    patient: Patient,
    data: ProphylaxisConfirmIn,
    user_id: int,
    now: datetime,
) -> ProphylaxisCourse:
    """Make a proposed course active with the dose, times and drug the user prescribes.

    Its pill reminders are planned from now on (``confirmed_at``): none is sent for
    times that passed while it waited. A start date before the plan's is refused.
    """
    _require_proposed(course)
    start = data.start_date or course.start_date
    plan = session.get(Plan, course.plan_id) if course.plan_id is not None else None
    if plan is not None and start < plan.start_date:
        raise InvalidInput("a course cannot start before its plan", field="start_date")
    course.drug = data.drug or course.drug
    course.dose_text = data.dose_text
    course.times = list(data.times)
    course.weekdays = data.weekdays
    course.start_date = start
    course.status = CourseStatus.ACTIVE
    course.confirmed_at = now
    course.confirmed_by = user_id
    save_and_resync(session, patient, now, course)
    _resolve_missing_alert(session, course, user_id, now)
    return course


def decline_course(
    session: Session,
    course: ProphylaxisCourse,
    patient: Patient,
    data: ProphylaxisDeclineIn,
    user_id: int,
    now: datetime,
) -> ProphylaxisCourse:
    """Record that the care team will not give a proposed course, and why (never silently).

    For example "allergic to cotrimoxazole: pentamidine inhalation, course 12". The
    alternative, if any, is entered as a course of its own.
    """
    _require_proposed(course)
    course.status = CourseStatus.DECLINED
    course.declined_at = now
    course.declined_by = user_id
    course.decline_reason = data.reason
    session.add(course)
    session.flush()
    _resolve_missing_alert(session, course, user_id, now)
    return course


def _resolve_missing_alert(
    session: Session, course: ProphylaxisCourse, user_id: int, now: datetime
) -> None:
    """Resolve the plan's missing-prophylaxis alert once every mandatory course is decided.

    The alert told the team to decide; once they have (confirmed or declined, by this
    user), leaving it open would only hide the alerts that still need someone.
    """
    if course.plan_id is None or course.regimen_entry is None:
        return
    alert = session.exec(
        select(Alert).where(Alert.dedupe_key == missing_alert_key(course.plan_id))
    ).first()
    if alert is None or alert.status == AlertStatus.RESOLVED:
        return
    plan = session.get(Plan, course.plan_id)
    statuses = dict(
        session.exec(
            select(ProphylaxisCourse.regimen_entry, ProphylaxisCourse.status).where(
                ProphylaxisCourse.plan_id == plan.id
            )
        ).all()
    )
    mandatory = get_regimen(plan.regimen_id).mandatory_prophylaxis
    if all(statuses.get(entry.id) in DECIDED_STATUSES for entry in mandatory):
        resolve_alert(
            session,
            alert,
            user_id,
            "every mandatory prophylaxis course is now confirmed or declined",
            now,
        )
