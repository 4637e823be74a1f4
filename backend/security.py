"""Sign-in, the care-team session and CSRF protection of the server-rendered pages.

Design (see docs in :mod:`backend.dashboard`):

* **Passwords** are scrypt hashes (:func:`backend.auth.hash_password`), checked by
  :func:`backend.auth.authenticate`. A wrong email and a wrong password get the same
  message and take about the same time: an unknown email is checked against a dummy hash.
* **No lockout; throttling** (issue 12, item 4): failed sign-ins never lock an
  account, so a stranger who knows a nurse's email cannot keep her out. Attempts are
  throttled per account *and* client, with growing delays, plus a brake on password
  spraying from one address; the counters live in the database and every worker shares
  them. While a pair must wait, an attempt is answered 429 with ``Retry-After`` and
  :func:`throttled_message`, before any password is checked. The policy and its state
  are :mod:`backend.services.signin`; the client address is ``request.remote_addr``,
  rewritten by ``ProxyFix`` only when ``TRUSTED_PROXY_COUNT`` is above 0 (see
  :func:`backend.create_app`), so a forged ``X-Forwarded-For`` changes nothing.
* **Session**: Flask's signed cookie, with ``Secure``/``HttpOnly``/``SameSite``
  from the config. It is cleared on sign-in (no session fixation) and holds
  only the user id, two instants and the CSRF token. It ends after
  :data:`IDLE_TIMEOUT` without a request and at most :data:`ABSOLUTE_TIMEOUT`
  after sign-in (``PERMANENT_SESSION_LIFETIME``, also the cookie's expiry).
  Both are measured with the app's injectable clock. The user is re-read on
  every request, so deactivating a user or changing a role takes effect at once.
* **CSRF**: a random per-session token (synchronizer-token pattern) that every
  form carries in a hidden ``csrf_token`` field; a POST without the matching
  token is refused with 400. ``SameSite=Lax`` is a second line of defence.

Nothing here logs an email, a password, an address or any patient data: only user ids.
"""

from __future__ import annotations

import hmac
import logging
import secrets
from datetime import datetime, timedelta

from flask import request, session
from sqlmodel import Session

from backend.models import User

logger = logging.getLogger(__name__)

#: A session unused for this long has ended (a phone left on a ward trolley).
IDLE_TIMEOUT = timedelta(minutes=30)
#: A session ends this long after sign-in whatever happens (one long shift).
ABSOLUTE_TIMEOUT = timedelta(hours=12)

CSRF_FIELD = "csrf_token"
CSRF_HEADER = "X-CSRF-Token"
GENERIC_LOGIN_ERROR = (
    "Sign-in failed: the email or password is not right. Check them and try again; "
    "after a few failed attempts you will be asked to wait a little before the next one. "
    "Ask your team's admin if you are stuck."
)


def throttled_message(wait_seconds: int) -> str:
    """The polite answer to an attempt that must wait (it says nothing about the account)."""
    if wait_seconds < 90:
        wait = f"{wait_seconds} second{'s' if wait_seconds != 1 else ''}"
    else:
        minutes = -(-wait_seconds // 60)
        wait = f"{minutes} minutes"
    return (
        "Too many sign-in attempts. To keep accounts safe, please wait "
        f"{wait} before trying again (a short pause, not a lock)."
    )


# --- the session ------------------------------------------------------------------------


def start_session(user: User, now: datetime) -> None:
    """Sign ``user`` in: a brand-new session (no fixation) with a fresh CSRF token."""
    session.clear()
    session.permanent = True  # the cookie expires with PERMANENT_SESSION_LIFETIME
    session["uid"] = user.id
    session["auth_at"] = now.timestamp()
    session["seen_at"] = now.timestamp()
    session[CSRF_FIELD] = secrets.token_urlsafe(32)


def end_session() -> None:
    """Sign out: forget everything in the session."""
    session.clear()


def session_user(db: Session, now: datetime) -> User | None:
    """The signed-in, active user of this request, or None (and the session is ended).

    Refreshes the idle timer when the session is still valid.
    """
    uid = session.get("uid")
    if uid is None:
        return None
    auth_at = session.get("auth_at", 0.0)
    seen_at = session.get("seen_at", 0.0)
    stamp = now.timestamp()
    expired = (
        stamp - seen_at > IDLE_TIMEOUT.total_seconds()
        or stamp - auth_at > ABSOLUTE_TIMEOUT.total_seconds()
        or stamp < auth_at  # a clock moved back, or a forged instant: do not trust it
    )
    user = None if expired else db.get(User, uid)
    if user is None or not user.is_active:
        csrf = session.get(CSRF_FIELD)
        session.clear()
        if csrf:  # keep the sign-in form usable in the same tab
            session[CSRF_FIELD] = csrf
        return None
    session["seen_at"] = stamp
    return user


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
