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
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from threading import Event, Lock
from zoneinfo import ZoneInfo

from sqlalchemy import update
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
    """What to do with a due row: ("send", phone) or (status, reason)."""
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


def claim_batch(
    engine: Engine, now: datetime, limit: int, worker: str, report: DispatchReport
) -> list[Claim]:
    """Claim up to ``limit`` due rows for ``worker`` in one short transaction."""
    claims: list[Claim] = []
    with session_scope(engine) as session:
        query = (
            select(OutboundMessage)
            .where(OutboundMessage.status == "pending", OutboundMessage.next_attempt_at <= now)
            .order_by(
                OutboundMessage.urgent.desc(), OutboundMessage.next_attempt_at, OutboundMessage.id
            )
            .limit(limit)
        )
        if engine.dialect.name == "postgresql":
            query = query.with_for_update(skip_locked=True)
        messages = session.exec(query).all()
        patients = _by_id(session, Patient, {m.patient_id for m in messages if m.patient_id})
        teams = _by_id(session, Team, {m.team_id for m in messages})
        for message in messages:
            patient = patients.get(message.patient_id)
            action, detail = _decide(message, patient, teams[message.team_id], now)
            if action == "send":
                message.status = "sending"
                message.claimed_at = now
                message.claimed_by = worker
                message.attempts += 1
                message.to_phone = detail
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
            elif action == "deferred":
                local = now.astimezone(ZoneInfo(patient.timezone))
                resume = defer_past_quiet_hours(local, patient.quiet_start, patient.quiet_end)
                if message.not_after is not None and resume > message.not_after:
                    message.status, message.error_reason = (
                        "missed",
                        "quiet hours outlasted its usefulness",
                    )
                    report.add("missed")
                else:
                    message.next_attempt_at = resume
                    report.add("deferred")
            else:
                message.status = action
                message.error_reason = detail
                report.add(action)
            session.add(message)
    report.add("claimed", len(claims))
    return claims


def _by_id(session: Session, model: type, ids: set[int]) -> dict[int, object]:
    if not ids:
        return {}
    return {row.id: row for row in session.exec(select(model).where(model.id.in_(ids))).all()}


def send_and_record(
    engine: Engine,
    gateway: SmsGateway,
    claim: Claim,
    clock: Clock,
    status_callback: str | None,
    report: DispatchReport,
) -> None:
    """Send one claimed message and record the outcome in its own transaction."""
    try:
        result = gateway.send(claim.to, claim.body, status_callback=status_callback)
    except GatewayAuthError as error:
        _record_auth_failure(engine, claim, error, clock(), report)
    except TransientSendError as error:
        _record_transient(engine, claim, error, clock(), report)
    except PermanentSendError as error:
        _record_permanent(engine, claim, error, clock(), report)
    else:
        record_sent(engine, claim, result.provider_sid, clock())
        report.add("sent")


def record_sent(engine: Engine, claim: Claim, provider_sid: str, now: datetime) -> None:
    """Mark a claimed message sent with Twilio's SID; open the check-in it starts."""
    with session_scope(engine) as session:
        session.execute(
            update(OutboundMessage)
            .where(OutboundMessage.id == claim.message_id, OutboundMessage.status == "sending")
            .values(
                status="sent",
                provider_sid=provider_sid,
                sent_at=now,
                error_code=None,
                error_reason=None,
            )
        )
        if claim.checkin_id is not None:  # a re-sent or re-check prompt of an open check-in
            checkin = session.get(CheckIn, claim.checkin_id)
            if checkin is not None:
                checkin.last_prompt_at = now
                session.add(checkin)
        elif claim.expects == "temperature" and claim.patient_id is not None:
            open_checkin(session, claim.patient_id, claim.dedupe_key, now)


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


def recover_stale_claims(
    engine: Engine, gateway: SmsGateway, now: datetime, lease: timedelta, report: DispatchReport
) -> None:
    """Reclaim rows left ``sending`` by a dispatcher that died; record those the gateway did accept."""
    with session_scope(engine) as session:
        query = select(OutboundMessage).where(
            OutboundMessage.status == "sending", OutboundMessage.claimed_at < now - lease
        )
        if engine.dialect.name == "postgresql":
            query = query.with_for_update(skip_locked=True)
        for message in session.exec(query).all():
            found = None
            finder = getattr(gateway, "find_sent", None)
            if finder is not None and message.to_phone:
                try:
                    found = finder(message.to_phone, message.body, since=message.claimed_at)
                except (TransientSendError, PermanentSendError):
                    found = None
            if found:
                message.status, message.provider_sid, message.sent_at = "sent", found, now
                report.add("reconciled")
            else:
                message.status, message.next_attempt_at = "pending", now
                report.add("reclaimed")
            session.add(message)


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
    """Send every due message, batch by batch, until none is due (or ``max_batches``)."""
    worker = worker or worker_name()
    report = DispatchReport()
    recover_stale_claims(engine, gateway, clock(), lease, report)
    batches = 0
    with ThreadPoolExecutor(max_workers=threads, thread_name_prefix="sms") as pool:
        while max_batches is None or batches < max_batches:
            if report.auth_failed:
                break  # every message would fail the same way
            claims = claim_batch(engine, clock(), batch_size, worker, report)
            if not claims:
                break
            batches += 1
            list(
                pool.map(
                    lambda c: send_and_record(engine, gateway, c, clock, status_callback, report),
                    claims,
                )
            )
    return report


def run_dispatcher(
    engine: Engine,
    gateway: SmsGateway,
    *,
    once: bool = False,
    interval: float = 5.0,
    threads: int = 8,
    status_callback: str | None = None,
) -> None:
    """Dispatch in a loop until SIGTERM/SIGINT (or once); a stop never interrupts a send."""
    stop = Event()

    def _stop(*_: object) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    worker = worker_name()
    while not stop.is_set():
        report = dispatch_due_messages(
            engine,
            gateway,
            lambda: datetime.now(UTC),
            worker=worker,
            threads=threads,
            status_callback=status_callback,
        )
        if report.claimed:
            logger.info("dispatch: %s", report.as_dict())
        if once:
            return
        stop.wait(interval)
