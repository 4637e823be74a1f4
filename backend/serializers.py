"""Turn stored rows and planner results into the API's response schemas."""

from __future__ import annotations

from sqlmodel import Session

from backend.schemas import (
    AlertOut,
    DoseOut,
    DoseWarningOut,
    EventOut,
    HoldOut,
    LabOut,
    PatientOut,
    PatientReplyOut,
    PlanOut,
    ProphylaxisOut,
    RegimenSummary,
    ReportOut,
    RiskWindowOut,
    ScheduleOut,
    StopEligibilityOut,
)
from backend.services.plans import dose_records_of, effective_status, holds_of
from backend.services.schedule import ScheduleWindow
from reminders.core.bsa import BodySurfaceArea, dose_for, dose_warnings, mosteller
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
)
from reminders.specs import build_plan_spec


def patient_out(patient: Patient) -> PatientOut:
    """A patient for the API."""
    return PatientOut.model_validate(patient, from_attributes=True)


def alert_out(alert: Alert, reply: OutboundMessage | None = None) -> AlertOut:
    """An alert for the API, with the answer its patient got (``replies_to_patient``)."""
    out = AlertOut.model_validate(alert, from_attributes=True)
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
    return ProphylaxisOut(
        id=course.id,
        patient_id=course.patient_id,
        plan_id=course.plan_id,
        drug=course.drug,
        dose_text=course.dose_text,
        times=course.times,
        weekdays=course.weekdays,
        start_date=course.start_date,
        min_months_after_last_dose=course.min_months_after_last_dose,
        cd4_rule=course.cd4_rule,
        status=course.status,
        stopped_on=course.stopped_on,
        stop_note=course.stop_note,
        regimen_entry=course.regimen_entry,
        confirmed_at=course.confirmed_at,
        declined_at=course.declined_at,
        decline_reason=course.decline_reason,
        stop_eligibility=StopEligibilityOut(
            eligible=eligibility.eligible,
            earliest_date=eligibility.earliest_date,
            missing=list(eligibility.missing),
            satisfied=list(eligibility.satisfied),
            source=eligibility.source,
        ),
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
            DoseOut(
                index=dose.index,
                phase=dose.phase,
                date=dose.date,
                local_time=dose.local,
                amount=dose.amount,
                unit=dose.unit,
                route=dose.route,
                in_hospital=dose.in_hospital,
                observation_hours=dose.observation_hours,
                status=dose.status,
                calculated_mg=calculated.mg if calculated else None,
                calculation=calculated.calculation if calculated else None,
                recorded_mg=record.dose_mg if record else None,
                warnings=[
                    DoseWarningOut(code=w.code, message=w.message, source=w.source)
                    for w in warnings
                ],
                source=dose.source,
            )
        )
    return PlanOut(
        id=plan.id,
        patient_id=plan.patient_id,
        regimen_id=plan.regimen_id,
        regimen_name=spec.regimen.name,
        start_date=plan.start_date,
        options=plan.options,
        status=effective_status(plan, doses),
        extension_weeks=plan.extension_weeks,
        stopped_on=plan.stopped_on,
        stop_reason=plan.stop_reason,
        body_surface_area=bsa.calculation if bsa else None,
        doses_total=len(doses),
        doses_given=sum(d.status == "given" for d in doses),
        doses_missed=sum(d.status == "missed" for d in doses),
        doses=dose_rows,
        holds=[
            HoldOut(id=h.id, start_date=h.start_date, resume_date=h.resume_date, reason=h.reason)
            for h in holds
        ],
        risk_windows=[
            RiskWindowOut(
                id=w.id,
                kind=w.kind,
                name=w.name,
                first_date=first,
                last_date=last,
                source=w.source,
            )
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
            EventOut(
                key=s.event.key,
                kind=str(s.event.kind),
                title=s.event.title,
                local_time=s.event.local,
                at_utc=s.event.at_utc,
                plan_id=s.plan_id,
                dose_index=s.event.dose_index,
                details=dict(s.event.details),
                source=s.event.source,
            )
            for s in window.events
        ],
    )


def regimen_summary(regimen: Regimen) -> RegimenSummary:
    """A regimen of the catalogue for the API."""
    definition = regimen.model_dump(mode="json")
    return RegimenSummary(
        id=regimen.id,
        name=regimen.name,
        drug=regimen.drug,
        disease=regimen.disease,
        route=regimen.route,
        summary=regimen.summary,
        sources=list(regimen.sources),
        options=definition.get("options", {}),
        definition=definition,
    )
