"""Speed at the machine's limit (issue 14): each figure a ratio against a baseline measured in this run.

On a scratch PostgreSQL database, with synthetic PBX traffic:

(a) compute, end to end (read the events, compute every report, write the files, record the manifest):
    zone-day batches against the per-client-day path (every client-day its own batch: its own lock,
    query, transactions and flushes), for 200 small clients of one zone-day and a day of 50 mixed
    clients; and the amortised fixed cost of a small client-day;
(b) a cached 30-day summary (``summarize_report``: the day tables kept with the manifest rows) against
    a PostgreSQL ``GROUP BY`` over the raw events, for the largest client and one with ~2,000 calls a
    day, and against DuckDB over the same day files; the counts must agree;
(c) ``read_report_arrow`` of call_detail day rows against ``pyarrow.dataset`` over the same files;
(d) one read's validation (client, licence, coverage) at 20,000 clients against at 50;
(e) the README's analyst query for one client-month in a store of 150,000 day files: the documented
    per-client glob against the whole-store glob;
(f) Dagster: event-log records of one day's run of every zone, and event-log bytes of a 300-date run
    against a 10-date one; the Dagster share of a day's run of 50 clients;
(g) the planner's write of 5,000 schedules: ``UPDATE ... FROM (VALUES ...)`` against an executemany;
(i) computing every report in memory (calls/s per core) against DuckDB's three summaries of the same calls;
(h) how the cost of a client-day grows with clients per zone-day (1, 10, 50, 200), with the client's
    size (100 to 100,000 calls a day), and how a period's cost grows with its days (7, 30, 90).

    .venv/bin/python benchmarks/bench_speed.py [--smoke]

``--smoke`` runs every part at a size that finishes in well under a minute (the test suite runs it and
checks only that it runs and that old and new paths agree, never a timing).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import shutil
import statistics
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
warnings.filterwarnings("ignore")

import dagster as dg
import pandas as pd
import pyarrow as pa
import pyarrow.dataset as ds
from _common import scratch_postgres
from sqlalchemy import insert, select, text

from report_pipelines.adapters.db.commercial import _reports_licences_query
from report_pipelines.adapters.db.migrate import upgrade
from report_pipelines.adapters.db.models import Client, ClientProductRow, ReportSchedule
from report_pipelines.adapters.db.repositories import CallEventRepository
from report_pipelines.adapters.db.schedules import ScheduleRepository
from report_pipelines.adapters.report_store import _sync_filesystem
from report_pipelines.adapters.sources.synthetic import GeneratorConfig
from report_pipelines.app import App
from report_pipelines.definitions import build_definitions
from report_pipelines.defs.resources import AppResource
from report_pipelines.domain.reports import REPORTS
from report_pipelines.domain.timezones import local_day_window, parse_zone
from report_pipelines.services.clients import list_clients
from report_pipelines.services.demo import ensure_reports_product, seed_demo
from report_pipelines.services.extracts import ClientDay, run_client_days
from report_pipelines.services.reading import (
    open_request,
    prepare_period,
    read_report_arrow,
    summarize_report,
    validate_request,
)
from report_pipelines.services.serving import servings
from report_pipelines.services.zone_days import ZoneDay, plan_zone_days
from report_pipelines.settings import Settings

UTC = dt.UTC
START = dt.date(2024, 9, 2)
NOW = dt.datetime(2024, 12, 1, tzinfo=UTC)
QUEUE_SQL = """
SELECT queue, count(*) AS offered, count(*) FILTER (WHERE disposition = 'ANSWERED') AS answered,
       count(*) FILTER (WHERE disposition = 'ABANDONED') AS abandoned
FROM call_events
WHERE client_id = :client_id AND started_at >= :start AND started_at < :end AND direction = 'inbound'
GROUP BY queue ORDER BY queue NULLS LAST
"""
FIGURES: list[tuple[str, str]] = []


def say(text_: str) -> None:
    print(text_, flush=True)


def figure(name: str, value: str) -> None:
    FIGURES.append((name, value))
    say(f"  => {name}: {value}")


def median_time(fn: Callable[[], Any], repeat: int, setup: Callable[[], Any] | None = None) -> tuple[float, Any]:
    """The median wall time of ``fn`` over ``repeat`` runs after a warm-up, and its last result;
    ``setup`` runs before each, untimed."""
    result = fn()  # warm-up
    times = []
    for _ in range(repeat):
        if setup is not None:
            setup()
        t0 = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), result


def medians_in_turns(fns: list[Callable[[], Any]], repeat: int) -> list[tuple[float, Any]]:
    """:func:`median_time` of each of ``fns``, timed in turns (one run of each, then again), so that the
    machine's slower and quieter moments fall on every one of them alike; a warm-up of each first."""
    results = [fn() for fn in fns]
    times: list[list[float]] = [[] for _ in fns]
    for _ in range(repeat):
        for i, fn in enumerate(fns):
            t0 = time.perf_counter()
            results[i] = fn()
            times[i].append(time.perf_counter() - t0)
    return [(statistics.median(t), r) for t, r in zip(times, results, strict=True)]


