"""The database goes away: the dispatcher and the clock log one line, back off, and carry on.

Issue 12, item 7. The outage is real (``tests/db_proxy.py``): on PostgreSQL a TCP proxy
drops the connections and refuses new ones; on SQLite the database file's directory is
moved away. Time is injected (the clock's ``now``, the dispatcher's clock); only the
dispatcher's short backoff waits are real, bounded by :class:`Reconnect` values given
here in hundredths of a second.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from threading import Event, Thread

import pytest
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from backend.schemas import PatientIn, PlanIn
from backend.services.patients import create_patient
from backend.services.plans import start_plan
from backend.services.teams import create_user
from reminders.clock import build_scheduler
from reminders.data.db import Reconnect, make_engine
from reminders.data.models import OutboundMessage, Patient, Team
from reminders.dispatch import run_dispatcher
from reminders.gateways import ConsoleGateway
from reminders.outbox import enqueue_message
from tests.conftest import Clock
from tests.db_proxy import DatabaseOutage, database_outage
from tests.twilio_fake import wait_until

#: Monday 2 March 2026, 10:00 UTC: the first day of the plan, a dose day.
NOW = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)
NAME = "Marie-Françoise Van den Bossche-Lefèvre"
PHONE = "+32 470 12 34 56"
FAST = Reconnect(first=0.05, longest=0.2)


@pytest.fixture
def outage(db_engine_name: str, database_url: str, tmp_path: Path) -> Iterator[DatabaseOutage]:
    """An outage switch for this run's database engine."""
    with database_outage(db_engine_name, database_url, tmp_path) as outage:
        yield outage


@pytest.fixture
def engine(outage: DatabaseOutage) -> Iterator[Engine]:
    """An engine as the processes make it (pre-ping on PostgreSQL), through the switch."""
    engine = make_engine(outage.url)
    yield engine
    engine.dispose()


@pytest.fixture
def patient(engine: Engine) -> Patient:
    """A consenting patient on alemtuzumab s.c. from today, never in quiet hours."""
    with Session(engine, expire_on_commit=False) as session:
        user = create_user(
            session,
            email="nurse@outage.example",
            team_name="Hématologie Saint-Luc",
            role="nurse",
            now=NOW,
            care_phone="+32 2 764 11 11",
        )
        team = session.get(Team, user.team_id)
        team.oncall_phone = "+32 470 99 99 99"
        session.add(team)
        patient = create_patient(
            session,
            user.team_id,
            PatientIn(
                display_name=NAME,
                phone=PHONE,
                sms_consent=True,
                language="fr",
                quiet_start=time(0, 0),
                quiet_end=time(0, 0),
            ),
            NOW - timedelta(days=1),
            region="BE",
        )
        start_plan(
            session,
            patient,
            PlanIn(regimen_id="alemtuzumab_sc", start_date=date(2026, 3, 2)),
            None,
            NOW - timedelta(days=1),
        )
        session.commit()
    return patient


def _due_rows(engine: Engine) -> list[OutboundMessage]:
    with Session(engine) as session:
        return list(
            session.exec(
                select(OutboundMessage)
                .where(OutboundMessage.due_at <= NOW)
                .order_by(OutboundMessage.id)
            ).all()
        )


def _one_line_records(caplog: pytest.LogCaptureFixture, logger: str) -> list[str]:
    """The messages of ``logger``'s warnings, each checked to be one line without traceback."""
    lines = []
    for record in caplog.records:
        if record.name != logger or record.levelno < logging.WARNING:
            continue
        message = record.getMessage()
        assert record.exc_info is None and "\n" not in message, message
        assert NAME not in message and PHONE.replace(" ", "") not in message, message
        lines.append(message)
    return lines


