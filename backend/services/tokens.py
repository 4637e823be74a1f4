"""API tokens: create one (shown once), list them, revoke one, and note when one is used.

A token has a name, a public prefix (to recognise it, not to use it), an expiry and
the user who created it; only its SHA-256 digest is stored (:mod:`backend.auth`).
Its status is derived from the row and the time: :data:`TOKEN_STATUSES`. Every
creation and revocation leaves an audit row naming ``token:<id>`` and never the
token. Functions take ``session`` and ``now``; the caller commits.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import or_, update
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from backend.auth import (
    TOKEN_PREFIX,
    BearerCheck,
    check_bearer,
    hash_token,
    new_token,
    public_prefix,
)
from backend.config import MAX_API_TOKEN_LIFETIME_DAYS
from backend.schemas import LINE_CONTROL_CHARACTERS, valid_email
from backend.services.audit import record_audit
from reminders.data.db import session_scope
from reminders.data.errors import Conflict, InvalidInput, NotFound
from reminders.data.models import ApiToken, Team, User
from reminders.data.statuses import AuditAction

#: A token's status: usable, past its ``expires_at``, or revoked (revoked wins).
TOKEN_STATUSES = ("active", "expired", "revoked")
NAME_MAX_LENGTH = 80

#: ``last_used_at`` is written at most once per this interval per token. Writing it on
#: every request would turn every API read into a write (on SQLite, a wait for the one
#: write lock); "last used" is for people deciding whether a token is still needed, and
#: five minutes is precise enough for that.
LAST_USED_GRANULARITY = timedelta(minutes=5)

CREATE_ACTION = AuditAction.CREATE_API_TOKEN
REVOKE_ACTION = AuditAction.REVOKE_API_TOKEN


@dataclass(frozen=True)
class IssuedToken:
    """A token just created: its row, and the token itself (never stored, never logged)."""

    row: ApiToken
    secret: str = field(repr=False)


def token_status(token: ApiToken, now: datetime) -> str:
    """One of :data:`TOKEN_STATUSES` for ``token`` at ``now``."""
    if token.revoked_at is not None:
        return "revoked"
    return "expired" if now >= token.expires_at else "active"


def shown_prefix(token: ApiToken) -> str:
    """How lists show a token: ``mabc_AbCd1234…`` (empty for tokens older than prefixes)."""
    return f"{TOKEN_PREFIX}{token.prefix}…" if token.prefix else ""


def valid_token_name(name: str) -> str:
    """``name`` without surrounding spaces; InvalidInput (field ``name``) unless 1-80 characters.

    A name is one line (lists and the command line show one token per line).
    """
    name = (name or "").strip()
    if not name or len(name) > NAME_MAX_LENGTH or LINE_CONTROL_CHARACTERS.search(name):
        raise InvalidInput(
            f"give the token a name of 1 to {NAME_MAX_LENGTH} characters on one line, without "
            "control characters",
            field="name",
        )
    return name


def valid_lifetime(days: int) -> int:
    """``days`` if it is a lifetime a token may have; InvalidInput (field ``days``) otherwise."""
    if isinstance(days, bool) or not isinstance(days, int):
        raise InvalidInput("the lifetime is a whole number of days", field="days")
    if not 1 <= days <= MAX_API_TOKEN_LIFETIME_DAYS:
        raise InvalidInput(
            f"a token lives from 1 to {MAX_API_TOKEN_LIFETIME_DAYS} days", field="days"
        )
    return days


def create_token(
    session: Session,
    owner: User,
    *,
    name: str,
    now: datetime,
    days: int,
    actor: User | None,
) -> IssuedToken:
    """Create a token for ``owner`` that works ``days`` days from ``now``; show it once.

    ``actor`` is who asks: the owner, an admin of the owner's team, or None for an
    operator at the command line. A name is unique among the owner's live tokens, so
    that a list can always tell them apart.
    """
    name = valid_token_name(name)
    days = valid_lifetime(days)
    if actor is not None and actor.id != owner.id and not _admin_of(actor, owner):
        raise NotFound("no such user")
    if not owner.is_active:
        raise Conflict("this user is deactivated: a token would not work", field="email")
    clash = session.exec(
        select(ApiToken.id).where(
            ApiToken.user_id == owner.id,
            ApiToken.name == name,
            col(ApiToken.revoked_at).is_(None),
            ApiToken.expires_at > now,
        )
    ).first()
    if clash is not None:
        raise Conflict(
            f"there is already a live token called {name!r}: choose another name or revoke "
            "that one first",
            field="name",
        )
    secret = new_token()
    row = ApiToken(
        user_id=owner.id,
        token_hash=hash_token(secret),
        name=name,
        prefix=public_prefix(secret),
        created_at=now,
        created_by_user_id=actor.id if actor is not None else None,
        expires_at=now + timedelta(days=days),
    )
    session.add(row)
    session.flush()
    record_audit(
        session, actor, CREATE_ACTION, None, now, target=f"token:{row.id}", team_id=owner.team_id
    )
    return IssuedToken(row=row, secret=secret)


def _admin_of(actor: User, owner: User) -> bool:
    return actor.role == "admin" and actor.is_active and actor.team_id == owner.team_id


def list_tokens(
    session: Session, *, user_id: int | None = None, team_id: int | None = None
) -> list[tuple[ApiToken, User]]:
    """Tokens with their owner, newest first: one user's, one team's, or (neither) all."""
    query = select(ApiToken, User).join(User, User.id == ApiToken.user_id)
    if user_id is not None:
        query = query.where(ApiToken.user_id == user_id)
    if team_id is not None:
        query = query.where(User.team_id == team_id)
    rows = session.exec(query.order_by(col(ApiToken.created_at).desc(), col(ApiToken.id).desc()))
    return [(token, user) for token, user in rows.all()]


def get_token(
    session: Session, token_id: int, *, user_id: int | None = None, team_id: int | None = None
) -> ApiToken:
    """Token ``token_id``, if it belongs to ``user_id`` / a member of ``team_id``; else NotFound.

    Another user's or another team's token and a token that does not exist look the same.
    """
    token = session.get(ApiToken, token_id)
    if token is None or (user_id is not None and token.user_id != user_id):
        raise NotFound(f"no token {token_id}")
    if team_id is not None:
        owner = session.get(User, token.user_id)
        if owner is None or owner.team_id != team_id:
            raise NotFound(f"no token {token_id}")
    return token


def revoke_token(session: Session, token: ApiToken, now: datetime, actor: User | None) -> ApiToken:
    """Revoke ``token`` at ``now`` (it stops working at once); Conflict if it already is."""
    if token.revoked_at is not None:
        raise Conflict(f"token {token.id} is already revoked")
    owner = session.get(User, token.user_id)
    token.revoked_at = now
    session.add(token)
    record_audit(
        session,
        actor,
        REVOKE_ACTION,
        None,
        now,
        target=f"token:{token.id}",
        team_id=owner.team_id if owner is not None else None,
    )
    return token


def use_is_stale(token: ApiToken, now: datetime) -> bool:
    """True when ``token``'s ``last_used_at`` is older than :data:`LAST_USED_GRANULARITY`."""
    return token.last_used_at is None or token.last_used_at < now - LAST_USED_GRANULARITY


