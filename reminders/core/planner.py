"""The planner: from a regimen and a patient's plan to dated doses and reminder events.

Pure functions over frozen dataclasses; no clock is read (callers pass the window).

Conventions
-----------
* Day 1 is ``PlanSpec.start_date``; day 0 the day before; week *n* is days
  ``7(n-1)+1 .. 7n``. Supportive medicines and lab weeks are counted from the start
  date and do not move with holds. Day-anchored milestones (week-4 review, week-12
  marrow) measure weeks of treatment received: they count from the first dose given
  (a late or missed first dose moves them) and move by the length of closed holds
  after it.
* Risk windows count days of treatment received (:func:`treatment_days_received`):
  day 1 is the first dose given (or planned, before any is recorded), and a day on
  hold is not counted, so a hold moves every window after it. The risks they stand
  for follow the drug actually given: CMV reactivation is timed from the start of
  therapy (median 34 days, range 14-58, and after 11-12 weeks of therapy, 002), the
  blood-count low points from the doses (003), the reactions from the first doses.
  A day on hold keeps the number of the last day received, so a window open when a
  hold starts stays open until the treatment resumes (conservative: the patient is
  no less immunosuppressed while on hold). A window with
  ``through_last_dose_plus_days`` (CMV) also runs until that many days after the last
  dose. Issue 11, item 5.
* Times are local wall-clock times in the patient's IANA zone: a 09:00 reminder is
  09:00 local on both sides of a DST change. A local time that does not exist
  (spring-forward gap) moves forward to the first valid instant (the transition);
  an ambiguous one (fall-back) takes the first occurrence (``fold=0``).
* Event keys are stable: ``dose:7``, ``premed:7``, ``supportive:allopurinol:2026-12-03``,
  ``lab:cmv_pcr:2026-12-03``, ``checkin:2026-12-03``, ``milestone:week4_review``,
  ``pill:12:2026-12-03T09:00``. Dose indices are fixed by the regimen, options and
  extension; holds and outcomes change dates and statuses, never indices.

Holds: doses dated on/after ``hold.start`` and not recorded as given/missed before the
resume date are postponed (a dose recorded from the resume date on is one the hold
postponed: outcomes are applied after holds, so recording a dose on the day the plan
gave it moves no other dose). With a
resume date, weekday-pattern doses (alemtuzumab) are re-laid on the next allowed
weekdays on/after the resume date; other doses are shifted so that the first
postponed dose falls on the resume date, keeping the spacing between later doses.
A hold never brings a dose forward. An open hold (no resume date) leaves the
remaining doses ``on_hold`` with no date. Holds are applied in order of start date.

Event choices (the sources give no timing; these are software choices):
* dose reminders at ``dose_time``, only for doses still ``scheduled`` (a dose
  recorded as given or missed gets no reminder);
* premedication: ``premedication.minutes_before`` (60) before the dose time, with
  ``given_by`` ``care_team`` (the hospital gives it: the SMS says so, never "take")
  or ``patient`` (taken at home), from the regimen's ``premedication.given_by`` and
  whether the dose is in hospital;
* a dose's ``observation_hours`` is set only on the dose the regimen gives one for
  (the first in hospital); the SMS says "first dose" only for that dose;
* supportive medicines, lab tests and milestones: at the dose time of their day;
  supportive medicines marked ``pause_during_holds`` (lenalidomide) pause during holds;
* weekly lab tests fall on the weekday of the first planned dose, from that dose
  while treatment runs, including during holds (monitoring matters most then);
* check-ins at ``checkin_time``: daily inside risk windows (wherever they fall),
  every ``every_days`` days during treatment (and on dose days where the regimen
  asks), then the regimen's after-treatment taper (``checkins.after_treatment``:
  e.g. twice a week, then weekly, counted from the last dose), then the last
  step's cadence for as long as ``prophylaxis_ongoing`` (lymphocytes stay low for
  more than 9 months, 002; prophylaxis runs at least 6 months, 003); they continue
  through holds (the patient is still immunosuppressed);
* after ``stopped_on`` no dose, premedication, supportive or lab events, and no
  day-anchored milestone (the transplant-gap milestone stays, counted from the last
  dose); check-ins follow the after-treatment cadence, still daily inside a risk
  window (an early stop in week 4 keeps daily check-ins to the end of the CMV
  window); prophylaxis is separate (:func:`prophylaxis_events`) and continues;
* an open-ended supportive medicine (lenalidomide: "until the care team stops it")
  keeps the treatment running for check-ins until ``stopped_on``.

The dose dates themselves are computed by :mod:`reminders.core.dose_schedule`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from enum import StrEnum
from functools import lru_cache
from types import MappingProxyType
from typing import Any, Literal, NamedTuple
from zoneinfo import ZoneInfo

from reminders.core.dates import resolve_wall_time
from reminders.core.dose_schedule import (
    ONE_DAY,
    DoseStatus,
    Schedule,
    Slot,
    build_schedule,
    option_value,
)
from reminders.core.regimens import NO_RISK, Regimen, RiskDay, RiskWindow

__all__ = [
    "DoseOutcome",
    "EventKind",
    "Hold",
    "PlanSpec",
    "PlannedDose",
    "PlannedEvent",
    "ProphylaxisSpec",
    "RiskWindow",
    "day_of_treatment",
    "is_in_cmv_window",
    "last_dose_given",
    "plan_doses",
    "plan_events",
    "prophylaxis_events",
    "risk_window_spans",
    "risk_windows_on",
    "treatment_days_received",
    "treatment_end",
]


@lru_cache(maxsize=256)
def _zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (KeyError, ValueError) as exc:  # ZoneInfoNotFoundError is a KeyError
        raise ValueError(f"unknown time zone {name!r}") from exc


def _naive_time(value: time, what: str) -> None:
    if value.tzinfo is not None:
        raise ValueError(f"{what} must be a local wall-clock time without tzinfo")


# --------------------------------------------------------------------------- inputs
@dataclass(frozen=True)
class Hold:
    """A care-team hold from ``start``; ``resume`` None means open (no restart date yet)."""

    start: date
    resume: date | None
    reason: str

    def __post_init__(self) -> None:
        if self.resume is not None and self.resume < self.start:
            raise ValueError(f"hold resume {self.resume} is before its start {self.start}")


@dataclass(frozen=True)
class DoseOutcome:
    """What happened to a dose: given or missed, on which local date, and the mg given."""

    status: Literal["given", "missed"]
    on: date
    dose_mg: float | None = None

    def __post_init__(self) -> None:
        if self.status not in ("given", "missed"):
            raise ValueError(
                f"dose outcome status must be 'given' or 'missed', got {self.status!r}"
            )


@dataclass(frozen=True)
class PlanSpec:
    """One patient's plan: a regimen, a start date and zone, and the care team's choices.

    ``options`` are checked against the regimen's declared options (``ValueError``
    naming the option); ``outcomes`` are keyed by 1-based dose index.
    ``prophylaxis_ongoing``: a prophylaxis course of the patient is not stopped, so
    check-ins go on past the after-treatment taper (issue 11, item 7). The dose
    schedule is computed once, on construction, and reused by every function here.
    """

    regimen: Regimen = field(repr=False)
    start_date: date
    timezone: str
    options: Mapping[str, Any] = field(default_factory=dict)
    dose_time: time = time(9, 0)
    checkin_time: time = time(18, 0)
    holds: tuple[Hold, ...] = ()
    outcomes: Mapping[int, DoseOutcome] = field(default_factory=dict)
    extension_weeks: int = 0
    stopped_on: date | None = None
    prophylaxis_ongoing: bool = False
    resolved_options: Mapping[str, Any] = field(init=False, repr=False, compare=False)
    _schedule: Schedule = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        _zone(self.timezone)
        _naive_time(self.dose_time, "dose_time")
        _naive_time(self.checkin_time, "checkin_time")
        # Freeze the mappings so the cached schedule cannot go stale.
        object.__setattr__(self, "options", MappingProxyType(dict(self.options)))
        object.__setattr__(self, "outcomes", MappingProxyType(dict(self.outcomes)))
        object.__setattr__(self, "holds", tuple(self.holds))
        object.__setattr__(self, "resolved_options", self.regimen.resolved_options(self.options))
        ext = self.regimen.extension
        if isinstance(self.extension_weeks, bool) or not isinstance(self.extension_weeks, int):
            raise ValueError("extension_weeks must be a whole number of weeks")
        if self.extension_weeks < 0:
            raise ValueError("extension_weeks must not be negative")
        if self.extension_weeks and ext is None:
            raise ValueError(f"regimen {self.regimen.id} cannot be extended")
        if ext is not None and self.extension_weeks > ext.max_extra_weeks:
            raise ValueError(
                f"extension_weeks {self.extension_weeks} is above the maximum of "
                f"{ext.max_extra_weeks} extra weeks ({ext.source})"
            )
        object.__setattr__(self, "_schedule", build_schedule(self))


@dataclass(frozen=True)
class ProphylaxisSpec:
    """A prophylaxis course as the care team entered it; it never ends by itself.

    ``weekdays`` None means every day (0 = Monday). Events run from ``start_date``
    until the day before ``stopped_on``.
    """

    course_id: int
    drug: str
    dose_text: str
    times: tuple[time, ...]
    weekdays: tuple[int, ...] | None
    start_date: date
    timezone: str
    stopped_on: date | None = None

    def __post_init__(self) -> None:
        _zone(self.timezone)
        if not self.times:
            raise ValueError("a prophylaxis course needs at least one time of day")
        for t in self.times:
            _naive_time(t, "prophylaxis time")
        if self.weekdays is not None and (
            not self.weekdays
            or len(set(self.weekdays)) != len(self.weekdays)
            or any(isinstance(w, bool) or w not in range(7) for w in self.weekdays)
        ):
            raise ValueError("prophylaxis weekdays must be distinct numbers 0 (Monday) to 6")


# --------------------------------------------------------------------------- outputs
@dataclass(frozen=True)
class PlannedDose:
    """One dose with its date after holds, extension, outcomes and early stop.

    ``in_hospital``/``observation_hours``: for a "first dose in hospital" regimen,
    the first dose that is not missed or cancelled (a missed first injection moves
    the hospital visit to the next one). ``given_mg`` is the amount recorded as given.
    """

    index: int
    phase: str
    date: date | None
    local: datetime | None
    at_utc: datetime | None
    amount: float | None  # None: the source gives no amount, the care team enters it
    unit: Literal["mg", "mg/m2"]
    route: str
    in_hospital: bool
    observation_hours: float | None
    status: DoseStatus
    source: str
    given_mg: float | None = None


class EventKind(StrEnum):
    """What an event reminds about."""

    DOSE = "dose"
    PREMEDICATION = "premedication"
    SUPPORTIVE = "supportive"
    PROPHYLAXIS = "prophylaxis"
    LAB = "lab"
    CHECKIN = "checkin"
    MILESTONE = "milestone"


@dataclass(frozen=True)
class PlannedEvent:
    """A reminder to send: stable ``key``, local and UTC time, a short plain title."""

    key: str
    kind: EventKind
    local: datetime
    at_utc: datetime
    title: str
    dose_index: int | None
    details: Mapping[str, Any]
    source: str


# --------------------------------------------------------------------------- time zones
# Cached: a pass resolves the same few wall times (09:00 on one day in one zone) for
# thousands of patients.
@lru_cache(maxsize=16_384)
def _localize(naive: datetime, tz: ZoneInfo) -> tuple[datetime, datetime]:
    """Local wall time -> (aware local, aware UTC), handling DST gaps and folds."""
    return resolve_wall_time(naive, tz)


@lru_cache(maxsize=256)
def _local_days(
    start_utc: datetime, end_utc: datetime, tz: ZoneInfo, early: timedelta = ONE_DAY
) -> tuple[date, ...]:
    """Local dates whose events may fall in [start, end).

    An event never fires after its own local day (a DST gap moves a time forward
    within the day) and at most ``early`` before the day begins (a premedication
    the evening before its dose), so the days run from the start's local date to
    the local date of ``end + early``.
    """
    if start_utc.tzinfo is None or end_utc.tzinfo is None:
        raise ValueError("start_utc and end_utc must be timezone-aware")
    if end_utc <= start_utc:
        return ()
    first = start_utc.astimezone(tz).date()
    last = (end_utc + early).astimezone(tz).date()
    return tuple(first + timedelta(days=k) for k in range((last - first).days + 1))


def _earliest_before_day(spec: PlanSpec) -> timedelta:
    """How long before its local day's midnight an event of ``spec`` can be (its premedication)."""
    premed = spec.regimen.premedication
    lead = timedelta(minutes=premed.minutes_before) if premed is not None else timedelta(0)
    # The premedication precedes the dose time, which may be just after midnight.
    return max(lead - (datetime.combine(date.min, spec.dose_time) - datetime.min), timedelta(0))


