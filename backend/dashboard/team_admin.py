"""Team administration for admins: members, roles, activation and the team's phone numbers.

Service functions in the style of ``backend.services`` (session and ``now`` in,
no Flask, the caller commits). Every look-up is scoped to the admin's team.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import func
from sqlmodel import Session, select

from backend.dashboard.forms import UserCreateIn
from backend.services.care_phone import refuse_removal
from backend.services.patients import normalize_phone
from backend.services.sessions import end_user_sessions
from backend.services.teams import create_user
from reminders.data.db import get_owned
from reminders.data.errors import Conflict
from reminders.data.models import Team, User
from reminders.data.statuses import SessionEnd


def team_users(session: Session, team_id: int) -> list[User]:
    """The team's members, active first, by name then email."""
    return list(
        session.exec(
            select(User)
            .where(User.team_id == team_id)
            .order_by(User.is_active.desc(), User.name, User.email)
        ).all()
    )


def get_team_user(session: Session, team_id: int, user_id: int) -> User:
    """The member ``user_id`` of ``team_id``; NotFound for anyone else."""
    return get_owned(session, User, user_id, "user", team_id=team_id)


def add_member(session: Session, team: Team, member: UserCreateIn, now: datetime) -> User:
    """Create ``member`` in ``team``, who signs in with the password given (no API token)."""
    return create_user(
        session,
        email=member.email,
        team_name=team.name,
        role=member.role,
        now=now,
        password=member.password,
        name=member.name,
    )


def _active_admins(session: Session, team_id: int) -> int:
    return int(
        session.exec(
            select(func.count())
            .select_from(User)
            .where(User.team_id == team_id, User.role == "admin", User.is_active.is_(True))
        ).one()
    )


def change_role(session: Session, member: User, role: str, acting: User) -> User:
    """Give ``member`` a new role; the team keeps at least one active admin."""
    demoting = member.role == "admin" and role != "admin" and member.is_active
    if demoting and _active_admins(session, member.team_id) <= 1:
        raise Conflict("the team needs at least one admin", field="role")
    member.role = role
    session.add(member)
    return member


def set_active(session: Session, member: User, active: bool, acting: User, now: datetime) -> User:
    """Deactivate a member (every session of theirs ends in the same transaction) or reactivate.

    A reactivated member signs in again: their old sessions stay ended.
    """
    if not active and member.id == acting.id:
        raise Conflict("you cannot deactivate yourself")
    if not active and member.role == "admin" and _active_admins(session, member.team_id) <= 1:
        raise Conflict("the team needs at least one active admin")
    member.is_active = active
    if not active:
        end_user_sessions(session, member.id, now, SessionEnd.USER_DEACTIVATED)
    session.add(member)
    return member


def end_member_sessions(session: Session, member: User, now: datetime) -> int:
    """An admin signs ``member`` (of their own team: see :func:`get_team_user`) out everywhere."""
    return end_user_sessions(session, member.id, now, SessionEnd.ENDED_BY_ADMIN)


def set_team_phones(
    session: Session, team: Team, *, care_phone: str | None, oncall_phone: str | None, region: str
) -> Team:
    """Store the team's care and on-call numbers as E.164 (empty clears a number).

    The care phone is not cleared while an active patient of the team has SMS consent
    (Conflict): their SMS tell them to call it (``backend.services.care_phone``).
    """
    new_care_phone = normalize_phone(care_phone, region, field="care_phone") if care_phone else None
    new_oncall_phone = (
        normalize_phone(oncall_phone, region, field="oncall_phone") if oncall_phone else None
    )
    # Both numbers are read first: a typing error is answered (422) before the state (409).
    refuse_removal(session, team, new_care_phone)
    team.care_phone = new_care_phone
    team.oncall_phone = new_oncall_phone
    session.add(team)
    return team
