"""one number, one patient: discharge, and a phone number unique among active patients

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-08 09:00:00

A phone number belongs to at most one active (not discharged) patient in the whole
installation (issue 12, item 1): a partial unique index on ``patient.phone`` where
``discharged_at IS NULL``. Every patient already stored is active.

A database that already holds two patients with the same number cannot get the
index. The migration then changes nothing and stops, naming the command that lists
them (``flask --app backend patients duplicate-phones``): which patient owns the
number is the care teams' decision, so nothing is deleted, merged or discharged
here. The check runs before any change, and the whole migration runs in one
transaction on both engines.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

DUPLICATES_COMMAND = "flask --app backend patients duplicate-phones"


class DuplicatePhonesError(RuntimeError):
    """Patients share a phone number: the teams must resolve it before this migration."""


def upgrade() -> None:
    shared = (
        op.get_bind()
        .execute(
            sa.text(
                "SELECT COUNT(*) FROM "
                "(SELECT phone FROM patient GROUP BY phone HAVING COUNT(*) > 1) AS shared"
            )
        )
        .scalar()
    )
    if shared:
        # No number, name or team in the message: it ends up in deploy logs.
        raise DuplicatePhonesError(
            f"{shared} phone number(s) are shared by more than one patient, so the database "
            "cannot enforce one number per patient. Nothing was changed. List them with "
            f"`{DUPLICATES_COMMAND}`, have the teams correct the wrong numbers, then upgrade "
            "again."
        )
    with op.batch_alter_table("patient", schema=None) as batch_op:
        batch_op.add_column(sa.Column("discharged_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("discharged_by", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("discharge_reason", sa.String(length=500), nullable=True))
        batch_op.create_foreign_key(
            "fk_patient_discharged_by_user", "user", ["discharged_by"], ["id"]
        )
    op.create_index(
        "uq_patient_active_phone",
        "patient",
        ["phone"],
        unique=True,
        sqlite_where=sa.text("discharged_at IS NULL"),
        postgresql_where=sa.text("discharged_at IS NULL"),
    )


def downgrade() -> None:
    op.drop_index("uq_patient_active_phone", table_name="patient")
    with op.batch_alter_table("patient", schema=None) as batch_op:
        batch_op.drop_constraint("fk_patient_discharged_by_user", type_="foreignkey")
        batch_op.drop_column("discharge_reason")
        batch_op.drop_column("discharged_by")
        batch_op.drop_column("discharged_at")
