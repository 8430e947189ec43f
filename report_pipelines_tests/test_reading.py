"""read_report: a period is the union of its days; cached days never touch the events table."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pandas as pd
import pytest
from sqlalchemy import Engine, event

from report_pipelines import read_report, read_report_arrow, summarize_report
from report_pipelines.adapters.db.repositories import CacheManifestRepository, CallEventRepository
from report_pipelines.domain.errors import InvalidInput, NotFound
from report_pipelines.domain.timezones import local_day_window, parse_zone
from report_pipelines.services.extracts import ClientDay, run_client_days
from report_pipelines_tests.extract_support import SMALL, UTC, seed

NOW = dt.datetime(2024, 6, 1, tzinfo=UTC)


def _statements(engine: Engine) -> list[str]:
    seen: list[str] = []
    event.listen(engine, "before_cursor_execute", lambda *args: seen.append(args[2]))
    return seen


def test_reading_cached_days_never_touches_the_events_table(engine: Engine, tmp_path: Path) -> None:
    seeded = seed(engine, tmp_path)
    ny = seeded.clients["America/New_York"]
    days = [SMALL.start + dt.timedelta(days=d) for d in range(SMALL.days)]
    run_client_days(seeded.app, [ClientDay(ny.id, ny.timezone, d) for d in days], workers=1, now=NOW)
    statements = _statements(seeded.app.engine)
    table = read_report_arrow("hourly_volume", ny.slug, SMALL.start, SMALL.end, app=seeded.app, now=NOW)
    assert table.num_rows == 24 + 24 + 23 + 24  # the spring-forward day has 23 local hours
    assert statements and not [s for s in statements if "call_events" in s]
    assert table.column_names[-2:] == ["client", "date"]


def test_missing_days_are_computed_and_cached_on_the_way(engine: Engine, tmp_path: Path) -> None:
    seeded = seed(engine, tmp_path)
    lisbon = seeded.clients["Europe/Lisbon"]
    frame = read_report("call_detail", lisbon.slug, "2024-03-09", "2024-03-10", app=seeded.app, now=NOW)
    events = CallEventRepository(engine)
    expected = sum(events.day_source(lisbon.id, *local_day_window(day, parse_zone(lisbon.timezone))).rows
                   for day in (dt.date(2024, 3, 9), dt.date(2024, 3, 10)))
    assert len(frame) == expected > 0
    assert sorted({e.local_date for e in CacheManifestRepository(engine).entries(lisbon.id, SMALL.start, SMALL.end)}) == [
        dt.date(2024, 3, 9), dt.date(2024, 3, 10)]
    assert list(frame["date"].unique()) == [dt.date(2024, 3, 9), dt.date(2024, 3, 10)]


def test_today_is_computed_live_and_never_cached(sqlite_engine: Engine, tmp_path: Path) -> None:
    seeded = seed(sqlite_engine, tmp_path)
    sydney = seeded.clients["Australia/Sydney"]
    last = SMALL.end  # Sydney's last generated day; "now" is its 15:00 local
    now = dt.datetime.combine(last, dt.time(15), tzinfo=parse_zone(sydney.timezone)).astimezone(UTC)
    frame = read_report("call_detail", sydney.slug, last - dt.timedelta(days=1), last, app=seeded.app, now=now)
    today = frame[frame["date"] == last]
    assert len(today) > 0
    assert today["started_at"].max() < pd.Timestamp(now)  # only calls started so far
    cached = {e.local_date for e in CacheManifestRepository(sqlite_engine).entries(sydney.id, SMALL.start, SMALL.end)}
    assert cached == {last - dt.timedelta(days=1)}
    assert not (tmp_path / "reports" / "call_detail" / f"client={sydney.id}" / f"date={last}").exists()


def test_the_period_summary_is_a_sum_over_its_days(engine: Engine, tmp_path: Path) -> None:
    seeded = seed(engine, tmp_path)
    ny = seeded.clients["America/New_York"]
    summary = summarize_report("queue_performance", ny.slug, SMALL.start, SMALL.end, app=seeded.app, now=NOW)
    detail = read_report("call_detail", ny.slug, SMALL.start, SMALL.end, app=seeded.app, now=NOW)
    inbound = detail[detail["direction"] == "inbound"]
    by_queue = summary.set_index("queue")
    for queue, calls in inbound.groupby("queue"):
        assert by_queue.loc[queue, "offered"] == len(calls)
        assert by_queue.loc[queue, "answered"] == (calls["disposition"] == "ANSWERED").sum()
        waits = calls["wait_seconds"].dropna()
        assert by_queue.loc[queue, "average_speed_of_answer"] == pytest.approx(waits.sum() / len(waits))


@pytest.mark.parametrize(
    ("args", "error", "field"),
    [
        (("no_such_report", "c", "2024-03-08", "2024-03-09"), NotFound, "report"),
        (("call_detail", "nobody", "2024-03-08", "2024-03-09"), NotFound, "client"),
        (("call_detail", None, "2024-03-09", "2024-03-08"), InvalidInput, "end"),
        (("call_detail", None, "2024-03-01", "2024-03-09"), InvalidInput, "start"),
        (("call_detail", None, "2024-03-08", "2024-07-01"), InvalidInput, "end"),
        (("call_detail", None, "08/03/2024", "2024-03-09"), InvalidInput, "start"),
    ],
)
def test_bad_requests_name_the_argument(sqlite_engine: Engine, tmp_path: Path, args: tuple, error: type,
                                        field: str) -> None:
    seeded = seed(sqlite_engine, tmp_path)
    ny = seeded.clients["America/New_York"]
    report, client, start, end = args
    with pytest.raises(error) as err:
        read_report(report, client or ny.slug, start, end, app=seeded.app, now=NOW)
    assert err.value.field == field
    assert not (tmp_path / "reports").exists()  # nothing computed for a refused request


def test_day_tables_kept_with_the_manifest_read_the_same_as_the_files(engine: Engine, tmp_path: Path) -> None:
    from sqlalchemy import update

    from report_pipelines.adapters.db.models import CacheEntry
    from report_pipelines.domain.reports import REPORTS

    seeded = seed(engine, tmp_path)
    ny = seeded.clients["America/New_York"]
    days = [SMALL.start + dt.timedelta(days=d) for d in range(SMALL.days)]
    run_client_days(seeded.app, [ClientDay(ny.id, ny.timezone, d) for d in days], workers=1, now=NOW)
    kept = {r: CacheManifestRepository(engine).day_tables(ny.id, SMALL.start, SMALL.end, r) for r in REPORTS}
    assert all(blob is not None for r in REPORTS if r != "call_detail" for blob in kept[r].values())
    from_rows = {r: read_report_arrow(r, ny.slug, SMALL.start, SMALL.end, app=seeded.app, now=NOW) for r in REPORTS}
    with engine.begin() as conn:  # the same reads with no table kept: every day from its file
        conn.execute(update(CacheEntry).values(day_table=None))
    for report in REPORTS:
        from_files = read_report_arrow(report, ny.slug, SMALL.start, SMALL.end, app=seeded.app, now=NOW)
        assert from_rows[report].equals(from_files), report
    statements = _statements(seeded.app.engine)
    read_report_arrow("queue_performance", ny.slug, SMALL.start, SMALL.end, app=seeded.app, now=NOW)
    assert not [s for s in statements if "call_events" in s]


def test_kept_day_tables_read_against_one_schema_are_what_each_stream_reader_gives() -> None:
    """A period's kept day tables are read against the first day's schema; a day of no rows, a day of
    several batches, a day kept under another schema and a day with a dictionary column give what
    reading each day's stream on its own gives, day by day."""
    import pyarrow as pa

    from report_pipelines.services.extracts import kept_table
    from report_pipelines.services.read_memo import decode_kept

    t = pa.table({"queue": ["a", None, "c"], "offered": pa.array([1, 2, 3], pa.int64())})
    other = t.cast(pa.schema([("queue", pa.string()), ("offered", pa.int32())]))
    coded = pa.table({"queue": pa.array(["a", "a", "b"]).dictionary_encode(), "offered": pa.array([1, 2, 3])})
    blobs = [kept_table(t), kept_table(t.slice(0, 0)), kept_table(pa.concat_tables([t, t.slice(1)])),
             kept_table(other), kept_table(t.slice(2)), kept_table(coded)]
    schemas: dict = {}
    days = [decode_kept(blob, schemas) for blob in blobs]
    assert days[0].schema.equals(t.schema)
    assert [sum(b.num_rows for b in day.batches) for day in days] == [3, 0, 5, 3, 1, 3]
    for blob, day in zip(blobs, days, strict=True):
        alone = pa.ipc.open_stream(blob).read_all()
        got = pa.Table.from_batches(day.batches, alone.schema)
        assert got.schema.equals(alone.schema) and got.equals(alone)


