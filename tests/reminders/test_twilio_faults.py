"""Twilio faults: 30% of requests fail (500, 429, answers too slow, dropped connections).

The dispatcher sends a backlog through the real twilio client to the Twilio fake,
which fails a seeded 30% of message-create requests with the four kinds of fault.
Dispatch passes run on an injected clock that jumps to the next retry time (so
backoffs of minutes cost no real time) until nothing is left to do. Then every
message is ``sent`` exactly once, or ``failed`` with a reason (and an alert); none
vanishes, none is stuck ``pending``/``sending``, and the counts add up to the backlog.

A "slow" fault is an answer that comes after the client's timeout. With
``slow_accepts=False`` Twilio never took the message; with ``slow_accepts=True`` it
did, and only the answer was lost: a blind retry would then deliver it twice. The
dispatcher treats every such unanswered send as "maybe sent" and asks Twilio's
message list before trying again, so both variants end with no duplicate.
"""

from __future__ import annotations

import time
from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from reminders.data.models import Alert, OutboundMessage, Patient
from reminders.delivery import MAX_ATTEMPTS, DispatchReport
from reminders.dispatch import dispatch_due_messages
from reminders.gateways import TwilioGateway
from reminders.outbox import insert_ignoring_duplicates, outbox_row
from tests.conftest import Clock, reread
from tests.twilio_fake import (
    FAKE_ACCOUNT_SID,
    FAKE_AUTH_TOKEN,
    FAULT_KINDS,
    FROM_VALID,
    TO_INVALID,
    FakeTwilio,
)

pytestmark = pytest.mark.slow

NOW = datetime(2026, 3, 3, 9, 0, tzinfo=UTC)  # 10:00 in Brussels: hours before quiet hours
BACKLOG = 80
PATIENTS = 4
FAULT_RATE = 0.3
CLIENT_TIMEOUT = 0.5
SLOW_SECONDS = 1.0
LEASE = timedelta(minutes=2)
MAX_PASSES = 200


def queue_backlog(session: Session, patients: list[Patient]) -> dict[int, str]:
    """:data:`BACKLOG` messages due at :data:`NOW`, one to the last patient, the rest spread
    over the others; id -> body."""
    reachable = patients[:-1]
    rows = [
        outbox_row(
            team_id=patients[0].team_id,
            kind="one_off",
            body=f"Fault test reminder {n:03d}",
            dedupe_key=f"faults:{n}",
            now=NOW,
            patient_id=(reachable[n % len(reachable)] if n else patients[-1]).id,
        )
        for n in range(BACKLOG)
    ]
    insert_ignoring_duplicates(session, rows)
    session.commit()
    return {m.id: m.body for m in session.exec(select(OutboundMessage)).all()}


def next_moment(session: Session, now: datetime) -> datetime | None:
    """When the dispatcher next has something to do: a retry, or a lease that expires."""
    reread(session)
    moments = []
    for message in session.exec(
        select(OutboundMessage).where(
            OutboundMessage.status.in_(["pending", "sending", "unconfirmed"])
        )
    ).all():
        if message.status == "pending":
            moments.append(message.next_attempt_at)
        else:  # left in doubt: recovery asks Twilio once the lease has expired
            moments.append(message.claimed_at + LEASE + timedelta(seconds=1))
    if not moments:
        return None
    return max(now, min(moments))


@pytest.fixture
def patients(session, make_user, make_patient, clock) -> list[Patient]:
    """Consenting patients (no welcome SMS queued); the last one has an invalid number."""
    clock.now = NOW - timedelta(days=1)
    user, _ = make_user()
    made = []
    for n in range(PATIENTS + 1):
        patient = make_patient(user.team_id, phone=f"+32 470 55 {n:02d} 00", sms_consent=False)
        patient.sms_consent = True
        session.add(patient)
        made.append(patient)
    made[-1].phone = TO_INVALID  # set directly: the fake refuses it for good (Twilio 21211)
    session.commit()
    return made


