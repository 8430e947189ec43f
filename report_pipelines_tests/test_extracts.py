"""Computing client-days: cache, manifest, locks, the bounded pool, timeouts, tenant isolation."""

from __future__ import annotations

import datetime as dt
import os
import threading
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine

from report_pipelines.adapters.db.bulk import load_call_events
from report_pipelines.adapters.db.engine import make_engine
from report_pipelines.adapters.db.migrate import upgrade
from report_pipelines.adapters.db.repositories import CacheManifestRepository, CallEventRepository
from report_pipelines.adapters.locks import ClientDayLocks, LockTimeout
from report_pipelines.adapters.report_store import ParquetReportStore
from report_pipelines.adapters.sources.synthetic import GeneratorConfig
from report_pipelines.app import App
from report_pipelines.domain.reports import REPORTS
from report_pipelines.domain.timezones import local_day_window, parse_zone
from report_pipelines.services.clients import add_client
from report_pipelines.services.extracts import (
    ANY_TIME,
    ClientDay,
    DayNotClosed,
    Extractor,
    ExtractTimeout,
    run_client_days,
)
from report_pipelines.settings import Settings
from report_pipelines_tests.extract_support import SMALL, UTC, late_call, seed, url_of

NOW = dt.datetime(2024, 6, 1, tzinfo=UTC)
DST_DAY = dt.date(2024, 3, 10)  # 23 hours in New York


def test_a_client_day_is_cached_with_its_manifest(engine: Engine, tmp_path: Path) -> None:
    seeded = seed(engine, tmp_path)
    ny = seeded.clients["America/New_York"]
    result = Extractor(seeded.app).compute(ClientDay(ny.id, ny.timezone, DST_DAY), list(REPORTS), now=NOW, run_id="r1")
    window = local_day_window(DST_DAY, parse_zone(ny.timezone))
    source = CallEventRepository(engine).day_source(ny.id, *window)
    assert result.status == "computed" and result.source_rows == source.rows > 0
    assert result.rows["call_detail"] + result.rejected_rows == source.rows
    assert result.rows["hourly_volume"] == 23  # every local hour of a spring-forward day
    entries = CacheManifestRepository(engine).entries(ny.id, DST_DAY, DST_DAY)
    assert sorted(e.report for e in entries) == sorted(REPORTS)
    for entry in entries:
        assert entry.is_fresh(source) and entry.run_id == "r1"
        assert pq.read_metadata(entry.path).num_rows == entry.rows
        assert entry.path.endswith(f"/{entry.report}/client={ny.id}/date=2024-03-10/part-0.parquet")


def test_recomputing_is_idempotent(engine: Engine, tmp_path: Path) -> None:
    seeded = seed(engine, tmp_path)
    ny = seeded.clients["America/New_York"]
    extractor = Extractor(seeded.app)
    task = ClientDay(ny.id, ny.timezone, DST_DAY)
    extractor.compute(task, list(REPORTS), now=NOW)
    first = {e.report: e.checksum for e in CacheManifestRepository(engine).entries(ny.id, DST_DAY, DST_DAY)}
    again = extractor.compute(task, list(REPORTS), now=NOW)
    second = {e.report: e.checksum for e in CacheManifestRepository(engine).entries(ny.id, DST_DAY, DST_DAY)}
    assert again.status == "computed" and first == second  # same bytes, one manifest row per report
    files = list((tmp_path / "reports").rglob("*"))
    assert not [f for f in files if f.name.endswith(".tmp")]


def test_a_day_that_has_not_ended_is_refused(sqlite_engine: Engine, tmp_path: Path) -> None:
    seeded = seed(sqlite_engine, tmp_path)
    sydney = seeded.clients["Australia/Sydney"]
    # 2024-03-11 ends in Sydney at 2024-03-11 13:00 UTC.
    with pytest.raises(DayNotClosed) as err:
        Extractor(seeded.app).compute(ClientDay(sydney.id, sydney.timezone, dt.date(2024, 3, 11)), ["call_detail"],
                                          now=dt.datetime(2024, 3, 11, 12, 59, tzinfo=UTC))
    assert err.value.field == "date" and "computed live" in str(err.value)


