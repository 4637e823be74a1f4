"""Recording a send's outcome: sent (one by one or in groups), retried, unconfirmed, failed.

An accepted send is marked ``sent`` with Twilio's SID and opens the check-in a
temperature prompt starts; a :class:`SentRecorder` records many in one transaction.
A refusal or an unanswered send is recorded by :func:`record_failure`, each in its
own short transaction, and only while the row is still this claim's ``sending``:

- a transient error puts the message back to ``pending`` with a backoff, or ``missed``
  when the retry would come after its usefulness, or ``failed`` (the team alerted)
  once its :data:`MAX_ATTEMPTS` are used up;
- a send whose outcome is unknown (no answer within the timeout, a connection lost
  after the request was written: Twilio may still have accepted the message) is
  stored ``unconfirmed`` (``OutboxStatus.UNCONFIRMED``), keeping its ``claimed_at``,
  with ``next_attempt_at`` the retry time; crash recovery (:mod:`reminders.recovery`)
  asks Twilio before sending it again. A blind retry could deliver a reminder twice,
  and a duplicated "take your tablets" can mean a double dose;
- refused credentials put the message back with its attempt returned and pause the
  pass: not the message's fault;
- a permanent refusal fails the message; a refusal that blocks the number goes
  through the one opt-out policy (:mod:`reminders.optout`), any other alerts the team
  (for a copy to a family contact, an alert that says so: not the patient's SMS).

:class:`DispatchReport` counts these outcomes (and the claims, :mod:`reminders.dispatch`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from queue import Empty, SimpleQueue
from threading import Event, Lock, Thread

from sqlalchemy import bindparam, update
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from reminders.data.alerts import raise_alert
from reminders.data.db import session_scope, writer
from reminders.data.family_contacts import FAMILY_UNDELIVERABLE_KIND, contact_with_phone
from reminders.data.models import CheckIn, OutboundMessage, Patient
from reminders.data.statuses import OutboxStatus, PageOutcome, Recipient
from reminders.escalation import record_page_outcome
from reminders.gateways import GatewayAuthError, PermanentSendError, TransientSendError
from reminders.optout import block_for_delivery_error

logger = logging.getLogger(__name__)

MAX_ATTEMPTS = 6
#: A claimed row whose send may or may not have reached Twilio: crash recovery settles it.
IN_DOUBT = (OutboxStatus.SENDING, OutboxStatus.UNCONFIRMED)
BACKOFF_BASE = timedelta(seconds=30)
BACKOFF_MAX = timedelta(minutes=30)
#: After Twilio refuses our credentials, wait this long before trying again (an operator must act).
AUTH_FAILURE_PAUSE = timedelta(minutes=5)

#: The most send outcomes one transaction records (see :class:`SentRecorder`).
RECORD_GROUP_MAX = 200
#: How long the recorder gathers outcomes before it writes them: a longer wait means
#: fewer transactions, a shorter one fewer accepted sends unrecorded at any moment.
RECORD_LINGER_SECONDS = 0.02


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
    #: SMS sent longer than their template's segment budget (counted, never stopped).
    over_budget: int = 0
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
    #: When :func:`~reminders.dispatch.claim_batch` claimed it (None for a claim
    #: rebuilt from a stale row).
    claimed_at: datetime | None = None
    #: ``sms``, or ``voice`` for a page call (the body is what the call says).
    channel: str = "sms"
    #: When the row became due (its ``next_attempt_at`` at the claim): the send delay's start.
    due_at: datetime | None = None


def backoff(attempts: int, retry_after: float | None = None) -> timedelta:
    """Exponential backoff after ``attempts`` tries, at least Twilio's Retry-After."""
    delay = min(BACKOFF_BASE * (2 ** max(attempts - 1, 0)), BACKOFF_MAX)
    if retry_after:
        delay = max(delay, timedelta(seconds=retry_after))
    return delay


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

    Crash safety: a message Twilio accepted waits here for milliseconds; if the
    process dies meanwhile, its row stays ``sending`` and
    :func:`~reminders.recovery.recover_stale_claims` finds it in Twilio's list and
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


def record_failure(
    engine: Engine,
    claim: Claim,
    error: TransientSendError | PermanentSendError,
    now: datetime,
    report: DispatchReport,
) -> None:
    """Record a send the gateway refused or left unanswered, if the row is still ``sending``."""
    if isinstance(error, GatewayAuthError):
        logger.error(
            "Twilio refused the account credentials (code %s): dispatch paused", error.code
        )
    with session_scope(engine) as session:
        message = session.get(OutboundMessage, claim.message_id)
        if message is None or message.status != OutboxStatus.SENDING:
            return
        if isinstance(error, GatewayAuthError):
            outcome = _credentials_refused(message, error, now)
        elif isinstance(error, PermanentSendError):
            outcome = _refused(session, message, error, now)
        elif error.maybe_sent:
            outcome = _unconfirmed(message, error, now)
        else:
            outcome = _retry_later(session, message, error, now, report)
        session.add(message)
    if outcome:
        report.add(outcome)


