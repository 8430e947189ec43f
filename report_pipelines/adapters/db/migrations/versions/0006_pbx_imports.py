"""PBX imports: direction 'unknown', call_events.queued_at, client PBX config, queue_log tables,
replaced client-days

Revision ID: 0006
Revises: 0004
Create Date: 2026-11-30
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from report_pipelines.adapters.db.types import UTCDateTime

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

OLD_DIRECTIONS = ("inbound", "outbound", "internal")
DIRECTIONS = ("inbound", "outbound", "internal", "unknown")
QUEUED_WITHIN_CALL = ("queued_at IS NULL OR (queued_at >= started_at AND queued_at <= ended_at"
                      " AND (answered_at IS NULL OR queued_at <= answered_at))")
BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def _in(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


def upgrade() -> None:
    # On SQLite the table is rebuilt (batch mode): the constraints it keeps are reflected, the
    # direction check is replaced and the queue-entry check added. Names go through the models'
    # naming convention, as in 0001 (so the database's are ck_call_events_ck_call_events_*).
    with op.batch_alter_table("call_events", recreate="auto") as batch:
        batch.add_column(sa.Column("queued_at", UTCDateTime(), nullable=True))
        batch.drop_constraint("ck_call_events_direction", type_="check")
        batch.create_check_constraint("ck_call_events_direction", _in("direction", DIRECTIONS))
        batch.create_check_constraint("ck_call_events_queued_within_call", QUEUED_WITHIN_CALL)

    op.create_table(
        "client_pbx_config",
        sa.Column("client_id", sa.Integer(), nullable=False),
        sa.Column("trunks", sa.Text(), nullable=False),
        sa.Column("extensions", sa.Text(), nullable=False),
        sa.Column("dids", sa.Text(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("client_id", name="pk_client_pbx_config"),
        sa.ForeignKeyConstraint(["client_id"], ["clients.id"], name="fk_client_pbx_config_client_id_clients",
                                ondelete="CASCADE"),
    )
    op.create_table(
        "queue_calls",
        sa.Column("id", BigId, autoincrement=True, nullable=False),
        sa.Column("client_id", sa.Integer(), nullable=False),
        sa.Column("callid", sa.String(128), nullable=False),
        sa.Column("pbx_call_id", sa.String(128), nullable=True),
        sa.Column("queue", sa.String(128), nullable=False),
        sa.Column("entered_at", UTCDateTime(), nullable=False),
        sa.Column("connected_at", UTCDateTime(), nullable=True),
        sa.Column("ended_at", UTCDateTime(), nullable=True),
        sa.Column("agent", sa.String(128), nullable=True),
        sa.Column("outcome", sa.String(16), nullable=False),
        sa.Column("ring_attempts", sa.Integer(), nullable=False),
        sa.Column("caller", sa.String(128), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_queue_calls"),
        sa.ForeignKeyConstraint(["client_id"], ["clients.id"], name="fk_queue_calls_client_id_clients",
                                ondelete="RESTRICT"),
        sa.UniqueConstraint("client_id", "callid", "queue", "entered_at", name="uq_queue_calls_attempt"),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_queue_calls_client_entered", "queue_calls", ["client_id", "entered_at"])
    for table, extra in (("queue_agent_sessions", []), ("queue_agent_pauses", [sa.Column("reason", sa.String(128))])):
        op.create_table(
            table,
            sa.Column("id", BigId, autoincrement=True, nullable=False),
            sa.Column("client_id", sa.Integer(), nullable=False),
            sa.Column("queue", sa.String(128), nullable=False),
            sa.Column("agent", sa.String(128), nullable=False),
            sa.Column("started_at", UTCDateTime(), nullable=False),
            sa.Column("ended_at", UTCDateTime(), nullable=True),
            *extra,
            sa.PrimaryKeyConstraint("id", name=f"pk_{table}"),
            sa.ForeignKeyConstraint(["client_id"], ["clients.id"], name=f"fk_{table}_client_id_clients",
                                    ondelete="RESTRICT"),
            sa.UniqueConstraint("client_id", "queue", "agent", "started_at", name=f"uq_{table}_start"),
            sqlite_autoincrement=True,
        )
    op.create_table(
        "call_event_changes",
        sa.Column("id", BigId, autoincrement=True, nullable=False),
        sa.Column("client_id", sa.Integer(), nullable=False),
        sa.Column("local_date", sa.Date(), nullable=False),
        sa.Column("changed_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_call_event_changes"),
        sa.ForeignKeyConstraint(["client_id"], ["clients.id"], name="fk_call_event_changes_client_id_clients",
                                ondelete="RESTRICT"),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_call_event_changes_changed", "call_event_changes", ["changed_at"])


def downgrade() -> None:
    op.drop_index("ix_call_event_changes_changed", table_name="call_event_changes")
    op.drop_table("call_event_changes")
    op.drop_table("queue_agent_pauses")
    op.drop_table("queue_agent_sessions")
    op.drop_index("ix_queue_calls_client_entered", table_name="queue_calls")
    op.drop_table("queue_calls")
    op.drop_table("client_pbx_config")
    # Calls of unknown direction cannot go back under the old constraint: they are deleted.
    op.execute("DELETE FROM call_events WHERE direction = 'unknown'")
    with op.batch_alter_table("call_events", recreate="auto") as batch:
        batch.drop_constraint("ck_call_events_queued_within_call", type_="check")
        batch.drop_constraint("ck_call_events_direction", type_="check")
        batch.create_check_constraint("ck_call_events_direction", _in("direction", OLD_DIRECTIONS))
        batch.drop_column("queued_at")
