"""Migration 0012_calendar_feeds on SQLite and PostgreSQL: a new table, and back again.

Existing rows (a team, a patient with an accented name) are untouched both ways; the
table's digest column is unique, so two links can never share a token.
"""

from __future__ import annotations

import pytest
from sqlalchemy import inspect, text
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError

from reminders.data.db import make_engine
from tests.backend.test_report_rule_ids_migration import migrate

AT = "2026-03-17 17:05:00"
DIGEST = "a" * 64


def insert_team_and_patient(engine: Engine, display_name: str) -> None:
    """Team 1 and its patient 1 (``display_name``), as the schema stands from 0011 on."""
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO team (id, name, timezone, created_at) "
                "VALUES (1, 'Hématologie', 'Europe/Brussels', :at)"
            ),
            {"at": AT},
        )
        conn.execute(
            text(
                "INSERT INTO patient (id, team_id, display_name, phone, timezone, language, "
                "region, sms_consent, opted_out, discreet, quiet_start, quiet_end, dose_time, "
                "checkin_time, pill_times, created_at, updated_at) VALUES (1, 1, "
                ":name, '+32470123456', 'Europe/Brussels', 'fr', 'BE', true, false, false, "
                "'22:00:00', '07:00:00', '09:00:00', '18:00:00', '[]', :at, :at)"
            ),
            {"at": AT, "name": display_name},
        )


def test_the_feed_table_comes_and_goes_and_keeps_the_patients(
    empty_database: tuple[str, dict],
) -> None:
    url, connect_args = empty_database
    migrate(url, connect_args, "0011_patient_region")
    engine = make_engine(url, **({"connect_args": connect_args} if connect_args else {}))
    try:
        insert_team_and_patient(engine, "Marie-Françoise Vanden Bossche-Lefèvre")
        engine.dispose()
        assert "calendarfeed" not in inspect(engine).get_table_names()

        migrate(url, connect_args, "head")
        engine.dispose()
        assert "calendarfeed" in inspect(engine).get_table_names()
        insert = text(
            "INSERT INTO calendarfeed (patient_id, token_hash, label, created_at) "
            "VALUES (1, :digest, 'Téléphone de sa fille', :at)"
        )
        with engine.begin() as conn:
            conn.execute(insert, {"digest": DIGEST, "at": AT})
        with pytest.raises(IntegrityError), engine.begin() as conn:
            conn.execute(insert, {"digest": DIGEST, "at": AT})
        engine.dispose()

        migrate(url, connect_args, "0011_patient_region", down=True)
        engine.dispose()
        assert "calendarfeed" not in inspect(engine).get_table_names()
        with engine.connect() as conn:
            name = conn.execute(text("SELECT display_name FROM patient")).scalar_one()
        assert name == "Marie-Françoise Vanden Bossche-Lefèvre"
        engine.dispose()
        migrate(url, connect_args, "head")  # and up again
    finally:
        engine.dispose()
