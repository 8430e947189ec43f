"""The report assets through Dagster: partitions, per-partition metadata, checks, sensors, late data."""

from __future__ import annotations

import datetime as dt
import json
import multiprocessing
from pathlib import Path

import dagster as dg
import pytest
from sqlalchemy import Engine

from report_pipelines.adapters.db.bulk import load_call_events
from report_pipelines.adapters.db.repositories import CacheManifestRepository
from report_pipelines.definitions import defs
from report_pipelines.defs.reports.partitions import TIMEZONE_PARTITIONS, partition_key
from report_pipelines.defs.reports.sensors import client_timezones_sensor, closed_days_sensor, late_events_sensor
from report_pipelines.defs.resources import AppDatabase, ReportStore
from report_pipelines.domain.reports import REPORTS
from report_pipelines.domain.timezones import local_day_window, parse_zone
from report_pipelines_tests.extract_support import SMALL, UTC, Seeded, late_call, seed

JOB = "extract_reports_job"
QUIET = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}


def resources(seeded: Seeded) -> dict:
    return {"app_db": AppDatabase(url=seeded.settings.database_url),
            "report_store": ReportStore(root=seeded.settings.store_root)}


def instance_with_zones(seeded: Seeded) -> dg.DagsterInstance:
    instance = dg.DagsterInstance.ephemeral()
    instance.add_dynamic_partitions(TIMEZONE_PARTITIONS.name, sorted(seeded.clients))
    return instance


def run(seeded: Seeded, instance: dg.DagsterInstance, *, key: dg.MultiPartitionKey | None = None,
        tags: dict | None = None, config: dict | None = None, raise_on_error: bool = True) -> dg.ExecuteInProcessResult:
    run_config = dict(QUIET)
    if config:
        run_config["ops"] = {"report_extracts": {"config": config}}
    return defs.resolve_job_def(JOB).execute_in_process(
        instance=instance, partition_key=key, tags=tags, run_config=run_config, resources=resources(seeded),
        raise_on_error=raise_on_error)


def test_one_partition_materializes_every_report_with_metadata_and_passing_checks(engine: Engine, tmp_path: Path) -> None:
    seeded = seed(engine, tmp_path)
    instance = instance_with_zones(seeded)
    key = partition_key("2024-03-10", "America/New_York")
    result = run(seeded, instance, key=key)
    assert result.success
    materialized = {(e.asset_key.to_user_string(), e.partition) for e in result.get_asset_materialization_events()}
    assert materialized == {(name, str(key)) for name in REPORTS}
    observations = [e.asset_observation_data.asset_observation for e in result.all_events if e.is_asset_observation]
    [detail] = [o for o in observations if o.asset_key.to_user_string() == "call_detail"]
    assert detail.partition == str(key)
    assert detail.metadata["clients"].value == 1 and detail.metadata["computed"].value == 1
    assert detail.metadata["rows"].value + detail.metadata["rejected_calls"].value == detail.metadata["source_calls"].value
    assert "client" in detail.metadata["slowest_client_day"].value
    hourly = next(e for e in result.get_asset_materialization_events() if e.asset_key.to_user_string() == "hourly_volume")
    meta = hourly.materialization.metadata
    assert meta["rows"].value == 23 and meta["clients_covered"].value == 1  # the spring-forward day
    checks = {(c.asset_key.to_user_string(), c.check_name): c.passed for c in result.get_asset_check_evaluations()}
    assert checks == {("call_detail", "matches_source"): True, **{(n, "no_missing_client_days"): True for n in REPORTS}}


def test_a_single_run_backfill_reports_each_partition_apart(sqlite_engine: Engine, tmp_path: Path) -> None:
    seeded = seed(sqlite_engine, tmp_path)
    instance = instance_with_zones(seeded)
    result = run(seeded, instance, tags={
        "dagster/asset_partition_range_start": "2024-03-08|America/New_York",
        "dagster/asset_partition_range_end": "2024-03-10|Australia/Sydney",  # zones in the order added: a rectangle
    })
    assert result.success
    keys = {e.partition for e in result.get_asset_materialization_events() if e.asset_key.to_user_string() == "hourly_volume"}
    assert keys == {f"2024-03-{d:02d}|{z}" for d in (8, 9, 10) for z in ("America/New_York", "Australia/Sydney")}
    rows = {o.partition: o.metadata["rows"].value
            for o in (e.asset_observation_data.asset_observation for e in result.all_events if e.is_asset_observation)
            if o.asset_key.to_user_string() == "hourly_volume"}
    assert rows["2024-03-10|America/New_York"] == 23 and rows["2024-03-10|Australia/Sydney"] == 24


