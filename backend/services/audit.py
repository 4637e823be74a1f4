"""The audit trail: who viewed or changed which patient, and when.

Rows hold ids, an action name and a short target such as ``plan:12``; never
health data, phone numbers or SMS text. The care-team pages write one row per
patient page view, export and change; admins read them on the audit page.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import func
from sqlmodel import Session, select

from backend.models import AuditEvent, Patient, User


def record_audit(
    session: Session,
    user: User | None,
    action: str,
    patient_id: int | None,
    now: datetime,
    *,
    target: str | None = None,
    team_id: int | None = None,
) -> AuditEvent:
    """Add one audit row (the caller commits, with the change it describes)."""
    event = AuditEvent(
        at=now,
        user_id=user.id if user is not None else None,
        team_id=team_id if team_id is not None else (user.team_id if user is not None else None),
        patient_id=patient_id,
        action=action[:60],
        target=target[:120] if target else None,
    )
    session.add(event)
    return event


def list_audit(
    session: Session,
    team_id: int,
    *,
    patient_id: int | None = None,
    page: int = 1,
    per_page: int = 100,
) -> tuple[list[tuple[AuditEvent, User | None, Patient | None]], int]:
    """The team's audit rows, newest first, with the user and patient they name."""
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
        {p.id: p for p in session.exec(select(Patient).where(Patient.id.in_(patient_ids))).all()}
        if patient_ids
        else {}
    )
    rows = [(e, users.get(e.user_id), patients.get(e.patient_id)) for e in events]
    return rows, int(total)
