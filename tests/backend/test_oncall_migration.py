"""Migration 0010_oncall_escalation on SQLite and PostgreSQL, with rows in every table it alters.

Existing teams get Europe/Brussels, users English, outbox rows ``sms``; the columns are
added in place, so the foreign keys pointing at teams and users (tokens, sessions,
patients, alerts) do not stop it; a downgrade drops the new tables and columns and keeps
the rows.
"""

from __future__ import annotations

from sqlalchemy import inspect, text

from reminders.data.db import make_engine
from tests.backend.test_report_rule_ids_migration import migrate

AT = "2026-03-17 17:05:00"


def test_existing_rows_get_the_defaults_and_a_downgrade_keeps_them(
    empty_database: tuple[str, dict],
) -> None:
    url, connect_args = empty_database
    migrate(url, connect_args, "0009_report_rule_ids")
    engine = make_engine(url, **({"connect_args": connect_args} if connect_args else {}))
    try:
        with engine.begin() as conn:
            conn.execute(
                text(
                    "INSERT INTO team (id, name, oncall_phone, created_at) "
                    "VALUES (1, 'Hématologie — Saint-Luc', '+32470999999', :at)"
                ),
                {"at": AT},
            )
            conn.execute(
                text(
                    'INSERT INTO "user" (id, team_id, email, name, role, is_active, created_at) '
                    "VALUES (1, 1, 'anne-sophie@saint-luc.example', "
                    "'Dr Anne-Sophie Lefèvre-Dubois', 'physician', true, :at)"
                ),
                {"at": AT},
            )
            conn.execute(
                text(
                    "INSERT INTO outboundmessage (id, team_id, recipient, kind, dedupe_key, body, "
                    "urgent, due_at, next_attempt_at, status, attempts, created_at) VALUES "
                    "(1, 1, 'oncall', 'oncall_alert', 'alert1:oncall0', 'URGENT', true, :at, :at, "
                    "'sent', 1, :at)"
                ),
                {"at": AT},
            )
        engine.dispose()

        migrate(url, connect_args, "head")
        with engine.connect() as conn:
            assert conn.execute(text("SELECT timezone FROM team")).scalar_one() == "Europe/Brussels"
            user = conn.execute(text('SELECT phone, language FROM "user"')).one()
            assert tuple(user) == (None, "en")
            page = conn.execute(text("SELECT channel, user_id FROM outboundmessage")).one()
            assert tuple(page) == ("sms", None)
            for table in ("oncallshift", "alertevent", "expectedlevel"):
                assert conn.execute(text(f"SELECT COUNT(*) FROM {table}")).scalar_one() == 0
        engine.dispose()

        migrate(url, connect_args, "0009_report_rule_ids", down=True)
        tables = set(inspect(engine).get_table_names())
        assert not tables & {"oncallshift", "alertevent", "expectedlevel"}
        assert "timezone" not in {c["name"] for c in inspect(engine).get_columns("team")}
        with engine.connect() as conn:
            assert conn.execute(text("SELECT COUNT(*) FROM outboundmessage")).scalar_one() == 1
            assert conn.execute(text('SELECT COUNT(*) FROM "user"')).scalar_one() == 1
        engine.dispose()
        migrate(url, connect_args, "head")  # and up again
    finally:
        engine.dispose()
