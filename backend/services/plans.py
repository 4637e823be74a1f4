"""Plans: starting a regimen and the care-team actions that change it.

The stored rows (plan, holds, dose records) are turned into a pure
:class:`~reminders.core.planner.PlanSpec`; every derived thing (dose dates, the
schedule, eligibility) is computed from it by the planner, never stored twice.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from sqlmodel import Session, SQLModel, select

from backend.schemas import DoseRecordIn, HoldIn, PlanIn, ResumeIn, StopIn
from backend.services.audit import record_audit
from backend.services.messaging import resync_patient_messages, save_and_resync
from backend.services.patients import get_patient
from reminders.core.bsa import DoseWarning, dose_warnings, mosteller
from reminders.core.dates import local_today
from reminders.core.planner import (
    PlannedDose,
    PlannedEvent,
    PlanSpec,
    plan_doses,
    plan_events,
)
from reminders.core.regimens import Regimen, UnknownRegimen, get_regimen
from reminders.data.errors import Conflict, InvalidInput, NotFound
from reminders.data.models import DoseRecord, Patient, Plan, PlanHold, ProphylaxisCourse, User
from reminders.data.plans import pick_current_plan
from reminders.data.prophylaxis import propose_regimen_courses
from reminders.data.statuses import OPEN_PLAN_STATUSES, AuditAction, PlanStatus
from reminders.specs import build_plan_spec

#: How far back a plan may start: a patient may be enrolled mid-treatment.
MAX_START_DAYS_AGO = 366
MAX_START_DAYS_AHEAD = 366


def regimen_or_invalid(regimen_id: str) -> Regimen:
    """The regimen ``regimen_id``, or a 422 naming the field."""
    try:
        return get_regimen(regimen_id)
    except (UnknownRegimen, KeyError) as exc:
        raise InvalidInput(f"unknown regimen '{regimen_id}'", field="regimen_id") from exc


def get_plan(session: Session, team_id: int, plan_id: int) -> tuple[Plan, Patient]:
    """The plan ``plan_id`` and its patient, if the patient belongs to ``team_id``."""
    plan = session.get(Plan, plan_id)
    if plan is None:
        raise NotFound("no such plan")
    try:
        patient = get_patient(session, team_id, plan.patient_id)
    except NotFound as exc:
        raise NotFound("no such plan") from exc
    return plan, patient


def holds_of(session: Session, plan_id: int) -> list[PlanHold]:
    """The plan's holds, oldest first."""
    return list(
        session.exec(
            select(PlanHold)
            .where(PlanHold.plan_id == plan_id)
            .order_by(PlanHold.start_date, PlanHold.id)
        ).all()
    )


def dose_records_of(session: Session, plan_id: int) -> list[DoseRecord]:
    """The plan's recorded doses."""
    return list(session.exec(select(DoseRecord).where(DoseRecord.plan_id == plan_id)).all())


def spec_for(session: Session, plan: Plan, patient: Patient) -> PlanSpec:
    """Load the plan's holds and dose records and build its spec."""
    return build_plan_spec(
        plan, patient, holds_of(session, plan.id), dose_records_of(session, plan.id)
    )


def _checked_doses(build: Callable[[], PlanSpec], field: str) -> list[PlannedDose]:
    # The planner validates options and limits with ValueError (when the spec is built or
    # planned); that is the user's input at fault, so it becomes a 422 naming the field.
    try:
        return plan_doses(build())
    except ValueError as exc:
        raise InvalidInput(str(exc), field=field) from exc


def start_plan(
    session: Session, patient: Patient, data: PlanIn, user_id: int | None, now: datetime
) -> Plan:
    """Start ``data.regimen_id`` for ``patient`` on ``data.start_date``."""
    regimen_or_invalid(data.regimen_id)
    today = local_today(patient.timezone, now)
    if not (
        today - timedelta(days=MAX_START_DAYS_AGO)
        <= data.start_date
        <= today + timedelta(days=MAX_START_DAYS_AHEAD)
    ):
        raise InvalidInput("start date must be within a year of today", field="start_date")
    open_plan = session.exec(
        select(Plan).where(Plan.patient_id == patient.id, Plan.status.in_(OPEN_PLAN_STATUSES))
    ).first()
    if open_plan is not None:
        raise Conflict(
            f"patient already has an open plan (id {open_plan.id}); stop it first",
            field="regimen_id",
        )
    plan = Plan(
        patient_id=patient.id,
        regimen_id=data.regimen_id,
        options=data.options,
        start_date=data.start_date,
        created_by=user_id,
        created_at=now,
        updated_at=now,
    )
    _checked_doses(lambda: build_plan_spec(plan, patient, (), ()), "options")
    session.add(plan)
    session.flush()
    propose_regimen_courses(session, plan, patient, now)
    resync_patient_messages(session, patient, now)
    return plan


