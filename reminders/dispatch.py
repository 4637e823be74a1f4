"""The dispatcher: claim due outbox rows, decide, send them, and loop.

Decide apart from deliver: a short write transaction claims a batch (``FOR
UPDATE SKIP LOCKED`` on PostgreSQL, so several dispatchers can run side by side;
one IMMEDIATE writer at a time on SQLite) and decides for each row whether it is
still fresh, still allowed (consent, opt-out, reachable number) and outside the
patient's quiet hours. Only then is the HTTP call made, with no transaction or
row lock held, and the result (Twilio's SID, or the error) is recorded in its
own short transaction (:mod:`reminders.delivery`).

Each pass starts by settling the rows a dead dispatcher or an unanswered send left
in doubt (:mod:`reminders.recovery`), asking Twilio before anything is sent again.
"""

from __future__ import annotations

import gc
import logging
import math
import os
import signal
import socket
import time
import uuid
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import closing
from datetime import UTC, datetime, timedelta
from threading import Condition, Event
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import bindparam, update
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.sql import Select
from sqlmodel import select

from reminders import logcontext
from reminders.core.messaging import defer_past_quiet_hours, in_quiet_hours
from reminders.core.templates import DEFAULT_LANGUAGE, segments_over_budget
from reminders.data.db import (
    RECONNECT,
    Reconnect,
    database_unavailable,
    outage_reason,
    writer,
)
from reminders.data.models import OutboundMessage, Patient, Team
from reminders.data.statuses import Channel, OutboxStatus
from reminders.delivery import (
    Claim,
    DispatchReport,
    SentRecorder,
    record_failure,
    record_sent,
)
from reminders.gateways import PermanentSendError, SmsGateway, TransientSendError
from reminders.metrics import count_over_budget, observe_accepted
from reminders.recovery import recover_stale_claims
from reminders.wakeup import NoWakeup, Wakeup, listen_for_wakeups

logger = logging.getLogger(__name__)

#: A row claimed longer ago than this by a dispatcher that never recorded it is reclaimed.
DEFAULT_LEASE = timedelta(minutes=2)

#: The longest a dispatcher waits on its wake-up before looking at its stop event: a
#: signal does not interrupt the wait (the wait resumes after the handler has run).
STOP_CHECK_SECONDS = 0.5
#: A woken pass starts at least this long after the previous pass started: a lone
#: urgent row goes at once, a stream of them is taken a batch per interval. Each pass
#: costs claim and record transactions (on SQLite the one write lock, shared with the
#: web), so one pass per row would take capacity from the webhooks themselves.
WOKEN_PASS_SPACING = 0.25

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

Clock = Callable[[], datetime]


