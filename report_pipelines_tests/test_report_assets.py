"""The report cache through Dagster: date partitions with the zones inside the run, metadata, checks,
sensors whose run requests are executed, late data, refusals, and what it costs Dagster."""

from __future__ import annotations

import datetime as dt
import json
import multiprocessing
import time
from dataclasses import replace
from pathlib import Path

import dagster as dg
import pytest
from sqlalchemy import Engine, update

from report_pipelines.adapters.db.bulk import load_call_events
from report_pipelines.adapters.db.models import ClientProductRow
from report_pipelines.adapters.db.repositories import CacheManifestRepository
from report_pipelines.app import App
from report_pipelines.definitions import defs
from report_pipelines.defs.reports.sensors import closed_days_sensor, late_events_sensor
from report_pipelines.defs.resources import AppResource
from report_pipelines.domain.reports import REPORTS
from report_pipelines.domain.timezones import local_day_window, parse_zone
from report_pipelines_tests.dagster_support import QUIET, execute, persistent_instance, tick
from report_pipelines_tests.extract_support import UTC, Seeded, late_call, seed

JOB = "extract_reports_job"
ASSET = "report_days"
#: 14:00 UTC on 2024-03-11: 10:00 in New York and 14:00 in Lisbon (their last closed day is the 10th),
#: 01:00 on the 12th in Sydney (its last closed day is the 11th).
AFTERNOON = dt.datetime(2024, 3, 11, 14, tzinfo=UTC)


def resources(seeded: Seeded, now: dt.datetime | None = None) -> dict:
    return {"app": AppResource.for_settings(seeded.settings, now=now)}


def new_instance(seeded: Seeded, settings: dict | None = None) -> dg.DagsterInstance:
    homes = len(list(seeded.settings.data_dir.glob("dagster_home_*")))
    return persistent_instance(seeded.settings.data_dir / f"dagster_home_{homes}", settings)


def run(seeded: Seeded, instance: dg.DagsterInstance, *, day: str | None = None, tags: dict | None = None,
        config: dict | None = None, raise_on_error: bool = True,
        now: dt.datetime | None = None) -> dg.ExecuteInProcessResult:
    run_config = dict(QUIET)
    if config:
        run_config["ops"] = {ASSET: {"config": config}}
    return defs.resolve_job_def(JOB).execute_in_process(
        instance=instance, partition_key=day, tags=tags, run_config=run_config, resources=resources(seeded, now),
        raise_on_error=raise_on_error)


def materialization(result: dg.ExecuteInProcessResult, day: str) -> dict:
    [event] = [e for e in result.get_asset_materialization_events() if e.partition == day]
    return {k: v.value for k, v in event.materialization.metadata.items()}


def failure_line(result: dg.ExecuteInProcessResult) -> str:
    [failure] = [e for e in result.all_events if e.is_step_failure]
    return failure.step_failure_data.user_failure_data.description


def test_one_date_of_one_zone_caches_every_report_with_metadata_and_passing_checks(engine: Engine,
                                                                                   tmp_path: Path) -> None:
    seeded = seed(engine, tmp_path)
    ny = seeded.clients["America/New_York"]
    result = run(seeded, new_instance(seeded), day="2024-03-10", config={"zones": ["America/New_York"]})
    assert result.success
    assert [(e.asset_key.to_user_string(), e.partition) for e in result.get_asset_materialization_events()] == [
        (ASSET, "2024-03-10")]
    meta = materialization(result, "2024-03-10")
    assert (meta["zone_days"], meta["client_days"], meta["computed"], meta["reused"]) == (1, 1, 1, 0)
    assert meta["zones"] == ["America/New_York"] and meta["zones_not_ended"] == []
    assert meta["rows"]["hourly_volume"] == 23  # the spring-forward day has 23 local hours
    assert meta["rows"]["call_detail"] + sum(meta["rejected_calls"].values()) == meta["source_calls"] > 0
    assert set(meta["rows"]) == set(REPORTS) and "client" in meta["slowest_client_day"]
    checks = {c.check_name: c.passed for c in result.get_asset_check_evaluations()}
    assert checks == {"matches_source": True, "no_missing_client_days": True}
    manifest = CacheManifestRepository(engine)
    assert sorted(e.report for e in manifest.entries(ny.id, dt.date(2024, 3, 10), dt.date(2024, 3, 10))) == sorted(REPORTS)
    # Analysts join the store to its clients without the app database: the lookup at the store root, and
    # the README's query with the hive keys typed (client an integer, date a date).
    import pyarrow as pa
    import pyarrow.dataset as ds
    import pyarrow.parquet as pq

    lookup = pq.read_table(tmp_path / "reports" / "_clients" / "part-0.parquet").to_pylist()
    assert {(r["client"], r["slug"], r["timezone"], r["served"]) for r in lookup} == {
        (c.id, c.slug, c.timezone, True) for c in seeded.all_clients}
    keys = ds.partitioning(pa.schema([("client", pa.int64()), ("date", pa.date32())]), flavor="hive")
    hours = ds.dataset(tmp_path / "reports" / "hourly_volume", format="parquet", partitioning=keys).to_table(
        filter=(ds.field("client") == ny.id) & (ds.field("date") == dt.date(2024, 3, 10)))
    assert hours.num_rows == 23 and hours.schema.field("date").type == pa.date32()


