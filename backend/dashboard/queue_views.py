"""The triage queue and the alert actions: acknowledge, resolve with a note."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from flask import request, url_for

from backend.api import request_now
from backend.dashboard.forms import FormState, validate
from backend.dashboard.queries import alert_queue, users_by_id
from backend.dashboard.web import (
    audit,
    bp,
    current_team,
    current_user,
    refuse_change,
    render_page,
    safe_next,
    save_change,
)
from backend.db import get_session
from backend.schemas import ResolveIn
from backend.services.oncall import on_call_summary
from backend.services.patients import get_patient
from reminders.core.escalation import default_targets
from reminders.core.oncall_text import alert_code
from reminders.data import alerts as alert_service
from reminders.data.errors import ServiceError
from reminders.data.models import Alert, Patient
from reminders.data.statuses import AlertEventKind, AuditAction

#: How the alert page says each line of the timeline.
TIMELINE_WORDS = {
    AlertEventKind.PAGED: "Paged",
    AlertEventKind.SKIPPED: "Nobody to page",
    AlertEventKind.OUTCOME: "Page outcome",
    AlertEventKind.ACKNOWLEDGED: "Acknowledged",
    AlertEventKind.RESOLVED: "Resolved",
    AlertEventKind.REFUSED: "Refused",
}


def overdue_after() -> timedelta:
    """Urgent alerts unacknowledged for longer than this stand out (the acknowledgement target)."""
    return timedelta(minutes=default_targets().urgent_acknowledge_minutes)


@bp.get("/queue")
def queue() -> Any:
    """Open and acknowledged alerts of the team, most urgent and oldest first, and who is on call."""
    session = get_session()
    page = request.args.get("page", 1, type=int)  # not a number: the first page
    now = request_now()
    team = current_team()
    queue = alert_queue(session, team.id, now, overdue_after(), page)
    oncall = on_call_summary(session, team, now)
    audit(AuditAction.LIST_ALERTS, None, "alerts:list")  # the same row as GET /api/v1/alerts
    session.commit()
    return render_page(
        "queue.html",
        oncall=oncall,
        queue=queue,
        items=queue.items,
        overdue_minutes=int(overdue_after().total_seconds() // 60),
    )


def _alert_page(alert: Alert, patient: Patient, form: FormState, status: int = 200) -> Any:
    session = get_session()
    timeline = alert_service.alert_timeline(session, alert.id)
    users = users_by_id(
        session,
        [alert.acknowledged_by, alert.resolved_by, *(line.user_id for line in timeline)],
    )
    return render_page(
        "alert.html",
        status,
        alert=alert,
        patient=patient,
        users=users,
        timeline=timeline,
        timeline_words=TIMELINE_WORDS,
        code=alert_code(alert.id),
        reply=alert_service.replies_to_patient(session, [alert]).get(alert.id),
        form=form,
        waited=request_now() - alert.created_at,
    )


@bp.get("/alerts/<int:alert_id>")
def alert_detail(alert_id: int) -> Any:
    """One alert: what was reported, who acknowledged it, and the resolve form."""
    session = get_session()
    alert = alert_service.get_alert(session, current_user().team_id, alert_id)
    patient = get_patient(session, current_user().team_id, alert.patient_id)
    audit(AuditAction.VIEW_ALERT, patient.id, f"alert:{alert.id}")
    session.commit()
    return _alert_page(alert, patient, FormState())


@bp.post("/alerts/<int:alert_id>/acknowledge")
def acknowledge_alert(alert_id: int) -> Any:
    """Mark an alert as seen by the signed-in user (stops re-escalation to the on-call phone)."""
    session = get_session()
    alert = alert_service.get_alert(session, current_user().team_id, alert_id)
    alert_service.acknowledge_alert(session, alert, current_user().id, request_now())
    return _save_alert_change(AuditAction.ACKNOWLEDGE_ALERT, alert, "Alert acknowledged.")


@bp.post("/alerts/<int:alert_id>/resolve")
def resolve_alert(alert_id: int) -> Any:
    """Close an alert with a note; who and when are kept."""
    session = get_session()
    alert = alert_service.get_alert(session, current_user().team_id, alert_id)
    patient = get_patient(session, current_user().team_id, alert.patient_id)
    values = {"note": request.form.get("note", "")}
    data, state = validate(ResolveIn, values, values)
    if data is None:
        return _alert_page(alert, patient, state, 422)
    try:
        alert_service.resolve_alert(session, alert, current_user().id, data.note, request_now())
    except ServiceError as error:
        return refuse_change(
            error,
            values,
            ("note",),
            lambda state, status: _alert_page(alert, patient, state, status),
        )
    return _save_alert_change(AuditAction.RESOLVE_ALERT, alert, "Alert resolved.")


def _save_alert_change(action: AuditAction, alert: Alert, message: str) -> Any:
    """:func:`save_change` for an alert: back to the page the form came from, or the queue."""
    back = safe_next(request.form.get("next")) or url_for("dashboard.queue")
    return save_change(action, alert.patient_id, f"alert:{alert.id}", message, back)
