"""The cache manifest's rules: what a cached client-day is, and when it is stale."""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class SourceState:
    """What the events table holds for one client-day: its count and newest ingest instant."""

    rows: int
    watermark: dt.datetime | None


@dataclass(frozen=True, slots=True)
class CachedDay:
    """One manifest row: a report's day table for one client-day, and the source it came from."""

    report: str
    client_id: int
    local_date: dt.date
    path: str
    rows: int
    bytes: int
    checksum: str
    source_rows: int
    source_checksum: str
    source_watermark: dt.datetime | None
    rejected_rows: int
    rejected_reasons: dict[str, int]
    computed_at: dt.datetime
    run_id: str | None = None
    day_table: bytes | None = None  # the day table as Arrow IPC (summary reports), else None: read the file

    def is_fresh(self, source: SourceState, changed_at: dt.datetime | None = None) -> bool:
        """Still what the source says: same number of events and no event ingested since, and not
        computed before the day's last recorded change (``changed_at``, from ``call_event_changes``).

        Events are only ever added (late data) or, by an import fix, replaced; either changes the
        count or moves the watermark past the one recorded here. A queue_log import changes a day's
        agent sessions and pauses without touching its calls: it records a change instead.
        """
        return (source.rows == self.source_rows and source.watermark == self.source_watermark
                and (changed_at is None or self.computed_at >= changed_at))


def call_ids_checksum(call_ids: Iterable[str]) -> str:
    """Order-independent fingerprint of a day's call ids (the asset check compares it with the source)."""
    digest = hashlib.sha256()
    for call_id in sorted(call_ids):
        digest.update(call_id.encode())
        digest.update(b"\n")
    return digest.hexdigest()
