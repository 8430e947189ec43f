"""Scale-out on Celery: two workers on two "hosts" (network namespaces reaching Redis and PostgreSQL over
their veth links; see cluster_support), Dagster backfills through them, one host killed mid-backfill.

What is proved: both workers take batches (in-flight balance across hosts), every client-day is computed
exactly once (the manifest and the workers' logs agree), the Parquet bytes equal a local-pool run's, and
a worker killed with its batch in flight loses nothing: the batch is re-delivered after the visibility
timeout and computed once, by the survivor, only after the dead one is gone.
"""

from __future__ import annotations

import datetime as dt
import os
import re
import threading
import time
import uuid
from dataclasses import replace
from pathlib import Path

import dagster as dg
import pytest
from sqlalchemy import Engine

from report_pipelines.adapters.celery_pool import CeleryPool, NoWorkerAnswered
from report_pipelines.adapters.db.repositories import CacheManifestRepository
from report_pipelines.adapters.sources.synthetic import GeneratorConfig
from report_pipelines.app import App, FixedClock
from report_pipelines.domain.reports import REPORTS
from report_pipelines.services.extracts import ClientDay, run_client_days
from report_pipelines.settings import PoolSettings
from report_pipelines_tests.cluster_support import Hosts, Worker, make_hosts, start_worker, wait_for
from report_pipelines_tests.dagster_support import QUIET
from report_pipelines_tests.extract_support import UTC, seed

JOB = "extract_reports_job"
#: Every seeded day has ended everywhere.
LATER = dt.datetime(2024, 3, 14, 12, tzinfo=UTC)
CLUSTER = GeneratorConfig(start=dt.date(2024, 3, 8), days=4, clients=6, largest_daily_calls=800,
                          smallest_daily_calls=60, seed=41,
                          zones=("America/New_York", "Europe/Lisbon", "Australia/Sydney"))
FIRST = ("2024-03-08", "2024-03-09")
SECOND = ("2024-03-10", "2024-03-11")
VISIBILITY_S = 6.0
LINE = re.compile(r"client-day (?P<task>\S+) client=(?P<client>\d+) day=(?P<day>\S+) status=(?P<status>\w+) "
                  r"host=(?P<host>\S+) pid=\d+ start=(?P<start>[\d.]+) end=(?P<end>[\d.]+)")


@pytest.fixture
def hosts() -> Hosts:
    made = make_hosts(2)
    yield made
    made.close()


@pytest.fixture
def broker() -> PoolSettings:
    """A queue of this test's own on a Redis database tests use (keys removed afterwards)."""
    queue = f"rp_test_{uuid.uuid4().hex[:10]}"
    pool = PoolSettings(kind="celery", broker_url="redis://127.0.0.1:6379/11", queue=queue, worker_wait_s=20.0,
                        visibility_timeout_s=VISIBILITY_S)
    yield pool
    import redis

    client = redis.Redis.from_url(pool.broker_url)
    for key in client.scan_iter(f"*{queue}*"):
        client.delete(key)
    client.close()


def computed_lines(workers: list[Worker], after: dict[str, int] | None = None) -> list[dict]:
    """The workers' "client-day" log lines (one per client-day computed), past ``after`` lines of each."""
    return [LINE.search(line).groupdict() for w in workers for line in w.lines()[(after or {}).get(w.hostname, 0):]
            if LINE.search(line)]


def backfill(settings, instance: dg.DagsterInstance, days: tuple[str, str]) -> dg.ExecuteInProcessResult:
    from report_pipelines.definitions import defs
    from report_pipelines.defs.resources import AppResource

    return defs.resolve_job_def(JOB).execute_in_process(
        instance=instance, run_config=QUIET, resources={"app": AppResource.for_settings(settings, now=LATER)},
        tags={"dagster/asset_partition_range_start": days[0], "dagster/asset_partition_range_end": days[1]})


def expected_client_days(engine: Engine, days: tuple[str, str], clients) -> set[tuple[int, str]]:
    first, last = (dt.date.fromisoformat(d) for d in days)
    return {(c.id, str(first + dt.timedelta(n))) for c in clients for n in range((last - first).days + 1)}


