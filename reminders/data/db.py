"""The database without the web: engines, sessions for jobs, and what an outage looks like.

The web's per-request session and the ``<int:...>`` URL converter are in ``backend.db``.
SQLite runs in WAL mode with a busy timeout so that the web process, the clock
and a dispatcher can share the file; PostgreSQL is reached through psycopg 3
(``postgresql+psycopg://``). Nothing here runs at import time.
"""

from __future__ import annotations

import math
import random
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

from sqlalchemy import event
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlmodel import Session, create_engine

from reminders.data.errors import NotFound

SQLITE_BUSY_TIMEOUT_MS = 15_000

R = TypeVar("R")


def make_engine(url: str, *, connect_timeout: float | None = None, **kwargs: Any) -> Engine:
    """Create the engine for ``url``, with SQLite tuned for several processes.

    ``connect_timeout`` (PostgreSQL, seconds) bounds a connection attempt to a server that
    does not answer (packets dropped): without it a request waits for the kernel's TCP
    timeout, minutes, and the web worker is killed instead of answering 503.
    """
    # Statement parameters are patient data (phone numbers, SMS text, lab values):
    # keep them out of exception messages and logs.
    kwargs.setdefault("hide_parameters", True)
    if url.startswith("sqlite"):
        engine = create_engine(
            url,
            connect_args={"check_same_thread": False, "timeout": SQLITE_BUSY_TIMEOUT_MS / 1000},
            **kwargs,
        )
        event.listen(engine, "connect", _sqlite_on_connect)
        # pysqlite's own transaction handling defers BEGIN; emitting it ourselves makes
        # SELECT ... then UPDATE atomic and lets "BEGIN IMMEDIATE" claim a write lock.
        event.listen(engine, "begin", _sqlite_on_begin)
        return engine
    kwargs.setdefault("pool_pre_ping", True)
    if connect_timeout is not None:
        # libpq takes whole seconds (and treats 1 as 2).
        connect_args = {"connect_timeout": max(math.ceil(connect_timeout), 2)}
        kwargs["connect_args"] = {**connect_args, **kwargs.get("connect_args", {})}
    return create_engine(url, **kwargs)


#: SQLite's page cache per connection, in KiB.
SQLITE_CACHE_KIB = 65_536


def _sqlite_on_connect(dbapi_connection: Any, _record: Any) -> None:
    dbapi_connection.isolation_level = None  # autocommit at the driver; SQLAlchemy emits BEGIN
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA synchronous=NORMAL")
    # 64 MB of page cache (SQLite's default is 2 MB, grown only as pages are read): a
    # planning pass looks up and inserts outbox keys all over its unique index.
    cursor.execute(f"PRAGMA cache_size=-{SQLITE_CACHE_KIB}")
    cursor.close()


def _sqlite_on_begin(connection: Any) -> None:
    # A writer starts with BEGIN IMMEDIATE: it takes the write lock at once and so
    # waits for it, instead of failing with "database is locked" when a read
    # transaction tries to upgrade after another process wrote. Readers stay
    # DEFERRED so they never block anyone (WAL).
    mode = connection.get_execution_options().get("sqlite_begin", "DEFERRED")
    if mode != "IMMEDIATE":
        connection.exec_driver_sql(f"BEGIN {mode}")
        return
    _begin_immediate(connection)


def _begin_immediate(connection: Any) -> None:
    """``BEGIN IMMEDIATE``, waiting for the write lock in steps of about a millisecond.

    SQLite's own busy handler sleeps 1, 2, 5, 10, ... then 100 ms between attempts,
    and a waiter that wakes up after the lock was taken again sleeps longer: with a
    few writers queued (web threads, a dispatcher), one could sleep through dozens of
    commits, and webhook latency would reach seconds. Polling
    about every millisecond hands the lock on soon after its release. The wait is
    bounded by the same busy timeout; the last attempt is made through SQLAlchemy so
    a timeout raises the usual ``OperationalError``.
    """
    raw = connection.connection.dbapi_connection
    deadline = time.monotonic() + SQLITE_BUSY_TIMEOUT_MS / 1000
    raw.execute("PRAGMA busy_timeout=0")
    try:
        while time.monotonic() < deadline:
            try:
                raw.execute("BEGIN IMMEDIATE")
                return
            except sqlite3.OperationalError as exc:
                if getattr(exc, "sqlite_errorcode", sqlite3.SQLITE_BUSY) != sqlite3.SQLITE_BUSY:
                    raise
            time.sleep(random.uniform(0.0005, 0.0015))  # spread the waiters' attempts
        connection.exec_driver_sql("BEGIN IMMEDIATE")
    finally:
        raw.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")


