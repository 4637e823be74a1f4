"""The data-rights pages of a patient (admins of the patient's team): export and erasure.

* ``/patients/<id>/rights``: what the companion holds and keeps, the two downloads and
  the erasure form (viewing it is audited as a view of the patient).
* ``/patients/<id>/record.json`` and ``/patients/<id>/record.fhir.json``: the whole record
  (``mab-companion/patient-record`` v1, or a FHIR R4 Bundle) as a download.
* ``POST /patients/<id>/erase``: the admin types ERASE to confirm; the pseudonym is shown
  on the page that answers, to be noted in the hospital's file (it is the patient's name here
  from then on).

Other members get 403; another team's patient is a 404 (kept in that team's trail).
"""

from __future__ import annotations

import json
from typing import Any

from flask import Response, request

from backend.api import request_now
from backend.dashboard.forms import FormState
from backend.dashboard.web import (
    admin_required,
    audit,
    bp,
    current_user,
    render_page,
    viewed_patient,
)
from backend.db import get_session
from backend.schemas_rights import ERASE_CONFIRMATION
from backend.services import rights
from backend.services.patients import get_patient
from reminders.data.errors import Conflict
from reminders.data.models import Patient
from reminders.data.statuses import AuditAction


@bp.get("/patients/<int:patient_id>/rights")
@admin_required
def patient_rights(patient_id: int) -> Any:
    """The patient's data rights: the downloads and the erasure form."""
    return _rights_page(viewed_patient(patient_id, AuditAction.VIEW_PATIENT), FormState())


@bp.get("/patients/<int:patient_id>/record.json")
@admin_required
def download_record(patient_id: int) -> Response:
    """The whole record as the companion's JSON."""
    return _download(patient_id, "json", rights.export_record, "application/json")


@bp.get("/patients/<int:patient_id>/record.fhir.json")
@admin_required
def download_record_fhir(patient_id: int) -> Response:
    """The whole record as a FHIR R4 Bundle."""
    return _download(patient_id, "fhir", rights.export_bundle, "application/fhir+json")


def _download(patient_id: int, kind: str, export: Any, mimetype: str) -> Response:
    session = get_session()
    record = get_patient(session, current_user().team_id, patient_id)
    now = request_now()
    document = export(session, record, now)
    audit(AuditAction.EXPORT_RECORD, record.id, f"patient:{record.id}:{kind}")
    session.commit()
    suffix = "fhir.json" if kind == "fhir" else "json"
    filename = f"patient-{record.id}-record-{now:%Y%m%d}.{suffix}"
    return Response(
        json.dumps(document, ensure_ascii=False, indent=2),
        mimetype=mimetype,
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )


@bp.post("/patients/<int:patient_id>/erase")
@admin_required
def erase_patient(patient_id: int) -> Any:
    """Erase the contact details once the admin typed ERASE; show the pseudonym to note."""
    session = get_session()
    record = get_patient(session, current_user().team_id, patient_id)
    typed = request.form.get("confirm", "")
    if typed.strip() != ERASE_CONFIRMATION:
        state = FormState(
            {"confirm": typed},
            {"confirm": f"type {ERASE_CONFIRMATION} to confirm: the erasure cannot be undone"},
        )
        return _rights_page(record, state, 422)
    try:
        erasure = rights.erase_contact_details(session, record, request_now())
    except Conflict as error:
        session.rollback()
        return _rights_page(record, FormState(message=error.message), 409)
    audit(AuditAction.ERASE_CONTACT_DETAILS, record.id, f"patient:{record.id}")
    session.commit()
    return _rights_page(session.get_one(Patient, record.id), FormState(), erasure=erasure)


def _rights_page(record: Patient, form: FormState, status: int = 200, **context: Any) -> Any:
    return render_page("rights.html", status, p=record, form=form, **context)
