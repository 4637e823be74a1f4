"""The clock process: jobs declared as data, with fixed ids and explicit misfire settings."""

from __future__ import annotations

from datetime import timedelta

from sqlmodel import select

from backend.services.sessions import start_user_session
from reminders.clock import CLOCK_JOBS, build_scheduler
from reminders.data.models import UserSession
from reminders.jobs import prune_sessions_job
from tests.conftest import reread


def test_jobs_have_fixed_ids_and_explicit_misfire_settings(engine) -> None:
    scheduler = build_scheduler(engine)
    jobs = {job.id: job for job in scheduler.get_jobs()}
    assert (
        set(jobs)
        == {spec.id for spec in CLOCK_JOBS}
        == {
            "plan-messages",
            "follow-ups",
            "escalate-alerts",
            "decision-tasks",
            "prophylaxis-check",
            "prune-sessions",
            "prune-login-throttle",
        }
    )
    for spec in CLOCK_JOBS:
        job = jobs[spec.id]
        assert job.coalesce is True
        assert job.max_instances == 1
        assert job.misfire_grace_time == spec.misfire_grace_seconds
        assert job.trigger.interval.total_seconds() == spec.every_seconds


def test_the_prune_job_deletes_session_rows_over_thirty_days_old(
    engine, session, make_user, clock
) -> None:
    user, _ = make_user()
    start_user_session(session, user, clock.now - timedelta(days=31))  # expired 30.5 days ago
    start_user_session(session, user, clock.now - timedelta(days=29))
    start_user_session(session, user, clock.now)
    session.commit()
    assert prune_sessions_job(engine, clock.now) == 1
    reread(session)
    kept = session.exec(select(UserSession.created_at).order_by(UserSession.created_at)).all()
    assert kept == [clock.now - timedelta(days=29), clock.now]
