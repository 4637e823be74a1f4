"""The dispatcher: claim due outbox rows, send them, record the outcome.

Decide apart from deliver: a short write transaction claims a batch (``FOR
UPDATE SKIP LOCKED`` on PostgreSQL, so several dispatchers can run side by side;
one IMMEDIATE writer at a time on SQLite) and decides for each row whether it is
still fresh, still allowed (consent, opt-out, reachable number) and outside the
patient's quiet hours. Only then is the HTTP call made, with no transaction or
row lock held, and the result (Twilio's SID, or the error) is recorded in its
own short transaction.

If the process dies between Twilio's acceptance and that record, the row stays
``sending``. A later pass reclaims such rows once their lease has expired; it
first asks the gateway whether the message was in fact accepted (Twilio's
message list, filtered by recipient and date) and records it as sent instead of
sending it again. Only when the gateway cannot tell is the message retried.

A send whose outcome is unknown (no answer within the timeout, a connection lost
after the request was written: Twilio may still have accepted the message) is
handled the same way: the row stays ``sending`` as if this dispatcher had died,
with ``next_attempt_at`` moved past ``claimed_at`` to the retry time (that is how
such a row is told from a dead dispatcher's), and the lease expiry makes a later
pass ask Twilio before sending it again. A blind retry could deliver a reminder
twice, and a duplicated "take your tablets" can mean a double dose. A row that a
dead dispatcher never settled gets its attempt back (it may never have been
tried); an unanswered send counts as a failed attempt, up to ``MAX_ATTEMPTS``.

The question to the gateway is asked with no transaction open, so a slow
message list never holds SQLite's write lock or PostgreSQL row locks.
"""

from __future__ import annotations

import gc
import logging
import os
import signal
import socket
import time
import uuid
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from queue import Empty, SimpleQueue
from threading import Condition, Event, Lock, Thread
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import bindparam, update
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from backend.db import session_scope
from backend.models import CheckIn, OutboundMessage, Patient, Team
from backend.services.alerts import raise_alert
from reminders.core.messaging import defer_past_quiet_hours, in_quiet_hours
from reminders.gateways import GatewayAuthError, PermanentSendError, SmsGateway, TransientSendError
from reminders.outbox import cancel_pending_for_patient

logger = logging.getLogger(__name__)

MAX_ATTEMPTS = 6
BACKOFF_BASE = timedelta(seconds=30)
BACKOFF_MAX = timedelta(minutes=30)
#: A row claimed longer ago than this by a dispatcher that never recorded it is reclaimed.
DEFAULT_LEASE = timedelta(minutes=2)
#: Twilio codes that mean the number itself is unusable (never retried).
UNREACHABLE_CODES = {
    "21211": "invalid phone number",
    "21614": "number cannot receive SMS",
    "21612": "number not reachable",
}
OPTED_OUT_CODE = "21610"
#: After Twilio refuses our credentials, wait this long before trying again (an operator must act).
AUTH_FAILURE_PAUSE = timedelta(minutes=5)

#: The most send outcomes one transaction records (see :class:`SentRecorder`).
RECORD_GROUP_MAX = 200
#: How long the recorder gathers outcomes before it writes them: a longer wait means
#: fewer transactions, a shorter one fewer accepted sends unrecorded at any moment.
RECORD_LINGER_SECONDS = 0.02

Clock = Callable[[], datetime]
ONE_US = timedelta(microseconds=1)


