"""Migration 0013_clock_lease on SQLite and PostgreSQL: a new table, and back again.

The lease's name is unique, so two clocks can never hold two rows of one lease. The
migration adds a table only (no existing row is read or changed).
"""

from __future__ import annotations

import pytest
from sqlalchemy import inspect, text
from sqlalchemy.exc import IntegrityError

from reminders.data.db import make_engine
from tests.backend.test_report_rule_ids_migration import migrate

AT = "2026-03-17 17:05:00"
INSERT = text(
    "INSERT INTO clocklease (name, holder, acquired_at, expires_at) "
    "VALUES ('clock', :holder, :at, :at)"
)


def test_the_lease_table_comes_and_goes(empty_database: tuple[str, dict]) -> None:
    url, connect_args = empty_database
    migrate(url, connect_args, "0012_calendar_feeds")
    engine = make_engine(url, **({"connect_args": connect_args} if connect_args else {}))
    try:
        assert "clocklease" not in inspect(engine).get_table_names()
        migrate(url, connect_args, "head")
        engine.dispose()
        assert "clocklease" in inspect(engine).get_table_names()
        with engine.begin() as conn:
            conn.execute(INSERT, {"holder": "clock-a.hopital.example:4242:0a1b", "at": AT})
        with pytest.raises(IntegrityError), engine.begin() as conn:
            conn.execute(INSERT, {"holder": "clock-b.hopital.example:4343:2c3d", "at": AT})
        engine.dispose()

        migrate(url, connect_args, "0012_calendar_feeds", down=True)
        engine.dispose()
        assert "clocklease" not in inspect(engine).get_table_names()
        migrate(url, connect_args, "head")  # and up again
        engine.dispose()
        assert "clocklease" in inspect(engine).get_table_names()
    finally:
        engine.dispose()
