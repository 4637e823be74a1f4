"""The SQLModel tables: teams, users, sessions, sign-in counters, patients, plans, labs, alerts, SMS,
audit.

Every table has an integer primary key ``id`` (:class:`TableBase`).
Every datetime column is :class:`UTCDateTime`: stored as UTC and returned
timezone-aware on SQLite and PostgreSQL alike. Dates without a time (a plan's
start, a hold's resume date) are the patient's local calendar dates.
Vocabularies (roles, statuses, kinds) are stored as plain strings, so that a new
value needs no database migration; the statuses of plans, alerts, outbox messages and
check-ins are the enums of :mod:`reminders.data.statuses`, and every change of one through
the ORM is checked against its allowed transitions (below); the audit trail's actions
and channels are the enums ``AuditAction`` and ``AuditChannel`` of the same module, and
:class:`AuditEvent` rows are append-only (ORM guard and database triggers).
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time
from enum import StrEnum
from typing import Any

from sqlalchemy import DDL, JSON, Column, DateTime, Index, UniqueConstraint, event, text
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import ORMExecuteState, Session
from sqlalchemy.orm.base import NEVER_SET, NO_VALUE
from sqlalchemy.types import TypeDecorator
from sqlmodel import Field, SQLModel

from reminders.core.prophylaxis import CourseStatus
from reminders.data.statuses import (
    AlertStatus,
    Channel,
    CheckInState,
    OutboxStatus,
    PlanStatus,
    check_transition,
)


class UTCDateTime(TypeDecorator):
    """A datetime stored in UTC and always returned timezone-aware (UTC).

    SQLite has no time zones, so the UTC value is stored naive there and the
    zone is put back on the way out; PostgreSQL stores ``timestamptz``.
    Naive datetimes are refused: they are the classic source of off-by-hours bugs.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime refused: pass a timezone-aware datetime")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


def utc_field(*, nullable: bool = False, index: bool = False) -> Any:
    """A column of :class:`UTCDateTime`."""
    return Field(default=None, sa_column=Column(UTCDateTime(), nullable=nullable, index=index))


def json_field(factory: Any = None, *, nullable: bool = False) -> Any:
    """A JSON column (lists of times, plan options, symptom codes); ``factory`` makes the default."""
    if factory is None:
        return Field(default=None, sa_column=Column(JSON, nullable=nullable))
    return Field(default_factory=factory, sa_column=Column(JSON, nullable=nullable))


def user_ref() -> Any:
    """A nullable reference to a care-team user: who did something, or who was paged.

    None when no user did it (an operator at the command line, the team's fallback number).
    """
    return Field(default=None, foreign_key="user.id")


class TableBase(SQLModel):
    """What every table shares: an integer primary key ``id``, None until the row is inserted."""

    id: int | None = Field(default=None, primary_key=True)


#: The largest id an INTEGER column holds on both engines (SQLite's is larger).
MAX_ID = 2**31 - 1


# --- care teams -------------------------------------------------------------------------


class Team(TableBase, table=True):
    """A care team: its patients, users, the number patients call and the on-call number.

    ``oncall_phone`` is the team's fallback number (a ward or switchboard phone that is
    always answered): the last step of the escalation policy, and the first one when
    the rota names nobody. ``timezone`` is the zone the rota's shifts are written in.
    ``escalation_policy`` and ``response_targets`` are the team's own settings, None for
    the defaults of ``reminders/core/clinical_rules.toml``.
    """

    name: str = Field(max_length=120, unique=True)
    care_phone: str | None = Field(
        default=None, max_length=20, description="E.164 number patients call"
    )
    oncall_phone: str | None = Field(default=None, max_length=20)
    timezone: str = Field(default="Europe/Brussels", max_length=64)
    escalation_policy: dict[str, Any] | None = json_field(nullable=True)
    response_targets: dict[str, Any] | None = json_field(nullable=True)
    created_at: datetime = utc_field()


