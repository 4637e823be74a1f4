"""Credentials: API bearer tokens and password hashing.

Tokens are random and shown once; only their SHA-256 digest is stored, so a
database leak does not leak working tokens.
"""

from __future__ import annotations

import hashlib
import secrets
from datetime import datetime

from sqlmodel import Session, select
from werkzeug.security import check_password_hash, generate_password_hash

from backend.models import ApiToken, User

TOKEN_PREFIX = "mabc_"


def hash_token(token: str) -> str:
    """The stored digest of a bearer token."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def issue_token(session: Session, user: User, now: datetime, label: str = "cli") -> str:
    """Create a new API token for ``user`` and return it (the only time it is visible)."""
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    session.add(
        ApiToken(user_id=user.id, token_hash=hash_token(token), label=label, created_at=now)
    )
    return token


def user_for_bearer(session: Session, authorization: str | None, now: datetime) -> User | None:
    """The active user behind an ``Authorization: Bearer ...`` header, or None."""
    if not authorization:
        return None
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    row = session.exec(
        select(ApiToken, User)
        .join(User, User.id == ApiToken.user_id)
        .where(ApiToken.token_hash == hash_token(token.strip()))
    ).first()
    if row is None:
        return None
    api_token, user = row
    if api_token.revoked_at is not None or not user.is_active:
        return None
    return user


def hash_password(password: str) -> str:
    """A salted scrypt hash of ``password`` (werkzeug's default method)."""
    return generate_password_hash(password)


def password_matches(password_hash: str | None, password: str) -> bool:
    """True when ``password`` matches the stored hash (False when no password is set)."""
    return bool(password_hash) and check_password_hash(password_hash, password)
