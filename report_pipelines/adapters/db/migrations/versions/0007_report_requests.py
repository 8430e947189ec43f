"""report requests (the usage log) and D-1 pre-cache choices

Revision ID: 0007
Revises: 0009
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from report_pipelines.adapters.db.types import UTCDateTime

revision = "0007"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "report_requests",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False),
        sa.Column("client_id", sa.Integer(), nullable=True),
        sa.Column("client_ref", sa.String(200), nullable=False),
        sa.Column("report", sa.String(64), nullable=False),
        sa.Column("period_start", sa.Date(), nullable=True),
        sa.Column("period_end", sa.Date(), nullable=True),
        sa.Column("shape", sa.String(16), nullable=False),
        sa.Column("format", sa.String(16), nullable=True),
        sa.Column("channel", sa.String(16), nullable=False),
        sa.Column("requested_at", UTCDateTime(), nullable=False),
        sa.Column("local_date", sa.Date(), nullable=True),
        sa.Column("local_minute", sa.Integer(), nullable=True),
        sa.Column("asks_yesterday", sa.Boolean(), nullable=False),
        sa.Column("days_cached", sa.Integer(), nullable=False),
        sa.Column("days_computed", sa.Integer(), nullable=False),
        sa.Column("days_live", sa.Integer(), nullable=False),
        sa.Column("rows", sa.BigInteger(), nullable=False),
        sa.Column("bytes", sa.BigInteger(), nullable=False),
        sa.Column("duration_s", sa.Float(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.CheckConstraint("channel IN ('cli', 'dagster', 'api', 'schedule', 'python')",
                           name=op.f("ck_report_requests_channel")),
        sa.CheckConstraint("status IN ('ok', 'refused', 'timeout', 'error')", name=op.f("ck_report_requests_status")),
        sa.ForeignKeyConstraint(["client_id"], ["clients.id"], name=op.f("fk_report_requests_client_id_clients"),
                                ondelete="SET NULL"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_report_requests")),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_report_requests_client_requested", "report_requests", ["client_id", "requested_at"])
    op.create_index("ix_report_requests_requested", "report_requests", ["requested_at"])
    op.create_table(
        "precache_choices",
        sa.Column("client_id", sa.Integer(), nullable=False),
        sa.Column("decision", sa.String(16), nullable=False),
        sa.Column("set_by", sa.String(200), nullable=False),
        sa.Column("set_at", UTCDateTime(), nullable=False),
        sa.Column("note", sa.Text(), nullable=True),
        sa.CheckConstraint("decision IN ('priority', 'normal', 'skip', 'auto')", name=op.f("ck_precache_choices_decision")),
        sa.ForeignKeyConstraint(["client_id"], ["clients.id"], name=op.f("fk_precache_choices_client_id_clients"),
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("client_id", name=op.f("pk_precache_choices")),
    )


def downgrade() -> None:
    op.drop_table("precache_choices")
    op.drop_index("ix_report_requests_requested", table_name="report_requests")
    op.drop_index("ix_report_requests_client_requested", table_name="report_requests")
    op.drop_table("report_requests")
