"""Backups of the whole database and their restore into an empty one.

* **SQLite**: Python's ``sqlite3`` online backup API (``Connection.backup``) copies the
  database in one step under a read transaction, so the copy is consistent while the web,
  the clock and the dispatchers keep writing (WAL: readers block no writer). The copy is
  switched to a rollback journal so that it is one self-contained file, then checked
  (``PRAGMA quick_check``).
* **PostgreSQL**: ``pg_dump --format=custom`` (compressed, restorable table by table),
  a consistent snapshot of the whole database by PostgreSQL's own means. The password
  never appears on a command line (``ps`` shows those to every user): it goes to
  ``pg_dump``/``pg_restore`` in ``PGPASSWORD``; the rest of the URL is passed as
  ``--dbname``.

Backups hold health data: the file is created with mode 0600 before a byte is written,
written under a temporary name beside the target and linked to its name only once
complete (an interrupted backup never looks like a good one), and never overwrites a
file. They must be stored encrypted (``docs/operations.md``). Nothing here prints or
logs a row.

A restore goes into an EMPTY database unless ``force`` is given (then the target's
tables are replaced), in one transaction on PostgreSQL (``--single-transaction``,
``--exit-on-error``: all or nothing), then reports the schema's Alembic revision
against the code's head.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import time
from collections.abc import Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass
from pathlib import Path

from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import inspect, text
from sqlalchemy.engine import URL, make_url

from backend.migrations import alembic_config
from reminders.data.db import make_engine

#: The first bytes of each kind of backup file.
SQLITE_MAGIC = b"SQLite format 3\x00"
PG_DUMP_MAGIC = b"PGDMP"
#: Owner read and write only: a backup is the whole health record of every patient.
BACKUP_FILE_MODE = 0o600


class BackupError(RuntimeError):
    """A backup or restore that could not be made; the message says why (no row data)."""


@dataclass(frozen=True)
class BackupResult:
    """Where a backup went, its size in bytes, the engine and how long it took."""

    path: Path
    size_bytes: int
    engine: str
    seconds: float


@dataclass(frozen=True)
class RestoreResult:
    """A restore: the schema's Alembic revision in the restored database and the code's head."""

    engine: str
    revision: str | None
    head: str | None
    seconds: float

    @property
    def at_head(self) -> bool:
        """True when the restored schema is the one this code expects."""
        return self.revision is not None and self.revision == self.head


def describe(database_url: str) -> str:
    """The database as an operator may read it: the URL without its password."""
    return make_url(database_url).render_as_string(hide_password=True)


def backup_database(database_url: str, path: Path) -> BackupResult:
    """Back up the database of ``database_url`` into a new file at ``path``.

    Raises :class:`BackupError` when ``path`` exists, its directory does not, the database
    is in memory, or the copy fails (the partial file is removed).
    """
    url = make_url(database_url)
    path = Path(path)
    if path.exists():
        raise _taken(path)
    if not path.parent.is_dir():
        raise BackupError(f"{path.parent} is not a directory")
    started = time.monotonic()
    with _private_partial_file(path) as partial:
        if url.get_backend_name() == "sqlite":
            _backup_sqlite(_sqlite_path(url), partial)
        elif url.get_backend_name() == "postgresql":
            _backup_postgresql(url, partial)
        else:
            raise BackupError(f"no backup method for {url.get_backend_name()} databases")
        _sync(partial)
        _give_name(partial, path)
    return BackupResult(
        path, path.stat().st_size, url.get_backend_name(), time.monotonic() - started
    )


def restore_database(database_url: str, path: Path, *, force: bool = False) -> RestoreResult:
    """Restore the backup at ``path`` into the database of ``database_url``.

    The target must be empty (no table) unless ``force``: then its tables are replaced.
    Stop the web, the clock and the dispatchers first. Raises :class:`BackupError`
    for a missing or foreign file, a backup of the other engine, a non-empty target or a
    failed restore.
    """
    url = make_url(database_url)
    path = Path(path)
    kind = backup_kind(path)
    engine_name = url.get_backend_name()
    if kind != engine_name:
        raise BackupError(f"{path} is a {kind} backup; the database is {engine_name}")
    started = time.monotonic()
    tables = table_names(database_url)
    if tables and not force:
        raise BackupError(
            f"the database is not empty ({len(tables)} tables): restore into an empty "
            "database, or pass --force to replace its tables"
        )
    if engine_name == "sqlite":
        _restore_sqlite(path, _sqlite_path(url))
    else:
        _restore_postgresql(url, path, clean=bool(tables))
    revision, head = schema_revision(database_url)
    return RestoreResult(engine_name, revision, head, time.monotonic() - started)


def backup_kind(path: Path) -> str:
    """``sqlite`` or ``postgresql``, from the file's first bytes; BackupError for anything else."""
    try:
        with open(path, "rb") as file:
            start = file.read(len(SQLITE_MAGIC))
    except OSError as exc:
        raise BackupError(f"cannot read {path}: {exc.strerror}") from None
    if start.startswith(SQLITE_MAGIC):
        return "sqlite"
    if start.startswith(PG_DUMP_MAGIC):
        return "postgresql"
    raise BackupError(f"{path} is neither a SQLite database nor a pg_dump custom archive")


