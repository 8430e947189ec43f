"""The Parquet report store: hive layout, atomic replacement, nothing outside the client-day touched.

The contract tests run twice: on a local folder and on object storage (``s3://``, a moto server started
by the test session); the store must behave the same on both."""

from __future__ import annotations

import datetime as dt
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.fs as pafs
import pytest

from report_pipelines.adapters.report_store import ParquetReportStore

SCHEMA = pa.schema([("queue", pa.string()), ("offered", pa.int64())])
DAY = dt.date(2024, 3, 31)


def table(*rows: tuple[str, int]) -> pa.Table:
    return pa.Table.from_pylist([{"queue": q, "offered": n} for q, n in rows], schema=SCHEMA)


@pytest.fixture(params=["local", "s3"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> ParquetReportStore:
    """An empty store on a local folder, or on a fresh bucket of the test S3 server."""
    if request.param == "local":
        return ParquetReportStore(str(tmp_path / "store"))
    server = request.getfixturevalue("s3_server")
    return ParquetReportStore(f"s3://{server.new_bucket()}/reports", endpoint=server.endpoint)


def names_in(store: ParquetReportStore, folder: str) -> list[str]:
    return sorted(i.base_name for i in store.fs.get_file_info(pafs.FileSelector(folder)) if i.type == pafs.FileType.File)


def put(store: ParquetReportStore, path: str, data: bytes) -> None:
    with store.fs.open_output_stream(path) as out:
        out.write(data)


def test_both_backends_lay_out_hive_folders_that_pyarrow_and_duckdb_read_through_the_same_file_system(
        store: ParquetReportStore) -> None:
    stored = store.write_day("queue_performance", 7, DAY, table(("sales", 3), ("support", 5)))
    assert stored.path == f"{store.root}/queue_performance/client=7/date=2024-03-31/part-0.parquet"
    store.write_day("queue_performance", 7, DAY + dt.timedelta(days=1), table(("sales", 1)))
    # an analyst's dataset over the store's file system (pyarrow.fs.S3FileSystem for s3://)
    plain = ds.dataset(f"{store.root}/queue_performance", filesystem=store.fs, format="parquet",
                       partitioning="hive")
    rows = zip(plain.to_table()["client"].to_pylist(), map(str, plain.to_table()["date"].to_pylist()),
               plain.to_table()["offered"].to_pylist(), strict=True)
    assert sorted(rows) == [(7, "2024-03-31", 3), (7, "2024-03-31", 5), (7, "2024-04-01", 1)]
    # DuckDB over that dataset (no DuckDB S3 extension needed)
    total = duckdb.sql("SELECT sum(offered) FROM plain WHERE client = 7 AND date = '2024-03-31'").fetchall()[0][0]
    assert total == 8


def test_layout_is_hive_and_readable_without_our_code(tmp_path: Path) -> None:
    store = ParquetReportStore(str(tmp_path))
    stored = store.write_day("queue_performance", 7, DAY, table(("sales", 3), ("support", 5)))
    assert stored.path == str(tmp_path / "queue_performance" / "client=7" / "date=2024-03-31" / "part-0.parquet")
    assert (stored.rows, len(stored.checksum)) == (2, 64)
    store.write_day("queue_performance", 7, DAY + dt.timedelta(days=1), table(("sales", 1)))
    # pyarrow alone, with hive partitioning, finds client and date as columns:
    plain = ds.dataset(tmp_path / "queue_performance", format="parquet", partitioning="hive").to_table()
    rows = zip(plain["client"].to_pylist(), map(str, plain["date"].to_pylist()), plain["offered"].to_pylist(), strict=True)
    assert sorted(rows) == [(7, "2024-03-31", 3), (7, "2024-03-31", 5), (7, "2024-04-01", 1)]
    # DuckDB too:
    total = duckdb.sql(
        f"SELECT sum(offered) FROM read_parquet('{tmp_path}/queue_performance/*/*/*.parquet', hive_partitioning=1) "
        "WHERE client = 7 AND date = '2024-03-31'").fetchall()[0][0]
    assert total == 8


def test_rewrite_replaces_exactly_the_client_day(store: ParquetReportStore) -> None:
    store.write_day("r", 1, DAY, table(("a", 1)))
    store.write_day("r", 2, DAY, table(("b", 2)))
    store.write_day("r", 1, DAY + dt.timedelta(days=1), table(("c", 3)))
    folder = store.day_dir("r", 1, DAY)
    put(store, f"{folder}/part-1.parquet", b"stale part from an older layout")
    put(store, f"{folder}/.part-0.parquet.deadbeef.tmp", b"a crashed writer's temp file")
    store.write_day("r", 1, DAY, table(("a", 10), ("z", 1)))
    assert names_in(store, folder) == [".part-0.parquet.deadbeef.tmp", "part-0.parquet"]
    read = store.read_days("r", 1, [DAY], SCHEMA)
    assert read.column("offered").to_pylist() == [10, 1]
    assert store.read_days("r", 2, [DAY], SCHEMA).column("queue").to_pylist() == ["b"]
    assert store.read_days("r", 1, [DAY + dt.timedelta(days=1)], SCHEMA).column("queue").to_pylist() == ["c"]
    assert [(r, c, d) for r, c, d, _ in store.day_files()] == [
        ("r", 1, DAY), ("r", 1, DAY + dt.timedelta(days=1)), ("r", 2, DAY)]


def test_same_table_same_bytes(store: ParquetReportStore) -> None:
    first = store.write_day("r", 1, DAY, table(("a", 1), ("b", 2)))
    second = store.write_day("r", 1, DAY, table(("a", 1), ("b", 2)))
    assert first.checksum == second.checksum


class _FailingWrite:
    """The store's file system, except that the last step of a write fails (a full disk, a lost
    connection): the rename of the temporary file locally, the upload on object storage."""

    def __init__(self, fs) -> None:
        self._fs = fs

    def __getattr__(self, name: str):
        return getattr(self._fs, name)

    def move(self, src: str, dest: str) -> None:
        raise OSError("No space left on device")

    def open_output_stream(self, path: str, *args, **kwargs):
        raise OSError("No space left on device (upload refused)")


def test_a_failed_write_leaves_the_previous_file_and_no_temp(store: ParquetReportStore) -> None:
    store.write_day("r", 1, DAY, table(("a", 1)))
    real, store.fs = store.fs, _FailingWrite(store.fs)
    with pytest.raises(OSError, match="No space"):
        store.write_day("r", 1, DAY, table(("new", 2)))
    store.fs = real
    assert store.read_days("r", 1, [DAY], SCHEMA).column("queue").to_pylist() == ["a"]
    assert names_in(store, store.day_dir("r", 1, DAY)) == ["part-0.parquet"]


def test_a_reader_sees_the_old_file_or_the_new_one_never_a_partial_one(store: ParquetReportStore) -> None:
    """Rewrites of one client-day (a big table: a file of megabytes, of another size each version) while
    a reader keeps reading it through the store: every read is one complete version."""
    versions = [pa.Table.from_pylist([{"queue": f"{v}-{i:07d}", "offered": i} for i in range(n)], schema=SCHEMA)
                for v, n in (("old", 60_000), ("new", 45_000))]
    store.write_day("r", 1, DAY, versions[0])
    seen: list[int] = []
    done = threading.Event()

    def read() -> None:
        while not done.is_set() or not seen:  # at least one read, however fast the writes were
            days = store.read_days("r", 1, [DAY], SCHEMA)
            assert days.drop_columns(["client", "date"]).equals(versions[0 if days.num_rows == 60_000 else 1])
            seen.append(days.num_rows)

    reader = ThreadPoolExecutor(1).submit(read)
    try:
        for i in range(1, 9):
            store.write_day("r", 1, DAY, versions[i % 2])
    finally:
        done.set()
    reader.result()
    assert seen and set(seen) <= {60_000, 45_000}


@pytest.mark.parametrize("report", ["../etc", "call-detail", "", "a/b", "CallDetail"])
def test_hostile_report_names_never_become_paths(tmp_path: Path, report: str) -> None:
    with pytest.raises(ValueError):
        ParquetReportStore(str(tmp_path)).write_day(report, 1, DAY, table(("a", 1)))
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("client_id", [-1, True, "1", 1.5])
def test_client_ids_must_be_non_negative_integers(tmp_path: Path, client_id: object) -> None:
    with pytest.raises(ValueError):
        ParquetReportStore(str(tmp_path)).day_path("r", client_id, DAY)  # type: ignore[arg-type]


def test_reading_orders_days_and_adds_keys(store: ParquetReportStore) -> None:
    days = [DAY + dt.timedelta(days=i) for i in range(5)]
    for i, day in enumerate(days):
        store.write_day("r", 3, day, table(*[(f"q{i}", j) for j in range(i + 1)]))
    read = store.read_days("r", 3, list(reversed(days)), SCHEMA)
    assert read.column("date").to_pylist() == [d for i, d in enumerate(days) for _ in range(i + 1)]
    assert set(read.column("client").to_pylist()) == {3}
    with pytest.raises(FileNotFoundError):
        store.read_days("r", 3, [DAY - dt.timedelta(days=1)], SCHEMA)


def test_a_local_batch_of_days_is_written_by_several_threads_each_file_whole_and_a_failure_publishes_nothing(
        tmp_path: Path) -> None:
    # (on object storage each day is its own PUT: a batch is not atomic there, each file is)
    store = ParquetReportStore(str(tmp_path / "store"))
    days = [DAY + dt.timedelta(days=i) for i in range(12)]
    first = store.write_days([("queue_performance", client, day, table(("sales", client * 100 + i)), {})
                              for client in (3, 4) for i, day in enumerate(days)])
    assert len(first) == 24 and all(s.path.endswith("/part-0.parquet") for s in first)
    before = {s.path: s.checksum for s in first}

    items = [("queue_performance", 3, day, table(("support", 1)), {}) for day in days]
    items[10] = ("queue_performance", 3, days[10], "not a table", {})
    with pytest.raises(Exception):  # noqa: B017 - whatever the encoder raises
        store.write_days(items)
    for day in days:  # every old file still there, whole, and no temporary file left behind
        folder = store.day_dir("queue_performance", 3, day)
        assert names_in(store, folder) == ["part-0.parquet"]
        assert store.read_days("queue_performance", 3, [day], SCHEMA)["queue"].to_pylist() == ["sales"]
    assert {s.path: s.checksum for s in first} == before
    assert sorted(store.read_days("queue_performance", 4, days, SCHEMA)["offered"].to_pylist()) == \
        [400 + i for i in range(12)]