def record_token_use(session: Session, token_id: int, now: datetime) -> bool:
    """Set ``last_used_at`` to ``now`` unless it was set within the granularity; True if written.

    One conditional UPDATE: of several workers that saw the same stale value, the first
    writes and the others' statements match no row, so they never overwrite each other
    nor wait on each other for long.
    """
    threshold = now - LAST_USED_GRANULARITY
    result = session.execute(
        update(ApiToken)
        .where(
            ApiToken.id == token_id,
            or_(col(ApiToken.last_used_at).is_(None), col(ApiToken.last_used_at) < threshold),
        )
        .values(last_used_at=now)
    )
    return bool(result.rowcount)


def authenticate(engine: Engine, authorization: str | None, now: datetime) -> BearerCheck:
    """Check a request's bearer header and note the token's use (at most once per granularity).

    Both run in short sessions of their own, before the request's: the request's session
    may hold SQLite's write lock from its first statement (a POST), and a read-only
    request must not write. The returned user is detached; merge it into the request's
    session.
    """
    with Session(engine, expire_on_commit=False) as session:
        check = check_bearer(session, authorization, now)
    if check.token is not None and use_is_stale(check.token, now):
        with session_scope(engine) as session:
            record_token_use(session, check.token.id, now)
    return check


def user_by_email(session: Session, email: str) -> User:
    """The user with ``email`` (normalised as when users are created); NotFound otherwise."""
    try:
        email = valid_email(email)
    except ValueError as exc:
        raise InvalidInput(str(exc), field="email") from exc
    user = session.exec(select(User).where(User.email == email)).first()
    if user is None:
        raise NotFound("no user with this email", field="email")
    return user


def team_by_name(session: Session, name: str) -> Team:
    """The team called ``name``; NotFound otherwise."""
    team = session.exec(select(Team).where(Team.name == name.strip())).first()
    if team is None:
        raise NotFound("no team with this name", field="team")
    return team
