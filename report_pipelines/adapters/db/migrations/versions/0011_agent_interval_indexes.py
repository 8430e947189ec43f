"""agent sessions and pauses: indexes for the day's intervals of a client (agent_availability);
call_event_changes by client and local day

Revision ID: 0011
Revises: 0007
Create Date: 2026-12-02

``agent_availability`` reads, per zone-day, each client's intervals that overlap the day:
``started_at < day end AND (ended_at IS NULL OR ended_at >= day start)``. Neither bound alone is
selective for every day (a recent day has few intervals ending after its start, an old one few
starting before its end), so both are indexed after the client and the planner takes the narrower
(or both, PostgreSQL's bitmap AND). A queue_log import records the days it changed in
``call_event_changes``; the freshness check of those reports looks them up by client and day.
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
    op.create_index("ix_call_event_changes_client_date", "call_event_changes", ["client_id", "local_date"])


def downgrade() -> None:
    op.drop_index("ix_call_event_changes_client_date", table_name="call_event_changes")
    for table in TABLES:
        op.drop_index(f"ix_{table}_client_ended", table_name=table)
        op.drop_index(f"ix_{table}_client_started", table_name=table)
