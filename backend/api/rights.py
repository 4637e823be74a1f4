"""Data-rights routes (admins of the patient's team): the whole record, and the erasure.

* ``GET /patients/<id>/record``: the record as JSON (``mab-companion/patient-record``, v1).
* ``GET /patients/<id>/record/fhir``: the same as a FHIR R4 Bundle.
* ``POST /patients/<id>/erase`` with ``{"confirm": "ERASE"}``: the contact details become a
  pseudonym, pending SMS are cancelled, nothing more is sent (irreversible).

Other members get 403; another team's patient is a 404 (kept in that team's trail).
Each is audited (``export_record`` with the format, ``erase_contact_details``).
"""

from __future__ import annotations

from datetime import datetime

from flask import jsonify
from sqlmodel import Session
from werkzeug.exceptions import Forbidden

from backend.api import api, current_user, responses, spec
from backend.api.auditing import audit, audited
from backend.api.patients import patient_request
from backend.schemas import ErrorOut
from backend.schemas_rights import ErasureIn, ErasureOut, FhirBundleOut, RecordOut
from backend.services import rights
from reminders.data.models import Patient
from reminders.data.statuses import AuditAction

TAGS = ["data rights"]
ADMIN_ONLY = {"HTTP_403": ErrorOut}


def _admin_patient(patient_id: int) -> tuple[Session, Patient, datetime]:
    """The request's session, the caller's team's patient and now; 403 unless an admin.

    The patient is read first: another team's patient is a 404 for everyone, so that a
    non-admin cannot tell from a 403 that the id exists elsewhere.
    """
    found = patient_request(patient_id)
    if current_user().role != "admin":
        raise Forbidden("only an admin of the patient's team can do this")
    return found


@api.get("/patients/<int:patient_id>/record")
@spec.validate(resp=responses(HTTP_200=RecordOut, **ADMIN_ONLY), tags=TAGS)
@audited(AuditAction.EXPORT_RECORD)
def export_record(patient_id: int):
    """The patient's whole record as JSON: profile, plans, doses, prophylaxis, labs, reports,
    SMS both ways, alerts with their timeline, and the audit of access to the record."""
    session, patient, now = _admin_patient(patient_id)
    record = rights.export_record(session, patient, now)
    audit(patient.id, f"patient:{patient.id}:json")
    return jsonify(record)


@api.get("/patients/<int:patient_id>/record/fhir")
@spec.validate(resp=responses(HTTP_200=FhirBundleOut, **ADMIN_ONLY), tags=TAGS)
@audited(AuditAction.EXPORT_RECORD)
def export_record_fhir(patient_id: int):
    """The patient's whole record as a FHIR R4 Bundle (type ``collection``)."""
    session, patient, now = _admin_patient(patient_id)
    bundle = rights.export_bundle(session, patient, now)
    audit(patient.id, f"patient:{patient.id}:fhir")
    # application/json, as the OpenAPI document says (FHIR accepts it for its JSON format);
    # the page's download is application/fhir+json.
    return jsonify(bundle)


@api.post("/patients/<int:patient_id>/erase")
@spec.validate(
    json=ErasureIn,
    resp=responses(HTTP_200=ErasureOut, HTTP_409=ErrorOut, HTTP_422=None, **ADMIN_ONLY),
    tags=TAGS,
)
@audited(AuditAction.ERASE_CONTACT_DETAILS)
def erase_contact_details(patient_id: int, json: ErasureIn):
    """Erase the patient's name, phone number and hospital reference at their request.

    Irreversible: they become one pseudonym (answered, to note in the hospital's file;
    the record goes by it from then on), every pending SMS is
    cancelled and nothing more is sent; the clinical record is kept. 409 if already erased.
    """
    session, patient, now = _admin_patient(patient_id)
    done = rights.erase_contact_details(session, patient, now)
    audit(patient.id, f"patient:{patient.id}")
    return ErasureOut(
        patient_id=done.patient_id,
        pseudonym=done.pseudonym,
        erased_at=now,
        cancelled_sms=done.cancelled_sms,
        revoked_calendar_links=done.revoked_links,
        rows_scrubbed=done.rows_scrubbed,
    )
