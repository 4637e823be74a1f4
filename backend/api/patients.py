"""Patient routes: enrol, read, update, list; labs, symptom reports, prophylaxis, schedule.

Each route declares its audit action (``@audited``), names what it touched (``audit``)
and leaves the commit to the decorator, which writes the row in the same transaction.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from datetime import datetime
from typing import Any, TypeVar

from pydantic import BaseModel
from sqlmodel import Session

from backend.api import api, current_user, default_region, request_now, responses, spec
from backend.api.auditing import audit, audited
from backend.db import get_session
from backend.schemas import (
    DischargeIn,
    LabIn,
    LabOut,
    LabRecorded,
    PageQuery,
    PatientIn,
    PatientOut,
    PatientPage,
    PatientUpdate,
    ProphylaxisConfirmIn,
    ProphylaxisDeclineIn,
    ProphylaxisIn,
    ProphylaxisOut,
    ProphylaxisStopIn,
    ReportOut,
    ScheduleOut,
    ScheduleQuery,
)
from backend.serializers import (
    alert_out,
    lab_out,
    patient_out,
    prophylaxis_out,
    report_out,
    schedule_out,
)
from backend.services import discharge as discharge_service
from backend.services import labs as lab_service
from backend.services import patients as patient_service
from backend.services import prophylaxis as prophylaxis_service
from backend.services import reports as report_service
from backend.services.schedule import schedule_between
from reminders.data.models import Patient, ProphylaxisCourse
from reminders.data.statuses import AuditAction

TAGS = ["patients"]
R = TypeVar("R")
#: The answers of a change to a prophylaxis course.
COURSE_CHANGE = responses(HTTP_200=ProphylaxisOut, HTTP_409=None, HTTP_422=None)


def patient_request(patient_id: int) -> tuple[Session, Patient, datetime]:
    """What a patient route starts with: the request's session, the patient and now.

    The patient is read through the caller's team: another team's patient is a 404.
    """
    session = get_session()
    now = request_now()
    patient = patient_service.get_patient(session, current_user().team_id, patient_id)
    return session, patient, now


def patient_list(
    patient_id: int, items_of: Callable[[Session, Patient, datetime], Iterable[BaseModel]]
) -> list[dict[str, Any]]:
    """``items_of(session, patient, now)`` for one of the caller's team's patients, as JSON.

    The read is audited as one of the patient (``patient:<id>``).
    """
    session, patient, now = patient_request(patient_id)
    items = [item.model_dump(mode="json") for item in items_of(session, patient, now)]
    audit(patient.id, f"patient:{patient.id}")
    return items


def _patient_records(
    patient_id: int,
    records_of: Callable[[Session, int], Sequence[R]],
    out: Callable[[R], BaseModel],
) -> list[dict[str, Any]]:
    """The records (labs, reports) of one of the caller's team's patients as JSON, audited."""
    return patient_list(
        patient_id, lambda session, patient, _: map(out, records_of(session, patient.id))
    )


def _course_out(
    session: Session, course: ProphylaxisCourse, patient: Patient, now: datetime
) -> ProphylaxisOut:
    """A course with its stop eligibility now."""
    return prophylaxis_out(course, prophylaxis_service.eligibility(session, course, patient, now))


def _courses_out(session: Session, patient: Patient, now: datetime) -> list[ProphylaxisOut]:
    """The patient's courses, each with its stop eligibility now."""
    return [
        _course_out(session, course, patient, now)
        for course in prophylaxis_service.courses_of(session, patient.id)
    ]


def _change_course(course_id: int, change: Callable[..., Any], json: BaseModel) -> ProphylaxisOut:
    """Apply ``change(session, course, patient, json, user_id, now)`` to a team's course.

    The course is read through the caller's team (another team's course is a 404) and
    named in the audit row: stop, confirm and decline differ only in the service.
    """
    session = get_session()
    now = request_now()
    course, patient = prophylaxis_service.get_course(session, current_user().team_id, course_id)
    change(session, course, patient, json, current_user().id, now)
    audit(patient.id, f"course:{course.id}")
    return _course_out(session, course, patient, now)


