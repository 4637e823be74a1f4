"""Patients: enrolment, contact preferences and team-scoped look-ups."""

from __future__ import annotations

from datetime import datetime

import phonenumbers
from sqlalchemy import func
from sqlmodel import Session, select

from backend.errors import InvalidInput, NotFound
from backend.models import Patient
from backend.schemas import PatientIn, PatientUpdate
from backend.services.messaging import resync_patient_messages, send_welcome


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
    patient = session.get(Patient, patient_id)
    if patient is None or patient.team_id != team_id:
        raise NotFound("no such patient")
    return patient


def create_patient(
    session: Session, team_id: int, data: PatientIn, now: datetime, *, region: str
) -> Patient:
    """Enrol a patient in ``team_id``."""
    values = data.model_dump()
    values["phone"] = normalize_phone(data.phone, region)
    patient = Patient(team_id=team_id, created_at=now, updated_at=now, **values)
    session.add(patient)
    session.flush()
    send_welcome(session, patient, now)
    return patient


def update_patient(
    session: Session, patient: Patient, data: PatientUpdate, now: datetime, *, region: str
) -> Patient:
    """Apply the fields set in ``data`` to ``patient``."""
    changes = data.model_dump(exclude_unset=True)
    for key in ("display_name", "timezone", "language", "sms_consent", "discreet", "pill_times"):
        if key in changes and changes[key] is None:
            raise InvalidInput("may not be null", field=key)
    if changes.get("phone") is not None:
        changes["phone"] = normalize_phone(changes["phone"], region)
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
    session.add(patient)
    session.flush()
    send_welcome(session, patient, now)
    resync_patient_messages(session, patient, now)
    return patient


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