def seeded_app(stack: contextlib.ExitStack, folder: Path, config: GeneratorConfig) -> App:
    """A scratch database of its own with ``config``'s clients and calls, and an App on it."""
    url = stack.enter_context(scratch_postgres("rp_bench_speed"))
    engine = App(Settings(data_dir=folder, database_url=url, store_root=str(folder / "reports"))).engine
    upgrade(engine)
    seed_demo(engine, config, now=NOW)
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text("ANALYZE"))
    return App(Settings(data_dir=folder, database_url=url, store_root=str(folder / "reports")))


def zone_day_tasks(app: App, zone: str, day: dt.date) -> list[ClientDay]:
    return [t for p in plan_zone_days(app.engine, [ZoneDay(day, zone)], now=NOW) for t in p.tasks]


# --- (a), (h) ---------------------------------------------------------------------------------------
def compute(app: App, tasks: list[ClientDay], repeat: int, *, fresh: bool = False) -> tuple[float, float]:
    """Both paths over ``tasks`` (medians); ``fresh``: the store emptied before every run, so each run
    creates every folder and file (a zone-day's first computation) instead of replacing them (late data)."""
    events = sum(t.weight for t in tasks)

    def empty() -> None:
        shutil.rmtree(app.settings.store_root, ignore_errors=True)
        _sync_filesystem(str(Path(app.settings.store_root).parent))  # the deletions' writes not left to the run

    setup = empty if fresh else None
    old_s, old = median_time(lambda: run_client_days(app, tasks, workers=1, now=NOW, batch_clients=1), repeat, setup)
    new_s, new = median_time(lambda: run_client_days(app, tasks, workers=1, now=NOW), repeat, setup)
    same = sorted((r.client_id, r.rows["call_detail"], r.source_rows) for r in old) == \
        sorted((r.client_id, r.rows["call_detail"], r.source_rows) for r in new)
    say(f"  {'fresh store: ' if fresh else ''}{len(tasks)} client-days, {events:,} calls: per client-day {old_s:.2f} s ({events / old_s:,.0f} ev/s), "
        f"zone-day batches {new_s:.2f} s ({events / new_s:,.0f} ev/s); results {'identical' if same else 'DIFFER'}")
    if not same:
        raise SystemExit("the two paths disagree")
    return old_s, new_s


def file_system_floor(root: Path, n: int = 400) -> tuple[float, float, float]:
    """What one day file costs the store's file system, whatever computes it: creating a folder, creating
    a small file, and rewriting a small file that exists (seconds each, medians of ``n``)."""
    root.mkdir(parents=True, exist_ok=True)
    folders, files, rewrites = [], [], []
    data = b"x" * 2048
    for i in range(n):
        folder = root / f"date={i}"
        t0 = time.perf_counter()
        folder.mkdir()
        t1 = time.perf_counter()
        with open(folder / "part-0.parquet", "wb") as out:
            out.write(data)
        t2 = time.perf_counter()
        with open(folder / "part-0.parquet", "r+b") as out:
            out.write(data)
        t3 = time.perf_counter()
        folders.append(t1 - t0)
        files.append(t2 - t1)
        rewrites.append(t3 - t2)
    shutil.rmtree(root)
    return statistics.median(folders), statistics.median(files), statistics.median(rewrites)


