"""Migration 0009_report_rule_ids on SQLite and PostgreSQL: reports keep their rule ids.

Reports stored before the migration get an empty list ("not recorded"), the column has
no default left afterwards (every writer names the rules), and a downgrade drops only
the column.
"""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from alembic import command
from sqlalchemy import inspect, text
from sqlalchemy.exc import DBAPIError
from sqlmodel import Session

from backend.migrations import alembic_config
from backend.schemas import PatientIn
from backend.services.patients import create_patient
from backend.services.teams import create_user
from reminders.data.db import make_engine
from reminders.data.models import SymptomReport

AT = datetime(2026, 3, 17, 17, 5, tzinfo=UTC)


def migrate(url: str, connect_args: dict, revision: str, *, down: bool = False) -> None:
    """Upgrade (or with ``down``, downgrade) the database at ``url`` to ``revision``."""
    engine = make_engine(url, **({"connect_args": connect_args} if connect_args else {}))
    config = alembic_config(url)
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        (command.downgrade if down else command.upgrade)(config, revision)
    engine.dispose()


def test_reports_from_before_get_no_rule_ids_and_a_downgrade_keeps_them(
    empty_database: tuple[str, dict],
) -> None:
    url, connect_args = empty_database
    migrate(url, connect_args, "head")
    engine = make_engine(url, **({"connect_args": connect_args} if connect_args else {}))
    try:
        with Session(engine) as session:
            user = create_user(
                session,
                email="marie-francoise@hopital.example",
                team_name="Hématologie — Saint-Luc",
                role="nurse",
                now=AT,
                care_phone="+32 2 555 01 23",
            )
            patient = create_patient(
                session,
                user.team_id,
                PatientIn(
                    display_name="Marie-Françoise Van den Bossche-Lefèvre",
                    phone="+32 470 12 34 56",
                    timezone="Europe/Brussels",
                    sms_consent=True,
                ),
                AT,
                region="BE",
            )
            report = SymptomReport(
                patient_id=patient.id,
                reported_at=AT,
                temperature_c=38.6,
                symptoms=["chills"],
                severity="urgent",
                summary="Temperature 38.6 C; chills or shivering",
                rule_ids=["fever", "symptom_chills"],
            )
            session.add(report)
            session.commit()
            report_id, patient_id = report.id, patient.id
        engine.dispose()

        migrate(url, connect_args, "0008", down=True)
        with engine.connect() as conn:
            columns = {c["name"] for c in inspect(conn).get_columns("symptomreport")}
            assert "rule_ids" not in columns and {"severity", "summary"} <= columns
            assert conn.execute(text("SELECT id FROM symptomreport")).scalars().all() == [report_id]
        engine.dispose()

        migrate(url, connect_args, "0009_report_rule_ids")
        with Session(engine) as session:
            again = session.get(SymptomReport, report_id)
            assert again is not None
            assert (again.rule_ids, again.severity) == ([], "urgent")
        # No default is left: a writer that forgets the rules is refused.
        with pytest.raises(DBAPIError), engine.begin() as conn:
            conn.execute(
                text(
                    "INSERT INTO symptomreport (patient_id, reported_at, symptoms, severity, "
                    "summary, source) VALUES (:patient, :at, '[]', 'none', 'x', 'sms')"
                ),
                {"patient": patient_id, "at": AT.replace(tzinfo=None)},
            )
    finally:
        engine.dispose()
