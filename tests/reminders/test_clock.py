"""The clock process: jobs declared as data, with fixed ids and explicit misfire settings."""

from __future__ import annotations

from reminders.clock import CLOCK_JOBS, build_scheduler


def test_jobs_have_fixed_ids_and_explicit_misfire_settings(engine) -> None:
    scheduler = build_scheduler(engine)
    jobs = {job.id: job for job in scheduler.get_jobs()}
    assert (
        set(jobs)
        == {spec.id for spec in CLOCK_JOBS}
        == {
            "plan-messages",
            "follow-ups",
            "decision-tasks",
            "prophylaxis-check",
            "prune-login-throttle",
        }
    )
    for spec in CLOCK_JOBS:
        job = jobs[spec.id]
        assert job.coalesce is True
        assert job.max_instances == 1
        assert job.misfire_grace_time == spec.misfire_grace_seconds
        assert job.trigger.interval.total_seconds() == spec.every_seconds
