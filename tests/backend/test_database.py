"""The data layer: UTC datetimes on both engines, migrations that match the models, SQLite WAL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlmodel import Session, SQLModel

from backend.db import get_engine
from backend.migrations import alembic_config
from reminders.data.db import make_engine
from reminders.data.models import Team
from tests.conftest import POSTGRES_URL, empty_postgres_schema


def test_datetimes_come_back_utc_aware(app) -> None:
    brussels = timezone(timedelta(hours=1))
    with Session(get_engine(app)) as session:
        team = Team(name="T", created_at=datetime(2026, 3, 2, 9, 30, tzinfo=brussels))
        session.add(team)
        session.commit()
        team_id = team.id
    with Session(get_engine(app)) as session:
        stored = session.get(Team, team_id).created_at
    assert stored.tzinfo is not None and stored.utcoffset() == timedelta(0)
    assert stored == datetime(2026, 3, 2, 8, 30, tzinfo=UTC)


def test_naive_datetimes_are_refused(app) -> None:
    with Session(get_engine(app)) as session:
        session.add(Team(name="T", created_at=datetime(2026, 3, 2, 9, 30)))
        with pytest.raises(Exception, match="naive datetime"):
            session.commit()


def test_sqlite_runs_in_wal_mode_with_a_busy_timeout(tmp_path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'x.sqlite3'}")
    with engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() >= 5000
    engine.dispose()


def _migrated_differences(url: str, connect_args: dict | None = None) -> list:
    engine = make_engine(url, **({"connect_args": connect_args} if connect_args else {}))
    config = alembic_config(url)
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, "head")
    with engine.connect() as connection:
        diff = compare_metadata(
            MigrationContext.configure(connection, opts={"compare_type": True}), SQLModel.metadata
        )
    engine.dispose()
    return diff


def test_migrations_match_the_models_on_sqlite(tmp_path) -> None:
    assert _migrated_differences(f"sqlite:///{tmp_path / 'm.sqlite3'}") == []


def test_migrations_match_the_models_on_postgresql() -> None:
    with empty_postgres_schema("migrations") as schema:
        diff = _migrated_differences(POSTGRES_URL, {"options": f"-csearch_path={schema}"})
    assert diff == []
