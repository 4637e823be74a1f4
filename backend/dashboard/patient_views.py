"""Patient pages: the list, enrolment, the patient page with its charts, edits, labs and SMS."""

from __future__ import annotations

import csv
import io
import logging
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any, TypeVar
from uuid import uuid4
from zoneinfo import ZoneInfo

from flask import Response, current_app, redirect, request, url_for
from pydantic import BaseModel

from backend.api import request_now
from backend.dashboard import charts
from backend.dashboard.forms import (
    FieldKind,
    FormState,
    OneOffSmsIn,
    SimulatedReplyIn,
    collect,
    local_datetime,
    validate,
    validate_form,
)
from backend.dashboard.queries import (
    DOSE_REMINDER_KINDS,
    PatientOverview,
    expected_marks,
    export_rows,
    kind_label,
    open_alert_counts,
    patient_overview,
    patient_search,
    sms_thread,
    upcoming_messages,
)
from backend.dashboard.web import (
    audit,
    bp,
    current_user,
    not_available,
    refuse_change,
    region,
    render_page,
    save_change,
    save_patient_change,
    viewed_patient,
)
from backend.db import get_session
from backend.schemas import DischargeIn, ExpectedLevelIn, LabIn, PatientIn, PatientUpdate
from backend.services import discharge as discharge_service
from backend.services import expected_levels as level_service
from backend.services import labs as lab_service
from backend.services import patients as patient_service
from backend.services.patients import get_patient
from reminders.conversations import find_patient_by_phone, handle_inbound_sms
from reminders.core.clinical_rules import clinical_rules
from reminders.core.regimens import ProphylaxisDefault, get_regimen
from reminders.core.regions import all_regions, get_region
from reminders.data.errors import ServiceError
from reminders.data.models import Patient
from reminders.data.statuses import AuditAction
from reminders.outbox import enqueue_message
from reminders.rendering import sms_allowed

logger = logging.getLogger(__name__)
M = TypeVar("M", bound=BaseModel)

PATIENT_FIELDS: dict[str, FieldKind] = {
    "display_name": "text",
    "phone": "text",
    "hospital_ref": "optional",
    "timezone": "text",
    "language": "text",
    "region": "optional",  # left out: the installation's region
    "sms_consent": "bool",
    "discreet": "bool",
    "quiet_start": "optional",
    "quiet_end": "optional",
    "dose_time": "optional",
    "checkin_time": "optional",
    "pill_times": "times",
    "height_cm": "number",
    "weight_kg": "number",
}
#: Fields an edit may clear by leaving them empty.
CLEARABLE = ("hospital_ref", "height_cm", "weight_kg")
LAB_KINDS = {
    "cmv_pcr": "CMV PCR (copies/mL)",
    "cd4": "CD4 (cells/µL)",
    "anc": "ANC, neutrophils (cells/µL)",
}
EXPORT_COLUMNS = [
    "at_utc",
    "at_local",
    "record",
    "direction",
    "kind",
    "status",
    "temperature_c",
    "symptoms",
    "text",
]


def _raw(fields: dict[str, FieldKind]) -> dict[str, Any]:
    """What was typed, to show it again after an error."""
    values: dict[str, Any] = {}
    for name, kind in fields.items():
        values[name] = (name in request.form) if kind == "bool" else request.form.get(name, "")
    return values


@bp.get("/patients")
def patients() -> Any:
    """The team's patients, with a search box and their open alerts."""
    session = get_session()
    query = request.args.get("q", "").strip()[:80]
    rows = patient_search(session, current_user().team_id, query)
    # The same row as GET /api/v1/patients; the search words (maybe a name) are not kept.
    audit(AuditAction.LIST_PATIENTS, None, "patients:list")
    session.commit()
    return render_page(
        "patients.html",
        patients=rows,
        query=query,
        alert_counts=open_alert_counts(session, current_user().team_id),
    )


def _validate_with_local_time(
    model: type[M], fields: dict[str, FieldKind], time_field: str, timezone: str, missing: str
) -> tuple[M | None, FormState, dict[str, Any]]:
    """Validate a posted form whose ``time_field`` is a ``datetime-local`` in ``timezone``.

    Returns the input (None when anything is refused), the form's state and what was typed.
    """
    values = _raw(fields) | {time_field: request.form.get(time_field, "")}
    data = collect(request.form, fields)
    local = local_datetime(values[time_field], timezone)
    if local is not None:
        data[time_field] = local
    result, state = validate(model, data, values)
    if local is None:
        state.errors[time_field] = missing
    return (None if state.invalid else result), state, values


