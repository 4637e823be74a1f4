"""Expected levels: the care team notes that a patient's low-grade temperature is expected.

A level quiets the re-check and the low-grade alert of a reading within it while it is
in force (``reminders.core.expected_levels``, the one home of the rule); never a fever, a
red flag or another symptom. The services take ``session`` and ``now``; the caller audits
(``set_expected_level`` / ``end_expected_level``) and commits.
"""

from __future__ import annotations

from datetime import datetime

from sqlmodel import Session, select

from backend.schemas import ExpectedLevelIn
from reminders.core.expected_levels import ExpectedLevelNote, level_problems
from reminders.data.errors import Conflict, InvalidInput
from reminders.data.expected_levels import expected_level_notes, levels_in_force, note_of
from reminders.data.models import ExpectedLevel, Patient, User


def levels_of(session: Session, patient: Patient) -> list[ExpectedLevelNote]:
    """Every level of the patient, newest first (in force, expired and ended)."""
    return expected_level_notes(session, patient.id)  # type: ignore[arg-type]


def level_note(session: Session, level: ExpectedLevel) -> ExpectedLevelNote:
    """One stored level as the rule and the pages read it (with its authors' names)."""
    author = session.get(User, level.created_by) if level.created_by is not None else None
    ender = session.get(User, level.ended_by) if level.ended_by is not None else None
    return note_of(level, author, ender)


def _lock(session: Session, patient: Patient) -> None:
    """Hold the patient's row until the commit: two nurses noting a level at once queue.

    PostgreSQL locks the row; SQLite's write transaction already serialises writers.
    """
    session.exec(select(Patient.id).where(Patient.id == patient.id).with_for_update())


def set_level(
    session: Session, patient: Patient, data: ExpectedLevelIn, user_id: int | None, now: datetime
) -> ExpectedLevel:
    """Note a level for ``patient`` until ``data.expires_at``.

    InvalidInput (naming the field) for a level at or above the fever threshold or below
    ``fever.recheck_from_c``, an expiry in the past or more than
    ``fever.expected_level.max_days`` ahead, or no reason. Conflict for a discharged
    patient, or while another level is in force (end it first: one level at a time, so
    that the page and the patient's answers name one).
    """
    problems = level_problems(data.up_to_c, data.expires_at, data.reason, now)
    if problems:
        field, message = next(iter(problems.items()))
        raise InvalidInput(message, field=field)
    if patient.discharged_at is not None:
        raise Conflict("the patient is discharged: no reading reaches the team")
    _lock(session, patient)
    if levels_in_force(session, patient.id, now):  # type: ignore[arg-type]
        raise Conflict(
            "an expected level is in force for this patient: end it before noting another"
        )
    level = ExpectedLevel(
        patient_id=patient.id,
        team_id=patient.team_id,
        up_to_c=data.up_to_c,
        reason=data.reason.strip(),
        expires_at=data.expires_at,
        created_by=user_id,
        created_at=now,
    )
    session.add(level)
    session.flush()
    return level


def end_level(
    session: Session, patient: Patient, user_id: int | None, now: datetime
) -> ExpectedLevel:
    """End the patient's level in force now (from now on it quiets nothing).

    Conflict when no level is in force (none noted, or it expired or ended already).
    """
    _lock(session, patient)
    in_force = levels_in_force(session, patient.id, now)  # type: ignore[arg-type]
    if not in_force:
        raise Conflict("no expected level is in force for this patient")
    level = session.exec(select(ExpectedLevel).where(ExpectedLevel.id == in_force[0].id)).one()
    level.ended_at, level.ended_by = now, user_id
    session.add(level)
    session.flush()
    return level
