"""Jobs of the scheduled reports: build one occurrence, send what is ready, clean what was sent.

Expected refusals (a schedule deleted meanwhile, a build given up, files that cannot be sent) fail
the run with one line (``dg.Failure``); the jobs retry through their own state machine (build
backoff, send attempts), not through the instance's run retries.
"""

import datetime as dt
import traceback

import dagster as dg
from pydantic import Field

from report_pipelines.defs.common import MAX_RETRIES_TAG
from report_pipelines.defs.resources import AppResource
from report_pipelines.domain.errors import ReportPipelinesError
from report_pipelines.services.scheduled_reports import (
    DueOccurrence,
    clean_files,
    process_occurrence,
    send_files,
)


class OccurrenceConfig(dg.Config):
    """One due occurrence, as the processor sensor decided it (instants in UTC, ISO 8601)."""

    schedule_id: int
    due: str = Field(description="the schedule's next_send_at when the sensor saw it")
    send: str = Field(description="the occurrence to build and send")
    skipped: list[str] = Field(default_factory=list, description="older missed occurrences to record as skipped")
    following: str = Field(description="the schedule's next occurrence after this one")
    attempt: int = Field(default=0, description="build claims of this occurrence before this run")


class CleanConfig(dg.Config):
    now: str | None = Field(default=None, description="the instant the retention counts back from (UTC, ISO "
                                                      "8601); the schedule gives its tick's time, default now")


def _one_line(text: str) -> str:
    """A refusal as one line (SMTP replies and exception texts can hold line breaks)."""
    return " ".join(str(text).split())


@dg.op(tags={"report_pipelines/workload": "schedule"})
def build_report_file(context: dg.OpExecutionContext, config: OccurrenceConfig, app: AppResource) -> None:
    """Claim the occurrence, build its file from the report cache, record it ready and advance the
    schedule (one transaction). A failed build fails the run with one line and is retried after a
    backoff by a new run; the last attempt records the file failed."""
    application = app.app()
    now = application.now()
    occurrence = DueOccurrence(
        schedule_id=config.schedule_id, due=dt.datetime.fromisoformat(config.due),
        send=dt.datetime.fromisoformat(config.send), skipped=tuple(dt.datetime.fromisoformat(s) for s in config.skipped),
        following=dt.datetime.fromisoformat(config.following), attempt=config.attempt)
    try:
        file = process_occurrence(application.engine, application.settings, occurrence, owner=context.run.run_id,
                                  now=now)
    except ReportPipelinesError as exc:
        context.instance.add_run_tags(context.run.run_id, {MAX_RETRIES_TAG: "0"})
        raise dg.Failure(description=_one_line(exc), allow_retries=False) from None
    except Exception as exc:
        context.log.error("".join(traceback.format_exception(exc)))
        raise dg.Failure(description=_one_line(f"schedule {config.schedule_id}, occurrence {config.send}: the build "
                                               f"failed ({type(exc).__name__}: {exc}); it is retried after a backoff"),
                         allow_retries=False) from None
    if file is None:
        context.log.info("occurrence %s of schedule %s is built or being built elsewhere", config.send,
                         config.schedule_id)
        return
    context.add_output_metadata({"file_id": file.id, "rows": file.rows or 0, "bytes": file.bytes or 0,
                                 "period": f"{file.period_start}..{file.period_end}", "skipped": len(config.skipped),
                                 "build_attempts": file.build_attempts})


@dg.op(tags={"report_pipelines/workload": "schedule"})
def send_report_files(context: dg.OpExecutionContext, app: AppResource) -> None:
    """Send every file not sent yet; fails (visibly) if a file ran out of attempts or cannot be sent."""
    application = app.app()
    try:
        summary = send_files(application.engine, application.settings, application.mailer,
                             owner=context.run.run_id, now=application.now())
    except ReportPipelinesError as exc:
        raise dg.Failure(description=_one_line(exc), allow_retries=False) from None
    context.log.info("sent %s, retrying later %s, failed %s, given back untried %s", len(summary.sent),
                     len(summary.retried), len(summary.failed), len(summary.released))
    for file_id, error in summary.retried:
        context.log.warning("file %s will be retried: %s", file_id, error)
    delays = sorted(summary.record_delays)
    context.add_output_metadata({"sent": len(summary.sent), "retried": len(summary.retried),
                                 "failed": len(summary.failed), "released": len(summary.released),
                                 "lease_lost": len(summary.lost),
                                 "max_record_delay_ms": round(delays[-1] * 1000, 1) if delays else 0.0})
    if summary.failed:
        raise dg.Failure(
            description=_one_line(f"{len(summary.failed)} report file(s) could not be sent: "
                                  + "; ".join(f"file {i}: {e}" for i, e in summary.failed[:10])),
            metadata={"failed_file_ids": [i for i, _ in summary.failed]}, allow_retries=False)


@dg.op
def clean_report_files(context: dg.OpExecutionContext, config: CleanConfig, app: AppResource) -> None:
    """Delete sent files past the retention (file, then row); never unsent ones."""
    application = app.app()
    settings = application.settings
    now = dt.datetime.fromisoformat(config.now) if config.now else application.now()
    summary = clean_files(application.engine, settings, now)
    for file_id in summary.missing_on_disk:
        context.log.warning("file %s was already gone from disk; its row is deleted", file_id)
    for file_id, path in summary.refused_paths:
        context.log.error("file %s: path %s is outside %s; left alone", file_id, path, settings.files_dir)
    context.add_output_metadata({"deleted": len(summary.deleted), "missing_on_disk": len(summary.missing_on_disk),
                                 "refused_paths": len(summary.refused_paths),
                                 "skipped_records_deleted": summary.skipped_deleted,
                                 "retention_days": settings.retention_days})


# Their own retries (build backoff, send attempts) govern them: no run retry on op failure.
OWN_RETRIES = {"dagster/retry_on_asset_or_op_failure": "false"}


@dg.job(description="Build the file of one due occurrence of a report schedule.", tags=OWN_RETRIES)
def process_report_file_job() -> None:
    build_report_file()


@dg.job(description="E-mail every report file not sent yet (leases, retries with backoff, bounded attempts).",
        tags=OWN_RETRIES)
def send_report_files_job() -> None:
    send_report_files()


@dg.job(description="Delete sent report files past the retention.")
def clean_report_files_job() -> None:
    clean_report_files()
