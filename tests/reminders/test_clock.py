"""The clock process: jobs declared as data, with fixed ids and explicit misfire settings."""

from __future__ import annotations

from datetime import timedelta

from sqlmodel import select

from backend.services.sessions import start_user_session
from reminders.clock import build_scheduler, clock_jobs
from reminders.data.models import UserSession
from reminders.jobs import prune_sessions_job
from tests.conftest import reread


def test_jobs_have_fixed_ids_and_explicit_misfire_settings(engine) -> None:
    scheduler = build_scheduler(engine)
    jobs = {job.id: job for job in scheduler.get_jobs()}
    assert (
        set(jobs)
        == {spec.id for spec in clock_jobs()}
        == {
            "plan-messages",
            "follow-ups",
            "escalate-alerts",
            "decision-tasks",
            "prophylaxis-check",
            "prune-sessions",
            "prune-login-throttle",
            "delete-unknown-sender-sms",
            "trim-delivery-details",
        }
    )
    for spec in clock_jobs():
        job = jobs[spec.id]
        assert job.coalesce is True
        assert job.max_instances == 1
        assert job.misfire_grace_time == spec.misfire_grace_seconds
        assert job.trigger.interval.total_seconds() == spec.every_seconds


def test_the_retention_jobs_take_the_installations_periods() -> None:
    jobs = {spec.id: spec for spec in clock_jobs(45, 120)}
    assert jobs["delete-unknown-sender-sms"].func.keywords["older_than_days"] == 45
    assert jobs["trim-delivery-details"].func.keywords["older_than_days"] == 120
    assert jobs["delete-unknown-sender-sms"].every_seconds == 24 * 3600


def test_the_clock_command_runs_the_configured_retention_periods(app, monkeypatch) -> None:
    import reminders.clock

    app.config.update(UNKNOWN_SENDER_SMS_RETENTION_DAYS=31, DELIVERY_DETAILS_RETENTION_DAYS=8)
    seen: dict[str, tuple] = {}
    monkeypatch.setattr(
        reminders.clock, "run_clock", lambda engine, timing, jobs: seen.update(jobs=jobs)
    )
    result = app.test_cli_runner().invoke(args=["reminders", "clock"])
    assert result.exit_code == 0, result.output
    periods = {
        spec.id: spec.func.keywords["older_than_days"]
        for spec in seen["jobs"]
        if spec.id.startswith(("delete", "trim"))
    }
    assert periods == {
        "delete-unknown-sender-sms": 31,
        "trim-delivery-details": 8,
    }


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
