"""The planner: from a regimen and a patient's plan to dated doses and reminder events.

Pure functions over frozen dataclasses; no clock is read (callers pass the window).

Conventions
-----------
* Day 1 is ``PlanSpec.start_date``; day 0 the day before; week *n* is days
  ``7(n-1)+1 .. 7n``. Risk windows, supportive medicines and lab weeks are counted
  from the start date and do **not** move with holds (CMV reactivation is timed from
  the start of therapy: median 34 days, 002). Day-anchored milestones (week-4
  review, week-12 marrow) *do* move by the length of closed holds before them,
  because they measure weeks of treatment received.
* Times are local wall-clock times in the patient's IANA zone: a 09:00 reminder is
  09:00 local on both sides of a DST change. A local time that does not exist
  (spring-forward gap) moves forward to the first valid instant (the transition);
  an ambiguous one (fall-back) takes the first occurrence (``fold=0``).
* Event keys are stable: ``dose:7``, ``premed:7``, ``supportive:allopurinol:2026-12-03``,
  ``lab:cmv_pcr:2026-12-03``, ``checkin:2026-12-03``, ``milestone:week4_review``,
  ``pill:12:2026-12-03T09:00``. Dose indices are fixed by the regimen, options and
  extension; holds and outcomes change dates and statuses, never indices.

Holds: doses not yet given/missed dated on/after ``hold.start`` are postponed. With a
resume date, weekday-pattern doses (alemtuzumab) are re-laid on the next allowed
weekdays on/after the resume date; other doses are shifted so that the first
postponed dose falls on the resume date, keeping the spacing between later doses.
A hold never brings a dose forward. An open hold (no resume date) leaves the
remaining doses ``on_hold`` with no date. Holds are applied in order of start date.

Event choices (the sources give no timing; these are software choices):
* premedication: ``premedication.minutes_before`` (60) before the dose time;
* supportive medicines, lab tests and milestones: at the dose time of their day;
  supportive medicines marked ``pause_during_holds`` (lenalidomide) pause during holds;
* weekly lab tests fall on the weekday of the first planned dose, from that dose
  while treatment runs, including during holds (monitoring matters most then);
* check-ins at ``checkin_time``: daily inside risk windows, every ``every_days``
  days during treatment (and on dose days where the regimen asks), every
  ``after_last_dose_every_days`` days for ``after_last_dose_weeks`` weeks after the
  last dose; they continue through holds (the patient is still immunosuppressed);
* after ``stopped_on`` no dose, premedication, supportive or lab events; check-ins
  follow the after-treatment cadence; prophylaxis is separate and continues.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from enum import StrEnum
from types import MappingProxyType
from typing import Any, Literal
from zoneinfo import ZoneInfo

from reminders.core.dates import add_months
from reminders.core.regimens import (
    CyclesPhase,
    DailyPhase,
    IntervalPhase,
    Milestone,
    OptionRef,
    Regimen,
    RiskWindow,
    WeekdaysPhase,
)

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
    "risk_windows_on",
    "treatment_end",
]

ONE_DAY = timedelta(days=1)
DoseStatus = Literal["scheduled", "given", "missed", "on_hold", "cancelled"]


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
    naming the option); ``outcomes`` are keyed by 1-based dose index. The dose
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
    resolved_options: Mapping[str, Any] = field(init=False, repr=False, compare=False)
    _schedule: _Schedule = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        _zone(self.timezone)
        _naive_time(self.dose_time, "dose_time")
        _naive_time(self.checkin_time, "checkin_time")
        # Freeze the mappings so the cached schedule cannot go stale.
        object.__setattr__(self, "options", MappingProxyType(dict(self.options)))
        object.__setattr__(self, "outcomes", MappingProxyType(dict(self.outcomes)))
        object.__setattr__(self, "holds", tuple(self.holds))
        object.__setattr__(self, "resolved_options", self.regimen.resolve_options(self.options))
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
        object.__setattr__(self, "_schedule", _build_schedule(self))


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
    """One dose with its date after holds, extension, outcomes and early stop."""

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


# --------------------------------------------------------------------------- schedule
@dataclass(slots=True)
class _Slot:
    index: int
    phase: Any  # the regimen phase model
    label: str  # phase id, or "extension"
    date: date | None
    status: DoseStatus
    amount: float | None
    unit: Literal["mg", "mg/m2"]
    source: str
    given_mg: float | None = None
    in_hospital: bool = False
    observation_hours: float | None = None


@dataclass(frozen=True, slots=True)
class _Schedule:
    slots: tuple[_Slot, ...]
    doses_on: Mapping[date, tuple[_Slot, ...]]  # scheduled doses by date
    dose_days: frozenset[date]  # scheduled or given: for "check in on dose days"
    first_planned: date | None  # weekday anchor for weekly labs
    treatment_end: date | None
    ongoing: bool  # open hold or open-ended supportive medicine, not stopped
    period_end: date | None  # last day of treatment for check-ins (None while ongoing)
    milestones: tuple[tuple[Milestone, date], ...]
    hold_spans: tuple[tuple[date, date | None], ...]


def _value(spec: PlanSpec, value: Any) -> Any:
    return spec.resolved_options[value.option] if isinstance(value, OptionRef) else value


def _weekdays(spec: PlanSpec, phase: WeekdaysPhase) -> tuple[int, ...]:
    value = _value(spec, phase.weekdays)
    if isinstance(phase.weekdays, OptionRef):
        return value
    return tuple(sorted(("mon", "tue", "wed", "thu", "fri", "sat", "sun").index(d) for d in value))


def _next_weekdays(after_or_on: date, weekdays: tuple[int, ...], count: int) -> list[date]:
    out: list[date] = []
    day = after_or_on
    while len(out) < count:
        if day.weekday() in weekdays:
            out.append(day)
        day += ONE_DAY
    return out


def _nominal(spec: PlanSpec) -> list[_Slot]:
    """Every dose before holds and outcomes, in order; indices are 1-based."""
    doses: list[tuple[Any, str, date, float | None, str]] = []
    previous: date | None = None
    for phase in spec.regimen.phases:
        if phase.enabled_by is not None and not spec.resolved_options[phase.enabled_by]:
            continue
        begin = spec.start_date if previous is None else previous + ONE_DAY
        if isinstance(phase, DailyPhase):
            for k, amount in enumerate(phase.amounts):
                doses.append((phase, phase.id, begin + timedelta(days=k), amount, phase.source))
        elif isinstance(phase, WeekdaysPhase):
            days = _weekdays(spec, phase)
            extra = spec.extension_weeks * len(days) if phase.extendable else 0
            for k, day in enumerate(_next_weekdays(begin, days, phase.count + extra)):
                label = phase.id if k < phase.count else "extension"
                doses.append((phase, label, day, phase.amount, phase.source))
        elif isinstance(phase, IntervalPhase):
            doses.extend(_interval_doses(spec, phase, previous))
        elif isinstance(phase, CyclesPhase):
            doses.extend(_cycle_doses(spec, phase))
        previous = doses[-1][2] if doses else previous
    return [
        _Slot(i, phase, label, day, "scheduled", amount, phase.unit, source)
        for i, (phase, label, day, amount, source) in enumerate(doses, start=1)
    ]


def _interval_doses(spec: PlanSpec, phase: IntervalPhase, previous: date | None) -> list[tuple]:
    if previous is None:
        first = spec.start_date
    elif phase.start_after_previous_months:
        first = add_months(previous, phase.start_after_previous_months)
    else:
        first = previous + timedelta(days=phase.start_after_previous_days or 1)
    if phase.every_days is not None:
        dates = [first + timedelta(days=k * phase.every_days) for k in range(phase.count or 0)]
    else:
        months = _value(spec, phase.every_months)
        count = phase.count or math.ceil((phase.span_months or 0) / months)
        # Anchored on the first dose (not chained) so that 31 Jan + 1 month does not drift.
        dates = [add_months(first, k * months) for k in range(count)]
    return [(phase, phase.id, d, phase.amount, phase.source) for d in dates]


def _cycle_doses(spec: PlanSpec, phase: CyclesPhase) -> list[tuple]:
    length = _value(spec, phase.cycle_length_days)
    out = []
    for cycle in range(1, _value(spec, phase.cycles) + 1):
        cycle_start = spec.start_date + timedelta(days=(cycle - 1) * length - phase.day_origin)
        for rule in phase.doses:
            if not rule.applies_to(cycle):
                continue
            for day in rule.days:
                if not phase.day_origin <= day < length + phase.day_origin:
                    raise ValueError(
                        f"phase {phase.id}: day {day} does not fit a {length}-day cycle"
                    )
                amount = _value(spec, rule.amount)
                out.append(
                    (phase, phase.id, cycle_start + timedelta(days=day), amount, rule.source)
                )
    out.sort(key=lambda item: item[2])  # stable: rule order within a day
    if len({item[2] for item in out}) != len(out):
        raise ValueError(f"phase {phase.id}: two doses fall on the same day")
    return out


def _apply_hold(spec: PlanSpec, slots: list[_Slot], hold: Hold) -> None:
    affected = [
        s for s in slots if s.status == "scheduled" and s.date is not None and s.date >= hold.start
    ]
    if not affected:
        return
    if hold.resume is None:
        for s in affected:
            s.date, s.status = None, "on_hold"
        return
    occupied = {s.date for s in slots if s.date is not None and s not in affected}
    originals = [s.date for s in affected]
    # Never bring a dose forward: lay out from the resume date or the first dose's date.
    floor = max(hold.resume, originals[0])
    previous_new: date | None = None
    for k, s in enumerate(affected):
        if isinstance(s.phase, WeekdaysPhase):
            day = floor if previous_new is None else max(floor, previous_new + ONE_DAY)
            allowed = _weekdays(spec, s.phase)
            while day.weekday() not in allowed or day in occupied:
                day += ONE_DAY
        else:
            day = (
                floor if previous_new is None else previous_new + (originals[k] - originals[k - 1])
            )
            while day in occupied:
                day += ONE_DAY
        s.date = previous_new = day


def _build_schedule(spec: PlanSpec) -> _Schedule:
    slots = _nominal(spec)
    first_planned = slots[0].date if slots else None
    for index, outcome in spec.outcomes.items():
        if not isinstance(index, int) or not 1 <= index <= len(slots):
            raise ValueError(f"outcome for dose {index!r}: the plan has doses 1 to {len(slots)}")
        slot = slots[index - 1]
        slot.status, slot.date = outcome.status, outcome.on
        slot.given_mg = outcome.dose_mg if outcome.status == "given" else None
    holds = sorted(spec.holds, key=lambda h: h.start)
    for hold in holds:
        _apply_hold(spec, slots, hold)
    stop = spec.stopped_on
    if stop is not None:
        for s in slots:
            if s.status in ("scheduled", "on_hold") and (s.date is None or s.date >= stop):
                s.status = "cancelled"
    _mark_hospital(spec.regimen, slots)

    live = [s for s in slots if s.status in ("scheduled", "given")]
    on_hold = any(s.status == "on_hold" for s in slots)
    end = max((s.date for s in live if s.date is not None), default=None)
    open_supportive = any(item.to_day is None for item in spec.regimen.supportive)
    ongoing = stop is None and (on_hold or open_supportive)
    period_end = None
    if not ongoing:
        fallback = [s.date for s in slots if s.date is not None and s.status == "missed"]
        period_end = end or max(fallback, default=None) or stop or spec.start_date
        if stop is not None and open_supportive:
            # An open-ended supportive medicine (lenalidomide) ran until the stop.
            period_end = max(period_end, stop - ONE_DAY)
    doses_on: dict[date, list[_Slot]] = {}
    for s in slots:
        if s.status == "scheduled" and s.date is not None:
            doses_on.setdefault(s.date, []).append(s)
    return _Schedule(
        slots=tuple(slots),
        doses_on=MappingProxyType({d: tuple(v) for d, v in doses_on.items()}),
        dose_days=frozenset(s.date for s in live if s.date is not None),
        first_planned=first_planned,
        treatment_end=None if on_hold else end,
        ongoing=ongoing,
        period_end=period_end,
        milestones=tuple(_milestones(spec, holds, None if on_hold else end)),
        hold_spans=tuple((h.start, h.resume) for h in holds),
    )


def _mark_hospital(regimen: Regimen, slots: list[_Slot]) -> None:
    admin = regimen.administration
    # The first dose actually given (or still to give) is the one in hospital.
    first = next((s for s in slots if s.status not in ("missed", "cancelled")), None)
    for s in slots:
        s.in_hospital = admin.in_hospital == "all" or s is first
        if s is first:
            s.observation_hours = admin.first_dose_observation_hours


def _milestones(
    spec: PlanSpec, holds: list[Hold], end: date | None
) -> list[tuple[Milestone, date]]:
    out = []
    for m in spec.regimen.milestones:
        if m.after_last_dose_months is not None:
            if end is not None:
                out.append((m, add_months(end, m.after_last_dose_months)))
            continue
        day: date | None = spec.start_date + timedelta(days=m.day - 1)  # type: ignore[operator]
        for hold in holds:  # weeks of treatment received: move by earlier closed holds
            if day is not None and hold.start <= day:
                day = None if hold.resume is None else day + (hold.resume - hold.start)
        if day is not None and (spec.stopped_on is None or day < spec.stopped_on):
            out.append((m, day))
    return out


# --------------------------------------------------------------------------- time zones
def _localize(naive: datetime, tz: ZoneInfo) -> tuple[datetime, datetime]:
    """Local wall time -> (aware local, aware UTC), handling DST gaps and folds."""
    local = naive.replace(tzinfo=tz)  # fold=0: the first of two ambiguous instants
    utc = local.astimezone(UTC)
    if utc.astimezone(tz).replace(tzinfo=None) == naive:
        return local, utc
    # Spring-forward gap: find the transition, the first valid instant after the gap.
    lo = int(naive.replace(tzinfo=tz, fold=1).astimezone(UTC).timestamp())
    hi = int(utc.timestamp())
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if datetime.fromtimestamp(mid, tz).replace(tzinfo=None) >= naive:
            hi = mid
        else:
            lo = mid
    utc = datetime.fromtimestamp(hi, UTC)
    return utc.astimezone(tz), utc


def _local_days(start_utc: datetime, end_utc: datetime, tz: ZoneInfo) -> list[date]:
    """Local dates that may hold an event in [start, end), with a day of margin each side."""
    if start_utc.tzinfo is None or end_utc.tzinfo is None:
        raise ValueError("start_utc and end_utc must be timezone-aware")
    if end_utc <= start_utc:
        return []
    first = start_utc.astimezone(tz).date() - ONE_DAY
    last = end_utc.astimezone(tz).date() + ONE_DAY
    return [first + timedelta(days=k) for k in range((last - first).days + 1)]


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
    for day in _local_days(start_utc, end_utc, tz):
        for candidate in _events_on(spec, day):
            naive, key, kind, title, dose_index, details, source = candidate
            local, at_utc = _localize(naive, tz)
            if start_utc <= at_utc < end_utc:
                events.append(
                    PlannedEvent(key, kind, local, at_utc, title, dose_index, details, source)
                )
    events.sort(key=lambda e: (e.at_utc, e.key))
    return events


def prophylaxis_events(
    spec: ProphylaxisSpec, start_utc: datetime, end_utc: datetime
) -> list[PlannedEvent]:
    """Pill reminders of one course in [start, end); they continue until ``stopped_on``."""
    tz = _zone(spec.timezone)
    events = []
    for day in _local_days(start_utc, end_utc, tz):
        if day < spec.start_date or (spec.stopped_on is not None and day >= spec.stopped_on):
            continue
        if spec.weekdays is not None and day.weekday() not in spec.weekdays:
            continue
        for t in spec.times:
            local, at_utc = _localize(datetime.combine(day, t), tz)
            if start_utc <= at_utc < end_utc:
                key = f"pill:{spec.course_id}:{day.isoformat()}T{t.hour:02d}:{t.minute:02d}"
                details = {
                    "course_id": spec.course_id,
                    "drug": spec.drug,
                    "dose_text": spec.dose_text,
                }
                title = f"Take your {spec.drug} ({spec.dose_text})"
                events.append(
                    PlannedEvent(
                        key, EventKind.PROPHYLAXIS, local, at_utc, title, None, details, "care team"
                    )
                )
    events.sort(key=lambda e: (e.at_utc, e.key))
    return events


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


def risk_windows_on(spec: PlanSpec, d: date) -> list[RiskWindow]:
    """The regimen's risk windows containing ``d`` (counted from the start date)."""
    return spec.regimen.risk_windows_on_day(day_of_treatment(spec, d))


