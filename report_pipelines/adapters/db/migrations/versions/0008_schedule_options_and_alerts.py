"""schedule options (body, no-calls rule, message, reply-to), pdf attachments, and alert schedules

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from report_pipelines.adapters.db.types import UTCDateTime

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("report_schedules") as batch:
        batch.add_column(sa.Column("kind", sa.String(16), server_default="report", nullable=False))
        batch.add_column(sa.Column("body", sa.String(16), server_default="summary", nullable=False))
        batch.add_column(sa.Column("no_calls", sa.String(16), server_default="send", nullable=False))
        batch.add_column(sa.Column("message", sa.Text(), nullable=True))
        batch.add_column(sa.Column("reply_to", sa.String(320), nullable=True))
        batch.add_column(sa.Column("condition", sa.Text(), nullable=True))
        batch.add_column(sa.Column("alert_state", sa.String(16), nullable=True))
        batch.add_column(sa.Column("alert_since", UTCDateTime(), nullable=True))
        batch.drop_constraint("ck_report_schedules_frequency", type_="check")
        batch.drop_constraint("ck_report_schedules_format", type_="check")
        batch.create_check_constraint("frequency", "frequency IN ('daily', 'weekly', 'monthly', 'interval')")
        batch.create_check_constraint("format", "format IN ('csv', 'xlsx', 'parquet', 'pdf', 'none')")
        batch.create_check_constraint("kind", "kind IN ('report', 'alert')")
        batch.create_check_constraint("body", "body IN ('summary', 'table', 'none')")
        batch.create_check_constraint("no_calls", "no_calls IN ('send', 'skip', 'notice')")
        batch.create_check_constraint("alert_state", "alert_state IS NULL OR alert_state IN ('clear', 'firing', "
                                                     "'clearing')")


def downgrade() -> None:
    with op.batch_alter_table("report_schedules") as batch:
        for name in ("alert_state", "no_calls", "body", "kind", "format", "frequency"):
            batch.drop_constraint(name, type_="check")  # the naming convention adds ck_report_schedules_
        # 0003's names, which the naming convention prefixed once more (what upgrade() drops again)
        batch.create_check_constraint("ck_report_schedules_frequency", "frequency IN ('daily', 'weekly', 'monthly')")
        batch.create_check_constraint("ck_report_schedules_format", "format IN ('csv', 'xlsx', 'parquet')")
        for column in ("alert_since", "alert_state", "condition", "reply_to", "message", "no_calls", "body", "kind"):
            batch.drop_column(column)