class User(TableBase, table=True):
    """A care-team member (nurse, physician, admin)."""

    team_id: int = Field(foreign_key="team.id", index=True)
    email: str = Field(max_length=254, unique=True)
    name: str = Field(default="", max_length=120)
    role: str = Field(default="nurse", max_length=20)
    #: The clinician's own mobile (E.164): on-call pages and calls go there, and an
    #: ``ACK`` reply from it acknowledges an alert as this user.
    phone: str | None = Field(default=None, max_length=20, index=True)
    #: The language of the pages and calls this clinician receives (en, fr, nl).
    language: str = Field(default="en", max_length=2)
    password_hash: str | None = Field(default=None, max_length=255)
    last_login_at: datetime | None = utc_field(nullable=True)
    is_active: bool = True
    created_at: datetime = utc_field()


class LoginThrottle(TableBase, table=True):
    """Failed sign-ins of one account from one client: how long it must wait (issue 12).

    One row per pair of HMAC-SHA256 keys (the app's ``SECRET_KEY``): ``account_key`` of
    the normalised email as typed (known or not) and ``address_key`` of the client's
    network or of a known device, so neither emails typed by strangers nor addresses are
    stored in clear. The row whose ``account_key`` is ``*`` counts every failure from one
    address (the password-spraying brake; ``first_failure_at`` starts its window). The
    policy is :mod:`backend.services.signin`; rows unused for 30 days are pruned.
    """

    __table_args__ = (UniqueConstraint("account_key", "address_key", name="uq_loginthrottle_pair"),)

    account_key: str = Field(max_length=64)
    address_key: str = Field(max_length=64)
    #: Failures in a row since the last success (for the ``*`` row: in the current window).
    failures: int = 0
    first_failure_at: datetime | None = utc_field(nullable=True)
    last_failure_at: datetime | None = utc_field(nullable=True)
    #: The pair waits until this instant (sign-in is refused unchecked before it).
    retry_after: datetime | None = utc_field(nullable=True)
    last_success_at: datetime | None = utc_field(nullable=True)


class ApiToken(TableBase, table=True):
    """A named bearer token for the JSON API: shown once, expiring, revocable.

    Only the SHA-256 digest of the token is stored, so a database leak does not leak
    working tokens; ``prefix`` (the first characters of its random part) lets people
    recognise a token in a list without being able to use it. Tokens issued before
    migration 0007 have no prefix. ``created_by_user_id`` is the user who created it
    (the owner, or an admin); None when an operator created it from the command line.
    Statuses (active, expired, revoked) are derived: ``backend.services.tokens``.
    """

    user_id: int = Field(foreign_key="user.id", index=True)
    token_hash: str = Field(max_length=64, unique=True)
    name: str = Field(max_length=80)
    prefix: str | None = Field(default=None, max_length=8)
    created_at: datetime = utc_field()
    created_by_user_id: int | None = user_ref()
    expires_at: datetime = utc_field()
    last_used_at: datetime | None = utc_field(nullable=True)
    revoked_at: datetime | None = utc_field(nullable=True)


class UserSession(TableBase, table=True):
    """A signed-in dashboard session, checked on every request (``backend.services.sessions``).

    The browser's cookie holds a random session id; only its SHA-256 digest is stored, so
    a copy of this table opens no session. A session is open while ``ended_at`` is None,
    ``expires_at`` (the absolute limit) is ahead and ``last_seen_at`` is recent enough.
    ``device`` is a short label made from the User-Agent ("Firefox on Windows"), never the
    header itself; no address is kept.
    """

    user_id: int = Field(foreign_key="user.id", index=True)
    id_hash: str = Field(max_length=64, unique=True)
    device: str = Field(default="", max_length=80)
    created_at: datetime = utc_field()
    last_seen_at: datetime = utc_field()
    expires_at: datetime = utc_field()
    ended_at: datetime | None = utc_field(nullable=True)
    #: A ``reminders.data.statuses.SessionEnd`` value once ended.
    ended_reason: str | None = Field(default=None, max_length=30)


# --- patients and treatment -------------------------------------------------------------


#: An active patient (not discharged): the only ones a phone number routes to.
ACTIVE_PATIENT = text("discharged_at IS NULL")


