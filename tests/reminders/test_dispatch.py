"""The dispatcher through the real twilio client: sends, retries, permanent failures, crashes."""

from __future__ import annotations

import subprocess
import sys
from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest
from sqlmodel import select

from reminders.core.regimens import get_regimen
from reminders.core.templates import get_template, render, segments
from reminders.data.db import session_scope
from reminders.data.models import Alert, OutboundMessage, Patient, Team
from reminders.delivery import MAX_ATTEMPTS, DispatchReport
from reminders.dispatch import (
    BATCH_MAX,
    BATCH_MIN,
    CLAIM_AHEAD_SECONDS,
    GROW_AFTER,
    _batch_size,
    claim_batch,
    dispatch_due_messages,
    release_claim,
    send_and_record,
)
from reminders.gateways import TwilioGateway
from reminders.outbox import insert_ignoring_duplicates, outbox_row
from tests.conftest import reread
from tests.reminders.conftest import dispatcher_environment, queue_due
from tests.twilio_fake import (
    FAKE_ACCOUNT_SID,
    FAKE_AUTH_TOKEN,
    FROM_VALID,
    TO_INVALID,
    TO_OPTED_OUT,
)

NOW = datetime(2026, 3, 3, 10, 0, tzinfo=UTC)  # 11:00 in Brussels: no quiet hours


@pytest.fixture
def gateway(fake_twilio) -> TwilioGateway:
    return TwilioGateway(
        FAKE_ACCOUNT_SID,
        FAKE_AUTH_TOKEN,
        from_number=FROM_VALID,
        api_base_url=fake_twilio.base_url,
        timeout=2,
    )


@pytest.fixture
def patient(session, make_user, make_patient, clock) -> Patient:
    clock.now = NOW - timedelta(days=1)
    user, _ = make_user()
    patient = make_patient(user.team_id, sms_consent=False)  # no welcome: the tests queue their own
    patient.sms_consent = True
    session.add(patient)
    session.commit()
    return patient


def queue(
    session, patient: Patient, count: int, *, due: datetime = NOW, prefix: str = "msg"
) -> None:
    bodies = [f"Test message {prefix} {n}" for n in range(count)]
    queue_due(session, patient.team_id, [patient.id], bodies, prefix=prefix, due=due)


def statuses(session) -> Counter:
    reread(session)
    return Counter(m.status for m in session.exec(select(OutboundMessage)).all())


def test_due_messages_are_sent_once_with_their_sid(
    engine, session, patient, gateway, fake_twilio
) -> None:
    queue(session, patient, 25)
    report = dispatch_due_messages(engine, gateway, lambda: NOW, batch_size=10, threads=4)
    assert report.sent == 25
    reread(session)
    rows = session.exec(select(OutboundMessage)).all()
    assert {m.provider_sid for m in rows} == {m["sid"] for m in fake_twilio.messages}
    assert all(m.status == "sent" and m.to_phone == patient.phone and m.attempts == 1 for m in rows)
    assert dispatch_due_messages(engine, gateway, lambda: NOW).claimed == 0
    assert len(fake_twilio.messages) == 25


def test_not_yet_due_messages_wait(engine, session, patient, gateway, fake_twilio) -> None:
    queue(session, patient, 3, due=NOW + timedelta(minutes=5))
    assert dispatch_due_messages(engine, gateway, lambda: NOW).claimed == 0
    assert dispatch_due_messages(engine, gateway, lambda: NOW + timedelta(minutes=5)).sent == 3


@pytest.mark.parametrize("fault", ["500", "429"])
def test_transient_failures_are_retried_with_backoff(
    engine, session, patient, gateway, fake_twilio, fault
) -> None:
    queue(session, patient, 1)
    fake_twilio.slow_seconds = 3  # past the gateway's 2 s timeout
    fake_twilio.fail_next(1, fault)
    first = dispatch_due_messages(engine, gateway, lambda: NOW)
    assert first.retried == 1 and first.sent == 0
    reread(session)
    message = session.exec(select(OutboundMessage)).one()
    assert message.status == "pending" and message.attempts == 1
    assert message.next_attempt_at >= NOW + timedelta(seconds=30)
    assert dispatch_due_messages(engine, gateway, lambda: NOW + timedelta(seconds=10)).claimed == 0
    later = dispatch_due_messages(engine, gateway, lambda: message.next_attempt_at)
    assert later.sent == 1
    assert statuses(session) == Counter(sent=1)


