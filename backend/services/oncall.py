"""The on-call rota, "on call now" and the team's escalation policy and time zone (web services).

Shifts are entered as local date-times in the team's time zone (``Team.timezone``) and
stored in UTC. A wall time the clocks skip or repeat follows the one rule of
:mod:`reminders.core.dates` (the planner's): a time in the spring-forward gap moves to the
transition (02:30 on 29 March 2026 in Brussels is 03:00 summer time), an ambiguous time
in the fall-back fold is its first occurrence (02:30 on 25 October 2026 is 02:30 summer
time, 00:30 UTC). So a shift's end and the next one's start typed alike are the same
instant: a handover never leaves a hole nor an hour twice. The service says so in a
note the page shows. An instant given with its UTC offset (the API) is taken as it is.

Who is on call is read through :func:`reminders.data.oncall.on_call` only (the engine
pages whom it names). A shift is refused when its clinician could not be paged: not a
member of the team, deactivated, or without a phone number on their profile.

Every function takes ``session`` and ``now``-like values and leaves the commit to the
caller (with its audit row).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlmodel import Session, select

from backend.schemas import is_timezone
from reminders.core.dates import resolve_wall_time, wall_time_anomaly
from reminders.core.escalation import (
    EscalationPolicy,
    PolicyError,
    default_policy,
    policy_from_dict,
    policy_to_dict,
)
from reminders.data.db import get_owned
from reminders.data.errors import Conflict, InvalidInput
from reminders.data.models import OnCallShift, Team, User
from reminders.data.oncall import on_call
from reminders.data.statuses import OnCallRole, PageTarget

#: A shift longer than this is a typing error (a year instead of a day), not a rota.
MAX_SHIFT = timedelta(days=7)
#: What the rota pages show and the API lists by default.
ROTA_WINDOW = timedelta(days=14)
#: How far ahead "on call now" looks for a role nobody fills.
LOOKAHEAD = timedelta(hours=24)


def team_zone(team: Team) -> ZoneInfo:
    """The zone the team's rota is written in."""
    return ZoneInfo(team.timezone)


def local_text(at: datetime, zone: ZoneInfo) -> str:
    """An instant as the rota shows it: "Sun 29 Mar 03:00 CEST"."""
    local = at.astimezone(zone)
    return f"{local:%a} {local.day} {local:%b %H:%M} {local:%Z}"


def to_instant(value: datetime, zone: ZoneInfo, *, field: str) -> tuple[datetime, str | None]:
    """``value`` as a UTC instant, and a note when the clocks skip or repeat its wall time.

    A naive ``value`` is a wall time in ``zone`` (see the module docstring for gaps and
    folds); an aware one is already an instant.
    """
    if value.tzinfo is not None:
        return value.astimezone(UTC), None
    anomaly = wall_time_anomaly(value, zone)
    local, instant = resolve_wall_time(value, zone)
    day = f"{value:%a} {value.day} {value:%b %Y}"
    name = "Start" if field == "starts_at" else "End"
    if anomaly == "gap":
        note = (
            f"{name}: {value:%H:%M} does not exist on {day} in {zone.key} (the clocks go "
            f"forward), so it is {local:%H:%M %Z}."
        )
    elif anomaly == "fold":
        note = (
            f"{name}: {value:%H:%M} happens twice on {day} in {zone.key} (the clocks go "
            f"back); the first one is used, {local:%H:%M %Z}."
        )
    else:
        note = None
    return instant, note


@dataclass(frozen=True)
class RotaLine:
    """A shift and its clinician; ``covers`` is False when the clinician can no longer be on call."""

    shift: OnCallShift
    user: User
    covers: bool


def get_shift(session: Session, team_id: int, shift_id: int) -> OnCallShift:
    """The shift ``shift_id`` of ``team_id``; NotFound for another team's or none."""
    return get_owned(session, OnCallShift, shift_id, "shift", team_id=team_id)


def list_rota(session: Session, team: Team, start: datetime, end: datetime) -> list[RotaLine]:
    """The team's shifts that overlap [start, end), in time order (primary before backup)."""
    rows = session.exec(
        select(OnCallShift, User)
        .join(User, User.id == OnCallShift.user_id)
        .where(
            OnCallShift.team_id == team.id,
            OnCallShift.ends_at > start,
            OnCallShift.starts_at < end,
        )
        .order_by(OnCallShift.starts_at, OnCallShift.role.desc(), OnCallShift.id)
    ).all()
    return [
        RotaLine(shift, user, user.is_active and user.team_id == team.id) for shift, user in rows
    ]


def _role(value: str) -> OnCallRole:
    try:
        return OnCallRole(value)
    except ValueError:
        raise InvalidInput("role must be primary or backup", field="role") from None


