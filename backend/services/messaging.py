"""Keep the SMS outbox in step with the care team's changes.

Any change to a plan, a prophylaxis course or a patient's contact preferences
re-plans that patient's unsent reminders, so that (for example) a hold stops the
dose reminders at once rather than at the next planning pass.
"""

from __future__ import annotations

from datetime import datetime

from sqlmodel import Session, SQLModel

from reminders.data.models import Patient
from reminders.outbox import queue_patient_message
from reminders.planning import replan_patient
from reminders.rendering import patient_context, sms_allowed


def resync_patient_messages(session: Session, patient: Patient, now: datetime) -> None:
    """Re-plan the patient's unsent reminders from the current plan and preferences."""
    replan_patient(session, patient.id, now)


def save_and_resync(session: Session, patient: Patient, now: datetime, *rows: SQLModel) -> None:
    """Write the care team's changed ``rows``, then re-plan the patient's reminders from them.

    The flush comes first: re-planning reads the plan and courses back from the database.
    """
    session.add_all(rows)
    session.flush()
    resync_patient_messages(session, patient, now)


def send_welcome(session: Session, patient: Patient, now: datetime) -> bool:
    """Queue the welcome SMS once, when the patient may receive SMS."""
    if not sms_allowed(patient):
        return False
    context = patient_context(session, patient)
    return queue_patient_message(
        session,
        context,
        "welcome",
        dedupe_key=f"welcome:p{patient.id}",
        now=now,
    )
