"""Who is on call: the team's rota read at a given moment (a data-layer service).

The engine's escalation (``reminders.escalation``) and the web (the dashboard's "on call
now", the API) read the rota through these functions only, so that both name the same
person. :func:`team_policy` is the one reader of a team's escalation policy.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime

from sqlmodel import Session, select

from reminders.core.escalation import (
    EscalationPolicy,
    PolicyError,
    default_policy,
    policy_from_dict,
)
from reminders.data.models import OnCallShift, Team, User
from reminders.data.statuses import OnCallRole

logger = logging.getLogger(__name__)

#: A shift on the rota and the clinician who holds it.
ShiftHolder = tuple[OnCallShift, User]


@dataclass(frozen=True)
class OnCallNow:
    """The rota at one moment: the primary's and backup's shift and user (None when unfilled)."""

    primary: ShiftHolder | None
    backup: ShiftHolder | None


def on_call(session: Session, team_id: int, role: OnCallRole, at: datetime) -> ShiftHolder | None:
    """The shift of ``role`` covering ``at`` and its clinician, if an active user of the team holds it.

    Shifts may overlap at a handover: the one that started last wins (ties: the newest
    row). A shift whose user left the team or was deactivated covers nothing.
    """
    row = session.exec(
        select(OnCallShift, User)
        .join(User, User.id == OnCallShift.user_id)
        .where(
            OnCallShift.team_id == team_id,
            OnCallShift.role == role,
            OnCallShift.starts_at <= at,
            OnCallShift.ends_at > at,
            User.team_id == team_id,
            User.is_active.is_(True),
        )
        .order_by(OnCallShift.starts_at.desc(), OnCallShift.id.desc())
        .limit(1)
    ).first()
    return None if row is None else (row[0], row[1])


def on_call_now(session: Session, team: Team, at: datetime) -> OnCallNow:
    """The primary and the backup of ``team`` at ``at``."""
    return OnCallNow(
        primary=on_call(session, team.id, OnCallRole.PRIMARY, at),
        backup=on_call(session, team.id, OnCallRole.BACKUP, at),
    )


def team_policy(team: Team) -> tuple[EscalationPolicy, bool]:
    """The escalation policy ``team`` follows and whether it is the default one.

    A team's own policy was validated when it was saved (``policy_from_dict``); None on
    the team row means the defaults of ``reminders/core/escalation.toml``, and so does a
    stored policy the code no longer accepts (logged), so that no alert goes unpaged.
    """
    if team.escalation_policy is None:
        return default_policy(), True
    try:
        return policy_from_dict(team.escalation_policy), False
    except PolicyError as error:
        # Validated when saved; a stored policy the code no longer accepts must not
        # leave an urgent alert unpaged.
        logger.error(
            "team %s: stored escalation policy refused (%s); defaults used", team.id, error
        )
        return default_policy(), True