def _pageable_member(session: Session, team: Team, user_id: int) -> User:
    """The team member ``user_id`` if they can be paged; a refusal naming ``user_id`` otherwise."""
    user = session.get(User, user_id)
    if user is None or user.team_id != team.id:
        raise InvalidInput("no such member of your team", field="user_id")
    who = user.name or user.email
    if not user.is_active:
        raise InvalidInput(f"{who} is deactivated and cannot be on call", field="user_id")
    if not user.phone:
        raise Conflict(
            f"{who} has no phone number on their profile, so they could not be paged: "
            "they add it on their account page first",
            field="user_id",
        )
    return user


def _check_shift(
    session: Session,
    team: Team,
    *,
    user_id: int,
    role: OnCallRole,
    starts_at: datetime,
    ends_at: datetime,
    now: datetime,
    other_than: int | None = None,
) -> None:
    """Refuse a shift that is empty, absurdly long, already over, or doubles its clinician."""
    if ends_at <= starts_at:
        raise InvalidInput("the shift must end after it starts", field="ends_at")
    if ends_at - starts_at > MAX_SHIFT:
        raise InvalidInput(
            f"a shift lasts at most {MAX_SHIFT.days} days; enter a longer one as several",
            field="ends_at",
        )
    if ends_at <= now:
        raise InvalidInput("this shift would already be over", field="ends_at")
    user = _pageable_member(session, team, user_id)
    # The backup is paged when the primary does not answer: the same phone twice is no backup.
    other_role = OnCallRole.BACKUP if role == OnCallRole.PRIMARY else OnCallRole.PRIMARY
    clash = select(OnCallShift.id).where(
        OnCallShift.team_id == team.id,
        OnCallShift.user_id == user_id,
        OnCallShift.role == other_role,
        OnCallShift.starts_at < ends_at,
        OnCallShift.ends_at > starts_at,
    )
    if other_than is not None:
        clash = clash.where(OnCallShift.id != other_than)
    if session.exec(clash.limit(1)).first() is not None:
        raise Conflict(
            f"{user.name or user.email} is {other_role} during this time; "
            f"the {role} must be someone else",
            field="user_id",
        )


def add_shift(
    session: Session,
    team: Team,
    *,
    user_id: int,
    role: str,
    starts_at: datetime,
    ends_at: datetime,
    actor: User | None,
    now: datetime,
) -> tuple[OnCallShift, list[str]]:
    """Put ``user_id`` on call as ``role`` from ``starts_at`` to ``ends_at`` (local or aware).

    Returns the shift and the notes on times the clocks skip or repeat.
    """
    zone = team_zone(team)
    start, start_note = to_instant(starts_at, zone, field="starts_at")
    end, end_note = to_instant(ends_at, zone, field="ends_at")
    checked_role = _role(role)
    _check_shift(
        session, team, user_id=user_id, role=checked_role, starts_at=start, ends_at=end, now=now
    )
    shift = OnCallShift(
        team_id=team.id,
        user_id=user_id,
        role=checked_role,
        starts_at=start,
        ends_at=end,
        created_by=actor.id if actor is not None else None,
        created_at=now,
    )
    session.add(shift)
    session.flush()
    return shift, [note for note in (start_note, end_note) if note]


def edit_shift(
    session: Session,
    team: Team,
    shift: OnCallShift,
    changes: Mapping[str, Any],
    now: datetime,
) -> tuple[OnCallShift, list[str]]:
    """Change a shift that is not over yet (``changes``: user_id, role, starts_at, ends_at).

    A shift that has ended stays as it was: it is the record of who was on call.
    """
    if shift.ends_at <= now:
        raise Conflict("this shift is over: it stays in the record of who was on call")
    zone = team_zone(team)
    notes: list[str] = []
    bounds = {"starts_at": shift.starts_at, "ends_at": shift.ends_at}
    for field in bounds:
        if changes.get(field) is not None:
            bounds[field], note = to_instant(changes[field], zone, field=field)
            notes += [note] if note else []
    user_id = changes.get("user_id") or shift.user_id
    role = _role(changes.get("role") or shift.role)
    _check_shift(session, team, user_id=user_id, role=role, now=now, other_than=shift.id, **bounds)
    shift.user_id, shift.role = user_id, role
    shift.starts_at, shift.ends_at = bounds["starts_at"], bounds["ends_at"]
    session.add(shift)
    session.flush()
    return shift, notes


def remove_shift(session: Session, shift: OnCallShift, now: datetime) -> str:
    """Take a shift off the rota: "deleted" if it has not begun, "ended" (at ``now``) if it runs.

    A running shift is ended rather than deleted, and a finished one is refused, so the
    rota keeps the record of who was on call when an alert was paged.
    """
    if shift.ends_at <= now:
        raise Conflict("this shift is over: it stays in the record of who was on call")
    if shift.starts_at <= now:
        shift.ends_at = now
        session.add(shift)
        return "ended"
    session.delete(shift)
    return "deleted"