def _save_plan(
    session: Session, plan: Plan, patient: Patient, now: datetime, *rows: SQLModel
) -> None:
    """Save a change to ``plan`` (and its ``rows``, such as a hold) and re-plan the reminders."""
    plan.updated_at = now
    save_and_resync(session, patient, now, plan, *rows)


def _require_open(plan: Plan) -> None:
    if plan.status not in OPEN_PLAN_STATUSES:
        raise Conflict(f"plan is {plan.status}")


def hold_plan(
    session: Session, plan: Plan, patient: Patient, data: HoldIn, user_id: int | None, now: datetime
) -> PlanHold:
    """Put the plan on hold from ``data.start_date`` (default: the patient's today)."""
    _require_open(plan)
    if plan.status == PlanStatus.ON_HOLD:
        raise Conflict("plan is already on hold")
    start = data.start_date or local_today(patient.timezone, now)
    if start < plan.start_date:
        raise InvalidInput("a hold cannot start before the plan", field="start_date")
    last = holds_of(session, plan.id)
    if last and last[-1].resume_date is not None and start < last[-1].resume_date:
        raise InvalidInput(
            "a hold cannot start before the previous resume date", field="start_date"
        )
    hold = PlanHold(
        plan_id=plan.id, start_date=start, reason=data.reason, created_by=user_id, created_at=now
    )
    plan.status = PlanStatus.ON_HOLD
    _save_plan(session, plan, patient, now, hold)
    return hold


def resume_plan(
    session: Session,
    plan: Plan,
    patient: Patient,
    data: ResumeIn,
    user_id: int | None,
    now: datetime,
) -> PlanHold:
    """Resume a held plan: remaining doses continue from the resume date."""
    if plan.status != PlanStatus.ON_HOLD:
        raise Conflict("plan is not on hold")
    hold = holds_of(session, plan.id)[-1]
    resume = data.resume_date or local_today(patient.timezone, now)
    if resume < hold.start_date:
        raise InvalidInput("resume date is before the hold started", field="resume_date")
    hold.resume_date = resume
    hold.resumed_by = user_id
    plan.status = PlanStatus.ACTIVE
    _save_plan(session, plan, patient, now, hold)
    return hold


def extend_plan(session: Session, plan: Plan, patient: Patient, weeks: int, now: datetime) -> Plan:
    """Add ``weeks`` of treatment, within the regimen's limit."""
    _require_open(plan)
    total = plan.extension_weeks + weeks
    holds, records = holds_of(session, plan.id), dose_records_of(session, plan.id)
    _checked_doses(
        lambda: build_plan_spec(plan, patient, holds, records, extension_weeks=total), "weeks"
    )
    plan.extension_weeks = total
    _save_plan(session, plan, patient, now)
    return plan


def stop_plan(session: Session, plan: Plan, patient: Patient, data: StopIn, now: datetime) -> Plan:
    """Stop the plan early: doses from ``stopped_on`` on are cancelled."""
    _require_open(plan)
    stopped_on = data.stopped_on or local_today(patient.timezone, now)
    if stopped_on < plan.start_date:
        raise InvalidInput("cannot stop before the plan started", field="stopped_on")
    plan.status = PlanStatus.STOPPED
    plan.stopped_on = stopped_on
    plan.stop_reason = data.reason
    _save_plan(session, plan, patient, now)
    return plan


