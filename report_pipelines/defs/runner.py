"""Run the code location's main job in-process on the configured Dagster instance (``make demo``).

The run is recorded in ``DAGSTER_HOME``'s storage, so ``make dev`` shows it in the UI afterwards.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable

import dagster as dg

from report_pipelines.settings import Settings


def run_main_job(echo: Callable[[str], None] = print) -> bool:
    warnings.filterwarnings("ignore", category=dg.BetaWarning)
    from report_pipelines.definitions import MAIN_JOB_NAME, defs

    settings = Settings.from_env()
    with dg.DagsterInstance.get() as instance:
        result = defs.resolve_job_def(MAIN_JOB_NAME).execute_in_process(
            instance=instance, raise_on_error=False,
            run_config={"loggers": {"console": {"config": {"log_level": "INFO"}}}},
        )
        echo(f"job {MAIN_JOB_NAME}: {'succeeded' if result.success else 'FAILED'} (run {result.run_id})")
        for event in result.get_asset_observation_events():
            observation = event.asset_observation_data.asset_observation
            meta = observation.metadata
            echo(f"  observed {observation.asset_key.to_user_string()}: "
                 f"{meta['calls'].value:,} calls, {meta['clients'].value} clients")
            if "per_client" in meta:
                for record in meta["per_client"].value.records[:20]:
                    row = record.data
                    echo(f"    {row['client']:<32} {row['calls']:>9,} calls  watermark {row['ingest_watermark_utc']}")
        echo("results:")
        echo(f"  app database      {settings.database_url}")
        echo(f"  Dagster instance  {os.environ.get('DAGSTER_HOME')} (runs, observations; `make dev` shows them)")
        return result.success
