"""One opt-out policy: STOP, carrier opt-outs and unreachable numbers, wherever they are met.

A patient stops getting SMS for three reasons: they replied STOP (the webhook), or
Twilio refused or failed a message to them with error 21610 (they opted out at the
carrier) or with an error that means the number itself cannot get SMS. The
dispatcher meets these errors when Twilio refuses a send, the status-callback
webhook when a message accepted earlier is reported undelivered. Every path calls
:func:`block_patient_sms` (or :func:`block_for_delivery_error`, which reads the
error code), so each one records the same state, cancels the same pending messages
and tells the care team once per event with an alert (issue 12, item 11): the team
must phone a patient the companion can no longer reach.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlmodel import Session

from reminders.data.alerts import raise_alert
from reminders.data.models import Alert, OutboundMessage, Patient
from reminders.outbox import cancel_pending_for_patient

#: Twilio: the recipient replied STOP; every message is refused until they reply START.
OPTED_OUT_CODE = "21610"
#: Twilio codes that mean the number itself is unusable (never retried).
UNREACHABLE_CODES = {
    "21211": "invalid phone number",
    "21614": "number cannot receive SMS",
    "21612": "number not reachable",
}


class BlockCause(StrEnum):
    """Why a patient's SMS stopped."""

    STOP_KEYWORD = "stop_keyword"
    CARRIER_OPT_OUT = "carrier_opt_out"
    UNREACHABLE = "unreachable"


@dataclass(frozen=True)
class _Policy:
    kind: str
    reason: str
    source: str


_POLICY = {
    BlockCause.STOP_KEYWORD: _Policy(
        "opted_out",
        "Patient replied STOP: all SMS reminders and check-ins have stopped. Call them.",
        "opt-out keywords (Twilio)",
    ),
    BlockCause.CARRIER_OPT_OUT: _Policy(
        "opted_out",
        "Patient has opted out of SMS at the carrier (Twilio 21610): all SMS reminders and "
        "check-ins have stopped. Call them.",
        "Twilio delivery",
    ),
    BlockCause.UNREACHABLE: _Policy(
        "sms_undeliverable",
        "SMS cannot reach this patient: {detail}; all SMS reminders and check-ins have "
        "stopped. Check the number and call them.",
        "Twilio delivery",
    ),
}


def cause_of_error(code: str | None) -> BlockCause | None:
    """The block a Twilio error code means for the patient (None: not the number's fault)."""
    if code == OPTED_OUT_CODE:
        return BlockCause.CARRIER_OPT_OUT
    if code in UNREACHABLE_CODES:
        return BlockCause.UNREACHABLE
    return None


def block_patient_sms(
    session: Session,
    patient: Patient,
    cause: BlockCause,
    *,
    now: datetime,
    dedupe_key: str,
    details: dict[str, Any],
    error_code: str | None = None,
) -> Alert:
    """Stop every SMS to ``patient`` for ``cause`` and tell their care team (once per event).

    STOP and 21610 set ``opted_out`` (a START reply clears it: :func:`record_opt_in`);
    an unreachable number sets ``sms_blocked_reason`` (a new number clears it). Pending
    messages are cancelled in the caller's transaction. ``dedupe_key`` names the event
    (the inbound MessageSid, or the outbound message that failed), so the same event
    met twice (a dispatcher's refusal, then a status callback for it) raises one alert.
    ``details`` must hold ids and codes only: no phone number, no message text.
    """
    detail = None
    if cause is BlockCause.UNREACHABLE:
        detail = f"{UNREACHABLE_CODES.get(error_code or '', 'unreachable number')}"
        detail += f" (Twilio {error_code})" if error_code else ""
        patient.sms_blocked_reason = detail
    elif not patient.opted_out:
        patient.opted_out, patient.opted_out_at = True, now
    session.add(patient)
    cancel_pending_for_patient(
        session,
        patient.id,
        "patient opted out" if cause is not BlockCause.UNREACHABLE else detail or "unreachable",
    )
    policy = _POLICY[cause]
    return raise_alert(
        session,
        patient,
        severity="high",
        kind=policy.kind,
        reason=policy.reason.format(detail=detail)[:500],
        details={**details, "cause": str(cause)},
        source=policy.source,
        now=now,
        dedupe_key=dedupe_key,
    )


def block_for_delivery_error(
    session: Session, message: OutboundMessage, code: str | None, now: datetime
) -> Alert | None:
    """Apply the policy to a message Twilio refused or failed with ``code``.

    Called by the dispatcher (a refused send) and by the status-callback webhook (a
    message reported undelivered). Returns the alert, or None when the code says
    nothing about the patient's number or the message was not to a patient.
    """
    cause = cause_of_error(code)
    if cause is None or message.recipient != "patient" or message.patient_id is None:
        return None
    patient = session.get(Patient, message.patient_id)
    if patient is None:
        return None
    return block_patient_sms(
        session,
        patient,
        cause,
        now=now,
        # The dispatcher's key for a failed message: one alert per message, whichever
        # path reports the failure first.
        dedupe_key=f"undeliverable:{message.id}",
        details={"message_id": message.id, "error_code": code},
        error_code=code,
    )


def record_opt_in(session: Session, patient: Patient) -> None:
    """The patient replied START: SMS may go to them again (the caller re-plans)."""
    patient.opted_out, patient.opted_out_at = False, None
    session.add(patient)