# --------------------------------------------------------------------------- public API
def plan_doses(spec: PlanSpec) -> list[PlannedDose]:
    """Every dose of the plan, in index order, with its date after holds, extension and stop."""
    tz = _zone(spec.timezone)
    route = spec.regimen.route
    out = []
    for s in spec._schedule.slots:
        local = at_utc = None
        if s.date is not None:
            local, at_utc = _localize(datetime.combine(s.date, spec.dose_time), tz)
        out.append(
            PlannedDose(
                index=s.index,
                phase=s.label,
                date=s.date,
                local=local,
                at_utc=at_utc,
                amount=s.amount,
                unit=s.unit,
                route=s.phase.route or route,
                in_hospital=s.in_hospital,
                observation_hours=s.observation_hours,
                status=s.status,
                source=s.source,
                given_mg=s.given_mg,
            )
        )
    return out


def plan_events(spec: PlanSpec, start_utc: datetime, end_utc: datetime) -> list[PlannedEvent]:
    """Every event with ``start_utc <= at_utc < end_utc``, sorted by time then key.

    Only the local days around the window are visited, so a 24-hour window costs
    the same on day 3 as on day 700.
    """
    tz = _zone(spec.timezone)
    events: list[PlannedEvent] = []
    for day in _local_days(start_utc, end_utc, tz, _earliest_before_day(spec)):
        for c in _events_on(spec, day):
            local, at_utc = _localize(c.naive, tz)
            if start_utc <= at_utc < end_utc:
                events.append(
                    PlannedEvent(
                        c.key, c.kind, local, at_utc, c.title, c.dose_index, c.details, c.source
                    )
                )
    events.sort(key=lambda e: (e.at_utc, e.key))
    return events


