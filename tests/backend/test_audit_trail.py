"""Audit rows are append-only: the ORM and the database refuse to change or delete them.

On SQLite and PostgreSQL, on tables made by ``create_all`` (as the tests and a new
installation make them) and by the migrations; inserting still works, PostgreSQL's
``TRUNCATE`` (how the tests empty it) too. Nothing in the app offers to edit or delete a row.
"""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from alembic import command
from flask import Flask
from sqlalchemy import delete, text, update
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DBAPIError
from sqlmodel import Session, select

from backend.db import get_engine
from backend.migrations import alembic_config
from backend.services.audit import channel_of, record_audit, set_channel
from reminders.data.db import make_engine
from reminders.data.models import AUDIT_TRIGGER_MESSAGE, AuditEvent, AuditRowImmutable, Patient
from reminders.data.statuses import AuditAction, AuditChannel
from tests.conftest import POSTGRES_URL, empty_postgres_schema, truncate_all

LONG_NAME = "Marie-Françoise Van den Bossche-Lefèvre"
AT = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)


@pytest.fixture
def row(session: Session, make_user, make_patient) -> AuditEvent:
    """One committed audit row: a nurse viewed a patient through the API."""
    user, _ = make_user(team="Hématologie — Saint-Luc")
    patient = make_patient(user.team_id, display_name=LONG_NAME)
    event = record_audit(
        session,
        user,
        AuditAction.VIEW_PATIENT,
        patient.id,
        AT,
        target=f"patient:{patient.id}",
        channel=AuditChannel.API,
    )
    session.commit()
    return event


def stored(session: Session, event_id: int) -> tuple[str, str | None, str]:
    """The row as committed."""
    session.rollback()
    session.expire_all()
    found = session.get(AuditEvent, event_id)
    return (found.action, found.target, found.channel)


def test_the_orm_refuses_to_change_or_delete_an_audit_row(session: Session, row) -> None:
    row_id, original = row.id, (row.action, row.target, row.channel)
    row.action = AuditAction.LOGIN.value
    with pytest.raises(AuditRowImmutable, match="UPDATE refused"):
        session.commit()
    assert stored(session, row_id) == original
    session.delete(session.get(AuditEvent, row_id))
    with pytest.raises(AuditRowImmutable, match="DELETE refused"):
        session.commit()
    assert stored(session, row_id) == original
    # Bulk statements through the session are refused before they reach the database.
    with pytest.raises(AuditRowImmutable):
        session.exec(update(AuditEvent).values(target="x"))
    session.rollback()
    with pytest.raises(AuditRowImmutable):
        session.exec(delete(AuditEvent).where(AuditEvent.id == row_id))
    assert stored(session, row_id) == original


def test_the_database_refuses_update_and_delete_from_any_client(app: Flask, row) -> None:
    engine = get_engine(app)
    for statement in (
        "UPDATE auditevent SET action = 'login'",
        "UPDATE auditevent SET patient_id = NULL WHERE id = :id",
        "DELETE FROM auditevent WHERE id = :id",
        "DELETE FROM auditevent",
    ):
        with pytest.raises(DBAPIError, match=AUDIT_TRIGGER_MESSAGE), engine.begin() as conn:
            conn.execute(text(statement), {"id": row.id})
    with engine.connect() as conn:
        assert conn.execute(
            text("SELECT COUNT(*), MIN(action) FROM auditevent WHERE action <> 'create_api_token'")
        ).one() == (
            1,
            "view_patient",
        )


def test_inserting_still_works_through_the_orm_and_raw_sql(
    app: Flask, session: Session, row
) -> None:
    record_audit(session, None, AuditAction.LIST_PATIENTS, None, AT, target="patients:list")
    session.commit()
    with get_engine(app).begin() as conn:
        conn.execute(
            text(
                "INSERT INTO auditevent (at, action, target, channel) "
                "VALUES (:at, 'list_alerts', 'alerts:list', 'cli')"
            ),
            {"at": _stamp(app.config["DATABASE_URL"], AT)},
        )
    session.expire_all()
    rows = session.exec(
        select(AuditEvent.action, AuditEvent.channel)
        .where(AuditEvent.action != AuditAction.CREATE_API_TOKEN)  # the fixture's token
        .order_by(AuditEvent.id)
    )
    assert rows.all() == [
        ("view_patient", "api"),
        ("list_patients", "cli"),  # outside a request: the CLI's channel
        ("list_alerts", "cli"),
    ]


@pytest.mark.postgresql_only
def test_truncate_still_empties_the_table_on_postgresql(app: Flask, session: Session, row) -> None:
    # Row triggers do not see TRUNCATE: the test fixtures empty the audit table with it.
    session.commit()
    truncate_all(get_engine(app))
    assert session.exec(select(AuditEvent)).all() == []
    assert session.exec(select(Patient)).all() == []


