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
stored ``unconfirmed`` (``OutboxStatus.UNCONFIRMED``), keeping its ``claimed_at``,
with ``next_attempt_at`` the retry time; the lease expiry makes a later pass ask
Twilio before sending it again, as for a dead dispatcher's row. A blind retry could
deliver a reminder twice, and a duplicated "take your tablets" can mean a double
dose. A row that a dead dispatcher left ``sending`` gets its attempt back (it may
never have been tried); an unconfirmed send counts as a failed attempt, up to
``MAX_ATTEMPTS``.

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
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.sql import Select
from sqlmodel import Session, select

from reminders.core.messaging import defer_past_quiet_hours, in_quiet_hours
from reminders.data.alerts import raise_alert
from reminders.data.db import (
    RECONNECT,
    Reconnect,
    database_unavailable,
    outage_reason,
    session_scope,
    writer,
)
from reminders.data.models import CheckIn, OutboundMessage, Patient, Team
from reminders.data.statuses import OutboxStatus
from reminders.gateways import GatewayAuthError, PermanentSendError, SmsGateway, TransientSendError
from reminders.optout import block_for_delivery_error

logger = logging.getLogger(__name__)

MAX_ATTEMPTS = 6
#: A claimed row whose send may or may not have reached Twilio: crash recovery settles it.
IN_DOUBT = (OutboxStatus.SENDING, OutboxStatus.UNCONFIRMED)
BACKOFF_BASE = timedelta(seconds=30)
BACKOFF_MAX = timedelta(minutes=30)
#: A row claimed longer ago than this by a dispatcher that never recorded it is reclaimed.
DEFAULT_LEASE = timedelta(minutes=2)
#: After Twilio refuses our credentials, wait this long before trying again (an operator must act).
AUTH_FAILURE_PAUSE = timedelta(minutes=5)

#: Claim sizes when ``batch_size`` is not fixed (see :func:`_batch_size`). Every claim
#: sorts all due rows (urgent first, then oldest), so on a large backlog a small claim
#: costs the dispatcher and the database more than recording its sends. Once a pass
#: has claimed ``GROW_AFTER`` rows (a large backlog: dispatchers started side by side
#: have all joined in by then), each claim takes ``CLAIM_AHEAD_SECONDS`` of sending at
#: the measured rate, up to ``BATCH_MAX``; a small backlog is still claimed
#: ``BATCH_MIN`` rows at a time, so several dispatchers share it, and no claim waits
#: long for a sender thread.
BATCH_MIN = 50
BATCH_MAX = 250
GROW_AFTER = 1_000
CLAIM_AHEAD_SECONDS = 0.3
#: A claim that waited longer than this part of the lease for a sender thread (sends
#: gone slow after a large claim) is put back instead of sent: past the lease, another
#: dispatcher may reclaim and send it too.
CLAIM_WAIT_LEASE_FRACTION = 0.5

#: The most send outcomes one transaction records (see :class:`SentRecorder`).
RECORD_GROUP_MAX = 200
#: How long the recorder gathers outcomes before it writes them: a longer wait means
#: fewer transactions, a shorter one fewer accepted sends unrecorded at any moment.
RECORD_LINGER_SECONDS = 0.02

Clock = Callable[[], datetime]


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
    released: int = 0
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
    #: When :func:`claim_batch` claimed it (None for a claim rebuilt from a stale row).
    claimed_at: datetime | None = None


def backoff(attempts: int, retry_after: float | None = None) -> timedelta:
    """Exponential backoff after ``attempts`` tries, at least Twilio's Retry-After."""
    delay = min(BACKOFF_BASE * (2 ** max(attempts - 1, 0)), BACKOFF_MAX)
    if retry_after:
        delay = max(delay, timedelta(seconds=retry_after))
    return delay


