"""Request and response schemas of the care-team API (pydantic v2).

The same input models validate the JSON API and the care-team forms, so a rule
(a plausible weight, a valid time zone) is written once. Validation errors name
the field; the API returns them as 422.
"""

from __future__ import annotations

import re
from datetime import date, datetime, time
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, available_timezones

from email_validator import EmailNotValidError, validate_email
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    WithJsonSchema,
    field_validator,
)

from reminders.core.prophylaxis import CourseStatus
from reminders.core.regions import region_codes
from reminders.data.models import MAX_ID
from reminders.data.statuses import Channel, OnCallRole, PageTarget

Language = Literal["en", "fr", "nl"]
Role = Literal["nurse", "physician", "admin"]
LabKindName = Literal["cmv_pcr", "cd4", "anc"]
AlertStatus = Literal["open", "acknowledged", "resolved"]
Severity = Literal["urgent", "high", "routine"]

_HHMM = re.compile(r"^([01]\d|2[0-3]):[0-5]\d$")


def _valid_timezone(value: str) -> str:
    if value not in _timezones():
        raise ValueError("unknown IANA time zone (e.g. Europe/Brussels, America/New_York)")
    ZoneInfo(value)
    return value


def _known_region(value: str) -> str:
    code = value.upper()
    if code not in region_codes():
        raise ValueError(f"unknown region: one of {', '.join(region_codes())}")
    return code


def is_timezone(name: str) -> bool:
    """True when ``name`` is an IANA time zone of the installed database (e.g. Europe/Brussels)."""
    return name in _timezones()


def _timezones() -> set[str]:
    # available_timezones() scans tzdata; cache on the function object.
    cached = getattr(_timezones, "_cache", None)
    if cached is None:
        cached = available_timezones()
        _timezones._cache = cached  # type: ignore[attr-defined]
    return cached


def _valid_hhmm(value: str) -> str:
    if not _HHMM.match(value):
        raise ValueError("time must be HH:MM (24-hour), e.g. 08:00")
    return value


def _wall_clock(value: time) -> time:
    if value.tzinfo is not None:
        raise ValueError("give a local time without a UTC offset, e.g. 22:00")
    return value


#: Characters no text field may hold: C0 controls but tab, line feed and carriage return
#: (a note may have lines), DEL, C1 controls, and lone surrogates (which no database
#: stores: PostgreSQL refuses NUL and invalid UTF-8 with a 500 otherwise).
CONTROL_CHARACTERS = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ud800-\udfff]")
#: The same, with line breaks and tabs: never in a header, a redirect or a one-line value.
LINE_CONTROL_CHARACTERS = re.compile("[\x00-\x1f\x7f-\x9f\ud800-\udfff]")

#: Dates any field accepts. A software plausibility bound (issue 12), not a clinical
#: number: year 1 or 9999 is a typing error, and overflows date arithmetic and drivers.
EARLIEST_DATE = date(1900, 1, 1)
LATEST_DATE = date(2100, 12, 31)


def has_control_character(value: Any) -> bool:
    """True when ``value`` (a string, or a list or dict holding strings) has a control character."""
    if isinstance(value, str):
        return CONTROL_CHARACTERS.search(value) is not None
    if isinstance(value, dict):
        return any(has_control_character(k) or has_control_character(v) for k, v in value.items())
    if isinstance(value, list | tuple | set):
        return any(has_control_character(item) for item in value)
    return False


def _plausible_date(value: date) -> date:
    day = value.date() if isinstance(value, datetime) else value
    if not EARLIEST_DATE <= day <= LATEST_DATE:
        raise ValueError(
            f"the date must be between {EARLIEST_DATE.isoformat()} and {LATEST_DATE.isoformat()}"
        )
    return value


def _with_offset(value: datetime) -> datetime:
    if value.tzinfo is None:
        raise ValueError("needs a time zone offset, e.g. 2026-03-02T08:00:00+01:00")
    return value


def valid_email(value: str) -> str:
    """``value`` as a normalised, lower-case email address; ValueError when it is not one.

    The syntax check is the maintained ``email-validator`` package's (no DNS look-up), so
    markup, double dots and domains without a dot are refused.
    """
    try:
        checked = validate_email(value.strip(), check_deliverability=False)
    except EmailNotValidError as exc:
        raise ValueError(f"not a valid email address: {exc}") from exc
    return checked.normalized.lower()