def in_memory(app: App, tasks: list[ClientDay], repeat: int) -> None:
    """(i) Every report of every client-day of ``tasks`` computed from calls already in memory (screening
    included; no database, no files), against DuckDB computing three summaries (per queue, per hour, per
    agent: counts and sums) of the same calls in memory, per client-day too, on one thread."""
    import duckdb

    from report_pipelines.domain.reports import DayContext, get_report
    from report_pipelines.domain.reports.screening import screen_calls
    from report_pipelines.domain.timezones import local_day_window, parse_zone

    loaded = []
    for zone, day in sorted({(t.timezone, t.day) for t in tasks}):
        ids = [t.client_id for t in tasks if (t.timezone, t.day) == (zone, day)]
        window = local_day_window(day, parse_zone(zone))
        calls = CallEventRepository(app.engine).zone_day_calls(ids, *window)
        loaded += [(DayContext(cid, zone, day, app.settings.service_level_seconds), window, calls[cid]) for cid in ids]
    events = sum(calls.num_rows for _, _, calls in loaded)
    names = list(REPORTS)

    def ours() -> int:
        rows = 0
        for ctx, window, calls in loaded:
            clean = screen_calls(calls, ctx, *window, unique_ids=True).clean  # as the extractor: call_events rows
            rows += sum(get_report(n).compute_day_from(clean, ctx, {}).num_rows for n in names)
        return rows

    con = duckdb.connect()
    con.execute("SET threads = 1")  # per core, as ours

    def duck() -> int:
        rows = 0
        for _, _, calls in loaded:
            con.register("calls", calls)
            for key in ("queue", "date_trunc('hour', started_at)", "agent"):
                rows += len(con.execute(
                    f"SELECT {key} AS k, count(*) AS offered, count(*) FILTER (WHERE disposition = 'ANSWERED') AS "
                    "answered, sum(epoch(ended_at) - epoch(answered_at)) AS talk FROM calls "
                    "WHERE direction = 'inbound' GROUP BY k").fetchall())
            con.unregister("calls")
        return rows

    ours_s, _ = median_time(ours, repeat)
    duck_s, _ = median_time(duck, repeat)
    figure(f"(i) every report ({len(names)}) in memory, {len(loaded)} client-days, {events:,} calls",
           f"{events / ours_s:,.0f} calls/s on one core (target 2 M); DuckDB's three summaries of the same calls "
           f"{events / duck_s:,.0f} calls/s: ours {duck_s / ours_s:.2f}x DuckDB's speed")


def binary_read(app: App, tasks: list[ClientDay], repeat: int) -> None:
    """(h) The client-day end to end with its calls read by COPY in binary into Arrow (the process's ADBC
    connection, open) against the CSV COPY read by Arrow's CSV reader, in turns; the two reads must agree."""
    from report_pipelines.adapters.db import repositories

    repo, window = CallEventRepository(app.engine), local_day_window(tasks[0].day, parse_zone(tasks[0].timezone))
    ids = [t.client_id for t in tasks]
    by_csv = repo.zone_day_calls(ids, *window)
    by_binary = repo.zone_day_calls(ids, *window, expected_rows=repositories.ARROW_READ_MIN_ROWS)
    if not all(by_binary[i].equals(by_csv[i]) for i in ids):
        raise SystemExit("the binary and the CSV reads of the calls differ")
    readers = repositories._ArrowReader._by_engine
    reader = readers[app.engine]

    def with_csv():
        readers.pop(app.engine, None)  # no connection open, and none opened: the bar out of reach
        bar, repositories.ARROW_READ_MIN_ROWS = repositories.ARROW_READ_MIN_ROWS, 2**62
        try:
            return run_client_days(app, tasks, workers=1, now=NOW)
        finally:
            repositories.ARROW_READ_MIN_ROWS = bar
            readers[app.engine] = reader

    (binary_s, _), (csv_s, _) = medians_in_turns([lambda: run_client_days(app, tasks, workers=1, now=NOW), with_csv],
                                                 repeat)
    calls = sum(t.num_rows for t in by_csv.values())
    figure(f"(h) one client-day of {calls:,} calls, calls read by binary COPY into Arrow vs CSV COPY",
           f"{csv_s / binary_s:.2f}x ({binary_s * 1000:.0f} ms vs {csv_s * 1000:.0f} ms end to end; the reads agree)")


