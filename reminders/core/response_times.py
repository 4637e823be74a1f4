"""Response-time figures: how fast a team acknowledges and resolves its alerts (issue 14, item 6).

Pure: the caller (``backend.services.response_times``) reads the alerts and passes their
times in, with the team's :class:`~reminders.core.escalation.ResponseTargets`, the time
zone its weeks are counted in and the moment the figures are taken (``as_of``).

Figures are given per severity, per ISO week (of the alert's creation, in the team's time
zone) and per clinician on call (the rota's primary when the alert was raised; ``None``
when no rota covered it), each for two measures: minutes from creation to
acknowledgement and from creation to resolution.

How every alert counts, for one measure:

* **done** (acknowledged, or resolved): its minutes enter the median and the p90, and it
  is *within target* when its minutes are at most the target (exactly on the target is
  within).
* **overdue** (still open at ``as_of`` and already waiting longer than the target): a
  miss. It is never left out: its minutes so far (from creation to ``as_of``) enter the
  median and the p90 as what they are, a lower bound, and it counts against the share
  within target. A team must not look better by not acknowledging.
* **pending** (still open at ``as_of`` but not yet past its target): it can still be
  answered in time, so it is left out of the share and of the percentiles until it is
  answered or its target passes; the figures count it apart (``pending``).
* A measure without a target (acknowledging a routine alert) has no share within target
  and no overdue alert: an open alert there is pending.

Percentiles use the **nearest-rank** definition: of ``n`` values sorted in increasing
order, the p-th percentile is the value at rank ``ceil(p / 100 * n)`` (1-based). It is
always one of the measured values, never an interpolation. The **median** is the
nearest-rank 50th percentile: for an even count, the lower of the two middle values (not
their mean). The p90 of 1 to 9 values is the largest one.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Hashable, Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from enum import StrEnum
from typing import TypeVar
from zoneinfo import ZoneInfo

from reminders.core.escalation import ResponseTargets

__all__ = [
    "SEVERITIES",
    "AlertFacts",
    "AlertTiming",
    "Figures",
    "Measure",
    "MeasureFigures",
    "Outcome",
    "ResponseTimes",
    "compute_response_times",
    "iso_week",
    "nearest_rank",
    "time_alert",
]

K = TypeVar("K", bound=Hashable)

#: The severities in the order the figures list them.
SEVERITIES = ("urgent", "high", "routine")


class Measure(StrEnum):
    """What is timed: from an alert's creation to its acknowledgement, or to its resolution."""

    ACKNOWLEDGE = "acknowledge"
    RESOLVE = "resolve"


class Outcome(StrEnum):
    """How one alert counts for one measure (see the module docstring)."""

    WITHIN = "within"
    MISSED = "missed"
    #: Done, for a measure without a target.
    DONE = "done"
    OVERDUE = "overdue"
    PENDING = "pending"


@dataclass(frozen=True)
class AlertFacts:
    """What the figures need of one alert: its times, severity and the clinician on call."""

    alert_id: int
    severity: str
    created_at: datetime
    acknowledged_at: datetime | None
    resolved_at: datetime | None
    #: The user id of the rota's primary when the alert was raised; None: no rota covered it.
    clinician_id: int | None = None
    #: Who acknowledged it (a user id), for the export.
    acknowledged_by: int | None = None


@dataclass(frozen=True)
class MeasureTiming:
    """One alert, one measure: its minutes (so far, when still open), target and outcome."""

    minutes: float
    target_minutes: int | None
    outcome: Outcome

    @property
    def measured(self) -> bool:
        """True when these minutes enter the median and the p90."""
        return self.outcome is not Outcome.PENDING


@dataclass(frozen=True)
class AlertTiming:
    """One alert with both measures timed and its week (what a row of the export says)."""

    facts: AlertFacts
    week: str
    acknowledge: MeasureTiming
    resolve: MeasureTiming


@dataclass(frozen=True)
class MeasureFigures:
    """One measure (acknowledge or resolve) over a group of alerts, in minutes.

    ``share_within_target`` is ``within_target / judged`` (0 to 1); null without a target
    or without a judged alert. ``overdue``: still open past the target (misses);
    ``pending``: still open within it (not judged yet).
    """

    # The API answers with this class as it is (backend/schemas_response_times.py), so
    # the share is a field, not a property: a property would not be serialised.
    target_minutes: int | None
    #: Alerts whose minutes enter the percentiles (done and overdue).
    measured: int
    median_minutes: float | None
    p90_minutes: float | None
    within_target: int
    #: Alerts judged against the target: done and overdue (the share's denominator).
    judged: int
    share_within_target: float | None
    #: Still open past the target (counted as misses).
    overdue: int
    #: Still open within the target (not judged yet).
    pending: int


@dataclass(frozen=True)
class Figures:
    """A group of alerts of one severity: how many, and both measures."""

    severity: str
    count: int
    acknowledge: MeasureFigures
    resolve: MeasureFigures

    def measure(self, measure: Measure) -> MeasureFigures:
        """The figures of ``measure``."""
        return self.acknowledge if measure is Measure.ACKNOWLEDGE else self.resolve


@dataclass(frozen=True)
class ResponseTimes:
    """Every figure of a period: per severity, per week and per clinician on call."""

    first_day: date
    last_day: date
    as_of: datetime
    targets: ResponseTargets
    alerts: tuple[AlertTiming, ...]
    by_severity: tuple[Figures, ...]
    #: (ISO week such as "2026-W06", its figures per severity), weeks in order.
    by_week: tuple[tuple[str, tuple[Figures, ...]], ...]
    #: (clinician id or None for "no rota", figures per severity), by id, "no rota" last.
    by_clinician: tuple[tuple[int | None, tuple[Figures, ...]], ...]


