"""Expected levels as the rule reads them (a data-layer service shared by the engine and the web).

The SMS conversation (:func:`apply_expected_levels`) and the patient page
(:func:`expected_level_notes`) read a patient's levels through these functions and judge
each reading with the one rule of ``reminders.core.expected_levels``, so that a reading the
SMS quieted is the reading the page marks.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import or_
from sqlalchemy.orm import aliased
from sqlmodel import Session, select

from reminders.core.expected_levels import (
    ExpectedLevelNote,
    may_be_quieted,
    quiet_decision,
    quieting_level,
)
from reminders.core.triage import TriageDecision
from reminders.data.models import ExpectedLevel, User

#: Who noted a level when no user did (a level written by a command or a script).
NOTED_BY_NOBODY = "the care team"


#: The user who ended a level early (a second join on the user table).
_ENDER = aliased(User)


def _name(user: User | None) -> str:
    return (user.name or user.email) if user is not None else NOTED_BY_NOBODY


def note_of(
    level: ExpectedLevel, author: User | None, ender: User | None = None
) -> ExpectedLevelNote:
    """The rule's view of a stored level, with the names of who noted it and who ended it."""
    return ExpectedLevelNote(
        id=level.id,  # type: ignore[arg-type]  (stored rows have an id)
        up_to_c=level.up_to_c,
        reason=level.reason,
        noted_by=_name(author),
        created_at=level.created_at,
        expires_at=level.expires_at,
        ended_at=level.ended_at,
        ended_by=_name(ender) if level.ended_at is not None else None,
    )


def _notes(session: Session, *conditions: Any) -> list[ExpectedLevelNote]:
    """The levels that meet ``conditions``, with their authors' names, newest first."""
    rows = session.exec(
        select(ExpectedLevel, User, _ENDER)
        .outerjoin(User, User.id == ExpectedLevel.created_by)
        .outerjoin(_ENDER, _ENDER.id == ExpectedLevel.ended_by)
        .where(*conditions)
        .order_by(ExpectedLevel.created_at.desc(), ExpectedLevel.id.desc())
    ).all()
    return [note_of(level, author, ender) for level, author, ender in rows]


def expected_level_notes(session: Session, patient_id: int) -> list[ExpectedLevelNote]:
    """Every level of the patient (in force, expired and ended), newest first."""
    return _notes(session, ExpectedLevel.patient_id == patient_id)


def levels_in_force(session: Session, patient_id: int, at: datetime) -> list[ExpectedLevelNote]:
    """The patient's levels in force at ``at`` (noted by then, not expired, not ended), newest first."""
    return _notes(
        session,
        ExpectedLevel.patient_id == patient_id,
        ExpectedLevel.created_at <= at,
        ExpectedLevel.expires_at > at,
        or_(ExpectedLevel.ended_at.is_(None), ExpectedLevel.ended_at > at),
    )


def apply_expected_levels(
    session: Session,
    patient_id: int,
    temperature_c: float | None,
    decision: TriageDecision,
    now: datetime,
) -> TriageDecision:
    """``decision`` quieted by a level in force now, or unchanged.

    The levels are read only for a reading some level could quiet (a slightly raised
    temperature and nothing else), so most replies make no extra query.
    """
    if not may_be_quieted(temperature_c, decision.rule_ids):
        return decision
    level = quieting_level(
        temperature_c, decision.rule_ids, levels_in_force(session, patient_id, now), now
    )
    return decision if level is None else quiet_decision(decision, level)