def prophylaxis_events(
    spec: ProphylaxisSpec, start_utc: datetime, end_utc: datetime
) -> list[PlannedEvent]:
    """Pill reminders of one course in [start, end); they continue until ``stopped_on``."""
    tz = _zone(spec.timezone)
    events = []
    # The same for every pill of the course: built once (a pass plans thousands of courses).
    title = f"Take your {spec.drug} ({spec.dose_text})"
    details = MappingProxyType(
        {"course_id": spec.course_id, "drug": spec.drug, "dose_text": spec.dose_text}
    )
    prefix = f"pill:{spec.course_id}:"
    for day, moment, local, at_utc in _pill_instants(spec.times, tz, start_utc, end_utc):
        if day < spec.start_date or (spec.stopped_on is not None and day >= spec.stopped_on):
            continue
        if spec.weekdays is not None and day.weekday() not in spec.weekdays:
            continue
        events.append(
            PlannedEvent(
                key=prefix + moment,
                kind=EventKind.PROPHYLAXIS,
                local=local,
                at_utc=at_utc,
                title=title,
                dose_index=None,
                details=details,
                source=_PILL_SOURCE,
            )
        )
    events.sort(key=lambda e: (e.at_utc, e.key))
    return events


_PILL_SOURCE = "care team (dose and times as entered)"


