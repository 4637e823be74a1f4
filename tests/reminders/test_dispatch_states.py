"""Outbox states through the dispatcher: the unconfirmed state, and every move the code makes.

A scripted gateway (a real implementation of the ``SmsGateway`` protocol that keeps the
messages it accepted, like a carrier) answers each send with a seeded random outcome:
accepted, a refusal, a retryable error, or no answer at all after it did or did not
take the message. The dispatcher runs in-process on the real database; the rows are
read before and after each pass and every status change must be one that
``reminders.data.statuses.TRANSITIONS`` allows (Core statements included, which the ORM check
does not see). No message may reach the carrier twice, and none may be lost.
"""

from __future__ import annotations

import random
from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import text
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from reminders.data.models import OutboundMessage, Patient
from reminders.data.statuses import OutboxStatus, allowed
from reminders.delivery import MAX_ATTEMPTS
from reminders.dispatch import dispatch_due_messages
from reminders.gateways import (
    PermanentSendError,
    SendResult,
    TransientSendError,
)
from reminders.outbox import cancel_pending_for_patient
from tests.conftest import reread
from tests.reminders.conftest import queue_due

NOW = datetime(2026, 3, 3, 10, 0, tzinfo=UTC)  # 11:00 in Brussels: no quiet hours
LEASE = timedelta(minutes=2)


class ScriptedGateway:
    """Answers each send with the next scripted outcome; remembers what it accepted."""

    name = "scripted"

    def __init__(self, outcomes: list[str] | None = None, rng: random.Random | None = None):
        self.outcomes = list(outcomes or [])
        self.rng = rng
        self.accepted: list[tuple[str, str, datetime, str]] = []
        self.now = NOW

    def _next(self) -> str:
        if self.outcomes:
            return self.outcomes.pop(0)
        assert self.rng is not None
        return self.rng.choices(
            ["ok", "retry", "lost_after", "lost_before", "refused"], weights=[6, 2, 2, 1, 1]
        )[0]

    def send(self, to: str, body: str, *, status_callback: str | None = None) -> SendResult:
        """Accept, refuse, or time out (having taken the message, or not)."""
        outcome = self._next()
        if outcome in ("ok", "lost_after"):
            sid = f"SM{len(self.accepted):032d}"
            self.accepted.append((to, body, self.now, sid))
            if outcome == "ok":
                return SendResult(provider_sid=sid, status="queued")
        if outcome == "retry":
            raise TransientSendError("busy", code="20429", http_status=429)
        if outcome == "refused":
            raise PermanentSendError("message body too long", code="21617", http_status=400)
        raise TransientSendError("no answer (ReadTimeout)", maybe_sent=True)

    def find_sent(self, to: str, body: str, *, since: datetime) -> str | None:
        """The sid of an accepted message like this one, as Twilio's message list gives it."""
        return next(
            (sid for t, b, at, sid in self.accepted if t == to and b == body and at >= since),
            None,
        )


@pytest.fixture
def patient(session, make_user, make_patient, clock) -> Patient:
    clock.now = NOW - timedelta(days=1)
    user, _ = make_user()
    patient = make_patient(
        user.team_id, display_name="Marie-Françoise Van den Bossche-Lefèvre", sms_consent=False
    )
    patient.sms_consent = True  # after creation: no welcome SMS, the tests queue their own
    session.add(patient)
    session.commit()
    return patient


def queue(session: Session, patient: Patient, count: int, *, prefix: str, due=NOW) -> None:
    bodies = [f"Rappel {prefix} {n} : prenez vos comprimés" for n in range(count)]
    queue_due(session, patient.team_id, [patient.id], bodies, prefix=prefix, due=due)


#: A trigger writes every change of an outbox row's status into ``status_log``: one pass
#: may move a row twice (claimed, then sent), which a before/after read would not see.
_LOG_DDL = {
    "sqlite": (
        "CREATE TABLE status_log (n INTEGER PRIMARY KEY, old TEXT, new TEXT)",
        "CREATE TRIGGER status_log_outbox AFTER UPDATE OF status ON outboundmessage "
        "WHEN OLD.status IS NOT NEW.status "
        "BEGIN INSERT INTO status_log (old, new) VALUES (OLD.status, NEW.status); END",
    ),
    "postgresql": (
        "CREATE TABLE status_log (n SERIAL PRIMARY KEY, old TEXT, new TEXT)",
        "CREATE FUNCTION status_log_outbox() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
        "IF OLD.status IS DISTINCT FROM NEW.status THEN "
        "INSERT INTO status_log (old, new) VALUES (OLD.status, NEW.status); END IF; "
        "RETURN NEW; END $$",
        "CREATE TRIGGER status_log_outbox AFTER UPDATE ON outboundmessage "
        "FOR EACH ROW EXECUTE FUNCTION status_log_outbox()",
    ),
}
_LOG_DROP = {
    "sqlite": ("DROP TRIGGER status_log_outbox", "DROP TABLE status_log"),
    "postgresql": (
        "DROP TRIGGER status_log_outbox ON outboundmessage",
        "DROP FUNCTION status_log_outbox()",
        "DROP TABLE status_log",
    ),
}


