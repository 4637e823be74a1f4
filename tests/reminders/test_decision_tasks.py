"""Decision milestones reach the care team as tasks (issue 11, item 9), on SQLite and PostgreSQL.

The week-4 response review of alemtuzumab ("no response in the blood after 4 weeks
should lead to discontinuation", 003_a1949903592dbecf.txt, Table 3) used to reach
only the patient, as a "Well done" SMS.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

from sqlmodel import select

from backend.schemas import HoldIn, ResumeIn, StopIn
from backend.services.plans import hold_plan, resume_plan, stop_plan
from reminders.clock import CLOCK_JOBS
from reminders.data.models import Alert, OutboundMessage, Plan
from reminders.jobs import decision_tasks_job, run_due
from tests.conftest import bearer, reread

NAME = "Marie-Françoise Van den Bossche-Lefèvre"
START = date(2026, 3, 2)  # a Monday
# 00:30 in Brussels on day 29 (30 March, after the DST change: UTC+2).
DAY_29_EARLY = datetime(2026, 3, 29, 22, 30, tzinfo=UTC)
DAY_28_LATE = datetime(2026, 3, 29, 21, 30, tzinfo=UTC)  # 23:30 on 29 March in Brussels


def tasks(session) -> list[Alert]:
    reread(session)
    return list(session.exec(select(Alert).where(Alert.kind == "decision_task")).all())


def test_week4_review_is_a_task_in_the_queue_on_its_local_day(
    engine, session, treated_patient, clock, console
) -> None:
    patient = treated_patient(display_name=NAME)
    assert decision_tasks_job(engine, DAY_28_LATE) == 0
    assert tasks(session) == []
    run_due(engine, console, DAY_29_EARLY)
    [task] = tasks(session)
    assert (task.severity, task.status, task.patient_id) == ("high", "open", patient.id)
    assert task.dedupe_key == f"task:{task.details['plan_id']}:week4_review"
    assert "sign of response in the blood after 4 weeks" in task.reason
    assert task.source.startswith("003_a1949903592dbecf.txt, Table 3")
    assert task.details["due_date"] == "2026-03-30"
    # Raised once: a second pass finds it.
    assert decision_tasks_job(engine, DAY_29_EARLY + timedelta(hours=5)) == 0
    assert len(tasks(session)) == 1


def test_the_patient_gets_no_well_done_for_the_review(
    engine, session, treated_patient, clock, console
) -> None:
    patient = treated_patient(display_name=NAME, language="fr")
    clock.now = DAY_29_EARLY
    run_due(engine, console, datetime(2026, 3, 30, 7, 30, tzinfo=UTC))
    reread(session)
    bodies = [
        m.body
        for m in session.exec(
            select(OutboundMessage).where(OutboundMessage.patient_id == patient.id)
        ).all()
        if m.kind.startswith("milestone")
    ]
    assert bodies, "the patient still hears that the team will review the treatment"
    for body in bodies:
        assert "Bravo" not in body and "Well done" not in body
        assert "faire le point" in body


def test_after_a_hold_the_review_comes_later(
    engine, session, treated_patient, clock, console
) -> None:
    patient = treated_patient(display_name=NAME)
    plan_id = patient_plan_id(session, patient.id)
    plan = session.get(Plan, plan_id)
    clock.now = datetime(2026, 3, 17, 8, 0, tzinfo=UTC)
    hold_plan(session, plan, patient, HoldIn(reason="febrile neutropenia"), None, clock.now)
    clock.now = datetime(2026, 3, 26, 8, 0, tzinfo=UTC)
    resume_plan(session, plan, patient, ResumeIn(), None, clock.now)
    session.commit()
    assert decision_tasks_job(engine, DAY_29_EARLY) == 0  # 9 days on hold: not yet
    assert decision_tasks_job(engine, datetime(2026, 4, 7, 21, 30, tzinfo=UTC)) == 0
    assert decision_tasks_job(engine, datetime(2026, 4, 7, 22, 30, tzinfo=UTC)) == 1
    [task] = tasks(session)
    assert task.details["due_date"] == "2026-04-08"


def test_no_task_for_a_stopped_plan(engine, session, treated_patient, clock) -> None:
    patient = treated_patient(display_name=NAME)
    plan = session.get(Plan, patient_plan_id(session, patient.id))
    clock.now = datetime(2026, 3, 20, 8, 0, tzinfo=UTC)
    stop_plan(session, plan, patient, StopIn(reason="progressive disease"), clock.now)
    session.commit()
    assert decision_tasks_job(engine, datetime(2026, 6, 1, 8, 0, tzinfo=UTC)) == 0
    assert tasks(session) == []


def test_tasks_do_not_need_sms_consent(engine, session, treated_patient) -> None:
    treated_patient(display_name=NAME, sms_consent=False)
    assert decision_tasks_job(engine, DAY_29_EARLY) == 1


def test_the_clock_runs_the_task_job_with_a_fixed_id() -> None:
    spec = {s.id: s for s in CLOCK_JOBS}["decision-tasks"]
    assert spec.func is decision_tasks_job
    assert spec.every_seconds <= 900 and spec.misfire_grace_seconds < spec.every_seconds


def test_the_task_shows_in_the_api_and_the_queue_with_decision_and_source(
    app, engine, session, treated_patient, make_user, client
) -> None:
    patient = treated_patient(display_name=NAME)
    decision_tasks_job(engine, DAY_29_EARLY)
    _, token = make_user()  # Team A, the patient's team
    response = client.get("/api/v1/alerts?kind=decision_task", headers=bearer(token))
    assert response.status_code == 200
    [item] = response.get_json()["items"]
    assert item["kind"] == "decision_task" and item["patient_id"] == patient.id
    assert "non-response" in item["reason"]
    assert item["details"]["decision"] and item["source"].startswith("003_a1949903592dbecf.txt")
    other_team = make_user(team="Team B")[1]
    assert client.get("/api/v1/alerts", headers=bearer(other_team)).get_json()["items"] == []


def patient_plan_id(session, patient_id: int) -> int:
    return session.exec(select(Plan.id).where(Plan.patient_id == patient_id)).one()
