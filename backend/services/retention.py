"""Retention run by hand: the clock's daily retention jobs, applied at once by an admin.

The rules and their periods are in :mod:`reminders.data.retention` (the clock runs them
there, without the web); this module applies them with the app's configured periods for
the API, the dashboard and the CLI, and names the run in the audit trail by its counts
only (``unknown_sms:3,delivery_details:12``): no number, no text.

A run deletes and clears only what the daily jobs would, at most a day early, and
the rules span the whole installation (SMS from unknown numbers belong to no team), so
any team's admin may run it.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from sqlmodel import Session

from reminders.data.retention import (
    RetentionPeriods,
    RetentionReport,
    apply_retention,
    retention_due,
)


def configured_periods(config: Mapping[str, Any]) -> RetentionPeriods:
    """The retention periods of the app's configuration."""
    return RetentionPeriods(
        unknown_sender_days=int(config["UNKNOWN_SENDER_SMS_RETENTION_DAYS"]),
        delivery_details_days=int(config["DELIVERY_DETAILS_RETENTION_DAYS"]),
    )


def run_retention(session: Session, now: datetime, config: Mapping[str, Any]) -> RetentionReport:
    """Apply both retention rules as of ``now`` with the configured periods (the caller commits)."""
    return apply_retention(session, now, configured_periods(config))


def retention_preview(
    session: Session, now: datetime, config: Mapping[str, Any]
) -> RetentionReport:
    """What :func:`run_retention` would delete and trim now (counts; nothing changes)."""
    return retention_due(session, now, configured_periods(config))


def retention_target(report: RetentionReport) -> str:
    """The audit row's target for a run: its two counts."""
    return (
        f"unknown_sms:{report.unknown_sender_sms_deleted},"
        f"delivery_details:{report.delivery_details_trimmed}"
    )