def worker_name() -> str:
    """A unique name for this dispatcher (host, pid and a random suffix)."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


@dataclass
class DispatchReport:
    """What one dispatch pass did (counts only: no numbers, no text)."""

    claimed: int = 0
    sent: int = 0
    retried: int = 0
    failed: int = 0
    missed: int = 0
    cancelled: int = 0
    deferred: int = 0
    reclaimed: int = 0
    reconciled: int = 0
    unconfirmed: int = 0
    auth_failed: int = 0
    _lock: Lock = field(default_factory=Lock, repr=False, compare=False)

    def add(self, name: str, count: int = 1) -> None:
        """Thread-safe increment."""
        with self._lock:
            setattr(self, name, getattr(self, name) + count)

    def as_dict(self) -> dict[str, int]:
        """The counts as a dict."""
        return {k: v for k, v in self.__dict__.items() if not k.startswith("_")}


@dataclass(frozen=True)
class Claim:
    """A claimed row: what to send, to whom, and who claimed it."""

    message_id: int
    to: str
    body: str
    worker: str
    expects: str | None
    patient_id: int | None
    team_id: int
    dedupe_key: str
    checkin_id: int | None = None


def backoff(attempts: int, retry_after: float | None = None) -> timedelta:
    """Exponential backoff after ``attempts`` tries, at least Twilio's Retry-After."""
    delay = min(BACKOFF_BASE * (2 ** max(attempts - 1, 0)), BACKOFF_MAX)
    if retry_after:
        delay = max(delay, timedelta(seconds=retry_after))
    return delay


def _decide(
    message: OutboundMessage, patient: Patient | None, team: Team, now: datetime
) -> tuple[str, str | None]:
    """What to do with a due row: ("send", phone) or (status, reason).

    Takes the models or table rows with the same attributes (:func:`claim_batch`).
    """
    if message.not_after is not None and now > message.not_after:
        return "missed", "no longer useful"
    if message.recipient == "oncall":
        return (
            ("send", team.oncall_phone)
            if team.oncall_phone
            else ("cancelled", "team has no on-call number")
        )
    if patient is None:
        return "cancelled", "no patient"
    if patient.opted_out:
        return "cancelled", "patient opted out"
    if patient.sms_blocked_reason:
        return "cancelled", patient.sms_blocked_reason
    if not patient.sms_consent and message.kind != "opted_in_confirmation":
        return "cancelled", "no SMS consent"
    if not message.urgent:
        local = now.astimezone(ZoneInfo(patient.timezone))
        if in_quiet_hours(local.time(), patient.quiet_start, patient.quiet_end):
            return "deferred", None
    return "send", patient.phone


_OUTBOX = OutboundMessage.__table__

#: Claim every row of a batch that goes out with one batched statement.
_CLAIM_MANY = (
    update(_OUTBOX)
    .where(_OUTBOX.c.id == bindparam("b_id"))
    .values(
        status="sending",
        claimed_at=bindparam("b_now"),
        claimed_by=bindparam("b_worker"),
        attempts=_OUTBOX.c.attempts + 1,
        to_phone=bindparam("b_to"),
    )
)


def claim_batch(
    engine: Engine, now: datetime, limit: int, worker: str, report: DispatchReport
) -> list[Claim]:
    """Claim up to ``limit`` due rows for ``worker`` in one short transaction.

    Rows are read and written with Core statements, not ORM instances: the claim runs
    on the dispatcher's main thread while the sender threads wait for the GIL, and
    building, tracking and flushing a model instance per row was most of its cost.
    """
    claims: list[Claim] = []
    claimed: list[dict[str, object]] = []
    c = _OUTBOX.c
    with session_scope(engine) as session:
        query = (
            select(
                c.id,
                c.patient_id,
                c.team_id,
                c.recipient,
                c.kind,
                c.urgent,
                c.not_after,
                c.body,
                c.expects,
                c.dedupe_key,
                c.checkin_id,
            )
            .where(c.status == "pending", c.next_attempt_at <= now)
            .order_by(c.urgent.desc(), c.next_attempt_at, c.id)
            .limit(limit)
        )
        if engine.dialect.name == "postgresql":
            query = query.with_for_update(skip_locked=True)
        messages = session.execute(query).all()
        patients = _by_id(session, Patient, {m.patient_id for m in messages if m.patient_id})
        teams = _by_id(session, Team, {m.team_id for m in messages})
        for message in messages:
            patient = patients.get(message.patient_id)
            action, detail = _decide(message, patient, teams[message.team_id], now)
            if action == "send":
                claimed.append(
                    {"b_id": message.id, "b_now": now, "b_worker": worker, "b_to": detail}
                )
                claims.append(
                    Claim(
                        message.id,
                        detail,
                        message.body,
                        worker,
                        message.expects,
                        message.patient_id,
                        message.team_id,
                        message.dedupe_key,
                        message.checkin_id,
                    )
                )
                continue
            if action == "deferred":
                local = now.astimezone(ZoneInfo(patient.timezone))
                resume = defer_past_quiet_hours(local, patient.quiet_start, patient.quiet_end)
                if message.not_after is not None and resume > message.not_after:
                    values = {
                        "status": "missed",
                        "error_reason": "quiet hours outlasted its usefulness",
                    }
                    report.add("missed")
                else:
                    values = {"next_attempt_at": resume}
                    report.add("deferred")
            else:
                values = {"status": action, "error_reason": detail}
                report.add(action)
            session.execute(update(_OUTBOX).where(c.id == message.id).values(**values))
        if claimed:
            session.execute(_CLAIM_MANY, claimed)
    report.add("claimed", len(claims))
    return claims


