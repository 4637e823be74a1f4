"""Waking the dispatchers when an urgent row is committed, so a page leaves at once.

Dispatchers poll the outbox (``reminders dispatch --interval``, 5 s by default); an
urgent row committed just after a pass would wait for the next one. The process that
queues an urgent row calls :func:`wake_dispatchers` with its session, and each
dispatcher waits between passes on a :class:`Wakeup` (:func:`listen_for_wakeups`)
instead of sleeping. Polling stays: a wake-up that is lost (a process killed between
its commit and the signal, a full socket buffer, the listening connection cut) delays
the row to the next poll, never further. A wake-up never carries a row: the
dispatcher claims and sends it through its one claim-send-record path, so a crash can
still neither lose nor double a message.

* PostgreSQL: ``NOTIFY`` in the transaction that queues the row (PostgreSQL delivers it
  at commit and drops it with a rollback); each dispatcher ``LISTEN``\\s on a connection
  of its own (psycopg 3, autocommit), reconnected after a failure.
* SQLite: a UNIX datagram socket per dispatcher in a directory beside the database file
  (``<database>.wake/<pid>``); after the commit, the queuing process sends one byte to
  each socket there. Nothing new to run or configure, and the directory has the
  database's own permissions: whoever may write the database may wake its dispatchers.

Interface: :func:`wake_dispatchers` (the queuing side), :func:`listen_for_wakeups`
returning a :class:`Wakeup` (``wait``, ``close``) for the dispatcher.
"""

from __future__ import annotations

import contextlib
import logging
import os
import select
import socket
import threading
from functools import lru_cache
from pathlib import Path
from typing import Any, Protocol

from sqlalchemy import event, text
from sqlalchemy.engine import Connection, Engine
from sqlmodel import Session

from reminders.data.db import outage_reason

logger = logging.getLogger(__name__)

#: The PostgreSQL channel urgent rows are announced on (no payload: the row is in the outbox).
CHANNEL = "outbox_urgent"
_NOTIFY = text(f"SELECT pg_notify('{CHANNEL}', '')")
#: ``session.info`` key: this session's transaction already asked for a wake-up at commit.
_PENDING = "wake_dispatchers_at_commit"
#: The longest path a UNIX socket address holds on Linux (108 bytes with the final NUL).
_MAX_SOCKET_PATH = 107


class Wakeup(Protocol):
    """What a dispatcher waits on between passes."""

    def wait(self, timeout: float) -> bool:
        """Block up to ``timeout`` seconds; True as soon as an urgent row was announced.

        Announcements that arrived while the dispatcher was busy count (they are queued
        by the database or the socket), so a row committed during a pass is not missed.
        """
        ...

    def close(self) -> None:
        """Stop listening."""
        ...


def wake_dispatchers(session: Session) -> None:
    """Wake the dispatchers once ``session``'s transaction commits (nothing on a rollback).

    Called by :func:`reminders.outbox.enqueue_message` for an urgent row due now.
    PostgreSQL: ``NOTIFY`` in the transaction. SQLite: the datagrams are sent from the
    session's ``after_commit`` event; a session that rolls back keeps the request for
    its next commit, one needless wake-up at worst.
    """
    engine = _engine_of(session)
    if engine.dialect.name == "postgresql":
        session.execute(_NOTIFY)
        return
    directory = _socket_directory(engine)
    if directory is None or session.info.get(_PENDING):
        return
    session.info[_PENDING] = True

    def _after_commit(committed: Session) -> None:
        committed.info.pop(_PENDING, None)
        signal_socket_directory(directory)

    event.listen(session, "after_commit", _after_commit, once=True)


def listen_for_wakeups(engine: Engine) -> Wakeup:
    """The :class:`Wakeup` of a dispatcher on ``engine``; listening starts here.

    Start it before the first pass: a row committed during that pass then wakes the next.
    """
    if engine.dialect.name == "postgresql":
        logger.info("dispatch: woken by urgent rows (LISTEN %s)", CHANNEL)
        return PostgresWakeup(engine)
    directory = _socket_directory(engine)
    if directory is None:
        return NoWakeup()
    logger.info("dispatch: woken by urgent rows (socket in %s)", directory.name)
    return SocketWakeup(directory)


class NoWakeup:
    """No wake-ups (turned off, an in-memory database, a path too long for a socket)."""

    def wait(self, timeout: float) -> bool:
        """Never woken: waits out ``timeout``."""
        return _idle(timeout)

    def close(self) -> None:
        """Nothing to close."""


