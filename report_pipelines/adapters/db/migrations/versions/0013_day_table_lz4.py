"""the manifest's day tables compressed with lz4 on PostgreSQL (was the server's default, pglz)

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-03

A day table kept with its manifest row (Arrow IPC, ~2.3 KB for a small client's summary) is past
PostgreSQL's 2 KB TOAST threshold, so the server compresses it on every write: with pglz that was a
quarter of recording a 200-client zone-day's 1,600 rows (bench: 318 -> 240 and 230 -> 193 ms, lz4
against pglz, in turns), for about the same bytes (2.8 MB -> 0.96 MB with pglz, 1.19 MB with lz4).
Only new values are affected; old ones stay readable as they are. A server older than 14, or built
without lz4, keeps pglz: the change is skipped, nothing else depends on it. SQLite has no TOAST.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def _compression(method: str) -> None:
    bind = op.get_bind()
    if bind.dialect.name != "postgresql" or int(bind.execute(sa.text("SHOW server_version_num")).scalar_one()) < 140000:
        return
    if method == "lz4":
        probe = bind.begin_nested()  # a server built without lz4 refuses the setting; the migration goes on
        try:
            bind.execute(sa.text("SET LOCAL default_toast_compression = 'lz4'"))
        except sa.exc.DBAPIError:
            return
        finally:
            probe.rollback()  # the setting was only a question
    op.execute(f"ALTER TABLE report_cache_manifest ALTER COLUMN day_table SET COMPRESSION {method}")


def upgrade() -> None:
    _compression("lz4")


def downgrade() -> None:
    _compression("default")  # the server's default_toast_compression again
