"""A patient's data rights: the whole record (JSON or FHIR R4) and the erasure of contact details.

* :func:`export_record`: everything the companion holds about one patient, in the
  documented, versioned shape ``mab-companion/patient-record`` version 1
  (``docs/data-protection.md``); :func:`export_bundle` maps it to a FHIR R4 Bundle through
  the pure :func:`reminders.core.fhir.record_bundle`.
* :func:`erase_contact_details`: name, phone number and hospital reference become one
  pseudonym, every pending SMS to the patient is cancelled at once, the family's calendar
  links are revoked, and every spelling of the identifiers in the patient's texts (SMS
  both ways, notes, alert reasons, report summaries...) is replaced by ``[erased]``; the
  clinical record stays (legal retention). :func:`erasure_targets` lists, per table, the
  rows and columns it scrubs: the one place to extend when a table gains patient text.

Each function takes ``session`` and ``now``; the caller checks the user's role and team,
writes the audit row and commits (one transaction: erased entirely or not at all).
"""

from __future__ import annotations

import secrets
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import phonenumbers
from sqlalchemy import Table, and_, func, or_, select, update
from sqlalchemy.sql.elements import ColumnElement
from sqlmodel import Session, SQLModel

from reminders.core.erasure import ERASED, Identifiers, either, identifiers
from reminders.core.fhir import RECORD_FORMAT, RECORD_FORMAT_VERSION, record_bundle
from reminders.data.errors import Conflict
from reminders.data.models import (
    Alert,
    AlertEvent,
    AuditEvent,
    CalendarFeed,
    CheckIn,
    DoseRecord,
    ExpectedLevel,
    FamilyContact,
    InboundMessage,
    LabResult,
    OutboundMessage,
    Patient,
    PillConfirmation,
    Plan,
    PlanHold,
    ProphylaxisCourse,
    SymptomReport,
    Team,
    User,
)
from reminders.data.statuses import OutboxStatus
from reminders.outbox import cancel_pending_for_patient

#: What the pseudonym starts with: name, phone and hospital reference all become it.
PSEUDONYM_PREFIX = "erased-"
#: Why the pending SMS of an erased patient were cancelled.
ERASED_REASON = "contact details erased at the patient's request"

#: Columns the export leaves out: secrets' digests and the dispatcher's bookkeeping.
_NOT_EXPORTED: dict[type[SQLModel], frozenset[str]] = {
    CalendarFeed: frozenset({"token_hash"}),
    OutboundMessage: frozenset({"claimed_by", "claimed_at", "dedupe_key", "to_phone"}),
}


def _row(row: SQLModel) -> dict[str, Any]:
    """A row as JSON values (dates and datetimes as ISO 8601, UTC with ``Z``)."""
    return row.model_dump(mode="json", exclude=set(_NOT_EXPORTED.get(type(row), ())))


def _rows(session: Session, model: type[SQLModel], *where: Any) -> list[dict[str, Any]]:
    query = select(model).where(*where).order_by(model.id)  # type: ignore[attr-defined]
    return [_row(row) for row in session.execute(query).scalars()]


def export_record(session: Session, patient: Patient, now: datetime) -> dict[str, Any]:
    """The patient's whole record (format ``mab-companion/patient-record``, version 1).

    Sections, each a list of rows with their table's columns (``reminders/data/models.py``),
    oldest first: ``plans``, ``plan_holds``, ``doses``, ``prophylaxis_courses``, ``labs``,
    ``check_ins``, ``symptom_reports``, ``pill_confirmations``, ``expected_levels``,
    ``sms`` (``outbound``: to the patient; ``inbound``: from them), ``alerts`` (each with
    its ``timeline``), ``calendar_feeds`` (no token digest), ``family_contacts`` (and their consent) and ``access_audit`` (who
    viewed or changed the record: the audit rows naming the patient, with the user's role).
    Pages to clinicians are on the alerts' timelines, not in ``sms``: their numbers are
    the clinicians'.
    """
    pid = patient.id
    plans = _rows(session, Plan, Plan.patient_id == pid)
    plan_ids = [plan["id"] for plan in plans]
    alerts = _rows(session, Alert, Alert.patient_id == pid)
    timelines: dict[int, list[dict[str, Any]]] = {}
    for event in _rows(session, AlertEvent, AlertEvent.alert_id.in_([a["id"] for a in alerts])):
        timelines.setdefault(event["alert_id"], []).append(event)
    audit = _rows(session, AuditEvent, AuditEvent.patient_id == pid)
    user_ids = {row["user_id"] for row in audit if row["user_id"] is not None}
    roles = dict(session.execute(select(User.id, User.role).where(User.id.in_(user_ids))).all())
    audit = [row | {"user_role": roles.get(row["user_id"])} for row in audit]
    team = session.get(Team, patient.team_id)
    return {
        "format": RECORD_FORMAT,
        "format_version": RECORD_FORMAT_VERSION,
        "export_id": str(uuid.uuid4()),
        "exported_at": _row_time(now),
        "patient": _row(patient) | {"team_name": team.name if team else None},
        "plans": plans,
        "plan_holds": _rows(session, PlanHold, PlanHold.plan_id.in_(plan_ids)),
        "doses": _rows(session, DoseRecord, DoseRecord.plan_id.in_(plan_ids)),
        "prophylaxis_courses": _rows(
            session, ProphylaxisCourse, ProphylaxisCourse.patient_id == pid
        ),
        "labs": _rows(session, LabResult, LabResult.patient_id == pid),
        "check_ins": _rows(session, CheckIn, CheckIn.patient_id == pid),
        "symptom_reports": _rows(session, SymptomReport, SymptomReport.patient_id == pid),
        "pill_confirmations": _rows(session, PillConfirmation, PillConfirmation.patient_id == pid),
        "expected_levels": _rows(session, ExpectedLevel, ExpectedLevel.patient_id == pid),
        "sms": {
            "outbound": _rows(
                session,
                OutboundMessage,
                OutboundMessage.patient_id == pid,
                OutboundMessage.recipient == "patient",
            ),
            "inbound": _rows(session, InboundMessage, InboundMessage.patient_id == pid),
        },
        "alerts": [alert | {"timeline": timelines.get(alert["id"], [])} for alert in alerts],
        "calendar_feeds": _rows(session, CalendarFeed, CalendarFeed.patient_id == pid),
        "family_contacts": _rows(session, FamilyContact, FamilyContact.patient_id == pid),
        "access_audit": audit,
    }