def _decide(
    message: OutboundMessage,
    patient: Patient | None,
    team: Team,
    now: datetime,
    local_times: dict[str, datetime] | None = None,
) -> tuple[str, str | None]:
    """What to do with a due row: ("send", phone) or (status, reason).

    Takes the models or table rows with the same attributes (:func:`claim_batch`).
    ``local_times`` caches ``now`` in each time zone across the rows of one batch.
    """
    if message.not_after is not None and now > message.not_after:
        return OutboxStatus.MISSED, "no longer useful"
    if message.recipient == "oncall":
        return (
            ("send", team.oncall_phone)
            if team.oncall_phone
            else (OutboxStatus.CANCELLED, "team has no on-call number")
        )
    if patient is None:
        return OutboxStatus.CANCELLED, "no patient"
    if patient.discharged_at is not None:
        return OutboxStatus.CANCELLED, "patient discharged"
    if patient.opted_out:
        return OutboxStatus.CANCELLED, "patient opted out"
    if patient.sms_blocked_reason:
        return OutboxStatus.CANCELLED, patient.sms_blocked_reason
    if not patient.sms_consent and message.kind != "opted_in_confirmation":
        return OutboxStatus.CANCELLED, "no SMS consent"
    if not message.urgent:
        local = _local_time(now, patient.timezone, local_times)
        if in_quiet_hours(local.time(), patient.quiet_start, patient.quiet_end):
            return "deferred", None
    return "send", patient.phone


def _local_time(now: datetime, timezone: str, cache: dict[str, datetime] | None) -> datetime:
    """``now`` in ``timezone``, computed once per zone and batch when given a ``cache``."""
    if cache is None:
        return now.astimezone(ZoneInfo(timezone))
    local = cache.get(timezone)
    if local is None:
        local = cache[timezone] = now.astimezone(ZoneInfo(timezone))
    return local


_OUTBOX = OutboundMessage.__table__
_PATIENT = Patient.__table__
_TEAM = Team.__table__

#: Claim every row of a batch that goes out with one batched statement.
_CLAIM_MANY = (
    update(_OUTBOX)
    .where(_OUTBOX.c.id == bindparam("b_id"))
    .values(
        status=OutboxStatus.SENDING,
        claimed_at=bindparam("b_now"),
        claimed_by=bindparam("b_worker"),
        attempts=_OUTBOX.c.attempts + 1,
        to_phone=bindparam("b_to"),
    )
)


#: The columns of a due row that :func:`_decide` and a :class:`Claim` need.
_DUE_COLUMNS = (
    _OUTBOX.c.id,
    _OUTBOX.c.patient_id,
    _OUTBOX.c.team_id,
    _OUTBOX.c.recipient,
    _OUTBOX.c.kind,
    _OUTBOX.c.urgent,
    _OUTBOX.c.not_after,
    _OUTBOX.c.body,
    _OUTBOX.c.expects,
    _OUTBOX.c.dedupe_key,
    _OUTBOX.c.checkin_id,
)
# The claim's statements are built once, here: a dispatcher claims thousands of times,
# and building and cache-keying a statement costs about as much as running it.
_DUE = (
    select(*_DUE_COLUMNS)
    .where(
        _OUTBOX.c.status == OutboxStatus.PENDING, _OUTBOX.c.next_attempt_at <= bindparam("b_now")
    )
    .order_by(_OUTBOX.c.urgent.desc(), _OUTBOX.c.next_attempt_at, _OUTBOX.c.id)
    .limit(bindparam("b_limit"))
)
#: Several dispatchers side by side on PostgreSQL: each skips the rows another is claiming.
_DUE_SKIP_LOCKED = _DUE.with_for_update(skip_locked=True)
#: Only the patient columns :func:`_decide` reads: the whole row (JSON pill times, a
#: dozen other columns) cost more to fetch and convert than the decision itself.
_PATIENTS = select(
    _PATIENT.c.id,
    _PATIENT.c.phone,
    _PATIENT.c.timezone,
    _PATIENT.c.sms_consent,
    _PATIENT.c.opted_out,
    _PATIENT.c.sms_blocked_reason,
    _PATIENT.c.discharged_at,
    _PATIENT.c.quiet_start,
    _PATIENT.c.quiet_end,
).where(_PATIENT.c.id.in_(bindparam("b_ids", expanding=True)))
_TEAMS = select(_TEAM.c.id, _TEAM.c.oncall_phone).where(
    _TEAM.c.id.in_(bindparam("b_ids", expanding=True))
)