def _by_id(session: Session, model: type, ids: set[int]) -> dict[int, Any]:
    """Rows of ``model``'s table by id (attribute access like the model)."""
    if not ids:
        return {}
    table = model.__table__
    return {row.id: row for row in session.execute(select(table).where(table.c.id.in_(ids)))}


def send_and_record(
    engine: Engine,
    gateway: SmsGateway,
    claim: Claim,
    clock: Clock,
    status_callback: str | None,
    report: DispatchReport,
    recorder: SentRecorder | None = None,
) -> None:
    """Send one claimed message and record the outcome.

    A failure is recorded at once in its own transaction; an accepted send too, or,
    with a ``recorder``, by the recorder together with others (group commit).
    """
    try:
        result = gateway.send(claim.to, claim.body, status_callback=status_callback)
    except GatewayAuthError as error:
        _record_auth_failure(engine, claim, error, clock(), report)
    except TransientSendError as error:
        if error.maybe_sent:
            _record_unconfirmed(engine, claim, error, clock(), report)
        else:
            _record_transient(engine, claim, error, clock(), report)
    except PermanentSendError as error:
        _record_permanent(engine, claim, error, clock(), report)
    else:
        if recorder is not None:
            recorder.put(claim, result.provider_sid, clock())
            return
        record_sent(engine, claim, result.provider_sid, clock())
        report.add("sent")


def record_sent(
    engine: Engine,
    claim: Claim,
    provider_sid: str,
    now: datetime,
    *,
    claimed_at: datetime | None = None,
) -> bool:
    """Mark a claimed message sent with Twilio's SID; open the check-in it starts.

    False (and nothing written) when the row is no longer ``sending`` (or, with
    ``claimed_at``, no longer that claim).
    """
    with session_scope(engine) as session:
        return _mark_sent(session, claim, provider_sid, now, claimed_at=claimed_at)


def _mark_sent(
    session: Session,
    claim: Claim,
    provider_sid: str,
    now: datetime,
    *,
    claimed_at: datetime | None = None,
) -> bool:
    """:func:`record_sent` inside the caller's transaction."""
    condition = [OutboundMessage.id == claim.message_id, OutboundMessage.status == "sending"]
    if claimed_at is not None:
        condition.append(OutboundMessage.claimed_at == claimed_at)
    updated = session.execute(
        update(OutboundMessage)
        .where(*condition)
        .values(
            status="sent",
            provider_sid=provider_sid,
            sent_at=now,
            error_code=None,
            error_reason=None,
        )
    )
    if updated.rowcount == 0:
        return False
    if claim.checkin_id is not None:  # a re-sent or re-check prompt of an open check-in
        checkin = session.get(CheckIn, claim.checkin_id)
        if checkin is not None:
            checkin.last_prompt_at = now
            session.add(checkin)
    elif claim.expects == "temperature" and claim.patient_id is not None:
        open_checkin(session, claim.patient_id, claim.dedupe_key, now)
    return True


