"""Period requests: the D-1 pre-cache's gain, cached against cold periods, flat streaming memory, the load balance.

Loads ``--days`` local days of synthetic traffic for ``--clients`` clients (Zipf sizes; the largest has
``--largest`` calls a weekday) into a scratch PostgreSQL database, then measures, against baselines
measured in this same run:

(a) a D-1 request of the largest client (``extract_period`` of yesterday: the ``call_detail`` rows as
    CSV, and the ``queue_performance`` summary) when the D-1 pre-cache ran for it (the days are cached)
    against the same request when it did not (its day is computed on the request);
(b) a 30-day ``queue_performance`` summary for the largest and the median client, cached against cold
    (every day computed on the request, on ``REPORT_PIPELINES_WORKERS`` processes);
(c) the peak memory of streaming the largest client's ``call_detail`` (CSV and Parquet) for 1 day and for
    30 days, each in a fresh process (Arrow's pool peak, Python's tracemalloc peak, the peak RSS growth),
    against the old path that holds the whole period (``read_report_arrow`` then ``write_table``);
(d) the load-balance simulation: historical-count against in-flight at 2x4, 8x8 and 32x16.

Every path is also checked against the other: the streamed CSV equals ``write_table`` of the whole
period byte for byte, a cold request's file equals a cached one's; the script fails if not.

    .venv/bin/python benchmarks/bench_periods.py [--clients 12] [--days 31] [--largest 30000] [--repeat 3]
    .venv/bin/python benchmarks/bench_periods.py --smoke      # seconds: tiny sizes, same checks
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
warnings.filterwarnings("ignore")

import pyarrow.parquet as pq
from _common import scratch_postgres

from report_pipelines.adapters.db.engine import make_engine
from report_pipelines.adapters.db.migrate import upgrade
from report_pipelines.adapters.db.repositories import CallEventRepository
from report_pipelines.adapters.exports import write_table
from report_pipelines.adapters.sources.synthetic import GeneratorConfig
from report_pipelines.app import App, FixedClock
from report_pipelines.domain.load_balance import burst, compare, make_workload
from report_pipelines.domain.reports import REPORTS
from report_pipelines.domain.timezones import local_date_of, local_day_window, parse_zone
from report_pipelines.services.clients import list_clients
from report_pipelines.services.demo import seed_demo
from report_pipelines.services.periods import extract_period
from report_pipelines.services.precache import precache_client_days
from report_pipelines.services.reading import read_report_arrow, summarize_report
from report_pipelines.settings import Settings

START = dt.date(2024, 9, 2)


def say(message: str) -> None:
    print(message, flush=True)


def median_time(repeat: int, run: Callable[[], object], setup: Callable[[], None] | None = None) -> float:
    times = []
    for _ in range(repeat):
        if setup:
            setup()
        started = time.perf_counter()
        run()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def forget(app: App, client_id: int, days: list[dt.date]) -> None:
    """Make days cold: without their manifest rows a day is computed again on the next request."""
    from report_pipelines.adapters.db.repositories import CacheManifestRepository

    manifest = CacheManifestRepository(app.engine)
    for day in days:
        manifest.forget(client_id, day, tuple(REPORTS))


def check(condition: bool, message: str) -> None:
    if not condition:
        say(f"MISMATCH: {message}")
        sys.exit(1)
    say(f"   ok: {message}")


# --- (c) memory, one case per fresh process ----------------------------------------------------------------
def _rss_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def memory_case(spec: dict) -> dict:
    import tracemalloc

    import pyarrow as pa

    from report_pipelines.adapters.exports import write_table
    from report_pipelines.services.reading import read_report_arrow

    settings = Settings(data_dir=Path(spec["data"]), database_url=spec["url"], store_root=spec["store"])
    app = App(settings, clock=FixedClock(dt.datetime.fromisoformat(spec["now"])))
    first, last = dt.date.fromisoformat(spec["first"]), dt.date.fromisoformat(spec["last"])
    out = Path(spec["out"])
    # warm up imports and connections on one small read, then measure from here
    read_report_arrow("daily_summary", spec["client"], last, last, app=app)
    Path("/proc/self/clear_refs").write_text("5")  # reset the peak RSS (Linux)
    rss_before = _rss_kib("VmRSS")
    pool_before = pa.total_allocated_bytes()
    tracemalloc.start()
    if spec["path"] == "stream":
        result = extract_period(spec["client"], "call_detail", first, last, format=spec["format"], out=out, force=True,
                                app=app)
        rows = result.rows
    else:
        whole = read_report_arrow("call_detail", spec["client"], first, last, app=app)
        write_table(whole, out, spec["format"])
        rows = whole.num_rows
    _, python_peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return {"rows": rows, "arrow_peak": pa.default_memory_pool().max_memory() - pool_before,
            "python_peak": python_peak, "rss_growth": (_rss_kib("VmHWM") - rss_before) * 1024}


def memory(spec: dict) -> dict:
    done = subprocess.run([sys.executable, __file__, "--memory-case", json.dumps(spec)], capture_output=True, text=True,
                          timeout=900)
    if done.returncode:
        raise RuntimeError(done.stderr[-2000:])
    return json.loads(done.stdout.strip().splitlines()[-1])


def mb(n: float) -> str:
    return f"{n / 1e6:.1f} MB"


# --- the run ------------------------------------------------------------------------------------------------
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=12)
    parser.add_argument("--days", type=int, default=31)
    parser.add_argument("--largest", type=float, default=30_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, in seconds: the checks, not the figures")
    parser.add_argument("--memory-case", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.memory_case:
        print(json.dumps(memory_case(json.loads(args.memory_case))))
        return
    if args.smoke:
        args.clients, args.days, args.largest, args.repeat = 3, 4, 300, 1
    period = min(30, args.days - 1)
    config = GeneratorConfig(start=START, days=args.days, clients=args.clients, largest_daily_calls=args.largest,
                             smallest_daily_calls=max(10.0, args.largest / 500), seed=5)
    with scratch_postgres("rp_bench_periods") as url, tempfile.TemporaryDirectory() as folder:
        engine = make_engine(url)
        upgrade(engine)
        started = time.perf_counter()
        now = dt.datetime.combine(config.end + dt.timedelta(days=1), dt.time(12), tzinfo=dt.UTC)
        seeded = seed_demo(engine, config, now=now)
        say(f"loaded {seeded.events:,} calls of {args.clients} clients x {args.days} days in "
            f"{time.perf_counter() - started:.1f} s")
        settings = Settings(data_dir=Path(folder), database_url=url, store_root=str(Path(folder) / "reports"),
                            workers=2)
        app = App(settings, clock=FixedClock(now))
        events = CallEventRepository(engine)
        sizes = {m.client_id: m.events for m in events.watermarks()}
        clients = sorted(list_clients(engine), key=lambda c: -sizes.get(c.id, 0))
        largest, median = clients[0], clients[len(clients) // 2]
        yesterday = local_date_of(now, parse_zone(largest.timezone)) - dt.timedelta(days=1)
        out = Path(folder) / "out"

        # (a) D-1 request, pre-cached or not
        say(f"(a) D-1 request of the largest client ({largest.slug}, {largest.timezone}, {yesterday}):")

        def d1(fmt_shape: tuple[str, str], name: str) -> Callable[[], object]:
            report, shape = fmt_shape
            return lambda: extract_period(largest.slug, report, yesterday, yesterday, shape=shape, out=out / name,
                                          force=True, app=app, now=now)

        for label, request in (("call_detail rows, CSV", ("call_detail", "days")),
                               ("queue_performance summary", ("queue_performance", "summary"))):
            cold = median_time(args.repeat, d1(request, "cold.csv"), lambda: forget(app, largest.id, [yesterday]))
            precache_client_days(app, largest.timezone, yesterday, [largest.id], now=now)  # what the D-1 run does
            warm = median_time(args.repeat, d1(request, "warm.csv"))
            check((out / "cold.csv").read_bytes() == (out / "warm.csv").read_bytes(),
                  f"{label}: the pre-cached answer equals the computed one")
            say(f"   {label}: not pre-cached {cold * 1000:.0f} ms, pre-cached {warm * 1000:.0f} ms: "
                f"**{cold / warm:.1f}x** faster when pre-cached")
            if request[1] == "days":  # where a pre-cached request's time goes: writing the CSV
                table = read_report_arrow(request[0], largest.slug, yesterday, yesterday, app=app, now=now)
                writing = median_time(args.repeat, lambda t=table: write_table(t, out / "plain.csv", "csv"))
                say(f"   (of which writing {table.num_rows:,} rows of CSV with write_table alone: {writing * 1000:.0f} ms)")

        # (b) 30-day summary, cached vs cold
        say(f"(b) {period}-day queue_performance summary, cached vs cold ({settings.workers} workers when cold):")
        for who, client in (("largest", largest), ("median", median)):
            last = local_date_of(now, parse_zone(client.timezone)) - dt.timedelta(days=1)
            days = [last - dt.timedelta(days=i) for i in range(period)]

            def summary(name: str, c=client, d=days) -> Callable[[], object]:
                return lambda: extract_period(c.slug, "queue_performance", d[-1], d[0], shape="summary",
                                              format="parquet", out=out / name, force=True, app=app, now=now)

            cold = median_time(args.repeat, summary("cold.parquet"), lambda c=client, d=days: forget(app, c.id, d))
            warm = median_time(args.repeat, summary("warm.parquet"))
            check(pq.read_table(out / "cold.parquet").equals(pq.read_table(out / "warm.parquet")),
                  f"{who} client: cached summary equals the cold one")
            blind = median_time(args.repeat, lambda c=client, d=days: summarize_report(
                "queue_performance", c.slug, d[-1], d[0], app=app, now=now))
            say(f"   {who} client {client.slug} ({sizes.get(client.id, 0):,} calls): cold {cold:.2f} s, cached "
                f"{warm * 1000:.0f} ms: **{cold / warm:.0f}x** (the same read without checking each day against "
                f"its calls, as read_report does: {blind * 1000:.0f} ms)")

        # (c) streaming memory, 1 vs 30 days, against the whole-period path
        say(f"(c) peak memory, call_detail of {largest.slug}, each case in a fresh process:")
        last = yesterday
        zone = parse_zone(largest.timezone)
        busiest = max((last - dt.timedelta(days=i) for i in range(period)),
                      key=lambda d: events.window_counts([largest.id], *local_day_window(d, zone)).get(largest.id, 0))
        figures = {}
        for fmt in ("csv",) if args.smoke else ("csv", "parquet"):
            for path in ("stream", "whole"):
                for label, first, final in (("1 day", busiest, busiest), (f"{period} days", last - dt.timedelta(days=period - 1), last)):
                    spec = {"data": folder, "url": url, "store": settings.store_root, "now": now.isoformat(),
                            "client": largest.slug, "first": first.isoformat(), "last": final.isoformat(),
                            "format": fmt, "path": path, "out": str(out / f"{path}-{label}.{fmt}")}
                    figures[(fmt, path, label)] = memory(spec)
            streamed = out / f"stream-{period} days.csv"
            if fmt == "csv":
                check(streamed.read_bytes() == (out / f"whole-{period} days.csv").read_bytes(),
                      f"streamed CSV of {period} days equals write_table of the whole period, byte for byte")
            for path, name in (("stream", "streamed (ours)"), ("whole", "whole period (old)")):
                one, many = figures[(fmt, path, "1 day")], figures[(fmt, path, f"{period} days")]
                say(f"   {fmt} {name}: 1 day ({one['rows']:,} rows) Arrow {mb(one['arrow_peak'])}, Python "
                    f"{mb(one['python_peak'])}, RSS +{mb(one['rss_growth'])}; {period} days ({many['rows']:,} rows) "
                    f"Arrow {mb(many['arrow_peak'])}, Python {mb(many['python_peak'])}, RSS +{mb(many['rss_growth'])}: "
                    f"**{many['arrow_peak'] / max(1, one['arrow_peak']):.2f}x** Arrow, "
                    f"{many['rss_growth'] / max(1, one['rss_growth']):.2f}x RSS")

        # (d) the simulation
        say("(d) load balance, simulated (a stream of requests; 4 % of client-days 20x heavier; utilisation 85 %):")
        sizes_sim = ((2, 4), (8, 8)) if args.smoke else ((2, 4), (8, 8), (32, 16))
        for workers, threads in sizes_sim:
            workload = make_workload(workers * threads, requests_per_slot=8 if args.smoke else 40)
            out_sim = compare(workload, workers, threads)
            old, new = out_sim["historical"], out_sim["in_flight"]
            bursts = compare(burst(workload), workers, threads)
            check(new.computed == old.computed and new.idle_while_waiting == 0.0,
                  f"{workers}x{threads}: both compute each client-day once; in-flight never idles while work waits")
            say(f"   {workers}x{threads}, {len(workload.requests):,} requests: makespan {old.makespan:,.0f} / "
                f"{new.makespan:,.0f} s ({old.makespan / new.makespan:.2f}x); p50 {old.p50:.1f} / {new.p50:.1f} s "
                f"({old.p50 / max(new.p50, 1e-9):.2f}x); p95 {old.p95:.1f} / {new.p95:.1f} s "
                f"(**{old.p95 / new.p95:.2f}x**); within {workload.deadline:.0f} s {old.deadline_share:.1%} / "
                f"{new.deadline_share:.1%}; idle thread-seconds while work waited {old.idle_while_waiting:,.0f} / 0; "
                f"all at once (a zone's midnight): makespan {bursts['historical'].makespan / bursts['in_flight'].makespan:.2f}x, "
                f"p95 {bursts['historical'].p95 / bursts['in_flight'].p95:.2f}x  (historical / in-flight)")
        engine.dispose()
        app.dispose()
    say("paths agree: all checks passed")


if __name__ == "__main__":
    main()