#: A calendar date between :data:`EARLIEST_DATE` and :data:`LATEST_DATE`.
PlausibleDate = Annotated[date, AfterValidator(_plausible_date)]
#: An instant whose (local) date is between :data:`EARLIEST_DATE` and :data:`LATEST_DATE`.
PlausibleDateTime = Annotated[datetime, AfterValidator(_plausible_date)]
#: A :data:`PlausibleDateTime` with its time zone offset: an instant, never a wall time.
AwareDateTime = Annotated[PlausibleDateTime, AfterValidator(_with_offset)]
#: An email address, checked and normalised by ``email-validator``.
Email = Annotated[str, Field(min_length=3, max_length=254), AfterValidator(valid_email)]
#: A JSON integer: "2", 2.0 and true are refused (the forms convert their strings first).
StrictInt = Annotated[int, Field(strict=True)]

TimeZoneName = Annotated[str, AfterValidator(_valid_timezone)]
HHMM = Annotated[str, AfterValidator(_valid_hhmm)]
#: A country of ``reminders/core/regions.toml``: the emergency number and the temperature
#: units of a patient's SMS.
RegionCode = Annotated[
    str,
    Field(min_length=2, max_length=2, description="ISO 3166 code (BE, FR, LU, NL, US)"),
    AfterValidator(_known_region),
]
#: A wall-clock time in the patient's time zone ("22:00" in, "22:00:00" out). JSON Schema's
#: "time" format is an RFC 3339 time *with* an offset, which these are not.
LocalTime = Annotated[
    time,
    AfterValidator(_wall_clock),
    WithJsonSchema(
        {
            "type": "string",
            "pattern": r"^([01]\d|2[0-3]):[0-5]\d(:[0-5]\d)?$",
            "description": "local wall-clock time in the patient's time zone, HH:MM[:SS]",
        }
    ),
]
ShortText = Annotated[str, Field(min_length=1, max_length=500)]
#: The id of a row: a larger number cannot exist, and would overflow the database driver.
RowId = Annotated[int, Field(ge=1, le=MAX_ID)]


class Strict(BaseModel):
    """Base for inputs: unknown fields are refused, strings are stripped, no control characters.

    Every field of every input (a string, or strings in a list or dictionary) is refused
    with its name when it holds a control character (:data:`CONTROL_CHARACTERS`).
    """

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    @field_validator("*", mode="before")
    @classmethod
    def _no_control_characters(cls, value: Any) -> Any:
        if has_control_character(value):
            raise ValueError("contains a control character (such as NUL); remove it")
        return value


# --- patients ---------------------------------------------------------------------------


def _distinct_times(times: list[str]) -> list[str]:
    """Pill times once each, in the order of the day: one reminder a time."""
    if len(set(times)) != len(times):
        raise ValueError("pill times must be distinct")
    return sorted(times)


class PatientIn(Strict):
    """A new patient."""

    display_name: str = Field(min_length=1, max_length=120)
    phone: str = Field(
        min_length=3, max_length=32, description="national or E.164; stored as E.164"
    )
    hospital_ref: str | None = Field(default=None, max_length=40)
    timezone: TimeZoneName = "Europe/Brussels"
    language: Language = "en"
    region: RegionCode | None = Field(
        default=None,
        description="where the patient lives: their SMS name its emergency number and write "
        "temperatures in its units; null: the installation's DEFAULT_REGION",
    )
    sms_consent: StrictBool = False
    discreet: StrictBool = False
    quiet_start: LocalTime = time(22, 0)
    quiet_end: LocalTime = time(7, 0)
    dose_time: LocalTime = time(9, 0)
    checkin_time: LocalTime = time(18, 0)
    pill_times: list[HHMM] = Field(default_factory=lambda: ["08:00", "20:00"], max_length=6)
    height_cm: float | None = Field(default=None, ge=50, le=250)
    weight_kg: float | None = Field(default=None, ge=20, le=350)

    @field_validator("pill_times")
    @classmethod
    def _distinct_times(cls, value: list[str]) -> list[str]:
        return _distinct_times(value)


