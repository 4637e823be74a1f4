"""Retention: SMS from unknown numbers deleted, delivery details of sent SMS trimmed.

Two rules the clock applies daily (``reminders.jobs``) and an admin may apply at once
(API, dashboard, CLI: ``backend/services/retention.py`` audits them):

* **SMS from unknown numbers** (``InboundMessage`` rows with no patient: a wrong number,
  a stranger, a discharged patient's old phone) are deleted, text and number, once
  older than :data:`UNKNOWN_SENDER_SMS_DAYS`. They belong to nobody's record; a month
  lets the team look into a misdirected message a patient calls about.
* **Delivery details** of outbox rows that are settled (sent, delivered, undelivered,
  failed, missed, cancelled) are cleared once every moment of the row is older than the
  configured period (default :data:`DELIVERY_DETAILS_DAYS`): the number it went to, the
  provider's message id and status, the error code and the carrier's error text, which
  dispatcher claimed it and when. The row itself stays (kind, text, status, ``sent_at``,
  ``delivered_at``, attempts, and for a message never sent the companion's reason why):
  the clinical record says that an SMS was sent, what it said and when.

What is never touched: a row still in flight (pending, sending, unconfirmed), whose claim
and number crash recovery and dedupe need (``reminders.recovery``); the patients'
own messages; the audit trail. The deletes and updates are set-based statements that
name the state they act on, so a row that moves meanwhile is left alone.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, case, delete, func, or_, select, update
from sqlmodel import Session

from reminders.data.models import InboundMessage, OutboundMessage
from reminders.data.pruning import literal_utc
from reminders.data.statuses import IN_FLIGHT_OUTBOX_STATUSES, OutboxStatus

#: Days an SMS from an unknown number is kept (the issue's rule; ``UNKNOWN_SENDER_SMS_RETENTION_DAYS``).
UNKNOWN_SENDER_SMS_DAYS = 30
#: Default days the delivery details of a settled SMS are kept (``DELIVERY_DETAILS_RETENTION_DAYS``).
DELIVERY_DETAILS_DAYS = 90
#: The shortest period accepted: Twilio's late status callbacks (hours, rarely days) find
#: their row by its provider id, and a support case with the carrier needs it for a while.
MIN_DELIVERY_DETAILS_DAYS = 7

_INBOUND = InboundMessage.__table__
_OUTBOX = OutboundMessage.__table__

#: The columns cleared by :func:`trim_delivery_details`: how the SMS travelled, not what it
#: said. ``error_reason`` too, but see :data:`_NOT_SENT_REASON_KEPT`.
DELIVERY_DETAIL_COLUMNS: tuple[str, ...] = (
    "to_phone",
    "provider_sid",
    "provider_status",
    "error_code",
    "claimed_by",
    "claimed_at",
)
#: A message never sent (missed, cancelled) keeps its ``error_reason``: it is the
#: companion's own words for why ("patient opted out", "no longer useful"), part of the
#: record. On any other row the reason is the carrier's error text, which may quote the
#: number: it is cleared with the other details.
_NOT_SENT_REASON_KEPT = _OUTBOX.c.status.in_(
    [str(OutboxStatus.MISSED), str(OutboxStatus.CANCELLED)]
)


@dataclass(frozen=True)
class RetentionPeriods:
    """How many days each rule keeps its rows: the installation's configuration."""

    unknown_sender_days: int = UNKNOWN_SENDER_SMS_DAYS
    delivery_details_days: int = DELIVERY_DETAILS_DAYS


#: The periods of an installation that configures none.
DEFAULT_PERIODS = RetentionPeriods()


@dataclass(frozen=True)
class RetentionReport:
    """What one retention run did: rows deleted and rows trimmed."""

    unknown_sender_sms_deleted: int
    delivery_details_trimmed: int

    def as_dict(self) -> dict[str, int]:
        """The counts by name (the API's answer, the CLI's line)."""
        return asdict(self)


