"""Sign-in, the care-team session and CSRF protection of the server-rendered pages.

Design (see docs in :mod:`backend.dashboard`):

* **Passwords** are scrypt hashes (:func:`backend.auth.hash_password`). A wrong
  email and a wrong password get the same message and take about the same time:
  an unknown email is checked against a dummy hash.
* **Lockout**: after :data:`MAX_FAILED_LOGINS` failures in a row an account is
  locked for :data:`LOCKOUT` (``User.failed_logins`` / ``User.locked_until``);
  while locked even the right password is refused. A per-IP throttle
  (:class:`LoginThrottle`, in memory, per process) slows down guessing across
  many accounts.
* **Session**: kept on the server, one :class:`backend.models.UserSession` row per
  sign-in (:mod:`backend.services.sessions`). The cookie (Flask's signed cookie, with
  ``Secure``/``HttpOnly``/``SameSite`` from the config) carries only a random session id
  and the CSRF token; the table stores the id's SHA-256 digest, never the id. The cookie
  is cleared on sign-in (no session fixation). Every request looks the row up: a session
  signed out (here or "everywhere"), ended by an admin, of a deactivated user, unused
  for :data:`IDLE_TIMEOUT` or older than :data:`ABSOLUTE_TIMEOUT` is refused at once,
  so a copied cookie is worth nothing after sign-out. The limits are measured with the
  app's injectable clock against the row, never against the cookie. The user is
  re-read on every request, so deactivating a user or changing a role takes effect at
  once.
* **CSRF**: a random per-session token (synchronizer-token pattern) that every
  form carries in a hidden ``csrf_token`` field; a POST without the matching
  token is refused with 400. ``SameSite=Lax`` is a second line of defence.

Nothing here logs an email, a password, a session id or any patient data: only user ids.
"""

from __future__ import annotations

import hmac
import logging
import secrets
import threading
from collections import deque
from dataclasses import dataclass
from datetime import datetime, timedelta

from flask import request, session
from sqlmodel import Session, select
from werkzeug.security import check_password_hash, generate_password_hash

from backend.auth import password_matches
from backend.models import User

logger = logging.getLogger(__name__)

#: Failures in a row that lock an account.
MAX_FAILED_LOGINS = 5
#: How long a locked account stays locked.
LOCKOUT = timedelta(minutes=15)
#: A session unused for this long has ended (a phone left on a ward trolley).
IDLE_TIMEOUT = timedelta(minutes=30)
#: A session ends this long after sign-in whatever happens (one long shift).
ABSOLUTE_TIMEOUT = timedelta(hours=12)
#: A session's ``last_seen_at`` is written again only once it is this old. Writing it on
#: every request would turn every page view into a database write (and on SQLite a wait
#: for the one write lock, shared with the dispatcher and the webhooks); the price is an
#: idle limit precise to within this step: a session may end up to a minute early.
LAST_SEEN_STEP = timedelta(minutes=1)
#: Ended and expired session rows are kept this long (who was signed in when), then pruned.
SESSION_RETENTION = timedelta(days=30)
#: Failed sign-ins from one address within :data:`IP_WINDOW` before it is throttled.
IP_MAX_FAILURES = 20
IP_WINDOW = timedelta(minutes=15)

CSRF_FIELD = "csrf_token"
CSRF_HEADER = "X-CSRF-Token"
GENERIC_LOGIN_ERROR = (
    "Sign-in failed: the email or password is not right, or sign-in is paused for "
    "15 minutes after 5 failed attempts. Ask your team's admin if you are stuck."
)

_dummy_hash_lock = threading.Lock()
_dummy_hash: str | None = None


def _dummy_password_hash() -> str:
    """A real hash of a random password, so an unknown email costs as much as a known one."""
    global _dummy_hash
    with _dummy_hash_lock:
        if _dummy_hash is None:
            _dummy_hash = generate_password_hash(secrets.token_urlsafe(16))
        return _dummy_hash


@dataclass(frozen=True)
class LoginOutcome:
    """The result of a sign-in attempt: the user on success; ``locked`` when refused by lockout."""

    user: User | None
    locked: bool = False