def test_a_backfill_of_dates_is_one_run_of_every_zone_whose_day_has_ended(sqlite_engine: Engine,
                                                                          tmp_path: Path) -> None:
    seeded = seed(sqlite_engine, tmp_path)
    instance = new_instance(seeded)
    result = run(seeded, instance, now=AFTERNOON, tags={"dagster/asset_partition_range_start": "2024-03-09",
                                                         "dagster/asset_partition_range_end": "2024-03-11"})
    assert result.success
    assert sorted(e.partition for e in result.get_asset_materialization_events()) == [
        "2024-03-09", "2024-03-10", "2024-03-11"]
    meta = materialization(result, "2024-03-11")
    # The 11th has ended in Sydney only: New York and Lisbon are left for the closed-days sensor.
    assert meta["zones_not_ended"] == ["America/New_York", "Europe/Lisbon"]
    assert (meta["zone_days"], meta["client_days"]) == (3 * 2 + 1, 7)
    manifest = CacheManifestRepository(sqlite_engine)
    cached = {(e.client_id, e.local_date) for e in manifest.entries_for_day([c.id for c in seeded.all_clients],
                                                                           dt.date(2024, 3, 11))}
    assert cached == {(seeded.clients["Australia/Sydney"].id, dt.date(2024, 3, 11))}
    # A day of every zone costs Dagster a handful of records, not one set per zone and report.
    assert len(instance.get_records_for_run(result.run_id, limit=1000).records) <= 20 + 2 * 2


def test_rerunning_a_date_is_idempotent_and_concurrent_runs_compute_once(engine: Engine, tmp_path: Path) -> None:
    seeded = seed(engine, tmp_path)
    lisbon = seeded.clients["Europe/Lisbon"]
    config = {"zones": ["Europe/Lisbon"]}
    assert run(seeded, new_instance(seeded), day="2024-03-09", config=config).success
    manifest = CacheManifestRepository(engine)
    first = {e.report: e.checksum for e in manifest.entries(lisbon.id, dt.date(2024, 3, 9), dt.date(2024, 3, 9))}

    # Two runs of the same date at once, each in its own process (as the run launcher does), on one
    # instance. The test holds the client-day's lock until both runs' steps have started, so both are
    # truly concurrent: both want the day, and both started before either could compute it.
    home = tmp_path / "dagster_home"
    persistent_instance(home).dispose()
    context = multiprocessing.get_context("spawn")
    results = context.Queue()
    processes = [context.Process(target=_run_elsewhere, args=(seeded.settings, str(home), results)) for _ in range(2)]
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


def _run_elsewhere(settings, home: str, results) -> None:
    with dg.DagsterInstance.from_config(home) as instance:
        result = defs.resolve_job_def(JOB).execute_in_process(
            instance=instance, partition_key="2024-03-09", raise_on_error=False,
            run_config={**QUIET, "ops": {ASSET: {"config": {"zones": ["Europe/Lisbon"]}}}},
            resources={"app": AppResource.for_settings(settings)})
    meta = materialization(result, "2024-03-09")
    results.put((result.success, result.run_id, meta["computed"], meta["reused"]))


def test_a_zone_whose_day_has_not_ended_is_refused_in_one_line_and_not_retried(sqlite_engine: Engine,
                                                                               tmp_path: Path) -> None:
    seeded = seed(sqlite_engine, tmp_path)
    instance = new_instance(seeded, {"run_retries": {"enabled": True, "max_retries": 2}})
    result = run(seeded, instance, day="2024-03-11", config={"zones": ["America/New_York"]}, raise_on_error=False,
                 now=AFTERNOON)
    assert not result.success
    assert failure_line(result) == (
        "date: 2024-03-11 has not ended in America/New_York yet (it ends at 2024-03-12T04:00:00+00:00); "
        "the current local day is computed live, never cached")
    tags = instance.get_run_by_id(result.run_id).tags
    assert tags["dagster/max_retries"] == "0" and tags["dagster/will_retry"] == "false"
    assert not (tmp_path / "reports").exists()  # refused before any work


