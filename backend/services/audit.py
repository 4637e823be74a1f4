"""The audit trail: who viewed or changed which patient, when, and through which channel.

Rows hold ids, an action from :class:`reminders.data.statuses.AuditAction` (one vocabulary for the
API, the care-team pages and the CLI), a short target such as ``plan:12`` and the channel;
never health data, phone numbers or SMS text. A change and its row are committed in one
transaction; a read gets its row before the data leaves. Rows are append-only (ORM guard
and database triggers in ``reminders/data/models.py``): nothing here or anywhere in the app
edits or deletes one. Admins read their team's rows on the audit page.

Refused requests leave no row, with one exception: a user who names a patient (or their
plan, course or alert) of *another* team gets the same 404 as for an id that does not
exist, and :func:`record_refused_access` adds a ``refused_other_team`` row to the trail of
the team that holds the patient. That team answers for its patients' records and is the
one that must see probing, by a mistyped integration or by someone enumerating ids. The
row is not in the caller's team, whose admins would otherwise learn that the id exists
elsewhere (the 404 is the same for both cases so that nobody can). Ids that exist nowhere,
and the caller's own objects (a dose index that does not exist), leave no row: there is no
patient to protect, and typing errors would bury the real attempts.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from sqlalchemy import func
from sqlmodel import Session, select

from reminders.data.models import Alert, AuditEvent, Patient, Plan, ProphylaxisCourse, User
from reminders.data.statuses import AuditAction, AuditChannel

#: Where a request's session says which channel it serves (set by the API and the pages).
CHANNEL_KEY = "audit_channel"


def set_channel(session: Session, channel: AuditChannel) -> None:
    """Mark ``session`` as serving ``channel``: its audit rows (services' too) carry it."""
    session.info[CHANNEL_KEY] = channel


def channel_of(session: Session) -> AuditChannel:
    """The channel ``session`` serves: the API or the pages say so; otherwise the CLI.

    Sessions outside a web request are opened by the CLI commands (the clock and the
    dispatcher write no audit rows).
    """
    return AuditChannel(session.info.get(CHANNEL_KEY, AuditChannel.CLI))


def record_audit(
    session: Session,
    user: User | None,
    action: AuditAction | str,
    patient_id: int | None,
    now: datetime,
    *,
    target: str | None = None,
    team_id: int | None = None,
    channel: AuditChannel | None = None,
) -> AuditEvent:
    """Add one audit row (the caller commits, with the change it describes).

    ``action`` must be an :class:`AuditAction` (or its value): an unknown name raises
    ``ValueError``, so every caller keeps to the one vocabulary. ``team_id`` defaults to
    the user's team and ``channel`` to the session's (:func:`channel_of`).
    """
    event = AuditEvent(
        at=now,
        user_id=user.id if user is not None else None,
        team_id=team_id if team_id is not None else (user.team_id if user is not None else None),
        patient_id=patient_id,
        action=AuditAction(action).value,
        target=target[:120] if target else None,
        channel=(channel or channel_of(session)).value,
    )
    session.add(event)
    return event


#: The URL arguments that name something of one patient, most specific first.
PATIENT_BOUND_ARGUMENTS = ("course_id", "alert_id", "plan_id", "patient_id")


def owner_of(session: Session, argument: str, object_id: int) -> tuple[int, int] | None:
    """(team id, patient id) of the object a URL argument names, or None if there is none."""
    patient_id: int | None
    if argument == "alert_id":
        alert = session.get(Alert, object_id)
        return (alert.team_id, alert.patient_id) if alert is not None else None
    if argument == "course_id":
        course = session.get(ProphylaxisCourse, object_id)
        patient_id = course.patient_id if course is not None else None
    elif argument == "plan_id":
        plan = session.get(Plan, object_id)
        patient_id = plan.patient_id if plan is not None else None
    elif argument == "patient_id":
        patient_id = object_id
    else:
        return None
    patient = session.get(Patient, patient_id) if patient_id is not None else None
    return (patient.team_id, patient.id) if patient is not None else None


def record_refused_access(
    session: Session,
    user: User,
    url_arguments: Mapping[str, Any],
    now: datetime,
    channel: AuditChannel,
) -> AuditEvent | None:
    """After a 404: a ``refused_other_team`` row if the URL named another team's patient.

    The row goes to the patient's team (see the module docstring for why), names the
    user who asked and the object (``plan:12``). The caller has rolled back the failed
    request and commits. Returns the row, or None when the id exists nowhere or belongs
    to the user's own team.
    """
    for argument in PATIENT_BOUND_ARGUMENTS:
        object_id = url_arguments.get(argument)
        if not isinstance(object_id, int):
            continue
        owner = owner_of(session, argument, object_id)
        if owner is None or owner[0] == user.team_id:
            return None
        team_id, patient_id = owner
        kind = argument.removesuffix("_id")
        return record_audit(
            session,
            user,
            AuditAction.REFUSED_OTHER_TEAM,
            patient_id,
            now,
            target=f"{kind}:{object_id}",
            team_id=team_id,
            channel=channel,
        )
    return None


def list_audit(
    session: Session,
    team_id: int,
    *,
    patient_id: int | None = None,
    page: int = 1,
    per_page: int = 100,
) -> tuple[list[tuple[AuditEvent, User | None, Patient | None]], int]:
    """The team's audit rows, newest first, with the user and patient they name.

    The user of a ``refused_other_team`` row is of another team: the page says so.
    """
    query = select(AuditEvent).where(AuditEvent.team_id == team_id)
    if patient_id is not None:
        query = query.where(AuditEvent.patient_id == patient_id)
    total = session.exec(select(func.count()).select_from(query.subquery())).one()
    events = session.exec(
        query.order_by(AuditEvent.at.desc(), AuditEvent.id.desc())
        .offset((page - 1) * per_page)
        .limit(per_page)
    ).all()
    user_ids = {e.user_id for e in events if e.user_id is not None}
    patient_ids = {e.patient_id for e in events if e.patient_id is not None}
    users = (
        {u.id: u for u in session.exec(select(User).where(User.id.in_(user_ids))).all()}
        if user_ids
        else {}
    )
    patients = (
        {
            p.id: p
            for p in session.exec(
                # Defence in depth: a row of this team only ever names this team's patients.
                select(Patient).where(Patient.id.in_(patient_ids), Patient.team_id == team_id)
            ).all()
        }
        if patient_ids
        else {}
    )
    rows = [(e, users.get(e.user_id), patients.get(e.patient_id)) for e in events]
    return rows, int(total)