# --- (b), (c) ---------------------------------------------------------------------------------------
def summaries(app: App, client, days: int, repeat: int) -> None:
    first, last = START, START + dt.timedelta(days=days - 1)
    zone = client.timezone
    start = dt.datetime.combine(first, dt.time(), tzinfo=__import__("zoneinfo").ZoneInfo(zone)).astimezone(UTC)
    end = dt.datetime.combine(last + dt.timedelta(days=1), dt.time(), tzinfo=__import__("zoneinfo").ZoneInfo(zone)
                              ).astimezone(UTC)

    def sql() -> pd.DataFrame:
        with app.engine.connect() as conn:
            return pd.DataFrame(conn.execute(text(QUEUE_SQL), {"client_id": client.id, "start": start, "end": end})
                                .mappings().all())

    def summary() -> pd.DataFrame:
        return summarize_report("queue_performance", client.id, first, last, app=app, now=NOW)

    def first_summary() -> pd.DataFrame:  # what a process that never read this period pays
        app.memo.clear()
        return summary()

    timed = [summary, sql, first_summary]
    try:
        import duckdb
    except ImportError:
        say("  (duckdb not installed: no DuckDB figure)")
    else:
        glob = f"{app.settings.store_root}/queue_performance/client={client.id}/*/part-0.parquet"
        query = (f"SELECT queue, sum(offered) AS offered FROM read_parquet('{glob}', hive_partitioning = true) "
                 f"WHERE date BETWEEN DATE '{first}' AND DATE '{last}' GROUP BY queue")
        timed.append(lambda: duckdb.sql(query).df())
    # in turns: the same noise
    (ours_s, ours), (sql_s, reference), (cold_s, cold), *duck = medians_in_turns(timed, repeat)
    agree = (ours[["queue", "offered", "answered", "abandoned"]].fillna("-").astype(str).values.tolist()
             == reference.fillna("-").astype(str).values.tolist()) and ours.equals(cold)
    figure(f"(b) {days}-day queue summary, client {client.slug}, cached vs PostgreSQL GROUP BY",
           f"{sql_s / ours_s:.1f}x ({ours_s * 1000:.1f} ms vs {sql_s * 1000:.1f} ms; counts "
           f"{'agree' if agree else 'DIFFER'}; read again by this process: its day tables and the presented "
           "period held in its memo)")
    figure(f"(b) {days}-day queue summary, client {client.slug}, a first read in a process vs PostgreSQL GROUP BY",
           f"{sql_s / cold_s:.1f}x ({cold_s * 1000:.1f} ms; the memo emptied before each read: every day table "
           f"sent, decoded, re-aggregated and presented; {cold_s / ours_s:.1f}x the read again)")
    if not agree:
        raise SystemExit("the summary and the SQL disagree")
    # The same read again back to back, and after 0.15 s idle (about what the GROUP BY takes between two
    # reads in turns): what the read itself costs, and what the machine's waking from idle adds to it.
    hot_s, hot = median_time(summary, repeat)
    idle_s, _ = median_time(summary, repeat, setup=lambda: time.sleep(0.15))
    figure(f"(b) {days}-day queue summary, client {client.slug}, read again back to back vs PostgreSQL GROUP BY",
           f"{sql_s / hot_s:.1f}x ({hot_s * 1000:.2f} ms; {idle_s * 1000:.2f} ms after 0.15 s idle, no other work: "
           f"waking the idle database backend and CPU; {'equal' if hot.equals(ours) else 'DIFFERENT'})")
    if not hot.equals(ours):
        raise SystemExit("the summary read back to back differs")
    if duck:
        figure(f"(b) {days}-day summary, client {client.slug}, summarize_report vs DuckDB on the day files",
               f"{duck[0][0] / ours_s:.2f}x read again, {duck[0][0] / cold_s:.2f}x a first read in a process "
               "(above 1: ours faster)")
    freshness(app, client, first, last, sql, ours, repeat)
    part = ds.partitioning(pa.schema([("date", pa.date32())]), flavor="hive")

    def dataset() -> pa.Table:
        return ds.dataset(f"{app.settings.store_root}/call_detail/client={client.id}", format="parquet",
                          partitioning=part).to_table(filter=(ds.field("date") >= first) & (ds.field("date") <= last))

    (detail_s, detail), (base_s, base) = medians_in_turns(
        [lambda: read_report_arrow("call_detail", client.id, first, last, app=app, now=NOW), dataset], repeat)
    if detail.num_rows != base.num_rows:
        raise SystemExit("call_detail row counts differ")
    figure(f"(c) call_detail {days} days ({detail.num_rows:,} rows), read_report_arrow / pyarrow.dataset",
           f"{detail_s / base_s:.2f}x the time (target <= 1.2)")


def freshness(app: App, client, first: dt.date, last: dt.date, sql: Callable[[], pd.DataFrame],
              summary: pd.DataFrame, repeat: int) -> None:
    """A period request's staleness check (the CLI's and the API's path: ``prepare_period(refresh_stale)``),
    from the client's quarter-hours against counting each day's calls again (the check before), and the
    whole request's summary against the ``GROUP BY``."""
    events = CallEventRepository(app.engine)
    zone = parse_zone(client.timezone)
    windows = [local_day_window(first + dt.timedelta(days=d), zone) for d in range((last - first).days + 1)]
    (quarters_s, quarters), (calls_s, counted) = medians_in_turns(
        [lambda: events.windows_sources(client.id, windows),
         lambda: [events.day_source_from_calls(client.id, *w) for w in windows]], repeat)
    figure(f"(b) a period request's staleness check, {len(windows)} days, client {client.slug}",
           f"{calls_s / quarters_s:.0f}x ({quarters_s * 1000:.2f} ms from the quarter-hours vs {calls_s * 1000:.1f} ms "
           f"counting each day's calls; states {'agree' if quarters == counted else 'DIFFER'})")
    if quarters != counted:
        raise SystemExit("the quarter-hours and the calls disagree")

    def request() -> pd.DataFrame:
        period_request, kept = open_request(app, "queue_performance", client.id, first, last, NOW, stamps=True)
        return prepare_period(app, period_request, now=NOW, refresh_stale=True, kept=kept).summary()

    (request_s, answered), (sql_s, _) = medians_in_turns([request, sql], repeat)
    figure(f"(b) a period request's summary (staleness checked), client {client.slug}, vs PostgreSQL GROUP BY",
           f"{sql_s / request_s:.1f}x ({request_s * 1000:.1f} ms vs {sql_s * 1000:.1f} ms; "
           f"{'equal to' if answered.equals(summary) else 'DIFFERENT from'} summarize_report)")
    if not answered.equals(summary):
        raise SystemExit("the period request's summary differs from summarize_report's")


