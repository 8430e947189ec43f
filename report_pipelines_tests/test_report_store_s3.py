"""End to end on object storage: the report job materializes a day into an ``s3://`` store (a moto server
started by the test session), ``read_report`` reads it back through the same file system, and the data
equal a run of the same day into a local folder."""

from __future__ import annotations

import datetime as dt
from dataclasses import replace
from pathlib import Path

import dagster as dg
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest
from sqlalchemy import Engine

from report_pipelines.adapters.db.engine import make_engine
from report_pipelines.adapters.db.migrate import upgrade
from report_pipelines.adapters.db.repositories import CacheManifestRepository
from report_pipelines.app import App
from report_pipelines.definitions import defs
from report_pipelines.defs.resources import AppResource
from report_pipelines.domain.reports import REPORTS
from report_pipelines.services.reading import read_report
from report_pipelines.settings import Settings
from report_pipelines_tests.dagster_support import QUIET, persistent_instance
from report_pipelines_tests.extract_support import UTC, seed

DAY = dt.date(2024, 3, 10)
NOW = dt.datetime(2024, 3, 12, 14, tzinfo=UTC)  # every zone's 10th has ended


def materialize_day(settings: Settings, home: Path) -> dg.ExecuteInProcessResult:
    return defs.resolve_job_def("extract_reports_job").execute_in_process(
        instance=persistent_instance(home), partition_key=DAY.isoformat(), run_config=QUIET,
        resources={"app": AppResource.for_settings(settings, now=NOW)})


def test_a_day_materialized_into_s3_is_read_back_by_read_report_and_equals_a_local_run(
        s3_server, sqlite_engine: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    seeded = seed(sqlite_engine, tmp_path)
    bucket = s3_server.new_bucket()
    on_s3 = replace(seeded.settings, store_root=f"s3://{bucket}/reports", store_endpoint=s3_server.endpoint)
    result = materialize_day(on_s3, tmp_path / "home_s3")
    assert result.success
    assert {c.check_name: c.passed for c in result.get_asset_check_evaluations()} == {
        "matches_source": True, "no_missing_client_days": True}

    app = App(on_s3)
    keys = {o["Key"] for o in s3_server.client().list_objects_v2(Bucket=bucket, Prefix="reports/")["Contents"]}
    for client in seeded.all_clients:
        for report in REPORTS:
            assert f"reports/{report}/client={client.id}/date={DAY}/part-0.parquet" in keys
    assert not [k for k in keys if k.rsplit("/", 1)[-1].startswith(".")]  # no temporary object, ever
    manifest = CacheManifestRepository(sqlite_engine)
    ny = seeded.clients["America/New_York"]
    [entry] = [e for e in manifest.entries(ny.id, DAY, DAY) if e.report == "hourly_volume"]
    assert entry.path == app.store.day_path("hourly_volume", ny.id, DAY) and entry.path.startswith(f"{bucket}/")
    assert app.store.file_metadata(entry.path)[3] == entry.checksum

    # read_report reads the cached day from S3 (nothing recomputed: the manifest row stays the same)
    hours = read_report("hourly_volume", ny.id, DAY, DAY, app=app, now=NOW)
    assert len(hours) == 23  # the spring-forward day in New York
    [calls] = [e for e in manifest.entries(ny.id, DAY, DAY) if e.report == "call_detail"]
    assert calls.day_table is None  # call_detail is only in its file: this read is a GET from the bucket
    detail = read_report("call_detail", ny.id, DAY, DAY, app=app, now=NOW)
    assert len(detail) == calls.rows > 0
    [again] = [e for e in manifest.entries(ny.id, DAY, DAY) if e.report == "hourly_volume"]
    assert again.computed_at == entry.computed_at
    # an analyst's dataset over the bucket, through pyarrow's S3 file system, sees the same rows
    dataset = ds.dataset(f"{bucket}/reports/hourly_volume", filesystem=app.store.fs, format="parquet",
                         partitioning="hive")
    assert dataset.to_table(filter=(ds.field("client") == ny.id)).num_rows == 23
    lookup = pq.read_table(f"{bucket}/reports/_clients/part-0.parquet", filesystem=app.store.fs)
    assert set(lookup.column("client").to_pylist()) == {c.id for c in seeded.all_clients}

    # the same day into a local folder (its own database) gives the same tables
    local_engine = make_engine(f"sqlite:///{tmp_path / 'local.sqlite3'}")
    upgrade(local_engine)
    local = seed(local_engine, tmp_path / "local")
    assert materialize_day(local.settings, tmp_path / "home_local").success
    local_app = App(local.settings)
    for report, definition in REPORTS.items():
        for client in seeded.all_clients:
            assert app.store.read_days(report, client.id, [DAY], definition.schema).equals(
                local_app.store.read_days(report, client.id, [DAY], definition.schema)), (report, client.slug)
    app.dispose()
    local_app.dispose()
    local_engine.dispose()
