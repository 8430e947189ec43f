"""The report store: one Parquet file per (report, client, local day), in a hive layout.

    <root>/<report>/client=<client id>/date=<YYYY-MM-DD>/part-0.parquet

Analysts open it with pyarrow, pandas or DuckDB without our code (``client`` and ``date`` come
back as columns from the folder names). The root is a local folder by default; any URI pyarrow's
file systems understand (``s3://bucket/prefix``, ``gs://...``) works too.

Writes are atomic and replace exactly one client-day: the file is written under a hidden temporary
name in its own folder (readers skip names starting with ``.``), then renamed over ``part-0.parquet``;
any other file left in that folder (a stale part from an older layout, a crashed temp file) is then
deleted. Nothing outside the client-day's folder is ever touched.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import uuid
from concurrent.futures import ThreadPoolExecutor
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from report_pipelines.domain.reports import REPORT_NAME

PART = "part-0.parquet"


@dataclass(frozen=True, slots=True)
class StoredDay:
    """What was written for one client-day of one report."""

    path: str
    rows: int
    bytes: int
    checksum: str  # sha256 of the file's bytes


class ParquetReportStore:
    def __init__(self, root: str) -> None:
        if "://" in root:
            self.fs, self.root = pafs.FileSystem.from_uri(root)
        else:
            from pathlib import Path

            self.fs, self.root = pafs.LocalFileSystem(), str(Path(root).expanduser().resolve())
        self.uri = root
        self.root = self.root.rstrip("/")

    # --- paths -------------------------------------------------------------------------------------
    def day_dir(self, report: str, client_id: int, day: dt.date) -> str:
        if not REPORT_NAME.match(report):  # names come from the registry; never a path from outside
            raise ValueError(f"invalid report name {report!r}")
        if isinstance(client_id, bool) or not isinstance(client_id, int) or client_id < 0:
            raise ValueError(f"invalid client id {client_id!r}")
        return f"{self.root}/{report}/client={client_id}/date={day.isoformat()}"

    def day_path(self, report: str, client_id: int, day: dt.date) -> str:
        return f"{self.day_dir(report, client_id, day)}/{PART}"

    # --- writing -----------------------------------------------------------------------------------
    def write_day(self, report: str, client_id: int, day: dt.date, table: pa.Table) -> StoredDay:
        """Replace the client-day's file with ``table``, atomically."""
        folder = self.day_dir(report, client_id, day)
        sink = pa.BufferOutputStream()
        pq.write_table(table, sink, compression="zstd", write_statistics=True)
        data = sink.getvalue()
        self.fs.create_dir(folder, recursive=True)
        final = f"{folder}/{PART}"
        temporary = f"{folder}/.{PART}.{uuid.uuid4().hex}.tmp"
        try:
            with self.fs.open_output_stream(temporary) as out:
                out.write(data)
            self.fs.move(temporary, final)
        except BaseException:
            try:
                self.fs.delete_file(temporary)
            except (FileNotFoundError, OSError):
                pass
            raise
        for info in self.fs.get_file_info(pafs.FileSelector(folder)):
            if info.path != final and info.type == pafs.FileType.File and not _in_flight(info.base_name):
                self.fs.delete_file(info.path)
        return StoredDay(path=final, rows=table.num_rows, bytes=data.size, checksum=hashlib.sha256(data).hexdigest())

    def delete_client(self, report: str, client_id: int) -> None:
        """Remove every day of one client for one report (the client is being deleted)."""
        folder = self.day_dir(report, client_id, dt.date(2000, 1, 1)).rsplit("/", 1)[0]
        try:
            self.fs.delete_dir(folder)
        except FileNotFoundError:
            pass

    def delete_day(self, report: str, client_id: int, day: dt.date) -> None:
        try:
            self.fs.delete_dir(self.day_dir(report, client_id, day))
        except FileNotFoundError:
            pass

    # --- reading -----------------------------------------------------------------------------------
    def exists(self, report: str, client_id: int, day: dt.date) -> bool:
        return self.fs.get_file_info(self.day_path(report, client_id, day)).type == pafs.FileType.File

    def read_days(self, report: str, client_id: int, days: Sequence[dt.date], schema: pa.Schema) -> pa.Table:
        """The stored day tables of ``days``, concatenated in date order, with ``client`` and ``date``.

        Every day must be stored (``FileNotFoundError`` otherwise). Files are read in parallel
        threads (Arrow releases the GIL while decoding).
        """
        ordered = sorted(set(days))
        if not ordered:
            return _with_keys(schema).empty_table()

        def read(day: dt.date) -> pa.Table:
            # ParquetFile.read is about half the cost of pq.read_table per small file (no dataset discovery).
            with self.fs.open_input_file(self.day_path(report, client_id, day)) as source:
                table = pq.ParquetFile(source).read()
            if table.schema != schema:
                table = table.select(schema.names).cast(schema)
            n = table.num_rows
            return table.append_column("client", pa.array(np.full(n, client_id, dtype=np.int64))).append_column(
                "date", pa.array(np.full(n, day, dtype="datetime64[D]")).cast(pa.date32()))

        with ThreadPoolExecutor(max_workers=min(8, len(ordered))) as pool:
            tables = list(pool.map(read, ordered))
        return pa.concat_tables(tables)


def _with_keys(schema: pa.Schema) -> pa.Schema:
    return schema.append(pa.field("client", pa.int64())).append(pa.field("date", pa.date32()))


def _in_flight(name: str) -> bool:
    """Another writer's temporary file (a concurrent writer of the same day holds the lock anyway)."""
    return name.startswith(f".{PART}.") and name.endswith(".tmp")