_RELEASE = (
    update(_OUTBOX)
    .where(
        _OUTBOX.c.id == bindparam("b_id"),
        _OUTBOX.c.status == OutboxStatus.SENDING,
        _OUTBOX.c.claimed_at == bindparam("b_at"),
        _OUTBOX.c.claimed_by == bindparam("b_worker"),
    )
    .values(status=OutboxStatus.PENDING, attempts=_OUTBOX.c.attempts - 1)
)


def claim_batch(
    engine: Engine, now: datetime, limit: int, worker: str, report: DispatchReport
) -> list[Claim]:
    """Claim up to ``limit`` due rows for ``worker`` in one short transaction.

    Rows are read and written with Core statements on a plain connection, not ORM
    instances or a session: the claim runs on the dispatcher's main thread while the
    sender threads wait for the GIL, and building, tracking and flushing a model
    instance per row would cost more than the claim's statements.
    """
    claims: list[Claim] = []
    claimed: list[dict[str, object]] = []
    c = _OUTBOX.c
    due = _DUE_SKIP_LOCKED if engine.dialect.name == "postgresql" else _DUE
    with writer(engine).begin() as conn:
        messages = conn.execute(due, {"b_now": now, "b_limit": limit}).all()
        patient_ids = list({m.patient_id for m in messages if m.patient_id})
        patients = _by_id(conn, _PATIENTS, patient_ids)
        teams = _by_id(conn, _TEAMS, list({m.team_id for m in messages}))
        local_times: dict[str, datetime] = {}
        for message in messages:
            patient = patients.get(message.patient_id)
            action, detail = _decide(message, patient, teams[message.team_id], now, local_times)
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
                        now,
                    )
                )
                continue
            if action == "deferred":
                local = _local_time(now, patient.timezone, local_times)
                resume = defer_past_quiet_hours(local, patient.quiet_start, patient.quiet_end)
                if message.not_after is not None and resume > message.not_after:
                    values = {
                        "status": OutboxStatus.MISSED,
                        "error_reason": "quiet hours outlasted its usefulness",
                    }
                    report.add("missed")
                else:
                    values = {"next_attempt_at": resume}
                    report.add("deferred")
            else:
                values = {"status": action, "error_reason": detail}
                report.add(action)
            conn.execute(update(_OUTBOX).where(c.id == message.id).values(**values))
        if claimed:
            conn.execute(_CLAIM_MANY, claimed)
    report.add("claimed", len(claims))
    return claims


def _by_id(conn: Connection, query: Select[Any], ids: list[int]) -> dict[int, Any]:
    """The rows ``query`` finds for ``ids`` (bound as ``b_ids``), by id."""
    if not ids:
        return {}
    return {row.id: row for row in conn.execute(query, {"b_ids": ids})}


def send_and_record(
    engine: Engine,
    gateway: SmsGateway,
    claim: Claim,
    clock: Clock,
    status_callback: str | None,
    report: DispatchReport,
    recorder: SentRecorder | None = None,
    max_wait: timedelta | None = None,
) -> None:
    """Send one claimed message and record the outcome.

    A failure is recorded at once in its own transaction; an accepted send too, or,
    with a ``recorder``, by the recorder together with others (group commit). A claim
    older than ``max_wait`` is not sent but put back (:func:`release_claim`).
    """
    if max_wait is not None and claim.claimed_at is not None:
        now = clock()
        if now - claim.claimed_at > max_wait:
            release_claim(engine, claim, report)
            return
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


