"""Migration 0016_metrics_indexes on SQLite and PostgreSQL: two indexes, and back again.

Existing rows (a team, a patient with an accented name, an open urgent alert, a check-in)
are untouched both ways, and with the indexes the scrape's two queries read them.
"""

from __future__ import annotations

from sqlalchemy import inspect, text

from reminders.data.db import make_engine
from tests.backend.test_report_rule_ids_migration import migrate

AT = "2026-03-17 17:05:00"
NEW_INDEXES = {"ix_alert_status_severity_created", "ix_checkin_state_opened"}


def indexes(engine) -> set[str]:
    found = inspect(engine)
    return {i["name"] for t in ("alert", "checkin") for i in found.get_indexes(t)}


def test_the_scrape_indexes_come_and_go_and_keep_the_rows(
    empty_database: tuple[str, dict],
) -> None:
    url, connect_args = empty_database
    migrate(url, connect_args, "0015_family_contacts")
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
            conn.execute(
                text(
                    "INSERT INTO patient (id, team_id, display_name, phone, timezone, language, "
                    "region, sms_consent, opted_out, discreet, quiet_start, quiet_end, dose_time, "
                    "checkin_time, pill_times, created_at, updated_at) VALUES (1, 1, "
                    "'Marie-Thérèse Vandenbroucke-Delacroix', '+32470123456', "
                    "'Europe/Brussels', 'fr', 'BE', true, false, false, '22:00:00', '07:00:00', "
                    "'09:00:00', '18:00:00', '[]', :at, :at)"
                ),
                {"at": AT},
            )
            conn.execute(
                text(
                    "INSERT INTO alert (team_id, patient_id, severity, kind, reason, details, "
                    "status, created_at, escalation_count) VALUES (1, 1, 'urgent', 'fever', "
                    "'Fièvre à 38,6', '{}', 'open', :at, 0)"
                ),
                {"at": AT},
            )
            conn.execute(
                text(
                    "INSERT INTO checkin (patient_id, event_key, state, symptoms, in_cmv_window, "
                    "resend_count, opened_at, last_prompt_at) VALUES (1, 'checkin:1', 'closed', "
                    "'[]', false, 0, :at, :at)"
                ),
                {"at": AT},
            )
        engine.dispose()
        assert not indexes(engine) & NEW_INDEXES

        migrate(url, connect_args, "head")
        engine.dispose()
        assert indexes(engine) >= NEW_INDEXES
        with engine.connect() as conn:
            assert conn.execute(
                text("SELECT severity, count(*) FROM alert WHERE status = 'open' GROUP BY severity")
            ).all() == [("urgent", 1)]
            assert conn.execute(
                text("SELECT state FROM checkin WHERE opened_at >= :at"), {"at": AT}
            ).all() == [("closed",)]
        engine.dispose()

        migrate(url, connect_args, "0015_family_contacts", down=True)
        engine.dispose()
        assert not indexes(engine) & NEW_INDEXES
        with engine.connect() as conn:
            assert conn.execute(text("SELECT display_name FROM patient")).scalar() == (
                "Marie-Thérèse Vandenbroucke-Delacroix"
            )
            assert conn.execute(text("SELECT count(*) FROM alert")).scalar() == 1
            assert conn.execute(text("SELECT count(*) FROM checkin")).scalar() == 1
    finally:
        engine.dispose()
