"""The clock process: APScheduler 3 running the scheduled jobs, in exactly one process.

Two clock processes may run (failover): each asks for the clock's lock (PostgreSQL) or
lease (SQLite) of :mod:`reminders.data.leadership`; the one that holds it runs the
scheduler and renews it, the other stands by and asks again every few seconds
(:class:`ClockLeader`). A clock that loses it stops its scheduler at once, and every
job run first checks that this process still holds it (the fence); the jobs are safe
to run twice anyway (outbox rows are unique by ``dedupe_key``).

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

import logging
import signal
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.schedulers.base import BaseScheduler
from apscheduler.triggers.interval import IntervalTrigger
from sqlalchemy.engine import Engine

from reminders import logcontext
from reminders.data.db import RECONNECT, Reconnect, database_unavailable, outage_reason
from reminders.data.leadership import Leadership, leadership_for
from reminders.data.retention import DELIVERY_DETAILS_DAYS, UNKNOWN_SENDER_SMS_DAYS
from reminders.jobs import (
    decision_tasks_job,
    escalate_alerts_job,
    follow_ups_job,
    plan_messages_job,
    prophylaxis_check_job,
    prune_login_throttle_job,
    prune_sessions_job,
    retention_jobs,
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


def clock_jobs(
    unknown_sender_days: int = UNKNOWN_SENDER_SMS_DAYS,
    delivery_details_days: int = DELIVERY_DETAILS_DAYS,
) -> tuple[JobSpec, ...]:
    """Every job of the clock: :data:`CLOCK_JOBS` and the two daily retention jobs.

    The retention periods are the installation's configuration
    (``UNKNOWN_SENDER_SMS_RETENTION_DAYS``, ``DELIVERY_DETAILS_RETENTION_DAYS``), which
    the CLI passes in; the defaults are the data layer's (30 and 90 days).
    """
    retention = retention_jobs(unknown_sender_days, delivery_details_days)
    return CLOCK_JOBS + tuple(JobSpec(*job) for job in retention)


def _utc_now() -> datetime:
    return datetime.now(UTC)


class JobRunner:
    """Runs one job for the scheduler; after an outage, has it tried again with backoff.

    A failure because the database is unreachable logs one line and moves the job's
    next run to ``reconnect``'s wait (growing with each failure in a row, never longer
    than the job's own interval); the first success after it logs that the database is
    back. Any other failure is logged with its traceback and waits for the next regular
    run, as before: a bug does not get retried every second.

    ``fence``, when given, is asked before each run: False (this process is no longer
    the active clock) skips the run with one log line.
    """

    def __init__(
        self,
        spec: JobSpec,
        engine: Engine,
        clock: Callable[[], datetime] = _utc_now,
        reconnect: Reconnect = RECONNECT,
        fence: Callable[[], bool] | None = None,
    ) -> None:
        self.spec = spec
        self.engine = engine
        self.clock = clock
        self.reconnect = reconnect
        self.fence = fence
        self.scheduler: BaseScheduler | None = None
        self.failures = 0

    def __call__(self) -> None:
        """One run of the job as of ``clock()``, its log lines under one job id."""
        # The id wraps the fence, the failure and the outage lines too, which the job's own
        # id (set inside the job's session) would miss.
        with logcontext.job_id(self.spec.id):
            self._run()

    def _run(self) -> None:
        if self.fence is not None and not self.fence():
            logger.warning("job %s not run: this process is not the active clock", self.spec.id)
            return
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
    jobs: tuple[JobSpec, ...] | None = None,
    *,
    clock: Callable[[], datetime] = _utc_now,
    reconnect: Reconnect = RECONNECT,
    fence: Callable[[], bool] | None = None,
) -> BackgroundScheduler:
    """A scheduler with every job of ``jobs`` registered (not started).

    ``clock`` is the time each run is made as (and the first run's time); ``fence`` is
    asked before every run (:class:`JobRunner`).
    """
    scheduler = BackgroundScheduler(timezone=UTC)
    for spec in clock_jobs() if jobs is None else jobs:
        runner = JobRunner(spec, engine, clock, reconnect, fence)
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


@dataclass(frozen=True)
class ClockTiming:
    """How long the lock or lease lasts, how often the active clock renews it and the
    standby asks for it.

    A killed clock is replaced within ``poll`` on PostgreSQL (the server frees the lock
    with the connection) and within ``lease + poll`` on SQLite; a frozen one within
    ``lease + poll`` on both. The defaults (30, 10, 5 s) hand over in 35 s at most, inside
    the 60 s the operators were promised, with two renewals' slack before a slow
    heartbeat loses the lease. The active clock trusts its last renewal for
    ``lease - renew`` only (counted from when the renewal was written), so it stops
    before anyone could take over.
    """

    lease: timedelta = timedelta(seconds=30)
    renew: timedelta = timedelta(seconds=10)
    poll: timedelta = timedelta(seconds=5)

    def __post_init__(self) -> None:
        # The active clock trusts a renewal for lease - renew: a renewal made on time
        # (renew later) must fall inside it, with room for a slow one.
        if not timedelta(0) < 2 * self.renew < self.lease or self.poll <= timedelta(0):
            raise ValueError(
                "clock timing: need 0 < 2 x renew < lease and poll > 0, got "
                f"lease {self.lease.total_seconds():g} s, renew {self.renew.total_seconds():g} s, "
                f"poll {self.poll.total_seconds():g} s"
            )


class ClockLeader:
    """Runs the scheduler only while this process holds the clock's lock or lease.

    :meth:`step` is one turn of the main loop (as of ``clock()``) and returns how long to
    wait before the next: on standby it asks for the lock or lease and, on winning,
    starts a fresh scheduler (every job runs at once, catching up); while active it
    renews, and on losing (renewal refused, connection lost) shuts the scheduler down
    at once and stands by again. :meth:`fence` is what each job run asks first.
    """

    def __init__(
        self,
        engine: Engine,
        leadership: Leadership,
        timing: ClockTiming = ClockTiming(),
        *,
        jobs: tuple[JobSpec, ...] | None = None,
        clock: Callable[[], datetime] = _utc_now,
        reconnect: Reconnect = RECONNECT,
    ) -> None:
        self.engine = engine
        self.leadership = leadership
        self.timing = timing
        self.jobs = clock_jobs() if jobs is None else jobs
        self.clock = clock
        self.reconnect = reconnect
        self.scheduler: BackgroundScheduler | None = None
        self.trusted_until: datetime | None = None
        self.failures = 0
        self._last_seen_holder: str | None = None

    @property
    def holder(self) -> str:
        """This process's name as a holder (``hostname:pid:nonce``)."""
        return self.leadership.holder

    @property
    def active(self) -> bool:
        """Whether this process runs the scheduler now."""
        return self.scheduler is not None

    def fence(self) -> bool:
        """Whether a job may run now: active, renewed recently, and the database agrees."""
        now = self.clock()
        if not self.active or self.trusted_until is None or now >= self.trusted_until:
            return False
        try:
            return self.leadership.holds(now)
        except Exception as exc:  # cannot tell: do not run beside a possible successor
            logger.warning("clock %s: fence check failed (%s)", self.holder, outage_reason(exc))
            return False

    def step(self) -> float:
        """One turn of the main loop; the seconds to wait before the next."""
        now = self.clock()
        if self.active:
            return self._renew(now)
        try:
            return self._stand_by(now)
        except Exception as exc:
            if not database_unavailable(exc):
                raise
            self.failures += 1
            wait = min(self.reconnect.delay(self.failures), self.timing.poll.total_seconds())
            logger.warning(
                "clock %s: database unreachable (%s); retrying in %g s",
                self.holder,
                outage_reason(exc),
                wait,
            )
            return wait

    def _reachable(self) -> None:
        if self.failures:
            logger.info(
                "clock %s: database reachable again after %d failed attempts",
                self.holder,
                self.failures,
            )
            self.failures = 0

    def _stand_by(self, now: datetime) -> float:
        since = self.leadership.acquire(now)
        if since is None:
            self._reachable()
            holder = self.leadership.current_holder(now)
            if holder != self._last_seen_holder:
                logger.info("clock %s on standby: the active clock is %s", self.holder, holder)
                self._last_seen_holder = holder
            return self.timing.poll.total_seconds()
        self._reachable()
        self._last_seen_holder = None
        self.trusted_until = since + self.timing.lease - self.timing.renew
        self.scheduler = build_scheduler(
            self.engine, self.jobs, clock=self.clock, reconnect=self.reconnect, fence=self.fence
        )
        self.scheduler.start()
        logger.info(
            "clock %s is the active clock (%s); jobs: %s",
            self.holder,
            self.leadership.kind,
            ", ".join(j.id for j in self.jobs),
        )
        return self.timing.renew.total_seconds()

    def _renew(self, now: datetime) -> float:
        """The heartbeat; on any failure, step down and go straight back to standby."""
        kind = self.leadership.kind
        if self.trusted_until is None or now >= self.trusted_until:
            # The last renewal is too old (this process was frozen or its heartbeat
            # hung): another clock may be active already.
            self._step_down(f"renewed its {kind} too late", now)
            return 0.0
        try:
            since = self.leadership.renew(now)
        except Exception as exc:  # a lost connection is a lost lock
            self._step_down(f"lost the clock {kind} ({outage_reason(exc)})", now)
            return 0.0
        if since is None:
            self._step_down(f"lost the clock {kind}", now)
            return 0.0
        self.trusted_until = since + self.timing.lease - self.timing.renew
        return self.timing.renew.total_seconds()

    def _step_down(self, why: str, now: datetime) -> None:
        """Stop the scheduler (no job starts from now on; runs under way finish), then
        let go of the lock or lease if it is still this process's."""
        scheduler, self.scheduler, self.trusted_until = self.scheduler, None, None
        if scheduler is not None:
            logger.warning("clock %s %s: its jobs are stopped", self.holder, why)
            scheduler.shutdown(wait=True)
        try:
            self.leadership.release(now)
        except Exception as exc:  # a lease then simply expires; a lock went with its session
            logger.warning("clock %s: release failed (%s)", self.holder, outage_reason(exc))

    def stop(self) -> None:
        """A clean stop: the scheduler (after its runs under way), then the lock or lease."""
        self._step_down("is stopping", self.clock())
        logger.info("clock %s stopped", self.holder)


def run_clock(
    engine: Engine, timing: ClockTiming = ClockTiming(), jobs: tuple[JobSpec, ...] | None = None
) -> None:
    """Run the clock until SIGTERM or Ctrl-C: active while it holds the lock, else standby.

    ``jobs`` defaults to :func:`clock_jobs` with the default retention periods.
    """
    leadership = leadership_for(engine, lease=timing.lease)
    leader = ClockLeader(engine, leadership, timing, jobs=jobs)
    stopping = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopping.set())
    logger.info("clock %s started", leader.holder)
    try:
        while not stopping.is_set():
            stopping.wait(leader.step())
    except KeyboardInterrupt:
        pass
    finally:
        leader.stop()
