"""Lab results: recording them and raising the alerts the lab rules suggest."""

from __future__ import annotations

from datetime import datetime

from sqlmodel import Session, select

from backend.errors import InvalidInput
from backend.models import Alert, LabResult, Patient
from backend.schemas import LabIn
from backend.services.alerts import raise_alert
from reminders.core.labs import LAB_MAXIMUM, LAB_UNITS, LabKind, LabValue, evaluate_lab


def labs_of(session: Session, patient_id: int, kind: str | None = None) -> list[LabResult]:
    """The patient's lab results, oldest first."""
    query = select(LabResult).where(LabResult.patient_id == patient_id)
    if kind is not None:
        query = query.where(LabResult.kind == kind)
    return list(session.exec(query.order_by(LabResult.taken_at, LabResult.id)).all())


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
            team_id=patient.team_id,
            patient_id=patient.id,
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
        for finding in evaluate_lab(LabValue(kind, data.value, data.taken_at), history)
    ]
    return lab, alerts
