"""Symptom reports as the care team reads them: what was reported, triaged and why."""

from __future__ import annotations

from sqlmodel import Session, select

from reminders.data.models import SymptomReport


def reports_of(session: Session, patient_id: int) -> list[SymptomReport]:
    """The patient's symptom reports with their triage and rule ids, oldest first."""
    query = select(SymptomReport).where(SymptomReport.patient_id == patient_id)
    return list(session.exec(query.order_by(SymptomReport.reported_at, SymptomReport.id)).all())