def test_record_audit_keeps_to_the_one_vocabulary(session: Session) -> None:
    with pytest.raises(ValueError, match="'view_patients'"):
        record_audit(session, None, "view_patients", None, AT)
    assert AuditAction("view_patient") is AuditAction.VIEW_PATIENT
    assert channel_of(session) is AuditChannel.CLI
    set_channel(session, AuditChannel.DASHBOARD)
    assert record_audit(session, None, "login", None, AT).channel == "dashboard"
    session.rollback()


def test_nothing_in_the_app_edits_or_deletes_audit_rows(app: Flask) -> None:
    # The only route that names the audit trail reads it.
    audit_rules = [r for r in app.url_map.iter_rules() if "audit" in f"{r.rule} {r.endpoint}"]
    assert [(r.rule, sorted(r.methods - {"HEAD", "OPTIONS"})) for r in audit_rules] == [
        ("/audit", ["GET"])
    ]
    # No command either.
    names: list[str] = []
    stack = [("", app.cli)]
    while stack:
        prefix, group = stack.pop()
        for name, command_ in group.commands.items():
            names.append(f"{prefix}{name}")
            if hasattr(command_, "commands"):
                stack.append((f"{prefix}{name} ", command_))
    assert names and not [n for n in names if "audit" in n]


# --- the migrations ---------------------------------------------------------------------------


def _engine(url: str, connect_args: dict | None) -> Engine:
    return make_engine(url, **({"connect_args": connect_args} if connect_args else {}))


def _migrate(
    url: str, connect_args: dict | None, *, up: str | None = None, down: str | None = None
) -> None:
    engine = _engine(url, connect_args)
    config = alembic_config(url)
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        if up:
            command.upgrade(config, up)
        if down:
            command.downgrade(config, down)
    engine.dispose()


def _stamp(url: str, at: datetime) -> object:
    """``at`` as a raw statement parameter: SQLite stores naive UTC text."""
    return at.replace(tzinfo=None).isoformat(" ") if url.startswith("sqlite") else at


def _check_migrated_database(url: str, connect_args: dict | None = None) -> None:
    """At 0004 add rows from the pages and the API; upgrade; check channels and triggers."""
    _migrate(url, connect_args, up="0004")
    engine = _engine(url, connect_args)
    rows = [
        # A dose warning confirmed on the dose form: the page's own row follows it.
        (1, "confirm_dose_warning", "plan:3:dose:1:bsa_above_limit", 0),
        (2, "record_dose", "plan:3", 0),
        # The same through the API, which wrote no row of its own before 0008.
        (3, "confirm_dose_warning", "plan:3:dose:2:bsa_above_limit", 5),
        (4, "view_patient", "patient:1", 9),
        (5, "login", None, 9),
    ]
    with engine.begin() as conn:
        conn.execute(
            text("INSERT INTO team (id, name, created_at) VALUES (1, 'T', :at)"),
            {"at": _stamp(url, AT)},
        )
        for row_id, action, target, minutes in rows:
            conn.execute(
                text(
                    "INSERT INTO auditevent (id, at, team_id, action, target) "
                    "VALUES (:id, :at, 1, :action, :target)"
                ),
                {
                    "id": row_id,
                    "at": _stamp(url, AT.replace(minute=minutes)),
                    "action": action,
                    "target": target,
                },
            )
    engine.dispose()
    _migrate(url, connect_args, up="head")
    engine = _engine(url, connect_args)
    with engine.connect() as conn:
        channels = conn.execute(text("SELECT id, channel FROM auditevent ORDER BY id")).all()
        assert channels == [
            (1, "dashboard"),
            (2, "dashboard"),
            (3, "api"),
            (4, "dashboard"),
            (5, "dashboard"),
        ]
    for statement in ("UPDATE auditevent SET channel = 'cli'", "DELETE FROM auditevent"):
        with pytest.raises(DBAPIError, match=AUDIT_TRIGGER_MESSAGE), engine.begin() as conn:
            conn.execute(text(statement))
    # No default: the app must say the channel.
    with engine.begin() as conn, pytest.raises(DBAPIError), conn.begin_nested():
        conn.execute(
            text("INSERT INTO auditevent (at, action) VALUES (:at, 'login')"),
            {"at": _stamp(url, AT)},
        )
    engine.dispose()
    # Downgrading removes the triggers with the column.
    _migrate(url, connect_args, down="0004")
    engine = _engine(url, connect_args)
    with engine.begin() as conn:
        conn.execute(text("DELETE FROM auditevent"))
    engine.dispose()


def test_the_migration_marks_channels_and_installs_the_triggers_on_sqlite(tmp_path) -> None:
    _check_migrated_database(f"sqlite:///{tmp_path / 'audit.sqlite3'}")


def test_the_migration_marks_channels_and_installs_the_triggers_on_postgresql() -> None:
    with empty_postgres_schema("audit") as schema:
        _check_migrated_database(POSTGRES_URL, {"options": f"-csearch_path={schema}"})
