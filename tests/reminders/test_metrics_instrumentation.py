"""The dispatcher's and the clock's events as metrics (``reminders/metrics.py``), read from the
process's registry with prometheus_client's own ``get_sample_value``.

Sends go through the real twilio client to the Twilio-compatible test server; its magic
numbers and faults give the error codes. Counters live for the whole test process, so
each test compares values before and after.
"""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.multiprocess import MultiProcessCollector
from sqlmodel import select

from reminders.core.templates import segments
from reminders.data.db import make_engine
from reminders.data.models import OutboundMessage, Patient
from reminders.dispatch import dispatch_due_messages
from reminders.gateways import TwilioGateway
from reminders.jobs import plan_messages_job
from reminders.metrics import EVENTS, DatabaseState, events
from tests.conftest import reread
from tests.reminders.conftest import queue_due
from tests.twilio_fake import FAKE_ACCOUNT_SID, FAKE_AUTH_TOKEN, FROM_VALID, TO_INVALID

NOW = datetime(2026, 3, 3, 10, 0, tzinfo=UTC)  # 11:00 in Brussels: no quiet hours


def sample(name: str, **labels: str) -> float:
    """A sample of this process's event metrics (0 before its series exists)."""
    events()
    return EVENTS.get_sample_value(name, labels) or 0.0


@pytest.fixture
def gateway(fake_twilio) -> TwilioGateway:
    return TwilioGateway(
        FAKE_ACCOUNT_SID,
        FAKE_AUTH_TOKEN,
        from_number=FROM_VALID,
        api_base_url=fake_twilio.base_url,
        timeout=1,
    )


@pytest.fixture
def patient(session, make_user, make_patient, clock) -> Patient:
    clock.now = NOW - timedelta(days=1)
    user, _ = make_user()
    patient = make_patient(
        user.team_id, sms_consent=False, display_name="Marie-Thérèse Vandenbroucke-Delacroix"
    )
    patient.sms_consent = True  # no welcome SMS: each test queues its own
    session.add(patient)
    session.commit()
    return patient


def test_accepted_sends_count_their_delay_and_segments(
    engine, session, patient, gateway, fake_twilio
) -> None:
    bodies = ["Rappel : prenez vos comprimés à 08:00.", "Reminder: blood test tomorrow. " * 8]
    queue_due(
        session, patient.team_id, [patient.id], bodies, prefix="m", due=NOW - timedelta(seconds=90)
    )
    count = sample("companion_send_delay_seconds_count", channel="sms")
    total = sample("companion_send_delay_seconds_sum", channel="sms")
    within_two_minutes = sample("companion_send_delay_seconds_bucket", channel="sms", le="120.0")
    within_a_minute = sample("companion_send_delay_seconds_bucket", channel="sms", le="60.0")
    sent_segments = sample("companion_sms_segments_total")

    report = dispatch_due_messages(engine, gateway, lambda: NOW)

    assert report.sent == 2
    assert sample("companion_send_delay_seconds_count", channel="sms") - count == 2
    assert sample("companion_send_delay_seconds_sum", channel="sms") - total == 180
    bucket = sample("companion_send_delay_seconds_bucket", channel="sms", le="120.0")
    assert bucket - within_two_minutes == 2
    assert (
        sample("companion_send_delay_seconds_bucket", channel="sms", le="60.0") - within_a_minute
        == 0
    )
    expected = sum(segments(body).segments for body in bodies)
    assert expected == 1 + 2
    assert sample("companion_sms_segments_total") - sent_segments == expected


def test_twilio_errors_are_counted_by_their_code(
    engine, session, patient, make_patient, gateway, fake_twilio
) -> None:
    unreachable = make_patient(
        patient.team_id, sms_consent=False, display_name="Jean-Édouard Peeters"
    )
    unreachable.phone = TO_INVALID  # set directly: the number only exists on the fake server
    unreachable.sms_consent = True
    session.add(unreachable)
    session.commit()
    codes = ("20429", "20500", "21211", "none")
    before = {code: sample("companion_twilio_errors_total", code=code) for code in codes}

    queue_due(session, patient.team_id, [patient.id], ["First"], prefix="a", due=NOW)
    fake_twilio.fail_next(1, "429")
    dispatch_due_messages(engine, gateway, lambda: NOW)
    fake_twilio.fail_next(1, "500")
    dispatch_due_messages(engine, gateway, lambda: NOW + timedelta(hours=1))
    assert dispatch_due_messages(engine, gateway, lambda: NOW + timedelta(hours=2)).sent == 1
    queue_due(session, patient.team_id, [unreachable.id], ["Second"], prefix="b", due=NOW)
    assert dispatch_due_messages(engine, gateway, lambda: NOW + timedelta(hours=3)).failed == 1
    queue_due(session, patient.team_id, [patient.id], ["Third"], prefix="c", due=NOW)
    fake_twilio.slow_seconds = 2  # past the gateway's 1 s timeout
    fake_twilio.fail_next(1, "slow")
    report = dispatch_due_messages(engine, gateway, lambda: NOW + timedelta(hours=4))
    assert report.unconfirmed == 1

    after = {code: sample("companion_twilio_errors_total", code=code) for code in codes}
    assert {code: after[code] - before[code] for code in codes} == dict.fromkeys(codes, 1)