def test_dispatcher_waits_out_an_outage_then_sends_each_due_message_once(
    engine: Engine,
    outage: DatabaseOutage,
    patient: Patient,
    caplog: pytest.LogCaptureFixture,
) -> None:
    from reminders.jobs import plan_messages_job

    plan_messages_job(engine, NOW - timedelta(hours=12))
    with Session(engine) as session:
        # An urgent on-call alert queued just before the outage: it must not be lost.
        enqueue_message(
            session,
            team_id=patient.team_id,
            patient_id=patient.id,
            recipient="oncall",
            kind="oncall_alert",
            body=f"URGENT {NAME}: temperature 39.6 C reported",
            dedupe_key="outage:oncall",
            now=NOW,
            urgent=True,
        )
        session.commit()
    due = [
        m
        for m in _due_rows(engine)
        if m.status == "pending" and (m.not_after is None or m.not_after >= NOW)
    ]
    assert len(due) >= 2, [m.kind for m in due]

    stream = io.StringIO()
    stop = Event()
    outage.cut(engine)
    caplog.set_level(logging.INFO, logger="reminders.dispatch")
    dispatcher = Thread(
        target=run_dispatcher,
        args=(engine, ConsoleGateway(stream)),
        kwargs={
            "interval": 0.05,
            "threads": 2,
            "stop": stop,
            "clock": lambda: NOW,
            "reconnect": FAST,
        },
        daemon=True,
    )
    dispatcher.start()
    try:
        wait_until(
            lambda: (
                len(_one_line_records(caplog, "reminders.dispatch")) >= 4
                or not dispatcher.is_alive()
            ),
            timeout=20,
        )
        assert dispatcher.is_alive(), "the dispatcher exited on the outage"
        outage.restore()
        wait_until(
            lambda: (
                all(m.status == "sent" for m in _due_rows(engine) if m.id in {d.id for d in due})
                or not dispatcher.is_alive()
            ),
            timeout=30,
        )
        assert dispatcher.is_alive(), "the dispatcher exited after the outage"
    finally:
        stop.set()
        dispatcher.join(timeout=30)
    assert not dispatcher.is_alive()

    rows = {m.id: m for m in _due_rows(engine)}
    assert all(rows[m.id].status == "sent" for m in due), {rows[m.id].status for m in due}
    printed = stream.getvalue()
    for message in due:
        assert printed.count(message.body) == 1, message.kind
    # The outage's warnings (an SMS over its segment budget is counted apart).
    warnings = [w for w in _one_line_records(caplog, "reminders.dispatch") if "budget" not in w]
    assert all("database unreachable" in w for w in warnings), warnings
    delays = [float(w.rsplit("retrying in ", 1)[1].split(" ")[0]) for w in warnings]
    assert delays[:3] == [0.05, 0.1, 0.2] and max(delays) == FAST.longest, warnings
    assert any("reachable again" in r.getMessage() for r in caplog.records)


def test_clock_job_retries_sooner_with_backoff_and_plans_once_the_database_is_back(
    engine: Engine,
    outage: DatabaseOutage,
    patient: Patient,
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = Clock(NOW)
    scheduler = build_scheduler(engine, clock=clock, reconnect=Reconnect(first=1, longest=4))
    job = scheduler.get_job("plan-messages")
    caplog.set_level(logging.INFO, logger="reminders.clock")

    outage.cut(engine)
    try:
        retries = []
        for _ in range(4):
            job.func(*job.args, **job.kwargs)  # exactly what the scheduler's thread calls
            retries.append(scheduler.get_job("plan-messages").next_run_time - clock.now)
            clock.now = scheduler.get_job("plan-messages").next_run_time
    finally:
        outage.restore()
    # Sooner than the job's own interval (300 s), doubling up to the longest wait.
    assert retries == [timedelta(seconds=s) for s in (1, 2, 4, 4)], retries
    lines = _one_line_records(caplog, "reminders.clock")
    assert len(lines) == 4 and all("plan-messages" in line for line in lines), lines
    assert all("database unreachable" in line for line in lines), lines

    job.func(*job.args, **job.kwargs)
    assert _planned(engine), "no message planned after the outage"
    assert any("reachable again" in r.getMessage() for r in caplog.records)
    # Back to normal: the next failure starts the backoff from its first wait again.
    outage.cut(engine)
    try:
        job.func(*job.args, **job.kwargs)
    finally:
        outage.restore()
    assert scheduler.get_job("plan-messages").next_run_time - clock.now == timedelta(seconds=1)


def _planned(engine: Engine) -> list[OutboundMessage]:
    with Session(engine) as session:
        return list(session.exec(select(OutboundMessage)).all())


def test_a_failure_that_is_not_an_outage_is_still_logged_with_its_traceback(
    engine: Engine, caplog: pytest.LogCaptureFixture
) -> None:
    from reminders.clock import JobSpec

    def broken(engine: Engine, now: datetime) -> None:
        raise ValueError("a bug, not an outage")

    spec = JobSpec("broken", broken, 60, 50, "a job with a bug")
    scheduler = build_scheduler(engine, jobs=(spec,), clock=Clock(NOW))
    job = scheduler.get_job("broken")
    before = job.next_run_time
    caplog.set_level(logging.INFO, logger="reminders.clock")
    job.func(*job.args, **job.kwargs)
    errors = [r for r in caplog.records if r.name == "reminders.clock" and r.exc_info]
    assert len(errors) == 1 and "broken" in errors[0].getMessage()
    assert scheduler.get_job("broken").next_run_time == before  # no early retry for a bug