@lru_cache(maxsize=1_024)
def _pill_instants(
    times: tuple[time, ...], tz: ZoneInfo, start_utc: datetime, end_utc: datetime
) -> tuple[tuple[date, str, datetime, datetime], ...]:
    """(local date, "2026-12-03T09:00", local, UTC) of each pill time in [start, end).

    Cached: thousands of courses share their times and zone.
    """
    out = []
    # A pill is taken at its time on its own day: never before the day begins.
    for day in _local_days(start_utc, end_utc, tz, timedelta(0)):
        iso = day.isoformat()
        for t in times:
            local, at_utc = _localize(datetime.combine(day, t), tz)
            if start_utc <= at_utc < end_utc:
                out.append((day, f"{iso}T{t.hour:02d}:{t.minute:02d}", local, at_utc))
    return tuple(out)


def last_dose_given(spec: PlanSpec) -> date | None:
    """Date of the last dose recorded as given, or None."""
    return max(
        (s.date for s in spec._schedule.slots if s.status == "given" and s.date), default=None
    )


def treatment_end(spec: PlanSpec) -> date | None:
    """Date of the last scheduled or given dose; None if there is none or doses are on an open hold."""
    return spec._schedule.treatment_end


def day_of_treatment(spec: PlanSpec, d: date) -> int:
    """Treatment day number of ``d``: 1 on the start date, 0 the day before."""
    return (d - spec.start_date).days + 1