class Patient(TableBase, table=True):
    """A patient, their contact preferences and body measurements.

    A phone number belongs to at most one active patient in the whole installation
    (``uq_patient_active_phone``, a partial unique index over the patients not
    discharged): an incoming SMS reaches exactly one patient and their team. A
    patient is active until their team discharges them (``discharged_at``), which
    frees the number; a discharged patient gets no SMS and no reply reaches them.
    """

    __table_args__ = (
        Index(
            "uq_patient_active_phone",
            "phone",
            unique=True,
            sqlite_where=ACTIVE_PATIENT,
            postgresql_where=ACTIVE_PATIENT,
        ),
    )

    team_id: int = Field(foreign_key="team.id", index=True)
    display_name: str = Field(max_length=120)
    hospital_ref: str | None = Field(default=None, max_length=40)
    phone: str = Field(max_length=20, index=True, description="E.164")
    timezone: str = Field(default="Europe/Brussels", max_length=64)
    language: str = Field(default="en", max_length=2)
    #: Where the patient lives (ISO 3166 code, ``reminders/core/regions.toml``): the
    #: emergency number their SMS name and how temperatures are written to them.
    region: str = Field(default="BE", max_length=2)
    sms_consent: bool = False
    opted_out: bool = False
    opted_out_at: datetime | None = utc_field(nullable=True)
    sms_blocked_reason: str | None = Field(default=None, max_length=200)
    discreet: bool = False
    quiet_start: time = Field(default=time(22, 0))
    quiet_end: time = Field(default=time(7, 0))
    dose_time: time = Field(default=time(9, 0))
    checkin_time: time = Field(default=time(18, 0))
    pill_times: list[str] = json_field(list)
    height_cm: float | None = None
    weight_kg: float | None = None
    created_at: datetime = utc_field()
    updated_at: datetime = utc_field()
    #: Set when the team discharges the patient: no more SMS, and the number is free.
    discharged_at: datetime | None = utc_field(nullable=True)
    discharged_by: int | None = user_ref()
    discharge_reason: str | None = Field(default=None, max_length=500)
    #: Set when the patient's contact details were erased at their request
    #: (``backend.services.rights``): name, phone and hospital reference are a pseudonym,
    #: and nothing is planned or sent to them again. Who did it is in the audit trail.
    erased_at: datetime | None = utc_field(nullable=True)


class Plan(TableBase, table=True):
    """A regimen started for a patient on a date; holds, outcomes and labs shape it."""

    patient_id: int = Field(foreign_key="patient.id", index=True)
    regimen_id: str = Field(max_length=64)
    options: dict[str, Any] = json_field(dict)
    start_date: date
    status: str = Field(default=PlanStatus.ACTIVE, max_length=20, index=True)
    extension_weeks: int = 0
    stopped_on: date | None = None
    stop_reason: str | None = Field(default=None, max_length=500)
    created_by: int | None = user_ref()
    created_at: datetime = utc_field()
    updated_at: datetime = utc_field()


class PlanHold(TableBase, table=True):
    """Therapy put on hold from ``start_date`` until ``resume_date`` (open while None)."""

    plan_id: int = Field(foreign_key="plan.id", index=True)
    start_date: date
    resume_date: date | None = None
    reason: str = Field(max_length=500)
    created_by: int | None = user_ref()
    resumed_by: int | None = user_ref()
    created_at: datetime = utc_field()


class DoseRecord(TableBase, table=True):
    """A dose recorded by the care team as given (with the confirmed amount) or missed."""

    __table_args__ = (UniqueConstraint("plan_id", "dose_index"),)

    plan_id: int = Field(foreign_key="plan.id", index=True)
    dose_index: int
    status: str = Field(max_length=10)
    on_date: date
    dose_mg: float | None = None
    note: str | None = Field(default=None, max_length=500)
    recorded_by: int | None = user_ref()
    recorded_at: datetime = utc_field()


