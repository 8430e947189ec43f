"""What every area's Dagster glue shares: expected refusals, and the tag of extract work."""

from __future__ import annotations

from typing import NoReturn

import dagster as dg

from report_pipelines.domain.errors import ReportPipelinesError

#: The instance's run retries read this tag when a run fails: 0 means this run is not retried.
MAX_RETRIES_TAG = "dagster/max_retries"
WORKLOAD_TAG = "report_pipelines/workload"
REFUSED_TAG = "report_pipelines/refused"


def refuse(context: dg.OpExecutionContext | dg.AssetExecutionContext, error: ReportPipelinesError) -> NoReturn:
    """An expected refusal (bad input, a day not closed, an unknown zone): one failed run with one clear
    line, which the instance's run retries leave alone (running it again could never succeed)."""
    context.instance.add_run_tags(context.run.run_id, {MAX_RETRIES_TAG: "0", REFUSED_TAG: getattr(error, "field", "yes")})
    raise dg.Failure(description=str(error).splitlines()[0][:500], allow_retries=False) from None
