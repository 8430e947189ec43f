"""Jobs over the event source."""

from __future__ import annotations

import dagster as dg

from report_pipelines.defs.events.assets import call_events

observe_call_events_job = dg.define_asset_job(
    "observe_call_events_job",
    selection=dg.AssetSelection.assets(call_events.key),
    description="Record, per client, how many calls the app database holds and its ingest watermark.",
)
