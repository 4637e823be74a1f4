"""Which clock process is the active one: a PostgreSQL advisory lock, or a lease row on SQLite.

Two clock processes may run; only the one that holds the clock's lock (PostgreSQL) or
lease (SQLite) runs the scheduled jobs (:mod:`reminders.clock`). Both kinds answer the
same four questions, with the time passed in:

- ``acquire(now)``: take it if nobody holds it (the standby asks every few seconds);
- ``renew(now)``: the active clock's heartbeat; None once it is lost;
- ``holds(now)``: the fence, asked before every job run on a fresh connection;
- ``release(now)``: hand it over at once (a clean stop).

**PostgreSQL**: ``pg_try_advisory_lock`` on one dedicated connection, kept for the life
of the active clock. The server drops a session lock with its session, so a killed
clock's lock is free as soon as the server sees the socket close, and the standby takes
it at its next poll. A clock that is alive but frozen (stopped, swapped out, its host
cut off) keeps a socket the kernel still answers for; so the lock's session is given an
``idle_session_timeout`` of the lease: the heartbeat runs a statement on it every few
seconds, and a session left idle for a whole lease is ended by the server, lock and all.
The key is derived from the schema's name, so that installations (or test sessions)
sharing one database in separate schemas do not take each other's lock.

**SQLite** (one host): a :class:`~reminders.data.models.ClockLease` row, taken with one
conditional ``UPDATE`` (or the first ``INSERT``) when free, expired or already ours;
renewed only while unexpired, so a holder that slept past its lease has lost it even if
nobody took it meanwhile.

Holders are named ``hostname:pid:nonce`` (:func:`holder_name`): no patient data.
"""

from __future__ import annotations

import hashlib
import os
import secrets
import socket
import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Protocol

from sqlalchemy import or_, select, text, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection, Engine
from sqlmodel import Session

from reminders.data.db import session_scope
from reminders.data.models import ClockLease

#: The lease row's name (one clock per database).
CLOCK_LEASE_NAME = "clock"


def holder_name() -> str:
    """This process as a lock holder: ``hostname:pid:nonce``.

    The nonce tells a restarted process from its predecessor when both get the same pid
    (pid 1 in a container).
    """
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(2)}"


class Leadership(Protocol):
    """The clock's lock or lease, as seen by one process (``holder``)."""

    holder: str
    kind: str

    def acquire(self, now: datetime) -> datetime | None:
        """Take it if it is free: the instant it is held from (``now`` or later), else None."""
        ...

    def renew(self, now: datetime) -> datetime | None:
        """Keep it (the heartbeat): the instant it is held from again, or None: lost."""
        ...

    def holds(self, now: datetime) -> bool:
        """Whether this process holds it, checked in the database (the fence)."""
        ...

    def current_holder(self, now: datetime) -> str | None:
        """Who holds it now, for the standby's log line; None when nobody does."""
        ...

    def release(self, now: datetime) -> None:
        """Let it go at once, so that a standby can take it at its next poll."""
        ...


def leadership_for(engine: Engine, *, lease: timedelta, holder: str | None = None) -> Leadership:
    """The advisory lock on PostgreSQL, the lease row elsewhere (SQLite)."""
    name = holder or holder_name()
    if engine.dialect.name == "postgresql":
        return AdvisoryLock(engine, name, lease=lease)
    return LeaseRow(engine, name, lease=lease)


# --- SQLite: the lease row ----------------------------------------------------------------


def take_lease(
    session: Session, holder: str, now: datetime, lease: timedelta, name: str = CLOCK_LEASE_NAME
) -> bool:
    """Take the lease ``name`` for ``lease`` from ``now`` if it is free, expired or ``holder``'s.

    One statement decides, so two clocks asking at once cannot both win: the first
    ``INSERT`` of the row (ignored if it exists), else an ``UPDATE`` whose ``WHERE``
    names the free states.
    """
    table = ClockLease.__table__
    dialect = session.get_bind().dialect.name
    dialect_insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    values = {"name": name, "holder": holder, "acquired_at": now, "expires_at": now + lease}
    created = session.execute(
        dialect_insert(table).values(**values).on_conflict_do_nothing(index_elements=["name"])
    )
    if created.rowcount == 1:
        return True
    taken = session.execute(
        update(table)
        .where(
            table.c.name == name,
            or_(table.c.holder == holder, table.c.expires_at <= now),
        )
        .values(holder=holder, acquired_at=now, expires_at=now + lease)
    )
    return taken.rowcount == 1