def test_a_cached_summary_is_one_connection_and_two_statements(engine: Engine, tmp_path: Path) -> None:
    """The read's validation (the client with its licences) and the manifest's day tables share one
    checkout of the pool: two statements, no day file opened, the events table untouched. On PostgreSQL
    both are prepared once per connection, and a period this process presented already is one statement:
    the validation's own, which also names the digest of the period's checksums."""
    from report_pipelines.services import reading

    seeded = seed(engine, tmp_path)
    ny = seeded.clients["America/New_York"]
    days = [SMALL.start + dt.timedelta(days=d) for d in range(SMALL.days)]
    run_client_days(seeded.app, [ClientDay(ny.id, ny.timezone, d) for d in days], workers=1, now=NOW)
    seen_first = _statements(seeded.app.engine)
    first = reading.summarize_report("queue_performance", ny.slug, SMALL.start, SMALL.end, app=seeded.app, now=NOW)
    for _ in range(10):  # every pooled connection the reads take in turn prepares its statements once
        seen_first.append("-- read")
        reading.summarize_report("queue_performance", ny.slug, SMALL.start, SMALL.end, app=seeded.app, now=NOW)
        if not seen_first[-1].startswith("PREPARE "):
            break
    prepares = {s.split()[1]: s for s in seen_first if s.startswith("PREPARE ")}
    postgresql = engine.dialect.name == "postgresql"
    checkouts: list[object] = []
    event.listen(seeded.app.engine, "checkout", lambda *args: checkouts.append(args[1]))
    statements = _statements(seeded.app.engine)
    autocommit: list[bool] = []  # the driver's flag at each statement: no BEGIN before them on PostgreSQL
    event.listen(seeded.app.engine, "before_cursor_execute",
                 lambda conn, *_: autocommit.append(getattr(conn.connection.dbapi_connection, "autocommit", None)))
    opened: list[str] = []
    original = seeded.app.store.read_days
    seeded.app.store.read_days = lambda *a, **k: opened.append(a[0]) or original(*a, **k)
    summary = reading.summarize_report("queue_performance", ny.slug, SMALL.start, SMALL.end, app=seeded.app, now=NOW)
    ours = [s for s in statements if s.strip().lower() != "select 1"]  # a ping after idle time aside
    assert len(checkouts) == 1
    if postgresql:
        assert autocommit == [True] * len(statements)
        assert len(ours) == 1 and ours[0].startswith("EXECUTE rp_"), ours
        assert len(prepares) == 2, seen_first  # the validation and the day tables, prepared per connection
        prepared_sql = prepares[ours[0].split("(")[0].split()[1]]
        assert "client_products" in prepared_sql and "report_cache_manifest" in prepared_sql, prepared_sql
    else:
        assert len(ours) == 2 and "client_products" in ours[0] and "cache_manifest" in ours[1], ours
    assert summary.equals(first)
    # A first read in a process (nothing held): the validation, then the day tables (prepared on this
    # connection first, if it had not run them: the reads before were answered by the validation alone).
    seeded.app.memo.clear()
    statements.clear()
    again = reading.summarize_report("queue_performance", ny.slug, SMALL.start, SMALL.end, app=seeded.app, now=NOW)
    ours = [s for s in statements if s.strip().lower() != "select 1" and not s.startswith("PREPARE ")]
    if postgresql:
        assert len(ours) == 2 and all(s.startswith("EXECUTE rp_") for s in ours), ours
        assert set(prepares) == {s.split("(")[0].split()[1] for s in ours}
    else:
        assert len(ours) == 2 and "client_products" in ours[0] and "cache_manifest" in ours[1], ours
    assert again.equals(first)
    assert not [s for s in ours if "call_events" in s]
    assert not opened and len(summary) > 0
