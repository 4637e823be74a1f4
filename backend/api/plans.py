"""Plan routes: start a regimen, read a plan, hold, resume, extend, stop, record doses."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sqlmodel import Session

from backend.api import api, current_user, request_now, responses, spec
from backend.api.auditing import audit, audited
from backend.db import get_session
from backend.schemas import DoseRecordIn, ExtendIn, HoldIn, PlanIn, PlanOut, ResumeIn, StopIn
from backend.serializers import plan_out
from backend.services import patients as patient_service
from backend.services import plans as plan_service
from reminders.data.models import Patient, Plan
from reminders.data.statuses import AuditAction

TAGS = ["plans"]
CHANGE = responses(HTTP_200=PlanOut, HTTP_409=None, HTTP_422=None)


def _change_plan(plan_id: int, change: Callable[..., Any], *args: Any) -> PlanOut:
    """Apply ``change(session, plan, patient, *args)`` to one of the team's plans, answer it.

    The plan is read through the caller's team (another team's plan is a 404) and named
    in the audit row: the plan actions differ only in the service they call.
    """
    session = get_session()
    plan, patient = plan_service.get_plan(session, current_user().team_id, plan_id)
    change(session, plan, patient, *args)
    return _plan_answer(session, plan, patient)


def _plan_answer(session: Session, plan: Plan, patient: Patient) -> PlanOut:
    """Name the plan in the request's audit row and answer it as it now is."""
    audit(patient.id, f"plan:{plan.id}")
    return plan_out(session, plan, patient)


@api.post("/patients/<int:patient_id>/plans")
@spec.validate(
    json=PlanIn, resp=responses(HTTP_201=PlanOut, HTTP_409=None, HTTP_422=None), tags=TAGS
)
@audited(AuditAction.START_PLAN)
def start_plan(patient_id: int, json: PlanIn):
    """Start a regimen from the catalogue on a start date (the patient's local date)."""
    session = get_session()
    patient = patient_service.get_patient(session, current_user().team_id, patient_id)
    plan = plan_service.start_plan(session, patient, json, current_user().id, request_now())
    return _plan_answer(session, plan, patient), 201


@api.get("/plans/<int:plan_id>")
@spec.validate(resp=responses(HTTP_200=PlanOut), tags=TAGS)
@audited(AuditAction.VIEW_PLAN)
def get_plan(plan_id: int):
    """A plan with every dose (date after holds, status) and the BSA calculation."""
    session = get_session()
    plan, patient = plan_service.get_plan(session, current_user().team_id, plan_id)
    return _plan_answer(session, plan, patient)


@api.post("/plans/<int:plan_id>/hold")
@spec.validate(json=HoldIn, resp=CHANGE, tags=TAGS)
@audited(AuditAction.HOLD_PLAN)
def hold_plan(plan_id: int, json: HoldIn):
    """Put therapy on hold with a reason; dose reminders stop, check-ins and pills continue."""
    return _change_plan(plan_id, plan_service.hold_plan, json, current_user().id, request_now())


@api.post("/plans/<int:plan_id>/resume")
@spec.validate(json=ResumeIn, resp=CHANGE, tags=TAGS)
@audited(AuditAction.RESUME_PLAN)
def resume_plan(plan_id: int, json: ResumeIn):
    """Resume therapy: the remaining doses continue from the resume date, none bunched or lost."""
    return _change_plan(plan_id, plan_service.resume_plan, json, current_user().id, request_now())


@api.post("/plans/<int:plan_id>/extend")
@spec.validate(json=ExtendIn, resp=CHANGE, tags=TAGS)
@audited(AuditAction.EXTEND_PLAN)
def extend_plan(plan_id: int, json: ExtendIn):
    """Extend therapy by whole weeks within the regimen's limit."""
    return _change_plan(plan_id, plan_service.extend_plan, json.weeks, request_now())


@api.post("/plans/<int:plan_id>/stop")
@spec.validate(json=StopIn, resp=CHANGE, tags=TAGS)
@audited(AuditAction.STOP_PLAN)
def stop_plan(plan_id: int, json: StopIn):
    """Stop therapy early; prophylaxis continues until the care team stops it."""
    return _change_plan(plan_id, plan_service.stop_plan, json, request_now())


@api.post("/plans/<int:plan_id>/doses/<int:index>")
@spec.validate(json=DoseRecordIn, resp=CHANGE, tags=TAGS)
@audited(AuditAction.RECORD_DOSE)
def record_dose(plan_id: int, index: int, json: DoseRecordIn):
    """Record dose ``index`` as given (with the confirmed amount in mg) or missed."""
    return _change_plan(
        plan_id, plan_service.record_dose, index, json, current_user().id, request_now()
    )
