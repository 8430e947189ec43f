"""`import-cdr` and `clients pbx-config`: PBX call detail records into the call events."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from report_pipelines.cli.base import _app, main
from report_pipelines.cli.clients import clients

_PBX_OPTIONS = [
    click.option("--trunk", "trunks", multiple=True,
                 help="A trunk's channel (glob, repeatable or comma-separated): SIP/4055501, 'trunk-*'. A call from one is inbound."),
    click.option("--extensions", "extensions", multiple=True,
                 help="The phones' extensions: 100-399,500. Every other endpoint is then a trunk."),
    click.option("--did", "dids", multiple=True, help="A number callers dial to reach the client (repeatable)."),
]


def _pbx_options(func):
    for option in reversed(_PBX_OPTIONS):
        func = option(func)
    return func


# --- import-cdr -----------------------------------------------------------------------------------
@main.command("import-cdr")
@click.option("--client", "client_slug", required=True, help="Slug of the client the calls belong to.")
@click.option("--format", "fmt", required=True, type=click.Choice(["asterisk-csv", "asterisk-db", "mapped-csv"]),
              help="asterisk-csv: Master.csv (no header); asterisk-db: the cdr table exported (with a header, or "
                   "--columns); mapped-csv: any CSV, XLSX or ODS with a header, read through --mapping.")
@click.option("--timezone", default=None, help="IANA zone of the file's times (default: the client's zone).")
@click.option("--gmt", is_flag=True, help="The PBX logs UTC (cdr.conf usegmtime=yes).")
@click.option("--mapping", "mapping_path", type=click.Path(path_type=Path), default=None,
              help="YAML or JSON column mapping (required with --format mapped-csv).")
@click.option("--queue-log", "queue_log_path", type=click.Path(path_type=Path), default=None,
              help="The PBX's queue_log: queues, waits and agents come from it, joined by call id.")
@_pbx_options
@click.option("--save", "save_pbx", is_flag=True, help="Store --trunk/--extensions/--did on the client for later imports.")
@click.option("--columns", default=None,
              help="The file's columns in order, '-' for one to ignore (asterisk-csv layouts the count does not "
                   "tell; asterisk-db exports without a header).")
@click.option("--date-format", default=None, help="How dates are written, e.g. 'd/m/Y H:M:S' or '%d/%m/%Y %H:%M:%S' "
                                                  "(default ISO: 2024-03-10 09:15:02).")
@click.option("--encoding", default=None,
              help="The file's encoding (default: UTF-8, lines that are not UTF-8 in a detected code page).")
@click.option("--replace", is_flag=True,
              help="Replace the client's calls in the file's time range (fixing a wrong import); the cached days "
                   "it touches are recomputed.")
@click.option("--max-reject-share", type=float, default=0.5, show_default=True,
              help="Refuse the import (nothing stored, exit 2) when more than this share of the rows is rejected.")
@click.option("--max-repeated-share", type=float, default=0.05, show_default=True,
              help="Refuse the import when more than this share of the calls repeat an id of the same file.")
@click.option("--rejects", "rejects_path", type=click.Path(path_type=Path), default=None,
              help="Where to write rejected rows (default: <data dir>/rejects/<file>.<UTC time>.rejects.csv); "
                   "never overwritten.")
@click.option("--no-progress", is_flag=True, help="Do not print progress to stderr.")
@click.argument("file", type=click.Path(path_type=Path))
def import_cdr_command(client_slug: str, fmt: str, timezone: str | None, gmt: bool, mapping_path: Path | None,
                       queue_log_path: Path | None, trunks: tuple[str, ...], extensions: tuple[str, ...],
                       dids: tuple[str, ...], save_pbx: bool, columns: str | None, date_format: str | None,
                       encoding: str | None, replace: bool, max_reject_share: float, max_repeated_share: float,
                       rejects_path: Path | None, no_progress: bool, file: Path) -> None:
    """Import a PBX's call detail records (CDR) from FILE into the client's call events.

    Legs of one call are collapsed into one call; re-importing a file adds nothing; malformed rows go
    to a rejects file (line, reason, raw line). Prints what was imported by direction and disposition.
    """
    from report_pipelines.domain.pbx import pbx_config
    from report_pipelines.services.cdr_import import ImportProgress, import_cdr

    interactive = sys.stderr.isatty()

    def show(p: ImportProgress) -> None:
        text = f"read {p.rows_read} rows, {p.bytes_read / 1e6:.1f} of {p.total_bytes / 1e6:.1f} MB ({p.percent:.0f}%), {p.calls} calls"
        click.echo(f"\r{text}" if interactive else text, err=True, nl=not interactive)

    config = pbx_config(trunks, extensions, dids)
    if save_pbx and config.empty:
        from report_pipelines.domain.errors import InvalidInput

        raise InvalidInput("--save", "give --trunk, --extensions or --did to store")
    summary = import_cdr(
        _app().engine, client_slug, fmt, file, timezone=timezone, gmt=gmt, mapping_path=mapping_path,
        rejects_path=rejects_path, data_dir=_app().settings.data_dir, progress=None if no_progress else show,
        queue_log_path=queue_log_path, pbx=None if config.empty else config, save_pbx=save_pbx, columns=columns,
        date_format=date_format, encoding=encoding, replace=replace, max_reject_share=max_reject_share,
        max_repeated_share=max_repeated_share,
    )
    if interactive and not no_progress:
        click.echo("", err=True)
    for line in summary.lines():
        click.echo(line)
    for warning in summary.warnings:
        click.echo(f"warning: {warning}", err=True)


# --- clients pbx-config ---------------------------------------------------------------------------
@clients.command("pbx-config")
@click.argument("slug")
@_pbx_options
@click.option("--clear", is_flag=True, help="Forget the stored configuration.")
def clients_pbx_config(slug: str, trunks: tuple[str, ...], extensions: tuple[str, ...], dids: tuple[str, ...],
                       clear: bool) -> None:
    """Show or set what the client's PBX says about its lines (used by every import-cdr of the client).

    With no option: show it. --trunk/--extensions/--did replace the parts given.
    """
    from report_pipelines.services.cdr_import import client_pbx_config

    config = client_pbx_config(_app().engine, slug, pbx_config_args=(trunks, extensions, dids), clear=clear)
    click.echo(f"{slug}: {config.describe()}")
