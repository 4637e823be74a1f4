"""Schemas of the response-time figures and targets (issue 14, item 6), for the API and the page.

Kept beside :mod:`backend.schemas` (same base classes and date bounds) in a module of
their own. The figures' counting rules and percentile definition are in
:mod:`reminders.core.response_times`, whose :class:`MeasureFigures` the API answers with
as it is (one declaration of a measure's figures).
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

from backend.schemas import PlausibleDate, Strict
from reminders.core.response_times import MeasureFigures

#: The bounds the targets accept (``reminders.core.escalation.targets_from_dict``'s): from
#: one minute to 30 days.
TargetMinutes = Annotated[int, Field(strict=True, ge=1, le=30 * 24 * 60)]

PERCENTILE_DEFINITION = (
    "nearest rank: the p-th percentile of n sorted values is the value at rank "
    "ceil(p/100 * n); the median is the 50th (the lower middle value for an even count)"
)
OPEN_ALERTS_RULE = (
    "an alert still open past its target counts as a miss, with its wait so far in the "
    "median and p90; one still open within its target is pending and left out until "
    "answered or overdue"
)


class ResponseTimesQuery(Strict):
    """The period of the figures: local dates of the team, both inclusive.

    Neither: the 4 full weeks before this one; one of them: 4 weeks from (or to) it.
    """

    model_config = ConfigDict(extra="forbid", populate_by_name=True, str_strip_whitespace=True)

    from_: PlausibleDate | None = Field(default=None, alias="from")
    to: PlausibleDate | None = None


class ResponseTargetsIn(Strict):
    """A team's targets in minutes: urgent and high alerts acknowledged, any alert resolved."""

    urgent_acknowledge_minutes: TargetMinutes
    high_acknowledge_minutes: TargetMinutes
    resolve_minutes: TargetMinutes


class ResponseTargetsOut(BaseModel):
    """The targets in force: the team's own (``team_default`` false) or the defaults."""

    urgent_acknowledge_minutes: int
    high_acknowledge_minutes: int
    resolve_minutes: int
    team_default: bool


class SeverityFiguresOut(BaseModel):
    """The alerts of one severity in a group: how many, and both measures."""

    severity: str
    count: int
    acknowledge: MeasureFigures
    resolve: MeasureFigures


class WeekFiguresOut(BaseModel):
    """One ISO week (``2026-W06``, from its Monday ``first_day``) per severity."""

    week: str
    first_day: date
    severities: list[SeverityFiguresOut]


class ClinicianFiguresOut(BaseModel):
    """The alerts raised while ``clinician_id`` was the rota's primary (null: no rota)."""

    clinician_id: int | None
    clinician_name: str
    severities: list[SeverityFiguresOut]


class ResponseTimesOut(BaseModel):
    """The figures of a period, per severity, per week and per clinician on call."""

    first_day: date
    last_day: date
    timezone: str
    as_of: datetime
    alerts: int
    targets: ResponseTargetsOut
    percentile_definition: str
    open_alerts_rule: str
    by_severity: list[SeverityFiguresOut]
    by_week: list[WeekFiguresOut]
    by_clinician: list[ClinicianFiguresOut]
