"""Alert routes: the team's alerts by urgency; acknowledge and resolve."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from backend.api import api, current_user, request_now, responses, spec
from backend.api.auditing import audit, audited
from backend.db import get_session
from backend.schemas import (
    AlertDetailOut,
    AlertEventOut,
    AlertOut,
    AlertPage,
    AlertQuery,
    ResolveIn,
)
from backend.serializers import alert_out
from reminders.data import alerts as alert_service
from reminders.data.statuses import AuditAction

TAGS = ["alerts"]
CHANGE = responses(HTTP_200=AlertOut, HTTP_409=None, HTTP_422=None)


def _change_alert(alert_id: int, change: Callable[..., Any], *args: Any) -> AlertOut:
    """Apply ``change(session, alert, user_id, *args, now)`` to one of the team's alerts.

    The alert is read through the caller's team (another team's alert is a 404), named
    in the audit row and answered with the reply its patient got.
    """
    session = get_session()
    alert = alert_service.get_alert(session, current_user().team_id, alert_id)
    change(session, alert, current_user().id, *args, request_now())
    audit(alert.patient_id, f"alert:{alert.id}")
    return alert_out(alert, alert_service.replies_to_patient(session, [alert]).get(alert.id))


@api.get("/alerts")
@spec.validate(query=AlertQuery, resp=responses(HTTP_200=AlertPage, HTTP_422=None), tags=TAGS)
@audited(AuditAction.LIST_ALERTS)
def list_alerts(query: AlertQuery):
    """Open and acknowledged alerts (or ``status=``), most urgent and oldest first.

    ``kind=decision_task`` lists the care-team tasks (decision milestones such as the
    week-4 response review), with the decision and its source.
    """
    session = get_session()
    # The query's fields are list_alerts' filters and page, by the same names.
    rows, total = alert_service.list_alerts(session, current_user().team_id, **query.model_dump())
    replies = alert_service.replies_to_patient(session, rows)
    audit(None, "alerts:list")
    return AlertPage(
        items=[alert_out(a, replies.get(a.id)) for a in rows],
        page=query.page,
        per_page=query.per_page,
        total=total,
    )


@api.get("/alerts/<int:alert_id>")
@spec.validate(resp=responses(HTTP_200=AlertDetailOut), tags=TAGS)
@audited(AuditAction.VIEW_ALERT)
def get_alert(alert_id: int):
    """One alert with its timeline: each page (SMS or call, to whom), its outcome, who acknowledged."""
    session = get_session()
    alert = alert_service.get_alert(session, current_user().team_id, alert_id)
    audit(alert.patient_id, f"alert:{alert.id}")
    out = alert_out(alert, alert_service.replies_to_patient(session, [alert]).get(alert.id))
    timeline = [
        AlertEventOut.model_validate(line, from_attributes=True)
        for line in alert_service.alert_timeline(session, alert.id)
    ]
    return AlertDetailOut(**out.model_dump(), timeline=timeline)


@api.post("/alerts/<int:alert_id>/acknowledge")
@spec.validate(resp=responses(HTTP_200=AlertOut, HTTP_409=None), tags=TAGS)
@audited(AuditAction.ACKNOWLEDGE_ALERT)
def acknowledge_alert(alert_id: int):
    """Mark an alert as seen: its escalation (calls, backup, fallback number) stops."""
    return _change_alert(alert_id, alert_service.acknowledge_alert)


@api.post("/alerts/<int:alert_id>/resolve")
@spec.validate(json=ResolveIn, resp=CHANGE, tags=TAGS)
@audited(AuditAction.RESOLVE_ALERT)
def resolve_alert(alert_id: int, json: ResolveIn):
    """Close an alert with a note (who and when are kept)."""
    return _change_alert(alert_id, alert_service.resolve_alert, json.note)
