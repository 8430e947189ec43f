"""The D-1 planning sensor: each zone's closed day, priority clients first, at the zone's own midnight."""


import json

import dagster as dg

from report_pipelines.defs.periods.jobs import precache_client_days_job
from report_pipelines.defs.resources import AppResource
from report_pipelines.services.precache import cursor_json, due_precache_runs
from report_pipelines.services.serving import served_zones

PRIORITY_TAG = "dagster/priority"
TIER_TAG = "report_pipelines/precache_tier"


@dg.sensor(job=precache_client_days_job, minimum_interval_seconds=60, default_status=dg.DefaultSensorStatus.RUNNING)
def d1_precache_sensor(context: dg.SensorEvaluationContext, app: AppResource) -> dg.SensorResult | dg.SkipReason:
    """At each zone's local midnight plus the grace period, request its closed day: the priority clients
    in one run (earliest ready-by first, a higher run priority), the others in a second run (a lower run
    priority, or at the zone's quiet hours). Cursor: per zone and tier, the last day requested."""
    application = app.app()
    cursor = json.loads(context.cursor) if context.cursor else {}
    now = application.now()
    decision = due_precache_runs(application, served_zones(application.engine, now), cursor, now)
    requests = [dg.RunRequest(
        run_key=run.run_key,
        run_config={"ops": {"precache_client_days_op": {"config": {
            "timezone": run.zone, "day": run.day.isoformat(), "client_ids": list(run.client_ids),
            "ready_by": list(run.ready_by), "tier": run.tier}}}},
        tags={PRIORITY_TAG: str(run.run_priority), TIER_TAG: run.tier, "report_pipelines/trigger": "d1_precache"},
    ) for run in decision.runs]
    new_cursor = cursor_json(decision.cursor)
    if not requests:
        waiting = "; next: " + ", ".join(decision.waiting[:3]) if decision.waiting else ""
        return dg.SensorResult(skip_reason=dg.SkipReason(f"no zone's closed day is due{waiting}"), cursor=new_cursor)
    return dg.SensorResult(run_requests=requests, cursor=new_cursor)
