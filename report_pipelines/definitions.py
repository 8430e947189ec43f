"""The one entry point: every area's Dagster definitions, merged, with the resources and the executor.

``workspace.yaml`` loads this module; the ``report_pipelines`` package itself stays importable
without Dagster (the CLI and the domain do not pay Dagster's import time). Each area (events,
reports, schedules, commercial) keeps its own ``Definitions`` next to its jobs and sensors; this
module only adds what they share, chosen from the settings in one place:

* the ``app`` resource of the deployment (``REPORT_PIPELINES_DEPLOYMENT``: ``local`` or
  ``production``, see :mod:`report_pipelines.defs.resources`);
* the executor (``REPORT_PIPELINES_EXECUTOR``): ``in_process`` by default, since a report run is one
  step whose client-days already spread over a process pool of its own (a multiprocess executor's
  extra process per step would cost 1-2 s and buy nothing); ``multiprocess`` for jobs of many steps.
"""

from __future__ import annotations

import dagster as dg

from report_pipelines.app import load_settings
from report_pipelines.defs.commercial.definitions import defs as commercial
from report_pipelines.defs.events.definitions import defs as events
from report_pipelines.defs.periods.definitions import defs as periods
from report_pipelines.defs.reports.definitions import build as reports
from report_pipelines.defs.reports.jobs import extract_reports_job
from report_pipelines.defs.resources import app_resource
from report_pipelines.defs.schedules.definitions import defs as schedules
from report_pipelines.settings import Settings

#: The job ``make demo`` runs end to end (each feature extends what it covers).
MAIN_JOB_NAME = extract_reports_job.name


def executor_for(settings: Settings) -> dg.ExecutorDefinition:
    if settings.executor == "multiprocess":
        return dg.multiprocess_executor.configured({"max_concurrent": settings.workers})
    return dg.in_process_executor


def build_definitions(settings: Settings) -> dg.Definitions:
    shared = dg.Definitions(
        resources={"app": app_resource(settings.deployment)},
        executor=executor_for(settings),
    )
    return dg.Definitions.merge(events, reports(settings), schedules, commercial, periods, shared)


defs = build_definitions(load_settings())
