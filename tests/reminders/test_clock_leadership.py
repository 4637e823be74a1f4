"""Clock failover, with the time injected: the lease (take, renew, expire, steal, release),
the advisory lock, and the fence every job run asks first.

The lease row runs on SQLite and PostgreSQL; the advisory lock on PostgreSQL only. Two
:class:`ClockLeader` s share one database as two clock processes would.
"""

from __future__ import annotations

import time
from datetime import datetime, timedelta

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import Engine

from reminders.clock import ClockLeader, ClockTiming, JobRunner, JobSpec
from reminders.data.db import session_scope
from reminders.data.leadership import (
    AdvisoryLock,
    LeaseRow,
    lease_holder,
    release_lease,
    renew_lease,
    take_lease,
)
from tests.conftest import Clock

LEASE = timedelta(seconds=30)
TIMING = ClockTiming(lease=LEASE, renew=timedelta(seconds=10), poll=timedelta(seconds=5))
A, B = "clock-a.hopital.example:4242:0a1b", "clock-b.hopital.example:4343:2c3d"


def _take(engine: Engine, holder: str, now: datetime) -> bool:
    with session_scope(engine) as session:
        return take_lease(session, holder, now, LEASE)


def _renew(engine: Engine, holder: str, now: datetime) -> bool:
    with session_scope(engine) as session:
        return renew_lease(session, holder, now, LEASE)


def _holder(engine: Engine, now: datetime) -> str | None:
    with session_scope(engine, write=False) as session:
        return lease_holder(session, now)


def test_the_lease_is_taken_renewed_refused_and_taken_over_once_expired(
    engine: Engine, clock: Clock
) -> None:
    t0 = clock.now
    assert _take(engine, A, t0)  # the first ask creates the row
    assert not _take(engine, B, t0 + timedelta(seconds=5))  # held: the standby waits
    assert _take(engine, A, t0 + timedelta(seconds=6))  # its holder may ask again
    assert _renew(engine, A, t0 + timedelta(seconds=20))  # now runs to t0 + 50 s
    assert not _take(engine, B, t0 + timedelta(seconds=45))
    assert _holder(engine, t0 + timedelta(seconds=49)) == A
    # Expired: free for anyone, and the old holder cannot renew it any more.
    assert _holder(engine, t0 + timedelta(seconds=50)) is None
    assert not _renew(engine, A, t0 + timedelta(seconds=50))
    assert _take(engine, B, t0 + timedelta(seconds=51))
    assert not _renew(engine, A, t0 + timedelta(seconds=52))
    assert not _take(engine, A, t0 + timedelta(seconds=52))
    assert _holder(engine, t0 + timedelta(seconds=52)) == B
    # Released: the other takes it at once, long before it would have expired.
    with session_scope(engine) as session:
        release_lease(session, A, t0 + timedelta(seconds=53))  # not A's: nothing happens
    assert _holder(engine, t0 + timedelta(seconds=53)) == B
    with session_scope(engine) as session:
        release_lease(session, B, t0 + timedelta(seconds=54))
    assert _take(engine, A, t0 + timedelta(seconds=54))


def _leader(engine: Engine, clock: Clock, holder: str, **kwargs: object) -> ClockLeader:
    # No jobs: the scheduler's thread has nothing to run, the fence is asked directly.
    return ClockLeader(
        engine,
        LeaseRow(engine, holder, lease=LEASE, clock=clock),
        TIMING,
        jobs=(),
        clock=clock,
        **kwargs,
    )