@pytest.mark.parametrize("fault", ["drop", "slow"])
def test_an_unanswered_send_is_checked_with_twilio_before_it_is_retried(
    engine, session, patient, gateway, fake_twilio, fault
) -> None:
    """No answer (timeout, dropped connection): Twilio may have the message, so ask first."""
    queue(session, patient, 1)
    fake_twilio.slow_seconds = 3  # past the gateway's 2 s timeout
    fake_twilio.fail_next(1, fault)
    first = dispatch_due_messages(engine, gateway, lambda: NOW)
    assert first.unconfirmed == 1 and first.sent == 0 and first.retried == 0
    reread(session)
    message = session.exec(select(OutboundMessage)).one()
    assert message.status == "unconfirmed" and message.attempts == 1 and message.error_reason
    # Not before the lease has expired: the answer may still be on its way.
    assert dispatch_due_messages(engine, gateway, lambda: NOW + timedelta(seconds=90)).sent == 0
    later = dispatch_due_messages(engine, gateway, lambda: NOW + timedelta(minutes=3))
    assert later.retried == 1 and later.reconciled == 0 and later.sent == 1
    assert statuses(session) == Counter(sent=1)
    assert len(fake_twilio.messages) == 1


def test_a_message_that_keeps_failing_is_marked_failed_and_alerts(
    engine, session, patient, gateway, fake_twilio
) -> None:
    queue(session, patient, 1)
    fake_twilio.fail_next(MAX_ATTEMPTS, "500")
    moment = NOW
    for _ in range(MAX_ATTEMPTS):
        dispatch_due_messages(engine, gateway, lambda at=moment: at)
        reread(session)
        moment = session.exec(select(OutboundMessage)).one().next_attempt_at
    message = session.exec(select(OutboundMessage)).one()
    assert message.status == "failed" and message.attempts == MAX_ATTEMPTS and message.error_code
    [alert] = session.exec(select(Alert)).all()
    assert alert.kind == "sms_undeliverable" and alert.patient_id == patient.id


@pytest.mark.parametrize(
    ("number", "blocked", "opted_out"), [(TO_INVALID, True, False), (TO_OPTED_OUT, False, True)]
)
def test_permanent_failures_are_not_retried_and_stop_further_sms(
    engine, session, patient, gateway, fake_twilio, number, blocked, opted_out
) -> None:
    patient.phone = number  # set directly: these test numbers only exist on the fake server
    session.add(patient)
    session.commit()
    queue(session, patient, 3)
    report = dispatch_due_messages(engine, gateway, lambda: NOW, batch_size=1, threads=1)
    assert report.failed == 1 and report.sent == 0
    assert statuses(session) == Counter(failed=1, cancelled=2)
    stored = session.get(Patient, patient.id)
    assert bool(stored.sms_blocked_reason) is blocked and stored.opted_out is opted_out
    # The one opt-out policy (reminders.optout): a carrier opt-out is an opt-out, like STOP.
    expected_kind = "opted_out" if opted_out else "sms_undeliverable"
    assert session.exec(select(Alert)).one().kind == expected_kind
    assert fake_twilio.messages == []


def test_quiet_hours_and_opt_out_are_checked_when_sending(
    engine, session, patient, gateway, fake_twilio
) -> None:
    night = datetime(2026, 3, 3, 23, 30, tzinfo=UTC)  # 00:30 in Brussels
    queue(session, patient, 1, due=night, prefix="night")
    report = dispatch_due_messages(engine, gateway, lambda: night)
    assert report.deferred == 1 and report.sent == 0
    reread(session)
    assert session.exec(select(OutboundMessage)).one().next_attempt_at == datetime(
        2026, 3, 4, 6, 0, tzinfo=UTC
    )
    patient = session.get(Patient, patient.id)
    patient.opted_out = True
    session.add(patient)
    session.commit()
    assert (
        dispatch_due_messages(
            engine, gateway, lambda: datetime(2026, 3, 4, 6, 0, tzinfo=UTC)
        ).cancelled
        == 1
    )
    assert fake_twilio.messages == []