def _starts_or_feeds_checkin(claim: Claim) -> bool:
    return claim.checkin_id is not None or (
        claim.expects == "temperature" and claim.patient_id is not None
    )


_MARK_SENT_MANY = (
    update(OutboundMessage.__table__)
    .where(
        OutboundMessage.__table__.c.id == bindparam("b_id"),
        OutboundMessage.__table__.c.status == "sending",
    )
    .values(
        status="sent",
        provider_sid=bindparam("b_sid"),
        sent_at=bindparam("b_now"),
        error_code=None,
        error_reason=None,
    )
)


def record_sent_group(engine: Engine, group: list[tuple[Claim, str, datetime]]) -> None:
    """Record several accepted sends (claim, Twilio SID, when) in one transaction.

    Plain messages are updated with one batched statement; those that open or feed a
    check-in go through :func:`record_sent`'s logic one by one.
    """
    plain = [
        {"b_id": claim.message_id, "b_sid": sid, "b_now": now}
        for claim, sid, now in group
        if not _starts_or_feeds_checkin(claim)
    ]
    with session_scope(engine) as session:
        if plain:
            session.execute(_MARK_SENT_MANY, plain)
        for claim, sid, now in group:
            if _starts_or_feeds_checkin(claim):
                _mark_sent(session, claim, sid, now)


class SentRecorder:
    """Records accepted sends from one writer thread, many per transaction (group commit).

    Recording each send in its own transaction from eight sender threads spent most
    of a dispatcher's time queued for SQLite's single write lock (``BEGIN IMMEDIATE``
    and its busy-wait back-off), and cost PostgreSQL one commit per message. Here the
    senders hand their results over and go on sending; the writer commits whatever
    has arrived, up to :data:`RECORD_GROUP_MAX`: many records per commit under load,
    one when idle.

    Crash safety is unchanged: a message Twilio accepted waits here for milliseconds
    (as it waited for its own commit before); if the process dies meanwhile, its row
    stays ``sending`` and :func:`recover_stale_claims` finds it in Twilio's list and
    records it as sent instead of sending it again.
    """

    def __init__(self, engine: Engine, report: DispatchReport) -> None:
        self._engine = engine
        self._report = report
        self._queue: SimpleQueue[tuple[Claim, str, datetime] | None] = SimpleQueue()
        self._error: BaseException | None = None
        self._thread = Thread(target=self._run, name="sms-recorder", daemon=True)
        self._thread.start()

    def put(self, claim: Claim, provider_sid: str, now: datetime) -> None:
        """Queue the record of an accepted send."""
        self._queue.put((claim, provider_sid, now))

    def close(self, *, raise_error: bool = True) -> None:
        """Write what is queued and stop the writer; re-raise the error that stopped it."""
        self._queue.put(None)
        self._thread.join()
        if raise_error and self._error is not None:
            raise self._error

    def _run(self) -> None:
        finished = False
        while not finished:
            group: list[tuple[Claim, str, datetime]] = []
            item = self._queue.get()
            # Gather for a moment: draining only what is already queued made groups of
            # one or two, and a transaction per pair cost more than the pair's sends.
            deadline = time.monotonic() + RECORD_LINGER_SECONDS
            while True:
                if item is None:
                    finished = True
                    break
                group.append(item)
                if len(group) >= RECORD_GROUP_MAX:
                    break
                try:
                    item = self._queue.get(timeout=max(deadline - time.monotonic(), 0))
                except Empty:
                    break
            if not group or self._error is not None:
                continue  # after a failure, leave the rest "sending" for reconciliation
            try:
                record_sent_group(self._engine, group)
            except BaseException as error:  # re-raised by close(), in the dispatching thread
                self._error = error
                continue
            self._report.add("sent", len(group))