def is_in_cmv_window(spec: PlanSpec, d: date) -> bool:
    """Whether ``d`` falls in a CMV reactivation window of the regimen."""
    return any(w.kind == "cmv" for w in risk_windows_on(spec, d))


# --------------------------------------------------------------------------- events of a day
_Candidate = tuple[datetime, str, EventKind, str, int | None, dict[str, Any], str]
_FORMS = {"sc": "injection", "iv": "infusion", "oral": "dose"}


def _events_on(spec: PlanSpec, day: date) -> list[_Candidate]:
    """Candidate events of one local day (filtered to the UTC window by the caller)."""
    sched = spec._schedule
    regimen = spec.regimen
    n = day_of_treatment(spec, day)
    stopped = spec.stopped_on is not None and day >= spec.stopped_on
    at_dose_time = datetime.combine(day, spec.dose_time)
    out: list[_Candidate] = []
    for s in sched.doses_on.get(day, ()):
        out.extend(_dose_events(spec, s, n, at_dose_time))
    if not stopped:
        out.extend(_supportive_events(spec, day, n, at_dose_time))
        lab_week = _lab_week(spec, day)
        for lab in regimen.labs if lab_week else ():
            if (lab_week - 1) % lab.every_weeks == 0:
                details = {"lab": lab.id, "name": lab.name, "week": lab_week}
                out.append(
                    (
                        at_dose_time,
                        f"lab:{lab.id}:{day.isoformat()}",
                        EventKind.LAB,
                        lab.title,
                        None,
                        details,
                        lab.source,
                    )
                )
    for milestone, on in sched.milestones:
        if on == day:
            details = {"milestone": milestone.id, "name": milestone.name, "day": n}
            out.append(
                (
                    at_dose_time,
                    f"milestone:{milestone.id}",
                    EventKind.MILESTONE,
                    milestone.title,
                    None,
                    details,
                    milestone.source,
                )
            )
    reasons, windows = _checkin_reasons(spec, day, n)
    if reasons:
        details = {
            "day": n,
            "reasons": reasons,
            "risk_windows": windows,
            "extra_symptoms": list(regimen.extra_symptoms),
        }
        naive = datetime.combine(day, spec.checkin_time)
        out.append(
            (
                naive,
                f"checkin:{day.isoformat()}",
                EventKind.CHECKIN,
                "Check-in: how are you today?",
                None,
                details,
                regimen.checkins.source,
            )
        )
    return out