def release_claim(engine: Engine, claim: Claim, report: DispatchReport) -> bool:
    """Put a claim that was never sent back to ``pending``, with its attempt returned.

    Only if the row is still that claim (False, nothing written, otherwise). For a
    claim that waited in this dispatcher's queue so long that its lease could expire:
    sending it then could duplicate a message another dispatcher reclaimed and sent.
    """
    with writer(engine).begin() as conn:
        released = conn.execute(
            _RELEASE,
            {"b_id": claim.message_id, "b_at": claim.claimed_at, "b_worker": claim.worker},
        ).rowcount
    if released:
        report.add("released")
    return bool(released)


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
    ``claimed_at``, no longer that claim, ``sending`` or ``unconfirmed``).
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
    condition = [OutboundMessage.id == claim.message_id]
    if claimed_at is None:
        condition.append(OutboundMessage.status == OutboxStatus.SENDING)
    else:  # crash recovery: a dead dispatcher's claim or an unconfirmed send
        condition += [
            OutboundMessage.status.in_(IN_DOUBT),
            OutboundMessage.claimed_at == claimed_at,
        ]
    updated = session.execute(
        update(OutboundMessage)
        .where(*condition)
        .values(
            status=OutboxStatus.SENT,
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
        OutboundMessage.__table__.c.status == OutboxStatus.SENDING,
    )
    .values(
        status=OutboxStatus.SENT,
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
    if len(plain) == len(group):
        # Only plain messages (a backlog of reminders): a connection, not a session,
        # whose set-up and commit cost more than the batched UPDATE itself.
        with writer(engine).begin() as conn:
            conn.execute(_MARK_SENT_MANY, plain)
        return
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
        self._closing = Event()
        self._thread = Thread(target=self._run, name="sms-recorder", daemon=True)
        self._thread.start()

    def put(self, claim: Claim, provider_sid: str, now: datetime) -> None:
        """Queue the record of an accepted send."""
        self._queue.put((claim, provider_sid, now))

    def close(self, *, raise_error: bool = True) -> None:
        """Write what is queued and stop the writer; re-raise the error that stopped it."""
        self._closing.set()  # no more gathering: write what is queued at once
        self._queue.put(None)
        self._thread.join()
        if raise_error and self._error is not None:
            raise self._error

    def _run(self) -> None:
        finished = False
        while not finished:
            group: list[tuple[Claim, str, datetime]] = []
            item = self._queue.get()
            # Gather for a moment: what is already queued is one or two outcomes, and
            # a transaction per pair costs more than the pair's sends. The writer
            # sleeps through the moment and then takes what has arrived, rather than
            # waiting on the queue for each item: a wake-up (and a turn at the GIL,
            # taken from the senders) per accepted send costs more than the record.
            if item is not None:
                self._closing.wait(RECORD_LINGER_SECONDS)
            while True:
                if item is None:
                    finished = True
                    break
                group.append(item)
                if len(group) >= RECORD_GROUP_MAX:
                    break
                try:
                    item = self._queue.get_nowait()
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
        if message is None or message.status != OutboxStatus.SENDING:
            return
        message.error_code, message.error_reason = error.code, error.reason[:300]
        retry_at = now + backoff(message.attempts, error.retry_after)
        if message.attempts >= MAX_ATTEMPTS:
            message.status = OutboxStatus.FAILED
            report.add("failed")
            _alert_delivery_failure(
                session,
                message,
                now,
                f"SMS could not be delivered after {message.attempts} attempts",
            )
        elif message.not_after is not None and retry_at > message.not_after:
            message.status = OutboxStatus.MISSED
            report.add("missed")
        else:
            message.status = OutboxStatus.PENDING
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
    """Twilio may have accepted the message: store it ``unconfirmed`` for crash recovery.

    ``claimed_at`` is kept, so once the lease has expired :func:`recover_stale_claims`
    asks Twilio for a message created since then before anything is sent again;
    ``next_attempt_at`` is when a retry may go out if Twilio did not take it.
    """
    with session_scope(engine) as session:
        message = session.get(OutboundMessage, claim.message_id)
        if message is None or message.status != OutboxStatus.SENDING:
            return
        message.status = OutboxStatus.UNCONFIRMED
        message.error_code, message.error_reason = error.code, error.reason[:300]
        message.next_attempt_at = now + backoff(message.attempts)
        session.add(message)
    report.add("unconfirmed")


def _record_auth_failure(
    engine: Engine, claim: Claim, error: GatewayAuthError, now: datetime, report: DispatchReport
) -> None:
    """Twilio refused our credentials: not the message's fault. Put it back and stop the pass."""
    logger.error("Twilio refused the account credentials (code %s): dispatch paused", error.code)
    with session_scope(engine) as session:
        message = session.get(OutboundMessage, claim.message_id)
        if message is None or message.status != OutboxStatus.SENDING:
            return
        message.status = OutboxStatus.PENDING
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
        if message is None or message.status != OutboxStatus.SENDING:
            return
        message.status = OutboxStatus.FAILED
        message.error_code, message.error_reason = error.code, error.reason[:300]
        session.add(message)
        report.add("failed")
        # STOP at the carrier (21610) or a number that cannot get SMS: the one opt-out
        # policy blocks the patient and alerts the team; anything else is this message's.
        if block_for_delivery_error(session, message, error.code, now) is None:
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
    """A row in doubt past its lease, as read before asking the gateway."""

    claim: Claim
    claimed_at: datetime
    status: str


def recover_stale_claims(
    engine: Engine, gateway: SmsGateway, now: datetime, lease: timedelta, report: DispatchReport
) -> None:
    """Settle rows left ``sending`` (a dead dispatcher) or ``unconfirmed`` past their lease.

    Each is looked up with the gateway (no transaction open meanwhile): a message
    Twilio accepted is recorded as sent, with the side effects of a send (the check-in
    a temperature prompt opens); any other goes back to ``pending`` (or ``failed``
    when its attempts are used up). Each outcome is written only if the row is still
    the same claim, so two dispatchers recovering at once settle it once.
    """
    with session_scope(engine) as session:
        query = select(OutboundMessage).where(
            OutboundMessage.status.in_(IN_DOUBT), OutboundMessage.claimed_at < now - lease
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
                message.status,
            )
            for message in session.exec(query).all()
        ]
    for row in stale:
        found = None
        if row.claim.to:
            try:
                found = gateway.find_sent(row.claim.to, row.claim.body, since=row.claimed_at)
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
            if message.status == OutboxStatus.SENDING:
                # A dead dispatcher's claim: no outcome was recorded, perhaps none tried.
                message.status, message.next_attempt_at = OutboxStatus.PENDING, now
                message.attempts = max(message.attempts - 1, 0)
                report.add("reclaimed")
            elif message.attempts >= MAX_ATTEMPTS:
                message.status = OutboxStatus.FAILED
                report.add("failed")
                _alert_delivery_failure(
                    session,
                    message,
                    now,
                    f"SMS could not be delivered after {message.attempts} attempts",
                )
            else:
                # An unanswered send that Twilio did not take: retry at its backoff time.
                message.status = OutboxStatus.PENDING
                message.next_attempt_at = max(message.next_attempt_at, now)
                report.add("retried")
            session.add(message)


def _same_claim(message: OutboundMessage, row: _StaleClaim) -> bool:
    return (
        message.status == row.status
        and message.claimed_at == row.claimed_at
        and (message.claimed_by or "") == row.claim.worker
    )


class _InFlight:
    """The sends submitted and not finished: a count to wait on, and the first failure.

    Cheaper than ``concurrent.futures.wait`` on the set of futures, which installs a
    waiter on every one of them each time a send finishes. A finished send wakes the
    waiting dispatcher only when the count it waits for is reached (or on a failure),
    not on every send: each wake-up is a GIL hand-over taken from the sender threads.
    """

    def __init__(self) -> None:
        self._changed = Condition()
        self._running = 0
        self._limit = 0  # the waiter's limit; 0 while nobody waits
        self._error: BaseException | None = None
        #: Sends finished so far (the rate :func:`_batch_size` sizes claims by).
        self.finished = 0

    def add(self, future: Future[None]) -> None:
        """Count ``future`` until it finishes."""
        with self._changed:
            self._running += 1
        future.add_done_callback(self._finished)

    def _finished(self, future: Future[None]) -> None:
        error = future.exception()
        with self._changed:
            self._running -= 1
            self.finished += 1
            if error is not None and self._error is None:
                self._error = error
            if self._error is not None or self._running < self._limit:
                self._changed.notify_all()

    def wait_until_below(self, limit: int) -> None:
        """Return once fewer than ``limit`` sends run; raise the first send's failure, if any."""
        with self._changed:
            self._limit = limit
            try:
                self._changed.wait_for(lambda: self._error is not None or self._running < limit)
            finally:
                self._limit = 0
            if self._error is not None:
                raise self._error  # a failure to record stops the pass, as before


def dispatch_due_messages(
    engine: Engine,
    gateway: SmsGateway,
    clock: Clock,
    *,
    worker: str | None = None,
    batch_size: int | None = None,
    threads: int = 8,
    status_callback: str | None = None,
    lease: timedelta = DEFAULT_LEASE,
    max_batches: int | None = None,
) -> DispatchReport:
    """Send every due message, batch by batch, until none is due (or ``max_batches``).

    The next batch is claimed as soon as a thread is free, so the threads do not wait
    for the slowest send of each batch; accepted sends are recorded by a
    :class:`SentRecorder`. ``batch_size`` fixes the size of every claim; by default
    it follows the send rate (:func:`_batch_size`). A claim still unsent after half
    the ``lease`` is put back rather than sent (:func:`release_claim`).
    """
    worker = worker or worker_name()
    report = DispatchReport()
    recover_stale_claims(engine, gateway, clock(), lease, report)
    batches = 0
    max_wait = lease * CLAIM_WAIT_LEASE_FRACTION
    recorder = SentRecorder(engine, report)
    try:
        with ThreadPoolExecutor(max_workers=threads, thread_name_prefix="sms") as pool:
            sends = _InFlight()
            size = batch_size or BATCH_MIN
            last_claim, finished = time.monotonic(), 0
            while max_batches is None or batches < max_batches:
                if report.auth_failed:
                    break  # every message would fail the same way
                if batch_size is None and batches:
                    at = time.monotonic()
                    rate = (sends.finished - finished) / max(at - last_claim, 1e-6)
                    size = _batch_size(rate, report.claimed)
                    last_claim, finished = at, sends.finished
                claims = claim_batch(engine, clock(), size, worker, report)
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
                            max_wait,
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


def _batch_size(rate: float, claimed: int) -> int:
    """The next claim's size at ``rate`` sends a second, ``claimed`` rows into a pass.

    :data:`BATCH_MIN` until :data:`GROW_AFTER` rows are claimed; then
    :data:`CLAIM_AHEAD_SECONDS` of sending, within [:data:`BATCH_MIN`, :data:`BATCH_MAX`].
    """
    if claimed < GROW_AFTER:
        return BATCH_MIN
    return min(max(int(rate * CLAIM_AHEAD_SECONDS), BATCH_MIN), BATCH_MAX)


def run_dispatcher(
    engine: Engine,
    gateway: SmsGateway,
    *,
    once: bool = False,
    interval: float = 5.0,
    threads: int = 8,
    status_callback: str | None = None,
    lease: timedelta = DEFAULT_LEASE,
    stop: Event | None = None,
    clock: Clock | None = None,
    reconnect: Reconnect = RECONNECT,
) -> None:
    """Dispatch in a loop until SIGTERM/SIGINT (or once); a stop never interrupts a send.

    While the database is unreachable, each failed pass logs one line and the next is
    tried after ``reconnect``'s growing wait, until the database is back: a dispatcher
    never exits because of an outage. A pass cut short leaves its claimed rows
    ``sending``; once their lease has expired, a later pass asks the gateway whether
    they went out before sending them again. With ``once`` an outage is raised (the
    CLI reports it in one line). ``stop`` replaces the signal handlers (a dispatcher
    run in a thread); ``clock`` defaults to the current UTC time.
    """
    if stop is None:
        stop = Event()

        def _stop(*_: object) -> None:
            stop.set()

        signal.signal(signal.SIGTERM, _stop)
        signal.signal(signal.SIGINT, _stop)
    clock = clock or (lambda: datetime.now(UTC))
    # Everything loaded so far (the whole app, its modules and configuration) lives as
    # long as the process: leave it out of the garbage collector's full passes, which
    # sending creates garbage enough to trigger every few hundred messages, and
    # scanning all of it each time would slow every send.
    gc.freeze()
    worker = worker_name()
    failures = 0
    while not stop.is_set():
        try:
            report = dispatch_due_messages(
                engine,
                gateway,
                clock,
                worker=worker,
                threads=threads,
                status_callback=status_callback,
                lease=lease,
            )
        except Exception as exc:
            if once or not database_unavailable(exc):
                raise
            failures += 1
            delay = reconnect.delay(failures)
            # One line, no traceback: an outage of minutes must not bury the log.
            logger.warning(
                "dispatch: database unreachable (%s); retrying in %g s", outage_reason(exc), delay
            )
            stop.wait(delay)
            continue
        if failures:
            logger.info("dispatch: database reachable again after %d failed passes", failures)
            failures = 0
        if any(report.as_dict().values()):
            logger.info("dispatch: %s", report.as_dict())
        if once:
            return
        stop.wait(interval)
