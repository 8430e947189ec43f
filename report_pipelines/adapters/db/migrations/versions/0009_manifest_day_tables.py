"""manifest day tables: the small day tables of the summary reports kept with their manifest rows

Revision ID: 0009
Revises: 0006
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("report_cache_manifest") as batch:
        batch.add_column(sa.Column("day_table", sa.LargeBinary(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("report_cache_manifest") as batch:
        batch.drop_column("day_table")