def _row_time(now: datetime) -> str:
    return now.isoformat().replace("+00:00", "Z")


def export_bundle(session: Session, patient: Patient, now: datetime) -> dict[str, Any]:
    """The patient's record as a FHIR R4 Bundle of type ``collection``."""
    return record_bundle(export_record(session, patient, now))


# --- erasure -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Scrub:
    """The rows of one table that hold a patient's text, and what is done to their columns.

    ``redact``: text or JSON columns in which every spelling of the patient's identifiers
    becomes ``[erased]`` (the rest of the text, the clinical content, stays);
    ``replace``: columns whose whole value goes (a label naming a relative).
    """

    model: type[SQLModel]
    rows: ColumnElement[bool]
    redact: tuple[str, ...] = ()
    replace: Mapping[str, Any] = field(default_factory=dict)


def erasure_targets(patient: Patient, contact_phones: Sequence[str] = ()) -> list[Scrub]:
    """Per table: the patient's rows and the columns where their identifiers are erased.

    The one list to extend when a table gains text about a patient (a family contact
    table: its name and phone columns in ``replace``). The patient's own name, phone
    and hospital reference are set by :func:`erase_contact_details` itself. Not listed,
    and why (``docs/data-protection.md``): ``auditevent`` (ids only, append-only),
    ``checkin`` and ``pillconfirmation`` (event keys and symptom codes, no text), and the
    staff's tables (users, teams, rota, tokens, sessions), which name no patient.
    """
    pid = patient.id
    plans = select(Plan.id).where(Plan.patient_id == pid).scalar_subquery()
    alerts = select(Alert.id).where(Alert.patient_id == pid).scalar_subquery()
    return [
        Scrub(Patient, Patient.id == pid, ("discharge_reason",)),
        Scrub(Plan, Plan.patient_id == pid, ("options", "stop_reason")),
        Scrub(PlanHold, PlanHold.plan_id.in_(plans), ("reason",)),
        Scrub(DoseRecord, DoseRecord.plan_id.in_(plans), ("note",)),
        Scrub(
            ProphylaxisCourse,
            ProphylaxisCourse.patient_id == pid,
            ("dose_text", "stop_note", "decline_reason"),
        ),
        Scrub(LabResult, LabResult.patient_id == pid, ("note",)),
        Scrub(SymptomReport, SymptomReport.patient_id == pid, ("summary",)),
        Scrub(ExpectedLevel, ExpectedLevel.patient_id == pid, ("reason",)),
        Scrub(Alert, Alert.patient_id == pid, ("reason", "details", "source", "resolution_note")),
        Scrub(AlertEvent, AlertEvent.alert_id.in_(alerts), ("detail",)),
        # The patient's SMS and the pages about their alerts (initials, hospital
        # reference, the callback number read out digit by digit).
        Scrub(
            OutboundMessage,
            or_(OutboundMessage.patient_id == pid, OutboundMessage.alert_id.in_(alerts)),
            ("body", "to_phone", "error_reason"),
        ),
        # Their SMS, and those from their number that reached nobody (before enrolment,
        # after a discharge): the number is theirs; and their family contacts' messages
        # (stored with no patient: a number may be listed for several).
        Scrub(
            InboundMessage,
            or_(
                InboundMessage.patient_id == pid,
                and_(
                    InboundMessage.patient_id.is_(None),
                    InboundMessage.from_phone.in_([patient.phone, *contact_phones]),
                ),
            ),
            ("body", "from_phone"),
        ),
        # A link's label says whose phone it is for ("Sophie's phone"): a relative's name.
        Scrub(CalendarFeed, CalendarFeed.patient_id == pid, replace={"label": ERASED}),
    ]


