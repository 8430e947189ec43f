"""The report store: one Parquet file per (report, client, local day), in a hive layout.

    <root>/<report>/client=<client id>/date=<YYYY-MM-DD>/part-0.parquet

Analysts open it with pyarrow, pandas or DuckDB without our code (``client`` and ``date`` come
back as columns from the folder names). The root is a local folder by default; any URI pyarrow's
file systems understand (``s3://bucket/prefix``, ``gs://...``) works too.

Writes are atomic and replace exactly one client-day: the file is written under a hidden temporary
name in its own folder (readers skip names starting with ``.``), flushed to disk (``fsync``), renamed
over ``part-0.parquet``, and the folder is flushed too, so after a crash a day is either its old file
or its new one, never a torn one. Any other file left in that folder (a stale part from an older
layout, a crashed writer's temporary file older than :data:`TEMP_GRACE`) is then deleted; a younger
temporary file may be a concurrent writer's and is left alone. Nothing outside the client-day's
folder is ever touched.

On object storage (``s3://bucket/prefix``, through pyarrow's ``S3FileSystem``; ``endpoint`` for an
S3-compatible server) there is no rename (pyarrow's ``move`` is a copy then a delete), but a PUT is
atomic: the file is encoded completely in memory first and then sent under its final key in one
``write`` and ``close`` (pyarrow sends one ``PutObject`` for a file below its 10 MiB part size, and a
multipart upload above it, which S3 only makes visible on ``CompleteMultipartUpload``). Readers see
the old object or the new one, never part of one; a writer that fails before the PUT leaves the old
object as it was; no temporary object is ever made, so there is nothing to sweep or copy.

Every file carries key-value metadata (``report_pipelines.*``: report, client, date, schema version
and the provenance its writer passes), so a file can be identified and its cache manifest row rebuilt
from the file alone.
"""

from __future__ import annotations

import ctypes
import datetime as dt
import hashlib
import os
import time
import uuid
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TypeVar

import numpy as np
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from report_pipelines.domain.reports import REPORT_NAME

T = TypeVar("T")
R = TypeVar("R")

PART = "part-0.parquet"
#: Version of the day files' layout and metadata (bump when a report's day schema changes shape).
SCHEMA_VERSION = "1"
#: A temporary file older than this is a crashed writer's, not a concurrent one's.
TEMP_GRACE_S = 3600.0
META_PREFIX = "report_pipelines."
#: Day tables above this (in memory) are written zstd-compressed, smaller ones snappy.
BIG_TABLE_BYTES = 256 * 1024
#: Threads that encode and write a batch's day files (the calls release the GIL).
WRITE_THREADS = 4
#: Files a write thread takes at a time: a task per file costs ~15 us of the thread pool's own (a 200-client
#: batch writes 1,600 files, three steps each); sixteen to a task still leaves ~100 tasks to balance the threads.
WRITE_CHUNK = 16
#: Reads of an object that was replaced while it was read, before giving up (object storage only).
READ_ATTEMPTS = 8


@dataclass(frozen=True, slots=True)
class StoredDay:
    """What was written for one client-day of one report."""

    path: str
    rows: int
    bytes: int
    checksum: str  # sha256 of the file's bytes


