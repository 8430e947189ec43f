"""report_pipelines: call reports for a multi-tenant cloud PBX, on Dagster.

The public reading API (importing the package does not import Dagster)::

    from report_pipelines import extract_period, read_report, read_report_arrow, summarize_report
    df = read_report("hourly_volume", "acme", "2024-03-01", "2024-03-31")
    extract_period("acme", "call_detail", "2024-03-01", "2024-03-31", format="parquet", out="march.parquet")

Every call goes through the period service and is recorded in the usage log (channel ``python``).
"""

from __future__ import annotations

from typing import Any

__all__ = ["extract_period", "read_report", "read_report_arrow", "summarize_report"]


def __getattr__(name: str) -> Any:  # lazy: the CLI and the domain do not pay for pandas/pyarrow imports
    if name in __all__:
        from report_pipelines.services import periods

        return getattr(periods, name)
    raise AttributeError(f"module 'report_pipelines' has no attribute {name!r}")