def _dose_events(spec: PlanSpec, s: _Slot, n: int, at: datetime) -> list[_Candidate]:
    regimen = spec.regimen
    route = s.phase.route or regimen.route
    form = _FORMS[route]
    title = f"{regimen.drug.capitalize()} {form} today"
    if s.in_hospital:
        title += " at the hospital"
    if s.observation_hours:
        title += f" (stay {s.observation_hours:g} hours after)"
    if s.amount is None:
        amount_text = "dose set by your care team"
    elif s.unit == "mg/m2":
        amount_text = f"{s.amount:g} mg/m2 (the dose in mg is confirmed by your care team)"
    else:
        amount_text = f"{s.amount:g} mg"
    details = {
        "index": s.index,
        "phase": s.label,
        "amount": s.amount,
        "unit": s.unit,
        "amount_text": amount_text,
        "route": route,
        "in_hospital": s.in_hospital,
        "observation_hours": s.observation_hours,
        "note": s.phase.note,
    }
    out: list[_Candidate] = [
        (at, f"dose:{s.index}", EventKind.DOSE, title, s.index, details, s.source)
    ]
    premed = regimen.premedication
    if premed is not None:
        items = [i for i in premed.items if i.within_first_days is None or n <= i.within_first_days]
        if items:
            naive = at - timedelta(minutes=premed.minutes_before)
            pdetails = {"items": [i.text for i in items], "minutes_before": premed.minutes_before}
            source = "; ".join([i.source for i in items] + [premed.timing_source])
            ptitle = f"Premedication before today's {form}"
            out.append(
                (
                    naive,
                    f"premed:{s.index}",
                    EventKind.PREMEDICATION,
                    ptitle,
                    s.index,
                    pdetails,
                    source,
                )
            )
    return out


