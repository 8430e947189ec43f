"""clients and call_events

Revision ID: 0001
Revises:
Create Date: 2026-11-29
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from report_pipelines.adapters.db.types import UTCDateTime

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

DIRECTIONS = ("inbound", "outbound", "internal")
DISPOSITIONS = ("ANSWERED", "NO ANSWER", "BUSY", "FAILED", "ABANDONED")


def _in(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


def upgrade() -> None:
    op.create_table(
        "clients",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("slug", sa.String(64), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("timezone", sa.String(64), nullable=False),
        sa.Column("created_at", UTCDateTime(), server_default=sa.func.now(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), server_default=sa.func.now(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_clients"),
        sa.UniqueConstraint("slug", name="uq_clients_slug"),
        # Never reuse a deleted client's id: ids name folders in the report store.
        sqlite_autoincrement=True,
    )
    op.create_table(
        "call_events",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False),
        sa.Column("client_id", sa.Integer(), nullable=False),
        sa.Column("pbx_call_id", sa.String(128), nullable=False),
        sa.Column("direction", sa.String(16), nullable=False),
        sa.Column("queue", sa.String(128), nullable=True),
        sa.Column("agent", sa.String(128), nullable=True),
        sa.Column("caller", sa.String(128), nullable=True),
        sa.Column("callee", sa.String(128), nullable=True),
        sa.Column("started_at", UTCDateTime(), nullable=False),
        sa.Column("answered_at", UTCDateTime(), nullable=True),
        sa.Column("ended_at", UTCDateTime(), nullable=False),
        sa.Column("disposition", sa.String(16), nullable=False),
        sa.Column("ingested_at", UTCDateTime(), server_default=sa.func.now(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_call_events"),
        sa.ForeignKeyConstraint(["client_id"], ["clients.id"], name="fk_call_events_client_id_clients", ondelete="RESTRICT"),
        sa.UniqueConstraint("client_id", "pbx_call_id", name="uq_call_events_client_call"),
        sa.CheckConstraint(_in("direction", DIRECTIONS), name="ck_call_events_direction"),
        sa.CheckConstraint(_in("disposition", DISPOSITIONS), name="ck_call_events_disposition"),
        sa.CheckConstraint("ended_at >= started_at", name="ck_call_events_ends_after_start"),
        sa.CheckConstraint(
            "answered_at IS NULL OR (answered_at >= started_at AND answered_at <= ended_at)",
            name="ck_call_events_answered_within_call",
        ),
    )
    op.create_index("ix_call_events_client_started", "call_events", ["client_id", "started_at"])
    op.create_index("ix_call_events_client_ingested", "call_events", ["client_id", "ingested_at"])


def downgrade() -> None:
    op.drop_index("ix_call_events_client_ingested", table_name="call_events")
    op.drop_index("ix_call_events_client_started", table_name="call_events")
    op.drop_table("call_events")
    op.drop_table("clients")