class PostgresWakeup:
    """``LISTEN`` on a connection of the dispatcher's own, taken from its engine's pool.

    The connection is detached from the pool (it is never handed to anything else) and
    in autocommit: a notification is only delivered to a session outside a transaction.
    A failed connection is closed and opened again at the next wait; meanwhile the
    dispatcher polls.
    """

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._conn: Any = None
        self._failing = False
        self._connect()

    def _connect(self) -> bool:
        try:
            raw = self._engine.raw_connection()
            conn = raw.driver_connection
            raw.detach()  # closed for good by close(), never returned to the pool
            conn.rollback()  # the pool's ping may have opened a transaction
            conn.autocommit = True
            conn.execute(f"LISTEN {CHANNEL}")
        except Exception as exc:  # an outage: the dispatcher's pass reports it
            if not self._failing:
                logger.warning(
                    "dispatch: no wake-ups until the database answers (%s)", outage_reason(exc)
                )
            self._failing = True
            return False
        if self._failing:
            logger.info("dispatch: listening for wake-ups again")
        self._failing = False
        self._conn = conn
        return True

    def wait(self, timeout: float) -> bool:
        """True once a notification arrived within ``timeout``; all that are queued are read."""
        if self._conn is None and not self._connect():
            return _idle(timeout)
        try:
            woken = any(True for _ in self._conn.notifies(timeout=timeout, stop_after=1))
            if woken:  # the rest of a burst: one pass claims all their rows
                for _ in self._conn.notifies(timeout=0):
                    pass
            return woken
        except Exception as exc:
            logger.warning("dispatch: wake-up connection lost (%s)", outage_reason(exc))
            self._failing = True
            self.close()
            return _idle(timeout)

    def backend_pid(self) -> int | None:
        """The server process of the listening connection (None while there is none)."""
        return self._conn.info.backend_pid if self._conn is not None else None

    def close(self) -> None:
        """Close the listening connection."""
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(Exception):
                conn.close()


class SocketWakeup:
    """A UNIX datagram socket ``<directory>/<pid>`` that the queuing processes write to.

    A socket that cannot be made (the database's directory unreachable) is tried again
    at the next wait; meanwhile the dispatcher polls.
    """

    def __init__(self, directory: Path) -> None:
        self.path = directory / str(os.getpid())
        self._sock: socket.socket | None = None
        self._failing = False
        self._bind()

    def _bind(self) -> bool:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        try:
            # The database's directory's permissions: who may write the database may wake.
            self.path.parent.mkdir(exist_ok=True)
            # A file with our pid is a dead process's socket (pids are unique among the living).
            self.path.unlink(missing_ok=True)
            sock.bind(str(self.path))
        except OSError as exc:
            sock.close()
            if not self._failing:
                logger.warning("dispatch: no wake-ups until the socket can be made (%s)", exc)
            self._failing = True
            return False
        sock.setblocking(False)
        self._sock, self._failing = sock, False
        return True

    def wait(self, timeout: float) -> bool:
        """True once a datagram arrived within ``timeout``; every queued one is read."""
        if self._sock is None and not self._bind():
            return _idle(timeout)
        readable, _, _ = select.select([self._sock], [], [], max(timeout, 0.0))
        if not readable:
            return False
        with contextlib.suppress(BlockingIOError):
            while True:
                self._sock.recv(16)
        return True

    def close(self) -> None:
        """Close the socket and remove its file."""
        sock, self._sock = self._sock, None
        if sock is not None:
            sock.close()
            with contextlib.suppress(OSError):
                self.path.unlink(missing_ok=True)


def signal_socket_directory(directory: Path) -> int:
    """Send one byte to every dispatcher socket in ``directory``; how many took it.

    Never blocks and never raises: a full buffer means that dispatcher is already
    woken; a socket nobody reads (its dispatcher died) is removed.
    """
    try:
        names = os.listdir(directory)
    except OSError:
        return 0  # no dispatcher has listened yet
    sent = 0
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.setblocking(False)
        for name in names:
            path = directory / name
            try:
                sock.sendto(b"!", str(path))
                sent += 1
            except BlockingIOError:
                sent += 1  # its queue is full: woken already
            except ConnectionRefusedError:
                path.unlink(missing_ok=True)
            except OSError:
                continue
    return sent


def _socket_directory(engine: Engine) -> Path | None:
    """``<database file>.wake`` for a SQLite file; None when no socket can live there."""
    database = engine.url.database
    if engine.dialect.name != "sqlite" or not database or database == ":memory:":
        return None
    return _directory_beside(database)


@lru_cache(maxsize=8)
def _directory_beside(database: str) -> Path | None:
    """The socket directory of the SQLite file ``database`` (worked out, and warned, once)."""
    directory = Path(database).resolve().parent / f"{Path(database).name}.wake"
    if len(str(directory)) + 1 + 10 > _MAX_SOCKET_PATH:  # a slash and a pid of up to 10 digits
        logger.warning("dispatch wake-ups off: the database path is too long for a socket")
        return None
    return directory


#: Never set: what a wait without a wake-up blocks on (its stop event is checked by the caller).
_NEVER = threading.Event()


def _idle(timeout: float) -> bool:
    """Wait ``timeout`` seconds without a wake-up; False."""
    _NEVER.wait(max(timeout, 0.0))
    return False


def _engine_of(session: Session) -> Engine:
    bind = session.get_bind()
    return bind.engine if isinstance(bind, Connection) else bind