def table_names(database_url: str) -> list[str]:
    """The tables of the database (every schema but the system's, on PostgreSQL)."""
    url = make_url(database_url)
    if url.get_backend_name() == "sqlite" and not _sqlite_path(url).exists():
        return []  # opening it would create it, with the umask's mode rather than 0600
    engine = make_engine(database_url)
    try:
        with engine.connect() as connection:
            if engine.dialect.name == "sqlite":
                return list(inspect(connection).get_table_names())
            rows = connection.execute(
                text(
                    "SELECT table_schema || '.' || table_name FROM information_schema.tables "
                    "WHERE table_schema NOT IN ('pg_catalog', 'information_schema') "
                    "AND table_schema NOT LIKE 'pg_toast%'"
                )
            )
            return [name for (name,) in rows]
    finally:
        engine.dispose()


def schema_revision(database_url: str) -> tuple[str | None, str | None]:
    """(the database's Alembic revision, the code's head revision)."""
    head = ScriptDirectory.from_config(alembic_config(database_url)).get_current_head()
    engine = make_engine(database_url)
    try:
        with engine.connect() as connection:
            revision = MigrationContext.configure(connection).get_current_revision()
    finally:
        engine.dispose()
    return revision, head


# --- SQLite -------------------------------------------------------------------------------


def _sqlite_path(url: URL) -> Path:
    if not url.database or url.database == ":memory:":
        raise BackupError("an in-memory SQLite database cannot be backed up or restored")
    return Path(url.database)


def _backup_sqlite(source: Path, target: Path) -> None:
    if not source.is_file():
        raise BackupError(f"no SQLite database at {source}")
    with closing(sqlite3.connect(source)) as src, closing(sqlite3.connect(target)) as dst:
        # One step (pages=-1): one read transaction, so the copy is a single moment.
        src.backup(dst)
        # The source is in WAL mode and so is the copy's header: one file is easier to keep.
        dst.execute("PRAGMA journal_mode=DELETE")
        (verdict,) = dst.execute("PRAGMA quick_check").fetchone()
    if verdict != "ok":
        raise BackupError(f"the copy failed SQLite's check: {verdict}")


def _restore_sqlite(backup: Path, target: Path) -> None:
    with closing(sqlite3.connect(f"{backup.resolve().as_uri()}?mode=ro", uri=True)) as src:
        (verdict,) = src.execute("PRAGMA quick_check").fetchone()
        if verdict != "ok":
            raise BackupError(f"the backup failed SQLite's check: {verdict}")
        if not target.exists():
            os.close(os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, BACKUP_FILE_MODE))
        with closing(sqlite3.connect(target)) as dst:
            src.backup(dst)
            dst.execute("PRAGMA journal_mode=WAL")  # what the app's connections use


