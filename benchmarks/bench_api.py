"""The HTTP API's overhead: a cached D-1 summary over loopback HTTP against the same service in-process.

Seeds ``--days`` local days (ending yesterday) of synthetic traffic for ``--clients`` clients into a
scratch PostgreSQL database, caches every closed day, creates a client key, then starts the real
``report-pipelines serve`` in its own process on a free loopback port. It measures, in this same run:

* **in-process**: ``extract_period`` of yesterday's ``queue_performance`` summary as JSON lines (the
  service the API calls, channel ``api``), from 1, 10 and 50 threads;
* **HTTP**: ``GET /v1/reports/queue_performance?from=D-1&to=D-1&shape=summary&format=json`` from 1, 10
  and 50 concurrent clients (httpx, one connection each), ``--requests`` requests per level;

and prints p50 / p95 latency, throughput and the ratio HTTP / in-process. Every answer must be a 200
whose body equals the in-process body; any other answer is counted as an error and the script prints
MISMATCH and exits non-zero. The load is bounded (a fixed number of requests, loopback only).

    .venv/bin/python benchmarks/bench_api.py [--clients 6] [--days 8] [--requests 1000]
    .venv/bin/python benchmarks/bench_api.py --smoke      # seconds: tiny sizes, same checks
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import io
import os
import socket
import statistics
import subprocess
import sys
import time
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
warnings.filterwarnings("ignore")

import httpx
from _common import scratch_postgres

from report_pipelines.adapters.db.engine import make_engine
from report_pipelines.adapters.db.migrate import upgrade
from report_pipelines.adapters.sources.synthetic import GeneratorConfig
from report_pipelines.app import App
from report_pipelines.domain.timezones import local_date_of, parse_zone
from report_pipelines.services.api_keys import create_key
from report_pipelines.services.clients import list_clients
from report_pipelines.services.demo import seed_demo
from report_pipelines.services.periods import extract_period
from report_pipelines.settings import Settings

ZONE = "Europe/Lisbon"
REPORT = "queue_performance"
LEVELS = (1, 10, 50)


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(p / 100 * len(ordered) + 0.5) - 1))]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def in_process(app: App, client_id: int, day: dt.date, concurrency: int, count: int) -> tuple[list[float], float, bytes]:
    def one() -> tuple[float, bytes]:
        out = io.BytesIO()
        started = time.perf_counter()
        extract_period(client_id, REPORT, day, day, shape="summary", format="json", out="-", stdout=out,
                       channel="api", app=app)
        return time.perf_counter() - started, out.getvalue()

    started = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        results = list(pool.map(lambda _: one(), range(count)))
    wall = time.perf_counter() - started
    bodies = {body for _, body in results}
    if len(bodies) != 1:
        print(f"MISMATCH: in-process answers differ ({len(bodies)} distinct bodies)")
    return [s for s, _ in results], wall, results[0][1]


async def over_http(url: str, token: str, day: dt.date, concurrency: int, count: int,
                    expected: bytes) -> tuple[list[float], float, int]:
    path = f"/v1/reports/{REPORT}?from={day}&to={day}&shape=summary&format=json"
    queue: asyncio.Queue[int] = asyncio.Queue()
    for i in range(count):
        queue.put_nowait(i)
    latencies: list[float] = []
    errors = 0

    async def worker() -> None:
        nonlocal errors
        async with httpx.AsyncClient(base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=60,
                                     limits=httpx.Limits(max_connections=1)) as client:
            while True:
                try:
                    queue.get_nowait()
                except asyncio.QueueEmpty:
                    return
                started = time.perf_counter()
                try:
                    answer = await client.get(path)
                    ok = answer.status_code == 200 and answer.content == expected
                except httpx.HTTPError:
                    ok = False
                latencies.append(time.perf_counter() - started)
                errors += not ok

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return latencies, time.perf_counter() - started, errors


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=6)
    parser.add_argument("--days", type=int, default=8)
    parser.add_argument("--largest", type=int, default=3000)
    parser.add_argument("--requests", type=int, default=1000, help="requests per concurrency level")
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, same checks (seconds)")
    args = parser.parse_args()
    if args.smoke:
        args.clients, args.days, args.largest, args.requests = 2, 3, 200, 60
    errors_total = 0
    with scratch_postgres("rp_bench_api") as url:
        engine = make_engine(url)
        upgrade(engine)
        now = dt.datetime.now(dt.UTC)
        yesterday = local_date_of(now, parse_zone(ZONE)) - dt.timedelta(days=1)
        config = GeneratorConfig(start=yesterday - dt.timedelta(days=args.days - 1), days=args.days,
                                 clients=args.clients, largest_daily_calls=args.largest,
                                 smallest_daily_calls=min(40, args.largest), seed=12, zones=(ZONE,))
        seed_demo(engine, config, now=now - dt.timedelta(days=args.days + 1))
        folder = Path(os.environ.get("TMPDIR", "/tmp")) / f"rp-bench-api-{os.getpid()}"
        settings = Settings(data_dir=folder, database_url=url, store_root=str(folder / "reports"), workers=2)
        app = App(settings)
        biggest = list_clients(engine)[0]
        # cache the D-1 day (what the pre-cache does at the zone's midnight)
        extract_period(biggest.id, REPORT, yesterday, yesterday, shape="summary", format="json", out="-",
                       stdout=io.BytesIO(), channel="python", app=app)
        token = create_key(app, client=biggest.slug, label="bench").token
        port = free_port()
        env = {**os.environ, "REPORT_PIPELINES_DATABASE_URL": url, "REPORT_PIPELINES_DATA_DIR": str(folder),
               "REPORT_PIPELINES_STORE": str(folder / "reports"), "REPORT_PIPELINES_API_RATE_PER_MINUTE": "10000000"}
        cli = Path(sys.executable).with_name("report-pipelines")
        server = subprocess.Popen([str(cli), "serve", "--host", "127.0.0.1", "--port", str(port)], env=env,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        base = f"http://127.0.0.1:{port}"
        try:
            for _ in range(300):
                try:
                    if httpx.get(f"{base}/v1/health", timeout=1).status_code == 200:
                        break
                except httpx.HTTPError:
                    time.sleep(0.1)
            else:
                print("MISMATCH: the API server did not start")
                return 1
            print(f"cached D-1 summary ({REPORT}, {yesterday}) of {biggest.slug}: {args.requests} requests per level")
            print(f"{'clients':>8} {'in-process p50':>15} {'p95':>8} {'req/s':>8}   {'HTTP p50':>9} {'p95':>8} "
                  f"{'req/s':>8}   {'p50 ratio':>9} {'errors':>6}")
            for level in LEVELS:
                local, local_wall, expected = in_process(app, biggest.id, yesterday, level, args.requests)
                remote, remote_wall, errors = asyncio.run(over_http(base, token, yesterday, level, args.requests,
                                                                    expected))
                errors_total += errors
                ratio = statistics.median(remote) / statistics.median(local)
                print(f"{level:>8} {statistics.median(local) * 1000:>12.2f} ms {percentile(local, 95) * 1000:>5.2f} ms "
                      f"{args.requests / local_wall:>8.0f}   {statistics.median(remote) * 1000:>6.2f} ms "
                      f"{percentile(remote, 95) * 1000:>5.2f} ms {args.requests / remote_wall:>8.0f}   "
                      f"{ratio:>8.2f}x {errors:>6}")
        finally:
            server.terminate()
            server.wait(30)
            app.dispose()
            engine.dispose()
    if errors_total:
        print(f"MISMATCH: {errors_total} HTTP answers were not the in-process body")
        return 1
    print("every HTTP answer equals the in-process body: 0 errors")
    return 0


if __name__ == "__main__":
    sys.exit(main())