class ParquetReportStore:
    def __init__(self, root: str, *, endpoint: str | None = None) -> None:
        if root.startswith("s3://"):
            self.fs, self.root = s3_filesystem(endpoint), root[len("s3://"):]
        elif "://" in root:
            self.fs, self.root = pafs.FileSystem.from_uri(root)
        else:
            from pathlib import Path

            self.fs, self.root = pafs.LocalFileSystem(), str(Path(root).expanduser().resolve())
        self.uri = root
        self.root = self.root.rstrip("/")
        self.local = isinstance(self.fs, pafs.LocalFileSystem)

    # --- paths -------------------------------------------------------------------------------------
    def day_dir(self, report: str, client_id: int, day: dt.date) -> str:
        if not REPORT_NAME.fullmatch(report):  # names come from the registry; never a path from outside
            raise ValueError(f"invalid report name {report!r}")
        if isinstance(client_id, bool) or not isinstance(client_id, int) or client_id < 0:
            raise ValueError(f"invalid client id {client_id!r}")
        return f"{self.root}/{report}/client={client_id}/date={day.isoformat()}"

    def day_path(self, report: str, client_id: int, day: dt.date) -> str:
        return f"{self.day_dir(report, client_id, day)}/{PART}"

    # --- writing -----------------------------------------------------------------------------------
    def write_days(self, days: Sequence[tuple[str, int, dt.date, pa.Table, dict[str, str]]]) -> list[StoredDay]:
        """Replace several client-day files ``(report, client id, day, table, provenance)`` at once:
        each atomically, all durably with two file-system flushes for the lot (``syncfs`` after the
        temporary files are written, and after they are renamed) instead of two per file."""
        if not self.local or len(days) <= 1:
            return [self.write_day(*item) for item in days]
        staged: list[tuple[str, str, pa.Buffer, int]] = []

        def stage(item: tuple[str, int, dt.date, pa.Table, dict[str, str]]) -> tuple[str, str, pa.Buffer, int]:
            report, client_id, day, table, provenance = item
            folder = self.day_dir(report, client_id, day)
            data = self._encode(report, client_id, day, table, provenance)
            os.makedirs(folder, exist_ok=True)
            temporary = f"{folder}/.{PART}.{uuid.uuid4().hex}.tmp"
            with open(temporary, "wb") as out:
                staged.append((folder, temporary, data, table.num_rows))  # listed before written: swept on failure
                out.write(memoryview(data))
            return folder, temporary, data, table.num_rows

        def publish(item: tuple[str, str, pa.Buffer, int]) -> StoredDay:
            folder, temporary, data, rows = item
            final = f"{folder}/{PART}"
            os.replace(temporary, final)
            return StoredDay(path=final, rows=rows, bytes=data.size, checksum=hashlib.sha256(data).hexdigest())

        # Encoding (Arrow's Parquet writer) and the file-system calls release the GIL: a few threads
        # overlap them (a zone-day batch of small clients is mostly these calls: creating a file or a folder
        # costs ~0.7 ms on this machine's ext4, rewriting a small one ~0.05 ms; bench_speed.py (a) prints it).
        try:
            with ThreadPoolExecutor(max_workers=WRITE_THREADS) as pool:  # left only once every thread is done
                ordered = _map_chunked(pool, stage, days)
                _sync_filesystem(self.root)
                stored = _map_chunked(pool, publish, ordered)
                _sync_filesystem(self.root)
                _map_chunked(pool, lambda s: self._sweep(s.path.rsplit("/", 1)[0], keep=s.path), stored)
        except BaseException:
            for _, temporary, _, _ in staged:
                try:
                    os.unlink(temporary)
                except FileNotFoundError:
                    pass
            raise
        return stored

    def _encode(self, report: str, client_id: int, day: dt.date, table: pa.Table,
                provenance: dict[str, str] | None) -> pa.Buffer:
        metadata = {"report": report, "client": str(client_id), "date": day.isoformat(),
                    "schema_version": SCHEMA_VERSION, **(provenance or {})}
        table = table.replace_schema_metadata({
            **(table.schema.metadata or {}), **{f"{META_PREFIX}{k}".encode(): v.encode() for k, v in metadata.items()}})
        sink = pa.BufferOutputStream()
        # zstd for what is big (call_detail of a busy day: a third smaller than snappy); snappy for the small
        # summary tables, where zstd's per-file set-up costs more than the bytes it saves.
        compression = "zstd" if table.nbytes > BIG_TABLE_BYTES else "snappy"
        # Page checksums (CRC32): a reader of object storage detects a body that is not one whole version.
        pq.write_table(table, sink, compression=compression, write_statistics=True, write_page_checksum=True)
        return sink.getvalue()

    def write_day(self, report: str, client_id: int, day: dt.date, table: pa.Table,
                  provenance: dict[str, str] | None = None) -> StoredDay:
        """Replace the client-day's file with ``table``, atomically and durably."""
        folder = self.day_dir(report, client_id, day)
        data = self._encode(report, client_id, day, table, provenance)
        if self.local:
            self.fs.create_dir(folder, recursive=True)
        final = f"{folder}/{PART}"
        temporary = f"{folder}/.{PART}.{uuid.uuid4().hex}.tmp"
        if not self.local:
            self._put(final, data)
            self._sweep(folder, keep=final)
            return StoredDay(path=final, rows=table.num_rows, bytes=data.size, checksum=hashlib.sha256(data).hexdigest())
        try:
            _write_durably(temporary, data)
            self.fs.move(temporary, final)
            if self.local:
                _fsync_dir(folder)
        except BaseException:
            try:
                self.fs.delete_file(temporary)
            except (FileNotFoundError, OSError):
                pass
            raise
        self._sweep(folder, keep=final)
        return StoredDay(path=final, rows=table.num_rows, bytes=data.size, checksum=hashlib.sha256(data).hexdigest())

    def _sweep(self, folder: str, keep: str, grace_s: float = TEMP_GRACE_S) -> None:
        """Delete every other file of a client-day's folder, but a temporary file younger than ``grace_s``."""
        cutoff = time.time() - grace_s
        for info in self.fs.get_file_info(pafs.FileSelector(folder)):
            if info.path == keep or info.type != pafs.FileType.File:
                continue
            if _in_flight(info.base_name) and info.mtime is not None and info.mtime.timestamp() > cutoff:
                continue  # perhaps a concurrent writer's (it holds the client-day lock; this one is late)
            try:
                self.fs.delete_file(info.path)
            except FileNotFoundError:
                pass

    def stale_temporaries(self, grace_s: float = TEMP_GRACE_S) -> list[str]:
        """Temporary files older than ``grace_s`` anywhere in the store (left by killed writers)."""
        cutoff = time.time() - grace_s
        try:
            infos = self.fs.get_file_info(pafs.FileSelector(self.root, recursive=True, allow_not_found=True))
        except FileNotFoundError:
            return []
        return sorted(i.path for i in infos if i.type == pafs.FileType.File and _in_flight(i.base_name)
                      and i.mtime is not None and i.mtime.timestamp() <= cutoff)

    def delete_file(self, path: str) -> None:
        if not path.startswith(self.root + "/"):
            raise ValueError(f"{path!r} is not inside the store")
        try:
            self.fs.delete_file(path)
        except FileNotFoundError:
            pass

    def day_files(self) -> list[tuple[str, int, dt.date, str]]:
        """Every stored day file as ``(report, client id, date, path)`` (the repair pass walks them)."""
        try:
            infos = self.fs.get_file_info(pafs.FileSelector(self.root, recursive=True, allow_not_found=True))
        except FileNotFoundError:
            return []
        found = []
        for info in infos:
            if info.type != pafs.FileType.File or info.base_name != PART:
                continue
            parts = info.path[len(self.root) + 1:].split("/")
            if len(parts) != 4 or not parts[1].startswith("client=") or not parts[2].startswith("date="):
                continue
            try:
                found.append((parts[0], int(parts[1][7:]), dt.date.fromisoformat(parts[2][5:]), info.path))
            except ValueError:
                continue
        return sorted(found)

    def file_metadata(self, path: str) -> tuple[dict[str, str], int, int, str]:
        """A day file's ``report_pipelines.*`` metadata, rows, bytes and sha256."""
        data = self._read_whole(path, lambda data: data)
        meta = pq.read_metadata(pa.BufferReader(data))
        raw = meta.metadata or {}
        found = {k.decode()[len(META_PREFIX):]: v.decode() for k, v in raw.items() if k.decode().startswith(META_PREFIX)}
        return found, meta.num_rows, len(data), hashlib.sha256(data).hexdigest()

    def write_lookup(self, name: str, table: pa.Table) -> str:
        """A lookup table at the store root (``<root>/_<name>/part-0.parquet``), replaced atomically.

        Names start with ``_``, which pyarrow, pandas and DuckDB dataset discovery skip, so a dataset
        opened over a report folder never picks it up."""
        if not REPORT_NAME.fullmatch(name):
            raise ValueError(f"invalid lookup name {name!r}")
        folder = f"{self.root}/_{name}"
        sink = pa.BufferOutputStream()
        pq.write_table(table, sink, compression="zstd")
        data = sink.getvalue()
        if self.local:
            self.fs.create_dir(folder, recursive=True)
        final, temporary = f"{folder}/{PART}", f"{folder}/.{PART}.{uuid.uuid4().hex}.tmp"
        if not self.local:
            self._put(final, data)
            return final
        _write_durably(temporary, data)
        self.fs.move(temporary, final)
        return final

    def _put(self, key: str, data: pa.Buffer) -> None:
        """Object storage: the complete encoded file under its final key in one PUT (see the module
        docstring); the stream is only opened once the whole file is in memory."""
        out = self.fs.open_output_stream(key)
        out.write(data)
        out.close()

    def delete_client(self, report: str, client_id: int) -> None:
        """Remove every day of one client for one report (the client is being deleted)."""
        folder = self.day_dir(report, client_id, dt.date(2000, 1, 1)).rsplit("/", 1)[0]
        try:
            self.fs.delete_dir(folder)
        except FileNotFoundError:
            pass

    # --- reading -----------------------------------------------------------------------------------
    def _read_whole(self, path: str, parse: Callable[[pa.Buffer], T]) -> T:
        """``parse`` of a file's bytes, one complete version of it.

        Locally an open file keeps its version whatever renames happen. On object storage a read is a
        ranged GET of the size a HEAD found: if the object is replaced in between, the bytes are a
        prefix of the new version (or short), and a server that is not atomic (a test double) may even
        serve a body being written. All of it is caught (a Parquet file starts and ends with ``PAR1``,
        its footer parses, and every page's CRC matches when it is decoded) and the read is made again."""
        attempts = 1 if self.local else READ_ATTEMPTS
        for attempt in range(attempts):
            try:
                with self.fs.open_input_file(path) as source:
                    size = source.size()
                    data = source.read_buffer(size)
                if self.local or _complete_parquet(data, size):
                    return parse(data)
            except (pa.ArrowInvalid, OSError) as exc:
                if isinstance(exc, FileNotFoundError) or attempt == attempts - 1:
                    raise
            time.sleep(0.02 * (attempt + 1))
        raise OSError(f"{path}: the object kept changing while it was read ({attempts} attempts)")

    def exists(self, report: str, client_id: int, day: dt.date) -> bool:
        return self.fs.get_file_info(self.day_path(report, client_id, day)).type == pafs.FileType.File

    def read_days(self, report: str, client_id: int, days: Sequence[dt.date], schema: pa.Schema) -> pa.Table:
        """The stored day tables of ``days``, concatenated in date order, with ``client`` and ``date``.

        Every day must be stored (``FileNotFoundError`` otherwise).
        """
        ordered = sorted(set(days))
        if not ordered:
            return _with_keys(schema).empty_table()

        if not self.local:
            return self._read_days_whole(report, client_id, ordered, schema)
        # One Arrow dataset over exactly these files: the scanner reads and decodes them in parallel
        # (what an analyst's ``pyarrow.dataset`` read costs), ``date`` comes from the hive folder,
        # files of an older schema are cast to the current one, and rows stay in file (date) order (a
        # dataset made from a list of files reads to a table in the order of the list: pyarrow's guide).
        paths = [self.day_path(report, client_id, day) for day in ordered]
        folder = paths[0].rsplit("/", 2)[0]
        with_date = schema.remove_metadata().append(pa.field("date", pa.date32()))
        table = ds.dataset(paths, schema=with_date, format="parquet", filesystem=self.fs,
                           partitioning=_DATE_FOLDERS, partition_base_dir=folder).to_table()
        client = pa.array(np.full(table.num_rows, client_id, dtype=np.int64))
        return table.add_column(len(schema), "client", client)

    def _read_days_whole(self, report: str, client_id: int, ordered: list[dt.date], schema: pa.Schema) -> pa.Table:
        """Object storage: each day file read as one whole version (see ``_read_whole``), in threads."""
        def read(day: dt.date) -> pa.Table:
            path = self.day_path(report, client_id, day)
            table = self._read_whole(path, _decode).replace_schema_metadata(None)
            if table.schema != schema:
                table = table.select(schema.names).cast(schema)
            n = table.num_rows
            return table.append_column("client", pa.array(np.full(n, client_id, dtype=np.int64))).append_column(
                "date", pa.array(np.full(n, day, dtype="datetime64[D]")).cast(pa.date32()))

        with ThreadPoolExecutor(max_workers=min(8, len(ordered))) as pool:
            return pa.concat_tables(list(pool.map(read, ordered)))


