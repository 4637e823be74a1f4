"""The clock process: APScheduler 3 running the scheduled jobs, in exactly one process.

Jobs are declared as data with fixed ids and registered with
``replace_existing=True``, explicit misfire grace and coalescing, and one
instance at a time. The jobs keep no state in APScheduler: the outbox table is
the state, so a restart loses nothing and the in-memory job store suffices.
Dispatching runs in separate dispatcher processes (``reminders dispatch``).
"""

from __future__ import annotations

import contextlib
import logging
import signal
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from apscheduler.schedulers.blocking import BlockingScheduler
from apscheduler.triggers.interval import IntervalTrigger
from sqlalchemy.engine import Engine

from reminders.jobs import (
    decision_tasks_job,
    follow_ups_job,
    plan_messages_job,
    prophylaxis_check_job,
)

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class JobSpec:
    """One scheduled job: a fixed id, what it runs and how often."""

    id: str
    func: Callable[[Engine, datetime], Any]
    every_seconds: int
    misfire_grace_seconds: int
    description: str


CLOCK_JOBS: tuple[JobSpec, ...] = (
    JobSpec(
        "plan-messages",
        plan_messages_job,
        300,
        240,
        "write the next 24 h of messages into the outbox",
    ),
    JobSpec(
        "follow-ups",
        follow_ups_job,
        60,
        50,
        "re-send unanswered check-ins, re-escalate urgent alerts",
    ),
    JobSpec(
        "decision-tasks",
        decision_tasks_job,
        600,
        540,
        "put due decision milestones (week-4 review) in the care-team queue",
    ),
    JobSpec(
        "prophylaxis-check",
        prophylaxis_check_job,
        300,
        240,
        "alert on plans whose mandatory prophylaxis is not active a day after the start",
    ),
)


def _run(spec: JobSpec, engine: Engine) -> None:
    try:
        spec.func(engine, datetime.now(UTC))
    except Exception:  # a failed pass must not stop the clock; the next pass retries
        logger.exception("job %s failed", spec.id)


def build_scheduler(engine: Engine, jobs: tuple[JobSpec, ...] = CLOCK_JOBS) -> BlockingScheduler:
    """A scheduler with every job of ``jobs`` registered (not started)."""
    scheduler = BlockingScheduler(timezone=UTC)
    for spec in jobs:
        scheduler.add_job(
            _run,
            IntervalTrigger(seconds=spec.every_seconds, timezone=UTC),
            args=(spec, engine),
            id=spec.id,
            name=spec.description,
            replace_existing=True,
            coalesce=True,
            max_instances=1,
            misfire_grace_time=spec.misfire_grace_seconds,
            next_run_time=datetime.now(UTC),  # run once at start: catch up after downtime
        )
    return scheduler


def run_clock(engine: Engine) -> None:
    """Run the clock until SIGTERM or Ctrl-C."""
    scheduler = build_scheduler(engine)
    signal.signal(signal.SIGTERM, lambda *_: scheduler.shutdown(wait=False))
    logger.info("clock started with jobs: %s", ", ".join(j.id for j in CLOCK_JOBS))
    with contextlib.suppress(KeyboardInterrupt, SystemExit):
        scheduler.start()
