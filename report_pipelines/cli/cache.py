"""`cache`: the report cache (Parquet files and their manifest)."""

from __future__ import annotations

import click

from report_pipelines.cli.base import _app, main


@main.group()
def cache() -> None:
    """The report cache: day files under REPORT_PIPELINES_STORE and their manifest rows."""


@cache.command("repair")
@click.option("--verify", is_flag=True, help="Also read every file and drop rows whose checksum differs.")
@click.option("--grace-minutes", default=60, show_default=True,
              help="Temporary files older than this are a killed writer's and are deleted.")
def cache_repair(verify: bool, grace_minutes: int) -> None:
    """Make the manifest and the files agree after a crash (what repair_report_cache_job does daily)."""
    from report_pipelines.services.cache_repair import repair_cache

    summary = repair_cache(_app(), verify=verify, grace_s=grace_minutes * 60.0)
    click.echo(f"{summary.files} day files: {len(summary.rows_restored)} rows restored from their files, "
               f"{len(summary.rows_deleted)} rows without a (matching) file deleted, {len(summary.files_deleted)} "
               f"unidentifiable files and {len(summary.temporaries_deleted)} stale temporary files deleted")
