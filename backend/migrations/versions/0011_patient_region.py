"""the patient's region: the emergency number and temperature units of their SMS

Revision ID: 0011_patient_region
Revises: 0010_oncall_escalation
Create Date: 2026-12-07 15:30:00

Issue 15 (region-aware safety text): ``patient.region``, an ISO 3166 code of
``reminders/core/regions.toml``. Existing patients get ``BE``: every team so far treats
in Belgium, where the SMS already meant 112 and Celsius. The server default fills the
existing rows; on PostgreSQL it is then dropped, as the model has none (SQLite cannot
drop one in place: there it stays, the same value the model gives).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011_patient_region"
down_revision: str | None = "0010_oncall_escalation"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Added in place, never by rebuilding the table (rows of other tables point at it).
    op.add_column(
        "patient",
        sa.Column("region", sa.String(length=2), nullable=False, server_default="BE"),
    )
    if op.get_bind().dialect.name != "sqlite":
        op.alter_column("patient", "region", existing_type=sa.String(length=2), server_default=None)


def downgrade() -> None:
    op.drop_column("patient", "region")
