"""An alert about a patient is filed with the patient's own team (hazard H-54)."""

from __future__ import annotations

import inspect
from collections.abc import Callable

from sqlmodel import Session

from reminders.data.alerts import raise_alert
from reminders.data.models import Patient, User
from tests.conftest import FIXED_NOW


def test_an_alert_goes_to_the_patients_team_and_no_caller_can_name_another(
    session: Session,
    make_user: Callable[..., tuple[User, str]],
    make_patient: Callable[..., Patient],
) -> None:
    nurse, _ = make_user("Hématologie clinique — Cliniques universitaires Saint-Luc")
    other, _ = make_user("Dienst Hematologie — Universitair Ziekenhuis Gent")
    patient = make_patient(other.team_id, display_name="Geertruida Van den Broeck-Verstraete")

    alert = raise_alert(
        session,
        patient,
        severity="high",
        kind="checkin_unanswered",
        reason="Symptom check-in not answered (sent twice): please call the patient",
        now=FIXED_NOW,
    )
    session.commit()

    assert (alert.team_id, alert.patient_id) == (other.team_id, patient.id)
    assert alert.team_id != nurse.team_id
    assert "team_id" not in inspect.signature(raise_alert).parameters
