"""The prophylaxis courses a regimen brings: proposing them, and the alert when they are missing.

Shared by the web (starting a plan proposes its courses, deciding one resolves the alert)
and the engine (the daily check proposes what is missing and raises the alert).
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlmodel import Session, select

from reminders.core.prophylaxis import CourseStatus
from reminders.core.regimens import get_regimen
from reminders.data.models import Patient, Plan, ProphylaxisCourse

#: The alert raised when a plan's mandatory prophylaxis is not decided in time.
MISSING_ALERT_KIND = "prophylaxis_missing"


def missing_alert_key(plan_id: int) -> str:
    """The dedupe key of a plan's missing-prophylaxis alert: one per plan, ever."""
    return f"plan{plan_id}:{MISSING_ALERT_KIND}"


def propose_regimen_courses(
    session: Session, plan: Plan, patient: Patient, now: datetime
) -> list[ProphylaxisCourse]:
    """Propose one course per prophylaxis entry of the plan's regimen; the new ones are returned.

    Every alemtuzumab patient must receive cotrimoxazole and acyclovir (003, Patient
    management issues and Table 4; 002), so the plan brings them to the care team
    rather than relying on someone remembering. A proposal is what a nurse would
    pre-fill and a prescriber sign: the drug named by the regimen, **no dose** (the
    sources give none: ``dose_text`` stays empty until a user enters it), the
    patient's pill times as default times, from the regimen's ``start_day`` (day 1 =
    the plan's start date), with its stop rule (months after the last dose, CD4).
    It is "proposed": no pill reminder is planned (the outbox plans active courses
    only) until a user confirms it, or declines it with a reason.

    Idempotent: an entry that already has a course on this plan (whatever its status)
    is not proposed again, and ``(plan_id, regimen_entry)`` is unique in the table.
    """
    regimen = get_regimen(plan.regimen_id)
    if not regimen.prophylaxis:
        return []
    existing = set(
        session.exec(
            select(ProphylaxisCourse.regimen_entry).where(ProphylaxisCourse.plan_id == plan.id)
        ).all()
    )
    proposed = [
        ProphylaxisCourse(
            patient_id=patient.id,
            plan_id=plan.id,
            regimen_entry=entry.id,
            drug=entry.drug,
            dose_text="",
            times=list(patient.pill_times),
            weekdays=None,
            start_date=plan.start_date + timedelta(days=entry.start_day - 1),
            min_months_after_last_dose=entry.min_months_after_last_dose,
            cd4_rule=entry.cd4_rule,
            status=CourseStatus.PROPOSED,
            created_at=now,
        )
        for entry in regimen.prophylaxis
        if entry.id not in existing
    ]
    session.add_all(proposed)
    session.flush()
    return proposed