def authenticate(db: Session, email: str, password: str, now: datetime) -> LoginOutcome:
    """Check ``email``/``password``, counting failures and locking the account after 5.

    The caller commits (the failure counter must be saved even when sign-in fails).
    """
    user = db.exec(select(User).where(User.email == email.strip().lower())).first()
    if user is None or not user.is_active or not user.password_hash:
        check_password_hash(_dummy_password_hash(), password)
        return LoginOutcome(None)
    if user.locked_until is not None and user.locked_until > now:
        # Still spend the time of a check so a locked account does not answer faster.
        check_password_hash(_dummy_password_hash(), password)
        return LoginOutcome(None, locked=True)
    if password_matches(user.password_hash, password):
        user.failed_logins = 0
        user.locked_until = None
        user.last_login_at = now
        db.add(user)
        return LoginOutcome(user)
    user.failed_logins += 1
    locked = user.failed_logins >= MAX_FAILED_LOGINS
    if locked:
        user.locked_until = now + LOCKOUT
        user.failed_logins = 0
        logger.warning("user %s locked after repeated failed sign-ins", user.id)
    db.add(user)
    return LoginOutcome(None, locked=locked)


class LoginThrottle:
    """Failed sign-ins per client address in a sliding window (in memory, per process).

    It is a brake on password spraying across many accounts, not an exact limit:
    each web worker counts its own failures.
    """

    def __init__(self, limit: int = IP_MAX_FAILURES, window: timedelta = IP_WINDOW) -> None:
        self.limit = limit
        self.window = window
        self._failures: dict[str, deque[datetime]] = {}
        self._lock = threading.Lock()

    def _recent(self, address: str, now: datetime) -> deque[datetime]:
        failures = self._failures.setdefault(address, deque())
        while failures and failures[0] <= now - self.window:
            failures.popleft()
        return failures

    def blocked(self, address: str, now: datetime) -> bool:
        """True when ``address`` failed too often recently."""
        with self._lock:
            return len(self._recent(address, now)) >= self.limit

    def failed(self, address: str, now: datetime) -> None:
        """Count one failure from ``address``."""
        with self._lock:
            self._recent(address, now).append(now)
            if len(self._failures) > 10_000:  # bounded memory under a flood of addresses
                oldest = next(iter(self._failures))
                self._failures.pop(oldest, None)


# --- the session cookie -----------------------------------------------------------------

#: The cookie's key for the session id (the row is found by the id's digest).
SESSION_ID_KEY = "sid"


def start_session(session_id: str) -> None:
    """Give the browser a brand-new session (no fixation): ``session_id`` and a fresh CSRF token.

    ``session_id`` comes from :func:`backend.services.sessions.start_user_session`.
    """
    session.clear()
    session.permanent = True  # the cookie expires with PERMANENT_SESSION_LIFETIME
    session[SESSION_ID_KEY] = session_id
    session[CSRF_FIELD] = secrets.token_urlsafe(32)


def cookie_session_id() -> str | None:
    """The session id the browser sent, or None (the row decides whether it is still valid)."""
    value = session.get(SESSION_ID_KEY)
    return value if isinstance(value, str) and value else None


def end_session(*, keep_csrf: bool = False) -> None:
    """Forget the session in the browser (the caller ends its row).

    ``keep_csrf`` keeps the CSRF token, so a sign-in form already open in the same tab
    still works after a session was refused.
    """
    csrf = session.get(CSRF_FIELD)
    session.clear()
    if keep_csrf and csrf:
        session[CSRF_FIELD] = csrf


# --- CSRF -------------------------------------------------------------------------------


def csrf_token() -> str:
    """This session's CSRF token (created on first use), for a hidden form field."""
    token = session.get(CSRF_FIELD)
    if not token:
        token = secrets.token_urlsafe(32)
        session[CSRF_FIELD] = token
    return token


def csrf_valid() -> bool:
    """True when the request carries this session's CSRF token (form field or header)."""
    expected = session.get(CSRF_FIELD)
    sent = request.form.get(CSRF_FIELD) or request.headers.get(CSRF_HEADER) or ""
    return bool(expected) and hmac.compare_digest(str(expected), str(sent))
