"""Scheduled jobs: thin units of work over one session each, with ``now`` passed in.

The clock process runs these on a timer; ``flask --app backend reminders run-due
--now ...`` runs one pass of all of them as of a given instant.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import datetime
from functools import partial
from typing import Any, TypeVar

from sqlalchemy.engine import Engine
from sqlmodel import Session

from reminders import logcontext
from reminders.data.db import session_scope
from reminders.data.pruning import prune_login_throttle, prune_user_sessions
from reminders.data.retention import (
    DELIVERY_DETAILS_DAYS,
    UNKNOWN_SENDER_SMS_DAYS,
    delete_unknown_sender_sms,
    trim_delivery_details,
)
from reminders.decision_tasks import raise_due_decision_tasks
from reminders.delivery import DispatchReport
from reminders.dispatch import dispatch_due_messages
from reminders.escalation import escalate_alerts
from reminders.followups import check_mandatory_prophylaxis, follow_up_checkins
from reminders.gateways import SmsGateway
from reminders.metrics import observe_planning_pass
from reminders.planning import materialise_due_messages
from reminders.planning_workers import default_planning_processes

logger = logging.getLogger(__name__)

T = TypeVar("T")


def _in_session(
    engine: Engine, now: datetime, work: Callable[[Session, datetime], T], message: str
) -> T:
    """Run ``work`` in one job session as of ``now``; log its result with ``message``.

    Every timed job is this shape, so the session scope (commit, or rollback on an
    error) and the one log line per run are written once, under one job id.
    """
    # Named by the words before the colon of its line ("planning pass" -> "planning-pass").
    with logcontext.job_id(message.split(":")[0].replace(" ", "-")):
        with session_scope(engine) as session:
            result = work(session, now)
        logger.info(message, result)
    return result


def plan_messages_job(engine: Engine, now: datetime) -> int:
    """Write the next 24 hours of reminders and check-ins into the outbox.

    With more patients than one chunk, the pass plans in worker processes, one per
    core (:mod:`reminders.planning_workers`).
    """
    processes = default_planning_processes()
    started = time.perf_counter()
    created = _in_session(
        engine,
        now,
        lambda session, at: materialise_due_messages(session, at, processes=processes),
        "planning pass: %d new outbox rows",
    )
    observe_planning_pass(time.perf_counter() - started)  # committed passes only
    return created


def follow_ups_job(engine: Engine, now: datetime) -> dict[str, int]:
    """Re-send or flag unanswered check-ins."""
    return _in_session(engine, now, follow_up_checkins, "follow-ups: %s")


def escalate_alerts_job(engine: Engine, now: datetime) -> int:
    """Take the due escalation steps of urgent alerts nobody acknowledged (calls, backup, fallback)."""
    return _in_session(engine, now, escalate_alerts, "escalation: %d pages queued")


def decision_tasks_job(engine: Engine, now: datetime) -> int:
    """Put the decision milestones due by the patients' local today in the care-team queue."""
    return _in_session(engine, now, raise_due_decision_tasks, "decision tasks: %d new")


def prophylaxis_check_job(engine: Engine, now: datetime) -> int:
    """Alert the care team to plans whose mandatory prophylaxis is still undecided."""
    return _in_session(
        engine, now, check_mandatory_prophylaxis, "prophylaxis check: %d alerts raised"
    )


def prune_sessions_job(engine: Engine, now: datetime) -> int:
    """Delete the rows of dashboard sessions that ended or expired over 30 days ago."""
    return _in_session(engine, now, prune_user_sessions, "session rows pruned: %d")


def prune_login_throttle_job(engine: Engine, now: datetime) -> int:
    """Forget sign-in throttling counters with no failure and no success for 30 days."""
    return _in_session(
        engine, now, prune_login_throttle, "sign-in throttle: %d idle counters pruned"
    )


def retention_job(
    engine: Engine,
    now: datetime,
    *,
    rule: Callable[[Session, datetime, int], int],
    older_than_days: int,
    message: str,
) -> int:
    """Apply one retention ``rule`` to rows older than ``older_than_days``; log the count."""
    return _in_session(engine, now, partial(_apply_retention, rule, older_than_days), message)


def _apply_retention(
    rule: Callable[[Session, datetime, int], int],
    older_than_days: int,
    session: Session,
    at: datetime,
) -> int:
    return rule(session, at, older_than_days)


#: A retention job for the clock's list (``reminders.clock.CLOCK_JOBS``): (fixed id,
#: function of (engine, now), every seconds, misfire grace seconds, description).
RetentionJob = tuple[str, Callable[[Engine, datetime], int], int, int, str]
#: Daily, with a day's grace: a run missed while the clock was down is caught up at its start.
DAILY = 86_400


def retention_jobs(
    unknown_sender_days: int = UNKNOWN_SENDER_SMS_DAYS,
    delivery_details_days: int = DELIVERY_DETAILS_DAYS,
) -> tuple[RetentionJob, ...]:
    """The two retention jobs as data, with the configured periods.

    The clock's list takes them as ``JobSpec(*job)``; ``UNKNOWN_SENDER_SMS_RETENTION_DAYS``
    and ``DELIVERY_DETAILS_RETENTION_DAYS`` (``backend/config.py``) are the periods.
    """
    return (
        (
            "delete-unknown-sender-sms",
            partial(
                retention_job,
                rule=delete_unknown_sender_sms,
                older_than_days=unknown_sender_days,
                message="retention: %d SMS from unknown numbers deleted",
            ),
            DAILY,
            DAILY,
            f"delete SMS from unknown numbers received over {unknown_sender_days} days ago",
        ),
        (
            "trim-delivery-details",
            partial(
                retention_job,
                rule=trim_delivery_details,
                older_than_days=delivery_details_days,
                message="retention: delivery details of %d SMS trimmed",
            ),
            DAILY,
            DAILY,
            f"clear the delivery details of settled SMS over {delivery_details_days} days old",
        ),
    )


def dispatch_job(
    engine: Engine, gateway: SmsGateway, clock: Callable[[], datetime], **options: Any
) -> DispatchReport:
    """Send what is due."""
    with logcontext.job_id("dispatch"):
        report = dispatch_due_messages(engine, gateway, clock, **options)
        logger.info("dispatch: %s", report.as_dict())
    return report


def run_due(
    engine: Engine, gateway: SmsGateway, now: datetime, **dispatch_options: Any
) -> dict[str, Any]:
    """One planning, follow-up, escalation, prophylaxis-check and dispatch pass as of ``now``."""
    planned = plan_messages_job(engine, now)
    tasks = decision_tasks_job(engine, now)
    follow_ups = follow_ups_job(engine, now)
    pages = escalate_alerts_job(engine, now)
    prophylaxis_alerts = prophylaxis_check_job(engine, now)
    report = dispatch_job(engine, gateway, lambda: now, **dispatch_options)
    return {
        "planned": planned,
        "tasks": tasks,
        **follow_ups,
        "escalation_pages": pages,
        "prophylaxis_alerts": prophylaxis_alerts,
        **report.as_dict(),
    }
