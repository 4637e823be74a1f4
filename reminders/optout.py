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

The same errors on a copy to a patient's family contact (an outbox row with recipient
``family``) say nothing about the patient: they stop that contact's copies
(:func:`stop_family_copies`) and tell the team once, with an alert of its own kind
(``family_sms_undeliverable``); the patient's SMS go on.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlmodel import Session

from reminders.data.alerts import raise_alert
from reminders.data.family_contacts import (
    FAMILY_UNDELIVERABLE_KIND,
    contact_with_phone,
    record_contact_opt_out,
)
from reminders.data.models import Alert, FamilyContact, OutboundMessage, Patient
from reminders.data.statuses import Recipient
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


#: What a family contact's stop says to the team. Never the number: the relationship the
#: team typed names the person, and the team checks the number with the patient.
_FAMILY_POLICY = {
    BlockCause.CARRIER_OPT_OUT: "their number has opted out of SMS at the carrier (Twilio 21610)",
    BlockCause.UNREACHABLE: "their number cannot get SMS: {detail}",
}

#: Why a family contact's stop is "high" and not "urgent": only urgent alerts page the
#: on-call clinician (``reminders.escalation``), and nobody needs waking: the patient
#: still gets their own SMS, the urgent advice included. But it is not routine either:
#: the copy of that advice is the relative's cue to help the patient act on a warning
#: sign, so the team should learn the same day, from its queue, that it no longer goes.
FAMILY_STOP_SEVERITY = "high"


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
        detail = _unreachable_detail(error_code)
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
) -> bool:
    """Apply the policy to a message Twilio refused or failed with ``code``.

    Called by the dispatcher (a refused send) and by the status-callback webhook (a
    message reported undelivered). A patient's number is blocked
    (:func:`block_patient_sms`), a family contact's copies stopped
    (:func:`stop_family_copies`). True when the policy took the error (the caller
    raises no other alert for it), False when the code says nothing about the number
    or the message was to neither (an on-call page).
    """
    cause = cause_of_error(code)
    if cause is None or message.patient_id is None:
        return False
    if message.recipient == Recipient.FAMILY:
        stop_family_copies(session, message, cause, code, now)
        return True
    if message.recipient != Recipient.PATIENT:
        return False
    patient = session.get(Patient, message.patient_id)
    if patient is None:
        return False
    block_patient_sms(
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
    return True


def stop_family_copies(
    session: Session, message: OutboundMessage, cause: BlockCause, code: str | None, now: datetime
) -> Alert | None:
    """A copy to a family contact met a carrier opt-out or an unreachable number: stop theirs.

    The contact of ``message``'s patient with the copy's number gets no more copies: the
    stop is their ``opted_out_at``, as for their own STOP (the table has no other field
    for it; a START from the number or a new number given by the team clears it), and
    their unsent copies are cancelled. The team is told once, when the contact is
    stopped: a later copy's failure (one already sent, its callback late) finds them
    stopped and raises nothing. No contact with that number any more (removed, or
    given a new number since the copy left): nothing to stop, nothing to say. The
    patient's own SMS are left alone. Returns the alert, or None.
    """
    if message.patient_id is None:
        return None
    contact = contact_with_phone(session, message.patient_id, message.to_phone)
    if contact is None:
        return None
    if cause is BlockCause.CARRIER_OPT_OUT:
        cancelled_because = "family contact opted out at the carrier"
    else:
        cancelled_because = f"family contact's number unreachable: {_unreachable_detail(code)}"
    stopped_now = record_contact_opt_out(session, contact, now, reason=cancelled_because)
    patient = session.get(Patient, contact.patient_id)
    if not stopped_now or patient is None:
        return None
    return raise_alert(
        session,
        patient,
        severity=FAMILY_STOP_SEVERITY,
        kind=FAMILY_UNDELIVERABLE_KIND,
        reason=family_stop_reason(contact, cause, code)[:500],
        # Ids and codes only; ``cause`` marks the stop for the family page
        # (reminders.data.family_contacts.delivery_stops).
        details={
            "message_id": message.id,
            "error_code": code,
            "family_contact_id": contact.id,
            "cause": str(cause),
        },
        source="Twilio delivery",
        now=now,
        # The patient's key for a failed message: whichever path reports it first.
        dedupe_key=f"undeliverable:{message.id}",
    )


def family_stop_reason(contact: FamilyContact, cause: BlockCause, code: str | None) -> str:
    """The alert's words for a family contact's stop: who (their relationship), why, what to do."""
    why = _FAMILY_POLICY[cause].format(detail=_unreachable_detail(code))
    return (
        f"SMS copies to the patient's family contact ({contact.relationship}) have stopped: "
        f"{why}. The patient's own SMS go on. Check the number with the patient."
    )


def _unreachable_detail(code: str | None) -> str:
    """What an unreachable-number code means, with the code (never the number)."""
    detail = UNREACHABLE_CODES.get(code or "", "unreachable number")
    return f"{detail} (Twilio {code})" if code else detail


def record_opt_in(session: Session, patient: Patient) -> None:
    """The patient replied START: SMS may go to them again (the caller re-plans)."""
    patient.opted_out, patient.opted_out_at = False, None
    session.add(patient)
