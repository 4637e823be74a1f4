"""The retention page for admins (``/admin/retention``): the rules, what is due, run them now.

The clock applies the rules daily (:mod:`reminders.data.retention`); the page says what
they delete and keep, how many rows are past their period now (counts only), and lets an
admin run them at once (``POST /admin/retention/run``, audited ``run_retention``).
"""

from __future__ import annotations

from typing import Any

from flask import current_app

from backend.api import request_now
from backend.dashboard.web import admin_required, bp, render_page, save_team_change
from backend.db import get_session
from backend.services.retention import (
    configured_periods,
    retention_preview,
    retention_target,
    run_retention,
)
from reminders.data.statuses import AuditAction


@bp.get("/admin/retention", endpoint="retention")
@admin_required
def retention_page() -> Any:
    """The retention rules, their periods and the rows past them now."""
    return render_page(
        "retention.html",
        periods=configured_periods(current_app.config),
        due=retention_preview(get_session(), request_now(), current_app.config),
    )


@bp.post("/admin/retention/run")
@admin_required
def run_retention_now() -> Any:
    """Apply the retention rules now; the counts go to the audit trail and the next page."""
    report = run_retention(get_session(), request_now(), current_app.config)
    message = (
        f"Retention applied: {report.unknown_sender_sms_deleted} SMS from unknown numbers "
        f"deleted, delivery details of {report.delivery_details_trimmed} sent SMS cleared."
    )
    return save_team_change(
        AuditAction.RUN_RETENTION, retention_target(report), message, "dashboard.retention"
    )
