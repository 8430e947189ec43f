"""Report computation and reading: throughput, cached reads against recomputing, SQL and DuckDB.

Loads 30 local days of synthetic PBX traffic for 50 clients (Zipf sizes, from a small office to a
contact centre with >100,000 calls a weekday) into a scratch PostgreSQL database, then measures, in
this same run and against baselines measured in this same run:

(a) compute throughput of all reports together (events/s): ``run_client_days`` over every client-day
    on 1 worker (baseline) and on ``--workers`` processes; and, for the largest client's days, the
    split of a client-day's time between reading its events from PostgreSQL, screening, computing
    each report and writing Parquet (timed in-process with the Extractor's own parts);
(b) reading 30 cached days (``summarize_report`` / ``read_report_arrow``) against what a cache-less
    system does: read the period's calls from the events table in one query, split them into local
    days and compute the day tables (screen + ``compute_day`` per day, concatenated, then combined and
    presented), for the largest and the median client (by volume); for the median client also with
    one ``day_calls`` query per day;
(c) the cached 30-day ``queue_performance`` summary against a direct SQL ``GROUP BY`` over the raw
    ``call_events`` of the same window, whose numbers must agree;
(d) our read path against DuckDB reading the same Parquet files directly.

Every timing is a warm-up followed by the median of ``--repeat`` runs, except the full computations
of (a): ``--compute-runs`` of each, alternating 1 and N workers, median (they also fill the cache
that (b)-(d) read, and are their own warm-up). Ratios are "baseline time / our time" (or our rate /
baseline rate): above 1 means we are faster. The machine is shared: each (a) run prints the CPU time
other processes took meanwhile, and flags the runs they distorted.

    .venv/bin/python benchmarks/bench_reports.py [--clients 50] [--days 30] [--largest 110000] [--workers 2]
        [--repeat 3] [--compute-runs 3]
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from _common import Timer, scratch_postgres
from sqlalchemy import text

from report_pipelines.adapters.db.bulk import load_call_events
from report_pipelines.adapters.db.engine import engine_for
from report_pipelines.adapters.db.migrate import upgrade
from report_pipelines.adapters.db.repositories import (
    CacheManifestRepository,
    CallEventRepository,
    ClientRepository,
)
from report_pipelines.adapters.report_store import ParquetReportStore
from report_pipelines.adapters.sources.synthetic import CallGenerator, GeneratorConfig
from report_pipelines.domain.cache import call_ids_checksum
from report_pipelines.domain.clients import ClientRecord, ClientSpec
from report_pipelines.domain.reports import REPORTS, DayContext, get_report
from report_pipelines.domain.reports.screening import screen_calls
from report_pipelines.domain.timezones import local_day_window, parse_zone
from report_pipelines.services.extracts import ClientDay, Extractor, ExtractSettings, run_client_days
from report_pipelines.services.reading import read_report_arrow, summarize_report
from report_pipelines.settings import Settings

START = dt.date(2024, 9, 2)  # a Monday, well in the past: every day is closed
SUMMARIES = ("hourly_volume", "queue_performance")
DETAIL = "call_detail"

QUEUE_SQL = """
SELECT queue,
       count(*) AS offered,
       count(*) FILTER (WHERE disposition = 'ANSWERED') AS answered,
       count(*) FILTER (WHERE disposition = 'ABANDONED') AS abandoned,
       count(*) FILTER (WHERE disposition = 'ANSWERED'
                          AND answered_at - started_at <= make_interval(secs => :sl)) AS answered_within_sl,
       coalesce(sum(extract(epoch FROM answered_at - started_at)) FILTER (WHERE disposition = 'ANSWERED'), 0)
           AS wait_seconds_sum,
       coalesce(sum(extract(epoch FROM ended_at - answered_at)) FILTER (WHERE disposition = 'ANSWERED'), 0)
           AS talk_seconds_sum
FROM call_events
WHERE client_id = :client_id AND started_at >= :start AND started_at < :end AND direction = 'inbound'
GROUP BY queue
ORDER BY queue NULLS LAST
"""

DUCKDB_QUEUE_SQL = """
SELECT queue, service_level_seconds, count(*) AS days,
       sum(offered) AS offered, sum(answered) AS answered, sum(abandoned) AS abandoned, sum(missed) AS missed,
       sum(answered_within_sl) AS answered_within_sl, sum(abandoned_within_sl) AS abandoned_within_sl,
       sum(wait_seconds_sum) AS wait_seconds_sum, sum(abandoned_wait_seconds_sum) AS abandoned_wait_seconds_sum,
       sum(talk_seconds_sum) AS talk_seconds_sum, max(wait_seconds_max) AS wait_seconds_max