def open_checkin(session: Session, patient_id: int, event_key: str, now: datetime) -> None:
    """Open (once) the conversation a temperature prompt starts."""
    existing = session.exec(
        select(CheckIn).where(CheckIn.patient_id == patient_id, CheckIn.event_key == event_key)
    ).first()
    if existing is None:
        session.add(
            CheckIn(patient_id=patient_id, event_key=event_key, opened_at=now, last_prompt_at=now)
        )


def _record_transient(
    engine: Engine, claim: Claim, error: TransientSendError, now: datetime, report: DispatchReport
) -> None:
    with session_scope(engine) as session:
        message = session.get(OutboundMessage, claim.message_id)
        if message is None or message.status != "sending":
            return
        message.error_code, message.error_reason = error.code, error.reason[:300]
        retry_at = now + backoff(message.attempts, error.retry_after)
        if message.attempts >= MAX_ATTEMPTS:
            message.status = "failed"
            report.add("failed")
            _alert_delivery_failure(
                session,
                message,
                now,
                f"SMS could not be delivered after {message.attempts} attempts",
            )
        elif message.not_after is not None and retry_at > message.not_after:
            message.status = "missed"
            report.add("missed")
        else:
            message.status = "pending"
            message.next_attempt_at = retry_at
            report.add("retried")
        session.add(message)


def _record_unconfirmed(
    engine: Engine,
    claim: Claim,
    error: TransientSendError,
    now: datetime,
    report: DispatchReport,
) -> None:
    """Twilio may have accepted the message: keep the row ``sending`` for the stale-claim check.

    ``claimed_at`` is kept, so once the lease has expired :func:`recover_stale_claims`
    asks Twilio for a message created since then before anything is sent again;
    ``next_attempt_at`` (after ``claimed_at``: the mark of an unanswered send) is when
    a retry may go out if Twilio did not take it.
    """
    with session_scope(engine) as session:
        message = session.get(OutboundMessage, claim.message_id)
        if message is None or message.status != "sending":
            return
        message.error_code, message.error_reason = error.code, error.reason[:300]
        message.next_attempt_at = max(now + backoff(message.attempts), message.claimed_at + ONE_US)
        session.add(message)
    report.add("unconfirmed")


def _record_auth_failure(
    engine: Engine, claim: Claim, error: GatewayAuthError, now: datetime, report: DispatchReport
) -> None:
    """Twilio refused our credentials: not the message's fault. Put it back and stop the pass."""
    logger.error("Twilio refused the account credentials (code %s): dispatch paused", error.code)
    with session_scope(engine) as session:
        message = session.get(OutboundMessage, claim.message_id)
        if message is None or message.status != "sending":
            return
        message.status = "pending"
        message.attempts = max(message.attempts - 1, 0)
        message.next_attempt_at = now + AUTH_FAILURE_PAUSE
        message.error_code, message.error_reason = error.code, "credentials refused by the provider"
        session.add(message)
    report.add("auth_failed")


def _record_permanent(
    engine: Engine, claim: Claim, error: PermanentSendError, now: datetime, report: DispatchReport
) -> None:
    with session_scope(engine) as session:
        message = session.get(OutboundMessage, claim.message_id)
        if message is None or message.status != "sending":
            return
        message.status = "failed"
        message.error_code, message.error_reason = error.code, error.reason[:300]
        session.add(message)
        report.add("failed")
        patient = (
            session.get(Patient, message.patient_id)
            if message.recipient == "patient" and message.patient_id
            else None
        )
        if patient is not None and error.code == OPTED_OUT_CODE:
            patient.opted_out, patient.opted_out_at = True, now
            session.add(patient)
            cancel_pending_for_patient(session, patient.id, "patient opted out")
            _alert_delivery_failure(
                session,
                message,
                now,
                "Patient has opted out of SMS at the carrier (Twilio 21610): call them",
            )
        elif patient is not None and error.code in UNREACHABLE_CODES:
            patient.sms_blocked_reason = f"{UNREACHABLE_CODES[error.code]} (Twilio {error.code})"
            session.add(patient)
            cancel_pending_for_patient(session, patient.id, patient.sms_blocked_reason)
            _alert_delivery_failure(
                session,
                message,
                now,
                f"SMS cannot reach this patient: {patient.sms_blocked_reason}; check the number",
            )
        else:
            _alert_delivery_failure(
                session, message, now, f"SMS refused by the provider (code {error.code})"
            )


