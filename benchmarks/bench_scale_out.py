"""Scale-out (issue 15): one machine's pool against Celery workers, each figure a ratio measured in this run.

On a scratch PostgreSQL database with synthetic PBX traffic (50 clients, 90 days; ``--smoke``: 6 x 3):

(a) a backfill of every report for every client-day (``run_client_days``, the service every run uses),
    wall time with the local pool at 1 and 2 workers and with 1 and 2 Celery workers (separate
    ``report-pipelines worker`` processes on this machine, Redis broker), as speed-ups against 1 local
    worker; the four must agree on every client-day's rows and bytes;
(b) the per-run overhead of a Dagster run of one date (launch to the first client-day computed, in
    process), with the instance's storage on SQLite and on PostgreSQL (dagster-postgres);
(c) the simulated speed-up at 2, 8 and 32 workers: the load-balance simulation
    (``domain/load_balance.py``, in-flight hand-out) fed with the zone-day batches' costs measured in (a).

    .venv/bin/python benchmarks/bench_scale_out.py [--smoke]

Timings are printed, never asserted; a disagreement prints MISMATCH (the suite runs ``--smoke``).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import statistics
import sys
import tempfile
import time
import uuid
import warnings
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
warnings.filterwarnings("ignore")

import dagster as dg
import yaml
from _common import scratch_postgres
from sqlalchemy import text
from sqlalchemy.engine import make_url

from report_pipelines.adapters.celery_pool import CeleryPool
from report_pipelines.adapters.db.migrate import upgrade
from report_pipelines.adapters.sources.synthetic import GeneratorConfig
from report_pipelines.app import App
from report_pipelines.definitions import build_definitions
from report_pipelines.defs.resources import AppResource
from report_pipelines.domain.load_balance import Request, Workload, simulate
from report_pipelines.services import extracts
from report_pipelines.services.demo import seed_demo
from report_pipelines.services.extracts import ClientDay, ClientDayResult, run_client_days
from report_pipelines.services.serving import served_zones
from report_pipelines.services.zone_days import ZoneDay, plan_zone_days
from report_pipelines.settings import PoolSettings, Settings
from report_pipelines.worker_processes import Worker, start_worker, wait_for

UTC = dt.UTC
START = dt.date(2024, 6, 3)
BROKER = "redis://127.0.0.1:6379/11"


def say(text_: str) -> None:
    print(text_, flush=True)


def seeded(stack: contextlib.ExitStack, folder: Path, config: GeneratorConfig, now: dt.datetime) -> Settings:
    url = stack.enter_context(scratch_postgres("rp_bench_scale"))
    settings = Settings(data_dir=folder, database_url=url, store_root=str(folder / "reports_local"))
    app = App(settings)
    upgrade(app.engine)
    seed_demo(app.engine, config, now=now)
    with app.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text("ANALYZE"))
    app.dispose()
    return settings


def all_tasks(app: App, config: GeneratorConfig, now: dt.datetime) -> list[ClientDay]:
    zones = served_zones(app.engine, now)
    days = [config.start + dt.timedelta(n) for n in range(config.days)]
    return [t for p in plan_zone_days(app.engine, [ZoneDay(d, z) for d in days for z in zones], now=now)
            for t in p.tasks]


def backfill(app: App, tasks: list[ClientDay], workers: int, now: dt.datetime) -> tuple[float, list[ClientDayResult]]:
    t0 = time.perf_counter()
    results = run_client_days(app, tasks, workers=workers, now=now, pool_min_calls=0)
    return time.perf_counter() - t0, results


def outcome(results: list[ClientDayResult]) -> dict:
    return {(r.client_id, r.day): (r.status, tuple(sorted(r.rows.items())), tuple(sorted(r.bytes.items())))
            for r in results}


# --- (a) --------------------------------------------------------------------------------------------
def pools(stack: contextlib.ExitStack, settings: Settings, tasks: list[ClientDay], now: dt.datetime,
          folder: Path) -> list[ClientDayResult]:
    app = App(settings)
    warm = App(replace(settings, store_root=str(folder / "warm")))
    backfill(warm, tasks[: max(1, len(tasks) // 20)], 1, now)  # caches warm, imports done
    warm.dispose()
    timed: dict[str, tuple[float, list[ClientDayResult]]] = {}
    for workers in (1, 2):
        timed[f"local pool, {workers} worker{'s' * (workers > 1)}"] = backfill(app, tasks, workers, now)
    app.dispose()

    queue = f"rp_bench_{uuid.uuid4().hex[:8]}"
    pool = PoolSettings(kind="celery", broker_url=BROKER, queue=queue, worker_wait_s=30.0)
    celery = replace(settings, store_root=str(folder / "reports_celery"), pool=pool)
    env = {"REPORT_PIPELINES_DATABASE_URL": celery.database_url, "REPORT_PIPELINES_STORE": celery.store_root,
           "REPORT_PIPELINES_BROKER_URL": BROKER, "REPORT_PIPELINES_CELERY_QUEUE": queue,
           "REPORT_PIPELINES_DATA_DIR": str(folder)}
    workers: list[Worker] = []
    stack.callback(lambda: [w.stop() for w in workers])
    stack.callback(_forget_queue, queue)
    probe = CeleryPool(celery)
    stack.callback(probe.shutdown)
    celery_app = App(celery)
    for n in (1, 2):
        workers.append(start_worker(f"bench{n}@%h", env, folder / f"worker{n}.log"))
        wait_for(lambda n=n: len(probe.workers()) == n, 60, f"{n} Celery worker(s) to answer", workers)
        # the workers' first batch pays their connections: not part of the figure
        run_client_days(celery_app, tasks[:n], now=now)
        timed[f"Celery, {n} worker{'s' * (n > 1)}"] = backfill(celery_app, tasks, n, now)
    celery_app.dispose()

    base_s, base = timed["local pool, 1 worker"]
    expected = outcome(base)
    events = sum(t.weight for t in tasks)
    say(f"(a) backfill of {len(tasks)} client-days ({events:,} calls), every report")
    for name, (seconds, results) in timed.items():
        agree = outcome(results) == expected and len(results) == len(tasks)
        hosts = sorted({r.host for r in results if r.host})
        say(f"    {name:<22} {seconds:7.2f} s  speed-up {base_s / seconds:4.2f}x"
            f"{'  by ' + ', '.join(hosts) if hosts else ''}{'' if agree else '  MISMATCH: results differ'}")
        if name == "Celery, 2 workers" and len(hosts) != 2:
            say("    MISMATCH: the 2-worker Celery run did not use both workers")
    return base


def _forget_queue(queue: str) -> None:
    import redis

    client = redis.Redis.from_url(BROKER)
    for key in client.scan_iter(f"*{queue}*"):
        client.delete(key)
    client.close()


# --- (b) --------------------------------------------------------------------------------------------
def overhead(stack: contextlib.ExitStack, settings: Settings, day: dt.date, now: dt.datetime, folder: Path,
             repeat: int) -> None:
    """Launch (``execute_in_process`` called) to the first client-day computed, per instance storage."""
    defs = build_definitions(settings)
    pg = make_url(stack.enter_context(scratch_postgres("rp_bench_dagster")))
    storages = {
        "SQLite": {},
        "PostgreSQL": {"storage": {"postgres": {"postgres_db": {
            "hostname": pg.host, "port": pg.port or 5432, "username": pg.username, "password": pg.password or "",
            "db_name": pg.database, "scheme": "postgresql+psycopg2"}}}},
    }
    first: list[float] = []
    original = extracts.Extractor.compute_batch

    def noted(self, *args, **kwargs):
        result = original(self, *args, **kwargs)
        first.append(time.perf_counter())
        return result

    extracts.Extractor.compute_batch = noted
    figures = {}
    try:
        for name, config in storages.items():
            home = folder / f"dagster_{name}"
            home.mkdir()
            (home / "dagster.yaml").write_text(yaml.safe_dump({"telemetry": {"enabled": False}, **config}))
            samples, totals = [], []
            with dg.DagsterInstance.from_config(str(home)) as instance:
                for i in range(repeat + 1):  # the first run creates the storage's tables: left out
                    first.clear()
                    t0 = time.perf_counter()
                    result = defs.resolve_job_def("extract_reports_job").execute_in_process(
                        instance=instance, partition_key=str(day),
                        # later each time: the run recomputes (a pinned clock would make the last run's days fresh)
                        resources={"app": AppResource.for_settings(settings, now=now + dt.timedelta(hours=i + 1))},
                        run_config={"loggers": {"console": {"config": {"log_level": "WARNING"}}}})
                    total = time.perf_counter() - t0
                    if not result.success or not first:
                        say(f"    MISMATCH: the {name} run did not compute")
                        return
                    if i:
                        samples.append(first[0] - t0)
                        totals.append(total)
            figures[name] = (statistics.median(samples), statistics.median(totals))
    finally:
        extracts.Extractor.compute_batch = original
    base = figures["SQLite"][0]
    say(f"(b) a Dagster run of {day} (in process), median of {repeat}: launch to first client-day / whole run")
    for name, (to_first, total) in figures.items():
        say(f"    {name:<11} {to_first * 1000:7.0f} ms / {total * 1000:7.0f} ms  ({to_first / base:4.2f}x SQLite's overhead)")


# --- (c) --------------------------------------------------------------------------------------------
def simulated(results: list[ClientDayResult]) -> None:
    """In-flight hand-out of the measured zone-day batches (their cost: the 1-worker run's seconds)."""
    cost: dict[tuple[int, int], float] = {}
    batches: dict[tuple[str, dt.date], float] = {}
    for r in results:
        batches[(r.timezone, r.day)] = batches.get((r.timezone, r.day), 0.0) + r.seconds
    for i, seconds in enumerate(sorted(batches.values(), reverse=True)):
        cost[(i, 0)] = seconds
    workload = Workload((Request(0, 0.0, tuple(cost)),), cost, deadline=float("inf"))
    one = simulate(workload, "in_flight", 1, 1).makespan
    say(f"(c) simulated in-flight hand-out of the {len(cost)} measured zone-day batches (no database or store limit)")
    for workers in (2, 8, 32):
        span = simulate(workload, "in_flight", workers, 1).makespan
        say(f"    {workers:>2} workers: speed-up {one / span:5.2f}x  (ideal {workers}x; the largest batch "
            f"bounds it at {one / max(cost.values()):.1f}x)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, seconds not minutes")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    smoke = args.smoke
    config = GeneratorConfig(start=START, days=3 if smoke else 90, clients=6 if smoke else 50,
                             largest_daily_calls=300 if smoke else 2_000, smallest_daily_calls=12, seed=15,
                             zones=("America/New_York", "Europe/Lisbon", "Australia/Sydney", "America/Sao_Paulo"))
    now = dt.datetime.combine(config.start + dt.timedelta(config.days + 2), dt.time(12), UTC)
    with tempfile.TemporaryDirectory(prefix="rp_bench_scale_") as tmp, contextlib.ExitStack() as stack:
        folder = Path(tmp)
        settings = seeded(stack, folder, config, now)
        app = App(settings)
        tasks = all_tasks(app, config, now)
        app.dispose()
        base = pools(stack, settings, tasks, now, folder)
        overhead(stack, replace(settings, store_root=str(folder / "reports_dagster")), config.start, now, folder,
                 1 if smoke else args.repeat)
        simulated(base)


if __name__ == "__main__":
    main()
