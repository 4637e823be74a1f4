"""Prophylaxis forms of the patient page: confirm (or edit and confirm) or decline a proposal.

Starting a plan proposes its regimen's courses (``reminders.data.prophylaxis.propose_regimen_courses``);
the patient page marks them "proposed — confirm" with these two forms. A refusal shows the
patient page again with the form's errors in place.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from flask import request
from pydantic import BaseModel
from sqlmodel import Session

from backend.api import request_now
from backend.dashboard.forms import FieldKind, validate_form
from backend.dashboard.patient_views import page_with_form
from backend.dashboard.web import bp, current_user, refuse_change, save_patient_change
from backend.db import get_session
from backend.schemas import ProphylaxisConfirmIn, ProphylaxisDeclineIn
from backend.services import prophylaxis as prophylaxis_service
from reminders.data.errors import ServiceError
from reminders.data.models import Patient, ProphylaxisCourse
from reminders.data.statuses import AuditAction


@dataclass(frozen=True)
class CourseDecision:
    """One of the two forms of a proposed course: what it reads, the service it calls, its words."""

    #: "confirm" or "decline"; the patient page's form of a course is ``<form>-<course id>``.
    form: str
    model: type[BaseModel]
    fields: dict[str, FieldKind]
    service: Callable[[Session, ProphylaxisCourse, Patient, Any, int, datetime], object]
    audit_action: AuditAction
    #: The confirmation, with ``{drug}`` for the course's drug (as the decision left it).
    done: str


CONFIRM = CourseDecision(
    form="confirm",
    model=ProphylaxisConfirmIn,
    fields={
        "drug": "optional",
        "dose_text": "text",
        "times": "times",
        "start_date": "date",
        "weekdays": "int_list",  # no day ticked: every day
    },
    service=prophylaxis_service.confirm_course,
    audit_action=AuditAction.CONFIRM_PROPHYLAXIS,
    done="{drug} confirmed: pill reminders are planned.",
)
DECLINE = CourseDecision(
    form="decline",
    model=ProphylaxisDeclineIn,
    fields={"reason": "text"},
    service=prophylaxis_service.decline_course,
    audit_action=AuditAction.DECLINE_PROPHYLAXIS,
    done="{drug} declined; the reason is kept.",
)


def _course_decision(course_id: int, decision: CourseDecision) -> Any:
    """Confirm or decline a proposed course from its form on the patient page."""
    session = get_session()
    course, patient = prophylaxis_service.get_course(session, current_user().team_id, course_id)
    show_again = page_with_form(patient, f"{decision.form}-{course.id}")
    data, state = validate_form(decision.model, request.form, decision.fields)
    if data is None:
        return show_again(state, 422)
    try:
        decision.service(session, course, patient, data, current_user().id, request_now())
    except ServiceError as error:
        return refuse_change(error, state.values, decision.fields, show_again)
    return save_patient_change(
        decision.audit_action,
        patient,
        f"course:{course.id}",
        decision.done.format(drug=course.drug),
        anchor="prophylaxis",
    )


@bp.post("/prophylaxis/<int:course_id>/confirm")
def confirm_prophylaxis(course_id: int) -> Any:
    """Confirm a proposed course with the dose and times prescribed (drug and days may change)."""
    return _course_decision(course_id, CONFIRM)


@bp.post("/prophylaxis/<int:course_id>/decline")
def decline_prophylaxis(course_id: int) -> Any:
    """Decline a proposed course; the reason is required and kept."""
    return _course_decision(course_id, DECLINE)