def renew_lease(
    session: Session, holder: str, now: datetime, lease: timedelta, name: str = CLOCK_LEASE_NAME
) -> bool:
    """Extend ``holder``'s unexpired lease to ``now + lease``; False if it is not theirs now."""
    table = ClockLease.__table__
    renewed = session.execute(
        update(table)
        .where(table.c.name == name, table.c.holder == holder, table.c.expires_at > now)
        .values(expires_at=now + lease)
    )
    return renewed.rowcount == 1


def lease_holder(session: Session, now: datetime, name: str = CLOCK_LEASE_NAME) -> str | None:
    """The holder of the unexpired lease ``name``; None when it is free or expired."""
    table = ClockLease.__table__
    return session.execute(
        select(table.c.holder).where(table.c.name == name, table.c.expires_at > now)
    ).scalar_one_or_none()


def release_lease(
    session: Session, holder: str, now: datetime, name: str = CLOCK_LEASE_NAME
) -> None:
    """End ``holder``'s lease now (nothing if another holds it)."""
    table = ClockLease.__table__
    session.execute(
        update(table).where(table.c.name == name, table.c.holder == holder).values(expires_at=now)
    )


def _utc_now() -> datetime:
    return datetime.now(UTC)


class LeaseRow:
    """The clock's lease as a :class:`ClockLease` row (SQLite), one short transaction a call.

    A write may wait for SQLite's lock (up to its busy timeout, 15 s: another process
    writing, or frozen while writing). The lease is counted from when the lock was
    obtained (``clock()`` read then, never earlier than ``now``), so a slow write does not
    store a lease that is already over, and the caller's trust counts from that instant.
    """

    kind = "lease"

    def __init__(
        self,
        engine: Engine,
        holder: str,
        *,
        lease: timedelta,
        clock: Callable[[], datetime] = _utc_now,
    ) -> None:
        self.engine = engine
        self.holder = holder
        self.lease = lease
        self.clock = clock

    def _locked_now(self, session: Session, now: datetime) -> datetime:
        session.connection()  # BEGIN (IMMEDIATE on SQLite): waits for the write lock
        return max(now, self.clock())

    def acquire(self, now: datetime) -> datetime | None:
        """See :class:`Leadership`."""
        with session_scope(self.engine) as session:
            at = self._locked_now(session, now)
            return at if take_lease(session, self.holder, at, self.lease) else None

    def renew(self, now: datetime) -> datetime | None:
        """See :class:`Leadership`."""
        with session_scope(self.engine) as session:
            at = self._locked_now(session, now)
            return at if renew_lease(session, self.holder, at, self.lease) else None

    def holds(self, now: datetime) -> bool:
        """See :class:`Leadership`."""
        return self.current_holder(now) == self.holder

    def current_holder(self, now: datetime) -> str | None:
        """See :class:`Leadership`."""
        with session_scope(self.engine, write=False) as session:
            return lease_holder(session, now)

    def release(self, now: datetime) -> None:
        """See :class:`Leadership`."""
        with session_scope(self.engine) as session:
            release_lease(session, self.holder, now)


# --- PostgreSQL: the session advisory lock -----------------------------------------------

#: ``idle_session_timeout`` exists from PostgreSQL 14; an older server relies on its TCP
#: keepalives (set too) to drop the session of a host that is gone.
IDLE_SESSION_TIMEOUT_SINCE = 140000

_HELD = text(
    "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted "
    "AND database = (SELECT oid FROM pg_database WHERE datname = current_database()) "
    "AND classid = :high AND objid = :low AND objsubid = 1 AND pid = :pid"
)
_HOLDER = text(
    "SELECT a.application_name FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid "
    "WHERE l.locktype = 'advisory' AND l.granted "
    "AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database()) "
    "AND l.classid = :high AND l.objid = :low AND l.objsubid = 1"
)


def advisory_key(schema: str) -> int:
    """The clock's lock key for ``schema``: fixed for a schema, positive, 63 bits."""
    digest = hashlib.sha256(f"reminders.clock:{schema}".encode()).digest()
    return int.from_bytes(digest[:8], "big") >> 1


