"""Expected-level routes: note that a patient's low-grade temperature is expected, end it, list.

A level in force quiets the re-check and the low-grade alert of a reading within it
(``reminders.core.expected_levels``); never a fever, a red flag or another symptom. Each
route reads the patient through the caller's team (another team's patient is a 404),
declares its audit action and leaves the commit to ``@audited``.
"""

from __future__ import annotations

from datetime import datetime

from sqlmodel import Session

from backend.api import api, current_user, responses, spec
from backend.api.auditing import audit, audited
from backend.api.patients import patient_list, patient_request
from backend.schemas import ExpectedLevelIn, ExpectedLevelOut
from backend.serializers import expected_level_out
from backend.services import expected_levels as level_service
from reminders.data.models import Patient
from reminders.data.statuses import AuditAction

TAGS = ["patients"]
#: The answers of noting a level: 409 while another is in force, 422 naming the field.
LEVEL_CHANGE = responses(HTTP_201=ExpectedLevelOut, HTTP_409=None, HTTP_422=None)


def _levels_out(session: Session, patient: Patient, now: datetime) -> list[ExpectedLevelOut]:
    """The patient's levels, newest first, each with its state now."""
    return [
        expected_level_out(note, patient.id, now)
        for note in level_service.levels_of(session, patient)
    ]


@api.post("/patients/<int:patient_id>/expected-levels")
@spec.validate(json=ExpectedLevelIn, resp=LEVEL_CHANGE, tags=TAGS)
@audited(AuditAction.SET_EXPECTED_LEVEL)
def set_expected_level(patient_id: int, json: ExpectedLevelIn):
    """Note that readings up to ``up_to_c`` are expected until ``expires_at`` (at most 7 days).

    422 naming the field for a level at or above the fever threshold (38.0 C) or below
    37.5 C, an expiry in the past or too far ahead, or no reason; 409 while another level
    is in force or for a discharged patient.
    """
    session, patient, now = patient_request(patient_id)
    level = level_service.set_level(session, patient, json, current_user().id, now)
    audit(patient.id, f"expected_level:{level.id}")
    return expected_level_out(level_service.level_note(session, level), patient.id, now), 201


@api.post("/patients/<int:patient_id>/expected-levels/end")
@spec.validate(resp=responses(HTTP_200=ExpectedLevelOut, HTTP_409=None), tags=TAGS)
@audited(AuditAction.END_EXPECTED_LEVEL)
def end_expected_level(patient_id: int):
    """End the patient's level in force now; 409 when none is in force."""
    session, patient, now = patient_request(patient_id)
    level = level_service.end_level(session, patient, current_user().id, now)
    audit(patient.id, f"expected_level:{level.id}")
    return expected_level_out(level_service.level_note(session, level), patient.id, now)


@api.get("/patients/<int:patient_id>/expected-levels")
@spec.validate(resp=responses(HTTP_200=list[ExpectedLevelOut]), tags=TAGS)
@audited(AuditAction.VIEW_EXPECTED_LEVELS)
def list_expected_levels(patient_id: int):
    """The patient's levels, newest first, each with its state now (in force, expired, ended)."""
    return patient_list(patient_id, _levels_out)
