"""The ``report-pipelines`` group, and what every command shares: one-line errors and the engine."""

from __future__ import annotations

import functools
import sys

import click

from report_pipelines.domain.errors import ReportPipelinesError
from report_pipelines.settings import Settings


def _friendly(func):  # noqa: ANN001, ANN202
    @functools.wraps(func)
    def wrapper(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        try:
            return func(*args, **kwargs)
        except ReportPipelinesError as exc:
            click.echo(f"error: {exc}", err=True)
            sys.exit(2)

    return wrapper


def _engine():  # noqa: ANN202
    from report_pipelines.adapters.db.engine import make_engine

    return make_engine(Settings.from_env().database_url)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def main() -> None:
    """Reports for a multi-tenant cloud PBX. Configuration comes from REPORT_PIPELINES_* variables."""