class PatientUpdate(Strict):
    """Fields a care-team user may change; all optional."""

    display_name: str | None = Field(default=None, min_length=1, max_length=120)
    phone: str | None = Field(default=None, min_length=3, max_length=32)
    hospital_ref: str | None = Field(default=None, max_length=40)
    timezone: TimeZoneName | None = None
    language: Language | None = None
    region: RegionCode | None = None
    sms_consent: StrictBool | None = None
    discreet: StrictBool | None = None
    quiet_start: LocalTime | None = None
    quiet_end: LocalTime | None = None
    dose_time: LocalTime | None = None
    checkin_time: LocalTime | None = None
    pill_times: list[HHMM] | None = Field(default=None, max_length=6)
    height_cm: float | None = Field(default=None, ge=50, le=250)
    weight_kg: float | None = Field(default=None, ge=20, le=350)

    @field_validator("pill_times")
    @classmethod
    def _distinct_times(cls, value: list[str] | None) -> list[str] | None:
        return None if value is None else _distinct_times(value)


class PatientOut(BaseModel):
    """A patient as the care team sees it."""

    id: int
    team_id: int
    display_name: str
    hospital_ref: str | None
    phone: str
    timezone: str
    language: str
    region: str
    sms_consent: bool
    opted_out: bool
    sms_blocked_reason: str | None
    discreet: bool
    quiet_start: LocalTime
    quiet_end: LocalTime
    dose_time: LocalTime
    checkin_time: LocalTime
    pill_times: list[str]
    height_cm: float | None
    weight_kg: float | None
    created_at: datetime
    updated_at: datetime
    discharged_at: datetime | None = None
    discharge_reason: str | None = None


class DischargeIn(Strict):
    """Discharge a patient (their plans and prophylaxis ended first): stops SMS, frees the number."""

    reason: ShortText


class PageQuery(Strict):
    """Pagination of a list."""

    page: int = Field(default=1, ge=1, le=100_000)
    per_page: int = Field(default=50, ge=1, le=200)


class PatientPage(BaseModel):
    """One page of patients."""

    items: list[PatientOut]
    page: int
    per_page: int
    total: int


# --- plans ------------------------------------------------------------------------------


class PlanIn(Strict):
    """Start a regimen for a patient."""

    regimen_id: str = Field(min_length=1, max_length=64)
    start_date: PlausibleDate
    options: dict[str, Any] = Field(default_factory=dict)


class HoldIn(Strict):
    """Put a plan on hold (from today unless a start date is given)."""

    reason: ShortText
    start_date: PlausibleDate | None = None


class ResumeIn(Strict):
    """Resume a held plan (today unless a date is given)."""

    resume_date: PlausibleDate | None = None


class ExtendIn(Strict):
    """Extend a plan by whole weeks (within the regimen's limit)."""

    weeks: StrictInt = Field(ge=1, le=52)


class StopIn(Strict):
    """Stop a plan early."""

    reason: ShortText
    stopped_on: PlausibleDate | None = None


class DoseRecordIn(Strict):
    """Record a dose as given (with the amount the care team confirmed) or missed."""

    status: Literal["given", "missed"]
    on_date: PlausibleDate | None = None
    dose_mg: float | None = Field(default=None, gt=0, le=5000)
    note: str | None = Field(default=None, max_length=500)
    #: The team confirms the dose despite its warnings (body surface area above the
    #: limit, dose above the usual maximum); without it such a dose gets a 409 naming them.
    confirm: StrictBool = False


class DoseWarningOut(BaseModel):
    """Something the care team must confirm about a dose (never blocks, never changes it)."""

    code: str
    message: str
    source: str


class DoseOut(BaseModel):
    """One dose of a plan, with its date after holds and its status."""

    index: int
    phase: str
    date: date | None
    local_time: datetime | None
    amount: float | None
    unit: str
    route: str
    in_hospital: bool
    observation_hours: float | None
    status: str
    calculated_mg: float | None = None
    calculation: str | None = None
    recorded_mg: float | None = None
    warnings: list[DoseWarningOut] = Field(default_factory=list)
    source: str


class HoldOut(BaseModel):
    """A hold of a plan."""

    id: int
    start_date: date
    resume_date: date | None
    reason: str


class RiskWindowOut(BaseModel):
    """A risk window of the plan as dates: counted from the doses given, moved by holds."""

    id: str
    kind: str
    name: str
    first_date: date
    last_date: date | None  # None: open on an open hold, no end yet
    source: str


class PlanOut(BaseModel):
    """A plan with its doses, holds, risk windows and body-surface-area calculation."""

    id: int
    patient_id: int
    regimen_id: str
    regimen_name: str
    start_date: date
    options: dict[str, Any]
    status: str
    extension_weeks: int
    stopped_on: date | None
    stop_reason: str | None
    body_surface_area: str | None
    doses_total: int
    doses_given: int
    doses_missed: int
    doses: list[DoseOut]
    holds: list[HoldOut]
    risk_windows: list[RiskWindowOut] = []


