"""Crash recovery: settle the rows a dead dispatcher or an unanswered send left in doubt.

If a dispatcher dies between Twilio's acceptance and the record of it, the row stays
``sending``; a send nobody answered is stored ``unconfirmed`` (:mod:`reminders.delivery`).
Once such a row's lease has expired, :func:`recover_stale_claims` first asks the
gateway whether the message was in fact accepted (Twilio's message list, filtered by
recipient and date) and records it as sent instead of sending it again. Only when the
gateway cannot tell is the message retried. A row that a dead dispatcher left
``sending`` gets its attempt back (it may never have been tried); an unconfirmed send
counts as a failed attempt, up to ``MAX_ATTEMPTS``.

The question to the gateway is asked with no transaction open, so a slow
message list never holds SQLite's write lock or PostgreSQL row locks.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy.engine import Engine
from sqlmodel import select

from reminders.data.db import session_scope
from reminders.data.models import OutboundMessage
from reminders.data.statuses import Channel, OutboxStatus
from reminders.delivery import (
    IN_DOUBT,
    MAX_ATTEMPTS,
    Claim,
    DispatchReport,
    fail_out_of_attempts,
    record_sent,
)
from reminders.gateways import PermanentSendError, SmsGateway, TransientSendError


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
                    channel=message.channel,
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
                if row.claim.channel == Channel.VOICE:
                    found = gateway.find_call(row.claim.to, since=row.claimed_at)
                else:
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
                fail_out_of_attempts(session, message, now, report)
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