@pytest.mark.parametrize(("config", "line"), [
    ({"zones": ["America/Sao_Paolo"]},
     "zones: unknown time zone 'America/Sao_Paolo' (expected an IANA name such as 'America/Sao_Paulo'); "
     "did you mean 'America/Sao_Paulo'?"),
    ({"reports": ["queue_performanse"]}, "report: unknown report 'queue_performanse'"),
    ({"workers": -1}, "workers: must not be negative"),
])
def test_bad_run_config_is_one_line_naming_the_field(sqlite_engine: Engine, tmp_path: Path, config: dict,
                                                     line: str) -> None:
    seeded = seed(sqlite_engine, tmp_path)
    result = run(seeded, new_instance(seeded), day="2024-03-09", config=config, raise_on_error=False)
    assert not result.success and failure_line(result).startswith(line)


def test_an_unexpected_failure_is_still_retried_by_the_instance(sqlite_engine: Engine, tmp_path: Path) -> None:
    seeded = seed(sqlite_engine, tmp_path)
    instance = new_instance(seeded, {"run_retries": {"enabled": True, "max_retries": 2}})
    (tmp_path / "reports").write_text("not a folder")  # the store cannot be written: a real failure
    result = run(seeded, instance, day="2024-03-09", config={"zones": ["Europe/Lisbon"]}, raise_on_error=False)
    assert not result.success
    assert instance.get_run_by_id(result.run_id).tags["dagster/will_retry"] == "true"


def test_client_ids_restrict_the_run_and_unknown_ones_are_refused(sqlite_engine: Engine, tmp_path: Path) -> None:
    seeded = seed(sqlite_engine, tmp_path)
    instance = new_instance(seeded)
    ny = seeded.clients["America/New_York"]
    zones = {"zones": ["America/New_York", "Europe/Lisbon"]}
    done = run(seeded, instance, day="2024-03-08", config={**zones, "client_ids": [ny.id]})
    assert done.success and materialization(done, "2024-03-08")["client_days"] == 1
    bad = run(seeded, instance, day="2024-03-08", config={**zones, "client_ids": [ny.id, 999]}, raise_on_error=False)
    assert not bad.success
    assert failure_line(bad) == "client_ids: not served clients of the requested zones and dates: [999]"


def test_a_single_report_can_be_asked_for(sqlite_engine: Engine, tmp_path: Path) -> None:
    seeded = seed(sqlite_engine, tmp_path)
    sydney = seeded.clients["Australia/Sydney"]
    result = run(seeded, new_instance(seeded), day="2024-03-09",
                 config={"zones": ["Australia/Sydney"], "reports": ["queue_performance"]})
    assert result.success and set(materialization(result, "2024-03-09")["rows"]) == {"queue_performance"}
    cached = CacheManifestRepository(sqlite_engine).entries(sydney.id, dt.date(2024, 3, 9), dt.date(2024, 3, 9))
    assert [e.report for e in cached] == ["queue_performance"]


