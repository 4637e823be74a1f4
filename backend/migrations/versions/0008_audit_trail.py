"""audit trail: the channel of each row, and rows that cannot be changed or deleted

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-10 09:00:00

Every audit row says how the action arrived: ``api``, ``dashboard`` or ``cli``
(``auditevent.channel``, NOT NULL, no default: the app always says). Rows written before
this migration came from the care-team pages, except ``confirm_dose_warning`` rows that
have no ``record_dose`` row of the same user at the same instant: those came from the API
(whose routes wrote no audit row of their own until now). They are marked so before the
rows become read-only.

Then the database refuses ``UPDATE`` and ``DELETE`` on ``auditevent`` from any client:
a plpgsql trigger function on PostgreSQL, two ``RAISE(ABORT)`` triggers on SQLite, with
the same words as ``reminders.data.models.AUDIT_TRIGGERS`` (which installs them on databases made
by ``create_all``). ``TRUNCATE`` is not a row operation and stays possible for the table's
owner. A later migration that rebuilds ``auditevent`` on SQLite (``batch_alter_table``
copies the table) drops these triggers and must create them again. Downgrading removes
the triggers and the column. The whole migration runs in one transaction on both engines.
"""

from collections.abc import Sequence
from datetime import timedelta

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

MESSAGE = "audit rows are append-only: UPDATE and DELETE are refused"

TRIGGERS = {
    "postgresql": (
        "CREATE OR REPLACE FUNCTION auditevent_refuse_change() RETURNS trigger "
        f"LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION '{MESSAGE}'; END $$",
        "CREATE TRIGGER auditevent_append_only BEFORE UPDATE OR DELETE ON auditevent "
        "FOR EACH ROW EXECUTE FUNCTION auditevent_refuse_change()",
    ),
    "sqlite": (
        "CREATE TRIGGER auditevent_no_update BEFORE UPDATE ON auditevent "
        f"BEGIN SELECT RAISE(ABORT, '{MESSAGE}'); END",
        "CREATE TRIGGER auditevent_no_delete BEFORE DELETE ON auditevent "
        f"BEGIN SELECT RAISE(ABORT, '{MESSAGE}'); END",
    ),
}

DROP_TRIGGERS = {
    "postgresql": (
        "DROP TRIGGER IF EXISTS auditevent_append_only ON auditevent",
        "DROP FUNCTION IF EXISTS auditevent_refuse_change()",
    ),
    "sqlite": (
        "DROP TRIGGER IF EXISTS auditevent_no_update",
        "DROP TRIGGER IF EXISTS auditevent_no_delete",
    ),
}


#: The care-team page writes its ``record_dose`` row just after the service's
#: ``confirm_dose_warning`` row, in the same request.
SAME_REQUEST = timedelta(seconds=60)


def api_dose_warnings(connection: sa.Connection) -> list[int]:
    """Ids of the ``confirm_dose_warning`` rows the API wrote (no page row follows them).

    A page's dose form writes ``confirm_dose_warning`` (target ``plan:<id>:dose:...``)
    then ``record_dose`` (target ``plan:<id>``) for the same user and patient, a moment
    later; the API wrote only the first.
    """
    audit = sa.table(
        "auditevent",
        sa.column("id", sa.Integer),
        sa.column("at", sa.DateTime(timezone=True)),
        sa.column("user_id", sa.Integer),
        sa.column("patient_id", sa.Integer),
        sa.column("action", sa.String),
        sa.column("target", sa.String),
    )
    rows = connection.execute(
        sa.select(audit)
        .where(audit.c.action.in_(["confirm_dose_warning", "record_dose"]))
        .order_by(audit.c.id)
    ).all()
    pages: dict[tuple[object, ...], list[sa.Row]] = {}
    for row in rows:
        if row.action == "record_dose":
            pages.setdefault((row.user_id, row.patient_id, row.target), []).append(row)
    found = []
    for row in rows:
        if row.action != "confirm_dose_warning":
            continue
        plan = ":".join((row.target or "").split(":")[:2])
        followed = any(
            page.id > row.id and timedelta(0) <= page.at - row.at <= SAME_REQUEST
            for page in pages.get((row.user_id, row.patient_id, plan), [])
        )
        if not followed:
            found.append(row.id)
    return found


def upgrade() -> None:
    dialect = op.get_bind().dialect.name
    # The default only fills the rows already there; it is dropped just after.
    with op.batch_alter_table("auditevent", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("channel", sa.String(length=16), nullable=False, server_default="dashboard")
        )
    api_ids = api_dose_warnings(op.get_bind())
    audit = sa.table("auditevent", sa.column("id", sa.Integer), sa.column("channel", sa.String))
    for start in range(0, len(api_ids), 500):
        op.execute(
            audit.update().where(audit.c.id.in_(api_ids[start : start + 500])).values(channel="api")
        )
    with op.batch_alter_table("auditevent", schema=None) as batch_op:
        batch_op.alter_column("channel", existing_type=sa.String(length=16), server_default=None)
    for statement in TRIGGERS.get(dialect, ()):
        op.execute(statement)


def downgrade() -> None:
    dialect = op.get_bind().dialect.name
    for statement in DROP_TRIGGERS.get(dialect, ()):
        op.execute(statement)
    with op.batch_alter_table("auditevent", schema=None) as batch_op:
        batch_op.drop_column("channel")