class ScheduleQuery(Strict):
    """A window of the schedule, in the patient's local dates (``to`` inclusive)."""

    from_: PlausibleDate | None = Field(default=None, alias="from")
    to: PlausibleDate | None = None

    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class EventOut(BaseModel):
    """A dated event of the schedule."""

    key: str
    kind: str
    title: str
    local_time: datetime
    at_utc: datetime
    plan_id: int | None
    dose_index: int | None
    details: dict[str, Any]
    source: str


class ScheduleOut(BaseModel):
    """Every dated event between two local dates."""

    # The API writes "from", as documented (spectree dumps without by_alias otherwise).
    model_config = ConfigDict(serialize_by_alias=True)

    patient_id: int
    timezone: str
    from_: date = Field(serialization_alias="from")
    to: date
    events: list[EventOut]


# --- labs and prophylaxis ---------------------------------------------------------------


class LabIn(Strict):
    """A lab result: CMV PCR copies/mL, CD4 cells/uL or ANC cells/uL."""

    kind: LabKindName
    value: float = Field(ge=0)
    taken_at: AwareDateTime
    note: str | None = Field(default=None, max_length=500)


class LabOut(BaseModel):
    """A recorded lab result."""

    id: int
    patient_id: int
    kind: str
    value: float
    unit: str
    taken_at: datetime
    note: str | None


class ReportOut(BaseModel):
    """A symptom report (temperature and symptoms) with its triage result."""

    id: int
    patient_id: int
    checkin_id: int | None
    reported_at: datetime
    temperature_c: float | None
    symptoms: list[str]
    severity: str
    summary: str
    source: str
    rule_ids: list[str] = Field(
        description="the triage rules that matched (ids in triage_rules.toml, in the file's "
        "order): why the report got its severity; empty for reports stored before the "
        "rules were kept"
    )


class LabRecorded(BaseModel):
    """A recorded lab result and the alerts it raised."""

    lab: LabOut
    alerts: list[AlertOut]


# --- expected levels ----------------------------------------------------------------------


class ExpectedLevelIn(Strict):
    """A low-grade temperature the care team expects (after an infusion), until an expiry.

    ``up_to_c``: readings up to this level get no re-check and no low-grade alert; from
    ``fever.recheck_from_c`` to below ``fever.threshold_c``, one decimal. ``expires_at``:
    within ``fever.expected_level.max_days`` (7) days. Checked by the service
    (``reminders.core.expected_levels.level_problems``), which names the field it refuses.
    """

    up_to_c: float = Field(allow_inf_nan=False)
    expires_at: AwareDateTime
    reason: str = Field(max_length=500)


class ExpectedLevelOut(BaseModel):
    """An expected level, who noted it and, when it ended early, who ended it."""

    id: int
    patient_id: int
    up_to_c: float
    reason: str
    noted_by: str
    created_at: datetime
    expires_at: datetime
    ended_at: datetime | None
    ended_by: str | None
    state: Literal["in_force", "expired", "ended", "not_yet"] = Field(
        description="where the level stands now: only a level in force quiets a reading"
    )


def _valid_weekdays(value: list[int] | None) -> list[int] | None:
    if value is None:
        return None
    if any(day < 0 or day > 6 for day in value) or len(set(value)) != len(value):
        raise ValueError("weekdays are distinct numbers 0 (Monday) to 6 (Sunday)")
    return sorted(value)


#: Pill weekdays, 0 (Monday) to 6; None: every day.
PillWeekdays = Annotated[
    list[StrictInt] | None, Field(min_length=1, max_length=7), AfterValidator(_valid_weekdays)
]


class ProphylaxisIn(Strict):
    """An infection-prevention course, with the dose and times the care team prescribed."""

    drug: str = Field(min_length=1, max_length=60)
    dose_text: str = Field(min_length=1, max_length=200)
    times: list[HHMM] = Field(min_length=1, max_length=6)
    weekdays: PillWeekdays = None
    start_date: PlausibleDate
    plan_id: Annotated[RowId, Field(strict=True)] | None = None
    min_months_after_last_dose: StrictInt = Field(default=6, ge=0, le=36)
    cd4_rule: StrictBool = True


