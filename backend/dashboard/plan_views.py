"""Plan pages: start a regimen (with the BSA calculation), the plan page and its actions."""

from __future__ import annotations

from collections.abc import Callable
from datetime import date
from functools import wraps
from typing import Any

from flask import request, url_for
from pydantic import BaseModel
from sqlmodel import Session

from backend.api import request_now
from backend.dashboard import charts
from backend.dashboard.forms import (
    DoseIndexIn,
    FieldKind,
    FormState,
    validate,
    validate_form,
)
from backend.dashboard.queries import regimen_name
from backend.dashboard.web import (
    audit,
    bp,
    current_user,
    refuse_change,
    render_page,
    save_change,
    save_patient_change,
)
from backend.db import get_session
from backend.schemas import DoseRecordIn, ExtendIn, HoldIn, PlanIn, PlanOut, ResumeIn, StopIn
from backend.serializers import body_surface_area, plan_out
from backend.services import plans as plan_service
from backend.services.patients import get_patient
from reminders.core.bsa import dose_for, dose_warnings
from reminders.core.dates import local_today
from reminders.core.planner import PlanSpec, plan_doses
from reminders.core.regimens import (
    BoolOption,
    ChoiceOption,
    IntOption,
    NumberOption,
    Regimen,
    UnknownRegimen,
    WeekdaysOption,
    get_regimen,
    load_regimens,
)
from reminders.data.errors import ServiceError
from reminders.data.models import Patient, Plan
from reminders.data.statuses import AuditAction

WEEKDAY_NAMES = {
    "mon": "Monday",
    "tue": "Tuesday",
    "wed": "Wednesday",
    "thu": "Thursday",
    "fri": "Friday",
    "sat": "Saturday",
    "sun": "Sunday",
}


def option_values(regimen: Regimen, form: Any) -> tuple[dict[str, Any], dict[str, str]]:
    """The regimen's options from the form (``opt-<name>`` fields) and errors by field."""
    options: dict[str, Any] = {}
    errors: dict[str, str] = {}
    for name, option in regimen.options.items():
        key = f"opt-{name}"
        raw = (form.get(key) or "").strip()
        if isinstance(option, BoolOption):
            options[name] = key in form
        elif isinstance(option, WeekdaysOption):
            days = form.getlist(key)
            if len(days) != option.count:
                errors[key] = f"Choose exactly {option.count} days."
            options[name] = days
        elif raw == "":
            continue  # the regimen's default (the planner refuses a required one that is missing)
        elif isinstance(option, IntOption | NumberOption):
            try:
                number = float(raw.replace(",", "."))
            except ValueError:
                errors[key] = "Enter a number."
                continue
            if isinstance(option, IntOption):
                if not number.is_integer():
                    errors[key] = "Enter a whole number."
                    continue
                options[name] = int(number)
            else:
                options[name] = number
        elif isinstance(option, ChoiceOption):
            match = [c for c in option.choices if str(c) == raw]
            if not match:
                errors[key] = "Choose one of the options."
                continue
            options[name] = match[0]
    return options, errors


def dose_preview(regimen: Regimen, patient: Patient, data: PlanIn) -> list[dict[str, Any]]:
    """The first doses of the regimen as it would start, with mg/m2 doses turned into mg."""
    try:
        spec = PlanSpec(
            regimen=regimen,
            start_date=data.start_date,
            timezone=patient.timezone,
            options=data.options,
            dose_time=patient.dose_time,
            checkin_time=patient.checkin_time,
        )
        doses = plan_doses(spec)
    except ValueError:
        return []
    try:
        bsa = body_surface_area(patient)
    except ValueError:
        bsa = None
    rows = []
    for dose in doses[:8]:
        calc = dose_for(dose.amount, bsa) if dose.unit == "mg/m2" and dose.amount and bsa else None
        rows.append({"dose": dose, "calculation": calc})
    return rows


