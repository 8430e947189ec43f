"""Upkeep of the report cache: the daily repair pass (manifest rows and files agree after a crash)."""

import dagster as dg

from report_pipelines.defs.resources import AppResource
from report_pipelines.services.cache_repair import repair_cache


@dg.op
def repair_report_cache(context: dg.OpExecutionContext, app: AppResource) -> None:
    """Restore rows of files that lost theirs, drop rows without files, delete stale temporary files."""
    summary = repair_cache(app.app())
    for key in summary.rows_restored[:20]:
        context.log.warning("manifest row restored from its file: %s client %s %s", *key)
    context.add_output_metadata({"files": summary.files, "rows_restored": len(summary.rows_restored),
                                 "rows_deleted": len(summary.rows_deleted), "files_deleted": len(summary.files_deleted),
                                 "temporaries_deleted": len(summary.temporaries_deleted)})


@dg.job(description="Make the report cache's manifest and files agree (after crashes); daily.")
def repair_report_cache_job() -> None:
    repair_report_cache()


repair_report_cache_schedule = dg.ScheduleDefinition(
    name="repair_report_cache_schedule", job=repair_report_cache_job, cron_schedule="40 3 * * *",
    execution_timezone="UTC", default_status=dg.DefaultScheduleStatus.RUNNING,
    description="Every night: the report cache's repair pass (rows restored from files, stale temporaries removed).")