# --- on call now ------------------------------------------------------------------------


@dataclass(frozen=True)
class OnDuty:
    """Who holds a role now, and until when."""

    user: User
    until: datetime


@dataclass(frozen=True)
class OnCallSummary:
    """The rota at ``at``: primary, backup, the fallback number, and what is missing.

    ``gaps`` maps a role to the first instant within :data:`LOOKAHEAD` when nobody holds
    it (``at`` itself when nobody does now); ``warnings`` says it in words.
    """

    at: datetime
    timezone: str
    primary: OnDuty | None
    backup: OnDuty | None
    fallback_phone: str | None
    gaps: dict[OnCallRole, datetime]
    warnings: list[str]


def _first_gap(session: Session, team: Team, role: OnCallRole, now: datetime) -> datetime | None:
    """The first instant in [now, now + LOOKAHEAD) when nobody holds ``role``, or None.

    Who is on call changes only where a shift of the role starts or ends, so asking
    :func:`on_call` at ``now`` and at each of those instants finds every gap.
    """
    horizon = now + LOOKAHEAD
    shifts = session.exec(
        select(OnCallShift).where(
            OnCallShift.team_id == team.id,
            OnCallShift.role == role,
            OnCallShift.starts_at < horizon,
            OnCallShift.ends_at > now,
        )
    ).all()
    moments = {now} | {
        t for shift in shifts for t in (shift.starts_at, shift.ends_at) if now < t < horizon
    }
    return next((t for t in sorted(moments) if on_call(session, team.id, role, t) is None), None)


def on_call_summary(session: Session, team: Team, now: datetime) -> OnCallSummary:
    """Who is on call for ``team`` at ``now``, the fallback number, and warnings for the next 24 h."""
    zone = team_zone(team)
    duty: dict[OnCallRole, OnDuty | None] = {}
    gaps: dict[OnCallRole, datetime] = {}
    warnings: list[str] = []
    for role in OnCallRole:
        held = on_call(session, team.id, role, now)
        duty[role] = OnDuty(held[1], held[0].ends_at) if held else None
        gap = _first_gap(session, team, role, now)
        if gap is not None:
            gaps[role] = gap
            warnings.append(
                f"Nobody is {role} now."
                if gap == now
                else f"Nobody is {role} from {local_text(gap, zone)}."
            )
        if held and not held[1].phone:
            warnings.append(
                f"{held[1].name or held[1].email} is {role} but has no phone number: "
                "pages go to the next step."
            )
    if not team.oncall_phone:
        warnings.append("The team has no fallback number: set it on the Team page.")
    return OnCallSummary(
        at=now,
        timezone=team.timezone,
        primary=duty[OnCallRole.PRIMARY],
        backup=duty[OnCallRole.BACKUP],
        fallback_phone=team.oncall_phone,
        gaps=gaps,
        warnings=warnings,
    )


# --- the team's escalation policy and time zone ------------------------------------------

_POLICY_FIELD = re.compile(r"^(steps\[\d+\]\.\w+|steps\[\d+\]|steps|repeat_every_minutes)")


def set_policy(session: Session, team: Team, data: Mapping[str, Any]) -> EscalationPolicy:
    """Give ``team`` its own escalation policy (validated), or the defaults when it is the same.

    Beyond :func:`~reminders.core.escalation.policy_from_dict`'s rules, a team's policy
    must page the fallback number at some step: it is the one number that is always
    answered, the end of every chain (hazard log H-ROTA-3).
    """
    try:
        policy = policy_from_dict(data)
    except PolicyError as error:
        match = _POLICY_FIELD.match(str(error))
        raise InvalidInput(str(error), field=match.group(1) if match else "steps") from None
    if not any(step.target == PageTarget.FALLBACK for step in policy.steps):
        raise InvalidInput(
            "steps: one step must page the fallback number (the team's number that is always "
            "answered)",
            field="steps",
        )
    stored = policy_to_dict(policy)
    team.escalation_policy = None if stored == policy_to_dict(default_policy()) else stored
    session.add(team)
    return policy


def reset_policy(session: Session, team: Team) -> EscalationPolicy:
    """Make ``team`` follow the default policy again."""
    team.escalation_policy = None
    session.add(team)
    return default_policy()


def set_timezone(session: Session, team: Team, name: str) -> Team:
    """Write the team's rota in ``name`` (an IANA zone); stored shifts keep their instants."""
    name = name.strip()
    if not is_timezone(name):
        raise InvalidInput(
            "unknown IANA time zone (e.g. Europe/Brussels, America/New_York)", field="timezone"
        )
    team.timezone = name
    session.add(team)
    return team