FROM read_parquet('{glob}', hive_partitioning = true)
WHERE date BETWEEN DATE '{first}' AND DATE '{last}'
GROUP BY queue, service_level_seconds
ORDER BY queue NULLS LAST, service_level_seconds
"""

DUCKDB_DETAIL_SQL = """
SELECT * FROM read_parquet('{glob}', hive_partitioning = true)
WHERE date BETWEEN DATE '{first}' AND DATE '{last}'
"""


# --- helpers --------------------------------------------------------------------------------------
def say(message: str) -> None:
    print(message, flush=True)


def measure(fn: Callable[[], Any], repeat: int) -> tuple[float, Any]:
    """One warm-up call, then the median of ``repeat`` timed calls; returns (seconds, last result)."""
    result = fn()
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - started)
    return statistics.median(times), result


def ms(seconds: float) -> str:
    return f"{seconds * 1000:,.1f} ms" if seconds < 10 else f"{seconds:,.1f} s"


def period_days(first: dt.date, days: int) -> list[dt.date]:
    return [first + dt.timedelta(days=i) for i in range(days)]


def with_keys(table: pa.Table, client_id: int, day: dt.date) -> pa.Table:
    n = table.num_rows
    return (table.append_column("client", pa.array(np.full(n, client_id, dtype=np.int64)))
            .append_column("date", pa.array([day] * n, pa.date32())))


class CpuMeter:
    """CPU seconds used during a phase: by this benchmark (its process tree), by the PostgreSQL
    server (all of it) and by anything else on the machine (Linux /proc; silent elsewhere)."""

    def __init__(self) -> None:
        self.tick = os.sysconf("SC_CLK_TCK")

    def snapshot(self) -> tuple[float, float, float] | None:
        try:
            with open("/proc/stat") as f:
                values = [int(v) for v in f.readline().split()[1:]]
            machine = (sum(values) - values[3] - values[4]) / self.tick  # all but idle and iowait
            stats = {}
            for entry in os.listdir("/proc"):
                if entry.isdigit():
                    try:
                        with open(f"/proc/{entry}/stat") as f:
                            head, tail = f.read().rsplit(")", 1)
                    except OSError:
                        continue
                    fields = tail.split()
                    # comm, ppid, utime + stime + cutime + cstime (exited children count in their parent)
                    stats[int(entry)] = (head.split("(", 1)[1], int(fields[1]),
                                         sum(int(v) for v in fields[11:15]) / self.tick)
        except OSError:
            return None
        ours, queue = 0.0, [os.getpid()]
        children: dict[int, list[int]] = {}
        for pid, (_, ppid, _) in stats.items():
            children.setdefault(ppid, []).append(pid)
        while queue:
            pid = queue.pop()
            if pid in stats:
                ours += stats[pid][2]
            queue.extend(children.get(pid, []))
        # The postmaster's own figure includes its exited backends; living ones count themselves.
        postgres = sum(cpu for comm, _, cpu in stats.values() if comm == "postgres")
        return machine, ours, postgres

    @staticmethod
    def describe(before: tuple[float, float, float] | None, after: tuple[float, float, float] | None,
                 wall: float) -> str:
        if before is None or after is None:
            return ""
        machine, ours, postgres = (a - b for a, b in zip(after, before, strict=True))
        other = max(0.0, machine - ours - postgres)
        flag = "  <- the machine was busy: this figure is distorted" if other > 0.15 * wall else ""
        return (f"CPU: benchmark {ours:.1f} s, PostgreSQL {postgres:.1f} s, other processes {other:.1f} s "
                f"(of {wall * (os.cpu_count() or 1):.1f} available){flag}")


class Rows:
    """The final table: figure, ours, baseline, ratio (baseline / ours: > 1 means we are faster)."""

    def __init__(self) -> None:
        self.rows: list[tuple[str, str, str, float]] = []

    def time(self, figure: str, ours_s: float, baseline_s: float) -> float:
        ratio = baseline_s / ours_s
        self.rows.append((figure, ms(ours_s), ms(baseline_s), ratio))
        return ratio

    def rate(self, figure: str, ours: float, baseline: float, unit: str = "ev/s") -> float:
        ratio = ours / baseline
        self.rows.append((figure, f"{ours:,.0f} {unit}", f"{baseline:,.0f} {unit}", ratio))
        return ratio

    def print(self) -> None:
        width = max(len(r[0]) for r in self.rows)
        say(f"\n{'figure':<{width}}  {'ours':>16}  {'baseline':>16}  {'ratio':>8}")
        say("-" * (width + 46))
        for figure, ours, baseline, ratio in self.rows:
            say(f"{figure:<{width}}  {ours:>16}  {baseline:>16}  {ratio:>7.2f}x")


# --- setup ----------------------------------------------------------------------------------------
def load(engine, config: GeneratorConfig) -> tuple[list[ClientRecord], dict[int, int]]:
    """Create the clients and COPY their calls; returns the records and the events per client id."""
    generator = CallGenerator(config)
    repo = ClientRepository(engine)
    records, events = [], {}
    gen_s = load_s = 0.0
    for client in generator.clients:
        record = repo.add(ClientSpec.parse(client.slug, client.name, client.timezone, active_from=config.start))
        with Timer() as g:
            tables = list(generator.iter_tables(client, record.id))
        table = pa.concat_tables(tables) if tables else None
        with Timer() as c:
            n = load_call_events(engine, table) if table is not None else 0
        gen_s += g.seconds
        load_s += c.seconds
        records.append(record)
        events[record.id] = n
    total = sum(events.values())
    say(f"  generated {total:,} events in {gen_s:.1f} s, COPY-loaded in {load_s:.1f} s "
        f"({total / load_s:,.0f} events/s)")
    with Timer() as a:
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(text("VACUUM ANALYZE call_events"))
    say(f"  VACUUM ANALYZE call_events: {a.seconds:.1f} s")
    return records, events


# --- (a) --------------------------------------------------------------------------------------------
WRITE = f"write Parquet ({len(REPORTS)} reports)"


def split_largest(url: str, tmp: Path, largest: ClientRecord, days: list[dt.date]) -> dict[str, float]:
    """Time the parts of the Extractor's client-day on the largest client's days (scratch store)."""
    extractor = Extractor(ExtractSettings(database_url=url, store_root=str(tmp / "split_store"),
                                          lock_dir=str(tmp / "locks")))
    parts: dict[str, float] = {"read events (PostgreSQL)": 0.0, "screen": 0.0, "source checksum + watermark": 0.0}
    parts |= {f"compute {name}": 0.0 for name in REPORTS}
    parts[WRITE] = 0.0
    zone = parse_zone(largest.timezone)

    def one_day(day: dt.date, record: bool) -> None:
        window = local_day_window(day, zone)
        t0 = time.perf_counter()
        calls = extractor.events.day_calls(largest.id, *window)
        t1 = time.perf_counter()
        ctx = DayContext(largest.id, largest.timezone, day, extractor.settings.service_level_seconds)
        screened = screen_calls(calls, ctx, *window)
        t2 = time.perf_counter()
        if calls.num_rows:
            pc.max(calls.column("ingested_at")).as_py()
        call_ids_checksum(calls.column("pbx_call_id").to_pylist())
        t3 = time.perf_counter()
        if record:
            parts["read events (PostgreSQL)"] += t1 - t0
            parts["screen"] += t2 - t1
            parts["source checksum + watermark"] += t3 - t2
        for name in REPORTS:
            c0 = time.perf_counter()
            table = get_report(name).compute_day(screened.clean, ctx)
            c1 = time.perf_counter()
            extractor.store.write_day(name, largest.id, day, table)
            c2 = time.perf_counter()
            if record:
                parts[f"compute {name}"] += c1 - c0
                parts[WRITE] += c2 - c1

    try:
        one_day(days[0], record=False)  # warm-up
        for day in days:
            one_day(day, record=True)
    finally:
        extractor.dispose()
    return parts


# --- (b) --------------------------------------------------------------------------------------------
def from_events(events: CallEventRepository, report: str, client: ClientRecord, days: list[dt.date],
                per_day: bool = False):
    """What a cache-less system does: read the period's calls, compute the day tables, combine.

    The calls come from one query for the whole period (split into local days in memory), or with
    ``per_day`` from one ``day_calls`` query per local day.
    """
    definition = get_report(report)
    zone = parse_zone(client.timezone)
    windows = [local_day_window(day, zone) for day in days]
    if not per_day:
        period = events.day_calls(client.id, windows[0][0], windows[-1][1])  # ordered by started_at
        starts = period.column("started_at").cast(pa.int64()).to_numpy()
        bounds = np.searchsorted(starts, [epoch_us(w[0]) for w in windows] + [epoch_us(windows[-1][1])])
    tables = []
    for i, (day, window) in enumerate(zip(days, windows, strict=True)):
        if per_day:
            calls = events.day_calls(client.id, *window)
        else:
            calls = period.slice(bounds[i], bounds[i + 1] - bounds[i])
        ctx = DayContext(client.id, client.timezone, day)
        tables.append(with_keys(definition.compute_day(screen_calls(calls, ctx, *window).clean, ctx), client.id, day))
    days_table = pa.concat_tables(tables)
    if report == DETAIL:
        return days_table
    return definition.present(definition.combine(days_table.drop_columns(["client"])))


def epoch_us(instant: dt.datetime) -> int:
    return (instant - dt.datetime(1970, 1, 1, tzinfo=dt.UTC)) // dt.timedelta(microseconds=1)


def cached(report: str, client: ClientRecord, days: list[dt.date], settings: Settings):
    if report == DETAIL:
        return read_report_arrow(report, client.id, days[0], days[-1], settings=settings, workers=1)
    return summarize_report(report, client.id, days[0], days[-1], settings=settings, workers=1)


def difference(a: Any, b: Any) -> str | None:
    """None when the two results are the same (floats to 1e-12 relative), else what differs."""
    if isinstance(a, pa.Table):
        if a.equals(b):
            return None
        if a.schema != b.schema or a.num_rows != b.num_rows:
            return f"schema or rows differ: {a.num_rows} vs {b.num_rows} rows"
        return "columns differ: " + ", ".join(n for n in a.column_names if not a.column(n).equals(b.column(n)))
    try:
        pd.testing.assert_frame_equal(a.reset_index(drop=True), b.reset_index(drop=True), check_exact=False, rtol=1e-12)
        return None
    except AssertionError as exc:
        return " ".join(str(exc).split())[:300]


def by_queue(frame: pd.DataFrame) -> pd.DataFrame:
    """Rows indexed by queue name, the null queue (inbound calls without one) as "(none)"."""
    return frame.assign(queue=frame["queue"].astype(object).where(frame["queue"].notna(), "(none)")
                        ).set_index("queue").sort_index()


def server_version(engine) -> str:
    with engine.connect() as conn:
        return conn.execute(text("SHOW server_version")).scalar_one().split()[0]


# --- main ---------------------------------------------------------------------------------------------
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--largest", type=float, default=110_000, help="largest client's calls on an ordinary Wednesday")
    parser.add_argument("--smallest", type=float, default=15)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=3, help="timed repetitions after the warm-up (median)")
    parser.add_argument("--compute-runs", type=int, default=3,
                        help="(a): full computations per worker count, interleaved 1/N (median)")
    args = parser.parse_args()

    import duckdb  # benchmark-only extra

    config = GeneratorConfig(start=START, days=args.days, clients=args.clients,
                             largest_daily_calls=args.largest, smallest_daily_calls=args.smallest)
    days = period_days(config.start, config.days)
    table = Rows()
    readme: list[str] = []
    run_started = time.perf_counter()

    with tempfile.TemporaryDirectory(prefix="rp_bench_reports_") as tmp_name, scratch_postgres() as url:
        tmp = Path(tmp_name)
        settings = Settings(data_dir=tmp, database_url=url, store_root=str(tmp / "reports"), workers=args.workers)
        engine = engine_for(url)
        try:
            # --- setup ---------------------------------------------------------------------------
            say(f"load average at start: {', '.join(f'{x:.2f}' for x in os.getloadavg())} "
                f"({os.cpu_count()} CPUs; other busy processes distort every figure)")
            say(f"setup: {args.clients} clients x {args.days} days from {config.start}, "
                f"largest ~{args.largest:,.0f} calls on a Wednesday, smallest ~{args.smallest:g}")
            upgrade(engine)
            clients, events = load(engine, config)
            total_events = sum(events.values())
            by_volume = sorted(clients, key=lambda c: events[c.id])
            largest, median = by_volume[-1], by_volume[len(by_volume) // 2]

            # --- (a) throughput ------------------------------------------------------------------
            extract = ExtractSettings.from_settings(settings)
            tasks = [ClientDay(c.id, c.timezone, d, weight=events[c.id] // config.days) for c in clients for d in days]
            say(f"\n(a) computing all {len(REPORTS)} reports for {len(tasks):,} client-days ({total_events:,} events)")
            meter = CpuMeter()
            rates: dict[int, list[float]] = {1: [], args.workers: []}
            results_1: list = []
            for run in range(args.compute_runs):
                for workers in (1, args.workers):
                    before = meter.snapshot()
                    with Timer() as t:
                        results = run_client_days(extract, tasks, workers=workers)
                    source = sum(r.source_rows for r in results)
                    assert source == total_events, (source, total_events)
                    assert all(r.status == "computed" and r.rejected_rows == 0 for r in results)
                    rates[workers].append(source / t.seconds)
                    if workers == 1:
                        results_1 = results
                    say(f"  run {run + 1}, workers={workers}: {t.seconds:6.1f} s = {source / t.seconds:>9,.0f} events/s   "
                        f"{meter.describe(before, meter.snapshot(), t.seconds)}")
            rate_1, rate_n = statistics.median(rates[1]), statistics.median(rates[args.workers])
            say(f"  median: workers=1 {rate_1:,.0f} events/s; workers={args.workers} {rate_n:,.0f} events/s "
                f"= {rate_n / args.workers:,.0f} events/s per worker (speed-up {rate_n / rate_1:.2f}x)")
            table.rate("(a) compute, all reports, workers=1", rate_1, rate_1)
            table.rate(f"(a) compute, all reports, workers={args.workers}", rate_n, rate_1)
            table.rate(f"(a) ... per worker (workers={args.workers})", rate_n / args.workers, rate_1)

            per_day = {r.day: r for r in results_1 if r.client_id == largest.id}
            weekdays = [per_day[d].source_rows for d in days if d.weekday() < 5]
            say(f"  largest client {largest.slug} ({largest.timezone}): {events[largest.id]:,} events, "
                f"weekdays {min(weekdays):,}-{max(weekdays):,} calls (mean {statistics.mean(weekdays):,.0f})")
            rest = [r for r in results_1 if r.client_id != largest.id]
            rest_s = sum(r.seconds for r in rest)
            say(f"  in the workers=1 run: the largest client's {len(per_day)} days {sum(r.seconds for r in per_day.values()):.1f} s "
                f"({events[largest.id] / sum(r.seconds for r in per_day.values()):,.0f} events/s); the other {len(rest):,} "
                f"client-days {rest_s:.1f} s for {sum(r.source_rows for r in rest):,} events "
                f"({rest_s / len(rest) * 1000:.1f} ms per client-day, median {statistics.median(r.seconds for r in rest) * 1000:.1f} ms)")
            with Timer() as split_t:
                parts = split_largest(url, tmp, largest, days)
            in_run = sum(per_day[d].seconds for d in days)
            parts_total = sum(parts.values())
            say(f"  split of the largest client's {len(days)} days (in-process, {split_t.seconds:.1f} s wall):")
            for name, seconds in parts.items():
                say(f"    {name:<32} {seconds:7.2f} s  {seconds / parts_total:6.1%}  "
                    f"({events[largest.id] / seconds:,.0f} events/s)")
            say(f"    {'sum of the parts':<32} {parts_total:7.2f} s; the same days took {in_run:.2f} s in the "
                f"workers=1 run (locks, manifest, ... = {in_run - parts_total:+.2f} s)")

            # --- (b) cached vs from events ----------------------------------------------------------
            repo = CallEventRepository(engine)
            manifest = CacheManifestRepository(engine)
            store = ParquetReportStore(settings.store_root)
            first, last = days[0], days[-1]
            ours_s: dict[tuple[str, str], float] = {}
            for label, client in (("largest", largest), ("median", median)):
                say(f"\n(b) {len(days)} cached days vs computing from call_events (one query for the period, split "
                    f"into days, screen + compute_day each): {label} client {client.slug} ({events[client.id]:,} events)")
                before = {(e.report, e.local_date): e.computed_at for e in manifest.entries(client.id, first, last)}
                assert len(before) == len(REPORTS) * len(days), len(before)
                assert all(store.exists(r, client.id, d) for r in REPORTS for d in days)
                for report in (*SUMMARIES, DETAIL):
                    ours, got = measure(lambda r=report, c=client: cached(r, c, days, settings), args.repeat)
                    base, want = measure(lambda r=report, c=client: from_events(repo, r, c, days), args.repeat)
                    differs = difference(got, want)
                    ratio = table.time(f"(b) {report} {len(days)} d, {label}: cached vs from events", ours, base)
                    ours_s[(report, label)] = ours
                    rows = got.num_rows if isinstance(got, pa.Table) else len(got)
                    say(f"  {report:<18} cached {ms(ours):>11}  from events {ms(base):>11}  {ratio:7.1f}x  "
                        f"({rows:,} rows, results {'identical' if differs is None else 'DIFFER'})")
                    if differs is not None:
                        say(f"    difference: {differs}")
                    if label == "median":  # small clients: per-day queries cost far more than the rows
                        per_day_s, _ = measure(lambda r=report, c=client: from_events(repo, r, c, days, per_day=True),
                                               args.repeat)
                        say(f"  {'':<18} (from events with one day_calls query per day instead: {ms(per_day_s)}, "
                            f"{per_day_s / ours:.1f}x the cached read)")
                after = {(e.report, e.local_date): e.computed_at for e in manifest.entries(client.id, first, last)}
                assert after == before, "reading recomputed cached days: the cached path was not measured"
                say("  cache manifest unchanged by the reads: every read came from the cached files")

            # --- (c) SQL GROUP BY ---------------------------------------------------------------------
            zone = parse_zone(largest.timezone)
            window = (local_day_window(first, zone)[0], local_day_window(last, zone)[1])
            params = {"client_id": largest.id, "start": window[0], "end": window[1], "sl": 20}
            say(f"\n(c) queue_performance over {len(days)} days, largest client: cached summary vs SQL GROUP BY "
                f"on call_events [{window[0]:%Y-%m-%d %H:%M}, {window[1]:%Y-%m-%d %H:%M}) UTC")

            def sql() -> pd.DataFrame:
                with engine.connect() as conn:
                    return pd.DataFrame(conn.execute(text(QUEUE_SQL), params).mappings().all())

            sql_s, by_sql = measure(sql, args.repeat)
            ours = ours_s[("queue_performance", "largest")]
            summary = cached("queue_performance", largest, days, settings)
            mine, theirs = by_queue(summary), by_queue(by_sql)
            counts = ["offered", "answered", "abandoned", "answered_within_sl"]
            counts_agree = mine[counts].astype("int64").equals(theirs[counts].astype("int64"))
            sums_agree = all(np.allclose(mine[c].astype(float), theirs[c].astype(float), rtol=1e-9)
                             for c in ("wait_seconds_sum", "talk_seconds_sum"))
            ratio_sql = table.time(f"(c) queue_performance {len(days)} d, largest: cached vs SQL GROUP BY", ours, sql_s)
            say(f"  SQL GROUP BY {ms(sql_s)}  cached summary {ms(ours)}  {ratio_sql:.1f}x")
            say(f"  per queue offered/answered/abandoned/answered_within_sl {'EQUAL' if counts_agree else 'DIFFER'}, "
                f"wait/talk sums {'equal' if sums_agree else 'DIFFER'}:")
            for queue, row in theirs.iterrows():
                say(f"    {str(queue):<10} offered {int(row.offered):>9,} answered {int(row.answered):>9,} "
                    f"abandoned {int(row.abandoned):>8,} within 20 s {int(row.answered_within_sl):>9,}")
            assert counts_agree and sums_agree, "cached summary and SQL disagree"

            # --- (d) DuckDB on the same Parquet files ---------------------------------------------------
            say("\n(d) our read path vs DuckDB reading the same Parquet files (largest client)")
            con = duckdb.connect()
            root = Path(settings.store_root).resolve()

            def glob(report: str) -> str:
                return f"{root}/{report}/client={largest.id}/date=*/part-0.parquet"

            def duck_summary() -> pd.DataFrame:
                return con.sql(DUCKDB_QUEUE_SQL.format(glob=glob("queue_performance"), first=first, last=last)).df()

            def duck_detail() -> pa.Table:
                return con.sql(DUCKDB_DETAIL_SQL.format(glob=glob(DETAIL), first=first, last=last)).to_arrow_table()

            duck_s, duck = measure(duck_summary, args.repeat)
            assert duck["offered"].astype("int64").tolist() == summary["offered"].astype("int64").tolist()
            ratio_duck = table.time(f"(d) queue_performance {len(days)} d, largest: ours vs DuckDB", ours, duck_s)
            say(f"  queue_performance summary: ours {ms(ours)}  DuckDB {ms(duck_s)}  {ratio_duck:.2f}x (same offered)")
            ours_detail = ours_s[(DETAIL, "largest")]
            duck_detail_s, detail = measure(duck_detail, args.repeat)
            assert detail.num_rows == events[largest.id], (detail.num_rows, events[largest.id])
            ratio_detail = table.time(f"(d) call_detail {len(days)} d, largest: ours vs DuckDB (Arrow)", ours_detail, duck_detail_s)
            say(f"  call_detail to Arrow ({detail.num_rows:,} rows): ours {ms(ours_detail)}  "
                f"DuckDB {ms(duck_detail_s)}  {ratio_detail:.2f}x")
            con.close()

            # --- summary ----------------------------------------------------------------------------------
            table.print()
            say(f"\n(ratio = baseline time / our time, or our rate / baseline rate; > 1: ours is faster. "
                f"Timings: warm-up + median of {args.repeat}; (a): median of {args.compute_runs} full runs each.)")
            n_days = len(days)
            ratios = {r[0]: r[3] for r in table.rows}
            computing = sum(v for k, v in parts.items() if k.startswith("compute"))
            readme += [
                f"Reports benchmark (`benchmarks/bench_reports.py`: {args.clients} clients x {n_days} days, "
                f"{total_events:,} events; largest client {events[largest.id]:,} events, "
                f"~{statistics.mean(weekdays):,.0f} calls a weekday; 2-core machine, PostgreSQL {server_version(engine)}):",
                "",
                "| figure | ours | baseline | ratio |",
                "|---|---:|---:|---:|",
                *[f"| {figure} | {ours} | {baseline} | {ratio:.2f}x |" for figure, ours, baseline, ratio in table.rows],
                "",
                f"- compute, all {len(REPORTS)} reports: {rate_1:,.0f} events/s on 1 worker, {rate_n:,.0f} events/s on "
                f"{args.workers} workers ({rate_n / args.workers:,.0f} per worker, {rate_n / rate_1:.2f}x the single worker)",
                f"- a large client-day's time: reading its events from PostgreSQL "
                f"{parts['read events (PostgreSQL)'] / parts_total:.0%}, screening + source checksum "
                f"{(parts['screen'] + parts['source checksum + watermark']) / parts_total:.0%}, computing the "
                f"{len(REPORTS)} reports {computing / parts_total:.0%}, writing Parquet "
                f"{parts[WRITE] / parts_total:.0%}",
            ]
            for report in (*SUMMARIES, DETAIL):
                big = ratios[f"(b) {report} {n_days} d, largest: cached vs from events"]
                mid = ratios[f"(b) {report} {n_days} d, median: cached vs from events"]
                readme.append(f"- {n_days}-day {report} from the cache vs computed from call_events: "
                              f"{big:,.1f}x faster for the largest client ({ms(ours_s[(report, 'largest')])}), "
                              f"{mid:,.1f}x for the median one ({ms(ours_s[(report, 'median')])})")
            readme += [
                f"- {n_days}-day queue_performance summary from the cache vs a SQL GROUP BY on call_events "
                f"(largest client): {ratio_sql:,.1f}x ({ms(ours)} vs {ms(sql_s)}), same counts",
                f"- our read path vs DuckDB on the same Parquet files: summary {ratio_duck:.2f}x, "
                f"call_detail to Arrow {ratio_detail:.2f}x (below 1: DuckDB is faster)",
            ]
        finally:
            engine.dispose()
            engine_for.cache_clear()

    say(f"load average at the end: {', '.join(f'{x:.2f}' for x in os.getloadavg())}")
    say(f"\ntotal run time {time.perf_counter() - run_started:.0f} s; scratch database dropped, temp folder removed")
    say("\nREADME:\n")
    for line in readme:
        say(line)


if __name__ == "__main__":
    main()