def _alert_delivery_failure(
    session: Session, message: OutboundMessage, now: datetime, reason: str
) -> None:
    if message.patient_id is None:
        logger.error("on-call SMS %s failed permanently", message.id)
        return
    raise_alert(
        session,
        team_id=message.team_id,
        patient_id=message.patient_id,
        severity="high",
        kind="sms_undeliverable",
        reason=reason,
        details={"message_id": message.id, "error_code": message.error_code},
        source="Twilio delivery",
        now=now,
        dedupe_key=f"undeliverable:{message.id}",
    )


@dataclass(frozen=True)
class _StaleClaim:
    """A row left ``sending`` past its lease, as read before asking the gateway."""

    claim: Claim
    claimed_at: datetime


def recover_stale_claims(
    engine: Engine, gateway: SmsGateway, now: datetime, lease: timedelta, report: DispatchReport
) -> None:
    """Settle rows left ``sending`` past their lease (a dead dispatcher, an unanswered send).

    Each is looked up with the gateway (no transaction open meanwhile): a message
    Twilio accepted is recorded as sent, with the side effects of a send (the check-in
    a temperature prompt opens); any other goes back to ``pending`` (or ``failed``
    when its attempts are used up). Each outcome is written only if the row is still
    the same claim, so two dispatchers recovering at once settle it once.
    """
    with session_scope(engine) as session:
        query = select(OutboundMessage).where(
            OutboundMessage.status == "sending", OutboundMessage.claimed_at < now - lease
        )
        if engine.dialect.name == "postgresql":
            query = query.with_for_update(skip_locked=True)
        stale = [
            _StaleClaim(
                Claim(
                    message.id,
                    message.to_phone or "",
                    message.body,
                    message.claimed_by or "",
                    message.expects,
                    message.patient_id,
                    message.team_id,
                    message.dedupe_key,
                    message.checkin_id,
                ),
                message.claimed_at,
            )
            for message in session.exec(query).all()
        ]
    finder = getattr(gateway, "find_sent", None)
    for row in stale:
        found = None
        if finder is not None and row.claim.to:
            try:
                found = finder(row.claim.to, row.claim.body, since=row.claimed_at)
            except (TransientSendError, PermanentSendError):
                found = None  # cannot tell: retrying risks a duplicate, never a loss
        if found:
            if record_sent(engine, row.claim, found, now, claimed_at=row.claimed_at):
                report.add("reconciled")
            continue
        with session_scope(engine) as session:
            message = session.get(OutboundMessage, row.claim.message_id)
            if message is None or not _same_claim(message, row):
                continue
            if message.next_attempt_at <= message.claimed_at:
                # A dead dispatcher's claim: no outcome was recorded, perhaps none tried.
                message.status, message.next_attempt_at = "pending", now
                message.attempts = max(message.attempts - 1, 0)
                report.add("reclaimed")
            elif message.attempts >= MAX_ATTEMPTS:
                message.status = "failed"
                report.add("failed")
                _alert_delivery_failure(
                    session,
                    message,
                    now,
                    f"SMS could not be delivered after {message.attempts} attempts",
                )
            else:
                # An unanswered send that Twilio did not take: retry at its backoff time.
                message.status = "pending"
                message.next_attempt_at = max(message.next_attempt_at, now)
                report.add("retried")
            session.add(message)


def _same_claim(message: OutboundMessage, row: _StaleClaim) -> bool:
    return (
        message.status == "sending"
        and message.claimed_at == row.claimed_at
        and (message.claimed_by or "") == row.claim.worker
    )