def test_rerunning_a_partition_is_idempotent_and_concurrent_runs_compute_once(engine: Engine, tmp_path: Path) -> None:
    seeded = seed(engine, tmp_path)
    lisbon = seeded.clients["Europe/Lisbon"]
    key = partition_key("2024-03-09", "Europe/Lisbon")
    assert run(seeded, instance_with_zones(seeded), key=key).success
    manifest = CacheManifestRepository(engine)
    first = {e.report: e.checksum for e in manifest.entries(lisbon.id, dt.date(2024, 3, 9), dt.date(2024, 3, 9))}

    # Two runs of the same partition at once, each in its own process (as the run launcher does).
    context = multiprocessing.get_context("spawn")
    results = context.Queue()
    processes = [context.Process(target=_run_elsewhere, args=(seeded.settings.database_url, seeded.settings.store_root,
                                                              sorted(seeded.clients), str(key), results))
                 for _ in range(2)]
    for process in processes:
        process.start()
    outcomes = [results.get(timeout=120) for _ in processes]
    for process in processes:
        process.join(timeout=60)
    assert [success for success, _ in outcomes] == [True, True]
    entries = manifest.entries(lisbon.id, dt.date(2024, 3, 9), dt.date(2024, 3, 9))
    assert {e.report: e.checksum for e in entries} == first
    assert len({e.run_id for e in entries}) == 1  # one of the two computed, the other reused its result
    assert {e.run_id for e in entries} <= {run_id for _, run_id in outcomes}


def _run_elsewhere(url: str, store: str, zones: list[str], key: str, results) -> None:  # noqa: ANN001
    instance = dg.DagsterInstance.ephemeral()
    instance.add_dynamic_partitions(TIMEZONE_PARTITIONS.name, zones)
    result = defs.resolve_job_def(JOB).execute_in_process(
        instance=instance, partition_key=key, run_config=QUIET, raise_on_error=False,
        resources={"app_db": AppDatabase(url=url), "report_store": ReportStore(root=store)})
    results.put((result.success, result.run_id))


def test_a_day_still_going_on_is_refused_with_a_clear_error(sqlite_engine: Engine, tmp_path: Path) -> None:
    seeded = seed(sqlite_engine, tmp_path)
    instance = instance_with_zones(seeded)
    today = dt.datetime.now(UTC).astimezone(parse_zone("America/Los_Angeles")).date()
    instance.add_dynamic_partitions(TIMEZONE_PARTITIONS.name, ["America/Los_Angeles"])
    result = run(seeded, instance, key=partition_key(today.isoformat(), "America/Los_Angeles"), raise_on_error=False)
    assert not result.success
    [failure] = [e for e in result.all_events if e.is_step_failure]
    assert "has not ended in America/Los_Angeles yet" in failure.step_failure_data.error.message


def test_client_ids_restrict_the_run_and_unknown_ones_are_refused(sqlite_engine: Engine, tmp_path: Path) -> None:
    seeded = seed(sqlite_engine, tmp_path)
    instance = instance_with_zones(seeded)
    ny = seeded.clients["America/New_York"]
    key = partition_key("2024-03-08", "America/New_York")
    assert run(seeded, instance, key=key, config={"client_ids": [ny.id]}).success
    bad = run(seeded, instance, key=key, config={"client_ids": [ny.id, 999]}, raise_on_error=False)
    assert not bad.success
    [failure] = [e for e in bad.all_events if e.is_step_failure]
    assert "client_ids: not served clients of the requested zones and dates: [999]" in failure.step_failure_data.error.message


def test_client_timezones_sensor_adds_each_new_zone_once(sqlite_engine: Engine, tmp_path: Path) -> None:
    seeded = seed(sqlite_engine, tmp_path)
    instance = dg.DagsterInstance.ephemeral()
    context = dg.build_sensor_context(instance=instance, resources=resources(seeded))
    result = client_timezones_sensor(context)
    [request] = result.dynamic_partitions_requests
    assert sorted(request.partition_keys) == sorted(seeded.clients)
    instance.add_dynamic_partitions(TIMEZONE_PARTITIONS.name, list(request.partition_keys))
    assert isinstance(client_timezones_sensor(dg.build_sensor_context(instance=instance, resources=resources(seeded))),
                      dg.SkipReason)


