"""family contacts of a patient, with the patient's consent

Revision ID: 0015_family_contacts
Revises: 0014_erasure
Create Date: 2026-12-07 17:30:00

Issue 15, item 6: ``familycontact``, one row per family member who gets copies of a
patient's urgent advice and check-in nudges: name, E.164 phone (once per patient),
language, relationship, which copies, the patient's consent (how, when, by whom, and its
withdrawal), the contact's own STOP. A new table only: no existing row changes.
Downgrading drops it.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0015_family_contacts"
down_revision: str | None = "0014_erasure"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "familycontact",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("patient_id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=120), nullable=False),
        sa.Column("phone", sa.String(length=20), nullable=False),
        sa.Column("language", sa.String(length=2), nullable=False),
        sa.Column("relationship", sa.String(length=40), nullable=False),
        sa.Column("copies_urgent", sa.Boolean(), nullable=False),
        sa.Column("copies_nudges", sa.Boolean(), nullable=False),
        sa.Column("consent_method", sa.String(length=20), nullable=True),
        sa.Column("consent_recorded_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("consent_recorded_by", sa.Integer(), nullable=True),
        sa.Column("consent_withdrawn_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("consent_withdrawn_by", sa.Integer(), nullable=True),
        sa.Column("opted_out_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_by", sa.Integer(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["consent_recorded_by"], ["user.id"]),
        sa.ForeignKeyConstraint(["consent_withdrawn_by"], ["user.id"]),
        sa.ForeignKeyConstraint(["created_by"], ["user.id"]),
        sa.ForeignKeyConstraint(["patient_id"], ["patient.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("patient_id", "phone", name="uq_familycontact_patient_phone"),
    )
    with op.batch_alter_table("familycontact", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_familycontact_patient_id"), ["patient_id"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_familycontact_phone"), ["phone"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("familycontact", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_familycontact_phone"))
        batch_op.drop_index(batch_op.f("ix_familycontact_patient_id"))
    op.drop_table("familycontact")
