"""The report assets through Dagster: partitions, per-partition metadata, checks, sensors, late data."""

from __future__ import annotations

import datetime as dt
import multiprocessing
import time
from pathlib import Path

import dagster as dg
from sqlalchemy import Engine

from report_pipelines.adapters.db.bulk import load_call_events
from report_pipelines.adapters.db.repositories import CacheManifestRepository
from report_pipelines.app import App
from report_pipelines.definitions import defs
from report_pipelines.defs.reports.partitions import TIMEZONE_PARTITIONS, partition_key
from report_pipelines.defs.reports.sensors import client_timezones_sensor, closed_days_sensor, late_events_sensor
from report_pipelines.defs.resources import AppResource
from report_pipelines.domain.reports import REPORTS
from report_pipelines.domain.timezones import local_day_window, parse_zone
from report_pipelines_tests.dagster_support import persistent_instance
from report_pipelines_tests.extract_support import UTC, Seeded, late_call, seed

JOB = "extract_reports_job"
QUIET = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}


def resources(seeded: Seeded, now: dt.datetime | None = None) -> dict:
    return {"app": AppResource.for_settings(seeded.settings, now=now)}


def instance_with_zones(seeded: Seeded, settings: dict | None = None) -> dg.DagsterInstance:
    instance = persistent_instance(seeded.settings.data_dir / f"dagster_home_{len(list(seeded.settings.data_dir.glob('dagster_home_*')))}",
                                   settings)
    instance.add_dynamic_partitions(TIMEZONE_PARTITIONS.name, sorted(seeded.clients))
    return instance


