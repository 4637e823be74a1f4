"""Migration 0015_family_contacts on SQLite and PostgreSQL: a new table, and back again.

Existing rows (a team, a patient with an accented name) are untouched both ways; one
patient cannot list the same number twice.
"""

from __future__ import annotations

import pytest
from sqlalchemy import inspect, text
from sqlalchemy.exc import IntegrityError

from reminders.data.db import make_engine
from tests.backend.test_calendar_feeds_migration import AT, insert_team_and_patient
from tests.backend.test_report_rule_ids_migration import migrate

NAME = "Marie-Thérèse Vandenbroucke-Delacroix"


def test_the_family_contact_table_comes_and_goes_and_keeps_the_patients(
    empty_database: tuple[str, dict],
) -> None:
    url, connect_args = empty_database
    migrate(url, connect_args, "0014_erasure")
    engine = make_engine(url, **({"connect_args": connect_args} if connect_args else {}))
    try:
        insert_team_and_patient(engine, NAME)
        engine.dispose()
        assert "familycontact" not in inspect(engine).get_table_names()

        migrate(url, connect_args, "head")
        engine.dispose()
        assert "familycontact" in inspect(engine).get_table_names()
        insert = text(
            "INSERT INTO familycontact (patient_id, name, phone, language, relationship, "
            "copies_urgent, copies_nudges, consent_method, consent_recorded_at, created_at, "
            "updated_at) VALUES (1, 'Zoë Vandenbroucke', '+32471987654', 'nl', 'dochter', "
            "true, true, 'verbal', :at, :at, :at)"
        )
        with engine.begin() as conn:
            conn.execute(insert, {"at": AT})
        with pytest.raises(IntegrityError), engine.begin() as conn:
            conn.execute(insert, {"at": AT})
        engine.dispose()

        migrate(url, connect_args, "0014_erasure", down=True)
        engine.dispose()
        assert "familycontact" not in inspect(engine).get_table_names()
        with engine.connect() as conn:
            name = conn.execute(text("SELECT display_name FROM patient")).scalar_one()
        assert name == NAME
        engine.dispose()
        migrate(url, connect_args, "head")  # and up again
    finally:
        engine.dispose()
