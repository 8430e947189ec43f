"""The commercial area: applying approved proposals, and the daily expiry."""

import dagster as dg

from report_pipelines.defs.commercial.jobs import apply_proposal_job, expire_commercial_job
from report_pipelines.defs.commercial.sensors import approved_proposals_sensor, expire_commercial_schedule

defs = dg.Definitions(
    jobs=[apply_proposal_job, expire_commercial_job],
    sensors=[approved_proposals_sensor],
    schedules=[expire_commercial_schedule],
)