class _InFlight:
    """The sends submitted and not finished: a count to wait on, and the first failure.

    Cheaper than ``concurrent.futures.wait`` on the set of futures, which installs a
    waiter on every one of them each time a send finishes.
    """

    def __init__(self) -> None:
        self._changed = Condition()
        self._running = 0
        self._error: BaseException | None = None

    def add(self, future: Future[None]) -> None:
        """Count ``future`` until it finishes."""
        with self._changed:
            self._running += 1
        future.add_done_callback(self._finished)

    def _finished(self, future: Future[None]) -> None:
        error = future.exception()
        with self._changed:
            self._running -= 1
            if error is not None and self._error is None:
                self._error = error
            self._changed.notify_all()

    def wait_until_below(self, limit: int) -> None:
        """Return once fewer than ``limit`` sends run; raise the first send's failure, if any."""
        with self._changed:
            self._changed.wait_for(lambda: self._error is not None or self._running < limit)
            if self._error is not None:
                raise self._error  # a failure to record stops the pass, as before


def dispatch_due_messages(
    engine: Engine,
    gateway: SmsGateway,
    clock: Clock,
    *,
    worker: str | None = None,
    batch_size: int = 50,
    threads: int = 8,
    status_callback: str | None = None,
    lease: timedelta = DEFAULT_LEASE,
    max_batches: int | None = None,
) -> DispatchReport:
    """Send every due message, batch by batch, until none is due (or ``max_batches``).

    The next batch is claimed as soon as a thread is free, so the threads do not wait
    for the slowest send of each batch; accepted sends are recorded by a
    :class:`SentRecorder`.
    """
    worker = worker or worker_name()
    report = DispatchReport()
    recover_stale_claims(engine, gateway, clock(), lease, report)
    batches = 0
    recorder = SentRecorder(engine, report)
    try:
        with ThreadPoolExecutor(max_workers=threads, thread_name_prefix="sms") as pool:
            sends = _InFlight()
            while max_batches is None or batches < max_batches:
                if report.auth_failed:
                    break  # every message would fail the same way
                claims = claim_batch(engine, clock(), batch_size, worker, report)
                if not claims:
                    break
                batches += 1
                for claim in claims:
                    sends.add(
                        pool.submit(
                            send_and_record,
                            engine,
                            gateway,
                            claim,
                            clock,
                            status_callback,
                            report,
                            recorder,
                        )
                    )
                # Claim the next batch once a thread is free (all of them, with one
                # thread): a refusal that cancels a patient's other messages (opt-out,
                # unusable number) still reaches the rows of the following batches.
                sends.wait_until_below(threads)
            sends.wait_until_below(1)
    except BaseException:
        recorder.close(raise_error=False)  # the error already on its way says more
        raise
    recorder.close()
    return report


def run_dispatcher(
    engine: Engine,
    gateway: SmsGateway,
    *,
    once: bool = False,
    interval: float = 5.0,
    threads: int = 8,
    status_callback: str | None = None,
    lease: timedelta = DEFAULT_LEASE,
) -> None:
    """Dispatch in a loop until SIGTERM/SIGINT (or once); a stop never interrupts a send."""
    stop = Event()

    def _stop(*_: object) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    # Everything loaded so far (the whole app, its modules and configuration) lives as
    # long as the process: leave it out of the garbage collector's full passes, which
    # sending creates garbage enough to trigger every few hundred messages. Scanning
    # it cost a dispatcher process a sixth of its rate (bench/bench_dispatch.py).
    gc.freeze()
    worker = worker_name()
    while not stop.is_set():
        report = dispatch_due_messages(
            engine,
            gateway,
            lambda: datetime.now(UTC),
            worker=worker,
            threads=threads,
            status_callback=status_callback,
            lease=lease,
        )
        if any(report.as_dict().values()):
            logger.info("dispatch: %s", report.as_dict())
        if once:
            return
        stop.wait(interval)
