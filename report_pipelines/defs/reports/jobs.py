"""Jobs over the report assets."""

from __future__ import annotations

import dagster as dg

from report_pipelines.defs.reports.partitions import REPORT_PARTITIONS

extract_reports_job = dg.define_asset_job(
    "extract_reports_job",
    selection=dg.AssetSelection.groups("reports"),
    partitions_def=REPORT_PARTITIONS,
    tags={"report_pipelines/workload": "extract"},
    description="Compute and cache every report for the client-days of (local date x time zone) partitions.",
)