def test_an_sms_over_its_budget_is_counted_once_by_kind(
    engine, session, patient, gateway, fake_twilio
) -> None:
    long = "Bonjour, ceci est un rappel très long pour votre traitement de demain matin. " * 3
    queue_due(
        session,
        patient.team_id,
        [patient.id],
        [long],
        prefix="long",
        due=NOW,
        kind="pill_taken_ack",
    )
    over = sample("companion_sms_over_budget_total", kind="pill_taken_ack")
    fake_twilio.fail_next(1, "429")
    first = dispatch_due_messages(engine, gateway, lambda: NOW)
    retry = dispatch_due_messages(engine, gateway, lambda: NOW + timedelta(hours=1))
    assert (first.over_budget, first.retried, retry.over_budget, retry.sent) == (1, 1, 1, 1)
    # The pass reports count each claim; the metric counts the SMS once.
    assert sample("companion_sms_over_budget_total", kind="pill_taken_ack") - over == 1


def test_each_planning_pass_is_timed(engine, treated_patient) -> None:
    treated_patient()
    passes = sample("companion_planning_pass_seconds_count")
    took = sample("companion_planning_pass_seconds_sum")
    plan_messages_job(engine, datetime(2026, 3, 2, 10, 0, tzinfo=UTC))
    plan_messages_job(engine, datetime(2026, 3, 2, 10, 5, tzinfo=UTC))
    assert sample("companion_planning_pass_seconds_count") - passes == 2
    assert sample("companion_planning_pass_seconds_sum") > took


def test_a_metric_that_cannot_be_recorded_never_stops_a_send(
    engine, session, patient, gateway, fake_twilio, monkeypatch, caplog
) -> None:
    def broken() -> None:
        raise OSError("No space left on device")

    monkeypatch.setattr("reminders.metrics.events", broken)
    queue_due(session, patient.team_id, [patient.id], ["Hello"], prefix="c", due=NOW)
    with caplog.at_level("WARNING", logger="reminders.metrics"):
        report = dispatch_due_messages(engine, gateway, lambda: NOW)
    assert report.sent == 1
    assert reread(session).exec(select(OutboundMessage)).one().status == "sent"
    assert "metric not recorded: observe_accepted" in caplog.text


def test_an_unreachable_database_is_a_zero_not_an_error(tmp_path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'missing' / 'companion.sqlite3'}")
    found = {
        family.name: [s.value for s in family.samples]
        for family in DatabaseState(engine, NOW).collect()
    }
    engine.dispose()
    assert found == {"companion_database_up": [0]}


def test_importing_the_engine_writes_no_metric_file(tmp_path) -> None:
    """Metrics are built on first use: a web worker that never sends leaves no file."""
    directory = tmp_path / "prometheus"
    directory.mkdir()
    subprocess.run(
        [sys.executable, "-c", "import reminders.metrics, reminders.dispatch, reminders.jobs"],
        env={"PROMETHEUS_MULTIPROC_DIR": str(directory), "PATH": "/usr/bin:/bin"},
        cwd=Path(__file__).parents[2],
        check=True,
    )
    assert list(directory.iterdir()) == []


def test_the_first_events_of_several_sender_threads_are_all_counted(tmp_path) -> None:
    """A dispatcher's first sends come from its sender threads at once: none is lost while
    the metrics are being built (fresh processes in multiprocess mode, as dispatchers start)."""
    program = (
        "from concurrent.futures import ThreadPoolExecutor\n"
        "from reminders.metrics import count_twilio_error\n"
        "with ThreadPoolExecutor(8) as pool:\n"
        "    list(pool.map(lambda _: count_twilio_error('20429', 429), range(64)))\n"
    )
    runs = 5
    for run in range(runs):
        directory = tmp_path / str(run)
        directory.mkdir()
        subprocess.run(
            [sys.executable, "-c", program],
            cwd=Path(__file__).parents[2],
            env={"PATH": "/usr/bin:/bin", "PROMETHEUS_MULTIPROC_DIR": str(directory)},
            check=True,
        )
        registry = CollectorRegistry()
        MultiProcessCollector(registry, path=str(directory))
        assert registry.get_sample_value("companion_twilio_errors_total", {"code": "20429"}) == 64