def test_closed_days_sensor_requests_each_zone_day_once(sqlite_engine: Engine, tmp_path: Path) -> None:
    seeded = seed(sqlite_engine, tmp_path)
    instance = instance_with_zones(seeded)
    first = closed_days_sensor(dg.build_sensor_context(instance=instance))
    assert len(first.run_requests) == len(seeded.clients)  # a new zone starts with its last closed day
    for request in first.run_requests:
        zone = request.partition_key.keys_by_dimension["timezone"]
        yesterday = dt.datetime.now(UTC).astimezone(parse_zone(zone)).date() - dt.timedelta(days=1)
        assert request.partition_key.keys_by_dimension["date"] == yesterday.isoformat()
        assert request.run_key == f"closed-day:{zone}:{yesterday}"
    again = closed_days_sensor(dg.build_sensor_context(instance=instance, cursor=first.cursor))
    assert isinstance(again, dg.SkipReason) or not again.run_requests
    # After a pause of three days, each zone catches up on exactly the missed days.
    state = {zone: (dt.date.fromisoformat(day) - dt.timedelta(days=3)).isoformat()
             for zone, day in json.loads(first.cursor).items()}
    caught_up = closed_days_sensor(dg.build_sensor_context(instance=instance, cursor=json.dumps(state)))
    assert len(caught_up.run_requests) == 3 * len(seeded.clients)


def test_late_events_make_cached_days_stale_and_the_sensor_requests_them(engine: Engine, tmp_path: Path) -> None:
    seeded = seed(engine, tmp_path)
    instance = instance_with_zones(seeded)
    ny, sydney = seeded.clients["America/New_York"], seeded.clients["Australia/Sydney"]
    key = partition_key("2024-03-10", "America/New_York")
    assert run(seeded, instance, key=key).success
    ctx = dg.build_sensor_context(instance=instance, resources=resources(seeded))
    started = late_events_sensor(ctx)
    assert not started.run_requests and started.cursor  # starts watching from the newest ingest

    # Late calls: one for New York's cached 2024-03-10, one for a Sydney day never cached (no request).
    late = dt.datetime.now(UTC)
    ny_start, _ = local_day_window(dt.date(2024, 3, 10), parse_zone(ny.timezone))
    load_call_events(engine, late_call(ny.id, "late-ny", ny_start + dt.timedelta(hours=10), late))
    syd_start, _ = local_day_window(dt.date(2024, 3, 9), parse_zone(sydney.timezone))
    load_call_events(engine, late_call(sydney.id, "late-syd", syd_start + dt.timedelta(hours=10), late))
    tick = late_events_sensor(dg.build_sensor_context(instance=instance, cursor=started.cursor, resources=resources(seeded)))
    [request] = tick.run_requests
    assert request.partition_key == key
    assert request.run_config == {"ops": {"report_extracts": {"config": {"client_ids": [ny.id]}}}}
    assert request.run_key.startswith("late:America/New_York:2024-03-10:")

    # The requested run refreshes the day; the next tick finds nothing stale.
    assert run(seeded, instance, key=key, config={"client_ids": [ny.id]}).success
    detail = CacheManifestRepository(engine).entries(ny.id, dt.date(2024, 3, 10), dt.date(2024, 3, 10), ("call_detail",))
    assert detail[0].source_watermark == late.replace(microsecond=late.microsecond)
    quiet = late_events_sensor(dg.build_sensor_context(instance=instance, cursor=tick.cursor, resources=resources(seeded)))
    assert not quiet.run_requests


def test_materialize_a_single_report_for_one_partition(sqlite_engine: Engine, tmp_path: Path) -> None:
    from report_pipelines.defs.reports.assets import report_extracts

    seeded = seed(sqlite_engine, tmp_path)
    sydney = seeded.clients["Australia/Sydney"]
    key = partition_key("2024-03-09", "Australia/Sydney")
    result = dg.materialize([report_extracts], selection=["queue_performance"], partition_key=str(key),
                            instance=instance_with_zones(seeded), resources=resources(seeded), run_config=QUIET)
    assert result.success
    assert [e.asset_key.to_user_string() for e in result.get_asset_materialization_events()] == ["queue_performance"]
    assert {(c.asset_key.to_user_string(), c.check_name) for c in result.get_asset_check_evaluations()} == {
        ("queue_performance", "no_missing_client_days")}
    cached = CacheManifestRepository(sqlite_engine).entries(sydney.id, dt.date(2024, 3, 9), dt.date(2024, 3, 9))
    assert [e.report for e in cached] == ["queue_performance"]
