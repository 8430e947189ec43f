"""Sensors and schedules of the commercial side."""

import dagster as dg

from report_pipelines.defs.commercial.jobs import apply_proposal_job, expire_commercial_job
from report_pipelines.defs.resources import AppResource
from report_pipelines.services.commercial import proposals_to_apply


@dg.sensor(job=apply_proposal_job, minimum_interval_seconds=30, default_status=dg.DefaultSensorStatus.RUNNING)
def approved_proposals_sensor(context: dg.SensorEvaluationContext, app: AppResource):
    """One run per approved proposal not applied yet; the run key is the proposal, so it is asked once."""
    waiting = proposals_to_apply(app.app().engine)
    if not waiting:
        return dg.SkipReason("no approved proposal waits to be applied")
    return [dg.RunRequest(run_key=f"apply-proposal:{proposal_id}",
                          run_config={"ops": {"apply_approved_proposal": {"config": {"proposal_id": proposal_id}}}},
                          tags={"report_pipelines/proposal_id": str(proposal_id)})
            for proposal_id in waiting]


expire_commercial_schedule = dg.ScheduleDefinition(
    name="expire_commercial_schedule", job=expire_commercial_job, cron_schedule="10 0 * * *",
    execution_timezone="UTC", default_status=dg.DefaultScheduleStatus.RUNNING,
    description="Every day: proposals and trials past their dates expire; unlicensed clients' schedules pause.")
