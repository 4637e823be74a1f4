"""Care-team sessions kept on the server: start, check, refresh, end and list them.

Pruning old rows is the clock's job: :func:`reminders.data.pruning.prune_user_sessions`.

Service functions in the style of ``backend.services`` (session and ``now`` in, no
Flask, the caller commits); the cookie side lives in :mod:`backend.security` and the
per-request check in the dashboard's gate (:func:`backend.dashboard.web.signed_in_user`).

A session id is 32 random bytes (``secrets.token_urlsafe``) held only by the browser;
the table keeps its SHA-256 digest, so neither a database copy nor a backup opens a
session. A session is *open* while it has not ended, its absolute limit
(:data:`backend.security.ABSOLUTE_TIMEOUT` after sign-in) is not passed and it was seen
within :data:`backend.security.IDLE_TIMEOUT`. Ending one is a conditional UPDATE, so the
first reason recorded stays (a sign-out racing an admin's "sign out everywhere").
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, and_, func, update
from sqlmodel import Session, select

from backend.security import (
    ABSOLUTE_TIMEOUT,
    IDLE_TIMEOUT,
    LAST_SEEN_STEP,
)
from reminders.data.models import User, UserSession
from reminders.data.statuses import SessionEnd

#: Longest session id looked up: ours are 43 characters; anything longer is not one of ours.
MAX_SESSION_ID_LENGTH = 128
#: Longest device label stored.
MAX_DEVICE_LENGTH = 80

#: Browsers, most specific first: Edge's and Opera's User-Agents also name Chrome and
#: Safari, Chrome's names Safari.
_BROWSERS = (
    ("Edg/", "Edge"),
    ("EdgA/", "Edge"),
    ("EdgiOS/", "Edge"),
    ("OPR/", "Opera"),
    ("SamsungBrowser/", "Samsung Internet"),
    ("FxiOS/", "Firefox"),
    ("Firefox/", "Firefox"),
    ("CriOS/", "Chrome"),
    ("Chromium/", "Chromium"),
    ("Chrome/", "Chrome"),
    ("Safari/", "Safari"),
)
#: Systems, most specific first: an iPhone's User-Agent says "like Mac OS X", Android's
#: says Linux.
_SYSTEMS = (
    ("iPhone", "iPhone"),
    ("iPad", "iPad"),
    ("Android", "Android"),
    ("CrOS", "ChromeOS"),
    ("Windows", "Windows"),
    ("Macintosh", "macOS"),
    ("Mac OS X", "macOS"),
    ("Linux", "Linux"),
)


def session_digest(session_id: str) -> str:
    """The SHA-256 digest (hex) under which a session id is stored."""
    return hashlib.sha256(session_id.encode("utf-8", "surrogatepass")).hexdigest()


def device_label(user_agent: str | None) -> str:
    """A short label for the sessions list ("Firefox on Windows") from a User-Agent header.

    The label is made only of the fixed names above, never of the header's own text, so
    nothing a client sends is stored or shown back; at most :data:`MAX_DEVICE_LENGTH`
    characters.
    """
    text = (user_agent or "")[:512]
    browser = next((name for token, name in _BROWSERS if token in text), None)
    system = next((name for token, name in _SYSTEMS if token in text), None)
    if browser and system:
        label = f"{browser} on {system}"
    elif browser or system:
        label = browser or f"A browser on {system}"
    else:
        label = "Unknown device"
    return label[:MAX_DEVICE_LENGTH]


def start_user_session(
    session: Session,
    user: User,
    now: datetime,
    user_agent: str | None = None,
    *,
    replaces: UserSession | None = None,
) -> str:
    """Open a session for ``user``; returns the session id for the cookie (stored as a digest).

    ``replaces`` is the session the same browser still had (a sign-in without signing
    out first, perhaps as someone else on a shared computer): it ends now, rather than
    staying open, out of the browser but valid for any copy of its cookie.
    """
    if replaces is not None:
        end_user_session(session, replaces, now, SessionEnd.REPLACED)
    session_id = secrets.token_urlsafe(32)
    session.add(
        UserSession(
            user_id=user.id,
            id_hash=session_digest(session_id),
            device=device_label(user_agent),
            created_at=now,
            last_seen_at=now,
            expires_at=now + ABSOLUTE_TIMEOUT,
        )
    )
    return session_id


@dataclass(frozen=True)
class SessionCheck:
    """What a session id is worth at ``now``.

    ``user`` is set only for a valid session. ``end`` is the reason to end ``row`` now
    (idle, expired, user deactivated); None when there is nothing to end (unknown id,
    ended already, or valid).
    """

    row: UserSession | None
    user: User | None
    end: SessionEnd | None = None


def check_user_session(session: Session, session_id: str, now: datetime) -> SessionCheck:
    """Look up ``session_id`` and decide whether it is still valid at ``now`` (reads only)."""
    if not session_id or len(session_id) > MAX_SESSION_ID_LENGTH:
        return SessionCheck(None, None)
    row = session.exec(
        select(UserSession).where(UserSession.id_hash == session_digest(session_id))
    ).first()
    if row is None or row.ended_at is not None:
        return SessionCheck(row, None)
    if now > row.expires_at:
        return SessionCheck(row, None, SessionEnd.EXPIRED)
    if now - row.last_seen_at > IDLE_TIMEOUT:
        return SessionCheck(row, None, SessionEnd.IDLE)
    user = session.get(User, row.user_id)
    if user is None or not user.is_active:
        return SessionCheck(row, None, SessionEnd.USER_DEACTIVATED)
    return SessionCheck(row, user)


def needs_refresh(row: UserSession, now: datetime) -> bool:
    """True when ``row.last_seen_at`` is at least :data:`~backend.security.LAST_SEEN_STEP` old."""
    return now - row.last_seen_at >= LAST_SEEN_STEP


def touch_user_session(session: Session, row: UserSession, now: datetime) -> bool:
    """Record that the session was used at ``now`` (once per step; never moves backwards).

    A conditional UPDATE: two requests of one browser at once write once, and a session
    ended meanwhile stays ended. True when the row was written.
    """
    result: Any = session.execute(
        update(UserSession)
        .where(
            UserSession.id == row.id,
            UserSession.ended_at.is_(None),
            UserSession.last_seen_at <= now - LAST_SEEN_STEP,
        )
        .values(last_seen_at=now)
    )
    return bool(result.rowcount)


def end_user_session(session: Session, row: UserSession, now: datetime, reason: SessionEnd) -> bool:
    """End one session (if not ended already); True when this call ended it."""
    result: Any = session.execute(
        update(UserSession)
        .where(UserSession.id == row.id, UserSession.ended_at.is_(None))
        .values(ended_at=now, ended_reason=reason.value)
    )
    return bool(result.rowcount)


def _open_at(now: datetime) -> ColumnElement[bool]:
    """The rows of sessions open at ``now`` (the same rules as :func:`check_user_session`)."""
    return and_(
        UserSession.ended_at.is_(None),
        UserSession.expires_at >= now,
        UserSession.last_seen_at >= now - IDLE_TIMEOUT,
    )


def end_user_sessions(session: Session, user_id: int, now: datetime, reason: SessionEnd) -> int:
    """End every open session of ``user_id`` (sign out everywhere, admin, deactivation).

    Returns how many were open. Called in the transaction of the change that asks for it
    (a deactivation and its sessions' end are committed together).
    """
    result: Any = session.execute(
        update(UserSession)
        .where(UserSession.user_id == user_id, _open_at(now))
        .values(ended_at=now, ended_reason=reason.value)
    )
    return int(result.rowcount or 0)


def open_user_sessions(session: Session, user_id: int, now: datetime) -> list[UserSession]:
    """The open sessions of ``user_id``, most recently used first."""
    return list(
        session.exec(
            select(UserSession)
            .where(UserSession.user_id == user_id, _open_at(now))
            .order_by(UserSession.last_seen_at.desc(), UserSession.id.desc())
        ).all()
    )


def open_session_counts(session: Session, team_id: int, now: datetime) -> dict[int, int]:
    """How many open sessions each member of ``team_id`` has (members without any: absent)."""
    rows = session.exec(
        select(UserSession.user_id, func.count())
        .join(User, User.id == UserSession.user_id)
        .where(User.team_id == team_id, _open_at(now))
        .group_by(UserSession.user_id)
    ).all()
    return {user_id: int(count) for user_id, count in rows}
