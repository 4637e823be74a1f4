"""Dose dates of one plan: the planner's helper (use :mod:`reminders.core.planner` instead).

Builds, once per :class:`~reminders.core.planner.PlanSpec`, every dose with its
date and status: the nominal dates from the regimen's phases (with options and
extension), then recorded outcomes, then holds in order of start date, then the
early stop. Also the dates that the event planner needs over and over (doses by
date, end of treatment, milestones), so that a 24-hour window costs little.
Hold and numbering rules are described in the planner's module docstring.
"""

from __future__ import annotations

import math
import threading
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, timedelta
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Literal

from reminders.core.dates import add_months
from reminders.core.regimens import (
    WEEKDAYS,
    CyclesPhase,
    DailyPhase,
    IntervalPhase,
    Milestone,
    OptionRef,
    Regimen,
    WeekdaysPhase,
)

if TYPE_CHECKING:
    from reminders.core.planner import Hold, PlanSpec

ONE_DAY = timedelta(days=1)
DoseStatus = Literal["scheduled", "given", "missed", "on_hold", "cancelled"]
AnyPhase = DailyPhase | WeekdaysPhase | IntervalPhase | CyclesPhase


@dataclass(slots=True)
class Slot:
    """One dose while the schedule is being built (mutable until frozen into ``Schedule``)."""

    index: int
    phase: AnyPhase
    label: str  # the phase id, or "extension"
    date: date | None
    status: DoseStatus
    amount: float | None
    unit: Literal["mg", "mg/m2"]
    source: str
    given_mg: float | None = None
    in_hospital: bool = False
    observation_hours: float | None = None


@dataclass(frozen=True, slots=True)
class Schedule:
    """The computed doses of a plan and the dates derived from them."""

    slots: tuple[Slot, ...]
    doses_on: Mapping[date, tuple[Slot, ...]]  # scheduled doses by date
    dose_days: frozenset[date]  # scheduled or given: for "check in on dose days"
    first_planned: date | None  # weekday anchor of weekly lab tests
    treatment_end: date | None  # last scheduled/given dose; None on an open hold
    ongoing: bool  # open hold or open-ended supportive medicine, not stopped
    period_end: date | None  # last day of treatment for check-ins (None while ongoing)
    milestones: tuple[tuple[Milestone, date], ...]
    hold_spans: tuple[tuple[date, date | None], ...]
    # First dose given, else first still to give (dated): day 1 of the risk windows.
    risk_anchor: date | None = None
    # The hold spans merged (no overlap), in order: the days not counted as treatment.
    held: tuple[tuple[date, date | None], ...] = ()

    def in_hold(self, day: date) -> bool:
        """Whether ``day`` falls in a hold (from its start, before its resume date)."""
        return any(s <= day and (r is None or day < r) for s, r in self.hold_spans)

    def days_received(self, day: date) -> int | None:
        """Days of treatment received on ``day``: 1 on the risk anchor, holds not counted.

        A day on hold keeps the number of the last day before the hold. None when no
        dose was given or is dated (an open hold before the first dose).
        """
        anchor = self.risk_anchor
        if anchor is None:
            return None
        n = (day - anchor).days + 1
        after = day + ONE_DAY
        for start, resume in self.held:
            lo = max(start, anchor)
            hi = after if resume is None else min(resume, after)
            if hi > lo:
                n -= (hi - lo).days
        return n


def option_value(spec: PlanSpec, value: Any) -> Any:
    """``value`` itself, or the plan's value of the option it refers to."""
    return spec.resolved_options[value.option] if isinstance(value, OptionRef) else value


def phase_weekdays(spec: PlanSpec, phase: WeekdaysPhase) -> tuple[int, ...]:
    """The allowed weekdays (0 = Monday) of a weekdays phase in this plan."""
    if isinstance(phase.weekdays, OptionRef):
        return spec.resolved_options[phase.weekdays.option]
    return tuple(sorted(WEEKDAYS.index(day) for day in phase.weekdays))


#: How many schedules :func:`build_schedule` remembers (a few MB; see bench/bench_memory.py).
SCHEDULE_CACHE_SIZE = 4_096
_schedules: OrderedDict[tuple[Any, ...], tuple[Regimen, Schedule]] = OrderedDict()
_schedules_lock = threading.Lock()


