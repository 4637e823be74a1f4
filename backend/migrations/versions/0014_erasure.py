"""the erasure of a patient's contact details

Revision ID: 0014_erasure
Revises: 0013_clock_lease
Create Date: 2026-12-07 17:45:00

Issue 16, item 6: ``patient.erased_at``, set when a patient's name, phone number and
hospital reference were replaced by a pseudonym at their request
(``backend.services.rights``; who did it is in the audit trail). One nullable column,
added in place: no existing row changes. Downgrading drops it (an erased patient's
identifiers stay erased: they are gone either way).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0014_erasure"
down_revision: str | None = "0013_clock_lease"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Added in place, never by rebuilding the table (rows of other tables point at it).
    op.add_column("patient", sa.Column("erased_at", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    op.drop_column("patient", "erased_at")