def record_dose(
    session: Session,
    plan: Plan,
    patient: Patient,
    index: int,
    data: DoseRecordIn,
    user_id: int | None,
    now: datetime,
) -> DoseRecord:
    """Record dose ``index`` as given or missed (a later record corrects an earlier one)."""
    doses = {d.index: d for d in plan_doses(spec_for(session, plan, patient))}
    dose = doses.get(index)
    if dose is None:
        raise NotFound(f"plan has no dose {index}")
    if dose.status == "cancelled":
        raise Conflict("this dose was cancelled when the plan stopped")
    today = local_today(patient.timezone, now)
    on_date = data.on_date or (dose.date if dose.date and dose.date <= today else today)
    if on_date > today:
        raise InvalidInput("a dose cannot be recorded for a future date", field="on_date")
    if on_date < plan.start_date:
        raise InvalidInput("date is before the plan started", field="on_date")
    if data.status == "missed" and data.dose_mg is not None:
        raise InvalidInput("a missed dose has no amount", field="dose_mg")
    warnings = _dose_warnings(plan, patient, dose, data) if data.status == "given" else ()
    if warnings and not data.confirm:
        # Ask, never block: the same request with confirm=true records the dose as entered.
        raise Conflict(
            " ".join(w.message for w in warnings) + " Send confirm=true to record it as entered.",
            field="confirm",
        )
    record = session.exec(
        select(DoseRecord).where(DoseRecord.plan_id == plan.id, DoseRecord.dose_index == index)
    ).first() or DoseRecord(plan_id=plan.id, dose_index=index, status=data.status, on_date=on_date)
    record.status = data.status
    record.on_date = on_date
    record.dose_mg = data.dose_mg
    record.note = data.note
    record.recorded_by = user_id
    record.recorded_at = now
    session.add(record)
    if warnings:
        # Who confirmed which warning, and when: codes only, no amounts (audit rule).
        record_audit(
            session,
            session.get(User, user_id) if user_id is not None else None,
            AuditAction.CONFIRM_DOSE_WARNING,
            patient.id,
            now,
            target=f"plan:{plan.id}:dose:{index}:{','.join(w.code for w in warnings)}",
            team_id=patient.team_id,
        )
    session.flush()
    resync_patient_messages(session, patient, now)
    return record


def _dose_warnings(
    plan: Plan, patient: Patient, dose: PlannedDose, data: DoseRecordIn
) -> tuple[DoseWarning, ...]:
    """What the team must confirm before this dose is recorded as given (none if unknown)."""
    try:
        bsa = (
            mosteller(patient.height_cm, patient.weight_kg)
            if patient.height_cm is not None and patient.weight_kg is not None
            else None
        )
    except ValueError:
        bsa = None  # an implausible height or weight is shown on the plan page already
    return dose_warnings(
        unit=dose.unit,
        bsa=bsa,
        dose_mg=data.dose_mg,
        usual_max=get_regimen(plan.regimen_id).usual_max_of(dose.phase),
    )


def effective_status(plan: Plan, doses: list[PlannedDose]) -> str:
    """The plan's status, with "completed" once every dose is given, missed or cancelled."""
    if (
        plan.status == PlanStatus.ACTIVE
        and doses
        and all(d.status in ("given", "missed", "cancelled") for d in doses)
    ):
        return "completed"
    return plan.status


@dataclass(frozen=True)
class ScheduledEvent:
    """A planner event and the plan it came from (None for prophylaxis)."""

    plan_id: int | None
    event: PlannedEvent


def local_window(timezone: str, first: date, last: date) -> tuple[datetime, datetime]:
    """UTC bounds of the local dates ``first`` .. ``last`` (inclusive)."""
    zone = ZoneInfo(timezone)
    start = datetime.combine(first, time(0), zone).astimezone(UTC)
    end = datetime.combine(last + timedelta(days=1), time(0), zone).astimezone(UTC)
    return start, end


def plan_events_between(
    session: Session, patient: Patient, start_utc: datetime, end_utc: datetime
) -> list[ScheduledEvent]:
    """Every plan event of the patient's plans (any status) in [start, end)."""
    plans = session.exec(select(Plan).where(Plan.patient_id == patient.id)).all()
    # The courses keep check-ins going after the taper (issue 11, item 7): as the pass does.
    courses = session.exec(
        select(ProphylaxisCourse).where(ProphylaxisCourse.patient_id == patient.id)
    ).all()
    current = pick_current_plan(plans)
    events: list[ScheduledEvent] = []
    for plan in plans:
        spec = build_plan_spec(
            plan,
            patient,
            holds_of(session, plan.id),
            dose_records_of(session, plan.id),
            courses=courses,
            current=plan is current,
        )
        events.extend(ScheduledEvent(plan.id, e) for e in plan_events(spec, start_utc, end_utc))
    return events
