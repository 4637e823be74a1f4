"""Credentials: API bearer tokens, password hashing and the password check of sign-in.

Tokens are random and shown once; only their SHA-256 digest is stored, so a
database leak does not leak working tokens. A token is ``mabc_`` and 43 random
URL-safe characters (256 bits); the first :data:`PUBLIC_PREFIX_LENGTH` of those
are stored in clear as its public prefix, so that people can tell their tokens
apart in a list (the remaining 35 characters, about 208 bits, stay secret).
Creating, listing and revoking tokens: :mod:`backend.services.tokens`.
"""

from __future__ import annotations

import hashlib
import secrets
import threading
from dataclasses import dataclass
from datetime import datetime

from sqlmodel import Session, select
from werkzeug.security import check_password_hash, generate_password_hash

from reminders.data.models import ApiToken, User

TOKEN_PREFIX = "mabc_"
#: Characters of a token's random part shown in lists (see the module docstring).
PUBLIC_PREFIX_LENGTH = 8

#: Why a bearer token was refused, as the 401 body says it. An expired or revoked token
#: is named as such (its holder had it, so nothing leaks, and they learn what to do);
#: everything else (unknown, malformed, a deactivated user's) gets the generic message.
REFUSAL_MESSAGES = {
    "missing": "a valid bearer token is required",
    "expired": "token expired",
    "revoked": "token revoked",
}


def new_token() -> str:
    """A new random bearer token (to be shown once, then stored as its digest)."""
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def public_prefix(token: str) -> str:
    """The public prefix of ``token``: the first characters of its random part."""
    return token.removeprefix(TOKEN_PREFIX)[:PUBLIC_PREFIX_LENGTH]


def hash_token(token: str) -> str:
    """The stored digest of a bearer token."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class BearerCheck:
    """The outcome of checking an ``Authorization`` header.

    ``user`` and ``token`` are set when the token is valid (``refusal`` None); otherwise
    ``refusal`` is a key of :data:`REFUSAL_MESSAGES`.
    """

    user: User | None = None
    token: ApiToken | None = None
    refusal: str | None = "missing"

    @property
    def message(self) -> str:
        """What the 401 answer says."""
        return REFUSAL_MESSAGES[self.refusal or "missing"]


def check_bearer(session: Session, authorization: str | None, now: datetime) -> BearerCheck:
    """Check an ``Authorization: Bearer ...`` header: the active user behind a live token.

    A token works from creation until ``expires_at`` (excluded), unless revoked, and
    only while its user is active.
    """
    if not authorization:
        return BearerCheck()
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return BearerCheck()
    row = session.exec(
        select(ApiToken, User)
        .join(User, User.id == ApiToken.user_id)
        .where(ApiToken.token_hash == hash_token(token.strip()))
    ).first()
    if row is None:
        return BearerCheck()
    api_token, user = row
    if not user.is_active:
        return BearerCheck()
    if api_token.revoked_at is not None:
        return BearerCheck(refusal="revoked")
    if now >= api_token.expires_at:
        return BearerCheck(refusal="expired")
    return BearerCheck(user=user, token=api_token, refusal=None)


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