def test_oncall_messages_go_to_the_team_and_ignore_quiet_hours(
    engine, session, patient, gateway, fake_twilio
) -> None:
    team = session.get(Team, patient.team_id)
    team.oncall_phone = "+32470999999"
    session.add(team)
    session.commit()
    night = datetime(2026, 3, 3, 23, 30, tzinfo=UTC)
    with session_scope(engine) as s:
        insert_ignoring_duplicates(
            s,
            [
                outbox_row(
                    team_id=team.id,
                    kind="oncall_alert",
                    body="URGENT, patient P1",
                    dedupe_key="alert1:oncall0",
                    now=night,
                    patient_id=patient.id,
                    recipient="oncall",
                    urgent=True,
                )
            ],
        )
    assert dispatch_due_messages(engine, gateway, lambda: night).sent == 1
    assert fake_twilio.messages[0]["to"] == "+32470999999"


def test_a_restart_after_a_crash_neither_loses_nor_duplicates(
    engine, session, patient, gateway, fake_twilio
) -> None:
    """A dispatcher claimed 5 rows, Twilio accepted 2 of them, then the process died."""
    queue(session, patient, 5)
    claims = claim_batch(engine, NOW, 5, "dead-worker", DispatchReport())
    assert len(claims) == 5
    for claim in claims[:2]:
        gateway.send(claim.to, claim.body)  # accepted by Twilio, never recorded
    assert statuses(session) == Counter(sending=5)
    # Before the lease expires nothing is touched (the worker might still be alive).
    assert dispatch_due_messages(engine, gateway, lambda: NOW + timedelta(seconds=30)).claimed == 0
    after = dispatch_due_messages(engine, gateway, lambda: NOW + timedelta(minutes=5))
    assert after.reconciled == 2 and after.reclaimed == 3 and after.sent == 3
    assert statuses(session) == Counter(sent=5)
    assert Counter(m["body"] for m in fake_twilio.messages) == Counter(
        f"Test message msg {n}" for n in range(5)
    )


