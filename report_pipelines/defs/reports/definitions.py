"""The reports area: the report cache asset, its job, the sensors that request its dates, its upkeep."""

import dagster as dg

from report_pipelines.defs.reports.assets import report_days_asset
from report_pipelines.defs.reports.jobs import extract_reports_job
from report_pipelines.defs.reports.maintenance import repair_report_cache_job, repair_report_cache_schedule
from report_pipelines.defs.reports.partitions import date_partitions
from report_pipelines.defs.reports.sensors import closed_days_sensor, late_events_sensor
from report_pipelines.settings import Settings


def build(settings: Settings) -> dg.Definitions:
    return dg.Definitions(
        assets=[report_days_asset(date_partitions(settings.history_start))],
        jobs=[extract_reports_job, repair_report_cache_job],
        sensors=[closed_days_sensor, late_events_sensor],
        schedules=[repair_report_cache_schedule],
    )