# --- (d) ---------------------------------------------------------------------------------------------
def fleet_app(stack: contextlib.ExitStack, folder: Path, fleet: int) -> App:
    """A scratch database of its own holding ``fleet`` clients, each with a reports licence."""
    url = stack.enter_context(scratch_postgres("rp_bench_fleet"))
    app = App(Settings(data_dir=folder, database_url=url, store_root=str(folder / "reports")))
    upgrade(app.engine)
    ensure_reports_product(app.engine, NOW)
    with app.engine.begin() as conn:
        conn.execute(insert(Client), [{"slug": f"fleet-{i:06d}", "name": f"Fleet {i}", "timezone": "Europe/Lisbon",
                                       "active_from": START, "created_at": NOW, "updated_at": NOW}
                                      for i in range(fleet)])
        ids = sorted(conn.execute(select(Client.id)).scalars().all())
        conn.execute(insert(ClientProductRow), [{
            "client_id": i, "product_code": "REPORTS", "quantity": 1, "unit_price": Decimal("49.00"),
            "discount": Decimal("0.00"), "currency": "EUR", "valid_from": START, "valid_to": None, "trial": False,
            "source_proposal": None, "note": "bench", "created_at": NOW} for i in ids])
    with app.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text("VACUUM ANALYZE"))  # what autovacuum does after a bulk insert
    return app


def validation(stack: contextlib.ExitStack, folder: Path, small: int, large: int, repeat: int) -> tuple[float, float]:
    """One read's validation (client, licences, dates) against a fleet of ``small`` and one of ``large``
    clients, in two databases side by side, timed in turns (A, B, A, B ...) so that the machine's noise
    falls on both alike; the client asked for is in the middle of its fleet."""
    apps = [fleet_app(stack, folder / f"fleet-{n}", n) for n in (small, large)]
    slugs = [f"fleet-{n // 2:06d}" for n in (small, large)]
    calls = [lambda a=a, s=s: validate_request(a, "queue_performance", s, START, START, NOW)
             for a, s in zip(apps, slugs, strict=True)]
    (at_small, _), (at_large, _) = medians_in_turns(calls, repeat * 20)  # warm-up first: connections, caches
    fleet_states(apps[1], large, repeat)
    for app in apps:
        app.engine.dispose()
    return at_small, at_large


def fleet_states(app: App, fleet: int, repeat: int) -> None:
    """Every client's serving state at once (each run's ``_clients`` lookup, the sensors' zones) against a
    bare fetch of the same query's rows, in turns: what the client records and licences cost over the fetch."""
    query = _reports_licences_query(False, False, False)

    def bare() -> int:
        with app.engine.connect() as conn:
            return len(conn.execute(query).fetchall())

    (states_s, states), (bare_s, rows) = medians_in_turns([lambda: servings(app.engine, NOW), bare], repeat)
    if len(states) != fleet or rows != fleet:
        raise SystemExit(f"the fleet's serving states: {len(states)} states and {rows} rows for {fleet} clients")
    figure(f"(d) serving states of all {fleet:,} clients",
           f"{states_s:.3f} s, {states_s / bare_s:.1f}x a bare fetch of the same rows ({bare_s:.3f} s)")


