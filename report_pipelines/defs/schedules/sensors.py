"""Sensors and schedules of the scheduled reports: they decide, runs act (stable run keys)."""

import datetime as dt
import hashlib

import dagster as dg

from report_pipelines.adapters.db.schedules import ReportFileRepository
from report_pipelines.defs.resources import AppDatabase
from report_pipelines.defs.schedules.jobs import clean_report_files_job, process_report_file_job, send_report_files_job
from report_pipelines.domain.timezones import UTC
from report_pipelines.services.scheduled_reports import due_occurrences, plan_schedules


@dg.sensor(minimum_interval_seconds=30, default_status=dg.DefaultSensorStatus.RUNNING)
def schedule_planner_sensor(context: dg.SensorEvaluationContext, app_db: AppDatabase) -> dg.SkipReason:
    """Give new, edited and resumed schedules their next send instant (in UTC, from their local rule)."""
    planned = plan_schedules(app_db.engine(), dt.datetime.now(UTC))
    return dg.SkipReason(f"planned {planned} schedule(s)" if planned else "every active schedule is planned")


@dg.sensor(job=process_report_file_job, minimum_interval_seconds=30, default_status=dg.DefaultSensorStatus.RUNNING)
def report_file_processor_sensor(context: dg.SensorEvaluationContext, app_db: AppDatabase):  # noqa: ANN201
    """One run per due occurrence, keyed by schedule and instant, so a tick seen twice asks once."""
    due = due_occurrences(app_db.engine(), dt.datetime.now(UTC))
    if not due:
        return dg.SkipReason("no schedule is due")
    return [
        dg.RunRequest(
            run_key=occurrence.run_key,
            run_config={"ops": {"build_report_file": {"config": {
                "schedule_id": occurrence.schedule_id, "due": occurrence.due.isoformat(),
                "send": occurrence.send.isoformat(), "skipped": [s.isoformat() for s in occurrence.skipped],
                "following": occurrence.following.isoformat(),
            }}}},
            tags={"report_pipelines/schedule_id": str(occurrence.schedule_id)},
        )
        for occurrence in due
    ]


@dg.sensor(job=send_report_files_job, minimum_interval_seconds=30, default_status=dg.DefaultSensorStatus.RUNNING)
def report_file_sender_sensor(context: dg.SensorEvaluationContext, app_db: AppDatabase):  # noqa: ANN201
    """A send run when files are waiting.

    The run key is the waiting set and a 5-minute window: a new file is sent at once, the same set
    is asked for at most once per window (a send run claims every file anyway), and a set that a
    crashed run left behind is asked for again in the next window rather than never.
    """
    now = dt.datetime.now(UTC)
    files = ReportFileRepository(app_db.engine())
    waiting = files.sendable_ids(now, limit=1000)
    if not waiting:
        return dg.SkipReason("no report file waits to be sent")
    attempts = ",".join(f"{f.id}:{f.attempts}" for f in (files.get(i) for i in waiting[:50]) if f)
    window = int(now.timestamp()) // 300
    key = hashlib.sha256(f"{waiting}|{attempts}".encode()).hexdigest()[:16]
    return dg.RunRequest(run_key=f"send:{key}:{window}")


clean_report_files_schedule = dg.ScheduleDefinition(
    name="clean_report_files_schedule", job=clean_report_files_job, cron_schedule="30 3 * * *",
    execution_timezone="UTC", default_status=dg.DefaultScheduleStatus.RUNNING,
    description="Every night: delete sent report files older than REPORT_PIPELINES_RETENTION_DAYS.")