_DATE_FOLDERS = ds.partitioning(pa.schema([("date", pa.date32())]), flavor="hive")


def s3_filesystem(endpoint: str | None = None) -> pafs.S3FileSystem:
    """pyarrow's S3 file system; credentials and region from the AWS SDK's usual chain
    (``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY``/``AWS_DEFAULT_REGION``, config files, an instance
    role), read by the SDK itself,
    ``endpoint`` (``http://host:port``) for an S3-compatible server instead of AWS."""
    options: dict[str, object] = {}
    if endpoint:
        scheme, _, address = endpoint.partition("://")
        options.update(endpoint_override=address.rstrip("/"), scheme=scheme)
    # allow_delayed_open: no multipart upload is opened before the first part is full, so a file below
    # the part size (10 MiB) goes as one PutObject on close.
    return pafs.S3FileSystem(allow_delayed_open=True, **options)


def _decode(data: pa.Buffer) -> pa.Table:
    return pq.ParquetFile(pa.BufferReader(data), page_checksum_verification=True).read()


def _complete_parquet(data: pa.Buffer, size: int) -> bool:
    """``data`` is a whole Parquet file of ``size`` bytes (its magic at both ends, its footer parses)."""
    if data.size != size or size < 12 or data[:4].to_pybytes() != b"PAR1" or data[-4:].to_pybytes() != b"PAR1":
        return False
    try:
        pq.read_metadata(pa.BufferReader(data))
    except (pa.ArrowInvalid, OSError):
        return False
    return True