def _in_hold(spec: PlanSpec, day: date) -> bool:
    return any(
        start <= day and (resume is None or day < resume)
        for start, resume in spec._schedule.hold_spans
    )


def _supportive_events(spec: PlanSpec, day: date, n: int, at: datetime) -> list[_Candidate]:
    out: list[_Candidate] = []
    for item in spec.regimen.supportive:
        last = _value(spec, item.to_day)
        if n < item.from_day or (last is not None and n > last):
            continue
        if item.pause_during_holds and _in_hold(spec, day):
            continue
        details = {"drug": item.drug, "dose_text": item.dose_text or "as prescribed", "day": n}
        out.append(
            (
                at,
                f"supportive:{item.id}:{day.isoformat()}",
                EventKind.SUPPORTIVE,
                item.title,
                None,
                details,
                item.source,
            )
        )
    return out


def _lab_week(spec: PlanSpec, day: date) -> int | None:
    """Treatment week of a lab day (weekly from the first planned dose), or None."""
    sched = spec._schedule
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
    if end is not None and day > end + timedelta(weeks=policy.after_last_dose_weeks):
        return [], []
    windows = spec.regimen.risk_windows_on_day(n)
    reasons = []
    if any((n - w.first_day) % w.checkin_every_days == 0 for w in windows):
        reasons.append("risk_window")
    if end is None or day <= end:
        if policy.on_dose_days and day in sched.dose_days:
            reasons.append("dose_day")
        if (n - 1) % policy.every_days == 0:
            reasons.append("treatment")
    elif (day - end).days % policy.after_last_dose_every_days == 0:
        reasons.append("after_treatment")
    return reasons, [w.id for w in windows]
