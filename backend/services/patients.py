"""Patients: enrolment, contact preferences and team-scoped look-ups."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import phonenumbers
from sqlalchemy import func, inspect, text
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, select

from backend.schemas import PatientIn, PatientUpdate
from backend.services.care_phone import require_care_phone
from backend.services.messaging import resync_patient_messages, send_welcome
from reminders.core.regions import get_region
from reminders.data.db import get_owned
from reminders.data.errors import Conflict, InvalidInput
from reminders.data.models import Patient

#: The answer to a number another active patient has. It names no team and no patient:
#: the caller may be another team, and the number's owner is not theirs to know.
PHONE_IN_USE = (
    "this phone number is already in use by another patient: check it with the patient; "
    "if they moved here from another team, that team must discharge them first"
)


def normalize_phone(raw: str, region: str, *, field: str = "phone") -> str:
    """``raw`` as an E.164 number, reading national numbers in ``region``; refuse invalid ones."""
    try:
        number = phonenumbers.parse(raw, region)
    except phonenumbers.NumberParseException as exc:
        raise InvalidInput("not a phone number", field=field) from exc
    if number.extension:
        # An SMS cannot reach an extension: refuse it rather than drop it silently.
        raise InvalidInput(
            "a phone number with an extension cannot receive SMS; give a mobile number",
            field=field,
        )
    if not phonenumbers.is_valid_number(number):
        raise InvalidInput("not a valid phone number for its country", field=field)
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def get_patient(session: Session, team_id: int, patient_id: int) -> Patient:
    """The patient ``patient_id`` if they belong to ``team_id``; otherwise NotFound."""
    return get_owned(session, Patient, patient_id, "patient", team_id=team_id)


def phone_in_use(session: Session, phone: str, *, other_than: int | None = None) -> bool:
    """True when an active patient (of any team) other than ``other_than`` has ``phone``."""
    query = select(Patient.id).where(Patient.phone == phone, Patient.discharged_at.is_(None))
    if other_than is not None:
        query = query.where(Patient.id != other_than)
    return session.exec(query.limit(1)).first() is not None


def _flush_owning_phone(session: Session, patient: Patient) -> None:
    """Write ``patient``; Conflict when another active patient took the number meanwhile.

    :func:`phone_in_use` answers the usual case; the unique index
    (``uq_patient_active_phone``) decides a race between two enrolments, and the
    savepoint keeps the caller's transaction usable for the error page.
    """
    try:
        with session.begin_nested():
            session.add(patient)
            session.flush()
    except IntegrityError as exc:
        if phone_in_use(session, patient.phone, other_than=patient.id):
            raise Conflict(PHONE_IN_USE, field="phone") from exc
        raise


def create_patient(
    session: Session, team_id: int, data: PatientIn, now: datetime, *, region: str
) -> Patient:
    """Enrol a patient in ``team_id``; Conflict (409) when an active patient has the number.

    With SMS consent only while the team has a care phone (Conflict, field
    ``sms_consent``): every SMS tells the patient to call it.
    """
    values = data.model_dump()
    values["phone"] = normalize_phone(data.phone, region)
    if data.sms_consent:
        require_care_phone(session, team_id)
    # Unless given, the installation's region (the default one when the data lacks it).
    values["region"] = data.region or get_region(region).code
    if phone_in_use(session, values["phone"]):
        raise Conflict(PHONE_IN_USE, field="phone")
    patient = Patient(team_id=team_id, created_at=now, updated_at=now, **values)
    _flush_owning_phone(session, patient)
    send_welcome(session, patient, now)
    return patient


def update_patient(
    session: Session, patient: Patient, data: PatientUpdate, now: datetime, *, region: str
) -> Patient:
    """Apply the fields set in ``data`` to ``patient``.

    Refused (Conflict) once the patient's contact details were erased: the erasure is
    irreversible (``backend.services.rights``), a new number means a new enrolment. SMS
    consent is turned on only while the team has a care phone (Conflict, field
    ``sms_consent``).
    """
    if patient.erased_at is not None:
        raise Conflict("this patient's contact details were erased at their request")
    changes = data.model_dump(exclude_unset=True)
    for key in (
        "display_name",
        "timezone",
        "language",
        "region",
        "sms_consent",
        "discreet",
        "pill_times",
    ):
        if key in changes and changes[key] is None:
            raise InvalidInput("may not be null", field=key)
    if changes.get("sms_consent") and not patient.sms_consent and patient.discharged_at is None:
        require_care_phone(session, patient.team_id)
    if changes.get("phone") is not None:
        changes["phone"] = normalize_phone(changes["phone"], region)
        if patient.discharged_at is None and phone_in_use(
            session, changes["phone"], other_than=patient.id
        ):
            raise Conflict(PHONE_IN_USE, field="phone")
        if changes["phone"] != patient.phone:
            # A new number may be reachable again: clear the delivery block.
            patient.sms_blocked_reason = None
    for key, value in changes.items():
        if value is None and key in {
            "phone",
            "quiet_start",
            "quiet_end",
            "dose_time",
            "checkin_time",
        }:
            raise InvalidInput("may not be null", field=key)
        setattr(patient, key, value)
    patient.updated_at = now
    _flush_owning_phone(session, patient)
    send_welcome(session, patient, now)
    resync_patient_messages(session, patient, now)
    return patient


@dataclass(frozen=True)
class SharedPhone:
    """Active patients (of any team) who share one phone number: (id, team id, enrolled at)."""

    phone: str
    patients: tuple[tuple[int, int, object], ...]


def duplicate_phones(session: Session) -> list[SharedPhone]:
    """Phone numbers held by more than one active patient, for the teams to resolve.

    Works before and after migration 0004 (which refuses to run while there are any):
    before it, every patient is active. Nothing is changed.
    """
    columns = {c["name"] for c in inspect(session.connection()).get_columns("patient")}
    active = "discharged_at IS NULL" if "discharged_at" in columns else "1 = 1"
    rows = session.execute(
        text(
            f"SELECT id, team_id, phone, created_at FROM patient WHERE {active} AND phone IN "
            f"(SELECT phone FROM patient WHERE {active} GROUP BY phone HAVING COUNT(*) > 1) "
            "ORDER BY phone, created_at, id"
        )
    ).all()
    groups: dict[str, list[tuple[int, int, object]]] = {}
    for row in rows:
        groups.setdefault(row.phone, []).append((row.id, row.team_id, row.created_at))
    return [SharedPhone(phone, tuple(members)) for phone, members in groups.items()]


def list_patients(
    session: Session, team_id: int, *, page: int, per_page: int
) -> tuple[list[Patient], int]:
    """One page of the team's patients (by name) and the total count."""
    total = session.exec(
        select(func.count()).select_from(Patient).where(Patient.team_id == team_id)
    ).one()
    rows = session.exec(
        select(Patient)
        .where(Patient.team_id == team_id)
        .order_by(Patient.display_name, Patient.id)
        .offset((page - 1) * per_page)
        .limit(per_page)
    ).all()
    return list(rows), int(total)
