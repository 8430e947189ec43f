"""The Parquet report store: hive layout, atomic replacement, nothing outside the client-day touched."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.dataset as ds
import pytest

from report_pipelines.adapters.report_store import ParquetReportStore

SCHEMA = pa.schema([("queue", pa.string()), ("offered", pa.int64())])
DAY = dt.date(2024, 3, 31)


def table(*rows: tuple[str, int]) -> pa.Table:
    return pa.Table.from_pylist([{"queue": q, "offered": n} for q, n in rows], schema=SCHEMA)


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


def test_rewrite_replaces_exactly_the_client_day(tmp_path: Path) -> None:
    store = ParquetReportStore(str(tmp_path))
    store.write_day("r", 1, DAY, table(("a", 1)))
    store.write_day("r", 2, DAY, table(("b", 2)))
    store.write_day("r", 1, DAY + dt.timedelta(days=1), table(("c", 3)))
    folder = tmp_path / "r" / "client=1" / "date=2024-03-31"
    (folder / "part-1.parquet").write_bytes(b"stale part from an older layout")
    (folder / ".part-0.parquet.deadbeef.tmp").write_bytes(b"a crashed writer's temp file")
    store.write_day("r", 1, DAY, table(("a", 10), ("z", 1)))
    assert sorted(p.name for p in folder.iterdir()) == [".part-0.parquet.deadbeef.tmp", "part-0.parquet"]
    read = store.read_days("r", 1, [DAY], SCHEMA)
    assert read.column("offered").to_pylist() == [10, 1]
    assert store.read_days("r", 2, [DAY], SCHEMA).column("queue").to_pylist() == ["b"]
    assert store.read_days("r", 1, [DAY + dt.timedelta(days=1)], SCHEMA).column("queue").to_pylist() == ["c"]


def test_same_table_same_bytes(tmp_path: Path) -> None:
    store = ParquetReportStore(str(tmp_path))
    first = store.write_day("r", 1, DAY, table(("a", 1), ("b", 2)))
    second = store.write_day("r", 1, DAY, table(("a", 1), ("b", 2)))
    assert first.checksum == second.checksum


class _FailingMove:
    """The store's file system, except that the final rename fails (a full disk, a crash)."""

    def __init__(self, fs) -> None:
        self._fs = fs

    def __getattr__(self, name: str):
        return getattr(self._fs, name)

    def move(self, src: str, dest: str) -> None:
        raise OSError("No space left on device")


def test_a_failed_write_leaves_the_previous_file_and_no_temp(tmp_path: Path) -> None:
    store = ParquetReportStore(str(tmp_path))
    store.write_day("r", 1, DAY, table(("a", 1)))
    real, store.fs = store.fs, _FailingMove(store.fs)
    with pytest.raises(OSError, match="No space"):
        store.write_day("r", 1, DAY, table(("new", 2)))
    store.fs = real
    assert store.read_days("r", 1, [DAY], SCHEMA).column("queue").to_pylist() == ["a"]
    assert [p.name for p in (tmp_path / "r" / "client=1" / "date=2024-03-31").iterdir()] == ["part-0.parquet"]


@pytest.mark.parametrize("report", ["../etc", "call-detail", "", "a/b", "CallDetail"])
def test_hostile_report_names_never_become_paths(tmp_path: Path, report: str) -> None:
    with pytest.raises(ValueError):
        ParquetReportStore(str(tmp_path)).write_day(report, 1, DAY, table(("a", 1)))
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("client_id", [-1, True, "1", 1.5])
def test_client_ids_must_be_non_negative_integers(tmp_path: Path, client_id: object) -> None:
    with pytest.raises(ValueError):
        ParquetReportStore(str(tmp_path)).day_path("r", client_id, DAY)  # type: ignore[arg-type]


def test_reading_orders_days_and_adds_keys(tmp_path: Path) -> None:
    store = ParquetReportStore(str(tmp_path))
    days = [DAY + dt.timedelta(days=i) for i in range(5)]
    for i, day in enumerate(days):
        store.write_day("r", 3, day, table(*[(f"q{i}", j) for j in range(i + 1)]))
    read = store.read_days("r", 3, list(reversed(days)), SCHEMA)
    assert read.column("date").to_pylist() == [d for i, d in enumerate(days) for _ in range(i + 1)]
    assert set(read.column("client").to_pylist()) == {3}
    with pytest.raises(FileNotFoundError):
        store.read_days("r", 3, [DAY - dt.timedelta(days=1)], SCHEMA)