class ProphylaxisConfirmIn(Strict):
    """A care-team user confirms a proposed course, with the dose and times they prescribe.

    The sources give no prophylaxis dose, so the proposal has none: ``dose_text`` is
    required here. ``drug`` may be changed (valacyclovir for acyclovir); empty keeps
    the proposed one. ``start_date`` empty keeps the proposed date (the plan's start).
    """

    drug: str | None = Field(default=None, min_length=1, max_length=60)
    dose_text: str = Field(min_length=1, max_length=200)
    times: list[HHMM] = Field(min_length=1, max_length=6)
    weekdays: PillWeekdays = None
    start_date: PlausibleDate | None = None


class ProphylaxisDeclineIn(Strict):
    """A care-team user declines a proposed course; the reason is kept (never silently)."""

    reason: str = Field(min_length=3, max_length=500)


class ProphylaxisStopIn(Strict):
    """Care-team confirmation that a course stops; ``override_reason`` is needed when not eligible."""

    note: str | None = Field(default=None, max_length=500)
    override_reason: str | None = Field(default=None, min_length=3, max_length=500)


class StopEligibilityOut(BaseModel):
    """Whether a course may stop, and what is still missing."""

    eligible: bool
    earliest_date: date | None
    missing: list[str]
    satisfied: list[str]
    source: str


class ProphylaxisOut(BaseModel):
    """A prophylaxis course with its stop eligibility.

    A "proposed" course came from the regimen when the plan started and sends nothing
    until a care-team user confirms it (``POST /prophylaxis/<id>/confirm``) or declines
    it with a reason (``POST /prophylaxis/<id>/decline``).
    """

    id: int
    patient_id: int
    plan_id: int | None
    drug: str
    dose_text: str
    times: list[str]
    weekdays: list[int] | None
    start_date: date
    min_months_after_last_dose: int
    cd4_rule: bool
    status: CourseStatus
    stopped_on: date | None
    stop_note: str | None
    regimen_entry: str | None = Field(
        description="the regimen's prophylaxis entry this course was proposed for; null if entered by hand"
    )
    confirmed_at: datetime | None
    declined_at: datetime | None
    decline_reason: str | None
    stop_eligibility: StopEligibilityOut


# --- alerts -----------------------------------------------------------------------------


class AlertQuery(Strict):
    """Filter the alert list."""

    status: AlertStatus | None = None
    severity: Severity | None = None
    kind: str | None = Field(default=None, pattern=r"^[a-z][a-z_]{0,39}$")
    patient_id: RowId | None = None
    page: int = Field(default=1, ge=1, le=100_000)
    per_page: int = Field(default=50, ge=1, le=200)


class PatientReplyOut(BaseModel):
    """The SMS the patient was answered with (for a fever, the urgent advice) and its delivery.

    ``status``: sent (handed to Twilio), delivered or undelivered; ``provider_status``
    is Twilio's latest word ("twiml" until Twilio reports the message it made from the
    answer to the patient's SMS).
    """

    kind: str
    status: str
    provider_status: str | None
    error_code: str | None
    sent_at: datetime | None
    delivered_at: datetime | None


class AlertOut(BaseModel):
    """An alert for the care team."""

    id: int
    patient_id: int
    severity: str
    kind: str
    reason: str
    details: dict[str, Any]
    source: str | None
    status: str
    created_at: datetime
    acknowledged_at: datetime | None
    acknowledged_by: int | None
    resolved_at: datetime | None
    resolved_by: int | None
    resolution_note: str | None
    reply_to_patient: PatientReplyOut | None = Field(
        default=None,
        description="for an alert raised by a patient's SMS: the answer sent to the patient "
        "(the urgent advice for a fever) and whether it was delivered",
    )
    code: str = Field(default="", description="the short code a clinician replies with: ACK <code>")


class AlertEventOut(BaseModel):
    """One line of an alert's timeline (no phone number, no message text)."""

    at: datetime
    event: str = Field(description="paged, skipped, outcome, acknowledged, resolved, refused")
    step: int | None = Field(description="the escalation step (0 = the first page)")
    channel: str | None = Field(description="sms, voice or web")
    target: str | None = Field(description="primary, backup or fallback")
    user_id: int | None
    outcome: str | None = Field(
        description="queued, delivered, answered, no_answer, busy, failed, cancelled"
    )
    detail: str | None


class AlertDetailOut(AlertOut):
    """An alert with its timeline: every page, its outcome, the acknowledgement."""

    timeline: list[AlertEventOut]


class AlertPage(BaseModel):
    """One page of alerts, most urgent and oldest first."""

    items: list[AlertOut]
    page: int
    per_page: int
    total: int


