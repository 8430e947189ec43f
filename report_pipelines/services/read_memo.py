"""What a process keeps of the summaries it has read: decoded day tables and presented periods.

A cached period summary costs its database part (the validation and the manifest's rows) and then its
own work: decoding the day tables kept with the manifest rows, re-aggregating them and presenting the
frame, about as much again. A process that serves the same periods over and over (the HTTP API behind a
dashboard, a client asking for "the last 30 days" each morning) keeps both here, keyed by what they
were made from:

* a **day table**, by its manifest row's ``checksum`` (the SHA-256 of the day's Parquet file, written in
  the same statement as the kept table): the manifest read names the checksums this process holds, and
  the database sends a table only for the others (a recomputed day has a new checksum, so it is sent);
* a **presented period**, by the report, the client, the dates and the digest of every day's checksum
  (:func:`report_pipelines.domain.cache.period_digest`): the same days give the same frame (``combine``
  and ``present`` are pure), a day recomputed since gives another key.

Nothing here decides what a read may see: every read still validates the client and its licences, and
only what the manifest names is reused: the rows' checksums, or (PostgreSQL, a period whose days all keep
their table) the digest the validation's own statement computed from them, so a period read again is
one statement. A period with today in it, or with a day kept in its file only, is not kept. Bounded by
bytes (least recently used first out); ``REPORT_PIPELINES_READ_MEMO_MB`` sets the bound, 0 keeps
nothing. Thread-safe; one per :class:`App`.
"""

from __future__ import annotations

import datetime as dt
import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass

import pandas as pd
import pyarrow as pa


@dataclass(frozen=True, slots=True)
class DecodedDay:
    """A day table decoded: the schema it was read against and its record batches."""

    schema: pa.Schema
    batches: tuple[pa.RecordBatch, ...]


_Key = tuple


def decode_kept(blob: bytes, schemas: dict[bytes, pa.Schema]) -> DecodedDay:
    """A kept day table (an Arrow IPC stream) decoded; ``schemas`` holds the schema messages already
    decoded (a report's days share one: it is decoded once, not once per day, ~18 us each). A day that
    holds a dictionary is read by its own stream reader."""
    source = pa.BufferReader(blob)
    header = pa.ipc.read_message(source)
    schema_bytes = header.metadata.to_pybytes()
    schema = schemas.get(schema_bytes)
    if schema is None:
        schema = schemas[schema_bytes] = pa.ipc.read_schema(header)
    batches: list[pa.RecordBatch] = []
    while True:
        try:
            message = pa.ipc.read_message(source)
        except EOFError:  # the end-of-stream marker
            break
        if message.type != "record batch":
            table = pa.ipc.open_stream(blob).read_all()
            return DecodedDay(table.schema, tuple(table.to_batches()))
        batches.append(pa.ipc.read_record_batch(message, schema))
    return DecodedDay(schema, tuple(batches))


class ReadMemo:
    """Decoded day tables and presented periods, least recently used first out past ``max_bytes``."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max(0, int(max_bytes))
        self._lock = threading.Lock()
        self._items: OrderedDict[_Key, tuple[object, int]] = OrderedDict()
        self._bytes = 0
        #: (client, report) -> {date: checksum} of the day tables held, to name them to the manifest read.
        self._days: dict[tuple[int, str], dict[dt.date, str]] = {}
        #: A day table's key -> the (client, report, date)s it is (identical files: two empty days of one
        #: client), to forget those dates when the table goes.
        self._owners: dict[_Key, set[tuple[int, str, dt.date]]] = {}
        #: Schema messages decoded (a few per report and version; kept even when nothing else is).
        self.schemas: dict[bytes, pa.Schema] = {}
        self.hits = self.misses = 0  # of presented periods

    @property
    def enabled(self) -> bool:
        return self.max_bytes > 0

    @property
    def size(self) -> int:
        """Bytes held (Arrow buffers and the frames' own memory)."""
        return self._bytes

    def held(self, client_id: int, report: str, days: Sequence[dt.date]) -> dict[str, DecodedDay]:
        """The decoded day tables held for these of the client's days, by checksum: the caller keeps the
        references, so a table named to the manifest read cannot be dropped before it is used."""
        if not self.enabled:
            return {}
        with self._lock:
            by_date = self._days.get((client_id, report))
            if not by_date:
                return {}
            found: dict[str, DecodedDay] = {}
            for day in days:
                checksum = by_date.get(day)
                if checksum is not None:
                    item = self._items.get(("day", checksum))
                    if item is not None:
                        self._items.move_to_end(("day", checksum))
                        found[checksum] = item[0]  # type: ignore[assignment]
            return found

    def keep_day(self, client_id: int, report: str, day: dt.date, checksum: str, decoded: DecodedDay,
                 size: int) -> None:
        """Hold ``decoded`` (``size``: the IPC bytes it was read from, which its batches point into)."""
        if not self.enabled:
            return
        size += 200
        key, owner = ("day", checksum), (client_id, report, day)
        with self._lock:
            previous = self._days.get((client_id, report), {}).get(day)
            if previous is not None and previous != checksum:  # the day was recomputed: its old table goes
                self._drop(("day", previous))
            if key not in self._items:
                self._put(key, decoded, size)
            if key in self._items:
                self._owners.setdefault(key, set()).add(owner)
                self._days.setdefault((client_id, report), {})[day] = checksum

    def summary(self, key: _Key, *, count_miss: bool = True) -> pd.DataFrame | None:
        """A copy of the presented period kept under ``key`` (the caller may change it), or None (counted
        as a miss unless ``count_miss`` is false: a look ahead whose miss the read counts later)."""
        if not self.enabled:
            return None
        with self._lock:
            item = self._items.get(("summary", key))
            if item is None:
                self.misses += count_miss
                return None
            self._items.move_to_end(("summary", key))
            self.hits += 1
            frame = item[0]
        return frame.copy()  # type: ignore[union-attr]

    def keep_summary(self, key: _Key, frame: pd.DataFrame) -> None:
        if not self.enabled:
            return
        own = frame.copy()
        size = 64 * (own.shape[0] + 1) * (own.shape[1] + 1) + 1_000  # a bound, not a count (pandas' own: ~2 ms)
        with self._lock:
            self._put(("summary", key), own, size)

    def clear(self) -> None:
        with self._lock:
            self._items.clear()
            self._days.clear()
            self._owners.clear()
            self._bytes = 0

    # -- under the lock ------------------------------------------------------------------------------
    def _put(self, key: _Key, value: object, size: int) -> None:
        if size > self.max_bytes:
            return
        self._drop(key)
        self._items[key] = (value, size)
        self._bytes += size
        while self._bytes > self.max_bytes:
            oldest = next(iter(self._items))
            self._drop(oldest)

    def _drop(self, key: _Key) -> None:
        item = self._items.pop(key, None)
        if item is None:
            return
        self._bytes -= item[1]
        for client_id, report, day in self._owners.pop(key, ()):
            by_date = self._days.get((client_id, report))
            if by_date is not None and by_date.get(day) == key[1]:
                del by_date[day]
                if not by_date:
                    del self._days[(client_id, report)]