def schedule_key(spec: PlanSpec) -> tuple[Any, ...] | None:
    """Everything a schedule depends on, as a hashable key (None if a value is unhashable).

    Not the time zone nor the times of day: dose dates are local dates.
    """
    key = (
        id(spec.regimen),
        spec.start_date,
        tuple(sorted(spec.resolved_options.items())),
        spec.extension_weeks,
        spec.stopped_on,
        spec.holds,
        tuple(sorted(spec.outcomes.items())),
    )
    try:
        hash(key)
    except TypeError:
        return None
    return key


def build_schedule(spec: PlanSpec) -> Schedule:
    """Every dose of ``spec`` with date and status, and the derived dates.

    A pure function of :func:`schedule_key`, so recent results are reused: every
    planning pass builds the spec of every plan again, and patients who started
    the same regimen on the same day (with no hold or recorded dose yet) share
    one schedule, which is costly to build.
    A schedule is never changed once built, so sharing it is safe.
    """
    key = schedule_key(spec)
    if key is None:
        return _compute_schedule(spec)
    with _schedules_lock:
        hit = _schedules.get(key)
        # id() can be reused once a regimen is gone: the hit must be the same object.
        if hit is not None and hit[0] is spec.regimen:
            _schedules.move_to_end(key)
            return hit[1]
    schedule = _compute_schedule(spec)
    with _schedules_lock:
        _schedules[key] = (spec.regimen, schedule)
        if len(_schedules) > SCHEDULE_CACHE_SIZE:
            _schedules.popitem(last=False)
    return schedule


def _compute_schedule(spec: PlanSpec) -> Schedule:
    slots = _nominal(spec)
    first_planned = slots[0].date if slots else None
    for index in spec.outcomes:
        if isinstance(index, bool) or not isinstance(index, int) or not 1 <= index <= len(slots):
            raise ValueError(f"outcome for dose {index!r}: the plan has doses 1 to {len(slots)}")
    holds = sorted(spec.holds, key=lambda h: h.start)
    for hold in holds:
        _apply_hold(spec, slots, hold)
    # Outcomes last: recording a dose on the day the plan (holds included) gave it moves
    # no other dose. A dose recorded from a hold's resume date on is one it postponed.
    for index, outcome in spec.outcomes.items():
        slot = slots[index - 1]
        slot.status, slot.date = outcome.status, outcome.on
        slot.given_mg = outcome.dose_mg if outcome.status == "given" else None
    stop = spec.stopped_on
    if stop is not None:
        for s in slots:
            if s.status in ("scheduled", "on_hold") and (s.date is None or s.date >= stop):
                s.status = "cancelled"
    _mark_hospital(spec.regimen, slots)

    live = [s.date for s in slots if s.status in ("scheduled", "given") and s.date is not None]
    on_hold = any(s.status == "on_hold" for s in slots)
    end = max(live, default=None)
    open_supportive = any(item.to_day is None for item in spec.regimen.supportive)
    ongoing = stop is None and (on_hold or open_supportive)
    period_end = None
    if not ongoing:
        missed = [s.date for s in slots if s.status == "missed" and s.date is not None]
        period_end = end or max(missed, default=None) or stop or spec.start_date
        if stop is not None and open_supportive:
            # An open-ended supportive medicine (lenalidomide) ran until the stop.
            period_end = max(period_end, stop - ONE_DAY)
    doses_on: dict[date, list[Slot]] = {}
    for s in slots:
        if s.status == "scheduled" and s.date is not None:
            doses_on.setdefault(s.date, []).append(s)
    return Schedule(
        slots=tuple(slots),
        doses_on=MappingProxyType({day: tuple(v) for day, v in doses_on.items()}),
        dose_days=frozenset(live),
        first_planned=first_planned,
        treatment_end=None if on_hold else end,
        ongoing=ongoing,
        period_end=period_end,
        milestones=tuple(_milestones(spec, slots, holds, None if on_hold else end)),
        hold_spans=tuple((h.start, h.resume) for h in holds),
        risk_anchor=_risk_anchor(slots),
        held=_merged(holds),
    )


