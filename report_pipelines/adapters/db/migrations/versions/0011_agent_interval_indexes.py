"""agent sessions and pauses: indexes for the day's intervals of a client (agent_availability)

Revision ID: 0011
Revises: 0007
Create Date: 2026-12-02

``agent_availability`` reads, per zone-day, each client's intervals that overlap the day:
``started_at < day end AND (ended_at IS NULL OR ended_at >= day start)``. Neither bound alone is
selective for every day (a recent day has few intervals ending after its start, an old one few
starting before its end), so both are indexed after the client and the planner takes the narrower
(or both, PostgreSQL's bitmap AND).
"""

from __future__ import annotations

from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

TABLES = ("queue_agent_sessions", "queue_agent_pauses")


def upgrade() -> None:
    for table in TABLES:
        op.create_index(f"ix_{table}_client_started", table, ["client_id", "started_at"])
        op.create_index(f"ix_{table}_client_ended", table, ["client_id", "ended_at"])


def downgrade() -> None:
    for table in TABLES:
        op.drop_index(f"ix_{table}_client_ended", table_name=table)
        op.drop_index(f"ix_{table}_client_started", table_name=table)
