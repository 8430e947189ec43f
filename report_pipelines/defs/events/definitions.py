"""The events area: the ``call_events`` source and its observation job."""

import dagster as dg

from report_pipelines.defs.events.assets import call_events
from report_pipelines.defs.events.jobs import observe_call_events_job

defs = dg.Definitions(assets=[call_events], jobs=[observe_call_events_job])
