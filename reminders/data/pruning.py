"""Pruning the web's sign-in bookkeeping, a job the clock runs: old sessions, idle counters.

The tables are the web's (``UserSession``, ``LoginThrottle``); the retention periods and
the deletes live here so that the clock prunes them without loading the web.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, delete, literal, or_
from sqlmodel import Session

from reminders.data.models import LoginThrottle, UserSession, UTCDateTime

#: Ended and expired session rows are kept this long (who was signed in when), then pruned.
SESSION_RETENTION = timedelta(days=30)
#: How long a sign-in vouches for its address and its browser; throttle counters idle
#: longer are pruned (``backend.services.signin.ThrottlePolicy.remember``).
THROTTLE_RETENTION = timedelta(days=30)


def literal_utc(instant: datetime) -> Any:
    """``instant`` as a bound parameter of the UTC column type (SQLite stores UTC text)."""
    return literal(instant, UTCDateTime())


def prune_user_sessions(
    session: Session, now: datetime, keep: timedelta = SESSION_RETENTION
) -> int:
    """Delete the rows of sessions that ended or expired more than ``keep`` ago; returns how many.

    An open session is never deleted: its absolute limit is at most
    ``backend.security.ABSOLUTE_TIMEOUT`` ahead. Who signed in when stays in the
    audit log (``login``/``logout`` rows), which is not pruned.
    """
    cutoff = now - keep
    result: Any = session.execute(
        delete(UserSession).where(
            or_(UserSession.ended_at < cutoff, UserSession.expires_at < cutoff)
        )
    )
    return int(result.rowcount or 0)


def prune_login_throttle(
    session: Session, now: datetime, keep: timedelta = THROTTLE_RETENTION
) -> int:
    """Delete the counters with no failure and no success for ``keep``; returns how many.

    A pruned pair starts afresh: its delays are long over, and a success that old no
    longer exempts it from the spraying brake.
    """
    table = LoginThrottle.__table__
    cutoff = literal_utc(now - keep)
    idle = and_(
        or_(table.c.last_failure_at.is_(None), table.c.last_failure_at < cutoff),
        or_(table.c.last_success_at.is_(None), table.c.last_success_at < cutoff),
        or_(table.c.retry_after.is_(None), table.c.retry_after <= literal_utc(now)),
    )
    return session.execute(delete(table).where(idle)).rowcount