def _patient_form(
    template_form: FormState, status: int = 200, patient: Patient | None = None
) -> Any:
    regions = [(r.code, f"{r.name} (emergency {r.emergency_number})") for r in all_regions()]
    return render_page(
        "patient_form.html", status, form=template_form, patient=patient, regions=regions
    )


@bp.route("/patients/new", methods=["GET", "POST"])
def new_patient() -> Any:
    """Enrol a patient in the team (the welcome SMS goes out once they consent)."""
    if request.method == "GET":
        defaults = {
            name: info.get_default(call_default_factory=True)
            for name, info in PatientIn.model_fields.items()
            if not info.is_required()
        }
        defaults = {k: f"{v:%H:%M}" if hasattr(v, "strftime") else v for k, v in defaults.items()}
        defaults["pill_times"] = ", ".join(defaults.get("pill_times") or [])
        defaults["region"] = get_region(region()).code
        return _patient_form(FormState(values=defaults))
    values = _raw(PATIENT_FIELDS)
    data, state = validate(PatientIn, collect(request.form, PATIENT_FIELDS), values)
    if data is None:
        return _patient_form(state, 422)
    session = get_session()
    try:
        patient = patient_service.create_patient(
            session, current_user().team_id, data, request_now(), region=region()
        )
    except ServiceError as error:
        return refuse_change(error, values, PATIENT_FIELDS, _patient_form)
    return save_change(
        AuditAction.ENROL_PATIENT,
        patient.id,
        f"patient:{patient.id}",
        "Patient enrolled. Next: start their regimen.",
        url_for("dashboard.new_plan", patient_id=patient.id),
    )


@bp.get("/patients/<int:patient_id>")
def patient(patient_id: int) -> Any:
    """The patient page: alerts, timeline, prophylaxis, labs, temperatures, SMS, adherence."""
    return patient_page(viewed_patient(patient_id, AuditAction.VIEW_PATIENT))


def patient_page(
    record: Patient, forms: dict[str, FormState] | None = None, status: int = 200
) -> Any:
    """Render the patient page; ``forms`` holds the state of a form shown again after an error."""
    session = get_session()
    now = request_now()
    overview = patient_overview(session, record, now)
    levels = level_service.levels_of(session, record)
    forms = forms or {}
    if "expected" not in forms:
        forms["expected"] = FormState(values=_expected_level_defaults(record, now))
    return render_page(
        "patient.html",
        status,
        o=overview,
        p=record,
        forms=forms,
        levels=levels,
        level_now=next((level for level in levels if level.in_force(now)), None),
        level_marks=expected_marks(overview.reports, levels),
        expected_max_days=clinical_rules().fever.expected_level.max_days,
        entries=regimen_entries(overview),
        charts=patient_charts(overview, now),
        kind_label=kind_label,
        dose_kinds=DOSE_REMINDER_KINDS,
        sms_ok=sms_allowed(record),
        simulator=current_app.config.get("SMS_BACKEND", "console") == "console",
        fever_c=clinical_rules().fever.threshold_c,
        cmv_act=clinical_rules().cmv.act_above_copies,
    )


@bp.route("/patients/<int:patient_id>/edit", methods=["GET", "POST"])
def edit_patient(patient_id: int) -> Any:
    """Contact preferences, quiet hours, reminder times and measurements."""
    session = get_session()
    patient = get_patient(session, current_user().team_id, patient_id)
    if request.method == "GET":
        values = {name: getattr(patient, name) for name in PATIENT_FIELDS}
        values.update(
            {k: f"{v:%H:%M}" for k, v in values.items() if hasattr(v, "strftime")},
            pill_times=", ".join(patient.pill_times or []),
        )
        return _patient_form(FormState(values=values), patient=patient)
    values = _raw(PATIENT_FIELDS)
    fields = collect(request.form, PATIENT_FIELDS)
    for name in CLEARABLE:
        fields.setdefault(name, None)
    data, state = validate(PatientUpdate, fields, values)
    if data is None:
        return _patient_form(state, 422, patient)
    try:
        patient_service.update_patient(session, patient, data, request_now(), region=region())
    except ServiceError as error:
        return refuse_change(
            error,
            values,
            PATIENT_FIELDS,
            lambda state, status: _patient_form(state, status, patient),
        )
    return save_patient_change(
        AuditAction.UPDATE_PATIENT,
        patient,
        f"patient:{patient.id}",
        "Contact preferences saved; upcoming reminders were re-planned.",
    )


