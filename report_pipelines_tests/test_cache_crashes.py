"""The report store under SIGKILL: extraction processes killed at random moments never leave a manifest
row that lies about its file, the repair pass makes rows and files agree, and re-runs are byte-identical.
The kill test runs on a local store and on object storage (a bucket of the test session's moto server)."""

from __future__ import annotations

import datetime as dt
import hashlib
import multiprocessing
import os
import random
import signal
import time
from dataclasses import replace
from pathlib import Path

import pyarrow.fs as pafs
import pytest
from sqlalchemy import Engine

from report_pipelines.adapters.db.repositories import CacheManifestRepository
from report_pipelines.app import App
from report_pipelines.domain.reports import REPORTS
from report_pipelines.services.cache_repair import repair_cache
from report_pipelines.services.extracts import ClientDay, Extractor
from report_pipelines.settings import Settings
from report_pipelines_tests.extract_support import SMALL, UTC, seed

NOW = dt.datetime(2024, 6, 1, tzinfo=UTC)
KILLS = 8


def _tasks(seeded) -> list[ClientDay]:
    return [ClientDay(c.id, c.timezone, SMALL.start + dt.timedelta(days=d))
            for c in seeded.clients.values() for d in range(SMALL.days)]


def _compute_forever(settings: Settings, tasks: list[ClientDay], started) -> None:
    extractor = Extractor(App(settings))
    started.set()
    while True:
        for task in tasks:
            extractor.compute(task, list(REPORTS), now=NOW)  # always recomputes: rows forgotten, files replaced


def _sha(path: str, store=None) -> str:
    if store is None:
        return hashlib.sha256(Path(path).read_bytes()).hexdigest()
    with store.fs.open_input_file(path) as source:
        return hashlib.sha256(source.read()).hexdigest()


def _is_file(store, path: str) -> bool:
    return store.fs.get_file_info(path).type == pafs.FileType.File


@pytest.mark.parametrize("backend", ["local", "s3"])
def test_killed_extractions_leave_no_lying_row_and_the_repair_makes_files_and_rows_agree(
        pg_engine: Engine, tmp_path: Path, backend: str, request: pytest.FixtureRequest) -> None:
    seeded = seed(pg_engine, tmp_path)
    if backend == "s3":
        server = request.getfixturevalue("s3_server")
        seeded.settings = replace(seeded.settings, store_root=f"s3://{server.new_bucket()}/reports",
                                  store_endpoint=server.endpoint)
    store = seeded.app.store
    tasks = _tasks(seeded)
    context = multiprocessing.get_context("spawn")
    rng = random.Random(7)
    manifest = CacheManifestRepository(pg_engine)
    lying_rows = orphan_files = 0
    kills = KILLS if backend == "local" else KILLS // 2  # each kill costs a process start: keep the suite short
    for _ in range(kills):
        started = context.Event()
        worker = context.Process(target=_compute_forever, args=(seeded.settings, tasks, started))
        worker.start()
        assert started.wait(60)
        time.sleep(rng.uniform(0.2, 1.5))
        os.kill(worker.pid, signal.SIGKILL)
        worker.join(10)
        # Right after the kill, before any repair: every row describes exactly the bytes of its file.
        rows = {(e.report, e.client_id, e.local_date): e for e in manifest.all_entries()}
        for entry in rows.values():
            lying_rows += not _is_file(store, entry.path) or _sha(entry.path, store) != entry.checksum
        files = store.day_files()
        orphan_files += sum((r, c, d) not in rows for r, c, d, _ in files)
    print(f"\nstore chaos ({backend}): {kills} kills, {orphan_files} file(s) without a row seen after them, {lying_rows} lying rows")
    assert lying_rows == 0

    summary = repair_cache(seeded.app, verify=True, grace_s=0)
    rows = {(e.report, e.client_id, e.local_date): e for e in manifest.all_entries()}
    files = {(r, c, d): path for r, c, d, path in store.day_files()}
    assert set(rows) == set(files)  # every row has its file, every file its row
    for key, entry in rows.items():
        assert entry.path == files[key] and _sha(entry.path, store) == entry.checksum
        assert store.file_metadata(entry.path)[1] == entry.rows  # readable
    assert not store.stale_temporaries(grace_s=0)
    assert len(summary.rows_restored) <= orphan_files + len(REPORTS)

    # Re-running on the same calls gives the same bytes as a clean computation in a fresh local store.
    clean = App(Settings(data_dir=tmp_path / "clean", database_url=seeded.settings.database_url,
                         store_root=str(tmp_path / "clean" / "reports")))
    clean_extractor, extractor = Extractor(clean), Extractor(seeded.app)
    for task in tasks:
        extractor.compute(task, list(REPORTS), now=NOW)
    for task in tasks:
        fresh = {r: store.day_path(r, task.client_id, task.day) for r in REPORTS}
        expected = {r: _sha(fresh[r], store) for r in REPORTS}
        clean_extractor.compute(task, list(REPORTS), now=NOW)
        assert {r: _sha(clean.store.day_path(r, task.client_id, task.day)) for r in REPORTS} == expected
    clean.dispose()