class ProphylaxisCourse(TableBase, table=True):
    """Infection-prevention pills: dose and times as the care team entered them.

    A course never ends by itself: only a care-team user sets ``stopped_on``.
    Starting a plan proposes one course per prophylaxis entry of its regimen
    (``regimen_entry`` names the entry, ``status`` "proposed", no dose): it sends
    nothing until a user confirms it (``confirmed_by``) or declines it with a reason
    (``declined_by``, ``decline_reason``). Statuses: ``reminders.core.prophylaxis.COURSE_STATUSES``.
    """

    __table_args__ = (
        UniqueConstraint("plan_id", "regimen_entry", name="uq_prophylaxiscourse_plan_entry"),
    )

    patient_id: int = Field(foreign_key="patient.id", index=True)
    plan_id: int | None = Field(default=None, foreign_key="plan.id", index=True)
    drug: str = Field(max_length=60)
    dose_text: str = Field(max_length=200)
    times: list[str] = json_field(list)
    weekdays: list[int] | None = json_field(nullable=True)
    start_date: date
    min_months_after_last_dose: int = 6
    cd4_rule: bool = False
    status: str = Field(default=CourseStatus.ACTIVE, max_length=20)
    stopped_on: date | None = None
    stopped_by: int | None = user_ref()
    stop_note: str | None = Field(default=None, max_length=500)
    #: The regimen's prophylaxis entry this course was proposed for (None: entered by hand).
    regimen_entry: str | None = Field(default=None, max_length=64)
    confirmed_at: datetime | None = utc_field(nullable=True)
    confirmed_by: int | None = user_ref()
    declined_at: datetime | None = utc_field(nullable=True)
    declined_by: int | None = user_ref()
    decline_reason: str | None = Field(default=None, max_length=500)
    created_at: datetime = utc_field()


class LabResult(TableBase, table=True):
    """A laboratory result: CMV PCR (copies/mL), CD4 (cells/uL) or ANC (cells/uL)."""

    patient_id: int = Field(foreign_key="patient.id", index=True)
    kind: str = Field(max_length=20)
    value: float
    unit: str = Field(max_length=20)
    taken_at: datetime = utc_field()
    note: str | None = Field(default=None, max_length=500)
    recorded_by: int | None = user_ref()
    recorded_at: datetime = utc_field()


# --- alerts -----------------------------------------------------------------------------


class Alert(TableBase, table=True):
    """Something the care team must look at, with who acknowledged and resolved it."""

    __table_args__ = (
        UniqueConstraint("dedupe_key"),
        Index("ix_alert_team_status", "team_id", "status"),
        # /metrics counts unresolved alerts by severity and their age from this index alone.
        Index("ix_alert_status_severity_created", "status", "severity", "created_at"),
    )

    team_id: int = Field(foreign_key="team.id")
    patient_id: int = Field(foreign_key="patient.id", index=True)
    severity: str = Field(max_length=10)
    kind: str = Field(max_length=40)
    reason: str = Field(max_length=500)
    details: dict[str, Any] = json_field(dict)
    source: str | None = Field(default=None, max_length=200)
    dedupe_key: str | None = Field(default=None, max_length=200)
    status: str = Field(default=AlertStatus.OPEN, max_length=20)
    created_at: datetime = utc_field()
    acknowledged_at: datetime | None = utc_field(nullable=True)
    acknowledged_by: int | None = user_ref()
    resolved_at: datetime | None = utc_field(nullable=True)
    resolved_by: int | None = user_ref()
    resolution_note: str | None = Field(default=None, max_length=1000)
    oncall_notified_at: datetime | None = utc_field(nullable=True)
    escalation_count: int = 0


class AlertEvent(TableBase, table=True):
    """One line of an alert's timeline: a page queued, its outcome, an acknowledgement.

    No phone number and no message text: the page's outbox row (``outbound_id``) holds
    those; ``target`` says whether it was the primary, the backup or the fallback.
    """

    alert_id: int = Field(foreign_key="alert.id", index=True)
    at: datetime = utc_field()
    event: str = Field(max_length=20)
    step: int | None = None
    channel: str | None = Field(default=None, max_length=10)
    target: str | None = Field(default=None, max_length=10)
    user_id: int | None = user_ref()
    outcome: str | None = Field(default=None, max_length=20)
    outbound_id: int | None = Field(default=None, foreign_key="outboundmessage.id")
    detail: str | None = Field(default=None, max_length=200)


