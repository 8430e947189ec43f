"""report cache manifest, clients.active_from, ingest index

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-29
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from report_pipelines.adapters.db.types import UTCDateTime

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("clients") as batch:
        batch.add_column(sa.Column("active_from", sa.Date(), nullable=True))
    # Existing clients: active from the UTC date they were created, or their first call if earlier.
    op.execute(
        "UPDATE clients SET active_from = (SELECT MIN(d) FROM ("
        " SELECT CAST(clients.created_at AS DATE) AS d"
        " UNION ALL SELECT CAST(MIN(e.started_at) AS DATE) FROM call_events e WHERE e.client_id = clients.id"
        ") AS candidates)"
        if op.get_context().dialect.name == "postgresql"
        else "UPDATE clients SET active_from = MIN(date(created_at), COALESCE("
        " (SELECT date(MIN(e.started_at)) FROM call_events e WHERE e.client_id = clients.id), date(created_at)))"
    )
    with op.batch_alter_table("clients") as batch:
        batch.alter_column("active_from", existing_type=sa.Date(), nullable=False)

    op.create_index("ix_call_events_ingested", "call_events", ["ingested_at"])

    op.create_table(
        "report_cache_manifest",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False),
        sa.Column("report", sa.String(64), nullable=False),
        sa.Column("client_id", sa.Integer(), nullable=False),
        sa.Column("local_date", sa.Date(), nullable=False),
        sa.Column("path", sa.Text(), nullable=False),
        sa.Column("rows", sa.BigInteger(), nullable=False),
        sa.Column("bytes", sa.BigInteger(), nullable=False),
        sa.Column("checksum", sa.String(64), nullable=False),
        sa.Column("source_rows", sa.BigInteger(), nullable=False),
        sa.Column("source_checksum", sa.String(64), nullable=False),
        sa.Column("source_watermark", UTCDateTime(), nullable=True),
        sa.Column("rejected_rows", sa.Integer(), nullable=False),
        sa.Column("rejected_reasons", sa.Text(), nullable=False),
        sa.Column("computed_at", UTCDateTime(), nullable=False),
        sa.Column("run_id", sa.String(64), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_report_cache_manifest"),
        sa.ForeignKeyConstraint(["client_id"], ["clients.id"], name="fk_report_cache_manifest_client_id_clients",
                                ondelete="RESTRICT"),
        sa.UniqueConstraint("report", "client_id", "local_date", name="uq_report_cache_manifest_entry"),
    )
    op.create_index("ix_report_cache_manifest_client_date", "report_cache_manifest", ["client_id", "local_date"])


def downgrade() -> None:
    op.drop_index("ix_report_cache_manifest_client_date", table_name="report_cache_manifest")
    op.drop_table("report_cache_manifest")
    op.drop_index("ix_call_events_ingested", table_name="call_events")
    with op.batch_alter_table("clients") as batch:
        batch.drop_column("active_from")
