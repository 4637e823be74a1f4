"""Prophylaxis forms of the patient page: confirm (or edit and confirm) or decline a proposal.

Starting a plan proposes its regimen's courses (``reminders.data.prophylaxis.propose_regimen_courses``);
the patient page marks them "proposed — confirm" with these two forms. A refusal shows the
patient page again with the form's errors in place.
"""

from __future__ import annotations

from typing import Any

from flask import request, url_for

from backend.api import request_now
from backend.dashboard.forms import (
    FieldKind,
    collect,
    form_integer,
    validate,
)
from backend.dashboard.patient_views import patient_page
from backend.dashboard.web import bp, current_user, refuse_change, save_change
from backend.db import get_session
from backend.schemas import ProphylaxisConfirmIn, ProphylaxisDeclineIn
from backend.services import prophylaxis as prophylaxis_service
from reminders.data.errors import ServiceError
from reminders.data.models import AuditAction

CONFIRM_FIELDS: dict[str, FieldKind] = {
    "drug": "optional",
    "dose_text": "text",
    "times": "times",
    "start_date": "date",
}
DECLINE_FIELDS: dict[str, FieldKind] = {"reason": "text"}


@bp.post("/prophylaxis/<int:course_id>/confirm")
def confirm_prophylaxis(course_id: int) -> Any:
    """Confirm a proposed course with the dose and times prescribed (drug and days may change)."""
    session = get_session()
    course, patient = prophylaxis_service.get_course(session, current_user().team_id, course_id)
    form_name = f"confirm-{course.id}"
    values: dict[str, Any] = {name: request.form.get(name, "") for name in CONFIRM_FIELDS}
    values["weekdays"] = request.form.getlist("weekdays")
    data = collect(request.form, CONFIRM_FIELDS)
    if values["weekdays"]:  # no day ticked: every day
        data["weekdays"] = [form_integer(day) for day in values["weekdays"]]
    confirm, state = validate(ProphylaxisConfirmIn, data, values)
    if confirm is None:
        return patient_page(patient, {form_name: state}, 422)
    try:
        prophylaxis_service.confirm_course(
            session, course, patient, confirm, current_user().id, request_now()
        )
    except ServiceError as error:
        return refuse_change(
            error,
            values,
            [*CONFIRM_FIELDS, "weekdays"],
            lambda state, status: patient_page(patient, {form_name: state}, status),
        )
    return save_change(
        AuditAction.CONFIRM_PROPHYLAXIS,
        patient.id,
        f"course:{course.id}",
        f"{course.drug} confirmed: pill reminders are planned.",
        url_for("dashboard.patient", patient_id=patient.id, _anchor="prophylaxis"),
    )


@bp.post("/prophylaxis/<int:course_id>/decline")
def decline_prophylaxis(course_id: int) -> Any:
    """Decline a proposed course; the reason is required and kept."""
    session = get_session()
    course, patient = prophylaxis_service.get_course(session, current_user().team_id, course_id)
    form_name = f"decline-{course.id}"
    values = {name: request.form.get(name, "") for name in DECLINE_FIELDS}
    decline, state = validate(ProphylaxisDeclineIn, collect(request.form, DECLINE_FIELDS), values)
    if decline is None:
        return patient_page(patient, {form_name: state}, 422)
    try:
        prophylaxis_service.decline_course(
            session, course, patient, decline, current_user().id, request_now()
        )
    except ServiceError as error:
        return refuse_change(
            error,
            values,
            DECLINE_FIELDS,
            lambda state, status: patient_page(patient, {form_name: state}, status),
        )
    return save_change(
        AuditAction.DECLINE_PROPHYLAXIS,
        patient.id,
        f"course:{course.id}",
        f"{course.drug} declined; the reason is kept.",
        url_for("dashboard.patient", patient_id=patient.id, _anchor="prophylaxis"),
    )