class ResolveIn(Strict):
    """Resolve an alert with a note."""

    note: str = Field(min_length=1, max_length=1000)


# --- on call, escalation policy, own profile ---------------------------------------------

#: A row id in a JSON body: a whole number (2.0, "2" and true are refused).
BodyRowId = Annotated[int, Field(strict=True, ge=1, le=MAX_ID)]
#: A shift's bound: a wall time in the team's time zone, or an instant with its UTC offset.
ShiftTime = Annotated[
    PlausibleDateTime,
    Field(
        description="local date-time in the team's time zone (2026-03-29T08:00), or an "
        "instant with its UTC offset; a local time the clocks skip moves to the change, "
        "one they repeat is its first occurrence"
    ),
]


class ShiftIn(Strict):
    """A shift of the on-call rota (admins)."""

    user_id: BodyRowId
    role: OnCallRole
    starts_at: ShiftTime
    ends_at: ShiftTime


class ShiftUpdate(Strict):
    """Change a shift that is not over yet (admins); every field optional."""

    user_id: BodyRowId | None = None
    role: OnCallRole | None = None
    starts_at: ShiftTime | None = None
    ends_at: ShiftTime | None = None


class RotaQuery(Strict):
    """A window of the rota in the team's local dates (``to`` inclusive; default: 14 days from today)."""

    from_: PlausibleDate | None = Field(default=None, alias="from")
    to: PlausibleDate | None = None

    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class ShiftOut(BaseModel):
    """A shift: its instants in UTC and in the team's time zone, and whether it counts.

    ``covers`` is false for a clinician deactivated or moved to another team since: their
    shift puts nobody on call.
    """

    id: int
    user_id: int
    user_name: str
    role: str
    starts_at: datetime
    ends_at: datetime
    starts_local: datetime
    ends_local: datetime
    covers: bool


class ShiftSaved(BaseModel):
    """A shift saved, and notes on local times the clocks skip or repeat."""

    shift: ShiftOut
    notes: list[str]


class RotaOut(BaseModel):
    """The team's shifts that overlap a window of local dates."""

    model_config = ConfigDict(serialize_by_alias=True)

    timezone: str
    from_: date = Field(serialization_alias="from")
    to: date
    shifts: list[ShiftOut]


class ShiftRemoved(BaseModel):
    """A shift taken off the rota: deleted (not begun) or ended now (running)."""

    id: int
    outcome: Literal["deleted", "ended"]


class OnDutyOut(BaseModel):
    """Who holds a role now, and until when."""

    user_id: int
    name: str
    until: datetime


class OnCallNowOut(BaseModel):
    """Who is on call now, the fallback number, and what is missing in the next 24 hours.

    ``gaps`` names, per role, the first instant nobody holds it.
    """

    at: datetime
    timezone: str
    primary: OnDutyOut | None
    backup: OnDutyOut | None
    fallback_phone: str | None
    gaps: dict[str, datetime]
    warnings: list[str]


class EscalationStepIn(Strict):
    """One step: page ``target`` on ``channels`` once the alert waited ``after_minutes``."""

    after_minutes: StrictInt
    target: PageTarget
    channels: list[Channel] = Field(min_length=1, max_length=2)


class EscalationPolicyIn(Strict):
    """A team's own escalation policy (admins); the rules are checked by the policy itself."""

    steps: list[EscalationStepIn] = Field(min_length=1, max_length=10)
    repeat_every_minutes: StrictInt


class EscalationPolicyOut(BaseModel):
    """The policy the team follows, and whether it is the default one."""

    steps: list[dict[str, Any]]
    repeat_every_minutes: int
    is_default: bool
    source: str


class ProfileUpdate(Strict):
    """The signed-in user's own phone number (null clears it) and language."""

    phone: str | None = Field(
        default=None, min_length=3, max_length=32, description="national or E.164; stored as E.164"
    )
    language: Language | None = None


class ProfileOut(BaseModel):
    """The user's own profile."""

    id: int
    email: str
    name: str
    role: str
    phone: str | None
    language: str


# --- regimens ---------------------------------------------------------------------------


class RegimenSummary(BaseModel):
    """A regimen of the catalogue, with its sources and options."""

    id: str
    name: str
    drug: str
    disease: str
    route: str
    summary: str
    sources: list[str]
    options: dict[str, Any]
    definition: dict[str, Any]


class ErrorOut(BaseModel):
    """An error: a code, a message and, where one is at fault, the field."""

    error: str
    message: str
    field: str | None = None


LabRecorded.model_rebuild()