DISCHARGE_FIELDS: dict[str, FieldKind] = {"reason": "text"}


@bp.post("/patients/<int:patient_id>/discharge")
def discharge_patient(patient_id: int) -> Any:
    """Discharge the patient: SMS stop and their number is free (409 while care goes on)."""
    session = get_session()
    record = get_patient(session, current_user().team_id, patient_id)
    data, state = validate_form(DischargeIn, request.form, DISCHARGE_FIELDS)
    show_again = page_with_form(record, "discharge")
    if data is None:
        return show_again(state, 422)
    try:
        discharge_service.discharge_patient(
            session, record, current_user().id, data.reason, request_now()
        )
    except ServiceError as error:
        return refuse_change(error, state.values, DISCHARGE_FIELDS, show_again)
    return save_patient_change(
        AuditAction.DISCHARGE_PATIENT,
        record,
        f"patient:{record.id}",
        "Patient discharged: SMS have stopped and the phone number is free.",
    )


EXPECTED_LEVEL_FIELDS: dict[str, FieldKind] = {"up_to_c": "number", "reason": "text"}


def _expected_level_defaults(record: Patient, now: datetime) -> dict[str, str]:
    """The new-level form as first shown: until this time tomorrow, in the patient's zone."""
    until = (now + timedelta(hours=24)).astimezone(ZoneInfo(record.timezone))
    return {"up_to_c": "", "reason": "", "expires_at": f"{until:%Y-%m-%dT%H:%M}"}


def page_with_form(record: Patient, name: str) -> Callable[[FormState, int], Any]:
    """Show the patient page again with the form ``name`` in ``state`` (its refusals)."""

    def show_again(state: FormState, status: int) -> Any:
        return patient_page(record, {name: state}, status)

    return show_again


@bp.post("/patients/<int:patient_id>/expected-level")
def set_expected_level(patient_id: int) -> Any:
    """Note that the patient's low-grade temperature is expected, up to a level, until a time."""
    session = get_session()
    record = get_patient(session, current_user().team_id, patient_id)
    level, state, values = _validate_with_local_time(
        ExpectedLevelIn,
        EXPECTED_LEVEL_FIELDS,
        "expires_at",
        record.timezone,
        "Enter the date and time the level ends.",
    )
    show_again = page_with_form(record, "expected")
    if level is None:
        return show_again(state, 422)
    try:
        row = level_service.set_level(session, record, level, current_user().id, request_now())
    except ServiceError as error:
        return refuse_change(error, values, [*EXPECTED_LEVEL_FIELDS, "expires_at"], show_again)
    return save_patient_change(
        AuditAction.SET_EXPECTED_LEVEL,
        record,
        f"expected_level:{row.id}",
        f"Expected level noted: readings up to {row.up_to_c:.1f} °C get no re-check and no"
        " low-grade alert until it ends.",
        anchor="expected",
    )


@bp.post("/patients/<int:patient_id>/expected-level/end")
def end_expected_level(patient_id: int) -> Any:
    """End the patient's expected level now: every raised reading gets its follow-up again."""
    session = get_session()
    record = get_patient(session, current_user().team_id, patient_id)
    try:
        row = level_service.end_level(session, record, current_user().id, request_now())
    except ServiceError as error:
        return refuse_change(error, {}, [], page_with_form(record, "expected"))
    return save_patient_change(
        AuditAction.END_EXPECTED_LEVEL,
        record,
        f"expected_level:{row.id}",
        "Expected level ended: slightly raised readings get their re-check and alerts again.",
        anchor="expected",
    )


def regimen_entries(overview: PatientOverview) -> dict[int, ProphylaxisDefault]:
    """The regimen prophylaxis entry each proposed course came from, by course id.

    The page says why a proposal is there (mandatory for every patient on the regimen,
    with its source) and which alternatives the regimen names.
    """
    regimens = {plan.id: get_regimen(plan.regimen_id) for plan, _ in overview.plans}
    entries: dict[int, ProphylaxisDefault] = {}
    for course, _ in overview.courses:
        regimen = regimens.get(course.plan_id) if course.plan_id is not None else None
        if regimen is None or course.regimen_entry is None:
            continue
        entry = next((e for e in regimen.prophylaxis if e.id == course.regimen_entry), None)
        if entry is not None:
            entries[course.id] = entry
    return entries