def treatment_days_received(spec: PlanSpec, d: date) -> int | None:
    """Day number of ``d`` in the risk windows' count: days of treatment received.

    1 on the first dose given (or planned, before any is recorded; a missed dose does
    not count), then one more per day not on hold: a day on hold keeps the number of
    the last day before it. None when no dose is given or dated (an open hold before
    the first dose). Below 1 before the first dose.
    """
    return spec._schedule.days_received(d)


def risk_windows_on(spec: PlanSpec, d: date) -> list[RiskWindow]:
    """The regimen's risk windows containing ``d``, counted in days of treatment received.

    A hold moves them; a window with ``through_last_dose_plus_days`` also runs to that
    many days after the last dose of treatment.
    """
    return list(_risk_on(spec, d).windows)


def is_in_cmv_window(spec: PlanSpec, d: date) -> bool:
    """Whether ``d`` falls in a CMV reactivation window of the regimen."""
    return any(w.kind == "cmv" for w in _risk_on(spec, d).windows)


def risk_window_spans(spec: PlanSpec) -> list[tuple[RiskWindow, date, date | None]]:
    """Each risk window of the plan as dates: (window, first day, last day or None).

    The same windows as :func:`risk_windows_on` (what the care team sees is what the
    planner uses). ``None``: the window is open on an open hold and has no end yet.
    Windows the plan never reaches (an early stop) are left out.
    """
    sched = spec._schedule
    anchor = sched.risk_anchor
    if anchor is None:
        return []
    regimen = spec.regimen
    open_hold = next((start for start, resume in sched.held if resume is None), None)
    closed = sum(((r - s_).days for s_, r in sched.held if r is not None), 0)
    bound = anchor + timedelta(days=max(w.last_day for w in regimen.risk_windows) + closed)
    end = sched.treatment_end
    tails = [w.through_last_dose_plus_days or 0 for w in regimen.windows_to_last_dose]
    if end is not None and tails:
        bound = max(bound, end + timedelta(days=max(tails)))
    if open_hold is not None:
        bound = max(anchor, open_hold)  # from there on every day is the same as this one
    spans: dict[str, list[Any]] = {}
    day = anchor
    while day <= bound:
        for w in _risk_on(spec, day).windows:
            span = spans.setdefault(w.id, [w, day, day])
            span[2] = day
        day += ONE_DAY
    if open_hold is not None:
        for w in _risk_on(spec, bound).windows:
            spans[w.id][2] = None
    return [
        (w, first, last)
        for w, first, last in (spans[x.id] for x in regimen.risk_windows if x.id in spans)
    ]


