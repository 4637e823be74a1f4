"""Calendar arithmetic: months with the day clamped to month end, and the local date of an instant."""

from __future__ import annotations

import calendar
from datetime import date, datetime
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