def _retry_later(
    session: Session,
    message: OutboundMessage,
    error: TransientSendError,
    now: datetime,
    report: DispatchReport,
) -> str | None:
    """A transient error: retry after the backoff, unless too late or out of attempts."""
    message.error_code, message.error_reason = error.code, error.reason[:300]
    retry_at = now + backoff(message.attempts, error.retry_after)
    if message.attempts >= MAX_ATTEMPTS:
        fail_out_of_attempts(session, message, now, report)
        return None
    if message.not_after is not None and retry_at > message.not_after:
        message.status = OutboxStatus.MISSED
        return "missed"
    message.status = OutboxStatus.PENDING
    message.next_attempt_at = retry_at
    return "retried"


def _unconfirmed(message: OutboundMessage, error: TransientSendError, now: datetime) -> str:
    """Twilio may have accepted the message: store it ``unconfirmed`` for crash recovery.

    ``claimed_at`` is kept, so once the lease has expired crash recovery asks Twilio
    for a message created since then before anything is sent again;
    ``next_attempt_at`` is when a retry may go out if Twilio did not take it.
    """
    message.status = OutboxStatus.UNCONFIRMED
    message.error_code, message.error_reason = error.code, error.reason[:300]
    message.next_attempt_at = now + backoff(message.attempts)
    return "unconfirmed"


def _credentials_refused(message: OutboundMessage, error: GatewayAuthError, now: datetime) -> str:
    """Twilio refused our credentials: put the message back, its attempt returned."""
    message.status = OutboxStatus.PENDING
    message.attempts = max(message.attempts - 1, 0)
    message.next_attempt_at = now + AUTH_FAILURE_PAUSE
    message.error_code, message.error_reason = error.code, "credentials refused by the provider"
    return "auth_failed"


def _refused(
    session: Session, message: OutboundMessage, error: PermanentSendError, now: datetime
) -> str:
    """A permanent refusal: the message failed; the number blocked or the team alerted."""
    message.status = OutboxStatus.FAILED
    message.error_code, message.error_reason = error.code, error.reason[:300]
    # STOP at the carrier (21610) or a number that cannot get SMS: the one opt-out
    # policy blocks the patient (or stops a family contact's copies) and alerts the
    # team once; anything else is this message's.
    if not block_for_delivery_error(session, message, error.code, now):
        alert_delivery_failure(
            session, message, now, f"SMS refused by the provider (code {error.code})"
        )
    return "failed"


def fail_out_of_attempts(
    session: Session, message: OutboundMessage, now: datetime, report: DispatchReport
) -> None:
    """Fail a message whose attempts are used up, and alert the team."""
    message.status = OutboxStatus.FAILED
    report.add("failed")
    alert_delivery_failure(
        session, message, now, f"SMS could not be delivered after {message.attempts} attempts"
    )


def alert_delivery_failure(
    session: Session, message: OutboundMessage, now: datetime, reason: str
) -> None:
    """Tell the team a message to their patient will not arrive (a page: its alert's timeline).

    A page that failed is not a message to the patient: it goes on its alert's timeline,
    and the escalation's next step pages on regardless. A copy to a family contact is
    not either: its alert (kind ``family_sms_undeliverable``) says whose copy failed, so
    nobody reads it as the patient being out of reach.
    """
    if record_page_outcome(session, message, PageOutcome.FAILED, now, detail=reason):
        logger.error("page %s failed permanently", message.id)
        return
    if message.patient_id is None:
        logger.error("on-call SMS %s failed permanently", message.id)
        return
    kind = "sms_undeliverable"
    details: dict[str, object] = {"message_id": message.id, "error_code": message.error_code}
    if message.recipient == Recipient.FAMILY:
        kind = FAMILY_UNDELIVERABLE_KIND
        contact = contact_with_phone(session, message.patient_id, message.to_phone)
        who = contact.relationship if contact is not None else "no longer listed"
        reason = (
            f"A copy to the patient's family contact ({who}) failed, not the patient's own "
            f"SMS: {reason}."
        )
        details["family_contact_id"] = contact.id if contact is not None else None
    raise_alert(
        session,
        session.get_one(Patient, message.patient_id),
        severity="high",
        kind=kind,
        reason=reason[:500],
        details=details,
        source="Twilio delivery",
        now=now,
        dedupe_key=f"undeliverable:{message.id}",
    )