def patient_charts(overview: PatientOverview, now: datetime) -> dict[str, str]:
    """The SVG charts of the patient page (built by the pure functions of ``charts``)."""
    patient = overview.patient
    zone = ZoneInfo(patient.timezone)
    offset = now.astimezone(zone).utcoffset() or timedelta(0)
    today = overview.today
    readings = [(r.reported_at, r.temperature_c) for r in overview.reports if r.temperature_c]
    bands: list[charts.RiskBand] = []
    first, last = today - timedelta(days=13), today
    result: dict[str, str] = {}
    if overview.current is not None:
        plan, out = overview.current
        start = plan.start_date
        # The windows as the planner uses them (moved by holds; an open one runs to today).
        bands = [
            charts.RiskBand(w.first_date, w.last_date or max(today, w.first_date), w.name, w.kind)
            for w in out.risk_windows
        ]
        dose_dates = [d.date for d in out.doses if d.date is not None]
        first = start
        last = max([today, *dose_dates, *(b.last for b in bands)])
        result["timeline"] = charts.plan_timeline_chart(
            [
                charts.DoseMark(
                    d.date,
                    d.status,
                    f"Dose {d.index} {d.date:%d %b}: {d.status.replace('_', ' ')}",
                )
                for d in out.doses
                if d.date is not None
            ],
            holds=[(h.start_date, h.resume_date) for h in out.holds],
            first=start,
            last=max([start, *dose_dates]),
            today=today,
        )
    if readings:
        first = min(first, *(at.astimezone(zone).date() for at, _ in readings))
    result["temperature"] = charts.temperature_chart(
        readings,
        first=first,
        last=last,
        threshold_c=clinical_rules().fever.threshold_c,
        bands=bands,
        utc_offset=offset,
    )
    cmv = [(lab.taken_at, lab.value) for lab in overview.labs if lab.kind == "cmv_pcr"]
    if cmv:
        result["cmv"] = charts.cmv_chart(cmv, act_above=clinical_rules().cmv.act_above_copies)
    result["adherence"] = charts.adherence_chart(overview.adherence)
    return result


LAB_FIELDS: dict[str, FieldKind] = {"kind": "text", "value": "number", "note": "optional"}


@bp.route("/patients/<int:patient_id>/labs/new", methods=["GET", "POST"])
def new_lab(patient_id: int) -> Any:
    """Record a lab result (CMV PCR, CD4, ANC); the lab rules may raise alerts."""
    session = get_session()
    record = get_patient(session, current_user().team_id, patient_id)
    now = request_now()
    if request.method == "GET":
        local_now = now.astimezone(ZoneInfo(record.timezone))
        values = {"kind": "cmv_pcr", "taken_at": f"{local_now:%Y-%m-%dT%H:%M}"}
        return render_page(
            "lab_form.html", form=FormState(values=values), p=record, kinds=LAB_KINDS
        )
    lab, state, values = _validate_with_local_time(
        LabIn,
        LAB_FIELDS,
        "taken_at",
        record.timezone,
        "Enter the date and time the sample was taken.",
    )
    if lab is None:
        return render_page("lab_form.html", 422, form=state, p=record, kinds=LAB_KINDS)
    try:
        row, alerts = lab_service.record_lab(session, record, lab, current_user().id, now)
    except ServiceError as error:
        return refuse_change(
            error,
            values,
            [*LAB_FIELDS, "taken_at"],
            lambda state, status: render_page(
                "lab_form.html", status, form=state, p=record, kinds=LAB_KINDS
            ),
        )
    return save_patient_change(
        AuditAction.RECORD_LAB,
        record,
        f"lab:{row.id}",
        "Lab result recorded."
        + (f" {len(alerts)} alert(s) raised: see the patient's alerts." if alerts else ""),
        anchor="labs",
    )