def writer(engine: Engine) -> Engine:
    """``engine`` for a unit of work that will write (IMMEDIATE transactions on SQLite)."""
    if engine.dialect.name != "sqlite":
        return engine
    return engine.execution_options(sqlite_begin="IMMEDIATE")


@contextmanager
def session_scope(engine: Engine, *, write: bool = True) -> Iterator[Session]:
    """A session for one job or command: commits on success, rolls back on error."""
    session = Session(writer(engine) if write else engine, expire_on_commit=False)
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


def add_and_flush(session: Session, row: R) -> R:
    """Add ``row`` to ``session`` and flush it, so that it has its id; return it."""
    session.add(row)
    session.flush()
    return row


def get_owned(session: Session, model: type[R], row_id: int, what: str, **owner: int) -> R:
    """The row ``row_id`` of ``model`` if its owner columns match ``owner`` (``team_id=3``).

    NotFound ("no such <what>") when there is no such row and when it is another owner's
    alike: a user must not learn that another team's patient, or another patient's
    contact, exists.
    """
    row = session.get(model, row_id)
    if row is None or any(getattr(row, column) != value for column, value in owner.items()):
        raise NotFound(f"no such {what}")
    return row


#: What a client should wait before trying again while the database is unreachable
#: (``Retry-After`` of the 503). An operating choice, not a clinical number: about as long
#: as the processes' longest wait between attempts (:data:`RECONNECT`).
RETRY_AFTER_SECONDS = 30

#: PostgreSQL states that mean the server is going away or not taking connections yet:
#: admin_shutdown, crash_shutdown, cannot_connect_now, too_many_connections. All of
#: class 08 (connection_exception) counts too. Other states (a cancelled statement, a
#: deadlock, a lock timeout) are errors of a working database, never an outage.
_POSTGRES_UNAVAILABLE_STATES = frozenset({"57P01", "57P02", "57P03", "53300"})
#: SQLite primary result codes that mean the file cannot be used right now: busy or
#: locked past the busy timeout, an I/O error, a file that cannot be opened. "no such
#: table" (SQLITE_ERROR) and the like are bugs, not outages.
_SQLITE_UNAVAILABLE_CODES = frozenset(
    {sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED, sqlite3.SQLITE_IOERR, sqlite3.SQLITE_CANTOPEN}
)


@dataclass(frozen=True)
class Reconnect:
    """How long a long-running process waits before trying the database again.

    ``first`` seconds after the first failure, doubling each time, at most ``longest``.
    """

    first: float = 1.0
    longest: float = 30.0

    def delay(self, failures: int) -> float:
        """Seconds to wait after ``failures`` failed attempts in a row (1 or more)."""
        return min(self.first * 2 ** max(failures - 1, 0), self.longest)


#: The dispatcher's and the clock's waits while the database is unreachable: an
#: operating choice (no clinical source): back within half a minute of its return,
#: without hammering a server that is starting up.
RECONNECT = Reconnect()


def database_unavailable(error: BaseException) -> bool:
    """True when ``error`` (or the error it was raised from) means the database is unreachable.

    SQLAlchemy marks a connection lost in the middle of a statement
    (``connection_invalidated``); a refused or failed connection is an
    ``OperationalError`` whose driver error names no SQL state (psycopg) or a connection
    state, or on SQLite a file that cannot be opened or stays locked. Everything else,
    including other ``OperationalError`` s, is not an outage.
    """
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, DBAPIError) and _unreachable(current):
            return True
        current = current.__cause__ or current.__context__
    return False


def _unreachable(error: DBAPIError) -> bool:
    if error.connection_invalidated or isinstance(error, InterfaceError):
        return True
    if not isinstance(error, OperationalError):
        return False
    driver_error = error.orig
    if isinstance(driver_error, sqlite3.Error):
        code = getattr(driver_error, "sqlite_errorcode", None)
        return code is not None and code & 0xFF in _SQLITE_UNAVAILABLE_CODES
    # psycopg 3 (``sqlstate``) or psycopg 2 (``pgcode``): None for a client-side failure
    # (refused, reset, timed out), which is exactly a lost or unreachable server.
    state = getattr(driver_error, "sqlstate", getattr(driver_error, "pgcode", None))
    return state is None or state.startswith("08") or state in _POSTGRES_UNAVAILABLE_STATES


def outage_reason(error: BaseException) -> str:
    """One short line on why the database is unreachable, for logs and the CLI.

    The first line of the driver's message (a refused connection, a closed socket, a file
    that cannot be opened): these name a host and port, never statement parameters.
    """
    current: BaseException | None = error
    while current is not None and not isinstance(current, DBAPIError):
        current = current.__cause__ or current.__context__
    driver_error = current.orig if isinstance(current, DBAPIError) else error
    lines = str(driver_error).strip().splitlines()
    first = lines[0].strip() if lines else type(driver_error).__name__
    return first[:160]