def test_reuse_only_what_is_fresh(engine: Engine, tmp_path: Path) -> None:
    seeded = seed(engine, tmp_path)
    ny = seeded.clients["America/New_York"]
    extractor = Extractor(seeded.app)
    task = ClientDay(ny.id, ny.timezone, DST_DAY)
    extractor.compute(task, list(REPORTS), now=NOW)
    assert extractor.compute(task, list(REPORTS), now=NOW, reuse_since=ANY_TIME).status == "reused"
    # A late call for that day: the cache is stale, so it is recomputed and counts the call.
    start, _ = local_day_window(DST_DAY, parse_zone(ny.timezone))
    load_call_events(engine, late_call(ny.id, "late-1", start + dt.timedelta(hours=9), NOW))
    recomputed = extractor.compute(task, list(REPORTS), now=NOW, reuse_since=ANY_TIME)
    assert recomputed.status == "computed" and recomputed.source_watermark == NOW


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_a_held_client_day_lock_makes_others_wait_then_time_out(request: pytest.FixtureRequest, backend: str,
                                                               tmp_path: Path) -> None:
    engine = request.getfixturevalue("sqlite_engine" if backend == "sqlite" else "pg_engine")
    holder, waiter = ClientDayLocks(engine, tmp_path / "locks"), ClientDayLocks(make_engine(url_of(engine)), tmp_path / "locks")
    held, release = threading.Event(), threading.Event()

    def hold() -> None:
        with holder.hold(1, DST_DAY):
            held.set()
            release.wait(10)

    thread = threading.Thread(target=hold)
    thread.start()
    try:
        assert held.wait(10)
        with pytest.raises(LockTimeout):
            with waiter.hold(1, DST_DAY, timeout_s=0.3):
                pass
        with waiter.hold(2, DST_DAY, timeout_s=0.3):  # another client-day is not blocked
            pass
    finally:
        release.set()
        thread.join()
    with waiter.hold(1, DST_DAY, timeout_s=1):  # released
        pass


