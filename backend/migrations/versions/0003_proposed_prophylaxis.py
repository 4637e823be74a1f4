"""proposed prophylaxis: the regimen entry of a course, who confirmed or declined it

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-07 01:00:00

Starting a plan proposes one course per prophylaxis entry of its regimen (issue 11,
item 6). Existing courses keep their status ("active" or "stopped") and have no
regimen entry (they were entered by hand).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("prophylaxiscourse", schema=None) as batch_op:
        batch_op.add_column(sa.Column("regimen_entry", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("confirmed_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("confirmed_by", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("declined_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("declined_by", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("decline_reason", sa.String(length=500), nullable=True))
        batch_op.create_foreign_key(
            "fk_prophylaxiscourse_confirmed_by_user", "user", ["confirmed_by"], ["id"]
        )
        batch_op.create_foreign_key(
            "fk_prophylaxiscourse_declined_by_user", "user", ["declined_by"], ["id"]
        )
        batch_op.create_unique_constraint(
            "uq_prophylaxiscourse_plan_entry", ["plan_id", "regimen_entry"]
        )


def downgrade() -> None:
    with op.batch_alter_table("prophylaxiscourse", schema=None) as batch_op:
        batch_op.drop_constraint("uq_prophylaxiscourse_plan_entry", type_="unique")
        batch_op.drop_constraint("fk_prophylaxiscourse_declined_by_user", type_="foreignkey")
        batch_op.drop_constraint("fk_prophylaxiscourse_confirmed_by_user", type_="foreignkey")
        batch_op.drop_column("decline_reason")
        batch_op.drop_column("declined_by")
        batch_op.drop_column("declined_at")
        batch_op.drop_column("confirmed_by")
        batch_op.drop_column("confirmed_at")
        batch_op.drop_column("regimen_entry")