def run(seeded: Seeded, instance: dg.DagsterInstance, *, key: dg.MultiPartitionKey | None = None,
        tags: dict | None = None, config: dict | None = None, raise_on_error: bool = True,
        now: dt.datetime | None = None) -> dg.ExecuteInProcessResult:
    run_config = dict(QUIET)
    if config:
        run_config["ops"] = {"report_extracts": {"config": config}}
    return defs.resolve_job_def(JOB).execute_in_process(
        instance=instance, partition_key=key, tags=tags, run_config=run_config, resources=resources(seeded, now),
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

    # Two runs of the same partition at once, each in its own process (as the run launcher does), on one
    # instance. The test holds the client-day's lock until both runs' steps have started, so both are
    # truly concurrent: both want the day, and both started before either could compute it.
    home = tmp_path / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    with dg.DagsterInstance.from_config(str(home)) as shared:
        shared.add_dynamic_partitions(TIMEZONE_PARTITIONS.name, sorted(seeded.clients))
    context = multiprocessing.get_context("spawn")
    results = context.Queue()
    processes = [context.Process(target=_run_elsewhere, args=(seeded.settings, str(home), str(key), results))
                 for _ in range(2)]
    holder = App(seeded.settings)
    with holder.locks.hold(lisbon.id, dt.date(2024, 3, 9)):
        for process in processes:
            process.start()
        with dg.DagsterInstance.from_config(str(home)) as shared:
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline:
                started = [r.run_id for r in shared.get_runs()
                           if shared.get_records_for_run(r.run_id, of_type=dg.DagsterEventType.STEP_START).records]
                if len(started) == 2:
                    break
                assert all(p.is_alive() for p in processes), "a run's process died (see its stderr)"
                time.sleep(0.2)
            assert len(started) == 2, "both runs should have started their step"
        time.sleep(2)  # planning takes milliseconds: both are now waiting for the lock
    outcomes = [results.get(timeout=120) for _ in processes]
    for process in processes:
        process.join(timeout=60)
    holder.dispose()
    assert [success for success, *_ in outcomes] == [True, True]
    # What each run did, as it reported it: Lisbon's one client-day computed by exactly one of the two
    # (the runs recompute, reuse_since = their start), the other waited for the lock and reused it.
    assert sorted((computed, reused) for _, _, computed, reused in outcomes) == [(0, 1), (1, 0)]
    entries = manifest.entries(lisbon.id, dt.date(2024, 3, 9), dt.date(2024, 3, 9))
    assert {e.report: e.checksum for e in entries} == first
    [computing] = [run_id for _, run_id, computed, _ in outcomes if computed]
    assert {e.run_id for e in entries} == {computing}


def _run_elsewhere(settings, home: str, key: str, results) -> None:
    with dg.DagsterInstance.from_config(home) as instance:
        result = defs.resolve_job_def(JOB).execute_in_process(
            instance=instance, partition_key=key, run_config=QUIET, raise_on_error=False,
            resources={"app": AppResource.for_settings(settings)})
    [detail] = [e.asset_observation_data.asset_observation.metadata for e in result.all_events
                if e.is_asset_observation and e.asset_observation_data.asset_observation.asset_key.path == ["call_detail"]]
    results.put((result.success, result.run_id, detail["computed"].value, detail["reused"].value))


def test_a_day_still_going_on_is_refused_in_one_line_and_not_retried(sqlite_engine: Engine, tmp_path: Path) -> None:
    seeded = seed(sqlite_engine, tmp_path)
    instance = instance_with_zones(seeded, {"run_retries": {"enabled": True, "max_retries": 2}})
    now = dt.datetime(2024, 3, 11, 14, tzinfo=UTC)  # 10:00 in New York, whose 2024-03-11 has not ended
    result = run(seeded, instance, key=partition_key("2024-03-11", "America/New_York"), raise_on_error=False, now=now)
    assert not result.success
    [failure] = [e for e in result.all_events if e.is_step_failure]
    assert failure.step_failure_data.user_failure_data.description == (
        "date: 2024-03-11 has not ended in America/New_York yet (it ends at 2024-03-12T04:00:00+00:00); "
        "the current local day is computed live, never cached")
    tags = instance.get_run_by_id(result.run_id).tags
    assert tags["dagster/max_retries"] == "0" and tags["dagster/will_retry"] == "false"
    assert not (tmp_path / "reports").exists()  # refused before any work


def test_an_unexpected_failure_is_still_retried_by_the_instance(sqlite_engine: Engine, tmp_path: Path) -> None:
    seeded = seed(sqlite_engine, tmp_path)
    instance = instance_with_zones(seeded, {"run_retries": {"enabled": True, "max_retries": 2}})
    (tmp_path / "reports").write_text("not a folder")  # the store cannot be written: a real failure
    result = run(seeded, instance, key=partition_key("2024-03-09", "Europe/Lisbon"), raise_on_error=False)
    assert not result.success
    assert instance.get_run_by_id(result.run_id).tags["dagster/will_retry"] == "true"


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


def tick(sensor: dg.SensorDefinition, seeded: Seeded, instance: dg.DagsterInstance, now: dt.datetime,
         cursor: str | None = None) -> dg.SensorResult:
    """One sensor evaluation as the daemon does it, with the clock at ``now``."""
    return sensor.evaluate_tick(dg.build_sensor_context(
        instance=instance, instance_ref=instance.get_ref(), cursor=cursor, definitions=defs,
        resources=resources(seeded, now)))


def execute(seeded: Seeded, instance: dg.DagsterInstance, request: dg.RunRequest,
            now: dt.datetime) -> dg.ExecuteInProcessResult:
    """Run what a sensor asked for: its job, partition, run config and tags."""
    return defs.resolve_job_def(JOB).execute_in_process(
        instance=instance, partition_key=request.partition_key, tags=request.tags,
        run_config={**QUIET, **(request.run_config or {})}, resources=resources(seeded, now))


def test_client_timezones_sensor_adds_each_new_zone_once(sqlite_engine: Engine, tmp_path: Path) -> None:
    seeded = seed(sqlite_engine, tmp_path)
    instance = persistent_instance(tmp_path / "home")
    now = dt.datetime(2024, 3, 12, tzinfo=UTC)
    result = tick(client_timezones_sensor, seeded, instance, now)
    [request] = result.dynamic_partitions_requests
    assert sorted(request.partition_keys) == sorted(seeded.clients)
    instance.add_dynamic_partitions(TIMEZONE_PARTITIONS.name, list(request.partition_keys))
    again = tick(client_timezones_sensor, seeded, instance, now)
    assert not again.dynamic_partitions_requests and again.skip_message
    # Before the clients' licences start (2024-03-08 everywhere) no zone is served yet.
    assert tick(client_timezones_sensor, seeded, persistent_instance(tmp_path / "other"),
                dt.datetime(2024, 3, 7, 12, tzinfo=UTC)).dynamic_partitions_requests in (None, [])


def test_closed_days_sensor_requests_each_zone_day_once_and_its_runs_succeed(sqlite_engine: Engine,
                                                                            tmp_path: Path) -> None:
    seeded = seed(sqlite_engine, tmp_path)
    instance = instance_with_zones(seeded)
    # 14:00 UTC on 2024-03-11: 10:00 in New York and 14:00 in Lisbon (their last closed day is the 10th),
    # 01:00 on the 12th in Sydney (its last closed day is the 11th).
    now = dt.datetime(2024, 3, 11, 14, tzinfo=UTC)
    first = tick(closed_days_sensor, seeded, instance, now)
    expected = {"America/New_York": "2024-03-10", "Europe/Lisbon": "2024-03-10", "Australia/Sydney": "2024-03-11"}
    assert {r.partition_key.keys_by_dimension["timezone"]: r.partition_key.keys_by_dimension["date"]
            for r in first.run_requests} == expected
    assert {r.run_key for r in first.run_requests} == {f"closed-day:{z}:{d}" for z, d in expected.items()}
    assert all(r.run_config == {"ops": {"report_extracts": {"config": {"only_stale": True}}}} for r in first.run_requests)
    manifest = CacheManifestRepository(sqlite_engine)
    for request in first.run_requests:
        result = execute(seeded, instance, request, now)
        assert result.success
        zone = request.partition_key.keys_by_dimension["timezone"]
        day = dt.date.fromisoformat(expected[zone])
        assert len(manifest.entries(seeded.clients[zone].id, day, day)) == len(REPORTS)
    # only_stale: the same request run again computes nothing (every client-day is reused)
    again_run = execute(seeded, instance, first.run_requests[0], now)
    detail = [e for e in again_run.all_events if e.is_asset_observation
              and e.asset_observation_data.asset_observation.asset_key.to_user_string() == "call_detail"]
    assert [(o.asset_observation_data.asset_observation.metadata["computed"].value,
             o.asset_observation_data.asset_observation.metadata["reused"].value) for o in detail] == [(0, 1)]

    assert not tick(closed_days_sensor, seeded, instance, now, cursor=first.cursor).run_requests
    # A day later each zone asks for exactly its next day.
    later = tick(closed_days_sensor, seeded, instance, now + dt.timedelta(days=1), cursor=first.cursor)
    assert sorted(str(r.partition_key) for r in later.run_requests) == [
        "2024-03-11|America/New_York", "2024-03-11|Europe/Lisbon", "2024-03-12|Australia/Sydney"]
    # After a pause of three days, each zone catches up on exactly the missed days.
    caught_up = tick(closed_days_sensor, seeded, instance, now + dt.timedelta(days=3), cursor=first.cursor)
    assert len(caught_up.run_requests) == 3 * len(seeded.clients)


def test_a_mistyped_zone_partition_is_skipped_and_the_good_zones_go_on(sqlite_engine: Engine, tmp_path: Path) -> None:
    seeded = seed(sqlite_engine, tmp_path)
    instance = instance_with_zones(seeded)
    instance.add_dynamic_partitions(TIMEZONE_PARTITIONS.name, ["America/Sao_Paolo"])  # "Add a partition" in the UI
    now = dt.datetime(2024, 3, 11, 14, tzinfo=UTC)
    result = tick(closed_days_sensor, seeded, instance, now)
    assert sorted(r.partition_key.keys_by_dimension["timezone"] for r in result.run_requests) == sorted(seeded.clients)
    # A run of the bad partition (from the UI) is one failed run with one line naming the field, not retried.
    bad = run(seeded, instance, key=partition_key("2024-03-10", "America/Sao_Paolo"), raise_on_error=False)
    assert not bad.success
    [failure] = [e for e in bad.all_events if e.is_step_failure]
    assert failure.step_failure_data.error.message.splitlines()[0].endswith(
        "timezone: unknown time zone 'America/Sao_Paolo' (expected an IANA name such as 'America/Sao_Paulo');"
        " did you mean 'America/Sao_Paulo'?")
    assert instance.get_run_by_id(bad.run_id).tags["dagster/max_retries"] == "0"


def test_late_events_make_cached_days_stale_and_the_sensors_runs_refresh_them(engine: Engine, tmp_path: Path) -> None:
    seeded = seed(engine, tmp_path)
    instance = instance_with_zones(seeded)
    ny, sydney = seeded.clients["America/New_York"], seeded.clients["Australia/Sydney"]
    key = partition_key("2024-03-10", "America/New_York")
    now = dt.datetime(2024, 3, 15, tzinfo=UTC)
    assert run(seeded, instance, key=key).success
    started = tick(late_events_sensor, seeded, instance, now)
    assert not started.run_requests and started.cursor  # starts watching from the newest ingest

    # Late calls: one for New York's cached 2024-03-10, one for a Sydney day never cached (no request).
    late = now - dt.timedelta(minutes=5)
    ny_start, _ = local_day_window(dt.date(2024, 3, 10), parse_zone(ny.timezone))
    load_call_events(engine, late_call(ny.id, "late-ny", ny_start + dt.timedelta(hours=10), late))
    syd_start, _ = local_day_window(dt.date(2024, 3, 9), parse_zone(sydney.timezone))
    load_call_events(engine, late_call(sydney.id, "late-syd", syd_start + dt.timedelta(hours=10), late))
    ticked = tick(late_events_sensor, seeded, instance, now, cursor=started.cursor)
    [request] = ticked.run_requests
    assert request.partition_key == key
    assert request.run_config == {"ops": {"report_extracts": {"config": {"client_ids": [ny.id]}}}}
    assert request.run_key.startswith("late:America/New_York:2024-03-10:")

    # The requested run refreshes the day; the next tick finds nothing stale.
    assert execute(seeded, instance, request, now).success
    detail = CacheManifestRepository(engine).entries(ny.id, dt.date(2024, 3, 10), dt.date(2024, 3, 10), ("call_detail",))
    assert detail[0].source_watermark == late
    assert not tick(late_events_sensor, seeded, instance, now, cursor=ticked.cursor).run_requests


def end_reports_licence(engine: Engine, client_id: int, last_day: dt.date) -> None:
    """The client's reports licence now ends on ``last_day`` (an operator ending a subscription)."""
    from sqlalchemy import update

    from report_pipelines.adapters.db.models import ClientProductRow

    with engine.begin() as conn:
        conn.execute(update(ClientProductRow).where(ClientProductRow.client_id == client_id,
                                                    ClientProductRow.product_code == "REPORTS")
                     .values(valid_to=last_day))


def test_after_a_licence_ends_late_data_and_checks_follow_one_rule(engine: Engine, tmp_path: Path) -> None:
    seeded = seed(engine, tmp_path)  # New York, Lisbon, Sydney: licences from 2024-03-08
    instance = instance_with_zones(seeded)
    ny = seeded.clients["America/New_York"]
    now = dt.datetime(2024, 3, 15, tzinfo=UTC)
    for day in ("2024-03-09", "2024-03-10"):
        assert run(seeded, instance, key=partition_key(day, "America/New_York")).success
    end_reports_licence(engine, ny.id, dt.date(2024, 3, 9))  # its last licensed day is the 9th
    started = tick(late_events_sensor, seeded, instance, now)
    for day, call_id in ((dt.date(2024, 3, 9), "late-9"), (dt.date(2024, 3, 10), "late-10")):
        start, _ = local_day_window(day, parse_zone(ny.timezone))
        load_call_events(engine, late_call(ny.id, call_id, start + dt.timedelta(hours=11), now - dt.timedelta(minutes=1)))
    ticked = tick(late_events_sensor, seeded, instance, now, cursor=started.cursor)
    # The 9th was licensed: its late call is work, and the run for it succeeds. The 10th is not served: no request.
    assert [str(r.partition_key) for r in ticked.run_requests] == ["2024-03-09|America/New_York"]
    assert execute(seeded, instance, ticked.run_requests[0], now).success
    # A new day of the zone: the run skips the ended client and its checks do not expect it.
    eleventh = run(seeded, instance, key=partition_key("2024-03-11", "America/New_York"))
    assert eleventh.success
    checks = {(c.asset_key.to_user_string(), c.check_name): c.passed for c in eleventh.get_asset_check_evaluations()}
    assert checks == {("call_detail", "matches_source"): True, **{(n, "no_missing_client_days"): True for n in REPORTS}}
    expected = {c.asset_key.to_user_string(): c.metadata["client_days_expected"].value
                for c in eleventh.get_asset_check_evaluations() if c.check_name == "no_missing_client_days"}
    assert set(expected.values()) == {0}


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


def test_timeout_seconds_covers_the_wait_for_another_runs_lock(sqlite_engine: Engine, tmp_path: Path) -> None:
    """A run with 1 s to live waits behind a client-day another run holds (the configured lock wait is an
    hour): it fails at its deadline, saying how far it got, instead of waiting and reporting success."""
    seeded = seed(sqlite_engine, tmp_path)
    instance = instance_with_zones(seeded)
    lisbon = seeded.clients["Europe/Lisbon"]
    holder = App(seeded.settings)
    with holder.locks.hold(lisbon.id, dt.date(2024, 3, 9)):
        result = run(seeded, instance, key=partition_key("2024-03-09", "Europe/Lisbon"), raise_on_error=False,
                     config={"timeout_seconds": 1, "workers": 1})
    holder.dispose()
    assert not result.success
    [failure] = [e for e in result.all_events if e.is_step_failure]
    assert failure.step_failure_data.user_failure_data.description == (
        "timeout_s: 0 of 1 client-days done in 1 s; what finished is cached: give more time or fewer days/clients")
    assert CacheManifestRepository(sqlite_engine).entries(lisbon.id, dt.date(2024, 3, 9), dt.date(2024, 3, 9)) == []


def test_every_extract_run_carries_the_workload_tag_whatever_launched_it(sqlite_engine: Engine, tmp_path: Path) -> None:
    from report_pipelines.defs.reports.assets import report_extracts

    seeded = seed(sqlite_engine, tmp_path)
    instance = instance_with_zones(seeded)
    # A UI materialization or backfill runs the implicit asset job with no tags of ours.
    result = dg.materialize([report_extracts], partition_key="2024-03-09|Europe/Lisbon", instance=instance,
                            resources=resources(seeded), run_config=QUIET)
    assert result.success
    assert instance.get_run_by_id(result.run_id).tags["report_pipelines/workload"] == "extract"
    assert defs.resolve_job_def(JOB).tags["report_pipelines/workload"] == "extract"