def test_closed_days_sensor_requests_each_zone_day_once_and_its_runs_succeed(sqlite_engine: Engine,
                                                                            tmp_path: Path) -> None:
    seeded = seed(sqlite_engine, tmp_path)
    instance = new_instance(seeded)
    first = tick(closed_days_sensor, instance, seeded.settings, AFTERNOON)
    expected = {"America/New_York": "2024-03-10", "Europe/Lisbon": "2024-03-10", "Australia/Sydney": "2024-03-11"}
    assert {r.run_config["ops"][ASSET]["config"]["zones"][0]: r.partition_key for r in first.run_requests} == expected
    assert {r.run_key for r in first.run_requests} == {f"closed-day:{z}:{d}" for z, d in expected.items()}
    assert all(r.run_config["ops"][ASSET]["config"]["only_stale"] for r in first.run_requests)
    manifest = CacheManifestRepository(sqlite_engine)
    for request in first.run_requests:
        result = execute(request, JOB, instance, seeded.settings, AFTERNOON)
        assert result.success
        zone = request.run_config["ops"][ASSET]["config"]["zones"][0]
        day = dt.date.fromisoformat(expected[zone])
        assert len(manifest.entries(seeded.clients[zone].id, day, day)) == len(REPORTS)
    # only_stale: the same request run again computes nothing (every client-day is reused)
    again = execute(first.run_requests[0], JOB, instance, seeded.settings, AFTERNOON)
    assert (materialization(again, first.run_requests[0].partition_key)["computed"],
            materialization(again, first.run_requests[0].partition_key)["reused"]) == (0, 1)

    assert not tick(closed_days_sensor, instance, seeded.settings, AFTERNOON, cursor=first.cursor).run_requests
    # A day later each zone asks for exactly its next day.
    later = tick(closed_days_sensor, instance, seeded.settings, AFTERNOON + dt.timedelta(days=1), cursor=first.cursor)
    assert sorted((r.partition_key, r.run_config["ops"][ASSET]["config"]["zones"][0]) for r in later.run_requests) == [
        ("2024-03-11", "America/New_York"), ("2024-03-11", "Europe/Lisbon"), ("2024-03-12", "Australia/Sydney")]
    # After a pause of three days, each zone catches up on exactly the missed days.
    caught_up = tick(closed_days_sensor, instance, seeded.settings, AFTERNOON + dt.timedelta(days=3),
                     cursor=first.cursor)
    assert len(caught_up.run_requests) == 3 * len(seeded.clients)


def test_the_closed_days_sensor_never_asks_for_a_date_before_the_partitions_start(sqlite_engine: Engine,
                                                                                  tmp_path: Path) -> None:
    seeded = seed(sqlite_engine, tmp_path)
    instance = new_instance(seeded)
    late_start = replace(seeded.settings, history_start=dt.date(2024, 3, 11))
    state = json.dumps({zone: "2024-03-01" for zone in seeded.clients})  # paused for ten days
    result = tick(closed_days_sensor, instance, late_start, AFTERNOON, cursor=state)
    assert sorted(r.partition_key for r in result.run_requests) == ["2024-03-11"]  # Sydney's only


def test_late_events_make_cached_days_stale_and_the_sensors_runs_refresh_them(engine: Engine, tmp_path: Path) -> None:
    seeded = seed(engine, tmp_path)
    instance = new_instance(seeded)
    ny, sydney = seeded.clients["America/New_York"], seeded.clients["Australia/Sydney"]
    now = dt.datetime(2024, 3, 15, tzinfo=UTC)
    assert run(seeded, instance, day="2024-03-10", config={"zones": ["America/New_York"]}).success
    started = tick(late_events_sensor, instance, seeded.settings, now)
    assert not started.run_requests and started.cursor  # starts watching from the newest ingest

    # Late calls: one for New York's cached 2024-03-10, one for a Sydney day never cached (no request).
    late = now - dt.timedelta(minutes=5)
    ny_start, _ = local_day_window(dt.date(2024, 3, 10), parse_zone(ny.timezone))
    load_call_events(engine, late_call(ny.id, "late-ny", ny_start + dt.timedelta(hours=10), late))
    syd_start, _ = local_day_window(dt.date(2024, 3, 9), parse_zone(sydney.timezone))
    load_call_events(engine, late_call(sydney.id, "late-syd", syd_start + dt.timedelta(hours=10), late))
    ticked = tick(late_events_sensor, instance, seeded.settings, now, cursor=started.cursor)
    [request] = ticked.run_requests
    assert request.partition_key == "2024-03-10"
    assert request.run_config == {"ops": {ASSET: {"config": {"zones": ["America/New_York"], "client_ids": [ny.id]}}}}
    assert request.run_key.startswith("late:America/New_York:2024-03-10:")

    # The requested run refreshes the day; the next tick finds nothing stale.
    assert execute(request, JOB, instance, seeded.settings, now).success
    detail = CacheManifestRepository(engine).entries(ny.id, dt.date(2024, 3, 10), dt.date(2024, 3, 10), ("call_detail",))
    assert detail[0].source_watermark == late
    assert not tick(late_events_sensor, instance, seeded.settings, now, cursor=ticked.cursor).run_requests


def end_reports_licence(engine: Engine, client_id: int, last_day: dt.date) -> None:
    """The client's reports licence now ends on ``last_day`` (an operator ending a subscription)."""
    with engine.begin() as conn:
        conn.execute(update(ClientProductRow).where(ClientProductRow.client_id == client_id,
                                                    ClientProductRow.product_code == "REPORTS")
                     .values(valid_to=last_day))