def test_two_celery_hosts_share_a_backfill_compute_each_client_day_once_and_survive_losing_one(
        pg_engine: Engine, tmp_path: Path, hosts: Hosts, broker: PoolSettings) -> None:
    seeded = seed(pg_engine, tmp_path, CLUSTER)
    settings = replace(seeded.settings, store_root=str(tmp_path / "reports_celery"), pool=broker)
    env = {"REPORT_PIPELINES_DATABASE_URL": settings.database_url, "REPORT_PIPELINES_STORE": settings.store_root,
           "REPORT_PIPELINES_BROKER_URL": broker.broker_url, "REPORT_PIPELINES_CELERY_QUEUE": broker.queue,
           "REPORT_PIPELINES_VISIBILITY_TIMEOUT_S": str(VISIBILITY_S)}
    workers: list[Worker] = []
    try:
        for host in hosts.hosts:
            (tmp_path / host.name).mkdir()
            workers.append(start_worker(host, f"w{host.name[1:]}@{host.name}",
                                        {**env, "REPORT_PIPELINES_DATA_DIR": str(tmp_path / host.name)},
                                        tmp_path / f"{host.name}.log"))
        pool = CeleryPool(settings)
        wait_for(lambda: len(pool.workers()) == 2, 60, "both workers to answer", workers)
        pool.shutdown()
        instance = dg.DagsterInstance.ephemeral()
        # 1. A backfill through both hosts.
        result = backfill(settings, instance, FIRST)
        assert result.success
        expected = expected_client_days(pg_engine, FIRST, seeded.all_clients)
        lines = computed_lines(workers)
        assert sorted((int(x["client"]), x["day"]) for x in lines) == sorted(expected)  # once each, logs
        assert {x["host"] for x in lines} == {w.hostname for w in workers}  # both did work
        if hosts.isolated:  # ... talking to Redis and PostgreSQL from its own address, over its own link
            tokens = set(_connections())
            for host in hosts.hosts:
                assert {f"{host.address}:", f"{host.gateway}:6379", f"{host.gateway}:5432"} <= tokens, host
        manifest = CacheManifestRepository(pg_engine)
        ids = [c.id for c in seeded.all_clients]
        for day in FIRST:
            entries = manifest.entries_for_day(ids, dt.date.fromisoformat(day))
            assert {e.run_id for e in entries} == {result.run_id}
            assert sorted((e.client_id, e.report) for e in entries) == sorted(
                (c, r) for c, d in expected if d == day for r in REPORTS)
        # The run's metadata (one run, every partition's materialization) says who computed what.
        by_worker = result.get_asset_materialization_events()[0].materialization.metadata["client_days_by_worker"]
        assert set(by_worker.value) == {w.hostname for w in workers}
        assert sum(by_worker.value.values()) == len(expected)

        # ... and its Parquet bytes are a local pool's.
        local = replace(settings, store_root=str(tmp_path / "reports_local"), pool=PoolSettings())
        assert backfill(local, instance, FIRST).success
        celery_files = _files(Path(settings.store_root))
        assert celery_files and celery_files == _files(Path(local.store_root))

        # 2. One host dies mid-backfill with a batch in flight: hold the first day's locks so both workers
        # block on one of its batches, SIGKILL worker 1 there, let go.
        held, killed = threading.Event(), {}
        day = dt.date.fromisoformat(SECOND[0])

        def kill_when_blocked() -> None:
            holder = App(settings)
            with holder.locks.hold_many(ids, day, 10):
                held.set()
                wait_for(lambda: _blocked_on(workers[0], day), 30, "worker 1 to wait for a held client-day")
                [killed["task"]] = _blocked_on(workers[0], day)
                workers[0].kill()
                killed["at"] = time.time()
            holder.dispose()

        before = {w.hostname: len(w.lines()) for w in workers}
        killer = threading.Thread(target=kill_when_blocked)
        killer.start()
        held.wait(10)
        result = backfill(settings, instance, SECOND)
        killer.join(30)
        assert result.success and killed
        expected = expected_client_days(pg_engine, SECOND, seeded.all_clients)
        lines = computed_lines(workers, before)
        assert sorted((int(x["client"]), x["day"]) for x in lines) == sorted(expected)  # none twice, none lost
        redelivered = [x for x in lines if x["task"] == killed["task"]]
        assert redelivered and {x["host"] for x in redelivered} == {workers[1].hostname}
        # not at once, but after the visibility timeout (kombu counts it from the fetch, before the kill:
        # half of it, so a starved machine's lag between the two does not count)
        assert min(float(x["start"]) for x in redelivered) >= killed["at"] + VISIBILITY_S / 2
        for d in SECOND:
            entries = manifest.entries_for_day(ids, dt.date.fromisoformat(d))
            assert {e.run_id for e in entries} == {result.run_id}
            assert len(entries) == len([1 for _, dd in expected if dd == d]) * len(REPORTS)
    finally:
        for w in workers:
            w.stop()