def _plan_form(
    patient: Patient, regimen: Regimen | None, form: FormState, status: int = 200
) -> Any:
    preview: list[dict[str, Any]] = []
    if regimen is not None:
        try:
            data = PlanIn.model_validate(
                {
                    "regimen_id": regimen.id,
                    "start_date": form.value("start_date"),
                    "options": form.values.get("options") or {},
                }
            )
            preview = dose_preview(regimen, patient, data)
        except ValueError:
            preview = []
    try:
        bsa = body_surface_area(patient)
        bsa_error = None
    except ValueError as exc:
        bsa, bsa_error = None, str(exc)
    return render_page(
        "plan_form.html",
        status,
        p=patient,
        regimens=sorted(load_regimens().values(), key=lambda r: r.name),
        regimen=regimen,
        form=form,
        bsa=bsa,
        bsa_error=bsa_error,
        # Above the limit (2.5 m2, care-team setting) the team confirms each mg/m2 dose.
        bsa_warnings=dose_warnings(unit="mg/m2", bsa=bsa, dose_mg=None, usual_max=None)
        if bsa
        else (),
        preview=preview,
        weekday_names=WEEKDAY_NAMES,
        uses_m2=regimen is not None and any(ph.unit == "mg/m2" for ph in regimen.phases),
    )


@bp.route("/patients/<int:patient_id>/plans/new", methods=["GET", "POST"])
def new_plan(patient_id: int) -> Any:
    """Start a regimen: choose it, set its options and start date, check the BSA calculation."""
    session = get_session()
    patient = get_patient(session, current_user().team_id, patient_id)
    chosen = request.values.get("regimen_id", "").strip()
    try:
        regimen = get_regimen(chosen) if chosen else None
    except UnknownRegimen:
        regimen = None
    today = local_today(patient.timezone, request_now())
    if request.method == "GET" or regimen is None:
        form = FormState(values={"regimen_id": chosen, "start_date": today.isoformat()})
        if request.method == "POST":
            form.errors["regimen_id"] = "Choose a regimen."
        return _plan_form(patient, regimen, form, 422 if request.method == "POST" else 200)
    options, option_errors = option_values(regimen, request.form)
    values = {
        "regimen_id": regimen.id,
        "start_date": request.form.get("start_date", ""),
        "form": request.form,
        "options": options,
    }
    raw = {"regimen_id": regimen.id, "start_date": values["start_date"], "options": options}
    data, state = validate(PlanIn, raw, values)
    state.errors.update(option_errors)
    if data is None or state.invalid:
        return _plan_form(patient, regimen, state, 422)
    try:
        plan = plan_service.start_plan(session, patient, data, current_user().id, request_now())
    except ServiceError as error:
        return refuse_change(
            error,
            values,
            raw,
            lambda state, status: _plan_form(patient, regimen, state, status),
        )
    return save_change(
        AuditAction.START_PLAN,
        patient.id,
        f"plan:{plan.id}",
        f"{regimen.name} started on {data.start_date:%d %b %Y}.",
        url_for("dashboard.plan", plan_id=plan.id),
    )


def plan_timeline(out: PlanOut, today: date) -> str:
    """The plan's doses and holds along the calendar (the same chart as the patient page)."""
    dated = [d for d in out.doses if d.date is not None]
    return charts.plan_timeline_chart(
        [
            charts.DoseMark(d.date, d.status, f"Dose {d.index} {d.date:%d %b}: {d.status}")
            for d in dated
        ],
        holds=[(h.start_date, h.resume_date) for h in out.holds],
        first=out.start_date,
        last=max([out.start_date, *(d.date for d in dated)]),
        today=today,
    )


def _plan_page(
    plan: Plan, patient: Patient, forms: dict[str, FormState] | None = None, status: int = 200
) -> Any:
    session = get_session()
    out = plan_out(session, plan, patient)
    regimen = get_regimen(plan.regimen_id)
    forms = dict(forms or {})
    upcoming = next((d.index for d in out.doses if d.status == "scheduled"), None)
    today = local_today(patient.timezone, request_now())
    forms.setdefault("dose", FormState(values={"index": upcoming, "status": "given"}))
    return render_page(
        "plan.html",
        status,
        plan=plan,
        out=out,
        p=patient,
        regimen=regimen,
        regimen_name=regimen_name(plan.regimen_id),
        forms=forms,
        today=today,
        timeline=plan_timeline(out, today),
        recordable=[d for d in out.doses if d.status != "cancelled" and d.date is not None],
    )


@bp.get("/plans/<int:plan_id>")
def plan(plan_id: int) -> Any:
    """A plan: every dose with its date and BSA calculation, holds, and the plan actions."""
    session = get_session()
    record, patient = plan_service.get_plan(session, current_user().team_id, plan_id)
    audit(AuditAction.VIEW_PLAN, patient.id, f"plan:{record.id}")
    session.commit()
    return _plan_page(record, patient)


#: The change one form of the plan page makes: the request's session, the plan, its patient
#: and the form's validated input in; the confirmation shown to the user out.
PlanChange = Callable[[Session, Plan, Patient, Any], str]