def worker_name() -> str:
    """A unique name for this dispatcher (host, pid and a random suffix)."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


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
    if message.recipient == "family" and patient is not None:
        # A copy or nudge about a patient no longer followed, or erased, is not sent.
        if patient.discharged_at is not None:
            return OutboxStatus.CANCELLED, "patient discharged"
        if patient.erased_at is not None:
            return OutboxStatus.CANCELLED, "contact details erased"
    if message.recipient in ("clinician", "family"):
        # A page: its number was chosen from the rota when the step was taken. A copy to
        # a patient's family contact (reminders/family.py): their number, checked then.
        return (
            ("send", message.to_phone)
            if message.to_phone
            else (OutboxStatus.CANCELLED, "page without a number")
        )
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
    if patient.erased_at is not None:
        return OutboxStatus.CANCELLED, "contact details erased"
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
    _OUTBOX.c.to_phone,
    _OUTBOX.c.channel,
    _OUTBOX.c.kind,
    _OUTBOX.c.urgent,
    _OUTBOX.c.not_after,
    _OUTBOX.c.body,
    _OUTBOX.c.expects,
    _OUTBOX.c.dedupe_key,
    _OUTBOX.c.checkin_id,
    _OUTBOX.c.next_attempt_at,
    _OUTBOX.c.attempts,
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
    _PATIENT.c.erased_at,
    _PATIENT.c.quiet_start,
    _PATIENT.c.quiet_end,
    _PATIENT.c.language,
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
                if message.channel == Channel.SMS:
                    _count_over_budget(message, patient, report)
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
                        message.channel,
                        due_at=message.next_attempt_at,
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


def _count_over_budget(message: Any, patient: Any, report: DispatchReport) -> None:
    """Count an SMS longer than its template's budget, and log it by id and kind only.

    It is still sent: a long SMS costs more and may arrive in parts, but holding back a
    reminder or an answer would be worse. The count is in the dispatcher's report.
    """
    language = patient.language if patient is not None else DEFAULT_LANGUAGE
    over = segments_over_budget(message.kind, language, message.body)
    if over is not None:
        report.add("over_budget")
        if not message.attempts:  # the metric counts each SMS once, not each retry
            count_over_budget(message.kind)
        logger.warning(
            "outbox %s: %s takes %s segments, over its budget of %s",
            message.id,
            message.kind,
            *over,
        )


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
        if claim.channel == Channel.VOICE:
            result = gateway.call(claim.to, page_id=claim.message_id, spoken_text=claim.body)
        else:
            result = gateway.send(claim.to, claim.body, status_callback=status_callback)
    except (TransientSendError, PermanentSendError) as error:
        record_failure(engine, claim, error, clock(), report)
    else:
        accepted_at = clock()
        observe_accepted(claim.channel, claim.body, claim.due_at, accepted_at)
        if recorder is not None:
            recorder.put(claim, result.provider_sid, accepted_at)
            return
        record_sent(engine, claim, result.provider_sid, accepted_at)
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
    recover: bool = True,
) -> DispatchReport:
    """Send every due message, batch by batch, until none is due (or ``max_batches``).

    The pass starts by settling stale claims (:func:`recover_stale_claims`) unless
    ``recover`` is False (a pass woken for an urgent row soon after one that did).

    The next batch is claimed as soon as a thread is free, so the threads do not wait
    for the slowest send of each batch; accepted sends are recorded by a
    :class:`SentRecorder`. ``batch_size`` fixes the size of every claim; by default
    it follows the send rate (:func:`_batch_size`). A claim still unsent after half
    the ``lease`` is put back rather than sent (:func:`release_claim`).
    """
    worker = worker or worker_name()
    report = DispatchReport()
    if recover:
        recover_stale_claims(engine, gateway, clock(), lease, report)
    batches = 0
    max_wait = lease * CLAIM_WAIT_LEASE_FRACTION
    recorder = SentRecorder(engine, report)
    try:
        with ThreadPoolExecutor(
            max_workers=threads,
            thread_name_prefix="sms",
            initializer=logcontext.adopt,  # the senders' lines carry the pass's job id
            initargs=(logcontext.current_id(),),
        ) as pool:
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
    wakeups: bool = True,
) -> None:
    """Dispatch in a loop until SIGTERM/SIGINT (or once); a stop never interrupts a send.

    Between passes the dispatcher waits up to ``interval`` seconds for a wake-up (an
    urgent row committed: :mod:`reminders.wakeup`) and starts the next pass at once
    when one comes; ``wakeups=False`` only polls.

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
    ready = False
    # Stale claims are settled at least once per interval, not on every woken pass: a
    # burst of urgent rows wakes a pass each, and the claims settled are minutes old.
    recovered_at = -math.inf
    # Listening starts before the first pass: a row committed during it wakes the next.
    wakeup: Wakeup = listen_for_wakeups(engine) if wakeups and not once else NoWakeup()
    with closing(wakeup):
        while not stop.is_set():
            started = time.monotonic()
            recover = started - recovered_at >= interval
            # The pass's id stays current until the next pass: the wait belongs to it.
            logcontext.enter("job", logcontext.new_id("dispatch-"))
            try:
                report = dispatch_due_messages(
                    engine,
                    gateway,
                    clock,
                    worker=worker,
                    threads=threads,
                    status_callback=status_callback,
                    lease=lease,
                    recover=recover,
                )
            except Exception as exc:
                if once or not database_unavailable(exc):
                    raise
                failures += 1
                delay = reconnect.delay(failures)
                # One line, no traceback: an outage of minutes must not bury the log.
                logger.warning(
                    "dispatch: database unreachable (%s); retrying in %g s",
                    outage_reason(exc),
                    delay,
                )
                stop.wait(delay)
                continue
            if recover:
                recovered_at = time.monotonic()
            if failures:
                logger.info("dispatch: database reachable again after %d failed passes", failures)
                failures = 0
            if any(report.as_dict().values()):
                logger.info("dispatch: %s", report.as_dict())
            if once:
                return
            if not ready:
                logger.info("dispatch: first pass done; the next within %g s", interval)
                ready = True
            if wait_for_work(wakeup, stop, interval):
                stop.wait(started + WOKEN_PASS_SPACING - time.monotonic())


def wait_for_work(wakeup: Wakeup, stop: Event, interval: float) -> bool:
    """Wait until ``wakeup`` fires (True), ``interval`` seconds pass or ``stop`` is set.

    Waits on the wake-up in slices of :data:`STOP_CHECK_SECONDS`, so a stop is seen
    within that time; a wake-up that never comes costs nothing but the poll interval.
    """
    deadline = time.monotonic() + interval
    while not stop.is_set():
        left = deadline - time.monotonic()
        if left <= 0:
            return False
        if wakeup.wait(min(left, STOP_CHECK_SECONDS)):
            return True
    return False