def test_the_standby_takes_over_when_the_active_clock_stops_renewing_and_the_old_one_is_fenced(
    engine: Engine, clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("INFO", logger="reminders.clock")
    first, second = _leader(engine, clock, A), _leader(engine, clock, B)
    try:
        assert first.step() == 10.0 and first.active
        assert second.step() == 5.0 and not second.active
        assert first.fence() and not second.fence()
        clock.advance(seconds=10)
        assert first.step() == 10.0 and first.active  # renewed to t0 + 40 s
        # The active clock freezes (no renewal); the standby polls on.
        for _ in range(5):
            clock.advance(seconds=5)
            second.step()
            assert not second.active
        # The trust in its last renewal ran out first (lease - renew = 20 s after it).
        assert not first.fence()
        clock.advance(seconds=5)  # t0 + 40 s: the lease has expired
        assert second.step() == 10.0 and second.active and second.fence()
        # The frozen one wakes up: its next job run is refused, and it stands down.
        assert not first.fence()
        assert first.step() == 0.0 and not first.active
        assert first.step() == 5.0 and not first.active
    finally:
        first.stop()
        second.stop()
    messages = [r.getMessage() for r in caplog.records]
    assert f"clock {B} on standby: the active clock is {A}" in messages
    assert f"clock {B} is the active clock (lease); jobs: " in messages
    assert f"clock {A} renewed its lease too late: its jobs are stopped" in messages


def test_a_stolen_lease_stops_the_old_clock_at_its_next_renewal(
    engine: Engine, clock: Clock
) -> None:
    first, second = _leader(engine, clock, A), _leader(engine, clock, B)
    try:
        first.step()
        # A pause longer than the lease, seen by the database: the standby takes over,
        # then the old clock's renewal (still inside its own trust window) is refused.
        assert _take(engine, B, clock.now + LEASE)
        assert not first.fence()  # the database says the lease is B's
        clock.advance(seconds=10)
        assert first.step() == 0.0 and not first.active
        assert _holder(engine, clock.now) == B
        del second
    finally:
        first.stop()


def test_a_lease_written_after_waiting_for_the_write_lock_counts_from_the_write(
    engine: Engine, clock: Clock
) -> None:
    # SQLite's write lock came 15 s after the ask (another process was writing): the
    # lease and the clock's trust count from then, not from an instant already past.
    written = Clock(clock.now + timedelta(seconds=15))
    lease_row = LeaseRow(engine, A, lease=LEASE, clock=written)
    leader = ClockLeader(engine, lease_row, TIMING, jobs=(), clock=clock)
    try:
        leader.step()
        assert leader.trusted_until == written.now + LEASE - TIMING.renew
        assert _holder(engine, written.now + LEASE - timedelta(seconds=1)) == A
        assert _holder(engine, written.now + LEASE) is None
        clock.now = written.now + timedelta(seconds=10)
        assert leader.fence()
    finally:
        leader.stop()


def test_a_job_run_asks_the_fence_first(engine: Engine, clock: Clock) -> None:
    runs: list[datetime] = []
    spec = JobSpec("record", lambda _engine, now: runs.append(now), 60, 50, "records its runs")
    first, second = _leader(engine, clock, A), _leader(engine, clock, B)
    try:
        first.step()
        second.step()
        JobRunner(spec, engine, clock, fence=first.fence)()
        JobRunner(spec, engine, clock, fence=second.fence)()
        assert runs == [clock.now]
        first.stop()  # a clean stop releases the lease: the standby takes it at once
        second.step()
        JobRunner(spec, engine, clock, fence=first.fence)()
        JobRunner(spec, engine, clock, fence=second.fence)()
        assert runs == [clock.now, clock.now] and second.active
    finally:
        first.stop()
        second.stop()


def test_clock_timing_refuses_renewals_too_rare_for_the_lease() -> None:
    with pytest.raises(ValueError, match="2 x renew < lease"):
        ClockTiming(lease=timedelta(seconds=10), renew=timedelta(seconds=5))
    with pytest.raises(ValueError, match="poll > 0"):
        ClockTiming(poll=timedelta(0))


# --- PostgreSQL: the advisory lock --------------------------------------------------------


def _terminate(engine: Engine, lock: AdvisoryLock) -> None:
    """What the server does when the holder's process dies: its session ends."""
    with engine.connect() as connection:
        connection.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": lock.backend_pid})


@pytest.mark.postgresql_only
def test_the_advisory_lock_has_one_holder_and_is_free_when_its_session_ends(
    engine: Engine, clock: Clock
) -> None:
    first = AdvisoryLock(engine, A, lease=LEASE)
    second = AdvisoryLock(engine, B, lease=LEASE)
    try:
        assert first.acquire(clock.now) and first.renew(clock.now) and first.holds(clock.now)
        assert second.acquire(clock.now) is None and not second.holds(clock.now)
        assert second.current_holder(clock.now) == A
        _terminate(engine, first)
        assert not first.holds(clock.now)
        assert second.acquire(clock.now) and second.holds(clock.now)
        with pytest.raises(Exception):  # noqa: B017 (the driver's error for a killed session)
            first.renew(clock.now)
        assert first.renew(clock.now) is None and not first.holds(clock.now)  # no new connection
        second.release(clock.now)
        assert first.acquire(clock.now)
    finally:
        first.release(clock.now)
        second.release(clock.now)


@pytest.mark.postgresql_only
def test_the_lock_is_per_schema(engine: Engine, clock: Clock) -> None:
    from tests.conftest import POSTGRES_URL

    other = create_engine(POSTGRES_URL)  # the server's default schema, not this session's
    here, there = AdvisoryLock(engine, A, lease=LEASE), AdvisoryLock(other, B, lease=LEASE)
    try:
        assert here.acquire(clock.now) and there.acquire(clock.now)
        assert here.key != there.key
    finally:
        here.release(clock.now)
        there.release(clock.now)
        other.dispose()


@pytest.mark.postgresql_only
def test_a_frozen_holder_loses_the_lock_after_an_idle_lease(engine: Engine, clock: Clock) -> None:
    # The server's own timer (idle_session_timeout) is the thing under test: real time.
    first = AdvisoryLock(engine, A, lease=timedelta(seconds=1))
    second = AdvisoryLock(engine, B, lease=timedelta(seconds=1))
    try:
        assert first.acquire(clock.now)
        assert second.acquire(clock.now) is None
        time.sleep(1.6)  # no heartbeat on the lock's session for longer than the lease
        assert second.acquire(clock.now)
        assert not first.holds(clock.now)
    finally:
        first.release(clock.now)
        second.release(clock.now)


@pytest.mark.postgresql_only
def test_a_leader_whose_lock_session_ends_stops_its_jobs(
    engine: Engine, clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("INFO", logger="reminders.clock")
    first = ClockLeader(engine, AdvisoryLock(engine, A, lease=LEASE), TIMING, jobs=(), clock=clock)
    second = ClockLeader(engine, AdvisoryLock(engine, B, lease=LEASE), TIMING, jobs=(), clock=clock)
    try:
        first.step()
        second.step()
        assert first.active and first.fence() and not second.active and not second.fence()
        _terminate(engine, first.leadership)  # type: ignore[arg-type]
        assert not first.fence()  # at once, before its next heartbeat
        assert second.step() == 10.0 and second.active and second.fence()
        clock.advance(seconds=10)
        assert first.step() == 0.0 and not first.active
        assert first.step() == 5.0 and not first.active  # the standby now
    finally:
        first.stop()
        second.stop()
    messages = " | ".join(r.getMessage() for r in caplog.records)
    assert f"clock {A} lost the clock lock" in messages
    assert f"clock {B} is the active clock (lock)" in messages
