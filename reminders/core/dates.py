"""Calendar arithmetic: months with the day clamped to month end, the local date of an
instant, and local wall times as instants across daylight-saving changes.

One rule for a wall time the clocks skip or repeat, shared by the planner (reminders)
and the on-call rota (shifts): a time in a spring-forward gap moves forward to the
transition (02:30 on the night the clocks go from 02:00 to 03:00 is 03:00 summer time),
an ambiguous time in a fall-back fold is its first occurrence (``fold=0``). So two
things set at the same wall time (a shift's end and the next one's start) are always
the same instant.
"""

from __future__ import annotations

import calendar
from datetime import UTC, date, datetime
from typing import Literal
from zoneinfo import ZoneInfo


def add_months(day: date, months: int) -> date:
    """``day`` plus ``months`` calendar months; 31 January + 1 month is 28/29 February."""
    month_index = day.month - 1 + months
    year = day.year + month_index // 12
    month = month_index % 12 + 1
    last_day = calendar.monthrange(year, month)[1]
    return date(year, month, min(day.day, last_day))


def local_today(timezone: str, now: datetime) -> date:
    """The calendar date in ``timezone`` at the instant ``now``."""
    return now.astimezone(ZoneInfo(timezone)).date()


def wall_time_anomaly(naive: datetime, tz: ZoneInfo) -> Literal["gap", "fold"] | None:
    """ "gap" when the clocks skip ``naive`` in ``tz``, "fold" when it happens twice, else None."""
    first = naive.replace(tzinfo=tz)
    if first.astimezone(UTC).astimezone(tz).replace(tzinfo=None) != naive:
        return "gap"
    if first.utcoffset() != naive.replace(tzinfo=tz, fold=1).utcoffset():
        return "fold"
    return None


def resolve_wall_time(naive: datetime, tz: ZoneInfo) -> tuple[datetime, datetime]:
    """Local wall time -> (aware local, aware UTC), by the module's rule for gaps and folds."""
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
