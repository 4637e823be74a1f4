"""Planning passes: idempotent materialisation, quiet hours, holds, opt-out, downtime."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy.exc import StatementError
from sqlmodel import delete, select

import reminders.outbox as outbox_module
from backend.schemas import HoldIn, ProphylaxisStopIn
from backend.services.plans import hold_plan
from backend.services.prophylaxis import courses_of, stop_course
from reminders.data.db import session_scope
from reminders.data.models import OutboundMessage, Plan, PlanningPass, ProphylaxisCourse
from reminders.jobs import run_due
from reminders.outbox import insert_ignoring_duplicates, outbox_row
from reminders.planning import (
    PASS_HISTORY,
    materialise_due_messages,
    planned_until,
    replan_patient,
)
from reminders.specs import prophylaxis_ongoing
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
        "premedication_by_team",  # the first injection is in hospital (issue 11, item 8)
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


def _outbox_state(session) -> dict[str, tuple[str, datetime]]:
    session.expire_all()
    return {m.dedupe_key: (m.status, m.due_at) for m in session.exec(select(OutboundMessage))}


def test_passes_after_a_committed_pass_store_what_full_look_backs_would(
    engine, session, treated_patient, make_patient, clock
) -> None:
    """The planned-until mark only skips work: five-minute passes for two days store the same
    outbox as the same passes each looking back a whole freshness window."""
    clock.now = MONDAY_6AM_BRUSSELS - timedelta(days=1)
    treated_patient()
    treated_patient(regimen_id="inotuzumab_weekly", quiet_start=time(22, 0), quiet_end=time(9, 0))
    moments = [MONDAY_6AM_BRUSSELS + timedelta(minutes=5 * k) for k in range(0, 2 * 288, 7)]
    with session_scope(engine) as s:
        s.exec(delete(OutboundMessage))  # what enrolment planned, so both runs start alike
    for moment in moments:
        with session_scope(engine) as s:
            materialise_due_messages(s, moment)
    marked = _outbox_state(session)
    assert len(session.exec(select(PlanningPass)).all()) == len(moments)
    with session_scope(engine) as s:
        s.exec(delete(OutboundMessage))
        s.exec(delete(PlanningPass))
    for moment in moments:
        with session_scope(engine) as s:
            materialise_due_messages(s, moment)
            s.exec(delete(PlanningPass))  # every pass looks back in full
    assert _outbox_state(session) == marked
    assert len(marked) > 40


def test_a_pass_starts_where_the_last_committed_pass_stopped(
    engine, session, treated_patient, clock
) -> None:
    clock.now = MONDAY_6AM_BRUSSELS - timedelta(days=1)
    patient = treated_patient()
    with session_scope(engine) as s:
        materialise_due_messages(s, MONDAY_6AM_BRUSSELS)
    later = MONDAY_6AM_BRUSSELS + timedelta(hours=1)
    with session_scope(engine) as s:
        assert planned_until(s, later) == MONDAY_6AM_BRUSSELS + timedelta(hours=24)
        # A pass made after the moment asked for is not trusted.
        assert planned_until(s, MONDAY_6AM_BRUSSELS - timedelta(minutes=1)) is None
        # A message of the covered window that vanished is not planned again by a pass...
        pill = s.exec(
            select(OutboundMessage).where(
                OutboundMessage.kind == "pill_reminder",
                OutboundMessage.due_at >= later,
            )
        ).first()
        key = pill.dedupe_key
        s.delete(pill)
    with session_scope(engine) as s:
        materialise_due_messages(s, later)
        assert (
            s.exec(select(OutboundMessage).where(OutboundMessage.dedupe_key == key)).first() is None
        )
    # ...but re-planning the patient (what every change of plan or preferences does) looks
    # back in full and restores it.
    with session_scope(engine) as s:
        replan_patient(s, patient.id, later)
    with session_scope(engine) as s:
        assert s.exec(select(OutboundMessage).where(OutboundMessage.dedupe_key == key)).one()


def test_after_a_stop_longer_than_any_freshness_the_pass_looks_back_in_full(
    engine, session, treated_patient, clock
) -> None:
    clock.now = MONDAY_6AM_BRUSSELS - timedelta(days=1)
    treated_patient()
    with session_scope(engine) as s:
        materialise_due_messages(s, MONDAY_6AM_BRUSSELS, horizon=timedelta(hours=1))
    restart = MONDAY_6AM_BRUSSELS + timedelta(days=3)
    with session_scope(engine) as s:
        assert materialise_due_messages(s, restart) > 0
    missed = outbox(session, status="missed")
    assert missed and min(m.due_at for m in missed) >= restart - timedelta(hours=24)
    with session_scope(engine) as s:
        passes = s.exec(select(PlanningPass).order_by(PlanningPass.planned_at)).all()
    assert [p.planned_from for p in passes] == [
        MONDAY_6AM_BRUSSELS - timedelta(hours=24),
        restart - timedelta(hours=24),
    ]


def test_old_planning_passes_are_pruned(engine, session, treated_patient, clock) -> None:
    clock.now = MONDAY_6AM_BRUSSELS - timedelta(days=1)
    treated_patient()
    for day in range(10):
        with session_scope(engine) as s:
            materialise_due_messages(s, MONDAY_6AM_BRUSSELS + timedelta(days=day))
    with session_scope(engine) as s:
        kept = s.exec(select(PlanningPass.planned_at)).all()
    assert min(kept) >= MONDAY_6AM_BRUSSELS + timedelta(days=9) - PASS_HISTORY
    assert len(kept) == 8


@pytest.fixture(params=["few rows", "many rows"])
def insert_path(request, monkeypatch) -> str:
    """Both PostgreSQL insert paths: a batched INSERT for a few rows, COPY for many.

    "many rows" lowers the COPY threshold to one row, so that a test's handful of rows
    takes the path a planning pass takes (SQLite has one path for both).
    """
    if request.param == "many rows":
        monkeypatch.setattr(outbox_module, "COPY_MIN_ROWS", 1)
    return request.param


def test_inserting_outbox_rows_counts_new_ones_and_stores_what_the_orm_reads(
    engine, session, treated_patient, clock, insert_path
) -> None:
    clock.now = MONDAY_6AM_BRUSSELS
    patient = treated_patient()
    brussels = ZoneInfo("Europe/Brussels")
    due = datetime(2026, 3, 3, 9, 30, tzinfo=brussels)  # any zone in, UTC out

    def row(key: str, **extra) -> dict:
        return {
            "team_id": patient.team_id,
            "patient_id": patient.id,
            "kind": "pill_reminder",
            "dedupe_key": key,
            "body": "Take your pills",
            "due_at": due,
            "next_attempt_at": due,
            "created_at": MONDAY_6AM_BRUSSELS,
            **extra,
        }

    with session_scope(engine) as s:
        s.exec(delete(OutboundMessage))
        assert insert_ignoring_duplicates(s, [row("a", urgent=True, not_after=due), row("b")]) == 2
        # An existing key and a repeated one are skipped; rows of other columns go in too.
        assert (
            insert_ignoring_duplicates(s, [row("a"), row("c"), row("c"), row("d", expects="taken")])
            == 2
        )
    stored = {m.dedupe_key: m for m in outbox(session)}
    assert sorted(stored) == ["a", "b", "c", "d"]
    a, b = stored["a"], stored["b"]
    assert a.due_at == due and a.due_at.tzinfo is not None and a.not_after == due
    assert a.urgent is True and b.urgent is False and b.not_after is None
    # Columns a row leaves out take the model's defaults.
    assert (b.status, b.attempts, b.recipient) == ("pending", 0, "patient")
    assert stored["d"].expects == "taken"
    with session_scope(engine) as s, pytest.raises((ValueError, StatementError), match="naive"):
        insert_ignoring_duplicates(s, [row("e", due_at=datetime(2026, 3, 3, 9, 30))])


def test_the_bulk_insert_stores_exactly_what_an_orm_insert_stores(
    engine, session, treated_patient, clock, insert_path
) -> None:
    """Column by column, as the driver hands them back: text, flags, UTC instants, NULLs."""
    clock.now = MONDAY_6AM_BRUSSELS
    patient = treated_patient()
    new_york = ZoneInfo("America/New_York")
    due = datetime(2026, 3, 7, 21, 45, 30, 123456, tzinfo=new_york)  # a Saturday evening there

    def row(key: str, **extra) -> dict:
        return {
            "team_id": patient.team_id,
            "patient_id": patient.id,
            "kind": "milestone",
            "dedupe_key": key,
            "body": "Marie-Françoise Van den Bossche-Lefèvre, 3/6 : ça avance, à lundi !",
            "due_at": due,
            "next_attempt_at": due,
            "created_at": MONDAY_6AM_BRUSSELS,
            **extra,
        }

    variants = {
        "full": {"urgent": True, "not_after": due + timedelta(hours=3), "expects": "taken"},
        "defaults": {},
        "missed": {"status": "missed", "error_reason": "moment passed while the system was down"},
    }
    with session_scope(engine) as s:
        s.exec(delete(OutboundMessage))
        assert insert_ignoring_duplicates(
            s, [row(f"bulk:{name}", **extra) for name, extra in variants.items()]
        ) == len(variants)
        s.add_all(
            OutboundMessage(**row(f"orm:{name}", **extra)) for name, extra in variants.items()
        )
    session.commit()
    session.expire_all()
    columns = [c.name for c in OutboundMessage.__table__.c if c.name not in ("id", "dedupe_key")]
    with engine.connect() as connection:
        raw = {
            key: values
            for key, *values in connection.exec_driver_sql(
                f"SELECT dedupe_key, {', '.join(columns)} FROM outboundmessage"
            )
        }
    for name in variants:
        assert raw[f"bulk:{name}"] == raw[f"orm:{name}"], name
    stored = {m.dedupe_key: m for m in outbox(session)}
    assert stored["bulk:full"].due_at == due.astimezone(UTC)
    assert stored["bulk:full"].due_at.tzinfo is not None
    assert stored["bulk:defaults"].status == "pending" and stored["bulk:defaults"].urgent is False
    # Ids follow the rows' order, as with one INSERT per row.
    bulk_ids = [stored[f"bulk:{name}"].id for name in variants]
    assert bulk_ids == sorted(bulk_ids)


def test_the_one_row_builder_fills_every_insertable_outbox_column(
    engine, session, treated_patient, clock
) -> None:
    """Every outbox row is made by ``outbox_row``: all the columns the table takes (all
    but the id), so a new column is given a value in one place or no row has it."""
    clock.now = MONDAY_6AM_BRUSSELS
    patient = treated_patient()
    insertable = {column.name for column in OutboundMessage.__table__.c if not column.primary_key}

    def row(key: str, **columns) -> dict:
        return outbox_row(
            team_id=patient.team_id,
            kind="one_off",
            body="Bonjour Marie-Françoise, votre équipe vous rappelle demain à 9 h.",
            dedupe_key=key,
            now=MONDAY_6AM_BRUSSELS,
            patient_id=patient.id,
            **columns,
        )

    plain = row("builder:plain")
    assert set(plain) == insertable
    assert plain["due_at"] == plain["next_attempt_at"] == plain["created_at"] == MONDAY_6AM_BRUSSELS
    later = MONDAY_6AM_BRUSSELS + timedelta(hours=2)
    assert row("builder:later", due_at=later)["next_attempt_at"] == later
    with pytest.raises(ValueError, match="to_fone"):
        row("builder:typo", to_fone="+32470123456")
    with session_scope(engine) as s:
        assert insert_ignoring_duplicates(s, [plain]) == 1
    [stored] = outbox(session, dedupe_key="builder:plain")
    # The columns it was not given hold the model's defaults.
    assert (stored.status, stored.attempts, stored.recipient, stored.urgent) == (
        "pending",
        0,
        "patient",
        False,
    )
    assert stored.not_after is None and stored.provider_sid is None and stored.expects is None


def test_checkins_go_on_after_the_taper_until_every_course_is_stopped(
    engine, session, treated_patient, clock, make_user
) -> None:
    # Issue 11, item 7. Alemtuzumab s.c. from 2 March 2026, last injection 22 May; the
    # taper ends 39 weeks later (19 February 2027). Friday 19 March 2027 is past it.
    clock.now = MONDAY_6AM_BRUSSELS - timedelta(days=1)
    patient = treated_patient(display_name="Marie-Françoise Van den Bossche-Lefèvre")
    user, _ = make_user()
    friday = datetime(2027, 3, 19, 6, 0, tzinfo=UTC)
    with session_scope(engine) as s:
        materialise_due_messages(s, friday)
    [checkin] = outbox(session, patient_id=patient.id, kind="checkin_temperature")
    assert checkin.due_at == datetime(2027, 3, 19, 17, 0, tzinfo=UTC)  # 18:00 Brussels
    # The care team stops both courses (before the CD4 rule allows it: an override).
    for course in courses_of(session, patient.id):
        stop_course(
            session,
            course,
            patient,
            ProphylaxisStopIn(override_reason="CD4 recovered in another hospital"),
            user.id,
            friday + timedelta(hours=1),
        )
    session.commit()
    next_friday = friday + timedelta(weeks=1)
    with session_scope(engine) as s:
        materialise_due_messages(s, next_friday)
    kinds = [m.kind for m in outbox(session, patient_id=patient.id) if m.due_at > next_friday]
    assert "checkin_temperature" not in kinds


@pytest.mark.parametrize(
    ("status", "stopped_on", "plan_id", "latest", "ongoing"),
    [
        ("active", None, 7, False, True),  # entered for this plan
        ("proposed", None, 7, False, True),  # proposed, not yet confirmed: still runs
        ("stopped", date(2026, 11, 2), 7, True, False),
        ("declined", None, 7, True, False),
        ("active", date(2026, 11, 2), 7, True, False),
        ("active", None, 8, True, False),  # entered for another plan
        ("active", None, None, True, True),  # for no plan: counts for the latest plan
        ("active", None, None, False, False),  # ... only
    ],
)
def test_prophylaxis_ongoing_from_the_courses(status, stopped_on, plan_id, latest, ongoing) -> None:
    plan = Plan(id=7, patient_id=1, regimen_id="alemtuzumab_sc", start_date=date(2026, 3, 2))
    course = ProphylaxisCourse(
        id=3,
        patient_id=1,
        plan_id=plan_id,
        drug="cotrimoxazole (trimethoprim/sulfamethoxazole)",
        dose_text="960 mg three times a week, as prescribed",
        times=["08:00"],
        start_date=date(2026, 3, 2),
        status=status,
        stopped_on=stopped_on,
    )
    assert prophylaxis_ongoing(plan, [course], current=latest) is ongoing


# Issue 11, item 8: "first dose in hospital" and an observation time only where the
# regimen gives them for that dose (003, Table 2: the first alemtuzumab injection, then
# at least 2 hours of observation); premedication the hospital gives is announced as
# given by the team, never as a pill to take at home.
EVENING_KINDS = (
    "dose_reminder_evening_before",
    "dose_in_hospital_evening_before",
    "first_dose_in_hospital",
)
PREMED_KINDS = ("premedication_reminder", "premedication_by_team")


def course_messages(engine, session, treated_patient, clock, regimen_id: str):
    clock.now = MONDAY_6AM_BRUSSELS - timedelta(days=2)
    patient = treated_patient(regimen_id, display_name="Marie-Françoise Van den Bossche-Lefèvre")
    with session_scope(engine) as s:
        materialise_due_messages(
            s, MONDAY_6AM_BRUSSELS - timedelta(days=1), horizon=timedelta(days=200)
        )
    return outbox(session, patient_id=patient.id)


@pytest.mark.parametrize(
    "regimen_id", ["rituximab_cll_chemo", "alemtuzumab_iv", "inotuzumab_weekly"]
)
def test_later_infusions_never_say_first_dose_nor_an_observation_time(
    engine, session, treated_patient, clock, regimen_id
) -> None:
    messages = course_messages(engine, session, treated_patient, clock, regimen_id)
    first, *later = [m for m in messages if m.kind in EVENING_KINDS]
    assert later
    for message in later:
        assert message.kind == "dose_in_hospital_evening_before", message.body
        assert "first" not in message.body.lower() and "hours" not in message.body
        assert "hospital" in message.body
    if regimen_id == "alemtuzumab_iv":  # the first dose: in hospital, 2 hours (003, Table 2)
        assert first.kind == "first_dose_in_hospital"
        assert "first" in first.body and "2 hours" in first.body
    else:  # the source gives no observation time
        assert first.kind == "dose_in_hospital_evening_before"
        assert "first" not in first.body.lower() and "hours" not in first.body


@pytest.mark.parametrize(
    "regimen_id", ["rituximab_cll_chemo", "rituximab_fl_maintenance", "alemtuzumab_iv"]
)
def test_premedication_given_at_the_hospital_is_announced_as_given_by_the_team(
    engine, session, treated_patient, clock, regimen_id
) -> None:
    messages = course_messages(engine, session, treated_patient, clock, regimen_id)
    premeds = [m for m in messages if m.kind in PREMED_KINDS]
    assert premeds
    for message in premeds:
        assert message.kind == "premedication_by_team", message.body
        assert "take your" not in message.body.lower() and "hospital team gives" in message.body
        assert "Nothing to take at home" in message.body


def test_alemtuzumab_sc_first_injection_in_hospital_then_premedication_at_home(
    engine, session, treated_patient, clock
) -> None:
    messages = course_messages(engine, session, treated_patient, clock, "alemtuzumab_sc")
    first, *later = [m for m in messages if m.kind in EVENING_KINDS]
    assert first.kind == "first_dose_in_hospital"
    assert "first" in first.body and "2 hours" in first.body and "hospital" in first.body
    assert {m.kind for m in later} == {"dose_reminder_evening_before"}
    assert not any("first" in m.body.lower() or "hours" in m.body for m in later)
    first_premed, *home = [m for m in messages if m.kind in PREMED_KINDS]
    assert first_premed.kind == "premedication_by_team"  # the first injection, in hospital
    assert "take your" not in first_premed.body and "hospital team gives" in first_premed.body
    assert home and {m.kind for m in home} == {"premedication_reminder"}
    assert all("take your premedication" in m.body for m in home)
