"""call_events.pbx_call_id compared byte by byte (collation "C") on PostgreSQL

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-03

A call id is an opaque identifier ("1709998200.170"): no locale's order means anything for it. With
the database's collation (``C.UTF-8``, ``en_US.UTF-8``...) every comparison in the unique key
``(client_id, pbx_call_id)`` goes through ``strcoll`` and PostgreSQL sorts without abbreviated keys;
with "C" it compares bytes, so the key's build after a bulk load and its maintenance on every insert
are cheaper, and ``ORDER BY ..., pbx_call_id`` gives SQLite's (BINARY) and Python's order. Equality
is unchanged (both collations are deterministic), so no row becomes a duplicate or stops being one.
The column keeps its type; PostgreSQL rebuilds the key's index. SQLite compares bytes already.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from report_pipelines.domain.calls import MAX_TEXT

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def _collate(collation: str | None) -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.alter_column("call_events", "pbx_call_id", existing_type=sa.String(MAX_TEXT), existing_nullable=False,
                    type_=sa.String(MAX_TEXT, collation=collation))


def upgrade() -> None:
    _collate("C")


def downgrade() -> None:
    _collate(None)