@pytest.mark.slow
@pytest.mark.postgresql_only
def test_two_dispatcher_processes_send_a_shared_backlog_exactly_once(
    db_engine_name, database_url, engine, session, patient, fake_twilio
) -> None:
    # Large enough that the second process, which may start a second or more after the
    # first on a busy machine, still finds rows to claim: with 600, a dispatcher that
    # sends faster could finish them all before the other one was up.
    backlog = 1500
    patient.quiet_start = patient.quiet_end  # real time is used here: no quiet hours to wait for
    session.add(patient)
    session.commit()
    queue(session, patient, backlog, due=datetime.now(UTC) - timedelta(minutes=1))
    env = dispatcher_environment(database_url, fake_twilio.base_url)
    command = [
        sys.executable,
        "-m",
        "flask",
        "--app",
        "backend",
        "reminders",
        "dispatch",
        "--once",
        "--threads",
        "4",
    ]
    workers = [
        subprocess.Popen(
            command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        for _ in range(2)
    ]
    outputs = [w.communicate(timeout=120)[0] for w in workers]
    assert all(w.returncode == 0 for w in workers), outputs
    assert statuses(session) == Counter(sent=backlog)
    bodies = Counter(m["body"] for m in fake_twilio.messages)
    assert len(bodies) == backlog and set(bodies.values()) == {1}  # every message exactly once
    claimed_by = Counter(
        m.claimed_by.rsplit(":", 1)[0] for m in session.exec(select(OutboundMessage)).all()
    )
    assert len(claimed_by) == 2, claimed_by  # both processes took part


def test_refused_credentials_pause_dispatch_without_failing_messages(
    engine, session, patient, fake_twilio
) -> None:
    wrong = TwilioGateway(
        FAKE_ACCOUNT_SID,
        "wrong-token",
        from_number=FROM_VALID,
        api_base_url=fake_twilio.base_url,
        timeout=2,
    )
    queue(session, patient, 30)
    report = dispatch_due_messages(engine, wrong, lambda: NOW, batch_size=5, threads=1)
    assert report.auth_failed >= 1 and report.failed == 0 and report.claimed <= 5
    reread(session)
    assert all(
        m.status == "pending" and m.attempts == 0
        for m in session.exec(select(OutboundMessage)).all()
    )
    assert session.exec(select(Alert)).all() == []


def test_a_claim_left_waiting_past_half_its_lease_is_put_back_not_sent(
    engine, session, patient, gateway, fake_twilio
) -> None:
    """Sends gone slow after a large claim: the rows still queued are released, not sent late."""
    queue(session, patient, 2)
    report = DispatchReport()
    late, fresh = claim_batch(engine, NOW, 2, "slow-worker", report)
    lease = timedelta(minutes=2)
    later = NOW + lease * 0.6
    send_and_record(engine, gateway, late, lambda: later, None, report, max_wait=lease / 2)
    assert fake_twilio.messages == [] and report.released == 1
    reread(session)
    row = session.get(OutboundMessage, late.message_id)
    assert row.status == "pending" and row.attempts == 0  # its attempt is given back
    # A claim that is no longer this one (reclaimed meanwhile) is left alone.
    assert not release_claim(engine, late, report)
    send_and_record(engine, gateway, fresh, lambda: NOW, None, report, max_wait=lease / 2)
    assert [m["body"] for m in fake_twilio.messages] == ["Test message msg 1"]
    assert dispatch_due_messages(engine, gateway, lambda: later).sent == 1
    assert statuses(session) == Counter(sent=2)
    assert len(fake_twilio.messages) == 2


def test_claims_grow_with_a_large_backlog_only() -> None:
    """A small backlog is claimed BATCH_MIN rows at a time; a large one in bigger claims."""
    assert _batch_size(750.0, 0) == BATCH_MIN
    assert _batch_size(750.0, GROW_AFTER - 1) == BATCH_MIN
    assert _batch_size(750.0, GROW_AFTER) == int(750 * CLAIM_AHEAD_SECONDS)
    assert _batch_size(100_000.0, GROW_AFTER) == BATCH_MAX
    assert _batch_size(1.0, GROW_AFTER) == BATCH_MIN  # slow sends: small claims


def test_an_sms_over_its_segment_budget_is_sent_counted_and_logged_without_its_text(
    engine, session, patient, gateway, fake_twilio, caplog
) -> None:
    """The premedication reminder with the real alemtuzumab text takes two segments."""
    items = get_regimen("alemtuzumab_iv").premedication.items
    long = render(
        "premedication_reminder",
        "en",
        time="08:00",
        premedication="; ".join(item.text for item in items),
        drug="alemtuzumab",
    )
    short = render("pill_taken_ack", "en")
    rows = [
        outbox_row(
            team_id=patient.team_id,
            patient_id=patient.id,
            kind=kind,
            body=body,
            dedupe_key=f"budget:{kind}",
            now=NOW,
        )
        for kind, body in (("premedication_reminder", long), ("pill_taken_ack", short))
    ]
    insert_ignoring_duplicates(session, rows)
    session.commit()
    assert segments(long).segments == 2 > get_template("premedication_reminder").max_segments
    with caplog.at_level("WARNING", logger="reminders.dispatch"):
        report = dispatch_due_messages(engine, gateway, lambda: NOW)
    assert (report.sent, report.over_budget) == (2, 1)
    [warning] = [r.getMessage() for r in caplog.records if "budget" in r.getMessage()]
    assert "premedication_reminder takes 2 segments, over its budget of 1" in warning
    assert "paracetamol" not in warning and patient.phone not in warning