# --- (e) --------------------------------------------------------------------------------------------
def analyst_query(folder: Path, files: int, repeat: int) -> None:
    import duckdb

    root = folder / "analyst" / "queue_performance"
    sample = pa.table({"queue": ["support"], "offered": [3], "answered": [2]})
    one = folder / "one.parquet"
    __import__("pyarrow.parquet").parquet.write_table(sample, one)
    days = 365
    clients = max(1, files // days)
    for c in range(1, clients + 1):
        if c % 150 == 0:  # a fresh source file every 54,750 links (ext4 allows 65,000 links to one file)
            one = folder / f"one-{c}.parquet"
            __import__("pyarrow.parquet").parquet.write_table(sample, one)
        for d in range(days):
            target = root / f"client={c}" / f"date={START + dt.timedelta(days=d)}"
            target.mkdir(parents=True)
            (target / "part-0.parquet").hardlink_to(one)
    month = START.strftime("%Y-%m")
    month_end = (START.replace(day=28) + dt.timedelta(days=4)).replace(day=1) - dt.timedelta(days=1)
    documented = (f"SELECT sum(offered) FROM read_parquet('{root}/client=1/date={month}-*/part-0.parquet', "
                  "hive_partitioning = true)")
    everything = (f"SELECT sum(offered) FROM read_parquet('{root}/*/*/part-0.parquet', hive_partitioning = true) "
                  f"WHERE client = 1 AND date BETWEEN DATE '{START.replace(day=1)}' AND DATE '{month_end}'")
    doc_s, a = median_time(lambda: duckdb.sql(documented).fetchall(), repeat)
    all_s, b = median_time(lambda: duckdb.sql(everything).fetchall(), 1)
    figure(f"(e) analyst query, one client-month in a store of {clients * days:,} files",
           f"documented glob {doc_s:.3f} s, whole-store glob {all_s:.2f} s ({all_s / doc_s:.0f}x); "
           f"{'same answer' if a == b else 'DIFFERENT ANSWERS'}")
    if a != b:
        raise SystemExit("the two analyst queries disagree")


# --- (f) --------------------------------------------------------------------------------------------
def dagster_events(app: App, home: Path, first: dt.date, last: dt.date,
                   storage_url: str | None = None) -> tuple[int, int, float, float]:
    """One run of the main job over ``first..last`` in process: its event-log records and bytes, its
    wall time, and the time spent inside the asset's own code (planning, computing, writing, checks),
    measured by wrapping it; the rest is Dagster's. The instance keeps its runs and events in SQLite
    files under ``home`` (the embedded default) or, with ``storage_url``, in that PostgreSQL database
    (the production instance)."""
    from report_pipelines.defs.reports import assets

    ours = [0.0]
    original = assets._extract

    def timed(*args, **kwargs):
        generator = original(*args, **kwargs)
        while True:
            t0 = time.perf_counter()
            try:
                item = next(generator)
            except StopIteration:
                ours[0] += time.perf_counter() - t0
                return
            ours[0] += time.perf_counter() - t0
            yield item

    defs = build_definitions(app.settings)
    home.mkdir(parents=True, exist_ok=True)
    storage = f"storage:\n  postgres:\n    postgres_url: \"{storage_url}\"\n" if storage_url else ""
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n" + storage)
    assets._extract = timed
    try:
        with dg.DagsterInstance.from_config(str(home)) as instance:
            t0 = time.perf_counter()
            result = defs.resolve_job_def("extract_reports_job").execute_in_process(
                # an hour later than the computations before it: the run recomputes every client-day (a pinned
                # clock would make them look computed after the run started, and the run would reuse them)
                instance=instance,
                resources={"app": AppResource.for_settings(app.settings, now=NOW + dt.timedelta(hours=1))},
                tags={"dagster/asset_partition_range_start": str(first),
                      "dagster/asset_partition_range_end": str(last)},
                run_config={"loggers": {"console": {"config": {"log_level": "WARNING"}}}})
            elapsed = time.perf_counter() - t0
            assert result.success
            records = instance.get_records_for_run(result.run_id, limit=1_000_000).records
            size = sum(len(dg.serialize_value(r.event_log_entry)) for r in records)
    finally:
        assets._extract = original
    return len(records), size, elapsed, ours[0]


# --- (g) --------------------------------------------------------------------------------------------
def planner_write(app: App, n: int, repeat: int) -> None:
    from sqlalchemy import bindparam, update

    with app.engine.begin() as conn:
        client = conn.execute(select(Client.id)).scalars().first()
        conn.execute(insert(ReportSchedule), [{
            "client_id": client, "report": "queue_performance", "period": "yesterday", "frequency": "daily",
            "send_time": "07:00", "timezone": "Europe/Lisbon", "recipients": "a@example.com", "format": "csv",
            "active": True, "revision": 1, "next_send_at": None, "created_at": NOW, "updated_at": NOW}
            for _ in range(n)])
        ids = conn.execute(select(ReportSchedule.id)).scalars().all()[:n]
    plans = [(i, 1, NOW) for i in ids]
    repo, table = ScheduleRepository(app.engine), ReportSchedule.__table__

    def reset() -> None:
        with app.engine.begin() as conn:
            conn.execute(update(table).where(table.c.id.in_(ids)).values(next_send_at=None))

    def old() -> int:
        reset()
        statement = update(table).where(table.c.id == bindparam("sid"), table.c.revision == bindparam("rev"),
                                        table.c.next_send_at.is_(None)).values(next_send_at=bindparam("at"))
        t0 = time.perf_counter()
        with app.engine.begin() as conn:
            conn.execute(statement, [{"sid": i, "rev": r, "at": at} for i, r, at in plans])
        return time.perf_counter() - t0

    def new() -> float:
        reset()
        t0 = time.perf_counter()
        done = repo.plan(plans)
        elapsed = time.perf_counter() - t0
        assert done == len(plans)
        return elapsed

    old_s = statistics.median(old() for _ in range(repeat))
    new_s = statistics.median(new() for _ in range(repeat))
    figure(f"(g) planner write of {n:,} schedules, UPDATE FROM VALUES vs executemany",
           f"{old_s / new_s:.1f}x ({new_s * 1000:.0f} ms vs {old_s * 1000:.0f} ms)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="small sizes, seconds not minutes")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--only", default="abcdefgh",
                        help="the parts to run, by letter (default: all); e.g. --only bc for the summaries")
    args = parser.parse_args()
    smoke = args.smoke

    def want(*parts: str) -> bool:
        return any(part in args.only for part in parts)
    repeat = 1 if smoke else args.repeat
    with contextlib.ExitStack() as stack:
        folder = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="rp_bench_speed_")))

        if want("a", "h", "d", "g"):
            say("(a) compute end to end")
            small = GeneratorConfig(start=START, days=1, clients=20 if smoke else 200, largest_daily_calls=60,
                                    smallest_daily_calls=5, seed=11, zones=("Europe/Lisbon",))
            app = seeded_app(stack, folder / "a", small)
            tasks = zone_day_tasks(app, "Europe/Lisbon", START)
            old_s, new_s = compute(app, tasks, repeat)
            figure(f"(a) {len(tasks)} small clients of one zone-day, batches vs per client-day", f"{old_s / new_s:.1f}x")
            figure("(a) fixed cost of a small client-day, amortised", f"{new_s / len(tasks) * 1000:.1f} ms "
                   f"(per client-day path {old_s / len(tasks) * 1000:.1f} ms)")
            old_s, new_s = compute(app, tasks, repeat, fresh=True)
            figure(f"(a) {len(tasks)} small clients of one zone-day, first computation (an empty store)",
                   f"batches {old_s / new_s:.1f}x, {new_s / len(tasks) * 1000:.1f} ms a client-day "
                   f"(per client-day path {old_s / len(tasks) * 1000:.1f} ms)")
            folder_s, file_s, rewrite_s = file_system_floor(Path(app.settings.store_root) / "_floor")
            files = len(REPORTS)
            figure("(a) the file system's floor for one client-day's files",
                   f"{files * (folder_s + file_s) * 1000:.1f} ms first time, {files * file_s * 1000:.1f} ms on "
                   f"replacing ({files} reports; creating a folder {folder_s * 1e6:.0f} us, a file "
                   f"{file_s * 1e6:.0f} us, rewriting one {rewrite_s * 1e6:.0f} us)")

            say("(h) cost of a client-day by clients per zone-day")
            for n in (1, 10, 50, len(tasks)) if not smoke else (1, 10, len(tasks)):
                subset = tasks[:n]
                seconds, _ = median_time(lambda s=subset: run_client_days(app, s, workers=1, now=NOW), repeat)
                figure(f"(h) {n} clients of one zone-day", f"{seconds / n * 1000:.1f} ms a client-day")

            say("(d) a read's validation against the size of the fleet")
            at_small, at_large = validation(stack, folder, 50, 2_000 if smoke else 20_000, repeat)
            figure(f"(d) validation at {2_000 if smoke else 20_000:,} clients vs at 50",
                   f"{at_large / at_small:.2f}x the time ({at_large * 1000:.2f} ms vs {at_small * 1000:.2f} ms)")

            say("(g) planner")
            planner_write(app, 500 if smoke else 5_000, repeat)

        if want("h"):
            say("(h) cost of a client-day by client size, and of a period by its days")
            sizes = GeneratorConfig(start=START, days=1, clients=4, largest_daily_calls=2_000 if smoke else 100_000,
                                    smallest_daily_calls=100, seed=15, zones=("Asia/Tokyo",))
            app = seeded_app(stack, folder / "h-size", sizes)
            for task in sorted(zone_day_tasks(app, "Asia/Tokyo", START), key=lambda t: t.weight):
                seconds, [result] = median_time(lambda t=task: run_client_days(app, [t], workers=1, now=NOW), repeat)
                calls = result.source_rows
                figure(f"(h) one client-day of {calls:,} calls", f"{seconds * 1000:.1f} ms "
                       f"({calls / seconds:,.0f} calls/s, {seconds / max(calls, 1) * 1e6:.1f} us a call)")
            biggest = sorted(zone_day_tasks(app, "Asia/Tokyo", START), key=lambda t: t.weight)[-1:]
            binary_read(app, biggest, repeat)
            in_memory(app, biggest, repeat)
            long = GeneratorConfig(start=START, days=7 if smoke else 90, clients=1, largest_daily_calls=500,
                                   smallest_daily_calls=500, seed=16, zones=("Europe/Berlin",))
            app = seeded_app(stack, folder / "h-days", long)
            [client] = list_clients(app.engine)
            for n in (3, 7) if smoke else (7, 30, 90):
                days = [ClientDay(client.id, client.timezone, START + dt.timedelta(days=d)) for d in range(n)]
                seconds, _ = median_time(lambda d=days: run_client_days(app, d, workers=1, now=NOW), repeat)
                last = START + dt.timedelta(days=n - 1)
                read_s, _ = median_time(lambda last=last: summarize_report("queue_performance", client.id, START, last,
                                                                           app=app, now=NOW), repeat)
                figure(f"(h) {n} days of one client (~500 calls a day)",
                       f"computing {seconds / n * 1000:.1f} ms a client-day; the cached {n}-day summary "
                       f"{read_s * 1000:.1f} ms ({read_s / n * 1000:.2f} ms a day)")

        if want("a", "f"):
            say("(a) a day of 50 mixed clients, (f) Dagster")
            mixed = GeneratorConfig(start=START, days=1, clients=10 if smoke else 50,
                                    largest_daily_calls=2_000 if smoke else 20_000, smallest_daily_calls=20, seed=12)
            app = seeded_app(stack, folder / "m", mixed)
            mixed_tasks = [t for p in plan_zone_days(app.engine, [ZoneDay(START, z) for z in
                                                                   sorted({c.timezone for c in list_clients(app.engine)})],
                                                      now=NOW) for t in p.tasks]
            old_s, new_s = compute(app, mixed_tasks, repeat)
            figure(f"(a) a day of {len(mixed_tasks)} mixed clients, batches vs per client-day", f"{old_s / new_s:.1f}x")
            in_memory(app, mixed_tasks, repeat)
            records, _, job_s, compute_s = dagster_events(app, folder / "home-0", START, START)
            figure("(f) event-log records of one day's run of every zone", f"{records} (target <= 20)")
            figure("(f) Dagster's share of a day's run, the first in this process",
                   f"{max(0.0, job_s - compute_s) / job_s:.0%} ({job_s:.2f} s, {compute_s:.2f} s of it in the "
                   "asset's own code; Dagster's first-run imports and migrations included)")
            dagster_pg = stack.enter_context(scratch_postgres("rp_bench_dagster"))
            for label, home, url in (("SQLite instance", "home-1", None), ("PostgreSQL instance", "home-pg", dagster_pg)):
                runs = [dagster_events(app, folder / f"{home}-{i}", START, START, url) for i in range(repeat + 1)][1:]
                job_s = statistics.median(r[2] for r in runs)
                compute_s = statistics.median(r[3] for r in runs)
                figure(f"(f) Dagster's share of a day's run ({len(mixed_tasks)} clients), {label}",
                       f"{max(0.0, job_s - compute_s) / job_s:.0%} (target <= 20 %; {job_s:.2f} s run in process, "
                       f"{compute_s:.2f} s of it in the asset's own code; medians of {repeat} after a first run)")

        if want("b", "c"):
            say("(b), (c) a 30-day summary")
            month = GeneratorConfig(start=START, days=3 if smoke else 30, clients=2,
                                    largest_daily_calls=3_000 if smoke else 40_000, smallest_daily_calls=2_000, seed=13,
                                    zones=("America/New_York",))
            app = seeded_app(stack, folder / "b", month)
            two = sorted((c for c in list_clients(app.engine) if c.slug.startswith("newyork")), key=lambda c: c.id)[-2:]
            run_client_days(app, [ClientDay(c.id, c.timezone, START + dt.timedelta(days=d))
                                  for c in two for d in range(month.days)], workers=1, now=NOW)
            for client in two:
                summaries(app, client, month.days, repeat)

        if want("f"):
            say("(f) event-log bytes against the number of dates")
            few, many = (3, 10) if smoke else (10, 300)
            tiny = GeneratorConfig(start=START, days=many, clients=2, largest_daily_calls=10, smallest_daily_calls=5,
                                   seed=14, zones=("Asia/Tokyo",))
            app = seeded_app(stack, folder / "f", tiny)
            _, few_bytes, _, _ = dagster_events(app, folder / "home-2", START, START + dt.timedelta(days=few - 1))
            _, many_bytes, _, _ = dagster_events(app, folder / "home-3", START, START + dt.timedelta(days=many - 1))
            figure(f"(f) event-log bytes, {many} dates vs {few}", f"{many_bytes / few_bytes:.1f}x "
                   f"({many_bytes / 1e6:.2f} MB vs {few_bytes / 1e6:.3f} MB; linear would be {many / few:.0f}x)")

        if want("e"):
            say("(e) the analyst query")
            analyst_query(folder, 3_000 if smoke else 150_000, repeat)
            shutil.rmtree(folder / "analyst", ignore_errors=True)
    say("\nfigures:")
    for name, value in FIGURES:
        say(f"  {name}: {value}")


if __name__ == "__main__":
    main()
