"""``make demo-cluster``: a backfill through two Celery workers, and who computed what.

Against the running Redis (``REPORT_PIPELINES_BROKER_URL``) and the PostgreSQL app database
(``REPORT_PIPELINES_DATABASE_URL``; the Makefile seeds one), it starts two ``report-pipelines worker``
processes on a queue of its own, runs ``extract_reports_job`` over the last closed dates with
``REPORT_PIPELINES_POOL=celery`` on the Dagster instance in ``DAGSTER_HOME`` (so the run is in the UI of
``make dev``), prints each worker's share (the run's ``client_days_by_worker`` metadata, and each worker's
log: its zone-day batches and their clients), and stops the workers it started, whatever happens.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable
from dataclasses import replace

from report_pipelines.app import App
from report_pipelines.domain.errors import InvalidInput
from report_pipelines.settings import PREFIX

LINE = re.compile(r"client-day \S+ client=(?P<client>\d+) day=(?P<day>\S+) status=(?P<status>\w+)")
BATCH = re.compile(r"start \S+ pid=\d+ (?P<zone>\S+) (?P<day>\S+) clients=(?P<clients>\[.*\])")


def run_cluster_demo(app: App, echo: Callable[[str], None] = print, *, days: int = 3, workers: int = 2,
                     last_day: dt.date | None = None) -> bool:
    import dagster as dg

    from report_pipelines.adapters.celery_pool import CeleryPool
    from report_pipelines.definitions import build_definitions
    from report_pipelines.defs.resources import AppResource
    from report_pipelines.worker_processes import start_worker, wait_for

    settings = app.settings
    if not settings.database_url.startswith("postgresql"):
        raise InvalidInput(PREFIX + "DATABASE_URL", "the cluster demo needs PostgreSQL (its locks are shared "
                                                    "by every worker): make demo-cluster creates one")
    pool = replace(settings.pool, kind="celery", queue=f"{settings.pool.queue}.demo-cluster", worker_wait_s=30.0)
    celery = replace(settings, pool=pool)
    folder = settings.data_dir / "cluster_demo"
    folder.mkdir(parents=True, exist_ok=True)
    env = {PREFIX + "DATABASE_URL": settings.database_url, PREFIX + "STORE": settings.store_root,
           PREFIX + "DATA_DIR": str(settings.data_dir), PREFIX + "BROKER_URL": pool.broker_url,
           PREFIX + "CELERY_QUEUE": pool.queue}
    last = last_day or app.now().date() - dt.timedelta(days=2)
    first = last - dt.timedelta(days=days - 1)
    started = []
    probe = CeleryPool(celery)
    try:
        echo(f"1. starting {workers} Celery workers on {pool.broker_url.split('@')[-1]}, queue {pool.queue!r}")
        for n in range(1, workers + 1):
            worker = start_worker(f"w{n}@demo-cluster", env, folder / f"w{n}.log")
            started.append(worker)
            echo(f"   w{n}@demo-cluster: pid {worker.process.pid}, log {worker.log}")
        wait_for(lambda: len(probe.workers()) == workers, 60, "the workers to answer", started)
        echo(f"2. backfill {first} .. {last} (every zone, every report) through them: REPORT_PIPELINES_POOL=celery")
        defs = build_definitions(celery)
        with dg.DagsterInstance.get() as instance:
            result = defs.resolve_job_def("extract_reports_job").execute_in_process(
                instance=instance, resources={"app": AppResource.for_settings(celery, now=app.now())}, raise_on_error=False,
                tags={"dagster/asset_partition_range_start": str(first), "dagster/asset_partition_range_end": str(last)},
                run_config={"loggers": {"console": {"config": {"log_level": "WARNING"}}}})
        if not result.success:
            echo("   the run failed: see the workers' logs above")
            return False
        [event, *_] = result.get_asset_materialization_events()
        meta = {k: v.value for k, v in event.materialization.metadata.items()}
        echo(f"   run {result.run_id}: {meta['client_days']} client-days of {meta['zone_days']} zone-days, "
             f"{meta['computed']} computed, in {meta['duration_s']} s")
        echo(f"3. who computed what (the run's metadata, client_days_by_worker): {meta['client_days_by_worker']}")
        for worker in started:
            batches = [m.groupdict() for line in worker.lines("start ") if (m := BATCH.search(line))]
            days_done = [m for line in worker.lines() if (m := LINE.search(line))]
            echo(f"   {worker.hostname}: {len(days_done)} client-days in {len(batches)} zone-day batches")
            for batch in batches[:8]:
                echo(f"     {batch['day']} {batch['zone']:<20} clients {batch['clients']}")
            if len(batches) > 8:
                echo(f"     ... {len(batches) - 8} more (its log has one line per client-day)")
        return True
    finally:
        probe.shutdown(wait=False)
        for worker in started:
            worker.stop()
        if started:
            echo(f"4. stopped the {len(started)} workers it started (pids "
                 f"{', '.join(str(w.process.pid) for w in started)}); nothing else was touched")