@api.post("/patients")
@spec.validate(
    json=PatientIn, resp=responses(HTTP_201=PatientOut, HTTP_409=None, HTTP_422=None), tags=TAGS
)
@audited(AuditAction.ENROL_PATIENT)
def create_patient(json: PatientIn):
    """Enrol a patient in the caller's team; the phone number is stored as E.164.

    409 when an active patient (of any team) has the number; the answer names nobody.
    """
    patient = patient_service.create_patient(
        get_session(),
        current_user().team_id,
        json,
        request_now(),
        region=default_region(),
    )
    audit(patient.id, f"patient:{patient.id}")
    return patient_out(patient), 201


@api.get("/patients")
@spec.validate(query=PageQuery, resp=responses(HTTP_200=PatientPage), tags=TAGS)
@audited(AuditAction.LIST_PATIENTS)
def list_patients(query: PageQuery):
    """The caller's team's patients, by name, one page at a time."""
    rows, total = patient_service.list_patients(
        get_session(), current_user().team_id, page=query.page, per_page=query.per_page
    )
    audit(None, "patients:list")
    return PatientPage(
        items=[patient_out(p) for p in rows], page=query.page, per_page=query.per_page, total=total
    )


@api.get("/patients/<int:patient_id>")
@spec.validate(resp=responses(HTTP_200=PatientOut), tags=TAGS)
@audited(AuditAction.VIEW_PATIENT)
def get_patient(patient_id: int):
    """One patient of the caller's team."""
    patient = patient_service.get_patient(get_session(), current_user().team_id, patient_id)
    audit(patient.id, f"patient:{patient.id}")
    return patient_out(patient)


@api.patch("/patients/<int:patient_id>")
@spec.validate(
    json=PatientUpdate, resp=responses(HTTP_200=PatientOut, HTTP_409=None, HTTP_422=None), tags=TAGS
)
@audited(AuditAction.UPDATE_PATIENT)
def update_patient(patient_id: int, json: PatientUpdate):
    """Change contact preferences, language, quiet hours, time zone or measurements.

    409 when the new phone number belongs to another active patient.
    """
    session, patient, now = patient_request(patient_id)
    patient_service.update_patient(session, patient, json, now, region=default_region())
    audit(patient.id, f"patient:{patient.id}")
    return patient_out(patient)


@api.post("/patients/<int:patient_id>/discharge")
@spec.validate(
    json=DischargeIn, resp=responses(HTTP_200=PatientOut, HTTP_409=None, HTTP_422=None), tags=TAGS
)
@audited(AuditAction.DISCHARGE_PATIENT)
def discharge_patient(patient_id: int, json: DischargeIn):
    """End the team's care: SMS stop and the phone number is free for another enrolment.

    409 while a plan is open or a prophylaxis course is active or proposed.
    """
    session, patient, now = patient_request(patient_id)
    discharge_service.discharge_patient(session, patient, current_user().id, json.reason, now)
    audit(patient.id, f"patient:{patient.id}")
    return patient_out(patient)


@api.get("/patients/<int:patient_id>/schedule")
@spec.validate(query=ScheduleQuery, resp=responses(HTTP_200=ScheduleOut, HTTP_422=None), tags=TAGS)
@audited(AuditAction.VIEW_SCHEDULE)
def get_schedule(patient_id: int, query: ScheduleQuery):
    """Every dated event (doses, premedication, pills, labs, check-ins, milestones) in a window."""
    session, patient, now = patient_request(patient_id)
    window = schedule_between(session, patient, query.from_, query.to, now)
    audit(patient.id, f"patient:{patient.id}")
    return schedule_out(patient, window)


