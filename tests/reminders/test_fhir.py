"""The pure FHIR mapping (``reminders.core.fhir``) on plain records, validated by ``fhir.resources``.

A small hand-written record (the export's shape) covers what the week of care in
``tests/backend/test_rights.py`` may not: a lab kind without a LOINC code here, pill
weekdays, a proposed and a declined course, a cancelled SMS, a patient discharged; and
an unknown format is refused rather than mapped.
"""

from __future__ import annotations

import pytest
from fhir.resources.R4B import get_fhir_model_class
from fhir.resources.R4B.bundle import Bundle

from reminders.core.fhir import LOINC, RECORD_FORMAT, local, record_bundle, timing

PATIENT = {
    "id": 7,
    "display_name": "Jean-François Van den Bossche-Lefèvre",
    "hospital_ref": None,
    "phone": "+32470123456",
    "language": "nl",
    "discharged_at": "2026-06-01T09:00:00Z",
}


def record(**sections):
    return {
        "format": RECORD_FORMAT,
        "format_version": 1,
        "export_id": "5f0c6a4e-8a56-4c8e-bb7c-2f9f54f1a001",
        "exported_at": "2026-06-02T08:00:00Z",
        "patient": PATIENT,
        **sections,
    }


def resources(bundle):
    Bundle.model_validate(bundle)
    found = [entry["resource"] for entry in bundle["entry"]]
    for resource in found:
        get_fhir_model_class(resource["resourceType"]).model_validate(resource)
    return found


def test_a_discharged_patient_without_hospital_reference() -> None:
    (patient,) = resources(record_bundle(record()))
    assert patient["active"] is False
    assert patient["identifier"] == [{"system": local("patient-id"), "value": "7"}]
    assert patient["communication"][0]["language"]["coding"][0]["code"] == "nl"


def test_labs_courses_and_sms_map_to_their_codes_and_statuses() -> None:
    bundle = record_bundle(
        record(
            labs=[
                {"id": 1, "kind": "cd4", "value": 180, "unit": "cells/uL", "taken_at": "2026-05-01T08:00:00Z"},
                {"id": 2, "kind": "ferritin", "value": 300, "unit": "ug/L", "taken_at": "2026-05-01T08:00:00Z"},
            ],
            prophylaxis_courses=[
                {"id": 3, "status": "proposed", "drug": "acyclovir", "dose_text": "", "times": [], "start_date": "2026-05-01", "plan_id": None},
                {"id": 4, "status": "declined", "drug": "cotrimoxazole", "dose_text": "", "times": ["08:00"], "weekdays": [0, 2, 4], "start_date": "2026-05-01", "decline_reason": "allergy", "plan_id": None},
            ],
            sms={
                "outbound": [{"id": 5, "status": "cancelled", "kind": "checkin", "body": "Température ?"}],
                "inbound": [{"id": 6, "body": "37,2", "received_at": "2026-05-01T18:03:00Z"}],
            },
        )
    )  # fmt: skip
    found = resources(bundle)
    cd4, ferritin = (r for r in found if r["resourceType"] == "Observation")
    assert cd4["code"]["coding"][0] == {
        "system": LOINC,
        "code": "24467-3",
        "display": "CD3+CD4+ (T4 helper) cells [#/volume] in Blood",
    }
    assert ferritin["code"]["coding"] == [{"system": local("lab"), "code": "ferritin"}]
    assert ferritin["valueQuantity"] == {"value": 300, "unit": "ug/L"}  # no UCUM code guessed
    proposed, declined = (r for r in found if r["resourceType"] == "MedicationRequest")
    assert (proposed["status"], proposed["intent"]) == ("draft", "proposal")
    assert (declined["status"], declined["intent"]) == ("cancelled", "order")
    assert declined["note"] == [{"text": "allergy"}]
    assert declined["dosageInstruction"][0]["timing"]["repeat"]["dayOfWeek"] == [
        "mon",
        "wed",
        "fri",
    ]
    out, inbound = (r for r in found if r["resourceType"] == "Communication")
    assert out["status"] == "not-done" and out["recipient"] == [inbound["sender"]]
    assert inbound["payload"] == [{"contentString": "37,2"}]


def test_timing_of_an_ongoing_daily_course() -> None:
    assert timing({"times": ["08:00", "20:00"], "start_date": "2026-03-02"}) == {
        "repeat": {"boundsPeriod": {"start": "2026-03-02"}, "timeOfDay": ["08:00:00", "20:00:00"]}
    }


def test_an_unknown_format_is_refused() -> None:
    with pytest.raises(ValueError, match="patient-record"):
        record_bundle(record() | {"format_version": 2})
