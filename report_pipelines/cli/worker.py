"""`worker`: a Celery worker computing the zone-day batches of runs whose pool is Celery."""

from __future__ import annotations

import click

from report_pipelines.cli.base import _app, main


@main.command("worker")
@click.option("--concurrency", "-c", type=click.IntRange(1, 256), default=None,
              help="Worker processes (batches computed at once) [default: REPORT_PIPELINES_WORKERS].")
@click.option("--hostname", "-n", default=None,
              help="This worker's name in runs' metadata and logs (Celery's, e.g. 'w1@%h') [default: celery@<host>].")
@click.option("--loglevel", "-l", default="INFO", show_default=True,
              type=click.Choice(["DEBUG", "INFO", "WARNING", "ERROR"], case_sensitive=False))
def worker(concurrency: int | None, hostname: str | None, loglevel: str) -> None:
    """Compute batches from REPORT_PIPELINES_BROKER_URL's queue REPORT_PIPELINES_CELERY_QUEUE.

    The worker builds its App from its own environment: give it the same REPORT_PIPELINES_DATABASE_URL
    (PostgreSQL: the client-day locks must be shared) and REPORT_PIPELINES_STORE as the runs; it refuses
    batches of a run that uses another database or store. Runs send it work with REPORT_PIPELINES_POOL=celery.
    """
    from report_pipelines.adapters.celery_pool import serve

    settings = _app().settings
    if settings.database_url.startswith("sqlite"):
        click.echo("warning: the app database is SQLite: only workers on this machine can share it and its "
                   "file locks", err=True)
    serve(settings, concurrency=concurrency or settings.workers, hostname=hostname, loglevel=loglevel.upper())
