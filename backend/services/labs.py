"""Lab results: recording them and raising the alerts the lab rules suggest."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlmodel import Session, select

from backend.schemas import LabIn
from reminders.core.clinical_rules import clinical_rules
from reminders.core.labs import (
    LAB_MAXIMUM,
    LAB_UNITS,
    LabKind,
    LabValue,
    ReportedSigns,
    evaluate_lab,
)
from reminders.data.alerts import raise_alert
from reminders.data.errors import InvalidInput
from reminders.data.models import Alert, LabResult, Patient, SymptomReport


def labs_of(session: Session, patient_id: int, kind: str | None = None) -> list[LabResult]:
    """The patient's lab results, oldest first."""
    query = select(LabResult).where(LabResult.patient_id == patient_id)
    if kind is not None:
        query = query.where(LabResult.kind == kind)
    return list(session.exec(query.order_by(LabResult.taken_at, LabResult.id)).all())


def _reports_around(session: Session, patient_id: int, taken_at: datetime) -> list[ReportedSigns]:
    """The patient's symptom reports within the CMV rule's days of a sample."""
    days = timedelta(days=clinical_rules().cmv.symptomatic_within_days)
    rows = session.exec(
        select(SymptomReport).where(
            SymptomReport.patient_id == patient_id,
            SymptomReport.reported_at >= taken_at - days,
            SymptomReport.reported_at <= taken_at + days,
        )
    ).all()
    return [
        ReportedSigns(r.reported_at, r.temperature_c, frozenset(r.symptoms or ())) for r in rows
    ]


def record_lab(
    session: Session, patient: Patient, data: LabIn, user_id: int | None, now: datetime
) -> tuple[LabResult, list[Alert]]:
    """Store a lab result and raise an alert for each finding of the lab rules."""
    kind = LabKind(data.kind)
    if data.value > LAB_MAXIMUM[kind]:
        raise InvalidInput(f"value is not plausible for {kind.value}", field="value")
    if data.taken_at > now:
        raise InvalidInput("taken_at is in the future", field="taken_at")
    history = [
        LabValue(LabKind(r.kind), r.value, r.taken_at)
        for r in labs_of(session, patient.id, kind.value)
    ]
    lab = LabResult(
        patient_id=patient.id,
        kind=kind.value,
        value=data.value,
        unit=LAB_UNITS[kind],
        taken_at=data.taken_at,
        note=data.note,
        recorded_by=user_id,
        recorded_at=now,
    )
    session.add(lab)
    session.flush()
    alerts = [
        raise_alert(
            session,
            patient,
            severity=finding.severity,
            kind=finding.code,
            reason=finding.reason,
            details={
                "lab_id": lab.id,
                "suggest_hold": finding.suggest_hold,
                "prophylaxis_may_stop": finding.prophylaxis_may_stop,
            },
            source=finding.source,
            now=now,
            dedupe_key=f"lab:{lab.id}:{finding.code}",
        )
        for finding in evaluate_lab(
            LabValue(kind, data.value, data.taken_at),
            history,
            reports=_reports_around(session, patient.id, data.taken_at)
            if kind is LabKind.CMV_PCR
            else (),
        )
    ]
    return lab, alerts
