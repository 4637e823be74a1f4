"""Retention route: an admin applies the retention rules at once (``POST /api/v1/retention/run``).

The clock applies them daily (:mod:`reminders.data.retention`); this runs the same
rules with the app's configured periods and answers the counts. Admins only (403 for
other members); audited as ``run_retention`` with the counts as its target.
"""

from __future__ import annotations

from flask import current_app
from pydantic import BaseModel
from werkzeug.exceptions import Forbidden

from backend.api import api, current_user, request_now, responses, spec
from backend.api.auditing import audit, audited
from backend.db import get_session
from backend.schemas import ErrorOut
from backend.services.retention import retention_target, run_retention
from reminders.data.statuses import AuditAction


class RetentionOut(BaseModel):
    """What a retention run did: SMS from unknown numbers deleted, sent SMS trimmed."""

    unknown_sender_sms_deleted: int
    delivery_details_trimmed: int


@api.post("/retention/run")
@spec.validate(resp=responses(HTTP_200=RetentionOut, HTTP_403=ErrorOut), tags=["retention"])
@audited(AuditAction.RUN_RETENTION)
def run_retention_now():
    """Delete SMS from unknown numbers and trim delivery details past their periods (admins)."""
    if current_user().role != "admin":
        raise Forbidden("only an admin can run the retention rules")
    report = run_retention(get_session(), request_now(), current_app.config)
    audit(None, retention_target(report))
    return RetentionOut(**report.as_dict())
