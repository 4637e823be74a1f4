"""Backup then restore into an empty database gives the same rows, on SQLite and PostgreSQL.

The source database is built by the migrations (so it has its Alembic revision) and
filled through the real services and the real engine: a team with an admin on call, a
patient on alemtuzumab with prophylaxis, a planning pass and a dispatch, a pill
confirmation, a check-in answered with a fever (report, urgent alert, page, timeline),
an SMS from an unknown number, a hold, a dose, a lab, an expected level, a calendar
link, a session, a failed sign-in and audit rows: every table has rows. Each
PostgreSQL database here is a database of its own on the local server (``pg_dump``
takes a whole database), created and dropped by the test.
"""

from __future__ import annotations

import os
import stat
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import MetaData, create_engine, select, text
from sqlalchemy.engine import make_url
from sqlmodel import Session

from backend import create_app
from backend.cli import upgrade_database
from backend.db import get_engine
from backend.schemas import DoseRecordIn, ExpectedLevelIn, HoldIn, LabIn
from backend.schemas_family import FamilyContactIn
from backend.services.audit import record_audit
from backend.services.backup import (
    BackupError,
    backup_database,
    libpq_arguments,
    restore_database,
)
from backend.services.expected_levels import set_level
from backend.services.family import add_contact
from backend.services.labs import record_lab
from backend.services.oncall import add_shift
from backend.services.plans import hold_plan, record_dose
from backend.services.sessions import start_user_session
from backend.services.signin import attempt_sign_in
from reminders.conversations import handle_inbound_sms
from reminders.data.calendar_feeds import create_feed
from reminders.data.db import session_scope
from reminders.data.leadership import take_lease
from reminders.data.models import AuditEvent, Team, User
from reminders.data.statuses import AuditAction
from reminders.gateways import ConsoleGateway
from reminders.jobs import run_due
from tests.conftest import POSTGRES_URL, SESSION_SCHEMA, Clock, _postgres_engine

NAME = "Marie-Thérèse Vandenbroucke-Delacroix"
PHONE = "+32470123456"
STRANGER = "+32471987654"


