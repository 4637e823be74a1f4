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
* **Session**: kept on the server, one :class:`reminders.data.models.UserSession` row per
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

Nothing here logs an email, a password, an address, a session id or any patient data:
only user ids.
"""

from __future__ import annotations

import hmac
import logging
import secrets
from datetime import timedelta

from flask import request, session

logger = logging.getLogger(__name__)

#: A session unused for this long has ended (a phone left on a ward trolley).
IDLE_TIMEOUT = timedelta(minutes=30)
#: A session ends this long after sign-in whatever happens (one long shift).
ABSOLUTE_TIMEOUT = timedelta(hours=12)
#: A session's ``last_seen_at`` is written again only once it is this old. Writing it on
#: every request would turn every page view into a database write (and on SQLite a wait
#: for the one write lock, shared with the dispatcher and the webhooks); the price is an
#: idle limit precise to within this step: a session may end up to a minute early.
LAST_SEEN_STEP = timedelta(minutes=1)

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