def _risk_on(spec: PlanSpec, d: date) -> RiskDay:
    """The risk windows of ``d`` and whether one of them asks for a check-in that day."""
    n = spec._schedule.days_received(d)
    if n is None or n < 1:
        return NO_RISK
    regimen = spec.regimen
    risk = regimen.risk_day(n)
    end = spec._schedule.treatment_end
    tails = regimen.windows_to_last_dose
    if not tails or end is None:
        return risk
    extra = [
        w
        for w in tails
        if w.id not in risk.ids
        and n >= w.first_day
        and (d - end).days <= (w.through_last_dose_plus_days or 0)
    ]
    if not extra:
        return risk
    ids = set(risk.ids) | {w.id for w in extra}
    windows = tuple(w for w in regimen.risk_windows if w.id in ids)
    return RiskDay(
        windows,
        tuple(w.id for w in windows),
        risk.checkin_due or any((n - w.first_day) % w.checkin_every_days == 0 for w in extra),
    )


# --------------------------------------------------------------------------- events of a day
class _Candidate(NamedTuple):
    """An event before its local time is resolved and checked against the window."""

    naive: datetime  # local wall time
    key: str
    kind: EventKind
    title: str
    source: str
    details: dict[str, Any]
    dose_index: int | None = None


_FORMS = {"sc": "injection", "iv": "infusion", "oral": "dose"}


def _events_on(spec: PlanSpec, day: date) -> list[_Candidate]:
    """Candidate events of one local day (filtered to the UTC window by the caller)."""
    sched = spec._schedule
    regimen = spec.regimen
    n = day_of_treatment(spec, day)
    at = datetime.combine(day, spec.dose_time)
    out: list[_Candidate] = []
    for slot in sched.doses_on.get(day, ()):
        out.extend(_dose_events(spec, slot, n, at))
    if spec.stopped_on is None or day < spec.stopped_on:
        out.extend(_supportive_events(spec, day, n, at))
        week = _lab_week(sched, day)
        for lab in regimen.labs if week else ():
            if (week - 1) % lab.every_weeks == 0:
                details = {"lab": lab.id, "name": lab.name, "week": week}
                key = f"lab:{lab.id}:{day.isoformat()}"
                out.append(_Candidate(at, key, EventKind.LAB, lab.title, lab.source, details))
    for m, on in sched.milestones:
        if on == day:
            details = {
                "milestone": m.id,
                "name": m.name,
                "day": n,
                # A decision for the care team: the patient gets a neutral note (message_rules).
                "decision": m.decision is not None,
                "decision_text": m.decision.text if m.decision is not None else None,
            }
            key = f"milestone:{m.id}"
            out.append(_Candidate(at, key, EventKind.MILESTONE, m.title, m.source, details))
    reasons, windows = _checkin_reasons(spec, day, n)
    if reasons:
        details = {
            "day": n,
            "reasons": reasons,
            "risk_windows": windows,
            "extra_symptoms": list(regimen.extra_symptoms),
        }
        out.append(
            _Candidate(
                datetime.combine(day, spec.checkin_time),
                f"checkin:{day.isoformat()}",
                EventKind.CHECKIN,
                "Check-in: how are you today?",
                regimen.checkins.source,
                details,
            )
        )
    return out


