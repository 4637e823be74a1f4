"""named, expiring API tokens with a public prefix and their creator

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-07 09:00:00

API tokens get a name, an expiry, a short public prefix and who created them
(issue 12, item 3):

* ``label`` becomes ``name`` (the values are kept: tokens made by ``create-user``
  were all labelled "cli").
* ``expires_at`` (required). Tokens that exist already expire **90 days after this
  migration runs** (the migration's own clock, UTC), not 90 days after their creation:
  integrations that use an old token keep working for three months, long enough to
  create a named token on the "API tokens" page or with ``flask --app backend tokens
  create`` and switch to it. Revoked tokens get the same value; it changes nothing
  for them.
* ``prefix``: the first 8 characters of a token's random part, shown in lists.
  Only the token's SHA-256 digest was stored, so existing tokens cannot get one:
  theirs stays empty (NULL) and lists show them by name and id.
* ``created_by_user_id``: the user who created the token (its owner or an admin);
  NULL for tokens an operator created from the command line, which is how every
  existing token was made.

The whole migration runs in one transaction on both engines.
"""

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

#: The grace period of tokens that exist when the migration runs (the default lifetime).
EXISTING_TOKENS_LIFETIME = timedelta(days=90)


def upgrade() -> None:
    with op.batch_alter_table("apitoken", schema=None) as batch_op:
        batch_op.alter_column(
            "label",
            new_column_name="name",
            existing_type=sa.String(length=80),
            existing_nullable=False,
        )
        batch_op.add_column(sa.Column("prefix", sa.String(length=8), nullable=True))
        batch_op.add_column(sa.Column("created_by_user_id", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.create_foreign_key(
            "fk_apitoken_created_by_user_id_user", "user", ["created_by_user_id"], ["id"]
        )

    expires = datetime.now(UTC) + EXISTING_TOKENS_LIFETIME
    if op.get_bind().dialect.name == "sqlite":
        # The app stores UTC without an offset on SQLite (reminders.data.models.UTCDateTime).
        expires = expires.replace(tzinfo=None)
    apitoken = sa.table("apitoken", sa.column("expires_at", sa.DateTime(timezone=True)))
    op.execute(apitoken.update().values(expires_at=expires))

    with op.batch_alter_table("apitoken", schema=None) as batch_op:
        batch_op.alter_column(
            "expires_at", existing_type=sa.DateTime(timezone=True), nullable=False
        )


def downgrade() -> None:
    with op.batch_alter_table("apitoken", schema=None) as batch_op:
        batch_op.drop_constraint("fk_apitoken_created_by_user_id_user", type_="foreignkey")
        batch_op.drop_column("expires_at")
        batch_op.drop_column("created_by_user_id")
        batch_op.drop_column("prefix")
        batch_op.alter_column(
            "name",
            new_column_name="label",
            existing_type=sa.String(length=80),
            existing_nullable=False,
        )
