"""planning passes: how far the outbox is planned

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-02 13:40:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "planningpass",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("planned_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("planned_from", sa.DateTime(timezone=True), nullable=False),
        sa.Column("planned_until", sa.DateTime(timezone=True), nullable=False),
        sa.Column("rows_written", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("planningpass", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_planningpass_planned_at"), ["planned_at"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("planningpass", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_planningpass_planned_at"))
    op.drop_table("planningpass")