def test_a_run_with_no_worker_fails_in_one_line_naming_the_broker_and_queue(sqlite_engine: Engine,
                                                                           tmp_path: Path,
                                                                           broker: PoolSettings) -> None:
    seeded = seed(sqlite_engine, tmp_path)
    settings = replace(seeded.settings, pool=replace(broker, worker_wait_s=1.0))
    client = seeded.all_clients[0]
    task = ClientDay(client.id, client.timezone, dt.date(2024, 3, 9))
    with pytest.raises(NoWorkerAnswered) as caught:
        run_client_days(App(settings, clock=FixedClock(LATER)), [task])
    message = str(caught.value)
    assert "\n" not in message and broker.queue in message and "127.0.0.1:6379/11" in message
    assert "report-pipelines worker" in message


def _blocked_on(worker: Worker, day: dt.date) -> list[str]:
    """The worker's tasks of ``day`` that started and did not finish (it waits for their locks)."""
    started = {m.group(1) for line in worker.lines("start ") if (m := re.search(r"start (\S+) .* " + str(day), line))}
    finished = {m.group(1) for line in worker.lines("done ") if (m := re.search(r"done (\S+)", line))}
    return sorted(started - finished)


def _connections() -> list[str]:
    """The local and peer addresses of this machine's TCP connections (``ss -tn``), as ``addr:`` and
    ``addr:port`` tokens."""
    import subprocess

    tokens = []
    for line in subprocess.run(["ss", "-tn"], capture_output=True, text=True).stdout.splitlines()[1:]:
        for field in line.split()[3:5]:
            address, _, port = field.rpartition(":")
            tokens += [f"{address}:", f"{address}:{port}"]
    return tokens


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*.parquet"))
            if not p.relative_to(root).parts[0].startswith("_")}


def test_pool_settings_are_read_from_the_environment_and_refused_naming_their_variable(tmp_path: Path) -> None:
    from report_pipelines.domain.errors import InvalidInput
    from report_pipelines.settings import Settings

    base = {"REPORT_PIPELINES_DATA_DIR": str(tmp_path)}
    assert Settings.from_env(base).pool == PoolSettings()
    pool = Settings.from_env({**base, "REPORT_PIPELINES_POOL": "celery",
                              "REPORT_PIPELINES_BROKER_URL": "amqp://guest@127.0.0.1:5672//",
                              "REPORT_PIPELINES_WORKER_WAIT_S": "5", "REPORT_PIPELINES_CELERY_QUEUE": "reports.eu"}).pool
    assert (pool.kind, pool.broker_url, pool.worker_wait_s, pool.queue) == (
        "celery", "amqp://guest@127.0.0.1:5672//", 5.0, "reports.eu")
    for name, bad in (("POOL", "threads"), ("BROKER_URL", "http://x"), ("WORKER_WAIT_S", "0"),
                      ("CELERY_QUEUE", "a queue"), ("VISIBILITY_TIMEOUT_S", "soon")):
        with pytest.raises(InvalidInput, match=f"REPORT_PIPELINES_{name}"):
            Settings.from_env({**base, f"REPORT_PIPELINES_{name}": bad})


