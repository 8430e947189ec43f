"""The D-1 pre-cache through Dagster: the planning sensor across zones' midnights, its runs, the plan asset,
the extraction job, and a scheduled report of yesterday that reads the pre-cached days."""

from __future__ import annotations

import datetime as dt
from dataclasses import replace
from pathlib import Path

import dagster as dg
import pytest
from sqlalchemy import Engine, select

from report_pipelines.adapters.db.models import CacheEntry
from report_pipelines.adapters.db.usage import PrecacheChoiceRepository, UsageRepository
from report_pipelines.adapters.sources.synthetic import GeneratorConfig
from report_pipelines.definitions import defs
from report_pipelines.defs.periods.sensors import d1_precache_sensor
from report_pipelines.domain.reports import REPORTS
from report_pipelines.services.scheduled_reports import (
    add_schedule,
    due_occurrences,
    plan_schedules,
    process_occurrence,
)
from report_pipelines_tests.dagster_support import QUIET, app_resources, execute, persistent_instance, tick
from report_pipelines_tests.extract_support import UTC, Seeded, seed

JOB = "precache_client_days_job"
ZONES = ("Australia/Sydney", "America/Los_Angeles", "Europe/Lisbon")
# Seven clients, zones in turn: Sydney 1, 4, 7; Los Angeles 2, 5; Lisbon 3, 6 (the first is the largest).
CONFIG = GeneratorConfig(start=dt.date(2024, 3, 4), days=5, clients=7, largest_daily_calls=400,
                         smallest_daily_calls=30, seed=7, zones=ZONES)
CLOSED = dt.date(2024, 3, 8)  # the last generated day, a Friday


def at(*args: int) -> dt.datetime:
    return dt.datetime(*args, tzinfo=UTC)


def by_zone(seeded: Seeded) -> dict[str, list]:
    found: dict[str, list] = {}
    for client in sorted(seeded.all_clients, key=lambda c: c.id):
        found.setdefault(client.timezone, []).append(client)
    return found