def test_the_nightly_repair_restores_rows_from_files_and_sweeps_what_crashes_left(sqlite_engine: Engine,
                                                                                  tmp_path: Path) -> None:
    from report_pipelines.defs.reports.maintenance import repair_report_cache_schedule
    from report_pipelines_tests.dagster_support import evaluate_schedule, execute, persistent_instance

    seeded = seed(sqlite_engine, tmp_path)
    ny, lisbon = seeded.clients["America/New_York"], seeded.clients["Europe/Lisbon"]
    extractor = Extractor(seeded.app)
    extractor.compute(ClientDay(ny.id, ny.timezone, SMALL.start), list(REPORTS), now=NOW)
    extractor.compute(ClientDay(lisbon.id, lisbon.timezone, SMALL.start), list(REPORTS), now=NOW)
    manifest = CacheManifestRepository(sqlite_engine)
    before = {e.report: e for e in manifest.entries(ny.id, SMALL.start, SMALL.start)}
    manifest.forget(ny.id, SMALL.start, tuple(REPORTS))  # killed after the files, before the rows
    gone = seeded.app.store.day_path("call_detail", lisbon.id, SMALL.start)
    Path(gone).unlink()  # a row whose file an operator deleted
    folder = Path(seeded.app.store.day_dir("hourly_volume", lisbon.id, SMALL.start))
    stale = folder / ".part-0.parquet.0123456789abcdef.tmp"
    stale.write_bytes(b"half a file")
    os.utime(stale, (time.time() - 7200, time.time() - 7200))  # two hours old: a killed writer's
    young = folder / ".part-0.parquet.fedcba9876543210.tmp"
    young.write_bytes(b"a writer at work")

    instance = persistent_instance(tmp_path / "home")
    [request] = evaluate_schedule(repair_report_cache_schedule, instance,
                                  dt.datetime(2024, 6, 2, 3, 40, tzinfo=UTC)).run_requests
    assert execute(request, "repair_report_cache_job", instance, seeded.settings).success
    restored = {e.report: e for e in manifest.entries(ny.id, SMALL.start, SMALL.start)}
    assert set(restored) == set(REPORTS)
    for report, entry in restored.items():  # the row rebuilt from the file is the row that was lost
        old = before[report]
        assert (entry.path, entry.rows, entry.bytes, entry.checksum, entry.source_rows, entry.source_checksum,
                entry.source_watermark, entry.rejected_rows, entry.rejected_reasons) == (
            old.path, old.rows, old.bytes, old.checksum, old.source_rows, old.source_checksum,
            old.source_watermark, old.rejected_rows, old.rejected_reasons)
        assert entry.run_id == "repair"
    assert [e.report for e in manifest.entries(lisbon.id, SMALL.start, SMALL.start)] == [
        r for r in sorted(REPORTS) if r != "call_detail"]
    assert not stale.exists() and young.exists()