def test_the_wire_format_rebuilds_the_packages_dataclasses_and_nothing_else() -> None:
    from report_pipelines.adapters.celery_pool import WrongWorkerSettings, from_wire, to_wire
    from report_pipelines.services.extracts import ClientDayResult

    result = ClientDayResult(1, dt.date(2024, 3, 9), "Europe/Lisbon", "computed", {"call_detail": 3}, {"call_detail": 9},
                             3, dt.datetime(2024, 3, 10, tzinfo=UTC), {"no_end": 1}, 0.5, worker=7, host="w1@h1")
    from kombu.utils.json import dumps, loads

    assert from_wire(loads(dumps(to_wire([result])))) == [result]
    with pytest.raises(WrongWorkerSettings, match="not a report_pipelines class"):
        from_wire({"__dataclass__": "os:system", "fields": {}})


def test_batches_waiting_while_no_worker_answers_fail_after_the_wait(tmp_path: Path, broker: PoolSettings) -> None:
    """Workers gone mid-run (the queue's only consumers lost): what waits fails in one line, not forever."""
    from report_pipelines.services import extracts
    from report_pipelines.settings import Settings

    settings = Settings(data_dir=tmp_path, database_url=f"sqlite:///{tmp_path / 'x.sqlite3'}",
                        store_root=str(tmp_path / "reports"), pool=replace(broker, worker_wait_s=1.0))
    pool = CeleryPool(settings)
    try:
        future = pool.submit(extracts._work, [ClientDay(1, "UTC", dt.date(2024, 3, 9))], ("call_detail",), LATER,
                             None, None, None)
        assert isinstance(future.exception(timeout=15), NoWorkerAnswered)
        assert "no Celery worker answered" in str(future.exception())
    finally:
        pool.shutdown(wait=False)


def test_the_cluster_demo_backfills_through_two_workers_says_who_did_what_and_stops_them(
        pg_engine: Engine, tmp_path: Path, broker: PoolSettings, monkeypatch: pytest.MonkeyPatch) -> None:
    from report_pipelines.demo_cluster import run_cluster_demo

    seeded = seed(pg_engine, tmp_path)
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "dagster_home"))
    (tmp_path / "dagster_home").mkdir()
    (tmp_path / "dagster_home" / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    said: list[str] = []
    settings = replace(seeded.settings, pool=replace(broker, kind="process"))
    assert run_cluster_demo(App(settings, clock=FixedClock(LATER)), said.append, days=2,
                            last_day=dt.date(2024, 3, 10))
    text = "\n".join(said)
    assert "'w1@demo-cluster'" in text and "'w2@demo-cluster'" in text  # both computed some
    assert re.search(r"6 client-days of 6 zone-days, 6 computed", text)
    pids = [int(p) for p in re.search(r"stopped the 2 workers it started \(pids (\d+), (\d+)\)", text).groups()]
    for pid in pids:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)


def test_a_workers_expected_errors_come_back_as_their_own_class_and_line(tmp_path: Path,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """The task body refusing a day that has not ended, and what Celery's JSON result backend rebuilds."""
    from types import SimpleNamespace

    from report_pipelines.adapters import celery_pool
    from report_pipelines.services import extracts
    from report_pipelines.services.extracts import DayNotClosed
    from report_pipelines.settings import Settings

    settings = Settings(data_dir=tmp_path, database_url=f"sqlite:///{tmp_path / 'x.sqlite3'}",
                        store_root=str(tmp_path / "reports"))
    monkeypatch.setattr(celery_pool, "_settings", settings)
    monkeypatch.setattr(extracts, "_worker", None)
    task = SimpleNamespace(request=SimpleNamespace(id="t1", hostname="w1@test"))
    open_day = [ClientDay(1, "UTC", LATER.date())]
    args = celery_pool.to_wire([open_day, ["call_detail"], LATER, None, None, None])
    with pytest.raises(DayNotClosed) as caught:
        celery_pool._call(task, "report_pipelines.services.extracts", "_work", celery_pool.where(settings), args)
    backend = celery_pool.celery_app(PoolSettings()).backend
    rebuilt = backend.exception_to_python(backend.prepare_exception(caught.value))
    assert type(rebuilt) is DayNotClosed and str(rebuilt).startswith(f"date: {LATER.date()} has not ended in UTC")
    with pytest.raises(celery_pool.WrongWorkerSettings, match="REPORT_PIPELINES_DATABASE_URL"):
        celery_pool._call(task, "report_pipelines.services.extracts", "_work", ("sqlite://@/other", "x"), args)