def _risk_anchor(slots: list[Slot]) -> date | None:
    """The first dose given or planned (not missed, cancelled or on an open hold).

    A planned dose whose day passed without a record counts as given: the windows
    start no later than they would have.
    """
    live = (s.date for s in slots if s.status in ("given", "scheduled") and s.date is not None)
    return min(live, default=None)


def _merged(holds: list[Hold]) -> tuple[tuple[date, date | None], ...]:
    """Hold spans [start, resume) merged where they overlap (holds sorted by start)."""
    out: list[tuple[date, date | None]] = []
    for hold in holds:
        if out and (out[-1][1] is None or hold.start <= out[-1][1]):
            start, end = out[-1]
            merged_end = None if end is None or hold.resume is None else max(end, hold.resume)
            out[-1] = (start, merged_end)
        else:
            out.append((hold.start, hold.resume))
    return tuple(out)


# --------------------------------------------------------------------------- nominal dates
_Nominal = tuple[AnyPhase, str, date, float | None, str]  # phase, label, date, amount, source


def _nominal(spec: PlanSpec) -> list[Slot]:
    """Every dose before outcomes and holds, in order; indices are 1-based."""
    doses: list[_Nominal] = []
    previous: date | None = None  # last dose of the previous phase
    for phase in spec.regimen.phases:
        if phase.enabled_by is not None and not spec.resolved_options[phase.enabled_by]:
            continue
        begin = spec.start_date if previous is None else previous + ONE_DAY
        if isinstance(phase, DailyPhase):
            for k, amount in enumerate(phase.amounts):
                doses.append((phase, phase.id, begin + timedelta(days=k), amount, phase.source))
        elif isinstance(phase, WeekdaysPhase):
            days = phase_weekdays(spec, phase)
            extra = spec.extension_weeks * len(days) if phase.extendable else 0
            for k, day in enumerate(_next_weekdays(begin, days, phase.count + extra)):
                label = phase.id if k < phase.count else "extension"
                doses.append((phase, label, day, phase.amount, phase.source))
        elif isinstance(phase, IntervalPhase):
            doses.extend(_interval_doses(spec, phase, previous))
        else:
            doses.extend(_cycle_doses(spec, phase))
        previous = doses[-1][2] if doses else previous
    return [
        Slot(i, phase, label, day, "scheduled", amount, phase.unit, source)
        for i, (phase, label, day, amount, source) in enumerate(doses, start=1)
    ]


def _next_weekdays(on_or_after: date, weekdays: tuple[int, ...], count: int) -> list[date]:
    out: list[date] = []
    day = on_or_after
    while len(out) < count:
        if day.weekday() in weekdays:
            out.append(day)
        day += ONE_DAY
    return out


def _interval_doses(spec: PlanSpec, phase: IntervalPhase, previous: date | None) -> list[_Nominal]:
    if previous is None:
        first = spec.start_date
    elif phase.start_after_previous_months:
        first = add_months(previous, phase.start_after_previous_months)
    else:
        first = previous + timedelta(days=phase.start_after_previous_days or 1)
    if phase.every_days is not None:
        dates = [first + timedelta(days=k * phase.every_days) for k in range(phase.count or 0)]
    else:
        months = option_value(spec, phase.every_months)
        count = phase.count or math.ceil((phase.span_months or 0) / months)
        # Anchored on the first dose, not chained, so 31 Jan -> 30 Apr -> 31 Jul (no drift).
        dates = [add_months(first, k * months) for k in range(count)]
    return [(phase, phase.id, day, phase.amount, phase.source) for day in dates]


def _cycle_doses(spec: PlanSpec, phase: CyclesPhase) -> list[_Nominal]:
    length = option_value(spec, phase.cycle_length_days)
    out: list[_Nominal] = []
    for cycle in range(1, option_value(spec, phase.cycles) + 1):
        # Cycle c day d is start + (c-1) x length + (d - day_origin).
        cycle_base = spec.start_date + timedelta(days=(cycle - 1) * length - phase.day_origin)
        for rule in phase.doses:
            if not rule.applies_to(cycle):
                continue
            for day in rule.days:
                if not phase.day_origin <= day < length + phase.day_origin:
                    raise ValueError(
                        f"phase {phase.id}: day {day} does not fit a {length}-day cycle"
                    )
                amount = option_value(spec, rule.amount)
                out.append((phase, phase.id, cycle_base + timedelta(days=day), amount, rule.source))
    out.sort(key=lambda item: item[2])  # stable: rule order within a day
    if len({item[2] for item in out}) != len(out):
        raise ValueError(f"phase {phase.id}: two doses fall on the same day")
    return out