class AdvisoryLock:
    """The clock's lock as a session advisory lock on one dedicated PostgreSQL connection.

    The connection is this object's alone (the main loop's thread); the fence asks
    ``pg_locks`` on a pooled connection whether the lock's session (by backend pid)
    still holds it, so a job thread never waits on the heartbeat. A connection that
    failed is thrown away, never returned to the pool with a lock on it.
    """

    kind = "lock"

    def __init__(self, engine: Engine, holder: str, *, lease: timedelta) -> None:
        self.engine = engine
        self.holder = holder
        self.lease = lease
        self.key: int | None = None
        self._connection: Connection | None = None
        self.backend_pid: int | None = None
        self._guard = threading.Lock()

    def _connect(self) -> Connection:
        if self._connection is not None:
            return self._connection
        connection = self.engine.connect().execution_options(isolation_level="AUTOCOMMIT")
        try:
            settings = {
                # Shown in pg_stat_activity: operators (and the standby) see who is active.
                "application_name": f"reminders clock {self.holder}"[:63],
                # A dead host's session goes within half a minute, not the kernel's hours.
                "tcp_keepalives_idle": "10",
                "tcp_keepalives_interval": "5",
                "tcp_keepalives_count": "3",
                "statement_timeout": "5s",
            }
            version = connection.execute(text("SHOW server_version_num")).scalar_one()
            if int(version) >= IDLE_SESSION_TIMEOUT_SINCE:
                lease_ms = int(self.lease.total_seconds() * 1000)
                settings["idle_session_timeout"] = f"{lease_ms}ms"
            for name, value in settings.items():
                connection.execute(
                    text("SELECT set_config(:name, :value, false)"), {"name": name, "value": value}
                )
            schema = connection.execute(text("SELECT current_schema()")).scalar_one()
            self.key = advisory_key(schema)
            self.backend_pid = connection.execute(text("SELECT pg_backend_pid()")).scalar_one()
        except BaseException:
            self._discard(connection)
            raise
        self._connection = connection
        return connection

    def _discard(self, connection: Connection | None = None) -> None:
        """Close the lock's connection for good (the server drops the lock with it)."""
        connection = connection or self._connection
        self._connection = None
        if connection is not None:
            connection.invalidate()
            connection.close()

    def _key_parts(self) -> dict[str, int]:
        assert self.key is not None
        return {"high": self.key >> 32, "low": self.key & 0xFFFFFFFF}

    def acquire(self, now: datetime) -> datetime | None:
        """See :class:`Leadership` (held from ``now``: the lock does not expire by the clock).

        A standby's connection kept from its last ask may have been ended by the server
        meanwhile (idle, or restarted): that one failure is met with a fresh connection.
        """
        with self._guard:
            if self._connection is not None:
                try:
                    return now if self._try_lock(self._connection) else None
                except Exception:
                    self._discard()
            try:
                return now if self._try_lock(self._connect()) else None
            except BaseException:
                self._discard()
                raise

    def _try_lock(self, connection: Connection) -> bool:
        statement = text("SELECT pg_try_advisory_lock(:key)")
        return bool(connection.execute(statement, {"key": self.key}).scalar_one())

    def renew(self, now: datetime) -> datetime | None:
        """See :class:`Leadership`: the heartbeat, a statement on the lock's own session.

        A lost connection is a lost lock (the server dropped it with the session): None,
        never a new connection.
        """
        with self._guard:
            if self._connection is None:
                return None
            try:
                held = self._connection.execute(
                    _HELD, {**self._key_parts(), "pid": self.backend_pid}
                ).scalar_one()
            except BaseException:
                self._discard()
                raise
            return now if held == 1 else None

    def holds(self, now: datetime) -> bool:
        """See :class:`Leadership`: asked on a pooled connection, by the lock's backend pid."""
        pid = self.backend_pid
        if pid is None or self.key is None or self._connection is None:
            return False
        with self.engine.connect() as connection:
            held = connection.execute(_HELD, {**self._key_parts(), "pid": pid}).scalar_one()
        return held == 1

    def current_holder(self, now: datetime) -> str | None:
        """See :class:`Leadership` (the holder's ``application_name``)."""
        if self.key is None:
            return None
        with self.engine.connect() as connection:
            name = connection.execute(_HOLDER, self._key_parts()).scalar()
        return name.removeprefix("reminders clock ") if name else None

    def release(self, now: datetime) -> None:
        """See :class:`Leadership`: the connection is closed, and the lock with it."""
        with self._guard:
            self._discard()