def phone_digit_forms(phone: str) -> list[str]:
    """The digits of ``phone`` as written internationally, nationally and without prefix."""
    forms = ["".join(ch for ch in phone if ch.isdigit())]
    try:
        number = phonenumbers.parse(phone, None)
    except phonenumbers.NumberParseException:
        return forms
    national = phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.NATIONAL)
    forms += [national, phonenumbers.national_significant_number(number)]
    return forms


def patient_identifiers(patient: Patient, contacts: Sequence[FamilyContact] = ()) -> Identifiers:
    """What names ``patient`` in a text: name, phone number (every form), hospital reference;
    and the name and number of each of their family ``contacts``, whose copies and messages
    are kept in the patient's record."""
    people = [
        identifiers(patient.display_name, phone_digit_forms(patient.phone), patient.hospital_ref)
    ]
    people += [identifiers(c.name, phone_digit_forms(c.phone)) for c in contacts]
    return either(*people)


@dataclass(frozen=True)
class Erasure:
    """What an erasure did: the pseudonym (for the hospital's file) and the counts."""

    patient_id: int
    pseudonym: str
    cancelled_sms: int
    revoked_links: int
    rows_scrubbed: dict[str, int]


def erase_contact_details(session: Session, patient: Patient, now: datetime) -> Erasure:
    """Erase ``patient``'s contact details at their request, irreversibly (the caller commits).

    Name, phone number and hospital reference become one pseudonym (``erased-`` and 12
    hex digits: the hospital notes it in its own file to find the kept record again);
    consent is withdrawn and every pending SMS to the patient is cancelled at once (the
    planner, the dispatcher and :func:`reminders.rendering.sms_allowed` skip a patient
    with ``erased_at``); the family contacts' pending copies are cancelled and the contacts
    deleted (their names and numbers are redacted like the patient's); the calendar links
    are revoked; every table of
    :func:`erasure_targets` is scrubbed. Refused (Conflict) for a patient already erased.
    """
    if patient.erased_at is not None:
        raise Conflict("this patient's contact details are already erased")
    contacts = session.scalars(
        select(FamilyContact).where(FamilyContact.patient_id == patient.id)
    ).all()
    found = patient_identifiers(patient, contacts)
    # Before the phone changes: inbound rows are found by number.
    targets = erasure_targets(patient, [contact.phone for contact in contacts])
    pending = _pending_to_patient(session, patient.id)
    cancel_pending_for_patient(session, patient.id, ERASED_REASON)
    # The family's copies and nudges too; then the contacts themselves, whose names and
    # numbers are the relatives' own data and no part of the clinical record.
    pending += session.execute(
        update(OutboundMessage)
        .where(
            OutboundMessage.patient_id == patient.id,
            OutboundMessage.recipient == "family",
            OutboundMessage.status == OutboxStatus.PENDING,
        )
        .values(status=OutboxStatus.CANCELLED, error_reason=ERASED_REASON)
    ).rowcount
    for contact in contacts:
        session.delete(contact)
    revoked = session.execute(
        update(CalendarFeed)
        .where(CalendarFeed.patient_id == patient.id, CalendarFeed.revoked_at.is_(None))
        .values(revoked_at=now)
    ).rowcount
    session.flush()
    scrubbed = {scrub.model.__tablename__: _scrub(session, scrub, found) for scrub in targets}
    session.refresh(patient)
    pseudonym = PSEUDONYM_PREFIX + secrets.token_hex(6)
    patient.display_name = patient.phone = patient.hospital_ref = pseudonym
    patient.sms_consent = False
    patient.erased_at = patient.updated_at = now
    session.add(patient)
    session.flush()
    session.expire_all()  # rows loaded before hold the old texts
    return Erasure(
        patient_id=patient.id,
        pseudonym=pseudonym,
        cancelled_sms=pending,
        revoked_links=revoked,
        rows_scrubbed={name: count for name, count in scrubbed.items() if count},
    )


def _pending_to_patient(session: Session, patient_id: int) -> int:
    return session.execute(
        select(func.count()).where(
            OutboundMessage.patient_id == patient_id,
            OutboundMessage.recipient == "patient",
            OutboundMessage.status == OutboxStatus.PENDING,
        )
    ).scalar_one()


def _scrub(session: Session, scrub: Scrub, found: Identifiers) -> int:
    """Apply ``scrub`` to its rows; how many rows changed."""
    table: Table = scrub.model.__table__  # type: ignore[attr-defined]
    columns = [table.c[name] for name in (*scrub.redact, *scrub.replace)]
    changed = 0
    for row in session.execute(select(table.c.id, *columns).where(scrub.rows)).all():
        values: dict[str, Any] = {}
        for name in scrub.redact:
            old = getattr(row, name)
            new = found.redact_value(old)
            if new != old:
                values[name] = new
        for name, value in scrub.replace.items():
            if getattr(row, name) != value:
                values[name] = value
        if values:
            session.execute(update(table).where(table.c.id == row.id).values(**values))
            changed += 1
    return changed
