"""The cache manifest's rules: what a cached client-day is, and when it is stale."""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc


@dataclass(frozen=True, slots=True)
class SourceState:
    """What the events table holds for one client-day: its count and newest ingest instant."""

    rows: int
    watermark: dt.datetime | None


@dataclass(frozen=True, slots=True)
class KeptRow:
    """A manifest row's kept day table (Arrow IPC): its row's checksum (the SHA-256 of the day's Parquet
    file, written with it), and its bytes, unless the reader said it holds them decoded (``data`` None)."""

    checksum: str
    data: bytes | None


@dataclass(frozen=True, slots=True)
class KeptPeriod:
    """What the manifest holds of one report's days ``first..last`` for a client: how many of them keep
    their table with the row, and :func:`period_digest` of every row's checksum (None: no row)."""

    kept_days: int
    digest: str | None

    def complete(self, first: dt.date, last: dt.date) -> bool:
        """Every day of ``first..last`` keeps its table (one row per day: the manifest's unique key)."""
        return self.digest is not None and self.kept_days == (last - first).days + 1


def period_digest(checksums: Iterable[str]) -> str:
    """The SHA-256 (hex) of the days' checksums (hex, fixed length) concatenated in date order: the same
    days as they are give the same digest, a day recomputed since another. The licences query computes
    the same in SQL (``report_pipelines.adapters.db.commercial``), so a read can name a period held in
    its memo without the manifest's rows."""
    return hashlib.sha256("".join(checksums).encode("ascii")).hexdigest()


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
        """:meth:`SourceStamp.is_fresh` of this row."""
        return SourceStamp(self.source_rows, self.source_watermark, self.computed_at).is_fresh(source, changed_at)


@dataclass(frozen=True, slots=True)
class SourceStamp:
    """What a manifest row recorded of its source when it was computed: all that freshness is decided on."""

    source_rows: int
    source_watermark: dt.datetime | None
    computed_at: dt.datetime

    def is_fresh(self, source: SourceState, changed_at: dt.datetime | None = None) -> bool:
        """Still what the source says: same number of events and no event ingested since, and not
        computed before the day's last recorded change (``changed_at``, from ``call_event_changes``).

        Events are only ever added (late data) or, by an import fix, replaced; either changes the
        count or moves the watermark past the one recorded here. A queue_log import changes a day's
        agent sessions and pauses without touching its calls: it records a change instead.
        """
        return (source.rows == self.source_rows and source.watermark == self.source_watermark
                and (changed_at is None or self.computed_at >= changed_at))


def call_ids_checksum(call_ids: Iterable[str] | pa.Array | pa.ChunkedArray) -> str:
    """Order-independent fingerprint of a day's call ids (the asset check compares it with the source):
    sha256 of the ids sorted, each followed by a newline.

    An Arrow string column is sorted by Arrow (its byte order is Python's code-point order for UTF-8)
    and hashed as one buffer: the same digest as the ids one by one, without a Python step per call.
    """
    if isinstance(call_ids, pa.ChunkedArray):
        call_ids = call_ids.combine_chunks()
    if isinstance(call_ids, pa.Array) and pa.types.is_string(call_ids.type) and not call_ids.null_count:
        if not len(call_ids):
            return hashlib.sha256().hexdigest()
        ordered = call_ids.take(pc.sort_indices(call_ids))
        lines = pc.binary_join_element_wise(ordered, pa.scalar("", pa.string()), "\n")  # every id and its newline
        _, offsets, data = lines.buffers()
        bounds = np.frombuffer(offsets, dtype=np.int32, count=len(lines) + 1, offset=lines.offset * 4)
        return hashlib.sha256(memoryview(data)[int(bounds[0]):int(bounds[-1])]).hexdigest()
    digest = hashlib.sha256()
    for call_id in sorted(call_ids.to_pylist() if isinstance(call_ids, pa.Array) else call_ids):
        digest.update(call_id.encode())
        digest.update(b"\n")
    return digest.hexdigest()