def _plan_action(
    plan_id: int,
    form_name: str,
    audit_action: AuditAction,
    model: type[BaseModel],
    fields: dict[str, FieldKind],
    change: PlanChange,
) -> Any:
    """Validate one plan form, make its change, and either re-show the page or go to the patient."""
    session = get_session()
    record, patient = plan_service.get_plan(session, current_user().team_id, plan_id)
    data, state = validate_form(model, request.form, fields)
    if data is None:
        return _plan_page(record, patient, {form_name: state}, 422)
    try:
        done = change(session, record, patient, data)
    except ServiceError as error:
        return refuse_change(
            error,
            state.values,
            fields,
            lambda state, status: _plan_page(record, patient, {form_name: state}, status),
        )
    return save_patient_change(audit_action, patient, f"plan:{record.id}", done)


def plan_form(
    form_name: str, audit_action: AuditAction, model: type[BaseModel], fields: dict[str, FieldKind]
) -> Callable[[PlanChange], Callable[[int], Any]]:
    """Make the view of the plan page's form ``form_name`` from the change it makes.

    The view validates the form with ``model``; a refusal shows the plan page again with
    the form's errors, a change is saved with its ``audit_action`` row.
    """

    def decorate(change: PlanChange) -> Callable[[int], Any]:
        @wraps(change)
        def view(plan_id: int) -> Any:
            return _plan_action(plan_id, form_name, audit_action, model, fields, change)

        return view

    return decorate


@bp.post("/plans/<int:plan_id>/hold")
@plan_form("hold", AuditAction.HOLD_PLAN, HoldIn, {"reason": "text", "start_date": "date"})
def hold_plan(session: Session, plan: Plan, patient: Patient, data: HoldIn) -> str:
    """Put therapy on hold: dose reminders stop at once, check-ins and pills go on."""
    plan_service.hold_plan(session, plan, patient, data, current_user().id, request_now())
    return "Plan on hold: dose reminders have stopped."


@bp.post("/plans/<int:plan_id>/resume")
@plan_form("resume", AuditAction.RESUME_PLAN, ResumeIn, {"resume_date": "date"})
def resume_plan(session: Session, plan: Plan, patient: Patient, data: ResumeIn) -> str:
    """Resume a held plan; the remaining doses continue from the resume date."""
    plan_service.resume_plan(session, plan, patient, data, current_user().id, request_now())
    return "Plan resumed: dose reminders are planned again."


@bp.post("/plans/<int:plan_id>/extend")
@plan_form("extend", AuditAction.EXTEND_PLAN, ExtendIn, {"weeks": "int"})
def extend_plan(session: Session, plan: Plan, patient: Patient, data: ExtendIn) -> str:
    """Extend therapy by whole weeks, within the regimen's limit."""
    plan_service.extend_plan(session, plan, patient, data.weeks, request_now())
    return "Plan extended."


@bp.post("/plans/<int:plan_id>/stop")
@plan_form("stop", AuditAction.STOP_PLAN, StopIn, {"reason": "text", "stopped_on": "date"})
def stop_plan(session: Session, plan: Plan, patient: Patient, data: StopIn) -> str:
    """Stop therapy early (prophylaxis goes on until the care team stops it)."""
    plan_service.stop_plan(session, plan, patient, data, request_now())
    return "Plan stopped: no more dose reminders."


DOSE_FIELDS: dict[str, FieldKind] = {
    "status": "text",
    "on_date": "date",
    "dose_mg": "number",
    "note": "optional",
    "confirm": "bool",
}


@bp.post("/plans/<int:plan_id>/doses")
def record_dose(plan_id: int) -> Any:
    """Record a dose as given (with the amount confirmed) or missed."""
    index_state = validate(DoseIndexIn, {"index": request.form.get("index", "")}, {})
    if index_state[0] is None:
        session = get_session()
        record, patient = plan_service.get_plan(session, current_user().team_id, plan_id)
        state = FormState(values=dict(request.form), errors=index_state[1].errors)
        return _plan_page(record, patient, {"dose": state}, 422)
    index = index_state[0].index

    def change(session: Session, plan: Plan, patient: Patient, data: DoseRecordIn) -> str:
        plan_service.record_dose(
            session, plan, patient, index, data, current_user().id, request_now()
        )
        return f"Dose {index} recorded."

    return _plan_action(plan_id, "dose", AuditAction.RECORD_DOSE, DoseRecordIn, DOSE_FIELDS, change)