def _with_keys(schema: pa.Schema) -> pa.Schema:
    return schema.append(pa.field("client", pa.int64())).append(pa.field("date", pa.date32()))


def _map_chunked(pool: ThreadPoolExecutor, fn: Callable[[T], R], items: Sequence[T]) -> list[R]:
    """``list(pool.map(fn, items))`` with ``WRITE_CHUNK`` items to a task."""
    chunks = [items[i:i + WRITE_CHUNK] for i in range(0, len(items), WRITE_CHUNK)]
    return [result for chunk in pool.map(lambda chunk: [fn(item) for item in chunk], chunks) for result in chunk]


def _write_durably(path: str, data: pa.Buffer) -> None:
    with open(path, "wb") as out:
        out.write(memoryview(data))
        out.flush()
        os.fsync(out.fileno())


def _sync_filesystem(path: str) -> None:
    """Flush the file system holding ``path`` (Linux ``syncfs``; elsewhere every file system)."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        descriptor = os.open(path, os.O_RDONLY)
        try:
            if libc.syncfs(descriptor) == 0:
                return
        finally:
            os.close(descriptor)
    except (OSError, AttributeError):
        pass
    os.sync()


def _fsync_dir(folder: str) -> None:
    descriptor = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def _in_flight(name: str) -> bool:
    """Another writer's temporary file (a concurrent writer of the same day holds the lock anyway)."""
    return name.startswith(f".{PART}.") and name.endswith(".tmp")