@pytest.mark.parametrize("slow_accepts", [False, True], ids=["slow-dropped", "slow-accepted"])
def test_every_message_is_sent_once_or_failed_with_a_reason_under_30_percent_faults(
    engine: Engine,
    session: Session,
    patients: list[Patient],
    clock: Clock,
    slow_accepts: bool,
    record_property,
) -> None:
    unreachable = patients[-1]
    bodies = queue_backlog(session, patients)
    clock.now = NOW
    totals: Counter[str] = Counter()
    with FakeTwilio() as fake:
        fake.clock = clock  # Twilio's date_created and our claimed_at share one time
        fake.set_faults(
            FAULT_RATE,
            FAULT_KINDS,
            seed=7,
            slow_seconds=SLOW_SECONDS,
            slow_accepts=slow_accepts,
        )
        gateway = TwilioGateway(
            FAKE_ACCOUNT_SID,
            FAKE_AUTH_TOKEN,
            from_number=FROM_VALID,
            api_base_url=fake.base_url,
            timeout=CLIENT_TIMEOUT,
        )
        passes = 0
        moment: datetime | None = NOW
        while moment is not None:
            passes += 1
            assert passes <= MAX_PASSES, f"no end in sight after {MAX_PASSES} passes: {totals}"
            clock.now = moment
            slow_before = fake.stats.get("fault_slow", 0)
            report: DispatchReport = dispatch_due_messages(
                engine, gateway, clock, batch_size=20, threads=4, lease=LEASE
            )
            totals.update({k: v for k, v in report.as_dict().items() if v})
            if fake.stats.get("fault_slow", 0) > slow_before:
                # Let the late answers land (as they would during a real backoff)
                # before the clock jumps ahead.
                time.sleep(SLOW_SECONDS - CLIENT_TIMEOUT + 0.1)
            moment = next_moment(session, clock.now)
        gateway.close()
        stats = fake.stats
        received = fake.messages

    reread(session)
    rows = session.exec(select(OutboundMessage).order_by(OutboundMessage.id)).all()
    statuses = Counter(m.status for m in rows)
    report_line = (
        f"slow_accepts={slow_accepts}: {passes} passes, {stats.get('requests', 0)} requests, "
        f"faults { ({k: v for k, v in stats.items() if k.startswith('fault_')}) }, "
        f"outcome {dict(statuses)}, dispatcher totals {dict(totals)}"
    )
    print(f"\n{report_line}")
    record_property("twilio_faults", report_line)

    # Every fault kind happened, and the fault rate is about what was asked for.
    for kind in FAULT_KINDS:
        assert stats.get(f"fault_{kind}", 0) >= 1, report_line
    creates = stats["accepted"] + stats.get("rejected", 0)
    faults = sum(v for k, v in stats.items() if k.startswith("fault_"))
    assert 0.15 < faults / (creates + faults) < 0.45, report_line
    # Nothing vanished: every row ended sent or failed, and the counts add up.
    assert set(statuses) <= {"sent", "failed"}, report_line
    assert sum(statuses.values()) == len(bodies) == BACKLOG, report_line
    by_sid = {m["sid"]: m for m in received}
    counts = Counter(m["body"] for m in received)
    for message in rows:
        if message.status == "sent":
            assert by_sid[message.provider_sid]["body"] == message.body, report_line
            assert counts[message.body] == 1, (message.body, report_line)  # never twice
        else:
            assert message.error_reason, (message.id, report_line)
            assert message.body not in counts, (message.id, report_line)  # really not sent
    assert sum(counts.values()) == statuses["sent"], report_line
    # The unreachable number failed for good at Twilio's first real answer (after any
    # injected faults), with Twilio's code.
    for message in rows:
        if message.patient_id == unreachable.id:
            assert message.status == "failed" and message.error_code == "21211", message
            assert message.attempts <= MAX_ATTEMPTS
    # Transient failures were retried: failed rows of reachable numbers used every attempt.
    for message in rows:
        if message.status == "failed" and message.patient_id != unreachable.id:
            assert message.attempts == MAX_ATTEMPTS, (message.id, report_line)
    failed_ids = {m.id for m in rows if m.status == "failed"}
    alerted = {a.details.get("message_id") for a in session.exec(select(Alert)).all()}
    assert failed_ids <= alerted, report_line  # the care team hears of each failure
    # Unanswered sends were looked up before any retry: found when Twilio had them.
    assert totals["unconfirmed"] >= 1, report_line
    if slow_accepts:
        assert totals["reconciled"] >= 1, report_line
    else:
        assert totals["reconciled"] == 0, report_line
