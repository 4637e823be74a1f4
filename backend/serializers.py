"""Turn stored rows and planner results into the API's response schemas."""

from __future__ import annotations

from datetime import datetime
from typing import Any, TypeVar
from zoneinfo import ZoneInfo

from pydantic import BaseModel
from sqlmodel import Session

from backend.schemas import (
    AlertOut,
    DoseOut,
    DoseWarningOut,
    EscalationPolicyOut,
    EventOut,
    ExpectedLevelOut,
    HoldOut,
    LabOut,
    OnCallNowOut,
    OnDutyOut,
    PatientOut,
    PatientReplyOut,
    PlanOut,
    ProfileOut,
    ProphylaxisOut,
    RegimenSummary,
    ReportOut,
    RiskWindowOut,
    ScheduleOut,
    ShiftOut,
    StopEligibilityOut,
)
from backend.services.oncall import OnCallSummary, OnDuty, RotaLine
from backend.services.plans import dose_records_of, effective_status, holds_of
from backend.services.schedule import ScheduleWindow
from reminders.core.bsa import BodySurfaceArea, dose_for, dose_warnings, mosteller
from reminders.core.escalation import EscalationPolicy, policy_to_dict
from reminders.core.expected_levels import ExpectedLevelNote
from reminders.core.oncall_text import alert_code
from reminders.core.planner import plan_doses, risk_window_spans
from reminders.core.prophylaxis import StopEligibility
from reminders.core.regimens import Regimen
from reminders.data.models import (
    Alert,
    LabResult,
    OutboundMessage,
    Patient,
    Plan,
    ProphylaxisCourse,
    SymptomReport,
    User,
)
from reminders.specs import build_plan_spec

M = TypeVar("M", bound=BaseModel)


def from_attributes(model: type[M], source: object, **given: Any) -> M:
    """``model`` filled from the attributes of ``source`` that have its field names, and ``given``.

    Most response schemas repeat the names of the rows and planner results they show;
    only what differs (a renamed field, a computed one) is written at the call.
    """
    shared = {
        name: getattr(source, name)
        for name in model.model_fields.keys() - given.keys()
        if hasattr(source, name)
    }
    return model(**shared, **given)


def patient_out(patient: Patient) -> PatientOut:
    """A patient for the API."""
    return PatientOut.model_validate(patient, from_attributes=True)


def alert_out(alert: Alert, reply: OutboundMessage | None = None) -> AlertOut:
    """An alert for the API, with the answer its patient got (``replies_to_patient``)."""
    out = AlertOut.model_validate(alert, from_attributes=True)
    out.code = alert_code(alert.id)
    if reply is not None:
        out.reply_to_patient = PatientReplyOut.model_validate(reply, from_attributes=True)
    return out


def lab_out(lab: LabResult) -> LabOut:
    """A lab result for the API."""
    return LabOut.model_validate(lab, from_attributes=True)


def report_out(report: SymptomReport) -> ReportOut:
    """A symptom report for the API, with the ids of the triage rules that decided it."""
    return ReportOut.model_validate(report, from_attributes=True)


def prophylaxis_out(course: ProphylaxisCourse, eligibility: StopEligibility) -> ProphylaxisOut:
    """A prophylaxis course and its stop eligibility for the API."""
    return from_attributes(
        ProphylaxisOut,
        course,
        stop_eligibility=from_attributes(StopEligibilityOut, eligibility),
    )


def body_surface_area(patient: Patient) -> BodySurfaceArea | None:
    """The patient's Mosteller BSA, when height and weight are known."""
    if patient.height_cm is None or patient.weight_kg is None:
        return None
    return mosteller(patient.height_cm, patient.weight_kg)


