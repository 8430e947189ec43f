"""Running what production runs: sensor ticks through ``evaluate_tick``, and the runs they ask for."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import dagster as dg
import yaml

from report_pipelines.definitions import defs
from report_pipelines.defs.resources import AppResource
from report_pipelines.settings import Settings

QUIET = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}


def persistent_instance(home: Path, settings: dict | None = None) -> dg.DagsterInstance:
    """An instance with its storage in ``home``, as the daemon has one (sensors resolve partitioned run
    requests against it, which an ephemeral instance cannot do)."""
    home.mkdir(parents=True, exist_ok=True)
    (home / "dagster.yaml").write_text(yaml.safe_dump({"telemetry": {"enabled": False}, **(settings or {})}))
    return dg.DagsterInstance.from_config(str(home))


def app_resources(settings: Settings, now: dt.datetime | None = None) -> dict:
    return {"app": AppResource.for_settings(settings, now=now)}


def tick(sensor: dg.SensorDefinition, instance: dg.DagsterInstance, settings: Settings, now: dt.datetime,
         cursor: str | None = None):
    """One evaluation of ``sensor`` as the daemon does it, with the application's clock at ``now``."""
    return sensor.evaluate_tick(dg.build_sensor_context(
        instance=instance, instance_ref=instance.get_ref(), cursor=cursor, definitions=defs,
        resources=app_resources(settings, now)))


def evaluate_schedule(schedule: dg.ScheduleDefinition, instance: dg.DagsterInstance, at: dt.datetime):
    return schedule.evaluate_tick(dg.build_schedule_context(instance=instance, scheduled_execution_time=at))


def execute(request: dg.RunRequest, job_name: str, instance: dg.DagsterInstance, settings: Settings,
            now: dt.datetime | None = None, raise_on_error: bool = True) -> dg.ExecuteInProcessResult:
    """Run what a sensor or schedule asked for: its job, partition, run config and tags."""
    return defs.resolve_job_def(job_name).execute_in_process(
        instance=instance, partition_key=request.partition_key, tags=request.tags,
        run_config={**QUIET, **(request.run_config or {})}, resources=app_resources(settings, now),
        raise_on_error=raise_on_error)