def _dose_events(spec: PlanSpec, slot: Slot, n: int, at: datetime) -> list[_Candidate]:
    """The dose reminder and, where the regimen has one, the premedication reminder."""
    regimen = spec.regimen
    route = slot.phase.route or regimen.route
    form = _FORMS[route]
    title = f"{regimen.drug.capitalize()} {form} today"
    if slot.in_hospital:
        title += " at the hospital"
    if slot.observation_hours:
        title += f" (stay {slot.observation_hours:g} hours after)"
    if slot.amount is None:
        amount_text = "dose set by your care team"
    elif slot.unit == "mg/m2":
        amount_text = f"{slot.amount:g} mg/m2 (the dose in mg is confirmed by your care team)"
    else:
        amount_text = f"{slot.amount:g} mg"
    details = {
        "index": slot.index,
        "phase": slot.label,
        "amount": slot.amount,
        "unit": slot.unit,
        "amount_text": amount_text,
        "route": route,
        "in_hospital": slot.in_hospital,
        "observation_hours": slot.observation_hours,
        "note": slot.phase.note,
    }
    key = f"dose:{slot.index}"
    out = [_Candidate(at, key, EventKind.DOSE, title, slot.source, details, slot.index)]
    premed = regimen.premedication
    if premed is not None:
        items = [i for i in premed.items if i.within_first_days is None or n <= i.within_first_days]
        if items:
            by_team = premed.given_by_team(slot.in_hospital)
            source = "; ".join(
                [i.source for i in items] + [premed.timing_source, premed.given_by_source]
            )
            title = f"Premedication before today's {form}"
            if by_team:
                title += ", given by the team at the hospital"
            out.append(
                _Candidate(
                    at - timedelta(minutes=premed.minutes_before),  # wall-clock arithmetic
                    f"premed:{slot.index}",
                    EventKind.PREMEDICATION,
                    title,
                    source,
                    {
                        "items": [i.text for i in items],
                        "minutes_before": premed.minutes_before,
                        "given_by": "care_team" if by_team else "patient",
                    },
                    slot.index,
                )
            )
    return out


def _supportive_events(spec: PlanSpec, day: date, n: int, at: datetime) -> list[_Candidate]:
    out: list[_Candidate] = []
    for item in spec.regimen.supportive:
        last = option_value(spec, item.to_day)
        if n < item.from_day or (last is not None and n > last):
            continue
        if item.pause_during_holds and spec._schedule.in_hold(day):
            continue
        details = {"drug": item.drug, "dose_text": item.dose_text or "as prescribed", "day": n}
        key = f"supportive:{item.id}:{day.isoformat()}"
        out.append(_Candidate(at, key, EventKind.SUPPORTIVE, item.title, item.source, details))
    return out


def _lab_week(sched: Schedule, day: date) -> int | None:
    """Week number of a lab day (weekly from the first planned dose while treatment runs)."""
    first = sched.first_planned
    if first is None or day < first or (day - first).days % 7:
        return None
    if not sched.ongoing and (sched.treatment_end is None or day > sched.treatment_end):
        return None
    return (day - first).days // 7 + 1


def _checkin_reasons(spec: PlanSpec, day: date, n: int) -> tuple[list[str], list[str]]:
    """Why a check-in is due on ``day`` (empty: none), and the risk windows it falls in."""
    if n < 1:
        return [], []
    sched = spec._schedule
    policy = spec.regimen.checkins
    end = sched.period_end
    risk = _risk_on(spec, day)
    reasons = []
    if risk.checkin_due:
        reasons.append("risk_window")
    if end is None or day <= end:
        if policy.on_dose_days and day in sched.dose_days:
            reasons.append("dose_day")
        if (n - 1) % policy.every_days == 0:
            reasons.append("treatment")
    else:
        after = (day - end).days
        step = policy.after_treatment_step(after)
        if step is not None:
            if step.due(after):
                reasons.append("after_treatment")
        elif spec.prophylaxis_ongoing and policy.after_treatment[-1].due(after):
            # Past the taper: the last step's cadence while a prophylaxis course runs.
            reasons.append("prophylaxis_ongoing")
    return reasons, list(risk.ids)