def plan_out(session: Session, plan: Plan, patient: Patient) -> PlanOut:
    """A plan with its doses, holds and BSA calculation for the API."""
    holds = holds_of(session, plan.id)
    records = {r.dose_index: r for r in dose_records_of(session, plan.id)}
    spec = build_plan_spec(plan, patient, holds, records.values())
    doses = plan_doses(spec)
    bsa = body_surface_area(patient)
    dose_rows = []
    for dose in doses:
        calculated = None
        if dose.unit == "mg/m2" and bsa is not None:
            calculated = dose_for(dose.amount, bsa)
        record = records.get(dose.index)
        warnings = dose_warnings(
            unit=dose.unit,
            bsa=bsa,
            dose_mg=record.dose_mg if record else None,
            usual_max=spec.regimen.usual_max_of(dose.phase),
        )
        dose_rows.append(
            from_attributes(
                DoseOut,
                dose,
                local_time=dose.local,
                calculated_mg=calculated.mg if calculated else None,
                calculation=calculated.calculation if calculated else None,
                recorded_mg=record.dose_mg if record else None,
                warnings=[
                    DoseWarningOut(code=w.code, message=w.message, source=w.source)
                    for w in warnings
                ],
            )
        )
    return from_attributes(
        PlanOut,
        plan,
        regimen_name=spec.regimen.name,
        status=effective_status(plan, doses),
        body_surface_area=bsa.calculation if bsa else None,
        doses_total=len(doses),
        doses_given=sum(d.status == "given" for d in doses),
        doses_missed=sum(d.status == "missed" for d in doses),
        doses=dose_rows,
        holds=[from_attributes(HoldOut, h) for h in holds],
        risk_windows=[
            from_attributes(RiskWindowOut, w, first_date=first, last_date=last)
            for w, first, last in risk_window_spans(spec)
        ],
    )


def schedule_out(patient: Patient, window: ScheduleWindow) -> ScheduleOut:
    """A schedule window for the API."""
    return ScheduleOut(
        patient_id=patient.id,
        timezone=patient.timezone,
        from_=window.first,
        to=window.last,
        events=[
            from_attributes(
                EventOut,
                s.event,
                kind=str(s.event.kind),
                local_time=s.event.local,
                plan_id=s.plan_id,
                details=dict(s.event.details),
            )
            for s in window.events
        ],
    )


def regimen_summary(regimen: Regimen) -> RegimenSummary:
    """A regimen of the catalogue for the API."""
    definition = regimen.model_dump(mode="json")
    return from_attributes(
        RegimenSummary,
        regimen,
        options=definition.get("options", {}),
        definition=definition,
    )


def shift_out(line: RotaLine, zone: ZoneInfo) -> ShiftOut:
    """A line of the rota, its instants in UTC and in the team's zone."""
    shift = line.shift
    return from_attributes(
        ShiftOut,
        shift,
        user_name=line.user.name or line.user.email,
        starts_local=shift.starts_at.astimezone(zone),
        ends_local=shift.ends_at.astimezone(zone),
        covers=line.covers,
    )


def on_call_now_out(summary: OnCallSummary) -> OnCallNowOut:
    """Who is on call now (ids and names, never their phone numbers), and what is missing."""

    def duty(held: OnDuty | None) -> OnDutyOut | None:
        if held is None:
            return None
        return OnDutyOut(
            user_id=held.user.id, name=held.user.name or held.user.email, until=held.until
        )

    return OnCallNowOut(
        at=summary.at,
        timezone=summary.timezone,
        primary=duty(summary.primary),
        backup=duty(summary.backup),
        fallback_phone=summary.fallback_phone,
        gaps={str(role): at for role, at in summary.gaps.items()},
        warnings=summary.warnings,
    )


def policy_out(policy: EscalationPolicy, is_default: bool) -> EscalationPolicyOut:
    """The policy a team follows, as the API shows it."""
    return EscalationPolicyOut(
        **policy_to_dict(policy), is_default=is_default, source=policy.source
    )


def profile_out(user: User) -> ProfileOut:
    """The signed-in user's own profile."""
    return from_attributes(ProfileOut, user)


def expected_level_out(note: ExpectedLevelNote, patient_id: int, now: datetime) -> ExpectedLevelOut:
    """An expected level with its state at ``now``."""
    return from_attributes(
        ExpectedLevelOut, note, patient_id=patient_id, state=note.state(now).value
    )
