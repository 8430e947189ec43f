"""The one entry point: every Dagster object of the code location, wired once.

``workspace.yaml`` loads this module; the ``report_pipelines`` package itself stays importable
without Dagster (the CLI and the domain do not pay Dagster's import time).
"""

from __future__ import annotations

import dagster as dg

from report_pipelines.defs.commercial.jobs import apply_proposal_job, expire_commercial_job
from report_pipelines.defs.commercial.sensors import approved_proposals_sensor, expire_commercial_schedule
from report_pipelines.defs.events.assets import call_events
from report_pipelines.defs.events.jobs import observe_call_events_job
from report_pipelines.defs.reports.assets import report_extracts
from report_pipelines.defs.reports.jobs import extract_reports_job
from report_pipelines.defs.reports.sensors import client_timezones_sensor, closed_days_sensor, late_events_sensor
from report_pipelines.defs.resources import AppDatabase, MailerResource, ReportStore
from report_pipelines.defs.schedules.jobs import clean_report_files_job, process_report_file_job, send_report_files_job
from report_pipelines.defs.schedules.sensors import (
    clean_report_files_schedule,
    report_file_processor_sensor,
    report_file_sender_sensor,
    schedule_planner_sensor,
)

#: The job ``make demo`` runs end to end (each feature extends what it covers).
MAIN_JOB_NAME = extract_reports_job.name

defs = dg.Definitions(
    assets=[call_events, report_extracts],
    jobs=[observe_call_events_job, extract_reports_job, process_report_file_job, send_report_files_job,
          clean_report_files_job, apply_proposal_job, expire_commercial_job],
    sensors=[client_timezones_sensor, closed_days_sensor, late_events_sensor, schedule_planner_sensor,
             report_file_processor_sensor, report_file_sender_sensor, approved_proposals_sensor],
    schedules=[clean_report_files_schedule, expire_commercial_schedule],
    resources={"app_db": AppDatabase(), "report_store": ReportStore(), "mailer": MailerResource()},
    # One step per run: client-days are parallelised inside it, on a process pool of their own, so
    # the multiprocess executor's extra process per step (1-2 s) would buy nothing.
    executor=dg.in_process_executor,
)