# --- on-call rota -------------------------------------------------------------------------


class OnCallShift(TableBase, table=True):
    """Who is on call for a team, as primary or backup, from ``starts_at`` to ``ends_at``.

    Stored in UTC; entered and shown in the team's time zone. Shifts of one role may
    overlap (a handover): the one that started last is on call.
    """

    __table_args__ = (Index("ix_oncallshift_team_ends", "team_id", "ends_at"),)

    team_id: int = Field(foreign_key="team.id")
    user_id: int = Field(foreign_key="user.id")
    role: str = Field(max_length=10)
    starts_at: datetime = utc_field()
    ends_at: datetime = utc_field()
    created_by: int | None = user_ref()
    created_at: datetime = utc_field()


class ExpectedLevel(TableBase, table=True):
    """A care-team note that a patient's low-grade temperature is expected (after an infusion).

    Until ``expires_at`` (or ``ended_at``), a reading below ``up_to_c`` quiets the
    follow-up for that reading only; never a reading at or above the fever threshold,
    never a red flag (the services refuse such a level).
    """

    patient_id: int = Field(foreign_key="patient.id", index=True)
    team_id: int = Field(foreign_key="team.id")
    up_to_c: float
    reason: str = Field(max_length=500)
    expires_at: datetime = utc_field()
    created_by: int | None = user_ref()
    created_at: datetime = utc_field()
    ended_at: datetime | None = utc_field(nullable=True)
    ended_by: int | None = user_ref()


# --- messages and conversations ---------------------------------------------------------


class OutboundMessage(TableBase, table=True):
    """The SMS outbox: one row per message to send, claimed and sent by a dispatcher.

    ``dedupe_key`` makes materialisation idempotent (a planning pass may run twice);
    ``provider_sid`` is Twilio's id once the message was accepted.
    """

    __table_args__ = (
        UniqueConstraint("dedupe_key"),
        Index("ix_outbound_status_next_attempt", "status", "next_attempt_at"),
    )

    team_id: int = Field(foreign_key="team.id")
    patient_id: int | None = Field(default=None, foreign_key="patient.id", index=True)
    alert_id: int | None = Field(default=None, foreign_key="alert.id")
    plan_id: int | None = Field(default=None, foreign_key="plan.id", index=True)
    course_id: int | None = Field(default=None, foreign_key="prophylaxiscourse.id")
    recipient: str = Field(default="patient", max_length=10)
    to_phone: str | None = Field(default=None, max_length=20)
    #: SMS or a voice call (an on-call page); a call reads out ``body``.
    channel: str = Field(default=Channel.SMS, max_length=10)
    #: The clinician paged (recipient ``clinician``): a key press on the call acknowledges as them.
    user_id: int | None = user_ref()
    kind: str = Field(max_length=40)
    dedupe_key: str = Field(max_length=200)
    body: str
    urgent: bool = False
    due_at: datetime = utc_field()
    not_after: datetime | None = utc_field(nullable=True)
    next_attempt_at: datetime = utc_field()
    status: str = Field(default=OutboxStatus.PENDING, max_length=20)
    attempts: int = 0
    claimed_at: datetime | None = utc_field(nullable=True)
    claimed_by: str | None = Field(default=None, max_length=64)
    provider_sid: str | None = Field(default=None, max_length=64, unique=True)
    provider_status: str | None = Field(default=None, max_length=20)
    error_code: str | None = Field(default=None, max_length=20)
    error_reason: str | None = Field(default=None, max_length=300)
    sent_at: datetime | None = utc_field(nullable=True)
    delivered_at: datetime | None = utc_field(nullable=True)
    created_at: datetime = utc_field()
    checkin_id: int | None = Field(default=None, foreign_key="checkin.id")
    #: The conversation step a reply to this message answers (temperature, symptoms, taken).
    expects: str | None = Field(default=None, max_length=20)


