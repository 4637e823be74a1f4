"""Expected-level routes: note that a patient's low-grade temperature is expected, end it, list.

A level in force quiets the re-check and the low-grade alert of a reading within it
(``reminders.core.expected_levels``); never a fever, a red flag or another symptom. Each
route reads the patient through the caller's team (another team's patient is a 404),
declares its audit action and leaves the commit to ``@audited``.
"""

from __future__ import annotations

from backend.api import api, current_user, request_now, responses, spec
from backend.api.auditing import audit, audited
from backend.db import get_session
from backend.schemas import ExpectedLevelIn, ExpectedLevelOut
from backend.serializers import expected_level_out
from backend.services import expected_levels as level_service
from backend.services.patients import get_patient
from reminders.data.models import AuditAction

TAGS = ["patients"]


@api.post("/patients/<int:patient_id>/expected-levels")
@spec.validate(
    json=ExpectedLevelIn,
    resp=responses(HTTP_201=ExpectedLevelOut, HTTP_409=None, HTTP_422=None),
    tags=TAGS,
)
@audited(AuditAction.SET_EXPECTED_LEVEL)
def set_expected_level(patient_id: int, json: ExpectedLevelIn):
    """Note that readings up to ``up_to_c`` are expected until ``expires_at`` (at most 7 days).

    422 naming the field for a level at or above the fever threshold (38.0 C) or below
    37.5 C, an expiry in the past or too far ahead, or no reason; 409 while another level
    is in force or for a discharged patient.
    """
    session = get_session()
    now = request_now()
    patient = get_patient(session, current_user().team_id, patient_id)
    level = level_service.set_level(session, patient, json, current_user().id, now)
    audit(patient.id, f"expected_level:{level.id}")
    return expected_level_out(level_service.level_note(session, level), patient.id, now), 201


@api.post("/patients/<int:patient_id>/expected-levels/end")
@spec.validate(resp=responses(HTTP_200=ExpectedLevelOut, HTTP_409=None), tags=TAGS)
@audited(AuditAction.END_EXPECTED_LEVEL)
def end_expected_level(patient_id: int):
    """End the patient's level in force now; 409 when none is in force."""
    session = get_session()
    now = request_now()
    patient = get_patient(session, current_user().team_id, patient_id)
    level = level_service.end_level(session, patient, current_user().id, now)
    audit(patient.id, f"expected_level:{level.id}")
    return expected_level_out(level_service.level_note(session, level), patient.id, now)


@api.get("/patients/<int:patient_id>/expected-levels")
@spec.validate(resp=responses(HTTP_200=list[ExpectedLevelOut]), tags=TAGS)
@audited(AuditAction.VIEW_EXPECTED_LEVELS)
def list_expected_levels(patient_id: int):
    """The patient's levels, newest first, each with its state now (in force, expired, ended)."""
    session = get_session()
    now = request_now()
    patient = get_patient(session, current_user().team_id, patient_id)
    levels = [
        expected_level_out(note, patient.id, now).model_dump(mode="json")
        for note in level_service.levels_of(session, patient)
    ]
    audit(patient.id, f"patient:{patient.id}")
    return levels
