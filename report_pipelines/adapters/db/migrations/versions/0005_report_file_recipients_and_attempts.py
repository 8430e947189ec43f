"""report file recipients, attempt history, build attempts

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01

Each report file gets one row per recipient (its own state: pending, deferred after a 4xx,
accepted, refused after a 5xx, failed) and a history of its build and send attempts;
``report_files.build_attempts`` counts build claims apart from send attempts. Files that exist
already get their recipients from their schedule: accepted for a sent file, failed for a failed
one, pending otherwise.
"""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa
from alembic import op

from report_pipelines.adapters.db.types import UTCDateTime

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

_BACKFILLED_STATE = {"sent": "accepted", "failed": "failed"}


def upgrade() -> None:
    with op.batch_alter_table("report_files") as batch:
        batch.add_column(sa.Column("build_attempts", sa.Integer(), server_default="0", nullable=False))
    recipients = op.create_table(
        "report_file_recipients",
        sa.Column("file_id", sa.BigInteger(), nullable=False),
        sa.Column("address", sa.String(320), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("last_reply", sa.Text(), nullable=True),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("file_id", "address", name="pk_report_file_recipients"),
        sa.ForeignKeyConstraint(["file_id"], ["report_files.id"], name="fk_report_file_recipients_file_id_report_files",
                                ondelete="CASCADE"),
        sa.CheckConstraint("state IN ('pending', 'deferred', 'accepted', 'refused', 'failed')",
                           name="ck_report_file_recipients_state"),
    )
    op.create_table(
        "report_file_attempts",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False),
        sa.Column("file_id", sa.BigInteger(), nullable=False),
        sa.Column("kind", sa.String(8), nullable=False),
        sa.Column("number", sa.Integer(), nullable=False),
        sa.Column("owner", sa.String(64), nullable=False),
        sa.Column("outcome", sa.String(16), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("recipients", sa.Text(), nullable=True),
        sa.Column("started_at", UTCDateTime(), nullable=False),
        sa.Column("finished_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_report_file_attempts"),
        sa.ForeignKeyConstraint(["file_id"], ["report_files.id"], name="fk_report_file_attempts_file_id_report_files",
                                ondelete="CASCADE"),
        sa.CheckConstraint("kind IN ('build', 'send')", name="ck_report_file_attempts_kind"),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_report_file_attempts_file", "report_file_attempts", ["file_id", "id"])

    # Recipients of the files that exist already, from their schedules.
    bind = op.get_bind()
    rows = bind.execute(sa.text(
        "SELECT f.id, f.state, s.recipients FROM report_files f JOIN report_schedules s ON s.id = f.schedule_id "
        "WHERE f.state <> 'skipped'")).all()
    now = dt.datetime.now(dt.UTC)
    values = [{"file_id": file_id, "address": address, "position": position,
               "state": _BACKFILLED_STATE.get(state, "pending"), "attempts": 0, "last_reply": None, "updated_at": now}
              for file_id, state, addresses in rows
              for position, address in enumerate(a for a in (addresses or "").split(",") if a)]
    if values:
        op.bulk_insert(recipients, values)


def downgrade() -> None:
    op.drop_index("ix_report_file_attempts_file", table_name="report_file_attempts")
    op.drop_table("report_file_attempts")
    op.drop_table("report_file_recipients")
    with op.batch_alter_table("report_files") as batch:
        batch.drop_column("build_attempts")