class PlanningPass(TableBase, table=True):
    """A committed planning pass over all patients: how far the outbox is planned.

    Written in the pass's own transaction, so a row exists only if the pass's messages
    do. The next pass plans messages from ``planned_until`` on rather than looking back
    a whole freshness window again: every message due before it is stored already,
    unless a patient's plan changed, and a change re-plans that patient at once
    (``reminders.planning.replan_patient``), looking back in full.
    """

    #: The ``now`` of the pass (a pass only trusts passes made at or before its own now).
    planned_at: datetime = utc_field(index=True)
    planned_from: datetime = utc_field()
    planned_until: datetime = utc_field()
    rows_written: int = 0


class InboundMessage(TableBase, table=True):
    """An SMS received from a patient; ``provider_sid`` (Twilio MessageSid) is unique."""

    provider_sid: str = Field(max_length=64, unique=True)
    team_id: int | None = Field(default=None, foreign_key="team.id")
    patient_id: int | None = Field(default=None, foreign_key="patient.id", index=True)
    from_phone: str = Field(max_length=20)
    body: str
    intent: str | None = Field(default=None, max_length=30)
    checkin_id: int | None = Field(default=None, foreign_key="checkin.id")
    received_at: datetime = utc_field()


class CheckIn(TableBase, table=True):
    """One symptom check-in conversation: temperature, then the symptom menu."""

    __table_args__ = (
        UniqueConstraint("patient_id", "event_key"),
        # /metrics reads the last week's check-ins by state (the answer rate) from it alone.
        Index("ix_checkin_state_opened", "state", "opened_at"),
    )

    patient_id: int = Field(foreign_key="patient.id", index=True)
    plan_id: int | None = Field(default=None, foreign_key="plan.id")
    event_key: str = Field(max_length=100)
    state: str = Field(default=CheckInState.AWAITING_TEMPERATURE, max_length=30, index=True)
    temperature_c: float | None = None
    symptoms: list[str] = json_field(list)
    severity: str | None = Field(default=None, max_length=10)
    in_cmv_window: bool = False
    resend_count: int = 0
    opened_at: datetime = utc_field()
    last_prompt_at: datetime = utc_field()
    recheck_due_at: datetime | None = utc_field(nullable=True)
    closed_at: datetime | None = utc_field(nullable=True)


class SymptomReport(TableBase, table=True):
    """What a patient reported (by SMS or through a nurse), with its triage result."""

    patient_id: int = Field(foreign_key="patient.id", index=True)
    checkin_id: int | None = Field(default=None, foreign_key="checkin.id")
    reported_at: datetime = utc_field(index=True)
    temperature_c: float | None = None
    symptoms: list[str] = json_field(list)
    severity: str = Field(max_length=10)
    summary: str = Field(max_length=500)
    source: str = Field(default="sms", max_length=20)
    #: The ids of the triage rules that matched (``triage_rules.toml``), in file order:
    #: which rules decided, kept beside the decision for the clinician and the audit.
    rule_ids: list[str] = json_field(list)


class PillConfirmation(TableBase, table=True):
    """A patient confirmed (TAKEN) a prophylaxis intake: the basis of adherence."""

    __table_args__ = (UniqueConstraint("patient_id", "event_key"),)

    patient_id: int = Field(foreign_key="patient.id", index=True)
    course_id: int | None = Field(default=None, foreign_key="prophylaxiscourse.id")
    event_key: str = Field(max_length=100)
    confirmed_at: datetime = utc_field()


# --- the audit trail ---------------------------------------------------------------------


class AuditEvent(TableBase, table=True):
    """Who viewed or changed which patient, when and through which channel.

    No health data, no SMS text: ids, an ``AuditAction`` (statuses) and a short target such as
    ``plan:12``. Rows are append-only: :func:`_refuse_audit_change` stops the ORM from
    changing or deleting one, and database triggers (:data:`AUDIT_TRIGGERS`, also installed
    by migration 0008) refuse ``UPDATE`` and ``DELETE`` from any client.
    """

    at: datetime = utc_field(index=True)
    user_id: int | None = user_ref()
    team_id: int | None = Field(default=None, foreign_key="team.id", index=True)
    patient_id: int | None = Field(default=None, foreign_key="patient.id", index=True)
    action: str = Field(max_length=60)
    target: str | None = Field(default=None, max_length=120)
    # No default: a row that does not say its channel is refused by the database (NOT NULL).
    channel: str = Field(max_length=16)


