"""Response-time figures of a team's alerts and the team's targets (issue 14, item 6).

Reads the alerts one team raised in a period (never another team's), names the rota's
primary on call when each was raised, and hands them to the pure computation
(:mod:`reminders.core.response_times`, where the counting rules and the percentile
definition are written down). The targets are the team's own (``Team.response_targets``)
or the defaults of ``reminders/core/escalation.toml``. Session and ``now`` in; the caller
commits.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy.orm import aliased
from sqlmodel import Session, select

from reminders.core.escalation import (
    PolicyError,
    ResponseTargets,
    default_targets,
    targets_from_dict,
    targets_to_dict,
)
from reminders.core.response_times import AlertFacts, ResponseTimes, compute_response_times
from reminders.data.errors import InvalidInput, NotFound
from reminders.data.models import Alert, OnCallShift, Team, User
from reminders.data.statuses import OnCallRole

#: The default period: this many full ISO weeks (Monday to Sunday) before the current one.
DEFAULT_WEEKS = 4
#: The longest period one request may ask for (a year and a day: a leap year's weeks).
MAX_PERIOD_DAYS = 366
#: How the figures and the export name alerts no rota shift covered.
NO_ROTA = "no rota"


@dataclass(frozen=True)
class Period:
    """Local dates of the team, both inclusive."""

    first_day: date
    last_day: date


def team_targets(team: Team) -> ResponseTargets:
    """The team's targets, or the defaults when it keeps none (``response_targets`` None).

    A stored document was validated when it was saved (:func:`set_team_targets`).
    """
    if team.response_targets is None:
        return default_targets()
    return targets_from_dict(team.response_targets, source=f"team {team.id}")


def set_team_targets(session: Session, team: Team, values: Mapping[str, Any]) -> ResponseTargets:
    """Store ``values`` as the team's targets; :class:`InvalidInput` names the field refused."""
    try:
        targets = targets_from_dict(dict(values))
    except PolicyError as error:
        message = str(error)
        field = next((name for name in _TARGET_FIELDS if message.startswith(name)), None)
        raise InvalidInput(message, field=field) from error
    team.response_targets = targets_to_dict(targets)
    session.add(team)
    return targets


_TARGET_FIELDS = ("urgent_acknowledge_minutes", "high_acknowledge_minutes", "resolve_minutes")


def get_team(session: Session, team_id: int) -> Team:
    """The team ``team_id`` (the caller's own); NotFound if it does not exist."""
    team = session.get(Team, team_id)
    if team is None:
        raise NotFound("no such team")
    return team


def default_period(today: date) -> Period:
    """The :data:`DEFAULT_WEEKS` full ISO weeks before the week of ``today``."""
    this_monday = today - timedelta(days=today.weekday())
    return Period(this_monday - timedelta(weeks=DEFAULT_WEEKS), this_monday - timedelta(days=1))


def choose_period(first_day: date | None, last_day: date | None, today: date) -> Period:
    """The period asked for: both ends, one end (the other 4 weeks away), or the default.

    :class:`InvalidInput` (field ``to``) for an end before the start or a period longer than
    :data:`MAX_PERIOD_DAYS`.
    """
    span = timedelta(weeks=DEFAULT_WEEKS) - timedelta(days=1)
    if first_day is None and last_day is None:
        return default_period(today)
    if last_day is None:
        last_day = first_day + span  # type: ignore[operator]
    elif first_day is None:
        first_day = last_day - span
    if last_day < first_day:
        raise InvalidInput("the last day must not be before the first day", field="to")
    if (last_day - first_day).days + 1 > MAX_PERIOD_DAYS:
        raise InvalidInput(f"a period of at most {MAX_PERIOD_DAYS} days", field="to")
    return Period(first_day, last_day)


def period_bounds(period: Period, timezone: str) -> tuple[datetime, datetime]:
    """The period as UTC instants: local midnight of the first day, of the day after the last."""
    zone = ZoneInfo(timezone)
    start = datetime.combine(period.first_day, time(0), zone)
    end = datetime.combine(period.last_day + timedelta(days=1), time(0), zone)
    return start.astimezone(UTC), end.astimezone(UTC)


def _primary_on_call_at_creation() -> Any:
    """The user id of the rota's primary when the alert was raised (a correlated subquery).

    The same choice as :func:`reminders.data.oncall.on_call` (the covering shift that
    started last, ties: the newest row; a member of the alert's team), read for every alert
    in one statement. Unlike ``on_call`` it also names a clinician deactivated since: they
    were on call then, and their alerts stay theirs in the figures.
    """
    shift = aliased(OnCallShift)
    return (
        select(shift.user_id)
        .join(User, User.id == shift.user_id)
        .where(
            shift.team_id == Alert.team_id,
            shift.role == OnCallRole.PRIMARY,
            shift.starts_at <= Alert.created_at,
            shift.ends_at > Alert.created_at,
            User.team_id == Alert.team_id,
        )
        .order_by(shift.starts_at.desc(), shift.id.desc())
        .limit(1)
        .correlate(Alert)
        .scalar_subquery()
    )


def alert_facts(session: Session, team_id: int, start: datetime, end: datetime) -> list[AlertFacts]:
    """The alerts of ``team_id`` raised in ``[start, end)``, oldest first, with who was on call."""
    rows = session.exec(
        select(
            Alert.id,
            Alert.severity,
            Alert.created_at,
            Alert.acknowledged_at,
            Alert.resolved_at,
            _primary_on_call_at_creation(),
            Alert.acknowledged_by,
        )
        .where(Alert.team_id == team_id, Alert.created_at >= start, Alert.created_at < end)
        .order_by(Alert.created_at, Alert.id)
    ).all()
    return [
        AlertFacts(
            alert_id=row[0],
            severity=row[1],
            created_at=row[2],
            acknowledged_at=row[3],
            resolved_at=row[4],
            clinician_id=row[5],
            acknowledged_by=row[6],
        )
        for row in rows
    ]


def response_times(session: Session, team: Team, period: Period, now: datetime) -> ResponseTimes:
    """Every figure of ``team``'s alerts raised in ``period``, taken at ``now``."""
    start, end = period_bounds(period, team.timezone)
    return compute_response_times(
        alert_facts(session, team.id, start, end),
        team_targets(team),
        first_day=period.first_day,
        last_day=period.last_day,
        timezone=team.timezone,
        as_of=now,
    )


def clinician_names(
    session: Session, team_id: int, user_ids: Iterable[int | None]
) -> dict[int, str]:
    """The names (else emails) of the team's users among ``user_ids``."""
    wanted = {user_id for user_id in user_ids if user_id is not None}
    if not wanted:
        return {}
    users = session.exec(select(User).where(User.team_id == team_id, User.id.in_(wanted))).all()
    return {user.id: user.name or user.email for user in users}


def names_in(session: Session, team_id: int, figures: ResponseTimes) -> dict[int, str]:
    """The names of every clinician of ``team_id`` the figures mention (on call, or who acknowledged)."""
    return clinician_names(
        session,
        team_id,
        [clinician for clinician, _ in figures.by_clinician]
        + [timing.facts.acknowledged_by for timing in figures.alerts],
    )