def nearest_rank(values: Sequence[float], percentile: float) -> float | None:
    """The ``percentile`` (0 < p <= 100) of ``values`` by nearest rank; None for no value."""
    if not 0 < percentile <= 100:
        raise ValueError("percentile must be in (0, 100]")
    if not values:
        return None
    ordered = sorted(values)
    rank = math.ceil(percentile / 100 * len(ordered))
    return ordered[rank - 1]


def iso_week(moment: datetime, timezone: str) -> str:
    """The ISO week of ``moment`` in ``timezone``, as "2026-W06"."""
    year, week, _ = moment.astimezone(ZoneInfo(timezone)).isocalendar()
    return f"{year}-W{week:02d}"


def _minutes(delta: timedelta) -> float:
    return delta.total_seconds() / 60


def _time_measure(
    created_at: datetime, done_at: datetime | None, target: int | None, as_of: datetime
) -> MeasureTiming:
    if done_at is not None:
        minutes = _minutes(done_at - created_at)
        if target is None:
            return MeasureTiming(minutes, target, Outcome.DONE)
        return MeasureTiming(
            minutes, target, Outcome.WITHIN if minutes <= target else Outcome.MISSED
        )
    waited = max(_minutes(as_of - created_at), 0.0)
    if target is not None and waited > target:
        return MeasureTiming(waited, target, Outcome.OVERDUE)
    return MeasureTiming(waited, target, Outcome.PENDING)


def time_alert(
    facts: AlertFacts, targets: ResponseTargets, timezone: str, as_of: datetime
) -> AlertTiming:
    """Both measures of one alert at ``as_of`` (an alert resolved unacknowledged was
    acknowledged by its resolution: ``reminders.data.alerts.resolve_alert`` records both)."""
    acknowledged_at = facts.acknowledged_at or facts.resolved_at
    return AlertTiming(
        facts=facts,
        week=iso_week(facts.created_at, timezone),
        acknowledge=_time_measure(
            facts.created_at,
            acknowledged_at,
            targets.acknowledge_minutes(facts.severity),
            as_of,
        ),
        resolve=_time_measure(facts.created_at, facts.resolved_at, targets.resolve_minutes, as_of),
    )


def _measure_figures(timings: Sequence[MeasureTiming], target: int | None) -> MeasureFigures:
    measured = [t.minutes for t in timings if t.measured]
    judged = [t for t in timings if t.outcome in (Outcome.WITHIN, Outcome.MISSED, Outcome.OVERDUE)]
    within = sum(1 for t in judged if t.outcome is Outcome.WITHIN)
    return MeasureFigures(
        target_minutes=target,
        measured=len(measured),
        median_minutes=nearest_rank(measured, 50),
        p90_minutes=nearest_rank(measured, 90),
        within_target=within,
        judged=len(judged),
        share_within_target=within / len(judged) if target is not None and judged else None,
        overdue=sum(1 for t in timings if t.outcome is Outcome.OVERDUE),
        pending=sum(1 for t in timings if t.outcome is Outcome.PENDING),
    )


def _per_severity(timings: Iterable[AlertTiming], targets: ResponseTargets) -> tuple[Figures, ...]:
    """Figures of each severity that has alerts, in :data:`SEVERITIES` order (others after)."""
    groups = _group(timings, lambda t: t.facts.severity)
    order = [s for s in SEVERITIES if s in groups] + sorted(set(groups) - set(SEVERITIES))
    return tuple(
        Figures(
            severity=severity,
            count=len(groups[severity]),
            acknowledge=_measure_figures(
                [t.acknowledge for t in groups[severity]], targets.acknowledge_minutes(severity)
            ),
            resolve=_measure_figures(
                [t.resolve for t in groups[severity]], targets.resolve_minutes
            ),
        )
        for severity in order
    )


def _group(
    timings: Iterable[AlertTiming], key: Callable[[AlertTiming], K]
) -> dict[K, list[AlertTiming]]:
    groups: dict[K, list[AlertTiming]] = {}
    for timing in timings:
        groups.setdefault(key(timing), []).append(timing)
    return groups


def compute_response_times(
    alerts: Iterable[AlertFacts],
    targets: ResponseTargets,
    *,
    first_day: date,
    last_day: date,
    timezone: str,
    as_of: datetime,
) -> ResponseTimes:
    """Every figure of the alerts raised from ``first_day`` to ``last_day`` (local dates,
    both inclusive, in ``timezone``), taken at ``as_of``.

    ``alerts`` should be those raised in the period; any other is left out here too, so
    a caller's slip cannot leak another period into the figures.
    """
    zone = ZoneInfo(timezone)
    timings = tuple(
        time_alert(facts, targets, timezone, as_of)
        for facts in sorted(alerts, key=lambda f: (f.created_at, f.alert_id))
        if first_day <= facts.created_at.astimezone(zone).date() <= last_day
    )
    weeks = _group(timings, lambda t: t.week)
    clinicians = _group(timings, lambda t: t.facts.clinician_id)
    clinician_order = sorted(c for c in clinicians if c is not None) + (
        [None] if None in clinicians else []
    )
    return ResponseTimes(
        first_day=first_day,
        last_day=last_day,
        as_of=as_of,
        targets=targets,
        alerts=timings,
        by_severity=_per_severity(timings, targets),
        by_week=tuple((week, _per_severity(weeks[week], targets)) for week in sorted(weeks)),
        by_clinician=tuple(
            (clinician, _per_severity(clinicians[clinician], targets))
            for clinician in clinician_order
        ),
    )