@pytest.fixture
def status_log(engine: Engine, session: Session):
    """Read the status changes logged by the database since the last read."""
    dialect = engine.dialect.name
    session.commit()  # no open transaction of the test's may hold a lock the DDL waits for
    with engine.begin() as conn:
        for statement in _LOG_DDL[dialect]:
            conn.execute(text(statement))
    seen = 0

    def read() -> list[tuple[str, str]]:
        nonlocal seen
        with engine.connect() as conn:
            rows = conn.execute(
                text("SELECT n, old, new FROM status_log WHERE n > :n ORDER BY n"), {"n": seen}
            ).all()
        if rows:
            seen = rows[-1].n
        return [(row.old, row.new) for row in rows]

    yield read
    session.rollback()  # PostgreSQL: DROP TRIGGER waits for every open reader of the table
    with engine.begin() as conn:
        for statement in _LOG_DROP[dialect]:
            conn.execute(text(statement))


def test_a_send_without_answer_is_stored_unconfirmed_and_reconciled_not_resent(
    engine, session, patient
) -> None:
    """Twilio took it but the answer was lost: recorded sent from its list, never sent twice."""
    queue(session, patient, 1, prefix="lost")
    gateway = ScriptedGateway(["lost_after"])
    first = dispatch_due_messages(engine, gateway, lambda: NOW, lease=LEASE, threads=1)
    assert first.unconfirmed == 1 and first.sent == 0
    reread(session)
    message = session.exec(select(OutboundMessage)).one()
    assert message.status == OutboxStatus.UNCONFIRMED and message.attempts == 1
    assert message.claimed_at == NOW and message.next_attempt_at > NOW
    # Within the lease nothing happens: the answer may still come.
    assert dispatch_due_messages(engine, gateway, lambda: NOW + LEASE / 2, lease=LEASE).claimed == 0
    later = dispatch_due_messages(engine, gateway, lambda: NOW + 2 * LEASE, lease=LEASE)
    assert later.reconciled == 1 and later.sent == 0 and later.retried == 0
    reread(session)
    message = session.exec(select(OutboundMessage)).one()
    assert message.status == OutboxStatus.SENT and message.provider_sid == gateway.accepted[0][3]
    assert len(gateway.accepted) == 1


def test_an_unconfirmed_send_the_carrier_never_took_is_retried_once(
    engine, session, patient
) -> None:
    queue(session, patient, 1, prefix="gone")
    gateway = ScriptedGateway(["lost_before", "ok"])
    assert dispatch_due_messages(engine, gateway, lambda: NOW, lease=LEASE).unconfirmed == 1
    later = dispatch_due_messages(engine, gateway, lambda: NOW + 2 * LEASE, lease=LEASE)
    assert later.retried == 1 and later.sent == 1 and later.reconciled == 0
    reread(session)
    message = session.exec(select(OutboundMessage)).one()
    assert message.status == OutboxStatus.SENT and message.attempts == 2
    assert len(gateway.accepted) == 1


def test_an_unconfirmed_send_out_of_attempts_fails_and_alerts(engine, session, patient) -> None:
    queue(session, patient, 1, prefix="tired")
    gateway = ScriptedGateway(["lost_before"] * MAX_ATTEMPTS)
    moment = NOW
    for _ in range(MAX_ATTEMPTS + 1):
        dispatch_due_messages(engine, gateway, lambda at=moment: at, lease=LEASE)
        moment += timedelta(hours=1)
    reread(session)
    message = session.exec(select(OutboundMessage)).one()
    assert message.status == OutboxStatus.FAILED and message.attempts == MAX_ATTEMPTS
    assert gateway.accepted == []


@pytest.mark.parametrize("seed", [7, 2026])
def test_every_status_change_the_dispatcher_makes_is_in_the_table(
    engine, session, patient, status_log, seed
) -> None:
    """Property: over random outcomes and times, each move made is allowed; none is lost."""
    rng = random.Random(seed)
    gateway = ScriptedGateway(rng=rng)
    queue(session, patient, 12, prefix=f"s{seed}")
    moves: Counter[tuple[str, str]] = Counter()
    moment = NOW
    for step in range(40):
        moment += timedelta(seconds=rng.choice([5, 40, 90, 150, 400]))
        gateway.now = moment
        if step % 9 == 4:
            queue(session, patient, 3, prefix=f"s{seed}-{step}", due=moment)
        if step == 30:
            cancel_pending_for_patient(session, patient.id, "patient opted out")
            session.commit()
        else:
            dispatch_due_messages(
                engine, gateway, lambda at=moment: at, lease=LEASE, threads=2, batch_size=4
            )
        moves.update(status_log())
    illegal = [move for move in moves if not allowed(OutboxStatus, *move)]
    assert illegal == [], moves
    # The run went through the unknown-outcome state, and out of it.
    assert moves[("sending", "unconfirmed")] > 0, moves
    assert moves[("unconfirmed", "sent")] + moves[("unconfirmed", "pending")] > 0, moves
    # No message reached the carrier twice, and every accepted one is recorded sent
    # (or still in doubt, to be reconciled).
    bodies = Counter(body for _, body, _, _ in gateway.accepted)
    assert max(bodies.values()) == 1
    reread(session)
    rows = session.exec(select(OutboundMessage)).all()
    sent = {m.body for m in rows if m.status == OutboxStatus.SENT}
    in_doubt = {m.body for m in rows if m.status in ("sending", "unconfirmed")}
    assert set(bodies) <= sent | in_doubt
