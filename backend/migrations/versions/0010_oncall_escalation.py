"""on-call rota, escalation timeline, clinicians' phones, voice pages and expected levels

Revision ID: 0010_oncall_escalation
Revises: 0009_report_rule_ids
Create Date: 2026-12-07 12:00:00

Issue 14 (alerts nobody can miss):

* ``team.timezone`` (the zone the rota is written in; existing teams get
  Europe/Brussels, where our first patients are treated), ``team.escalation_policy``
  and ``team.response_targets`` (JSON, NULL for the defaults of ``clinical_rules.toml``);
* ``user.phone`` (the clinician's own mobile, indexed: an ``ACK`` reply is looked up by
  it) and ``user.language`` (existing users get ``en``, what their pages were in);
* ``oncallshift`` (who is primary or backup when), ``alertevent`` (an alert's timeline)
  and ``expectedlevel`` (a low-grade temperature the team expects);
* ``outboundmessage.channel`` (existing rows are ``sms``) and ``outboundmessage.user_id``
  (the clinician a page went to).

Server defaults fill the existing rows; on PostgreSQL they are then dropped, as the
models have none (SQLite cannot drop one in place; see ``upgrade``). Downgrading drops
all of it.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010_oncall_escalation"
down_revision: str | None = "0009_report_rule_ids"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Columns are added in place (ALTER TABLE ... ADD COLUMN), never by rebuilding a
    # table: on SQLite a rebuild drops the old table, which fails with foreign keys on
    # as soon as rows of other tables point at it (every team and user has some).
    op.add_column(
        "team",
        sa.Column(
            "timezone", sa.String(length=64), nullable=False, server_default="Europe/Brussels"
        ),
    )
    op.add_column("team", sa.Column("escalation_policy", sa.JSON(), nullable=True))
    op.add_column("team", sa.Column("response_targets", sa.JSON(), nullable=True))
    op.add_column("user", sa.Column("phone", sa.String(length=20), nullable=True))
    op.add_column(
        "user", sa.Column("language", sa.String(length=2), nullable=False, server_default="en")
    )
    op.create_index("ix_user_phone", "user", ["phone"], unique=False)
    op.add_column(
        "outboundmessage",
        sa.Column("channel", sa.String(length=10), nullable=False, server_default="sms"),
    )
    if op.get_bind().dialect.name == "sqlite":
        # Alembic adds a foreign key on SQLite only by rebuilding the table; SQLite
        # itself takes it in ADD COLUMN.
        op.execute(
            "ALTER TABLE outboundmessage ADD COLUMN user_id INTEGER "
            'CONSTRAINT fk_outboundmessage_user_id_user REFERENCES "user" (id)'
        )
    else:
        op.add_column(
            "outboundmessage",
            sa.Column(
                "user_id",
                sa.Integer(),
                sa.ForeignKey("user.id", name="fk_outboundmessage_user_id_user"),
                nullable=True,
            ),
        )
    if op.get_bind().dialect.name != "sqlite":
        # The models have no server defaults: every writer names the value. SQLite
        # cannot drop a default in place, so there the defaults stay (harmless: the same
        # values the models give).
        for table, column, type_ in (
            ("team", "timezone", sa.String(length=64)),
            ("user", "language", sa.String(length=2)),
            ("outboundmessage", "channel", sa.String(length=10)),
        ):
            op.alter_column(table, column, existing_type=type_, server_default=None)

    op.create_table(
        "alertevent",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("alert_id", sa.Integer(), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("event", sa.String(length=20), nullable=False),
        sa.Column("step", sa.Integer(), nullable=True),
        sa.Column("channel", sa.String(length=10), nullable=True),
        sa.Column("target", sa.String(length=10), nullable=True),
        sa.Column("user_id", sa.Integer(), nullable=True),
        sa.Column("outcome", sa.String(length=20), nullable=True),
        sa.Column("outbound_id", sa.Integer(), nullable=True),
        sa.Column("detail", sa.String(length=200), nullable=True),
        sa.ForeignKeyConstraint(["alert_id"], ["alert.id"]),
        sa.ForeignKeyConstraint(["outbound_id"], ["outboundmessage.id"]),
        sa.ForeignKeyConstraint(["user_id"], ["user.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("alertevent", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_alertevent_alert_id"), ["alert_id"], unique=False)

    op.create_table(
        "oncallshift",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("team_id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("role", sa.String(length=10), nullable=False),
        sa.Column("starts_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("ends_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_by", sa.Integer(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["created_by"], ["user.id"]),
        sa.ForeignKeyConstraint(["team_id"], ["team.id"]),
        sa.ForeignKeyConstraint(["user_id"], ["user.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("oncallshift", schema=None) as batch_op:
        batch_op.create_index("ix_oncallshift_team_ends", ["team_id", "ends_at"], unique=False)

    op.create_table(
        "expectedlevel",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("patient_id", sa.Integer(), nullable=False),
        sa.Column("team_id", sa.Integer(), nullable=False),
        sa.Column("up_to_c", sa.Float(), nullable=False),
        sa.Column("reason", sa.String(length=500), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_by", sa.Integer(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("ended_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("ended_by", sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(["created_by"], ["user.id"]),
        sa.ForeignKeyConstraint(["ended_by"], ["user.id"]),
        sa.ForeignKeyConstraint(["patient_id"], ["patient.id"]),
        sa.ForeignKeyConstraint(["team_id"], ["team.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("expectedlevel", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_expectedlevel_patient_id"), ["patient_id"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("expectedlevel", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_expectedlevel_patient_id"))
    op.drop_table("expectedlevel")
    with op.batch_alter_table("oncallshift", schema=None) as batch_op:
        batch_op.drop_index("ix_oncallshift_team_ends")
    op.drop_table("oncallshift")
    with op.batch_alter_table("alertevent", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_alertevent_alert_id"))
    op.drop_table("alertevent")
    # SQLite drops a column in place unless a constraint names it: the foreign key's
    # column needs the outbox rebuilt (no table points at it once alertevent is gone).
    with op.batch_alter_table("outboundmessage", schema=None) as batch_op:
        batch_op.drop_column("user_id")
        batch_op.drop_column("channel")
    op.drop_index("ix_user_phone", table_name="user")
    op.drop_column("user", "language")
    op.drop_column("user", "phone")
    op.drop_column("team", "response_targets")
    op.drop_column("team", "escalation_policy")
    op.drop_column("team", "timezone")