# --------------------------------------------------------------------------- adjustments
def _apply_hold(spec: PlanSpec, slots: list[Slot], hold: Hold) -> None:
    """Postpone the doses still to give from ``hold.start`` (see the planner's rules)."""
    outcomes = spec.outcomes
    resume = hold.resume or date.max

    def done_before_hold(s: Slot) -> bool:
        # Recorded as given or missed before the resume date: it happened despite the
        # hold and stays put. One recorded from the resume date on was postponed by it.
        return s.index in outcomes and outcomes[s.index].on < resume

    affected = [
        s
        for s in slots
        if s.status == "scheduled"
        and s.date is not None
        and s.date >= hold.start
        and not done_before_hold(s)
    ]
    if not affected:
        return
    if hold.resume is None:
        for s in affected:
            s.date, s.status = None, "on_hold"
        return
    moving = {id(s) for s in affected}
    # Days taken by the doses that stay: a recorded dose on the day it happened.
    occupied = {
        outcomes[s.index].on if s.index in outcomes else s.date
        for s in slots
        if id(s) not in moving and (s.date is not None or s.index in outcomes)
    }
    originals: list[date] = [s.date for s in affected if s.date is not None]  # all dated
    # Never bring a dose forward: lay out from the resume date or the first dose's own date.
    floor = max(hold.resume, originals[0])
    previous: date | None = None
    for k, s in enumerate(affected):
        if isinstance(s.phase, WeekdaysPhase):
            # Re-lay on the next allowed weekdays; never two doses on one day.
            day = floor if previous is None else max(floor, previous + ONE_DAY)
            allowed = phase_weekdays(spec, s.phase)
            while day.weekday() not in allowed or day in occupied:
                day += ONE_DAY
        else:
            # Keep the spacing to the previous dose (consecutive days stay consecutive).
            day = floor if previous is None else previous + (originals[k] - originals[k - 1])
            while day in occupied:
                day += ONE_DAY
        s.date = previous = day


def _mark_hospital(regimen: Regimen, slots: list[Slot]) -> None:
    admin = regimen.administration
    # The first dose actually given (or still to give) is the one in hospital.
    first = next((s for s in slots if s.status not in ("missed", "cancelled")), None)
    for s in slots:
        s.in_hospital = admin.in_hospital == "all" or s is first
        if s is first:
            s.observation_hours = admin.first_dose_observation_hours


def _milestones(
    spec: PlanSpec, slots: list[Slot], holds: list[Hold], end: date | None
) -> list[tuple[Milestone, date]]:
    """The dated milestones of the plan.

    Day-anchored milestones (week-4 review, week-12 marrow) measure treatment received
    (003, Table 3: "after 4 weeks of treatment"), so day 1 is the first dose given, or
    still to give (a missed one does not count): a late first dose moves them. Closed
    holds after that dose move them by the days on hold; an open hold, or no dose left
    to give, leaves them undated. A hold before the first dose has already moved that
    dose, so it is not counted twice.
    """
    out: list[tuple[Milestone, date]] = []
    first = next(
        (s.date for s in slots if s.status in ("given", "scheduled") and s.date is not None),
        None,
    )
    for m in spec.regimen.milestones:
        if m.after_last_dose_months is not None:
            if end is not None:
                out.append((m, add_months(end, m.after_last_dose_months)))
            continue
        if first is None:
            continue
        day: date | None = first + timedelta(days=(m.day or 1) - 1)
        for hold in holds:  # in order of start date
            if day is None or hold.start > day:
                continue
            if hold.resume is None:
                day = None  # an open hold: the date is unknown until it is resumed
            elif hold.resume > max(hold.start, first):
                day += hold.resume - max(hold.start, first)
        if day is not None and (spec.stopped_on is None or day < spec.stopped_on):
            out.append((m, day))
    return out