@contextmanager
def fresh_database(db_engine_name: str, directory: Path, label: str) -> Iterator[str]:
    """The URL of a new, empty database (no table), removed on exit."""
    if db_engine_name == "sqlite":
        yield f"sqlite:///{directory / f'{label}.sqlite3'}"
        return
    _postgres_engine()  # skips without a server (fails in CI)
    name = f"bk_{label}_{SESSION_SCHEMA}_{uuid.uuid4().hex[:6]}".lower()
    admin = create_engine(POSTGRES_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield make_url(POSTGRES_URL).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture
def database_url(db_engine_name: str, tmp_path: Path) -> Iterator[str]:
    """The app's database: a fresh one, migrated to head (so it has its revision)."""
    with fresh_database(db_engine_name, tmp_path, "source") as url:
        migrated = create_app({"TESTING": True, "DATABASE_URL": url, "SECRET_KEY": "test-secret"})
        upgrade_database(migrated)
        get_engine(migrated).dispose()
        yield url


@pytest.fixture
def empty_target(db_engine_name: str, tmp_path: Path) -> Iterator[str]:
    """Another fresh database with no table, to restore into."""
    with fresh_database(db_engine_name, tmp_path, "target") as url:
        yield url


def fill_every_table(
    app: Flask,
    session: Session,
    clock: Clock,
    make_user: Callable[..., tuple[User, str]],
    treated: Callable[..., Any],
) -> None:
    """Rows in every table, through the services and the engine (see the module docstring)."""
    engine = get_engine(app)
    console = ConsoleGateway()
    clock.now = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
    admin, _ = make_user(
        team="Hématologie — Saint-Luc",
        role="admin",
        name="Dr Jean-Sébastien Van den Bossche",
        phone="+32 475 00 00 01",
        password="correct horse battery",
    )
    team = session.get(Team, admin.team_id)
    add_shift(
        session,
        team,
        user_id=admin.id,
        role="primary",
        starts_at=clock.now,
        ends_at=clock.now + timedelta(days=7),
        actor=admin,
        now=clock.now,
    )
    session.commit()
    patient, plan = treated(admin.team_id, display_name=NAME, phone=PHONE, language="fr")

    def reply(body: str, at: datetime, phone: str = PHONE) -> None:
        with session_scope(engine) as job_session:
            handle_inbound_sms(
                job_session,
                provider_sid=f"SM{uuid.uuid4().hex}",
                from_phone=phone,
                body=body,
                now=at,
            )

    run_due(engine, console, datetime(2026, 3, 3, 7, 0, tzinfo=UTC))  # the 08:00 pills
    reply("Pris", datetime(2026, 3, 3, 7, 20, tzinfo=UTC))
    run_due(engine, console, datetime(2026, 3, 3, 17, 0, tzinfo=UTC))  # the 18:00 check-in
    reply("38,9 et des frissons", datetime(2026, 3, 3, 17, 5, tzinfo=UTC))
    reply("Qui est-ce ?", datetime(2026, 3, 3, 17, 30, tzinfo=UTC), phone=STRANGER)
    run_due(engine, console, datetime(2026, 3, 3, 17, 31, tzinfo=UTC))  # the page goes out

    now = clock.now = datetime(2026, 3, 4, 9, 0, tzinfo=UTC)
    session.expire_all()
    record_dose(session, plan, patient, 1, DoseRecordIn(status="given"), admin.id, now)
    record_lab(
        session,
        patient,
        LabIn(kind="cmv_pcr", value=850, taken_at=now - timedelta(hours=2)),
        admin.id,
        now,
    )
    set_level(
        session,
        patient,
        ExpectedLevelIn(
            up_to_c=37.8, expires_at=now + timedelta(days=2), reason="Réaction à la perfusion"
        ),
        admin.id,
        now,
    )
    create_feed(session, patient, "Téléphone de sa fille", admin.id, now)
    hold_plan(session, plan, patient, HoldIn(reason="Neutropénie fébrile"), admin.id, now)
    record_audit(session, admin, AuditAction.VIEW_PATIENT, patient.id, now, target="patient:1")
    start_user_session(session, admin, now, "Mozilla/5.0 (Windows NT 10.0) Firefox/128.0")
    take_lease(session, "clock-host:4242:3f2a", now, timedelta(seconds=30))
    add_contact(
        session,
        patient,
        FamilyContactIn(
            name="Sophie Vandenbroucke-Lemaire",
            phone="0478 99 88 77",
            language="nl",
            relationship="dochter",
            consent_method="written",
        ),
        admin.id,
        now,
        region="BE",
    )
    session.commit()
    attempt_sign_in(session, admin.email, "wrong password", "192.0.2.10", now, secret="test-secret")
    session.commit()


def every_row(url: str) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every table of the database, each table's rows sorted."""
    engine = create_engine(url)
    try:
        metadata = MetaData()
        metadata.reflect(engine)
        with engine.connect() as conn:
            return {
                name: sorted((tuple(row) for row in conn.execute(select(table))), key=repr)
                for name, table in metadata.tables.items()
            }
    finally:
        engine.dispose()


def test_a_backup_restored_into_an_empty_database_has_every_row(
    app: Flask,
    session: Session,
    clock: Clock,
    make_user: Callable[..., tuple[User, str]],
    treated: Callable[..., Any],
    empty_target: str,
    database_url: str,
    tmp_path: Path,
) -> None:
    fill_every_table(app, session, clock, make_user, treated)
    session.close()
    before = every_row(database_url)
    empty = sorted(name for name, rows in before.items() if not rows)
    assert empty == [] and len(before) >= 24  # every table, alembic_version included

    result = backup_database(database_url, tmp_path / "companion.backup")
    assert stat.S_IMODE(os.stat(result.path).st_mode) == 0o600
    assert result.size_bytes == result.path.stat().st_size > 0

    restored = restore_database(empty_target, result.path)
    print(  # the figures of the report (pytest -s)
        f"{result.engine}: {result.size_bytes} bytes, backup {result.seconds:.2f} s, "
        f"restore {restored.seconds:.2f} s"
    )
    assert restored.at_head and restored.revision == restored.head
    after = every_row(empty_target)
    assert after.keys() == before.keys()
    for name in before:
        assert after[name] == before[name], name
    assert any(NAME in row for row in after["patient"])


def test_a_restore_refuses_a_database_with_tables_unless_forced(
    app: Flask, session: Session, make_user, empty_target: str, database_url: str, tmp_path: Path
) -> None:
    make_user(team="Hématologie — Saint-Luc", name="Dr Jean-Sébastien Van den Bossche")
    backup = backup_database(database_url, tmp_path / "first.backup").path
    restore_database(empty_target, backup)
    make_user(team="Hématologie — Saint-Luc", name="Dr Anne-Françoise Degrelle")
    second = backup_database(database_url, tmp_path / "second.backup").path

    with pytest.raises(BackupError, match="not empty"):
        restore_database(empty_target, second)
    assert len(every_row(empty_target)["user"]) == 1  # untouched

    restore_database(empty_target, second, force=True)
    assert every_row(empty_target)["user"] == every_row(database_url)["user"]


def test_a_backup_never_overwrites_a_file_and_a_restore_reads_only_backups(
    app: Flask, database_url: str, empty_target: str, tmp_path: Path
) -> None:
    taken = tmp_path / "taken.backup"
    taken.write_bytes(b"an operator's other file")
    with pytest.raises(BackupError, match="exists already"):
        backup_database(database_url, taken)
    assert taken.read_bytes() == b"an operator's other file"
    with pytest.raises(BackupError, match="is not a directory"):
        backup_database(database_url, tmp_path / "no such folder" / "nightly.backup")
    with pytest.raises(BackupError, match="neither a SQLite database nor a pg_dump"):
        restore_database(empty_target, taken)
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".partial")] == []


