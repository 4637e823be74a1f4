"""The states of outbox messages, check-ins, alerts and plans, and the moves allowed between them.

Each vocabulary is a :class:`~enum.StrEnum` whose values are the strings stored in the
database (a member compares equal to its string, so rows written before the enums
read the same). Each entity's allowed moves are written down once, in
:data:`TRANSITIONS`; :func:`check_transition` refuses any other. The ORM checks every
assignment to a status column (``reminders.data.models`` listens for it) and the engine's
Core statements name the state they leave in their ``WHERE`` clause, so a row that is
no longer in it is left alone.

This module imports nothing but the standard library: the data layer, the engine and
the web all use it. A prophylaxis course's statuses (``CourseStatus``) are the one
vocabulary kept in the pure core, in ``reminders.core.prophylaxis``, because the core's
stop rule and mandatory-prophylaxis check read them and the core imports no other layer.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum


class OutboxStatus(StrEnum):
    """Where an outbox row (``OutboundMessage.status``) stands."""

    #: Waiting for ``next_attempt_at``; a dispatcher may claim it then.
    PENDING = "pending"
    #: Claimed by a dispatcher (``claimed_by``, ``claimed_at``) and being handed to the gateway.
    SENDING = "sending"
    #: The gateway neither accepted nor refused it (timeout, connection lost after the
    #: request was written): the carrier may have it. Never sent blindly again: once the
    #: lease from ``claimed_at`` has expired, crash recovery asks the gateway
    #: (``find_sent``) and records it ``sent`` if the carrier has it, otherwise puts it back
    #: to ``pending`` at ``next_attempt_at`` (or ``failed`` when its attempts are used up).
    UNCONFIRMED = "unconfirmed"
    #: Accepted by the gateway (``provider_sid``).
    SENT = "sent"
    #: The carrier reported it delivered (status callback).
    DELIVERED = "delivered"
    #: The carrier reported it could not be delivered (status callback).
    UNDELIVERED = "undelivered"
    #: Refused by the gateway for good, or out of attempts: the team is alerted.
    FAILED = "failed"
    #: Its moment passed before it could go out (``not_after``): never sent late.
    MISSED = "missed"
    #: Not to be sent (opt-out, discharge, no consent, no on-call number).
    CANCELLED = "cancelled"


class CheckInState(StrEnum):
    """Where a symptom check-in conversation (``CheckIn.state``) stands."""

    AWAITING_TEMPERATURE = "awaiting_temperature"
    AWAITING_SYMPTOMS = "awaiting_symptoms"
    #: Triaged; ``severity`` holds the result.
    CLOSED = "closed"
    #: Sent twice without an answer: the team was alerted.
    UNANSWERED = "unanswered"


class AlertStatus(StrEnum):
    """Where an alert (``Alert.status``) stands."""

    OPEN = "open"
    ACKNOWLEDGED = "acknowledged"
    RESOLVED = "resolved"


class PlanStatus(StrEnum):
    """A plan's stored status (``Plan.status``); "completed" is derived, never stored."""

    ACTIVE = "active"
    ON_HOLD = "on_hold"
    STOPPED = "stopped"


class Channel(StrEnum):
    """How an outbox row reaches its recipient (``OutboundMessage.channel``)."""

    SMS = "sms"
    #: A phone call through Twilio's Calls API; the row's body is what the call reads out.
    VOICE = "voice"


class OnCallRole(StrEnum):
    """A clinician's place in a team's on-call rota (``OnCallShift.role``)."""

    PRIMARY = "primary"
    BACKUP = "backup"


class PageTarget(StrEnum):
    """Whom an escalation step pages: the rota's primary or backup, or the team's fallback number."""

    PRIMARY = "primary"
    BACKUP = "backup"
    FALLBACK = "fallback"


class AlertEventKind(StrEnum):
    """What a line of an alert's timeline (``AlertEvent.event``) records."""

    #: An escalation step queued a page (SMS or call) to a person or number.
    PAGED = "paged"
    #: A step found nobody to page (no shift, no phone): the next target is tried at once.
    SKIPPED = "skipped"
    #: The carrier reported on a page (``outcome``).
    OUTCOME = "outcome"
    ACKNOWLEDGED = "acknowledged"
    RESOLVED = "resolved"
    #: A reply or key press that acknowledged nothing (unknown code, another team's alert).
    REFUSED = "refused"


class PageOutcome(StrEnum):
    """What became of a page, in the words of the alert's timeline."""

    QUEUED = "queued"
    SENT = "sent"
    DELIVERED = "delivered"
    ANSWERED = "answered"
    NO_ANSWER = "no_answer"
    BUSY = "busy"
    FAILED = "failed"
    CANCELLED = "cancelled"