@api.post("/patients/<int:patient_id>/labs")
@spec.validate(json=LabIn, resp=responses(HTTP_201=LabRecorded, HTTP_422=None), tags=TAGS)
@audited(AuditAction.RECORD_LAB)
def record_lab(patient_id: int, json: LabIn):
    """Record a CMV PCR, CD4 or ANC result; the lab rules may raise alerts."""
    session, patient, now = patient_request(patient_id)
    lab, alerts = lab_service.record_lab(session, patient, json, current_user().id, now)
    audit(patient.id, f"lab:{lab.id}")
    return LabRecorded(lab=lab_out(lab), alerts=[alert_out(a) for a in alerts]), 201


@api.get("/patients/<int:patient_id>/labs")
@spec.validate(resp=responses(HTTP_200=list[LabOut]), tags=TAGS)
@audited(AuditAction.VIEW_LABS)
def list_labs(patient_id: int):
    """The patient's lab results, oldest first."""
    return _patient_records(patient_id, lab_service.labs_of, lab_out)


@api.get("/patients/<int:patient_id>/reports")
@spec.validate(resp=responses(HTTP_200=list[ReportOut]), tags=TAGS)
@audited(AuditAction.VIEW_REPORTS)
def list_reports(patient_id: int):
    """The patient's symptom reports, oldest first, each with the triage rules that matched."""
    return _patient_records(patient_id, report_service.reports_of, report_out)


@api.post("/patients/<int:patient_id>/prophylaxis")
@spec.validate(
    json=ProphylaxisIn, resp=responses(HTTP_201=ProphylaxisOut, HTTP_422=None), tags=TAGS
)
@audited(AuditAction.ADD_PROPHYLAXIS)
def add_prophylaxis(patient_id: int, json: ProphylaxisIn):
    """Start an infection-prevention course with the dose and times the care team prescribed."""
    session, patient, now = patient_request(patient_id)
    course = prophylaxis_service.add_course(session, patient, json, now)
    audit(patient.id, f"course:{course.id}")
    return _course_out(session, course, patient, now), 201


@api.get("/patients/<int:patient_id>/prophylaxis")
@spec.validate(resp=responses(HTTP_200=list[ProphylaxisOut]), tags=TAGS)
@audited(AuditAction.VIEW_PROPHYLAXIS)
def list_prophylaxis(patient_id: int):
    """The patient's prophylaxis courses with their stop eligibility."""
    return patient_list(patient_id, _courses_out)


@api.post("/prophylaxis/<int:course_id>/stop")
@spec.validate(json=ProphylaxisStopIn, resp=COURSE_CHANGE, tags=TAGS)
@audited(AuditAction.STOP_PROPHYLAXIS)
def stop_prophylaxis(course_id: int, json: ProphylaxisStopIn):
    """Confirm the stop of a course; refused (409) while not eligible unless an override reason is given."""
    return _change_course(course_id, prophylaxis_service.stop_course, json)


@api.post("/prophylaxis/<int:course_id>/confirm")
@spec.validate(json=ProphylaxisConfirmIn, resp=COURSE_CHANGE, tags=TAGS)
@audited(AuditAction.CONFIRM_PROPHYLAXIS)
def confirm_prophylaxis(course_id: int, json: ProphylaxisConfirmIn):
    """Confirm a proposed course with the dose and times prescribed; its pill reminders start.

    Refused (409) for a course that is not proposed.
    """
    return _change_course(course_id, prophylaxis_service.confirm_course, json)


@api.post("/prophylaxis/<int:course_id>/decline")
@spec.validate(json=ProphylaxisDeclineIn, resp=COURSE_CHANGE, tags=TAGS)
@audited(AuditAction.DECLINE_PROPHYLAXIS)
def decline_prophylaxis(course_id: int, json: ProphylaxisDeclineIn):
    """Decline a proposed course with the reason (an allergy, an alternative entered instead).

    Refused (409) for a course that is not proposed.
    """
    return _change_course(course_id, prophylaxis_service.decline_course, json)
