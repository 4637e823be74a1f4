"""Migration 0014_erasure on SQLite and PostgreSQL: ``patient.erased_at``, and back again.

The column is added in place (the table is not rebuilt): existing patients keep their
rows, their accented names and the one-number index; downgrading drops the column only.
"""

from __future__ import annotations

import pytest
from sqlalchemy import inspect, text
from sqlalchemy.exc import IntegrityError

from reminders.data.db import make_engine
from tests.backend.test_report_rule_ids_migration import migrate

AT = "2026-03-17 17:05:00"
NAME = "Marie-Thérèse Vandenbroucke-Delacroix"
INSERT_PATIENT = text(
    "INSERT INTO patient (id, team_id, display_name, phone, timezone, language, "
    "region, sms_consent, opted_out, discreet, quiet_start, quiet_end, dose_time, "
    "checkin_time, pill_times, created_at, updated_at) VALUES (:id, 1, :name, '+32470123456', "
    "'Europe/Brussels', 'fr', 'BE', true, false, false, '22:00:00', '07:00:00', "
    "'09:00:00', '18:00:00', '[]', :at, :at)"
)


def columns(engine) -> set[str]:
    return {column["name"] for column in inspect(engine).get_columns("patient")}


def test_erased_at_comes_and_goes_and_keeps_the_patients(
    empty_database: tuple[str, dict],
) -> None:
    url, connect_args = empty_database
    migrate(url, connect_args, "0013_clock_lease")
    engine = make_engine(url, **({"connect_args": connect_args} if connect_args else {}))
    try:
        with engine.begin() as conn:
            conn.execute(
                text(
                    "INSERT INTO team (id, name, timezone, created_at) "
                    "VALUES (1, 'Hématologie', 'Europe/Brussels', :at)"
                ),
                {"at": AT},
            )
            conn.execute(INSERT_PATIENT, {"id": 1, "name": NAME, "at": AT})
        engine.dispose()
        assert "erased_at" not in columns(engine)

        migrate(url, connect_args, "head")
        engine.dispose()
        assert "erased_at" in columns(engine)
        with engine.begin() as conn:
            row = conn.execute(text("SELECT display_name, erased_at FROM patient")).one()
            conn.execute(text("UPDATE patient SET erased_at = :at WHERE id = 1"), {"at": AT})
        assert tuple(row) == (NAME, None)
        # The one-number index is still there: a second active patient with the number fails.
        with pytest.raises(IntegrityError), engine.begin() as conn:
            conn.execute(INSERT_PATIENT, {"id": 2, "name": "Anna Peeters", "at": AT})
        engine.dispose()

        migrate(url, connect_args, "0013_clock_lease", down=True)
        engine.dispose()
        assert "erased_at" not in columns(engine)
        with engine.connect() as conn:
            assert conn.execute(text("SELECT display_name FROM patient")).scalar_one() == NAME
        engine.dispose()
        migrate(url, connect_args, "head")  # and up again
    finally:
        engine.dispose()
