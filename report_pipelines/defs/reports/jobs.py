"""Jobs over the report assets."""

from __future__ import annotations

import dagster as dg

extract_reports_job = dg.define_asset_job(
    "extract_reports_job",
    selection=dg.AssetSelection.groups("reports"),
    tags={"report_pipelines/workload": "extract"},
    description="Compute and cache every report for the served client-days of local dates (zones in the run).",
)
