"""The period-requests area: the extraction job, the D-1 plan asset and the pre-cache sensor and runs."""

import dagster as dg

from report_pipelines.defs.periods.assets import d1_precache_plan, d1_precache_plan_job, d1_precache_plan_schedule
from report_pipelines.defs.periods.jobs import extract_period_job, precache_client_days_job
from report_pipelines.defs.periods.sensors import d1_precache_sensor

defs = dg.Definitions(
    assets=[d1_precache_plan],
    jobs=[extract_period_job, precache_client_days_job, d1_precache_plan_job],
    sensors=[d1_precache_sensor],
    schedules=[d1_precache_plan_schedule],
)
