"""The reports area: the report assets, their job and the sensors that request their partitions."""

import dagster as dg

from report_pipelines.defs.reports.assets import report_extracts
from report_pipelines.defs.reports.jobs import extract_reports_job
from report_pipelines.defs.reports.maintenance import repair_report_cache_job, repair_report_cache_schedule
from report_pipelines.defs.reports.sensors import client_timezones_sensor, closed_days_sensor, late_events_sensor

defs = dg.Definitions(
    assets=[report_extracts],
    jobs=[extract_reports_job, repair_report_cache_job],
    sensors=[client_timezones_sensor, closed_days_sensor, late_events_sensor],
    schedules=[repair_report_cache_schedule],
)