# --- PostgreSQL ---------------------------------------------------------------------------


def libpq_arguments(url: URL) -> tuple[str, dict[str, str]]:
    """(the URL for ``--dbname`` without password or driver, the environment with PGPASSWORD)."""
    environment = dict(os.environ)
    if url.password is not None:
        environment["PGPASSWORD"] = str(url.password)
    # URL.set(password=None) keeps the password (None means "unchanged"): build a new URL.
    conninfo = URL.create(
        "postgresql",
        username=url.username,
        host=url.host,
        port=url.port,
        database=url.database,
        query=url.query,
    )
    return conninfo.render_as_string(hide_password=False), environment


def _client_tool(name: str) -> str:
    found = shutil.which(name)
    if found is None:
        raise BackupError(
            f"{name} not found: install the PostgreSQL client tools of the server's version"
        )
    return found


def _run_tool(arguments: list[str], environment: dict[str, str], **options: object) -> None:
    completed = subprocess.run(  # a fixed tool; arguments built here, no shell
        arguments, env=environment, stderr=subprocess.PIPE, check=False, **options
    )
    if completed.returncode != 0:
        # pg_dump and pg_restore name objects and servers in their errors, never row data.
        reason = completed.stderr.decode("utf-8", "replace").strip().splitlines()
        raise BackupError(f"{Path(arguments[0]).name} failed: {' / '.join(reason[-3:])}")


def _backup_postgresql(url: URL, target: Path) -> None:
    conninfo, environment = libpq_arguments(url)
    with open(target, "wb") as output:
        _run_tool(
            [_client_tool("pg_dump"), "--format=custom", "--dbname", conninfo],
            environment,
            stdout=output,
        )


def _restore_postgresql(url: URL, backup: Path, *, clean: bool) -> None:
    conninfo, environment = libpq_arguments(url)
    arguments = [
        _client_tool("pg_restore"),
        "--no-owner",  # the restoring user owns what it creates
        "--no-privileges",  # grants name roles the new server may not have
        "--exit-on-error",
        "--single-transaction",  # all or nothing
        "--dbname",
        conninfo,
    ]
    if clean:
        arguments += ["--clean", "--if-exists"]
    _run_tool([*arguments, str(backup)], environment, stdout=subprocess.DEVNULL)


# --- files --------------------------------------------------------------------------------


def _sync(path: Path) -> None:
    """Flush ``path`` to the disk before it gets its name (a crash leaves no torn backup)."""
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def _taken(path: Path) -> BackupError:
    return BackupError(f"{path} exists already: a backup never overwrites a file")


def _give_name(partial: Path, path: Path) -> None:
    """Name the finished backup ``path``, never replacing a file that took the name meanwhile.

    A hard link fails if the name exists; on a file system without hard links (some
    network and USB drives) the name is checked, then the file renamed.
    """
    try:
        os.link(partial, path)
    except FileExistsError:
        raise _taken(path) from None
    except OSError:
        if path.exists():
            raise _taken(path) from None
        os.rename(partial, path)


@contextmanager
def _private_partial_file(path: Path) -> Iterator[Path]:
    """A new empty file with mode 0600 beside ``path``; removed on exit (linked on success)."""
    partial = path.with_name(f".{path.name}.{os.getpid()}.partial")
    try:
        os.close(os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, BACKUP_FILE_MODE))
    except OSError as exc:
        raise BackupError(f"cannot write in {path.parent}: {exc.strerror}") from None
    try:
        yield partial
    finally:
        partial.unlink(missing_ok=True)
        # SQLite's rollback journal of the copy, if a failure left one.
        partial.with_name(partial.name + "-journal").unlink(missing_ok=True)
