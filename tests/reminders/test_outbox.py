"""Planning passes: idempotent materialisation, quiet hours, holds, opt-out, downtime."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta

from sqlmodel import delete, select

from backend.db import session_scope
from backend.models import OutboundMessage, Plan
from backend.schemas import HoldIn
from backend.services.plans import hold_plan
from reminders.jobs import run_due
from reminders.outbox import materialise_due_messages
from tests.reminders.conftest import outbox

MONDAY_6AM_BRUSSELS = datetime(2026, 3, 2, 5, 0, tzinfo=UTC)


def test_a_planning_pass_is_idempotent(engine, session, treated_patient, clock) -> None:
    clock.now = MONDAY_6AM_BRUSSELS - timedelta(days=1)
    patient = treated_patient()
    with session_scope(engine) as s:
        first = materialise_due_messages(s, MONDAY_6AM_BRUSSELS)
    with session_scope(engine) as s:
        second = materialise_due_messages(s, MONDAY_6AM_BRUSSELS)
    assert first > 0 and second == 0
    kinds = {m.kind for m in outbox(session, patient_id=patient.id)}
    assert {
        "first_dose_in_hospital",
        "pill_reminder",
        "premedication_reminder",
        "checkin_temperature",
        "lab_reminder",
    } <= kinds
    first_dose = outbox(session, kind="first_dose_in_hospital")[0]
    assert "2 hours" in first_dose.body or "2 h" in first_dose.body
    assert first_dose.due_at == datetime(
        2026, 3, 1, 18, 0, tzinfo=UTC
    )  # 19:00 Brussels, the evening before


def test_quiet_hours_defer_to_the_morning(engine, session, treated_patient, clock, console) -> None:
    clock.now = MONDAY_6AM_BRUSSELS - timedelta(days=1)
    patient = treated_patient(
        quiet_start=time(21, 0), quiet_end=time(8, 0), pill_times=["08:00", "20:00"]
    )
    run_due(
        engine, console, datetime(2026, 3, 2, 6, 30, tzinfo=UTC)
    )  # 07:30 local: inside quiet hours
    morning = outbox(session, patient_id=patient.id, kind="dose_reminder_morning")[0]
    assert morning.status == "pending"
    assert morning.due_at == datetime(2026, 3, 2, 7, 0, tzinfo=UTC)  # 07:30 local waits for 08:00
    run_due(engine, console, datetime(2026, 3, 2, 7, 0, tzinfo=UTC))
    assert outbox(session, id=morning.id)[0].status == "sent"


def test_a_hold_removes_dose_reminders_but_keeps_check_ins_and_pills(
    engine, session, treated_patient, clock
) -> None:
    clock.now = MONDAY_6AM_BRUSSELS
    patient = treated_patient()
    with session_scope(engine) as s:
        materialise_due_messages(s, MONDAY_6AM_BRUSSELS + timedelta(days=2))
    assert outbox(session, patient_id=patient.id, kind="dose_reminder_morning", status="pending")
    plan = session.exec(select(Plan).where(Plan.patient_id == patient.id)).one()
    hold_plan(
        session,
        plan,
        patient,
        HoldIn(reason="ANC 180/uL", start_date=date(2026, 3, 4)),
        None,
        MONDAY_6AM_BRUSSELS + timedelta(days=2),
    )
    session.commit()
    pending = {m.kind for m in outbox(session, patient_id=patient.id, status="pending")}
    assert "dose_reminder_morning" not in pending and "premedication_reminder" not in pending
    assert {"pill_reminder", "checkin_temperature"} <= pending


def test_opted_out_patients_get_nothing_planned(engine, session, treated_patient, clock) -> None:
    clock.now = MONDAY_6AM_BRUSSELS - timedelta(days=1)
    patient = treated_patient()
    patient.opted_out = True
    session.add(patient)
    session.commit()
    session.exec(select(OutboundMessage)).all()
    with session_scope(engine) as s:
        s.exec(delete(OutboundMessage))
        assert materialise_due_messages(s, MONDAY_6AM_BRUSSELS) == 0


def test_six_hours_of_downtime_sends_what_is_still_useful_and_marks_the_rest_missed(
    engine, session, treated_patient, clock, console
) -> None:
    clock.now = MONDAY_6AM_BRUSSELS - timedelta(days=1)
    patient = treated_patient(pill_times=["08:00", "20:00"])
    evening = datetime(
        2026, 3, 3, 16, 0, tzinfo=UTC
    )  # Tuesday 17:00 local, before the 18:00 check-in
    run_due(engine, console, evening)
    sent_before = len(outbox(session, patient_id=patient.id, status="sent"))
    # The clock stops for six hours: the 18:00 check-in, the 19:00 evening-before reminder
    # and the 20:00 pills pass unseen.
    restart = evening + timedelta(hours=6)  # 23:00 local
    report = run_due(engine, console, restart)
    rows = {
        m.kind: m for m in outbox(session, patient_id=patient.id) if evening < m.due_at <= restart
    }
    assert rows["checkin_temperature"].status == "missed"  # 3 h freshness passed
    # 20:00 pills (fresh until 23:00) and the 19:00 reminder of Wednesday's dose (fresh
    # until 05:00) would have to wait for the end of quiet hours at 07:00: too late.
    assert rows["pill_reminder"].status == "missed"
    assert rows["dose_reminder_evening_before"].status == "missed"
    # Wednesday's morning reminder is planned and will go out at 07:30.
    assert outbox(session, patient_id=patient.id, kind="dose_reminder_morning", status="pending")
    # No burst: nothing at all went out at 23:00 local.
    assert len(outbox(session, patient_id=patient.id, status="sent")) == sent_before
    assert report["sent"] == 0