class AuditRowImmutable(RuntimeError):
    """An audit row was about to be changed or deleted: the trail is append-only."""

    def __init__(self, operation: str) -> None:
        super().__init__(f"audit rows are append-only: {operation} refused")


#: The message the database triggers raise (migration 0008 uses the same words).
AUDIT_TRIGGER_MESSAGE = "audit rows are append-only: UPDATE and DELETE are refused"

#: The triggers that make ``auditevent`` append-only, by dialect. ``TRUNCATE`` (which row
#: triggers do not see) stays possible for the table's owner: the tests empty PostgreSQL
#: with it. A migration that rebuilds the table on SQLite (``batch_alter_table`` copies it)
#: drops its triggers and must create them again.
AUDIT_TRIGGERS: dict[str, tuple[str, ...]] = {
    "postgresql": (
        "CREATE OR REPLACE FUNCTION auditevent_refuse_change() RETURNS trigger "
        "LANGUAGE plpgsql AS $$ BEGIN "
        f"RAISE EXCEPTION '{AUDIT_TRIGGER_MESSAGE}'; "
        "END $$",
        "CREATE TRIGGER auditevent_append_only BEFORE UPDATE OR DELETE ON auditevent "
        "FOR EACH ROW EXECUTE FUNCTION auditevent_refuse_change()",
    ),
    "sqlite": (
        "CREATE TRIGGER auditevent_no_update BEFORE UPDATE ON auditevent "
        f"BEGIN SELECT RAISE(ABORT, '{AUDIT_TRIGGER_MESSAGE}'); END",
        "CREATE TRIGGER auditevent_no_delete BEFORE DELETE ON auditevent "
        f"BEGIN SELECT RAISE(ABORT, '{AUDIT_TRIGGER_MESSAGE}'); END",
    ),
}

for _dialect, _statements in AUDIT_TRIGGERS.items():
    for _statement in _statements:
        # ``create_all`` (tests, a new installation) installs them with the table.
        event.listen(
            AuditEvent.__table__, "after_create", DDL(_statement).execute_if(dialect=_dialect)
        )


@event.listens_for(AuditEvent, "before_update")
def _refuse_audit_update(mapper: Any, connection: Any, target: AuditEvent) -> None:
    raise AuditRowImmutable("UPDATE")


@event.listens_for(AuditEvent, "before_delete")
def _refuse_audit_delete(mapper: Any, connection: Any, target: AuditEvent) -> None:
    raise AuditRowImmutable("DELETE")


@event.listens_for(Session, "do_orm_execute")
def _refuse_audit_change(state: ORMExecuteState) -> None:
    """Refuse ORM bulk ``update(AuditEvent)`` / ``delete(AuditEvent)`` before they reach the database."""
    if not (state.is_update or state.is_delete):
        return
    # An ORM statement's table is an annotated copy of the Table: compare names.
    if getattr(getattr(state.statement, "table", None), "name", None) == "auditevent":
        raise AuditRowImmutable("UPDATE" if state.is_update else "DELETE")


# --- status transitions ------------------------------------------------------------------

#: The status column of each table with a state machine, and its vocabulary.
STATUS_COLUMNS: dict[type[SQLModel], tuple[str, type[StrEnum]]] = {
    OutboundMessage: ("status", OutboxStatus),
    CheckIn: ("state", CheckInState),
    Alert: ("status", AlertStatus),
    Plan: ("status", PlanStatus),
}


def _checker(kind: type[StrEnum]) -> Any:
    def check(target: Any, value: str, oldvalue: Any, initiator: Any) -> None:
        # A row under construction has no previous state; a stored one always has
        # (``active_history`` loads an expired value before the change).
        old = None if oldvalue is NO_VALUE or oldvalue is NEVER_SET else oldvalue
        check_transition(kind, old, value)

    return check


