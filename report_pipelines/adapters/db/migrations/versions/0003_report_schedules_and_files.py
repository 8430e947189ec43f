"""report schedules and report files

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-29
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from report_pipelines.adapters.db.types import UTCDateTime

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "report_schedules",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("client_id", sa.Integer(), nullable=False),
        sa.Column("report", sa.String(64), nullable=False),
        sa.Column("period", sa.String(32), nullable=False),
        sa.Column("period_days", sa.Integer(), nullable=True),
        sa.Column("frequency", sa.String(16), nullable=False),
        sa.Column("weekdays", sa.String(32), nullable=True),
        sa.Column("month_day", sa.Integer(), nullable=True),
        sa.Column("send_time", sa.String(5), nullable=False),
        sa.Column("timezone", sa.String(64), nullable=False),
        sa.Column("recipients", sa.Text(), nullable=False),
        sa.Column("subject", sa.String(200), nullable=True),
        sa.Column("format", sa.String(16), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("paused_reason", sa.Text(), nullable=True),
        sa.Column("next_send_at", UTCDateTime(), nullable=True),
        sa.Column("revision", sa.Integer(), nullable=False),
        sa.Column("created_at", UTCDateTime(), server_default=sa.func.now(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), server_default=sa.func.now(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_report_schedules"),
        sa.ForeignKeyConstraint(["client_id"], ["clients.id"], name="fk_report_schedules_client_id_clients",
                                ondelete="RESTRICT"),
        sa.CheckConstraint("frequency IN ('daily', 'weekly', 'monthly')", name="ck_report_schedules_frequency"),
        sa.CheckConstraint("format IN ('csv', 'xlsx', 'parquet')", name="ck_report_schedules_format"),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_report_schedules_due", "report_schedules", ["active", "next_send_at"])
    op.create_index("ix_report_schedules_client", "report_schedules", ["client_id"])
    op.create_table(
        "report_files",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False),
        sa.Column("schedule_id", sa.Integer(), nullable=False),
        sa.Column("occurrence", UTCDateTime(), nullable=False),
        sa.Column("period_start", sa.Date(), nullable=True),
        sa.Column("period_end", sa.Date(), nullable=True),
        sa.Column("format", sa.String(16), nullable=False),
        sa.Column("path", sa.Text(), nullable=True),
        sa.Column("bytes", sa.BigInteger(), nullable=True),
        sa.Column("checksum", sa.String(64), nullable=True),
        sa.Column("rows", sa.BigInteger(), nullable=True),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("next_attempt_at", UTCDateTime(), nullable=True),
        sa.Column("lease_owner", sa.String(64), nullable=True),
        sa.Column("lease_expires_at", UTCDateTime(), nullable=True),
        sa.Column("message_id", sa.String(200), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("sent_at", UTCDateTime(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_report_files"),
        sa.ForeignKeyConstraint(["schedule_id"], ["report_schedules.id"],
                                name="fk_report_files_schedule_id_report_schedules", ondelete="CASCADE"),
        sa.UniqueConstraint("schedule_id", "occurrence", name="uq_report_files_occurrence"),
        sa.CheckConstraint("state IN ('building', 'ready', 'sending', 'retry', 'sent', 'failed', 'skipped')",
                           name="ck_report_files_state"),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_report_files_state", "report_files", ["state", "next_attempt_at"])
    op.create_index("ix_report_files_sent", "report_files", ["sent_at"])


def downgrade() -> None:
    op.drop_index("ix_report_files_sent", table_name="report_files")
    op.drop_index("ix_report_files_state", table_name="report_files")
    op.drop_table("report_files")
    op.drop_index("ix_report_schedules_client", table_name="report_schedules")
    op.drop_index("ix_report_schedules_due", table_name="report_schedules")
    op.drop_table("report_schedules")
