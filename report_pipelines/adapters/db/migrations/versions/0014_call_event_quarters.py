"""call_event_quarters: each client's calls per UTC quarter-hour (count, newest ingest)

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-04

The freshness checks (a period request's cached days, the late-data sensor, a batch's reuse) compared
each cached day with a count of its calls and their newest ``ingested_at``, one query per day through
the calls' index and heap: 272 ms for the largest client's 30 days, more than the ``GROUP BY`` a cached
summary replaces. A local day is a run of whole UTC quarter-hours in every zone, so the same state is a
sum over at most 100 rows of this table, which the writers of ``call_events`` keep
(``adapters/db/call_quarters.py``). Filled here from the calls already stored.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from report_pipelines.adapters.db.types import UTCDateTime

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "call_event_quarters",
        sa.Column("client_id", sa.Integer(), nullable=False),
        sa.Column("quarter", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("calls", sa.Integer(), nullable=False),
        sa.Column("newest_ingest", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("client_id", "quarter", name="pk_call_event_quarters"),
        sa.ForeignKeyConstraint(["client_id"], ["clients.id"], name="fk_call_event_quarters_client_id_clients",
                                ondelete="RESTRICT"),
    )
    if op.get_bind().dialect.name == "postgresql":
        quarter = "floor(extract(epoch FROM started_at) / 900)::bigint"
    else:
        quarter = "CAST(strftime('%s', started_at) AS INTEGER) / 900"
    op.execute(f"INSERT INTO call_event_quarters (client_id, quarter, calls, newest_ingest)"
               f" SELECT client_id, {quarter}, count(*), max(ingested_at) FROM call_events GROUP BY client_id, {quarter}")


def downgrade() -> None:
    op.drop_table("call_event_quarters")