def prepare(engine: Engine, tmp_path: Path, quiet_hours: str | None = None) -> tuple[Seeded, dict, dg.DagsterInstance]:
    seeded = seed(engine, tmp_path, CONFIG)
    if quiet_hours:
        seeded.settings = replace(seeded.settings, periods=replace(seeded.settings.periods, quiet_hours=quiet_hours))
    zones = by_zone(seeded)
    sydney_big, sydney_asks, sydney_forced = zones["Australia/Sydney"]
    la_scheduled, la_skipped = zones["America/Los_Angeles"]
    log = UsageRepository(engine)
    # Sydney's second client opens yesterday's report every morning from 1 March (local 07:50-08:30).
    for number, minute in enumerate((490, 480, 500, 470, 485, 495, 510)):
        day = dt.date(2024, 3, 1) + dt.timedelta(days=number)
        log.record({"client_id": sydney_asks.id, "client_ref": sydney_asks.slug, "report": "queue_performance",
                    "period_start": day - dt.timedelta(days=1), "period_end": day - dt.timedelta(days=1),
                    "shape": "summary", "format": "csv", "channel": "cli",
                    "requested_at": dt.datetime.combine(day, dt.time(minute // 60, minute % 60),
                                                        tzinfo=dt.timezone(dt.timedelta(hours=11))),
                    "local_date": day, "local_minute": minute, "asks_yesterday": True, "days_cached": 1,
                    "days_computed": 0, "days_live": 0, "rows": 5, "bytes": 900, "duration_s": 0.05, "status": "ok"})
    choices = PrecacheChoiceRepository(engine)
    choices.set(sydney_forced.id, "priority", "ops", at(2024, 3, 1, 9))
    choices.set(la_skipped.id, "skip", "ops", at(2024, 3, 1, 9))
    add_schedule(engine, la_scheduled.slug, report="daily_summary", period="yesterday", frequency="daily",
                 send_time="06:30", recipients=["manager@example.com"])
    instance = persistent_instance(tmp_path / "home")
    return seeded, zones, instance


def run_all(requests, seeded: Seeded, instance: dg.DagsterInstance, now: dt.datetime) -> list:
    """Execute every run request of a tick against its job, as the daemon would launch it."""
    results = [execute(request, JOB, instance, seeded.settings, now=now) for request in requests or []]
    assert all(result.success for result in results)
    return results


def config_of(request: dg.RunRequest) -> dict:
    return request.run_config["ops"]["precache_client_days_op"]["config"]


def test_each_zone_is_precached_at_its_own_midnight_priority_clients_first(sqlite_engine: Engine,
                                                                           tmp_path: Path) -> None:
    seeded, zones, instance = prepare(sqlite_engine, tmp_path)
    sydney_big, sydney_asks, sydney_forced = zones["Australia/Sydney"]
    la_scheduled, la_skipped = zones["America/Los_Angeles"]
    lisbon_big, lisbon_small = zones["Europe/Lisbon"]
    # 08:20 UTC on 8 March: 00:20 in Los Angeles, 08:20 in Lisbon, 19:20 in Sydney. Every zone's 7 March is
    # due (Los Angeles's only just, 15 minutes of grace after its midnight): the sensor starts there.
    start = tick(d1_precache_sensor, instance, seeded.settings, at(2024, 3, 8, 8, 20))
    assert [r.run_key for r in start.run_requests] == [
        "d1:Australia/Sydney:2024-03-07:priority",  # ready by 07:50 AEDT on the 8th (20:50 UTC on the 7th)
        "d1:America/Los_Angeles:2024-03-07:priority",  # ready by 06:30 PST on the 8th (14:30 UTC) for its schedule
        "d1:Australia/Sydney:2024-03-07:others",  # Los Angeles has no other run: its other client is skipped
        "d1:Europe/Lisbon:2024-03-07:others"]
    run_all(start.run_requests, seeded, instance, at(2024, 3, 8, 8, 20))
    cursor = start.cursor
    ticks = []
    for instant in (at(2024, 3, 8, 13, 10),  # 00:10 in Sydney on the 9th: within the grace period
                    at(2024, 3, 8, 13, 20),  # 00:20 in Sydney: its 8 March
                    at(2024, 3, 9, 0, 20),  # 00:20 in Lisbon
                    at(2024, 3, 9, 8, 20)):  # 00:20 in Los Angeles
        result = tick(d1_precache_sensor, instance, seeded.settings, instant, cursor=cursor)
        ticks.append((instant, list(result.run_requests or [])))
        assert not tick(d1_precache_sensor, instance, seeded.settings, instant, cursor=result.cursor).run_requests
        cursor = result.cursor
    assert [[r.run_key for r in requests] for _, requests in ticks] == [
        [],
        ["d1:Australia/Sydney:2024-03-08:priority", "d1:Australia/Sydney:2024-03-08:others"],
        ["d1:Europe/Lisbon:2024-03-08:others"],  # nobody in Lisbon asks: no priority run
        ["d1:America/Los_Angeles:2024-03-08:priority"],  # the skipped client has no run at all
    ]
    sydney_first, sydney_then = ticks[1][1]
    # earliest ready-by first: the habit says 07:50 (p10 of 07:50..08:30), the forced client has none
    assert config_of(sydney_first) == {
        "timezone": "Australia/Sydney", "day": "2024-03-08", "client_ids": [sydney_asks.id, sydney_forced.id],
        "ready_by": ["2024-03-08T20:50:00+00:00", ""], "tier": "priority"}
    assert config_of(sydney_then)["client_ids"] == [sydney_big.id]
    assert (sydney_first.tags["dagster/priority"], sydney_then.tags["dagster/priority"]) == ("10", "-10")
    assert config_of(ticks[2][1][0])["client_ids"] == [lisbon_big.id, lisbon_small.id]  # largest first
    [la_run] = ticks[3][1]
    assert config_of(la_run)["client_ids"] == [la_scheduled.id]
    assert config_of(la_run)["ready_by"] == ["2024-03-09T14:30:00+00:00"]  # 06:30 PST

    # Every run requested is executed against its job: the clients' days are cached, in the order given.
    outputs = {}
    for instant, requests in ticks:
        for request in requests:
            result = execute(request, JOB, instance, seeded.settings, now=instant)
            assert result.success
            outputs[request.run_key] = result
    with sqlite_engine.connect() as conn:
        rows = conn.execute(select(CacheEntry.client_id, CacheEntry.id).where(
            CacheEntry.local_date == CLOSED, CacheEntry.report == "call_detail").order_by(CacheEntry.id)).all()
    order = [client_id for client_id, _ in rows]
    assert order == [sydney_asks.id, sydney_forced.id, sydney_big.id, lisbon_big.id, lisbon_small.id, la_scheduled.id]
    meta = step_metadata(outputs["d1:Australia/Sydney:2024-03-08:priority"])
    assert (meta["clients"].value, meta["computed"].value, meta["reused"].value) == (2, 2, 0)
    assert meta["order"].value == [sydney_asks.id, sydney_forced.id]
    # Sydney's zone-day is complete after its second run: the report partitions show it, not before
    assert not outputs["d1:Australia/Sydney:2024-03-08:priority"].get_asset_materialization_events()
    partitions = {(e.asset_key.to_user_string(), e.partition)
                  for e in outputs["d1:Australia/Sydney:2024-03-08:others"].get_asset_materialization_events()}
    assert partitions == {("report_days", "2024-03-08")}
    [event] = outputs["d1:Australia/Sydney:2024-03-08:others"].get_asset_materialization_events()
    assert event.materialization.metadata["zones"].value == ["Australia/Sydney"]
    # ... with that materialization's checks, run on Sydney's zone-day (the UI shows the latest one's)
    verdicts = {e.asset_check_evaluation_data.check_name: e.asset_check_evaluation_data for e in
                outputs["d1:Australia/Sydney:2024-03-08:others"].all_events
                if e.event_type_value == "ASSET_CHECK_EVALUATION"}
    assert set(verdicts) == {"matches_source", "no_missing_client_days"}
    assert all(v.passed and v.asset_key.to_user_string() == "report_days" for v in verdicts.values())
    assert verdicts["matches_source"].metadata["client_days_checked"].value == 3  # Sydney's three clients
    assert not [e for e in outputs["d1:Australia/Sydney:2024-03-08:priority"].all_events
                if e.event_type_value == "ASSET_CHECK_EVALUATION"]
    # The same request run again computes nothing: every day is reused
    again = execute(sydney_then, JOB, instance, seeded.settings, now=ticks[1][0])
    assert (step_metadata(again)["computed"].value, step_metadata(again)["reused"].value) == (0, 1)


def step_metadata(result: dg.ExecuteInProcessResult) -> dict:
    [output] = [e for e in result.all_events if e.event_type_value == "STEP_OUTPUT"]
    return output.event_specific_data.metadata


def test_the_others_wait_for_the_zones_quiet_hours(sqlite_engine: Engine, tmp_path: Path) -> None:
    seeded, zones, instance = prepare(sqlite_engine, tmp_path, quiet_hours="02:00-05:00")
    start = tick(d1_precache_sensor, instance, seeded.settings, at(2024, 3, 8, 12, 0))  # 23:00 in Sydney
    run_all(start.run_requests, seeded, instance, at(2024, 3, 8, 12, 0))
    sydney = tick(d1_precache_sensor, instance, seeded.settings, at(2024, 3, 8, 13, 20), cursor=start.cursor)
    assert [r.run_key for r in sydney.run_requests] == ["d1:Australia/Sydney:2024-03-08:priority"]
    run_all(sydney.run_requests, seeded, instance, at(2024, 3, 8, 13, 20))
    assert "Australia/Sydney others of 2024-03-08 at 2024-03-08 15:00 UTC" in str(
        tick(d1_precache_sensor, instance, seeded.settings, at(2024, 3, 8, 14, 0), cursor=sydney.cursor).skip_message)
    quiet = tick(d1_precache_sensor, instance, seeded.settings, at(2024, 3, 8, 15, 5), cursor=sydney.cursor)
    assert [r.run_key for r in quiet.run_requests] == ["d1:Australia/Sydney:2024-03-08:others"]  # 02:05 AEDT
    run_all(quiet.run_requests, seeded, instance, at(2024, 3, 8, 15, 5))
    assert not tick(d1_precache_sensor, instance, seeded.settings, at(2024, 3, 8, 15, 6), cursor=quiet.cursor).run_requests


def test_a_schedule_of_yesterday_builds_from_the_precached_days(sqlite_engine: Engine, tmp_path: Path) -> None:
    seeded, zones, instance = prepare(sqlite_engine, tmp_path)
    la_scheduled = zones["America/Los_Angeles"][0]
    midnight = at(2024, 3, 9, 8, 20)  # 00:20 in Los Angeles on the 9th
    start = tick(d1_precache_sensor, instance, seeded.settings, midnight - dt.timedelta(hours=1))
    run_all(start.run_requests, seeded, instance, midnight - dt.timedelta(hours=1))
    requests = tick(d1_precache_sensor, instance, seeded.settings, midnight, cursor=start.cursor).run_requests
    assert [r.run_key for r in requests] == ["d1:America/Los_Angeles:2024-03-08:priority"]
    [run] = run_all(requests, seeded, instance, midnight)

    def cached() -> dict:
        with sqlite_engine.connect() as conn:
            return {row.report: (row.id, row.run_id, row.computed_at) for row in conn.execute(
                select(CacheEntry).where(CacheEntry.client_id == la_scheduled.id, CacheEntry.local_date == CLOSED))}

    before = cached()
    assert set(before) == set(REPORTS) and {r for _, r, _ in before.values()} == {run.run_id}
    # 06:30 PST: the schedule's occurrence is built, reading 8 March from the cache
    plan_schedules(sqlite_engine, midnight)
    send = at(2024, 3, 9, 14, 31)
    [due] = due_occurrences(sqlite_engine, send)
    file = process_occurrence(sqlite_engine, seeded.settings, due, owner="test", now=send)
    assert file is not None and file.state == "ready" and (file.period_start, file.period_end) == (CLOSED, CLOSED)
    assert cached() == before  # not one day was computed from the events at send time


def test_the_plan_asset_is_a_table_of_decisions(sqlite_engine: Engine, tmp_path: Path) -> None:
    seeded, zones, instance = prepare(sqlite_engine, tmp_path)
    now = at(2024, 3, 8, 10, 0)  # 21:00 in Sydney on the 8th: the next pre-cache closes the 8th
    result = defs.resolve_job_def("d1_precache_plan_job").execute_in_process(
        instance=instance, run_config=QUIET, resources=app_resources(seeded.settings, now))
    assert result.success
    [event] = result.get_asset_materialization_events()
    meta = event.materialization.metadata
    assert (meta["clients"].value, meta["priority"].value, meta["normal"].value, meta["skip"].value) == (7, 3, 3, 1)
    rows = {r.data["client"]: r.data for r in meta["plan"].value.records}
    asks = rows[zones["Australia/Sydney"][1].slug]
    # 1..7 March asked; on the 8th the window (10 Feb .. 8 Mar) has 8 observed days since the first request
    assert (asks["d1_requests"], asks["days_asked"], asks["days_observed"]) == (7, 7, 8)
    assert (asks["decision"], asks["ready_by"], asks["typical_first_request"]) == ("priority", "07:50", "07:50")
    scheduled = rows[zones["America/Los_Angeles"][0].slug]
    assert (scheduled["decision"], scheduled["ready_by"]) == ("priority", "06:30")
    assert scheduled["schedule"].endswith("at 06:30")
    assert rows[zones["America/Los_Angeles"][1].slug]["set_by"].startswith("skip by ops at 2024-03-01 09:00")
    assert "Australia/Sydney" in meta["next_order"].value


def test_an_operator_extracts_a_period_from_the_ui(sqlite_engine: Engine, tmp_path: Path) -> None:
    seeded, zones, instance = prepare(sqlite_engine, tmp_path)
    client = zones["Europe/Lisbon"][0]
    now = at(2024, 3, 9, 12)
    config = {"client": client.slug, "report": "hourly_volume", "from_date": "2024-03-06", "to_date": "2024-03-08",
              "format": "parquet"}
    result = defs.resolve_job_def("extract_period_job").execute_in_process(
        instance=instance, run_config={**QUIET, "ops": {"extract_period": {"config": config}}},
        resources=app_resources(seeded.settings, now))
    assert result.success
    meta = step_metadata(result)
    path = Path(meta["path"].value)
    assert path == seeded.settings.data_dir / "extracts" / f"{client.slug}_hourly_volume_2024-03-06_2024-03-08.parquet"
    assert (meta["rows"].value, meta["days_computed"].value, meta["days_cached"].value) == (72, 3, 0)
    assert meta["bytes"].value == path.stat().st_size
    [row] = [r for r in UsageRepository(sqlite_engine).requests(at(2024, 1, 1)) if r.channel == "dagster"]
    assert row.status == "ok"
    refused = defs.resolve_job_def("extract_period_job").execute_in_process(
        instance=instance, run_config={**QUIET, "ops": {"extract_period": {"config": {**config, "to_date": "2024-03-01"}}}},
        resources=app_resources(seeded.settings, now), raise_on_error=False)
    assert not refused.success
    [failure] = [e for e in refused.all_events if e.is_step_failure]
    assert failure.step_failure_data.user_failure_data.description == "end: 2024-03-01 is before start 2024-03-06"
    assert instance.get_run_by_id(refused.run_id).tags["dagster/max_retries"] == "0"


@pytest.mark.parametrize("now, expected", [
    (at(2024, 3, 8, 13, 14), []),  # 00:14 AEDT: still in Sydney's grace period
    (at(2024, 3, 8, 13, 15), ["d1:Australia/Sydney:2024-03-08:priority", "d1:Australia/Sydney:2024-03-08:others"]),
])
def test_the_grace_period_after_a_zones_midnight(sqlite_engine: Engine, tmp_path: Path, now: dt.datetime,
                                                 expected: list[str]) -> None:
    seeded, _, instance = prepare(sqlite_engine, tmp_path)
    start = tick(d1_precache_sensor, instance, seeded.settings, at(2024, 3, 8, 12))
    run_all(start.run_requests, seeded, instance, at(2024, 3, 8, 12))
    result = tick(d1_precache_sensor, instance, seeded.settings, now, cursor=start.cursor)
    assert [r.run_key for r in result.run_requests or []] == expected
    run_all(result.run_requests, seeded, instance, now)
