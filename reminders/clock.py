"""The clock process: APScheduler 3 running the scheduled jobs, in exactly one process.

Jobs are declared as data with fixed ids and registered with
``replace_existing=True``, explicit misfire grace and coalescing, and one
instance at a time. The jobs keep no state in APScheduler: the outbox table is
the state, so a restart loses nothing and the in-memory job store suffices.
Dispatching runs in separate dispatcher processes (``reminders dispatch``).

While the database is unreachable, a job that fails logs one line (no traceback) and
is tried again sooner than its interval, after a growing wait (:class:`JobRunner`);
the clock itself never stops for it.
"""

from __future__ import annotations

import contextlib
import logging
import signal
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from apscheduler.schedulers.blocking import BlockingScheduler
from apscheduler.triggers.interval import IntervalTrigger
from sqlalchemy.engine import Engine

from reminders.data.db import RECONNECT, Reconnect, database_unavailable, outage_reason
from reminders.jobs import (
    decision_tasks_job,
    escalate_alerts_job,
    follow_ups_job,
    plan_messages_job,
    prophylaxis_check_job,
    prune_login_throttle_job,
    prune_sessions_job,
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
        "re-send unanswered check-ins, then flag them to the care team",
    ),
    # Every 15 s: a step of the escalation policy (a call at 5 min, the backup at 10)
    # is taken at most 15 s late. The first page is not this job's: it is queued with
    # the alert, in the webhook's transaction.
    JobSpec(
        "escalate-alerts",
        escalate_alerts_job,
        15,
        10,
        "page urgent alerts nobody acknowledged: call, backup, fallback number",
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
    JobSpec(
        "prune-sessions",
        prune_sessions_job,
        3600,
        3000,
        "delete dashboard session rows ended or expired over 30 days ago",
    ),
    JobSpec(
        "prune-login-throttle",
        prune_login_throttle_job,
        3600,
        3000,
        "forget sign-in throttling counters idle for 30 days",
    ),
)


def _utc_now() -> datetime:
    return datetime.now(UTC)


class JobRunner:
    """Runs one job for the scheduler; after an outage, has it tried again with backoff.

    A failure because the database is unreachable logs one line and moves the job's
    next run to ``reconnect``'s wait (growing with each failure in a row, never longer
    than the job's own interval); the first success after it logs that the database is
    back. Any other failure is logged with its traceback and waits for the next regular
    run, as before: a bug does not get retried every second.
    """

    def __init__(
        self,
        spec: JobSpec,
        engine: Engine,
        clock: Callable[[], datetime] = _utc_now,
        reconnect: Reconnect = RECONNECT,
    ) -> None:
        self.spec = spec
        self.engine = engine
        self.clock = clock
        self.reconnect = reconnect
        self.scheduler: BlockingScheduler | None = None
        self.failures = 0

    def __call__(self) -> None:
        """One run of the job as of ``clock()``."""
        now = self.clock()
        try:
            self.spec.func(self.engine, now)
        except Exception as exc:  # a failed pass must not stop the clock
            if not database_unavailable(exc):
                logger.exception("job %s failed", self.spec.id)
                return
            self.failures += 1
            delay = min(self.reconnect.delay(self.failures), float(self.spec.every_seconds))
            logger.warning(
                "job %s: database unreachable (%s); retrying in %g s",
                self.spec.id,
                outage_reason(exc),
                delay,
            )
            if self.scheduler is not None:
                self.scheduler.modify_job(
                    self.spec.id, next_run_time=now + timedelta(seconds=delay)
                )
            return
        if self.failures:
            logger.info(
                "job %s: database reachable again after %d failed runs", self.spec.id, self.failures
            )
            self.failures = 0


def build_scheduler(
    engine: Engine,
    jobs: tuple[JobSpec, ...] = CLOCK_JOBS,
    *,
    clock: Callable[[], datetime] = _utc_now,
    reconnect: Reconnect = RECONNECT,
) -> BlockingScheduler:
    """A scheduler with every job of ``jobs`` registered (not started).

    ``clock`` is the time each run is made as (and the first run's time).
    """
    scheduler = BlockingScheduler(timezone=UTC)
    for spec in jobs:
        runner = JobRunner(spec, engine, clock, reconnect)
        runner.scheduler = scheduler
        scheduler.add_job(
            runner,
            IntervalTrigger(seconds=spec.every_seconds, timezone=UTC),
            id=spec.id,
            name=spec.description,
            replace_existing=True,
            coalesce=True,
            max_instances=1,
            misfire_grace_time=spec.misfire_grace_seconds,
            next_run_time=clock(),  # run once at start: catch up after downtime
        )
    return scheduler


def run_clock(engine: Engine) -> None:
    """Run the clock until SIGTERM or Ctrl-C."""
    scheduler = build_scheduler(engine)
    signal.signal(signal.SIGTERM, lambda *_: scheduler.shutdown(wait=False))
    logger.info("clock started with jobs: %s", ", ".join(j.id for j in CLOCK_JOBS))
    with contextlib.suppress(KeyboardInterrupt, SystemExit):
        scheduler.start()