def test_the_postgresql_password_goes_in_the_environment_not_the_command_line() -> None:
    url = make_url("postgresql+psycopg://companion:s3cr%40t@db.hospital.example:5433/companion")
    conninfo, environment = libpq_arguments(url)
    assert conninfo == "postgresql://companion@db.hospital.example:5433/companion"
    assert environment["PGPASSWORD"] == "s3cr@t"
    assert "s3cr" not in conninfo


def test_the_cli_backs_up_and_restores_and_prints_no_patient_data(
    app: Flask,
    session: Session,
    clock: Clock,
    make_user,
    treated,
    empty_target: str,
    database_url: str,
    tmp_path: Path,
) -> None:
    user, _ = make_user(team="Hématologie — Saint-Luc")
    treated(user.team_id, display_name=NAME, phone=PHONE)
    path = tmp_path / "nightly.backup"
    out = app.test_cli_runner().invoke(args=["backup", str(path)])
    assert out.exit_code == 0, out.output
    assert str(path) in out.output and "keep it encrypted" in out.output
    assert NAME not in out.output and PHONE not in out.output
    with Session(get_engine(app)) as check:
        actions = check.execute(select(AuditEvent.action).order_by(AuditEvent.id)).scalars()
        assert list(actions)[-1] == AuditAction.BACKUP_DATABASE

    target = create_app(
        {"TESTING": True, "DATABASE_URL": empty_target, "SECRET_KEY": "test-secret"}
    )
    restored = target.test_cli_runner().invoke(args=["restore", str(path)])
    assert restored.exit_code == 0, restored.output
    assert "schema revision" in restored.output and NAME not in restored.output
    again = target.test_cli_runner().invoke(args=["restore", str(path)])
    assert again.exit_code == 1 and "not empty" in again.output
    get_engine(target).dispose()


def test_a_backup_taken_while_the_app_writes_is_one_consistent_moment(
    app: Flask, session: Session, make_user, database_url: str, empty_target: str, tmp_path: Path
) -> None:
    """Rows committed in pairs by another connection during the copy: the copy holds pairs."""
    import threading

    user, _ = make_user(team="Hématologie — Saint-Luc")
    stop = threading.Event()

    def write_pairs() -> None:
        n = 0
        while not stop.is_set():
            n += 1
            with session_scope(get_engine(app)) as writer_session:
                for half in ("a", "b"):
                    record_audit(
                        writer_session,
                        user,
                        AuditAction.VIEW_PATIENT,
                        None,
                        datetime(2026, 3, 2, tzinfo=UTC),
                        target=f"pair:{n}:{half}",
                    )

    writer = threading.Thread(target=write_pairs)
    writer.start()
    try:
        paths = [backup_database(database_url, tmp_path / f"{i}.backup").path for i in range(3)]
    finally:
        stop.set()
        writer.join()
    restore_database(empty_target, paths[-1])
    engine = create_engine(empty_target)
    with engine.connect() as conn:
        pairs = list(
            conn.execute(
                select(AuditEvent.target).where(AuditEvent.target.like("pair:%"))
            ).scalars()
        )
    engine.dispose()
    assert pairs  # the writer committed during the copies
    assert len(pairs) % 2 == 0
    assert {t.rsplit(":", 1)[0] for t in pairs if t.endswith(":a")} == {
        t.rsplit(":", 1)[0] for t in pairs if t.endswith(":b")
    }
