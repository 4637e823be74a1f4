"""sign-in throttling per account and client instead of account lockout

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-10 09:00:00

Five wrong passwords used to lock any account for 15 minutes (``user.failed_logins``,
``user.locked_until``), so anyone who knew a nurse's email could keep her out (issue 12,
item 4). Failed sign-ins are now counted per account and client in ``loginthrottle``
(HMAC keys, never an email or an address in clear; see ``backend.services.signin``)
and never lock an account.

The two lockout columns are dropped: nothing reads them any more, and a lock still in
force when this runs simply ends (the new throttle starts from nothing). The downgrade
puts them back empty (no account locked).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "loginthrottle",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("account_key", sa.String(length=64), nullable=False),
        sa.Column("address_key", sa.String(length=64), nullable=False),
        sa.Column("failures", sa.Integer(), nullable=False),
        sa.Column("first_failure_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_failure_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("retry_after", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_success_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("account_key", "address_key", name="uq_loginthrottle_pair"),
    )
    # ALTER TABLE ... DROP COLUMN in place (SQLite 3.35+), never a rebuild of ``user``:
    # SQLite's rebuild (copy, DROP, rename) of a table that tokens, sessions and audit rows
    # point at fails at COMMIT with foreign keys on, because the DROP's orphaned children
    # stay counted as violations even once the copy takes the table's name.
    with op.batch_alter_table("user", schema=None, recreate="never") as batch_op:
        batch_op.drop_column("locked_until")
        batch_op.drop_column("failed_logins")


def downgrade() -> None:
    with op.batch_alter_table("user", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("failed_logins", sa.Integer(), nullable=False, server_default="0")
        )
        batch_op.add_column(sa.Column("locked_until", sa.DateTime(timezone=True), nullable=True))
    op.drop_table("loginthrottle")