def _unknown_sender_sms_due(now: datetime, older_than_days: int) -> Any:
    """The SMS from unknown numbers past their period (see the module docstring)."""
    cutoff = literal_utc(now - timedelta(days=older_than_days))
    return and_(_INBOUND.c.patient_id.is_(None), _INBOUND.c.received_at < cutoff)


def _delivery_details_due(now: datetime, older_than_days: int) -> Any:
    """The settled outbox rows past their period that still hold a delivery detail."""
    if older_than_days < MIN_DELIVERY_DETAILS_DAYS:
        raise ValueError(
            f"delivery details are kept at least {MIN_DELIVERY_DETAILS_DAYS} days, "
            f"got {older_than_days}"
        )
    cutoff = literal_utc(now - timedelta(days=older_than_days))
    columns = _OUTBOX.c

    def before_cutoff(column: Any) -> Any:
        return or_(column.is_(None), column < cutoff)

    return and_(
        columns.status.notin_([str(status) for status in IN_FLIGHT_OUTBOX_STATUSES]),
        columns.created_at < cutoff,
        columns.due_at < cutoff,
        before_cutoff(columns.claimed_at),
        before_cutoff(columns.sent_at),
        before_cutoff(columns.delivered_at),
        or_(
            *(columns[name].is_not(None) for name in DELIVERY_DETAIL_COLUMNS),
            and_(~_NOT_SENT_REASON_KEPT, columns.error_reason.is_not(None)),
        ),
    )


def delete_unknown_sender_sms(
    session: Session, now: datetime, older_than_days: int = UNKNOWN_SENDER_SMS_DAYS
) -> int:
    """Delete SMS from unknown numbers received more than ``older_than_days`` ago; how many.

    The caller commits. A message is the sender's until a patient claims the number, and
    nothing refers to an inbound row (no foreign key points at it), so a delete is whole.
    """
    statement = delete(_INBOUND).where(_unknown_sender_sms_due(now, older_than_days))
    result: Any = session.execute(statement)
    return int(result.rowcount or 0)


def trim_delivery_details(
    session: Session, now: datetime, older_than_days: int = DELIVERY_DETAILS_DAYS
) -> int:
    """Clear :data:`DELIVERY_DETAIL_COLUMNS` of settled outbox rows older than ``older_than_days``.

    A row qualifies when it is no longer in flight and every moment it records (created,
    due, claimed, sent, delivered) is older than the cutoff, and it still has a detail to
    clear (so a second run counts nothing). Returns how many rows were trimmed; the
    caller commits. A period under :data:`MIN_DELIVERY_DETAILS_DAYS` raises ValueError.
    """
    statement = (
        update(_OUTBOX)
        .where(_delivery_details_due(now, older_than_days))
        .values(
            {
                **dict.fromkeys(DELIVERY_DETAIL_COLUMNS),
                "error_reason": case((_NOT_SENT_REASON_KEPT, _OUTBOX.c.error_reason), else_=None),
            }
        )
    )
    result: Any = session.execute(statement)
    return int(result.rowcount or 0)


def retention_due(
    session: Session, now: datetime, periods: RetentionPeriods = DEFAULT_PERIODS
) -> RetentionReport:
    """What a run as of ``now`` would delete and trim (counts only; nothing is changed)."""

    def count(table: Any, condition: Any) -> int:
        return int(
            session.execute(select(func.count()).select_from(table).where(condition)).scalar_one()
        )

    return RetentionReport(
        unknown_sender_sms_deleted=count(
            _INBOUND, _unknown_sender_sms_due(now, periods.unknown_sender_days)
        ),
        delivery_details_trimmed=count(
            _OUTBOX, _delivery_details_due(now, periods.delivery_details_days)
        ),
    )


def apply_retention(
    session: Session, now: datetime, periods: RetentionPeriods = DEFAULT_PERIODS
) -> RetentionReport:
    """Both rules as of ``now``, in the caller's transaction (it commits)."""
    return RetentionReport(
        unknown_sender_sms_deleted=delete_unknown_sender_sms(
            session, now, periods.unknown_sender_days
        ),
        delivery_details_trimmed=trim_delivery_details(session, now, periods.delivery_details_days),
    )
