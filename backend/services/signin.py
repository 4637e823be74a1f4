"""Sign-in attempts: throttled per account and client, never locked out (issue 12, item 4).

OWASP's authentication cheat sheet prefers throttling to account lockout: a lockout lets
anyone who knows a nurse's email keep her out of the care-team pages. Here:

* **Pair delays.** Failures count per *pair*: an account (the email as typed, known or
  not) and a client. The first :attr:`ThrottlePolicy.free_failures` failures in a row cost
  nothing; after each further one the pair waits 1 s, 2 s, 4 s ... at most 15 minutes.
  While it waits an attempt is refused (429 with ``Retry-After``) before the password is
  checked, and an unknown email is refused exactly like a known one. A success resets the
  pair. Failures of one pair never slow another, so a stranger at another address cannot
  keep the real user out.
* **The client** is the network a request comes from (an IPv4 address; an IPv6 /64, as
  one host commonly owns a whole /64), or, for a browser this account signed in with in
  the last 30 days, that browser: the signed ``known_device`` cookie (OWASP's "device
  cookies"). A stranger behind the hospital's shared address therefore delays only the
  attempts that come without the nurse's cookie, never her own browser.
* **The spraying brake.** After :attr:`ThrottlePolicy.address_failures` failures from one
  address within 15 minutes, over any accounts, further attempts from that address wait
  for the window to end, except for pairs that signed in from that address in the last
  30 days and for known devices: a nurse who signs in every day from the hospital's
  address is not stopped by a stranger on the same network.
* **Shared by every worker.** The counters are :class:`reminders.data.models.LoginThrottle` rows
  keyed by HMAC-SHA256 (the app's ``SECRET_KEY``) of the normalised email and of the
  client, so no email typed by a stranger and no address is stored in clear. An allowed
  attempt takes the pair's row lock (``SELECT ... FOR UPDATE``; SQLite serialises writers
  anyway) before checking the password, so parallel guesses queue instead of slipping
  through one delay together; the address counter is one atomic upsert.

:func:`decide` is the whole policy as a pure function; :func:`attempt_sign_in` is the
service the sign-in view calls, :func:`reminders.data.pruning.prune_login_throttle` the clean-up the clock runs.
Nothing here logs or stores an email, an address or a password.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import math
import secrets
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from itsdangerous import BadData, URLSafeSerializer
from sqlalchemy import ColumnElement, and_, case, or_, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlmodel import Session, select

from backend.auth import authenticate, normalise_email
from reminders.data.models import LoginThrottle, User
from reminders.data.pruning import THROTTLE_RETENTION, literal_utc

#: The ``account_key`` of the row that counts every failure from one address.
ADDRESS_WIDE = "*"
#: The cookie that marks a browser as one an account signed in with (path ``/login``).
DEVICE_COOKIE = "known_device"
#: Accounts one browser remembers (a shared ward workstation); the oldest is forgotten.
DEVICE_ACCOUNTS = 8


@dataclass(frozen=True)
class ThrottlePolicy:
    """The numbers of the policy: operating choices (OWASP guidance), not clinical ones."""

    #: Failures in a row a pair may make before it has to wait.
    free_failures: int = 3
    #: The wait after the first failure beyond the free ones; it doubles after each next one.
    first_delay: timedelta = timedelta(seconds=1)
    #: The longest wait of a pair.
    max_delay: timedelta = timedelta(minutes=15)
    #: Failures from one address, over all accounts, before the spraying brake applies.
    address_failures: int = 50
    #: The window in which those failures are counted (and the brake lasts at most).
    address_window: timedelta = timedelta(minutes=15)
    #: How long a sign-in vouches for its address and its browser; rows idle longer are pruned.
    remember: timedelta = THROTTLE_RETENTION

    def delay_after(self, failures: int) -> timedelta:
        """How long a pair waits after its ``failures``-th failure in a row (0 while free)."""
        beyond = failures - self.free_failures
        if beyond <= 0:
            return timedelta(0)
        # The exponent is bounded so that a huge count cannot overflow timedelta.
        return min(self.first_delay * 2 ** min(beyond - 1, 32), self.max_delay)


POLICY = ThrottlePolicy()


class Brake(StrEnum):
    """Why an attempt must wait."""

    PAIR = "pair"  # this account failed too often in a row from this client
    ADDRESS = "address"  # this address failed too often over many accounts


@dataclass(frozen=True)
class PairState:
    """What is stored about one account from one client (all empty for a new pair)."""

    failures: int = 0
    retry_after: datetime | None = None
    last_success_at: datetime | None = None


@dataclass(frozen=True)
class AddressState:
    """Failures from one address in the current window, and when the window started."""

    failures: int = 0
    window_start: datetime | None = None


@dataclass(frozen=True)
class Decision:
    """Whether an attempt may check its password: a wait of 0 seconds means yes."""

    wait_seconds: int = 0
    brake: Brake | None = None

    @property
    def allowed(self) -> bool:
        """True when the password may be checked now."""
        return self.wait_seconds == 0


ALLOWED = Decision()


def _whole_seconds(wait: timedelta) -> int:
    """``wait`` rounded up to whole seconds, at least 1 (``Retry-After`` takes integers)."""
    return max(1, math.ceil(wait.total_seconds()))


def decide(
    pair: PairState,
    address: AddressState,
    now: datetime,
    *,
    known_device: bool = False,
    policy: ThrottlePolicy = POLICY,
) -> Decision:
    """May an attempt of ``pair`` from ``address`` check its password at ``now``?

    The pair's own wait comes first. The spraying brake applies only to a pair that has
    not signed in within ``policy.remember`` and is not a ``known_device``.
    """
    if pair.retry_after is not None and pair.retry_after > now:
        # A clock set back must not make anyone wait longer than the longest delay.
        return Decision(_whole_seconds(min(pair.retry_after - now, policy.max_delay)), Brake.PAIR)
    if known_device or signed_in_recently(pair, now, policy):
        return ALLOWED
    if address.window_start is None or address.failures < policy.address_failures:
        return ALLOWED
    window_end = address.window_start + policy.address_window
    if window_end <= now:
        return ALLOWED
    wait = min(window_end - now, policy.address_window)
    return Decision(_whole_seconds(wait), Brake.ADDRESS)


def signed_in_recently(pair: PairState, now: datetime, policy: ThrottlePolicy = POLICY) -> bool:
    """True when the pair signed in successfully within ``policy.remember`` of ``now``."""
    return pair.last_success_at is not None and now - pair.last_success_at <= policy.remember


def retry_after_failure(
    failures: int, now: datetime, policy: ThrottlePolicy = POLICY
) -> datetime | None:
    """The instant a pair waits until after its ``failures``-th failure at ``now`` (None: free)."""
    delay = policy.delay_after(failures)
    return now + delay if delay else None


# --- keys: nothing typed by a stranger is stored in clear ----------------------------------


def _digest(secret: str | bytes, kind: str, value: str) -> str:
    key = secret.encode() if isinstance(secret, str) else secret
    # The kind separates the key spaces: an address can never collide with a device.
    message = f"{kind}\x00{value}".encode("utf-8", "surrogatepass")
    return hmac.new(key, message, hashlib.sha256).hexdigest()


def client_network(address: str) -> str:
    """The network a client address stands for: an IPv4 address, an IPv6 /64.

    An IPv4-mapped IPv6 address is its IPv4 address. Anything that is not an IP address
    (a test client's ``None``, a Unix socket) is kept as it is.
    """
    try:
        ip = ipaddress.ip_address(address.strip())
    except ValueError:
        return address.strip()[:100] or "unknown"
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network((int(ip) >> 64 << 64, 64)))
    return str(ip)


def account_key(secret: str | bytes, email: str) -> str:
    """The stored key of an account: HMAC-SHA256 of the normalised email."""
    return _digest(secret, "account", normalise_email(email))


def address_key(secret: str | bytes, address: str) -> str:
    """The stored key of a client address: HMAC-SHA256 of its network."""
    return _digest(secret, "address", client_network(address))


def device_key(secret: str | bytes, nonce: str) -> str:
    """The stored key of a known browser: HMAC-SHA256 of its cookie's random nonce."""
    return _digest(secret, "device", nonce)


# --- known devices -------------------------------------------------------------------------


@dataclass(frozen=True)
class KnownDevice:
    """A browser's ``known_device`` cookie: its nonce, and when each account last signed in."""

    nonce: str
    accounts: dict[str, int] = field(default_factory=dict)

    def knows(self, account: str, now: datetime, policy: ThrottlePolicy = POLICY) -> bool:
        """True when ``account`` signed in with this browser within ``policy.remember``."""
        stamp = self.accounts.get(account)
        return stamp is not None and 0 <= now.timestamp() - stamp <= policy.remember.total_seconds()


def _serializer(secret: str | bytes) -> URLSafeSerializer:
    return URLSafeSerializer(secret, salt="known-device")


def read_device_cookie(value: str | None, secret: str | bytes) -> KnownDevice | None:
    """The known device a cookie value stands for, or None (absent, forged or malformed)."""
    if not value:
        return None
    try:
        data = _serializer(secret).loads(value)
    except BadData:
        return None
    if not isinstance(data, dict):
        return None
    nonce, accounts = data.get("n"), data.get("a")
    if not isinstance(nonce, str) or not nonce or not isinstance(accounts, dict):
        return None
    stamps = {
        key: stamp
        for key, stamp in accounts.items()
        if isinstance(key, str) and isinstance(stamp, int) and not isinstance(stamp, bool)
    }
    return KnownDevice(nonce, stamps)


def device_cookie_after_sign_in(
    device: KnownDevice | None,
    account: str,
    now: datetime,
    secret: str | bytes,
    policy: ThrottlePolicy = POLICY,
) -> str:
    """The cookie value that remembers ``account`` signing in with this browser at ``now``.

    The browser keeps its nonce; accounts not seen within ``policy.remember`` are dropped,
    and at most :data:`DEVICE_ACCOUNTS` are kept (the most recent).
    """
    nonce = device.nonce if device else secrets.token_urlsafe(16)
    stamp = int(now.timestamp())
    kept = {
        key: seen
        for key, seen in (device.accounts if device else {}).items()
        if key != account and 0 <= stamp - seen <= policy.remember.total_seconds()
    }
    newest = sorted(kept.items(), key=lambda item: item[1], reverse=True)[: DEVICE_ACCOUNTS - 1]
    return _serializer(secret).dumps({"n": nonce, "a": {**dict(newest), account: stamp}})


# --- the stored counters -------------------------------------------------------------------

_TABLE = LoginThrottle.__table__
_DIALECT_INSERT = {"sqlite": sqlite.insert, "postgresql": postgresql.insert}
_PAIR = ("account_key", "address_key")


def _insert(session: Session) -> Any:
    return _DIALECT_INSERT[session.get_bind().dialect.name](_TABLE)


def _where(account: str, client: str) -> Any:
    return and_(_TABLE.c.account_key == account, _TABLE.c.address_key == client)


def _pair_state(session: Session, account: str, client: str, *, lock: bool = False) -> PairState:
    query = select(
        LoginThrottle.failures, LoginThrottle.retry_after, LoginThrottle.last_success_at
    ).where(LoginThrottle.account_key == account, LoginThrottle.address_key == client)
    if lock:
        query = query.with_for_update()
    row = session.exec(query).first()
    return PairState(*row) if row is not None else PairState()


def _address_state(session: Session, address: str) -> AddressState:
    row = session.exec(
        select(LoginThrottle.failures, LoginThrottle.first_failure_at).where(
            LoginThrottle.account_key == ADDRESS_WIDE, LoginThrottle.address_key == address
        )
    ).first()
    return AddressState(*row) if row is not None else AddressState()


def _ensure_pair(session: Session, account: str, client: str) -> None:
    """The pair's row exists (so that it can be locked); a concurrent insert wins quietly."""
    session.execute(
        _insert(session)
        .values(account_key=account, address_key=client, failures=0)
        .on_conflict_do_nothing(index_elements=list(_PAIR))
    )


def record_failure(
    session: Session,
    account: str,
    client: str,
    address: str,
    now: datetime,
    policy: ThrottlePolicy = POLICY,
) -> int:
    """Count one failure of the pair and one of the address; returns the pair's failures.

    Each count is one atomic upsert, so failures from several workers at once are never
    lost. The pair's ``retry_after`` follows from its new count in the same transaction
    (the upsert holds the row's lock until commit).
    """
    failures = session.execute(
        _failure_upsert(
            session,
            account,
            client,
            now,
            failures=_TABLE.c.failures + 1,
            restart=_TABLE.c.first_failure_at.is_(None),
        ).returning(_TABLE.c.failures)
    ).scalar_one()
    session.execute(
        update(_TABLE)
        .where(_where(account, client))
        .values(retry_after=retry_after_failure(failures, now, policy))
    )
    window_over = or_(
        _TABLE.c.first_failure_at.is_(None),
        _TABLE.c.first_failure_at <= literal_utc(now - policy.address_window),
    )
    session.execute(
        _failure_upsert(
            session,
            ADDRESS_WIDE,
            address,
            now,
            failures=case((window_over, 1), else_=_TABLE.c.failures + 1),
            restart=window_over,
        )
    )
    return failures


def _failure_upsert(
    session: Session,
    account_key: str,
    address_key: str,
    now: datetime,
    *,
    failures: ColumnElement[int],
    restart: ColumnElement[bool],
) -> Any:
    """One failure of a row: a new row counts 1, an existing one takes ``failures``.

    ``restart`` says when an existing row's window starts again at ``now``.
    """
    return (
        _insert(session)
        .values(
            account_key=account_key,
            address_key=address_key,
            failures=1,
            first_failure_at=now,
            last_failure_at=now,
        )
        .on_conflict_do_update(
            index_elements=list(_PAIR),
            set_={
                "failures": failures,
                "first_failure_at": case(
                    (restart, literal_utc(now)), else_=_TABLE.c.first_failure_at
                ),
                "last_failure_at": literal_utc(now),
            },
        )
    )


def record_success(
    session: Session, account: str, client: str, address: str, now: datetime
) -> None:
    """Reset the pair and remember the success; a known device also vouches for its address.

    A success through a known device only stamps the (account, address) pair's
    ``last_success_at``: the failures a stranger made there keep their delays.
    """
    reset = {"failures": 0, "first_failure_at": None, "retry_after": None}
    pairs = [(client, reset)] + ([(address, {})] if address != client else [])
    for key, changes in pairs:
        session.execute(
            _insert(session)
            .values(account_key=account, address_key=key, failures=0, last_success_at=now)
            .on_conflict_do_update(
                index_elements=list(_PAIR),
                set_={**changes, "last_success_at": literal_utc(now)},
            )
        )


# --- the service ---------------------------------------------------------------------------


@dataclass(frozen=True)
class SignInAttempt:
    """The result of one attempt: the user on success, or how long to wait, or neither.

    ``device_cookie`` is the new ``known_device`` cookie value after a success.
    """

    user: User | None = None
    decision: Decision = ALLOWED
    device_cookie: str | None = None

    @property
    def wait_seconds(self) -> int:
        """Seconds before the next attempt may be checked (0: it was checked)."""
        return self.decision.wait_seconds


def attempt_sign_in(
    session: Session,
    email: str,
    password: str,
    address: str,
    now: datetime,
    *,
    secret: str | bytes,
    device_cookie: str | None = None,
    policy: ThrottlePolicy = POLICY,
) -> SignInAttempt:
    """One sign-in attempt of ``email`` from ``address`` at ``now``, throttled.

    ``secret`` keys the stored HMACs and signs the device cookie (the app's
    ``SECRET_KEY``); ``device_cookie`` is the browser's ``known_device`` cookie, if any.
    A refused attempt checks no password and counts nothing. The caller commits a checked
    attempt, also a failed one (its counts must be kept).
    """
    account = account_key(secret, email)
    address_id = address_key(secret, address)
    device = read_device_cookie(device_cookie, secret)
    known = device is not None and device.knows(account, now, policy)
    client = device_key(secret, device.nonce) if known and device else address_id

    def current(lock: bool) -> Decision:
        pair = _pair_state(session, account, client, lock=lock)
        spray = _address_state(session, address_id)
        return decide(pair, spray, now, known_device=known, policy=policy)

    decision = current(lock=False)
    if decision.allowed:
        # Decide again under the pair's lock: a parallel attempt may have failed meanwhile.
        _ensure_pair(session, account, client)
        decision = current(lock=True)
    if not decision.allowed:
        return SignInAttempt(decision=decision)
    user = authenticate(session, email, password, now)
    if user is None:
        record_failure(session, account, client, address_id, now, policy)
        return SignInAttempt()
    record_success(session, account, client, address_id, now)
    cookie = device_cookie_after_sign_in(device, account, now, secret, policy)
    return SignInAttempt(user=user, device_cookie=cookie)
