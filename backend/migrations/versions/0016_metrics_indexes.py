"""indexes for the scrape of /metrics

Revision ID: 0016_metrics_indexes
Revises: 0015_family_contacts
Create Date: 2026-12-07 17:30:00

Issue 16, item 2: ``/metrics`` reads the database's state on every scrape
(``reminders.metrics.DatabaseState``). Two of its queries had no index to read: the
unresolved alerts by severity (``ix_alert_status_severity_created``: status, severity,
created_at) and the last week's check-ins by state (``ix_checkin_state_opened``:
state, opened_at). Each covers its query, so a scrape reads an index range instead of
the table. Indexes only: no row changes; downgrading drops them.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0016_metrics_indexes"
down_revision: str | None = "0015_family_contacts"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index(
        "ix_alert_status_severity_created", "alert", ["status", "severity", "created_at"]
    )
    op.create_index("ix_checkin_state_opened", "checkin", ["state", "opened_at"])


def downgrade() -> None:
    op.drop_index("ix_checkin_state_opened", table_name="checkin")
    op.drop_index("ix_alert_status_severity_created", table_name="alert")