for _table, (_column, _kind) in STATUS_COLUMNS.items():
    # Every assignment through the ORM: a move that ``reminders.data.statuses.TRANSITIONS`` does
    # not list raises ``IllegalTransition`` before anything is written.
    event.listen(getattr(_table, _column), "set", _checker(_kind), active_history=True)


# --- the treatment calendar's private feeds (issue 15, item 7) --------------------------


class CalendarFeed(TableBase, table=True):
    """A private iCalendar link to a patient's doses and blood tests, for a family's phone.

    The link carries a random token; only its SHA-256 digest is stored (like
    :class:`ApiToken`), so a copy of this table opens no calendar, and the token is shown
    once, when the link is made. ``label`` says whose phone it is for ("daughter's
    phone"), so the team can tell links apart and revoke the right one. A link works
    until ``revoked_at`` (or the patient's discharge); ``last_fetched_at`` is written at
    most once an hour (:mod:`reminders.data.calendar_feeds`).
    """

    patient_id: int = Field(foreign_key="patient.id", index=True)
    token_hash: str = Field(max_length=64, unique=True)
    label: str = Field(max_length=80)
    created_by: int | None = user_ref()
    created_at: datetime = utc_field()
    revoked_at: datetime | None = utc_field(nullable=True)
    revoked_by: int | None = user_ref()
    last_fetched_at: datetime | None = utc_field(nullable=True)


# --- the active clock's lease (issue 16, item 4) ---------------------------------------


class ClockLease(TableBase, table=True):
    """Which clock process is the active one, on SQLite (:mod:`reminders.data.leadership`).

    One row per ``name`` ("clock"). The holder (``hostname:pid:nonce``, no patient data)
    renews ``expires_at`` every few seconds; once it is past, another clock may take the
    row with a conditional ``UPDATE``. PostgreSQL uses a session advisory lock instead
    (the server drops it with a dead process's connection) and leaves this table empty.
    """

    name: str = Field(max_length=40, unique=True)
    holder: str = Field(max_length=200)
    acquired_at: datetime = utc_field()
    expires_at: datetime = utc_field()


# --- family contacts (issue 15, item 6) ---------------------------------------------------


class FamilyContact(TableBase, table=True):
    """A family member who gets copies of a patient's urgent advice and check-in nudges.

    Only with the patient's consent to share with this person, recorded by a care-team
    user (``consent_recorded_by``, ``consent_recorded_at``, ``consent_method``: a
    ``reminders.data.statuses.ConsentMethod``); a withdrawal (``consent_withdrawn_at``)
    stops every copy at once and keeps the row, so the team sees the history and may record
    consent again. ``opted_out_at`` is the family member's own STOP (only their copies
    stop, never the patient's SMS). ``phone`` is E.164 like a patient's; one patient lists
    a number once. The state is derived (``reminders.data.family_contacts.contact_state``).
    """

    __table_args__ = (
        UniqueConstraint("patient_id", "phone", name="uq_familycontact_patient_phone"),
    )

    patient_id: int = Field(foreign_key="patient.id", index=True)
    name: str = Field(max_length=120)
    phone: str = Field(max_length=20, index=True, description="E.164")
    #: The language of the SMS this person gets (en, fr, nl): not necessarily the patient's.
    language: str = Field(default="en", max_length=2)
    relationship: str = Field(max_length=40)
    #: Copies of the urgent advice the patient is given ("call your care team now").
    copies_urgent: bool = True
    #: A nudge when two check-ins in a row go unanswered.
    copies_nudges: bool = True
    consent_method: str | None = Field(default=None, max_length=20)
    consent_recorded_at: datetime | None = utc_field(nullable=True)
    consent_recorded_by: int | None = user_ref()
    consent_withdrawn_at: datetime | None = utc_field(nullable=True)
    consent_withdrawn_by: int | None = user_ref()
    opted_out_at: datetime | None = utc_field(nullable=True)
    created_by: int | None = user_ref()
    created_at: datetime = utc_field()
    updated_at: datetime = utc_field()
