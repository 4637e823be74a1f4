"""Prophylaxis forms of the patient page: confirm (or edit and confirm) or decline a proposal.

Starting a plan proposes its regimen's courses (``reminders.data.prophylaxis.propose_regimen_courses``);
the patient page marks them "proposed — confirm" with these two forms. A refusal shows the
patient page again with the form's errors in place.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from flask import request, url_for
from pydantic import BaseModel
from sqlmodel import Session

from backend.api import request_now
from backend.dashboard.forms import (
    FieldKind,
    FormState,
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
from reminders.data.models import AuditAction, Patient, ProphylaxisCourse

CONFIRM_FIELDS: dict[str, FieldKind] = {
    "drug": "optional",
    "dose_text": "text",
    "times": "times",
    "start_date": "date",
}
DECLINE_FIELDS: dict[str, FieldKind] = {"reason": "text"}


def _confirm_form() -> tuple[dict[str, Any], dict[str, Any]]:
    values: dict[str, Any] = {name: request.form.get(name, "") for name in CONFIRM_FIELDS}
    values["weekdays"] = request.form.getlist("weekdays")
    data = collect(request.form, CONFIRM_FIELDS)
    if values["weekdays"]:  # no day ticked: every day
        data["weekdays"] = [form_integer(day) for day in values["weekdays"]]
    return values, data


def _decline_form() -> tuple[dict[str, Any], dict[str, Any]]:
    values = {name: request.form.get(name, "") for name in DECLINE_FIELDS}
    return values, collect(request.form, DECLINE_FIELDS)


def _course_decision(
    course_id: int,
    decision: str,
    read: Callable[[], tuple[dict[str, Any], dict[str, Any]]],
    model: type[BaseModel],
    service: Callable[[Session, ProphylaxisCourse, Patient, Any, int, datetime], object],
    audit_action: AuditAction,
    done: str,
) -> Any:
    """Confirm or decline a proposed course from its form on the patient page.

    ``read()`` gives what was typed (shown again) and the form's data for ``model``;
    ``done`` is the confirmation, with ``{drug}`` for the course's drug.
    """
    session = get_session()
    course, patient = prophylaxis_service.get_course(session, current_user().team_id, course_id)
    form_name = f"{decision}-{course.id}"

    def show_again(state: FormState, status: int) -> Any:
        return patient_page(patient, {form_name: state}, status)

    values, raw = read()
    data, state = validate(model, raw, values)
    if data is None:
        return show_again(state, 422)
    try:
        service(session, course, patient, data, current_user().id, request_now())
    except ServiceError as error:
        return refuse_change(error, values, values.keys(), show_again)
    return save_change(
        audit_action,
        patient.id,
        f"course:{course.id}",
        done.format(drug=course.drug),
        url_for("dashboard.patient", patient_id=patient.id, _anchor="prophylaxis"),
    )


@bp.post("/prophylaxis/<int:course_id>/confirm")
def confirm_prophylaxis(course_id: int) -> Any:
    """Confirm a proposed course with the dose and times prescribed (drug and days may change)."""
    return _course_decision(
        course_id,
        "confirm",
        _confirm_form,
        ProphylaxisConfirmIn,
        prophylaxis_service.confirm_course,
        AuditAction.CONFIRM_PROPHYLAXIS,
        "{drug} confirmed: pill reminders are planned.",
    )


@bp.post("/prophylaxis/<int:course_id>/decline")
def decline_prophylaxis(course_id: int) -> Any:
    """Decline a proposed course; the reason is required and kept."""
    return _course_decision(
        course_id,
        "decline",
        _decline_form,
        ProphylaxisDeclineIn,
        prophylaxis_service.decline_course,
        AuditAction.DECLINE_PROPHYLAXIS,
        "{drug} declined; the reason is kept.",
    )
