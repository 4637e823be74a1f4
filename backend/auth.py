"""Credentials: API bearer tokens, password hashing and the password check of sign-in.

Tokens are random and shown once; only their SHA-256 digest is stored, so a
database leak does not leak working tokens.
"""

from __future__ import annotations

import hashlib
import secrets
import threading
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


_dummy_hash_lock = threading.Lock()
_dummy_hash: str | None = None


def _dummy_password_hash() -> str:
    """A real hash of a random password, so an unknown email costs as much as a known one."""
    global _dummy_hash
    with _dummy_hash_lock:
        if _dummy_hash is None:
            _dummy_hash = generate_password_hash(secrets.token_urlsafe(16))
        return _dummy_hash


def normalise_email(email: str) -> str:
    """An email as accounts are looked up (and sign-in throttling keys it): trimmed, lower case."""
    return email.strip().lower()


def authenticate(session: Session, email: str, password: str, now: datetime) -> User | None:
    """The active user with ``email`` and ``password``, or None; records the sign-in time.

    An unknown email is checked against a dummy hash, so it takes as long as a known one.
    Callers throttle attempts first (:func:`backend.services.signin.attempt_sign_in`).
    """
    user = session.exec(select(User).where(User.email == normalise_email(email))).first()
    if user is None or not user.is_active or not user.password_hash:
        check_password_hash(_dummy_password_hash(), password)
        return None
    if not password_matches(user.password_hash, password):
        return None
    user.last_login_at = now
    session.add(user)
    return user