def test_after_a_licence_ends_late_data_and_checks_follow_one_rule(engine: Engine, tmp_path: Path) -> None:
    seeded = seed(engine, tmp_path)  # New York, Lisbon, Sydney: licences from 2024-03-08
    instance = new_instance(seeded)
    ny = seeded.clients["America/New_York"]
    now = dt.datetime(2024, 3, 15, tzinfo=UTC)
    for day in ("2024-03-09", "2024-03-10"):
        assert run(seeded, instance, day=day, config={"zones": ["America/New_York"]}).success
    end_reports_licence(engine, ny.id, dt.date(2024, 3, 9))  # its last licensed day is the 9th
    started = tick(late_events_sensor, instance, seeded.settings, now)
    for day, call_id in ((dt.date(2024, 3, 9), "late-9"), (dt.date(2024, 3, 10), "late-10")):
        start, _ = local_day_window(day, parse_zone(ny.timezone))
        load_call_events(engine, late_call(ny.id, call_id, start + dt.timedelta(hours=11), now - dt.timedelta(minutes=1)))
    ticked = tick(late_events_sensor, instance, seeded.settings, now, cursor=started.cursor)
    # The 9th was licensed: its late call is work, and the run for it succeeds. The 10th is not served: no request.
    assert [r.partition_key for r in ticked.run_requests] == ["2024-03-09"]
    assert execute(ticked.run_requests[0], JOB, instance, seeded.settings, now).success
    # A new day of the zone: the run skips the ended client and its checks do not expect it.
    eleventh = run(seeded, instance, day="2024-03-11", config={"zones": ["America/New_York"]}, now=now)
    assert eleventh.success and materialization(eleventh, "2024-03-11")["client_days"] == 0
    checks = {c.check_name: (c.passed, c.metadata) for c in eleventh.get_asset_check_evaluations()}
    assert checks["no_missing_client_days"][0] and checks["matches_source"][0]
    assert checks["no_missing_client_days"][1]["client_day_reports_expected"].value == 0


def test_timeout_seconds_covers_the_wait_for_another_runs_lock(sqlite_engine: Engine, tmp_path: Path) -> None:
    """A run with 1 s to live waits behind a client-day another run holds (the configured lock wait is an
    hour): it fails at its deadline, saying how far it got, instead of waiting and reporting success."""
    seeded = seed(sqlite_engine, tmp_path)
    lisbon = seeded.clients["Europe/Lisbon"]
    holder = App(seeded.settings)
    with holder.locks.hold(lisbon.id, dt.date(2024, 3, 9)):
        result = run(seeded, new_instance(seeded), day="2024-03-09", raise_on_error=False,
                     config={"zones": ["Europe/Lisbon"], "timeout_seconds": 1, "workers": 1})
    holder.dispose()
    assert not result.success
    assert failure_line(result) == (
        "timeout_s: 0 of 1 client-days done in 1 s; what finished is cached: give more time or fewer days/clients")
    assert CacheManifestRepository(sqlite_engine).entries(lisbon.id, dt.date(2024, 3, 9), dt.date(2024, 3, 9)) == []


def test_every_extract_run_carries_the_workload_tag_whatever_launched_it(sqlite_engine: Engine, tmp_path: Path) -> None:
    seeded = seed(sqlite_engine, tmp_path)
    instance = new_instance(seeded)
    from report_pipelines.defs.reports.assets import report_days_asset
    from report_pipelines.defs.reports.partitions import date_partitions

    asset = report_days_asset(date_partitions(seeded.settings.history_start))
    # A UI materialization or backfill runs the implicit asset job with no tags of ours.
    result = dg.materialize([asset], partition_key="2024-03-09", instance=instance, resources=resources(seeded),
                            run_config={**QUIET, "ops": {ASSET: {"config": {"zones": ["Europe/Lisbon"]}}}})
    assert result.success
    assert instance.get_run_by_id(result.run_id).tags["report_pipelines/workload"] == "extract"
    assert defs.resolve_job_def(JOB).tags["report_pipelines/workload"] == "extract"


def test_the_partitions_start_at_the_history_start_setting() -> None:
    from report_pipelines.definitions import build_definitions
    from report_pipelines.settings import Settings

    settings = Settings(data_dir=Path("/tmp/x"), database_url="sqlite:///x.db", store_root="/tmp/x/r",
                        history_start=dt.date(2019, 6, 1))
    partitions = build_definitions(settings).resolve_assets_def(ASSET).partitions_def
    assert partitions.get_first_partition_key() == "2019-06-01"
