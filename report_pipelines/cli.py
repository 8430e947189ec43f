"""``report-pipelines``: the command line over the same services the Dagster definitions use.

Expected problems (bad input, unknown names, conflicts) print one line naming the field and exit
with status 2; nothing is half-written. Anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import functools
import sys
from pathlib import Path

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


# --- db -------------------------------------------------------------------------------------------
@main.group()
def db() -> None:
    """The app database (REPORT_PIPELINES_DATABASE_URL; SQLite under the data folder by default)."""


@db.command("upgrade")
@click.option("--revision", default="head", show_default=True)
def db_upgrade(revision: str) -> None:
    """Apply the Alembic migrations."""
    from report_pipelines.adapters.db.migrate import current_revision, upgrade

    engine = _engine()
    upgrade(engine, revision)
    click.echo(f"database {engine.url.render_as_string(hide_password=True)} at revision {current_revision(engine)}")


@db.command("current")
def db_current() -> None:
    """Print the database's migration revision and the newest one available."""
    from report_pipelines.adapters.db.migrate import current_revision, head_revision

    engine = _engine()
    click.echo(f"current: {current_revision(engine)}  head: {head_revision()}")


# --- clients --------------------------------------------------------------------------------------
@main.group()
def clients() -> None:
    """The platform's clients (tenants)."""


@clients.command("add")
@click.argument("slug")
@click.option("--name", required=True, help="Display name.")
@click.option("--timezone", required=True, help="IANA time zone, e.g. America/Sao_Paulo.")
@_friendly
def clients_add(slug: str, name: str, timezone: str) -> None:
    """Add a client."""
    from report_pipelines.services.clients import add_client

    record = add_client(_engine(), slug=slug, name=name, timezone=timezone)
    click.echo(f"added client {record.slug} (id {record.id}, {record.timezone})")


@clients.command("list")
def clients_list() -> None:
    """List clients."""
    from report_pipelines.services.clients import list_clients

    rows = list_clients(_engine())
    if not rows:
        click.echo("no clients yet (report-pipelines clients add SLUG --name NAME --timezone ZONE)")
        return
    width = max(len(r.slug) for r in rows)
    for r in rows:
        click.echo(f"{r.id:>5}  {r.slug:<{width}}  {r.timezone:<24} {r.name}")


if __name__ == "__main__":  # pragma: no cover
    main()