#: A plan that still sends reminders and has tasks.
OPEN_PLAN_STATUSES: tuple[PlanStatus, ...] = (PlanStatus.ACTIVE, PlanStatus.ON_HOLD)
#: A check-in still waiting for the patient.
OPEN_CHECKIN_STATES: tuple[CheckInState, ...] = (
    CheckInState.AWAITING_TEMPERATURE,
    CheckInState.AWAITING_SYMPTOMS,
)
#: An outbox row the gateway took (the patient may have it).
ACCEPTED_OUTBOX_STATUSES: tuple[OutboxStatus, ...] = (OutboxStatus.SENT, OutboxStatus.DELIVERED)
#: An outbox row whose send is over, whatever its outcome.
SETTLED_OUTBOX_STATUSES: tuple[OutboxStatus, ...] = (
    OutboxStatus.SENT,
    OutboxStatus.DELIVERED,
    OutboxStatus.UNDELIVERED,
    OutboxStatus.FAILED,
)

_O = OutboxStatus
_C = CheckInState
_A = AlertStatus
_P = PlanStatus

#: Per status vocabulary: each state and the states it may move to. Staying in a
#: state is always allowed (a repeated callback, a re-send). A state with no entry
#: is final.
TRANSITIONS: dict[type[StrEnum], Mapping[StrEnum, frozenset[StrEnum]]] = {
    OutboxStatus: {
        # Claimed; or settled at claim time (too late, not allowed to be sent).
        _O.PENDING: frozenset({_O.SENDING, _O.MISSED, _O.CANCELLED}),
        _O.SENDING: frozenset(
            {
                _O.SENT,
                _O.PENDING,  # put back: retry later, credentials refused, dead dispatcher
                _O.UNCONFIRMED,
                _O.FAILED,
                _O.MISSED,  # a retry would come after not_after
            }
        ),
        # Crash recovery's answer from the gateway: it has the message, or not.
        _O.UNCONFIRMED: frozenset({_O.SENT, _O.PENDING, _O.FAILED}),
        # Status callbacks, which may arrive in any order.
        _O.SENT: frozenset({_O.DELIVERED, _O.UNDELIVERED}),
        _O.DELIVERED: frozenset({_O.UNDELIVERED}),
        # Twilio may report on a message it refused after taking it (a sid, then failed).
        _O.FAILED: frozenset({_O.UNDELIVERED}),
        _O.UNDELIVERED: frozenset({_O.DELIVERED}),
    },
    CheckInState: {
        _C.AWAITING_TEMPERATURE: frozenset({_C.AWAITING_SYMPTOMS, _C.CLOSED, _C.UNANSWERED}),
        # A fever in words or a re-check asks for the temperature again.
        _C.AWAITING_SYMPTOMS: frozenset({_C.AWAITING_TEMPERATURE, _C.CLOSED, _C.UNANSWERED}),
    },
    AlertStatus: {
        _A.OPEN: frozenset({_A.ACKNOWLEDGED, _A.RESOLVED}),
        _A.ACKNOWLEDGED: frozenset({_A.RESOLVED}),
    },
    PlanStatus: {
        _P.ACTIVE: frozenset({_P.ON_HOLD, _P.STOPPED}),
        _P.ON_HOLD: frozenset({_P.ACTIVE, _P.STOPPED}),
    },
}

#: The states the code writes new rows in (every other state is reached by a move).
INITIAL: dict[type[StrEnum], frozenset[StrEnum]] = {
    # A planned message whose moment passed while the system was down is stored missed;
    # an answer given in the webhook's own TwiML reply is stored sent.
    OutboxStatus: frozenset({_O.PENDING, _O.MISSED, _O.SENT}),
    CheckInState: frozenset({_C.AWAITING_TEMPERATURE}),
    AlertStatus: frozenset({_A.OPEN}),
    PlanStatus: frozenset({_P.ACTIVE}),
}


class IllegalTransition(ValueError):
    """A status change that :data:`TRANSITIONS` does not allow: a programming error."""


def check_transition(kind: type[StrEnum], old: str | None, new: str) -> None:
    """Raise :class:`IllegalTransition` unless ``old`` -> ``new`` is allowed for ``kind``.

    ``old`` None is a row being built: any state of the vocabulary is accepted (a
    test or an import may write a row as it stands); only moves of a stored row are
    checked against the table.
    """
    try:
        target = kind(new)
    except ValueError:
        raise IllegalTransition(f"{new!r} is not a {kind.__name__}") from None
    if old is None:
        return
    try:
        source = kind(old)
    except ValueError:
        raise IllegalTransition(f"{old!r} is not a {kind.__name__}") from None
    if source is target or target in TRANSITIONS[kind].get(source, frozenset()):
        return
    raise IllegalTransition(f"{kind.__name__}: {source.name} -> {target.name} is not allowed")


def allowed(kind: type[StrEnum], old: str | None, new: str) -> bool:
    """True when :func:`check_transition` accepts ``old`` -> ``new``."""
    try:
        check_transition(kind, old, new)
    except IllegalTransition:
        return False
    return True
