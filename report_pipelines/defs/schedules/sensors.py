"""Sensors and schedules of the scheduled reports: they decide, runs act (stable run keys)."""


import dagster as dg

from report_pipelines.app import system_clock
from report_pipelines.defs.resources import AppResource
from report_pipelines.defs.schedules.jobs import clean_report_files_job, process_report_file_job, send_report_files_job
from report_pipelines.domain.timezones import UTC
from report_pipelines.services.scheduled_reports import due_occurrences, plan_schedules, send_request


@dg.sensor(minimum_interval_seconds=30, default_status=dg.DefaultSensorStatus.RUNNING)
def schedule_planner_sensor(context: dg.SensorEvaluationContext, app: AppResource) -> dg.SkipReason:
    """Give new, edited and resumed schedules their next send instant (in UTC, from their local rule)."""
    planned = plan_schedules(app.app().engine, app.app().now())
    return dg.SkipReason(f"planned {planned} schedule(s)" if planned else "every active schedule is planned")


@dg.sensor(job=process_report_file_job, minimum_interval_seconds=30, default_status=dg.DefaultSensorStatus.RUNNING)
def report_file_processor_sensor(context: dg.SensorEvaluationContext, app: AppResource):
    """One run per due occurrence, keyed by schedule and instant, so a tick seen twice asks once;
    a build whose lease expired (failed and backed off, or its builder died) is asked for again
    under a new key (``...:retry-N``)."""
    due = due_occurrences(app.app().engine, app.app().now())
    if not due:
        return dg.SkipReason("no schedule is due")
    return [
        dg.RunRequest(
            run_key=occurrence.run_key,
            run_config={"ops": {"build_report_file": {"config": {
                "schedule_id": occurrence.schedule_id, "due": occurrence.due.isoformat(),
                "send": occurrence.send.isoformat(), "skipped": [s.isoformat() for s in occurrence.skipped],
                "following": occurrence.following.isoformat(), "attempt": occurrence.attempt,
            }}}},
            tags={"report_pipelines/schedule_id": str(occurrence.schedule_id)},
        )
        for occurrence in due
    ]


@dg.sensor(job=send_report_files_job, minimum_interval_seconds=30, default_status=dg.DefaultSensorStatus.RUNNING)
def report_file_sender_sensor(context: dg.SensorEvaluationContext, app: AppResource):
    """A send run when files are waiting (the run key: the waiting set and a 5-minute window, see
    ``send_request``); otherwise it says when the next retry is due."""
    request = send_request(app.app().engine, app.app().now())
    if request.run_key is None:
        later = f"; the next retry is due at {request.next_retry_at:%Y-%m-%d %H:%M:%S} UTC" if request.next_retry_at else ""
        return dg.SkipReason(f"no report file waits to be sent{later}")
    return dg.RunRequest(run_key=request.run_key, tags={"report_pipelines/waiting_files": str(request.waiting)})


@dg.schedule(job=clean_report_files_job, cron_schedule="30 3 * * *", execution_timezone="UTC",
             default_status=dg.DefaultScheduleStatus.RUNNING)
def clean_report_files_schedule(context: dg.ScheduleEvaluationContext) -> dg.RunRequest:
    """Every night: delete sent report files older than REPORT_PIPELINES_RETENTION_DAYS (counted
    from the tick's scheduled time, which the run is given)."""
    when = context.scheduled_execution_time or system_clock()
    return dg.RunRequest(run_config={"ops": {"clean_report_files": {"config": {"now": when.astimezone(UTC).isoformat()}}}})
