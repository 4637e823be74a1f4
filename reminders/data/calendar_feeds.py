"""The private calendar links of a patient: create one (shown once), list, revoke, look up.

A link is ``/calendar/<token>.ics`` with a token of :func:`secrets.token_urlsafe` (32 random
bytes: nobody guesses one); the table keeps only its SHA-256 digest, as for API tokens and
session ids. Looking a token up answers the feed's row only while the link works: not
revoked, and the patient not discharged (a discharged patient's family gets nothing more).
Functions take ``session`` and ``now``; the caller commits and writes the audit row.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum

from sqlmodel import Session, col, select

from reminders.data.db import add_and_flush, get_owned
from reminders.data.errors import Conflict, InvalidInput
from reminders.data.models import CalendarFeed, Patient

#: Random bytes in a token: 256 bits, as for API tokens.
TOKEN_BYTES = 32
#: What a token looks like (``token_urlsafe(32)``: 43 characters of base64url). Anything
#: else is refused before the database is asked.
TOKEN_SHAPE = re.compile(r"[A-Za-z0-9_-]{43}")
LABEL_MAX_LENGTH = 80
#: Working links per patient: a few phones of a family; more is a mistake to tidy up first.
MAX_ACTIVE_FEEDS = 5
#: ``last_fetched_at`` is written at most this often: a phone polls every few hours, and
#: "last used" is for a nurse deciding which link still serves.
FETCH_GRANULARITY = timedelta(hours=1)


class FeedStatus(StrEnum):
    """A link's status, derived from its row."""

    ACTIVE = "active"
    REVOKED = "revoked"


@dataclass(frozen=True)
class IssuedFeed:
    """A link just made: its row and its token (never stored, never logged; shown once)."""

    row: CalendarFeed
    token: str = field(repr=False)


def hash_feed_token(token: str) -> str:
    """The SHA-256 hex digest stored for ``token``."""
    return hashlib.sha256(token.encode("ascii")).hexdigest()


def feed_status(feed: CalendarFeed) -> FeedStatus:
    """Whether the link works (a discharged patient's links are refused by :func:`find_feed`)."""
    return FeedStatus.REVOKED if feed.revoked_at is not None else FeedStatus.ACTIVE


def feeds_of(session: Session, patient_id: int) -> list[CalendarFeed]:
    """The patient's links, working ones first, newest first."""
    return list(
        session.exec(
            select(CalendarFeed)
            .where(CalendarFeed.patient_id == patient_id)
            .order_by(
                col(CalendarFeed.revoked_at).is_not(None),
                col(CalendarFeed.created_at).desc(),
                col(CalendarFeed.id).desc(),
            )
        ).all()
    )


def create_feed(
    session: Session, patient: Patient, label: str, user_id: int | None, now: datetime
) -> IssuedFeed:
    """Make a new link for ``patient``; the token is in the answer and nowhere else."""
    label = (label or "").strip()
    if not label or len(label) > LABEL_MAX_LENGTH:
        raise InvalidInput(
            f"say whose phone the link is for, in 1 to {LABEL_MAX_LENGTH} characters",
            field="label",
        )
    if patient.discharged_at is not None:
        raise Conflict("this patient is discharged: a calendar link would not work")
    working = [f for f in feeds_of(session, patient.id) if feed_status(f) is FeedStatus.ACTIVE]
    if len(working) >= MAX_ACTIVE_FEEDS:
        raise Conflict(
            f"this patient already has {MAX_ACTIVE_FEEDS} working links: revoke one first",
            field="label",
        )
    token = secrets.token_urlsafe(TOKEN_BYTES)
    row = CalendarFeed(
        patient_id=patient.id,
        token_hash=hash_feed_token(token),
        label=label,
        created_by=user_id,
        created_at=now,
    )
    return IssuedFeed(row=add_and_flush(session, row), token=token)


def get_feed(session: Session, patient_id: int, feed_id: int) -> CalendarFeed:
    """The patient's link ``feed_id``; NotFound when it is another patient's or none."""
    return get_owned(session, CalendarFeed, feed_id, "calendar link", patient_id=patient_id)


def revoke_feed(session: Session, feed: CalendarFeed, user_id: int | None, now: datetime) -> None:
    """Stop the link at once; Conflict when it was revoked already."""
    if feed.revoked_at is not None:
        raise Conflict("this link was revoked already")
    feed.revoked_at = now
    feed.revoked_by = user_id
    session.add(feed)


def find_feed(session: Session, token: str) -> tuple[CalendarFeed, Patient] | None:
    """The working link of ``token`` and its patient, or None (unknown, revoked, discharged).

    One indexed query on the digest whatever the token, so the answer's timing does not
    tell a revoked link from one that never existed.
    """
    if not TOKEN_SHAPE.fullmatch(token):
        return None
    row = session.exec(
        select(CalendarFeed, Patient)
        .join(Patient, col(Patient.id) == CalendarFeed.patient_id)
        .where(
            CalendarFeed.token_hash == hash_feed_token(token),
            col(CalendarFeed.revoked_at).is_(None),
            col(Patient.discharged_at).is_(None),
        )
    ).first()
    return (row[0], row[1]) if row is not None else None


def note_fetch(session: Session, feed: CalendarFeed, now: datetime) -> bool:
    """Remember that the link was fetched, at most once per :data:`FETCH_GRANULARITY`.

    Returns whether the row changed (the caller then commits).
    """
    if feed.last_fetched_at is not None and now - feed.last_fetched_at < FETCH_GRANULARITY:
        return False
    feed.last_fetched_at = now
    session.add(feed)
    return True
