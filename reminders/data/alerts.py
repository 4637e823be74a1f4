"""Care-team alerts: raising them once, listing by urgency, acknowledging and resolving."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import case, func, update
from sqlmodel import Session, select

from reminders.data.db import add_and_flush, get_owned
from reminders.data.errors import Conflict
from reminders.data.models import Alert, AlertEvent, OutboundMessage, Patient
from reminders.data.statuses import AlertEventKind, AlertStatus, OutboxStatus

SEVERITY_RANK = {"urgent": 0, "high": 1, "routine": 2}


def raise_alert(
    session: Session,
    patient: Patient,
    *,
    severity: str,
    kind: str,
    reason: str,
    now: datetime,
    details: dict[str, Any] | None = None,
    source: str | None = None,
    dedupe_key: str | None = None,
) -> Alert:
    """Create an alert about ``patient``, or return the existing one with the same ``dedupe_key``.

    The alert goes to the patient's own team, read from the patient here rather than
    passed beside it, so that no caller can file a patient's alert with another team.
    """
    if dedupe_key is not None:
        existing = session.exec(select(Alert).where(Alert.dedupe_key == dedupe_key)).first()
        if existing is not None:
            return existing
    alert = Alert(
        team_id=patient.team_id,
        patient_id=patient.id,
        severity=severity,
        kind=kind,
        reason=reason,
        details=details or {},
        source=source,
        dedupe_key=dedupe_key,
        created_at=now,
    )
    return add_and_flush(session, alert)


def record_event(
    session: Session, alert_id: int, now: datetime, event: AlertEventKind, **fields: object
) -> AlertEvent:
    """Add a line to alert ``alert_id``'s timeline (a page, its outcome, an acknowledgement)."""
    line = AlertEvent(alert_id=alert_id, at=now, event=event, **fields)
    session.add(line)
    return line


def cancel_unsent_pages(session: Session, alert_id: int) -> int:
    """Cancel the pages of ``alert_id`` not handed to the carrier yet (someone acknowledged).

    A page still waiting (the dispatcher busy or down) must not wake a clinician for an
    alert a colleague already took. Returns how many were cancelled.
    """
    cancelled = session.execute(
        update(OutboundMessage)
        .where(
            OutboundMessage.alert_id == alert_id,
            OutboundMessage.recipient != "patient",
            OutboundMessage.status == OutboxStatus.PENDING,
        )
        .values(status=OutboxStatus.CANCELLED, error_reason="alert acknowledged")
    )
    return cancelled.rowcount


def alert_timeline(session: Session, alert_id: int) -> list[AlertEvent]:
    """Alert ``alert_id``'s timeline, oldest first."""
    timeline = select(AlertEvent).where(AlertEvent.alert_id == alert_id)
    return list(session.exec(timeline.order_by(AlertEvent.at, AlertEvent.id)).all())


def urgency_order() -> tuple[Any, ...]:
    """ORDER BY terms: most urgent first, then oldest first."""
    rank = case(SEVERITY_RANK, value=Alert.severity, else_=9)
    return (rank, Alert.created_at, Alert.id)


def list_alerts(
    session: Session,
    team_id: int,
    *,
    status: str | None = None,
    severity: str | None = None,
    kind: str | None = None,
    patient_id: int | None = None,
    page: int = 1,
    per_page: int = 50,
) -> tuple[list[Alert], int]:
    """The team's alerts, most urgent and oldest first; open and acknowledged by default."""
    query = select(Alert).where(Alert.team_id == team_id)
    if status is None:
        query = query.where(Alert.status != AlertStatus.RESOLVED)
    else:
        query = query.where(Alert.status == status)
    if severity is not None:
        query = query.where(Alert.severity == severity)
    if kind is not None:
        query = query.where(Alert.kind == kind)
    if patient_id is not None:
        query = query.where(Alert.patient_id == patient_id)
    total = session.exec(select(func.count()).select_from(query.subquery())).one()
    rows = session.exec(
        query.order_by(*urgency_order()).offset((page - 1) * per_page).limit(per_page)
    ).all()
    return list(rows), int(total)


def replies_to_patient(session: Session, alerts: list[Alert]) -> dict[int, OutboundMessage]:
    """The SMS each alert's patient was answered with, by alert id (one query).

    An alert raised by a patient's message names the answer to it in
    ``details["reply_key"]`` (``reminders.inbound.reply_key``): for a fever, the urgent
    advice. Its delivery status comes from Twilio's status callbacks. Alerts raised
    otherwise (labs, tasks, follow-ups) have none.
    """
    keys: dict[str, list[int]] = {}
    for alert in alerts:
        key = (alert.details or {}).get("reply_key")
        if isinstance(key, str) and alert.id is not None:
            keys.setdefault(key, []).append(alert.id)
    if not keys:
        return {}
    found: dict[int, OutboundMessage] = {}
    team_of = {alert.id: alert.team_id for alert in alerts}
    for message in session.exec(
        select(OutboundMessage).where(OutboundMessage.dedupe_key.in_(sorted(keys)))
    ).all():
        for alert_id in keys[message.dedupe_key]:
            if team_of[alert_id] == message.team_id:  # never another team's message
                found[alert_id] = message
    return found


def get_alert(session: Session, team_id: int, alert_id: int) -> Alert:
    """The alert ``alert_id`` of ``team_id``; NotFound for another team's."""
    return get_owned(session, Alert, alert_id, "alert", team_id=team_id)


def acknowledge_alert(
    session: Session,
    alert: Alert,
    user_id: int | None,
    now: datetime,
    *,
    channel: str = "web",
    detail: str | None = None,
) -> Alert:
    """Mark ``alert`` as seen by ``user_id`` (stops escalation); on the timeline once.

    ``user_id`` is None only for a key pressed on a call to the team's fallback number,
    which belongs to no one user (``detail`` says so). ``channel``: web, sms or voice.
    """
    if alert.status == AlertStatus.RESOLVED:
        raise Conflict("alert is already resolved")
    if alert.status == AlertStatus.OPEN:
        alert.status = AlertStatus.ACKNOWLEDGED
        alert.acknowledged_at = now
        alert.acknowledged_by = user_id
        session.add(alert)
        cancel_unsent_pages(session, alert.id)
        record_event(
            session,
            alert.id,
            now,
            AlertEventKind.ACKNOWLEDGED,
            channel=channel,
            user_id=user_id,
            detail=detail,
        )
    return alert


def resolve_alert(session: Session, alert: Alert, user_id: int, note: str, now: datetime) -> Alert:
    """Close ``alert`` with a note; acknowledging it on the way if nobody had."""
    if alert.status == AlertStatus.RESOLVED:
        raise Conflict("alert is already resolved")
    if alert.acknowledged_at is None:
        alert.acknowledged_at = now
        alert.acknowledged_by = user_id
        record_event(
            session, alert.id, now, AlertEventKind.ACKNOWLEDGED, channel="web", user_id=user_id
        )
    record_event(session, alert.id, now, AlertEventKind.RESOLVED, channel="web", user_id=user_id)
    alert.status = AlertStatus.RESOLVED
    alert.resolved_at = now
    alert.resolved_by = user_id
    alert.resolution_note = note
    session.add(alert)
    return alert
