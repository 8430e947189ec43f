"""The one entry point: every Dagster object of the code location, wired once.

``workspace.yaml`` loads this module; the ``report_pipelines`` package itself stays importable
without Dagster (the CLI and the domain do not pay Dagster's import time).
"""

from __future__ import annotations

import dagster as dg

from report_pipelines.defs.events.assets import call_events
from report_pipelines.defs.events.jobs import observe_call_events_job
from report_pipelines.defs.resources import AppDatabase

#: The job ``make demo`` runs end to end (each feature extends what it covers).
MAIN_JOB_NAME = observe_call_events_job.name

defs = dg.Definitions(
    assets=[call_events],
    jobs=[observe_call_events_job],
    resources={"app_db": AppDatabase()},
)
