"""The demo run (``make demo``): the code location's jobs, in-process, on the configured instance.

Runs are recorded in ``DAGSTER_HOME``'s storage, so ``make dev`` shows them in the UI afterwards.
Each feature adds its step here; so far:

1. observe the ``call_events`` source (per-client watermarks);
2. register every client time zone as a partition (what ``client_timezones_sensor`` does);
3. the main job, ``extract_reports_job``, over the last ``days`` closed local days of every zone, as
   one single-run backfill (a rectangle of dates x zones), with its asset checks;
4. read a period back through the public API, the way a client's export or an analyst would.
"""

from __future__ import annotations

import datetime as dt
import os
import warnings
from collections.abc import Callable

import dagster as dg

from report_pipelines.settings import Settings

QUIET = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}


def run_demo(echo: Callable[[str], None] = print, days: int = 7, last_day: dt.date | None = None) -> bool:
    warnings.filterwarnings("ignore", category=dg.BetaWarning)
    warnings.filterwarnings("ignore", category=dg.PreviewWarning)
    from report_pipelines.adapters.db.repositories import CallEventRepository
    from report_pipelines.services.commercial import licensed_zones
    from report_pipelines.definitions import MAIN_JOB_NAME, defs
    from report_pipelines.defs.events.jobs import observe_call_events_job
    from report_pipelines.defs.reports.partitions import TIMEZONE_PARTITIONS
    from report_pipelines.defs.resources import AppDatabase

    settings = Settings.from_env()
    engine = AppDatabase().engine()
    last = last_day or dt.datetime.now(dt.timezone.utc).date() - dt.timedelta(days=2)
    first = last - dt.timedelta(days=days - 1)
    with dg.DagsterInstance.get() as instance:
        observed = defs.resolve_job_def(observe_call_events_job.name).execute_in_process(
            instance=instance, run_config=QUIET, raise_on_error=False)
        echo(f"1. job {observe_call_events_job.name}: {'succeeded' if observed.success else 'FAILED'}")
        for event in observed.get_asset_observation_events():
            meta = event.asset_observation_data.asset_observation.metadata
            echo(f"   observed call_events: {meta['calls'].value:,} calls, {meta['clients'].value} clients")

        zones = licensed_zones(engine)
        known = set(instance.get_dynamic_partitions(TIMEZONE_PARTITIONS.name))
        instance.add_dynamic_partitions(TIMEZONE_PARTITIONS.name, [z for z in zones if z not in known])
        ordered = instance.get_dynamic_partitions(TIMEZONE_PARTITIONS.name)
        echo(f"2. time-zone partitions: {', '.join(ordered)}")

        tags = {
            "dagster/asset_partition_range_start": f"{first}|{ordered[0]}",
            "dagster/asset_partition_range_end": f"{last}|{ordered[-1]}",
        }
        result = defs.resolve_job_def(MAIN_JOB_NAME).execute_in_process(
            instance=instance, tags=tags, run_config=QUIET, raise_on_error=False)
        echo(f"3. job {MAIN_JOB_NAME} over {first}..{last} x {len(ordered)} zones: "
             f"{'succeeded' if result.success else 'FAILED'} (run {result.run_id})")
        for event in result.get_asset_materialization_events():
            meta = event.materialization.metadata
            if event.partition == f"{last}|{ordered[0]}":  # the same run metadata is on every partition
                echo(f"   {event.asset_key.to_user_string():<18} {meta['partitions'].value} partitions, "
                     f"{meta['clients_covered'].value} client-days, {meta['rows'].value:,} rows, "
                     f"{meta['bytes'].value / 1e6:.1f} MB in {meta['duration_s'].value:.1f} s; "
                     f"slowest {meta['slowest_client_day'].value}")
        for check in result.get_asset_check_evaluations():
            echo(f"   check {check.asset_key.to_user_string()}.{check.check_name}: {'passed' if check.passed else 'FAILED'}")
        if not result.success:
            return False

    marks = [m for m in CallEventRepository(engine).watermarks() if m.events]
    biggest = max(marks, key=lambda m: m.events)
    from report_pipelines import summarize_report

    summary = summarize_report("queue_performance", biggest.slug, first, last, settings=settings)
    columns = ["queue", "offered", "answered", "abandoned", "answer_rate", "service_level", "average_speed_of_answer"]
    echo(f"4. summarize_report('queue_performance', '{biggest.slug}', '{first}', '{last}'):")
    for line in summary[columns].round(3).to_string(index=False).splitlines():
        echo(f"   {line}")
    echo("results:")
    echo(f"  app database      {settings.database_url}")
    echo(f"  report store      {settings.store_root}/<report>/client=<id>/date=<YYYY-MM-DD>/part-0.parquet")
    echo(f"  Dagster instance  {os.environ.get('DAGSTER_HOME')} (runs, materializations, checks: `make dev`)")
    return True
