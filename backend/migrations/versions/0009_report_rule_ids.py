"""symptom reports keep the ids of the triage rules that decided them

Revision ID: 0009_report_rule_ids
Revises: 0008
Create Date: 2026-12-07 09:00:00

``symptomreport.rule_ids`` (JSON list of rule ids from ``triage_rules.toml``, NOT NULL)
records which rules matched a report (issue 13, item 3), so a clinician reading the
report sees why it got its severity. Reports stored before this migration were triaged
but their rules were not kept: they get an empty list, which says "not recorded", never
a guess made from today's rules. The column is added with a server default of ``[]``
that fills existing rows, then the default is dropped: every writer names the rules,
as the model does. Downgrading drops the column. The whole migration runs in one
transaction on both engines.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009_report_rule_ids"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # SQLite cannot drop a column default in place: the second batch rebuilds the table.
    with op.batch_alter_table("symptomreport", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("rule_ids", sa.JSON(), nullable=False, server_default=sa.text("'[]'"))
        )
    with op.batch_alter_table("symptomreport", schema=None) as batch_op:
        batch_op.alter_column("rule_ids", existing_type=sa.JSON(), server_default=None)


def downgrade() -> None:
    with op.batch_alter_table("symptomreport", schema=None) as batch_op:
        batch_op.drop_column("rule_ids")