def test_concurrent_computations_of_one_client_day_compute_once(engine: Engine, tmp_path: Path) -> None:
    seeded = seed(engine, tmp_path)
    ny = seeded.clients["America/New_York"]
    task = ClientDay(ny.id, ny.timezone, DST_DAY)
    since = dt.datetime.now(UTC)
    results = []

    def compute() -> None:
        results.append(Extractor(seeded.app).compute(task, list(REPORTS), now=NOW, reuse_since=since))

    threads = [threading.Thread(target=compute) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(r.status for r in results) == ["computed", "reused", "reused"]
    assert len(CacheManifestRepository(engine).entries(ny.id, DST_DAY, DST_DAY)) == len(REPORTS)


def test_the_pool_computes_every_client_day_biggest_first(engine: Engine, tmp_path: Path) -> None:
    seeded = seed(engine, tmp_path)
    tasks = [ClientDay(c.id, c.timezone, SMALL.start + dt.timedelta(days=d), weight=c.id)
             for c in seeded.clients.values() for d in range(SMALL.days)]
    results = run_client_days(seeded.app, tasks, workers=2, now=NOW, run_id="pool", pool_min_calls=0)
    assert len({r.worker for r in results}) == 2 and os.getpid() not in {r.worker for r in results}
    assert sorted((r.client_id, r.day) for r in results) == sorted((t.client_id, t.day) for t in tasks)
    assert all(r.status == "computed" for r in results)
    manifest = CacheManifestRepository(engine)
    for client in seeded.clients.values():
        assert len(manifest.entries(client.id, SMALL.start, SMALL.end)) == SMALL.days * len(REPORTS)


def test_a_free_worker_takes_the_next_day_while_a_big_one_runs(sqlite_engine: Engine, tmp_path: Path) -> None:
    # One contact-centre day of ~60,000 calls and eight small days: with in-flight balance the worker
    # busy with the big day takes (almost) none of the small ones; a static split would give it half.
    config = GeneratorConfig(start=dt.date(2024, 4, 1), days=4, clients=3, largest_daily_calls=60_000,
                             smallest_daily_calls=30, seed=4, zones=("Europe/Lisbon",))
    seeded = seed(sqlite_engine, tmp_path, config)
    by_size = sorted(seeded.all_clients, key=lambda c: CallEventRepository(sqlite_engine).count(c.id))
    big = by_size[-1]
    tasks = [ClientDay(big.id, big.timezone, config.start, weight=60_000)]
    tasks += [ClientDay(c.id, c.timezone, config.start + dt.timedelta(days=d), weight=30)
              for c in by_size[:-1] for d in range(config.days)]
    results = run_client_days(seeded.app, tasks, workers=2, now=NOW, pool_min_calls=0)
    first_big = next(r for r in results if r.client_id == big.id and r.day == config.start)
    small = [r for r in results if r.client_id != big.id]
    on_big_worker = sum(r.worker == first_big.worker for r in small)
    assert len(small) == 8 and on_big_worker <= 2, [(r.client_id, r.day, r.worker, round(r.seconds, 3)) for r in results]


def test_work_that_cannot_finish_in_time_fails_clearly(sqlite_engine: Engine, tmp_path: Path) -> None:
    seeded = seed(sqlite_engine, tmp_path)
    tasks = [ClientDay(c.id, c.timezone, SMALL.start + dt.timedelta(days=d))
             for c in seeded.clients.values() for d in range(SMALL.days)]
    with pytest.raises(ExtractTimeout, match=r"timeout_s: \d+ of 12 client-days done"):
        run_client_days(seeded.app, tasks, workers=1, now=NOW, timeout_s=0.0)


def test_one_failing_client_day_fails_the_work_with_its_reason(sqlite_engine: Engine, tmp_path: Path) -> None:
    seeded = seed(sqlite_engine, tmp_path)
    ny = seeded.clients["America/New_York"]
    tasks = [ClientDay(ny.id, ny.timezone, SMALL.start), ClientDay(ny.id, ny.timezone, dt.date(2024, 5, 31))]
    with pytest.raises(DayNotClosed):
        run_client_days(seeded.app, tasks, workers=2, now=dt.datetime(2024, 5, 31, 12, tzinfo=UTC), pool_min_calls=0)


# --- tenant isolation: property test -------------------------------------------------------------
calls_strategy = st.lists(
    st.tuples(st.integers(0, 2), st.integers(0, 2 * 86400 - 1), st.integers(0, 600), st.booleans()),
    min_size=1, max_size=40,
)


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(calls=calls_strategy)
def test_no_file_ever_holds_another_clients_rows(tmp_path_factory: pytest.TempPathFactory, calls: list) -> None:
    tmp = tmp_path_factory.mktemp("tenants")
    engine = make_engine(f"sqlite:///{tmp / 'app.sqlite3'}")
    upgrade(engine)
    zones = ["America/Sao_Paulo", "Europe/Lisbon", "Australia/Lord_Howe"]
    clients = [add_client(engine, f"c{i}", f"C{i}", zones[i], active_from=dt.date(2024, 10, 1)) for i in range(3)]
    base = dt.datetime(2024, 10, 5, tzinfo=UTC)
    own: dict[int, set[tuple[str, dt.datetime]]] = {c.id: set() for c in clients}
    for who, offset, length, answered in calls:
        client = clients[who]
        # Per-client counters: every client has a call "id-0", "id-1"...; ids are only unique per client.
        call_id = f"id-{len(own[client.id])}"
        start = base + dt.timedelta(seconds=offset)
        own[client.id].add((call_id, start))
        load_call_events(engine, late_call(client.id, call_id, start, base + dt.timedelta(days=3),
                                           answered=answered, seconds=length))
    app = App(Settings(data_dir=tmp, database_url=f"sqlite:///{tmp / 'app.sqlite3'}", store_root=str(tmp / "reports")))
    tasks = [ClientDay(c.id, c.timezone, dt.date(2024, 10, 4) + dt.timedelta(days=d)) for c in clients for d in range(4)]
    run_client_days(app, tasks, workers=1, now=dt.datetime(2024, 12, 1, tzinfo=UTC),
                    reports=["call_detail", "agent_performance"])
    store = ParquetReportStore(str(tmp / "reports"))
    for client in clients:
        days = [dt.date(2024, 10, 4) + dt.timedelta(days=d) for d in range(4)]
        rows = store.read_days("call_detail", client.id, days, REPORTS["call_detail"].schema)
        found = set(zip(rows.column("pbx_call_id").to_pylist(), rows.column("started_at").to_pylist(), strict=True))
        assert found == own[client.id]
        assert set(rows.column("client").to_pylist()) <= {client.id}
    app.dispose()
    engine.dispose()