@bp.route("/patients/<int:patient_id>/sms/new", methods=["GET", "POST"])
def new_sms(patient_id: int) -> Any:
    """Send one SMS to the patient (queued in the outbox; the dispatcher sends it)."""
    session = get_session()
    record = get_patient(session, current_user().team_id, patient_id)
    allowed = sms_allowed(record)
    if request.method == "GET":
        return render_page("sms_form.html", form=FormState(), p=record, allowed=allowed)
    values = {"body": request.form.get("body", "")}
    data, state = validate(OneOffSmsIn, {"body": values["body"].strip()}, values)
    if data is not None and not allowed:
        state.message = (
            "This patient cannot receive SMS (no consent, opted out or number unreachable). "
            "Call them instead."
        )
    if data is None or state.invalid:
        return render_page("sms_form.html", 422, form=state, p=record, allowed=allowed)
    now = request_now()
    enqueue_message(
        session,
        team_id=record.team_id,
        patient_id=record.id,
        kind="one_off",
        body=data.body,
        dedupe_key=f"oneoff:p{record.id}:{uuid4().hex}",
        now=now,
        urgent=True,  # typed by a person now: it is not held back by quiet hours
    )
    return save_patient_change(
        AuditAction.SEND_SMS,
        record,
        f"patient:{record.id}",
        "SMS queued: it is sent within a minute.",
        anchor="messages",
    )


def csv_cell(value: object) -> str:
    """A CSV cell that a spreadsheet will not run as a formula."""
    text = "" if value is None else str(value)
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


@bp.get("/patients/<int:patient_id>/export.csv")
def export_patient(patient_id: int) -> Response:
    """The patient's symptom reports and SMS (both ways) as CSV."""
    session = get_session()
    record = get_patient(session, current_user().team_id, patient_id)
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(EXPORT_COLUMNS)
    for row in export_rows(session, record):
        writer.writerow([csv_cell(row[column]) for column in EXPORT_COLUMNS])
    audit(AuditAction.EXPORT_PATIENT, record.id, f"patient:{record.id}")
    session.commit()
    filename = f"patient-{record.id}-reports-and-messages-{request_now():%Y%m%d}.csv"
    return Response(
        "\ufeff" + buffer.getvalue(),  # a BOM so spreadsheet programs read UTF-8
        mimetype="text/csv",
        headers={
            "Content-Disposition": f'attachment; filename="{filename}"',
            "Cache-Control": "no-store",
        },
    )


# --- the phone simulator (SMS_BACKEND=console only) --------------------------------------


def _simulator_enabled() -> None:
    if current_app.config.get("SMS_BACKEND", "console") != "console":
        not_available()


@bp.route("/patients/<int:patient_id>/phone", methods=["GET", "POST"])
def phone_simulator(patient_id: int) -> Any:
    """The patient's phone for demos: their SMS thread, and a box to reply as them.

    A reply goes through exactly the service the Twilio webhook calls
    (:func:`reminders.conversations.handle_inbound_sms`) with a synthetic MessageSid.
    """
    _simulator_enabled()
    session = get_session()
    record = get_patient(session, current_user().team_id, patient_id)
    if request.method == "GET":
        audit(AuditAction.VIEW_PHONE_SIMULATOR, record.id, f"patient:{record.id}")
        session.commit()
        return _phone_page(record, FormState())
    values = {"body": request.form.get("body", "")}
    data, state = validate(SimulatedReplyIn, {"body": values["body"].strip()}, values)
    owner = find_patient_by_phone(session, record.phone)
    if data is not None and (owner is None or owner.id != record.id):
        # The webhook routes a number to the one active patient who has it.
        state.message = (
            "This patient is discharged: a reply from their number reaches no team."
            if record.discharged_at is not None
            else "Another patient has this phone number: a reply from it goes to them."
        )
    if data is None or state.invalid:
        return _phone_page(record, state, 422)
    handle_inbound_sms(
        session,
        provider_sid=f"SIM{uuid4().hex}",
        from_phone=record.phone,
        body=data.body,
        now=request_now(),
    )
    audit(AuditAction.SIMULATED_REPLY, record.id, f"patient:{record.id}")
    session.commit()
    return redirect(url_for("dashboard.phone_simulator", patient_id=record.id, _anchor="latest"))


def _phone_page(record: Patient, form: FormState, status: int = 200) -> Any:
    session = get_session()
    return render_page(
        "phone.html",
        status,
        p=record,
        form=form,
        thread=sms_thread(session, record.id),
        pending=upcoming_messages(session, record.id)[:5],
        kind_label=kind_label,
    )
