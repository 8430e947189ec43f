"""`import-cdr`: PBX call detail records into the call events."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from report_pipelines.cli.base import _app, _engine, _friendly, main


# --- import-cdr -----------------------------------------------------------------------------------
@main.command("import-cdr")
@click.option("--client", "client_slug", required=True, help="Slug of the client the calls belong to.")
@click.option("--format", "fmt", required=True, type=click.Choice(["asterisk-csv", "asterisk-db", "mapped-csv"]),
              help="asterisk-csv: Master.csv (no header); asterisk-db: the cdr table exported with a header; "
                   "mapped-csv: any CSV with a header, read through --mapping.")
@click.option("--timezone", default=None, help="IANA zone of the file's times (default: the client's zone).")
@click.option("--gmt", is_flag=True, help="The PBX logs UTC (cdr.conf usegmtime=yes).")
@click.option("--mapping", "mapping_path", type=click.Path(path_type=Path), default=None,
              help="YAML or JSON column mapping (required with --format mapped-csv).")
@click.option("--rejects", "rejects_path", type=click.Path(path_type=Path), default=None,
              help="Where to write rejected rows (default: <data dir>/rejects/<file>.<UTC time>.rejects.csv); "
                   "never overwritten.")
@click.option("--no-progress", is_flag=True, help="Do not print progress to stderr.")
@click.argument("file", type=click.Path(path_type=Path))
@_friendly
def import_cdr_command(client_slug: str, fmt: str, timezone: str | None, gmt: bool, mapping_path: Path | None,
                       rejects_path: Path | None, no_progress: bool, file: Path) -> None:
    """Import a PBX's call detail records (CDR) from FILE into the client's call events.

    Legs of one call are collapsed into one call; re-importing a file adds nothing; malformed rows go
    to a rejects file (line, reason, raw line) and never stop the import.
    """
    from report_pipelines.services.cdr_import import ImportProgress, import_cdr

    interactive = sys.stderr.isatty()

    def show(p: ImportProgress) -> None:
        text = f"read {p.rows_read} rows, {p.bytes_read / 1e6:.1f} of {p.total_bytes / 1e6:.1f} MB ({p.percent:.0f}%), {p.calls} calls"
        click.echo(f"\r{text}" if interactive else text, err=True, nl=not interactive)

    summary = import_cdr(
        _engine(), client_slug, fmt, file, timezone=timezone, gmt=gmt, mapping_path=mapping_path,
        rejects_path=rejects_path, data_dir=_app().settings.data_dir, progress=None if no_progress else show,
    )
    if interactive and not no_progress:
        click.echo("", err=True)
    rejected = f"{summary.rejected} rejected rows -> {summary.rejects_path}" if summary.rejects_path else "0 rejected"
    click.echo(f"imported {summary.imported} calls ({summary.duplicates} duplicates, {rejected}) "
               f"from {summary.rows_read} rows")
    for warning in summary.warnings:
        click.echo(f"warning: {warning}", err=True)


