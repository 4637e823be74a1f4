"""the active clock's lease

Revision ID: 0013_clock_lease
Revises: 0012_calendar_feeds
Create Date: 2026-12-07 18:00:00

Issue 16, item 4 (clock failover): ``clocklease``, the row that says which of two clock
processes is the active one on SQLite (its holder and when its lease expires). Created on
both engines so that the schema is the models' everywhere; PostgreSQL leaves it empty (its
clocks use a session advisory lock). A new table only: no existing row changes.
Downgrading drops it (a clock then has nothing to take: run one clock only).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0013_clock_lease"
down_revision: str | None = "0012_calendar_feeds"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "clocklease",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=40), nullable=False),
        sa.Column("holder", sa.String(length=200), nullable=False),
        sa.Column("acquired_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("name"),
    )


def downgrade() -> None:
    op.drop_table("clocklease")
