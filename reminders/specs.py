"""Stored rows to the planner's specs: the one bridge from the database to the pure planner."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import time
from functools import lru_cache
from typing import Any

from sqlmodel import Session, select

from reminders.core.planner import DoseOutcome, Hold, PlanSpec, ProphylaxisSpec
from reminders.core.prophylaxis import ENDED_COURSE_STATUSES
from reminders.core.regimens import get_regimen
from reminders.data.models import DoseRecord, Patient, Plan, PlanHold, ProphylaxisCourse


def build_plan_spec(
    plan: Plan,
    patient: Patient,
    holds: Iterable[PlanHold],
    records: Iterable[DoseRecord],
    *,
    extension_weeks: int | None = None,
    options: dict[str, Any] | None = None,
    courses: Iterable[ProphylaxisCourse] = (),
    current: bool = True,
) -> PlanSpec:
    """The planner's view of a stored plan (its holds and dose records already loaded).

    ``courses``: the patient's prophylaxis courses (any status), for
    ``PlanSpec.prophylaxis_ongoing`` (see :func:`prophylaxis_ongoing`); ``current``:
    ``plan`` is the patient's current plan (:mod:`reminders.data.plans`).
    """
    return PlanSpec(
        regimen=get_regimen(plan.regimen_id),
        start_date=plan.start_date,
        timezone=patient.timezone,
        options=dict(plan.options if options is None else options),
        dose_time=patient.dose_time,
        checkin_time=patient.checkin_time,
        holds=tuple(Hold(start=h.start_date, resume=h.resume_date, reason=h.reason) for h in holds),
        outcomes={
            r.dose_index: DoseOutcome(status=r.status, on=r.on_date, dose_mg=r.dose_mg)
            for r in records
        },
        extension_weeks=plan.extension_weeks if extension_weeks is None else extension_weeks,
        stopped_on=plan.stopped_on,
        prophylaxis_ongoing=prophylaxis_ongoing(plan, courses, current=current),
    )


def course_ongoing(course: ProphylaxisCourse) -> bool:
    """Whether a course runs: not stopped nor declined, and no stop date."""
    return course.stopped_on is None and course.status not in ENDED_COURSE_STATUSES


def prophylaxis_ongoing(
    plan: Plan, courses: Iterable[ProphylaxisCourse], *, current: bool = True
) -> bool:
    """Whether a prophylaxis course that keeps ``plan``'s check-ins going runs.

    A course counts for the plan it was entered for, and a course entered for no plan
    counts for the patient's current plan only (so that an old plan does not send a
    second weekly check-in beside the current one).
    """
    return any(
        course_ongoing(c) and (c.plan_id == plan.id or (c.plan_id is None and current))
        for c in courses
    )


def load_plan_spec(session: Session, plan: Plan, patient: Patient) -> PlanSpec:
    """The spec of ``plan`` with its holds and dose records read from the database.

    One query each. The risk windows (the CMV window of the triage) count from the
    doses given and move with holds, so a spec without them can be wrong.
    """
    holds = session.exec(
        select(PlanHold).where(PlanHold.plan_id == plan.id).order_by(PlanHold.start_date)
    ).all()
    records = session.exec(select(DoseRecord).where(DoseRecord.plan_id == plan.id)).all()
    return build_plan_spec(plan, patient, holds, records)


def build_prophylaxis_spec(course: ProphylaxisCourse, timezone: str) -> ProphylaxisSpec:
    """The planner's view of a stored prophylaxis course."""
    return ProphylaxisSpec(
        course_id=course.id,
        drug=course.drug,
        dose_text=course.dose_text,
        times=tuple(_clock_time(t) for t in course.times),
        weekdays=tuple(course.weekdays) if course.weekdays is not None else None,
        start_date=course.start_date,
        timezone=timezone,
        stopped_on=course.stopped_on,
    )


# Cached: every pass reads the same few pill times ("08:00") for thousands of courses.
_clock_time = lru_cache(maxsize=256)(time.fromisoformat)
