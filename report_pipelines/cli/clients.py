"""`db` and `clients`: the app database and the platform's tenants."""

from __future__ import annotations

import click

from report_pipelines.cli.base import _app, main


# --- db -------------------------------------------------------------------------------------------
@main.group()
def db() -> None:
    """The app database (REPORT_PIPELINES_DATABASE_URL; SQLite under the data folder by default)."""


@db.command("upgrade")
@click.option("--revision", default="head", show_default=True)
def db_upgrade(revision: str) -> None:
    """Apply the Alembic migrations."""
    from report_pipelines.adapters.db.migrate import current_revision, upgrade

    engine = _app().engine
    upgrade(engine, revision)
    click.echo(f"database {engine.url.render_as_string(hide_password=True)} at revision {current_revision(engine)}")


@db.command("current")
def db_current() -> None:
    """Print the database's migration revision and the newest one available."""
    from report_pipelines.adapters.db.migrate import current_revision, head_revision

    engine = _app().engine
    click.echo(f"current: {current_revision(engine)}  head: {head_revision()}")


@db.command("check-quarters")
@click.option("--fix", is_flag=True, help="Recompute the quarters of every client found to differ.")
def db_check_quarters(fix: bool) -> None:
    """Compare call_event_quarters (what the freshness checks read) with the calls themselves.

    They differ only if something wrote call_events without keeping them (a hand-made INSERT): a day
    may then look fresh that is not. Exits 1 when they differ and --fix was not given."""
    from report_pipelines.adapters.db.repositories import CallEventRepository

    events = CallEventRepository(_app().engine)
    drift = events.quarter_drift()
    if not drift:
        click.echo("call_event_quarters agrees with call_events")
        return
    shown = ", ".join(f"client {cid}: {n}" for cid, n in sorted(drift.items())[:10])
    click.echo(f"{sum(drift.values())} quarter-hours of {len(drift)} client(s) differ from their calls ({shown}"
               f"{', ...' if len(drift) > 10 else ''})")
    if not fix:
        click.echo("run `report-pipelines db check-quarters --fix` to recompute them", err=True)
        raise SystemExit(1)
    events.rebuild_quarters(sorted(drift))
    left = events.quarter_drift()
    click.echo(f"recomputed the quarters of {len(drift)} client(s): "
               + ("they agree now" if not left else f"{sum(left.values())} still differ (written meanwhile?)"))


# --- clients --------------------------------------------------------------------------------------
@main.group()
def clients() -> None:
    """The platform's clients (tenants)."""


@clients.command("add")
@click.argument("slug")
@click.option("--name", required=True, help="Display name.")
@click.option("--timezone", required=True, help="IANA time zone, e.g. America/Sao_Paulo.")
@click.option("--active-from", type=click.DateTime(formats=["%Y-%m-%d"]), default=None,
              help="First local date with reports [default: today in the client's zone; imports move it back].")
def clients_add(slug: str, name: str, timezone: str, active_from) -> None:
    """Add a client."""
    from report_pipelines.services.clients import add_client

    app = _app()
    record = add_client(app.engine, slug=slug, name=name, timezone=timezone,
                        active_from=active_from.date() if active_from else None, now=app.now())
    click.echo(f"added client {record.slug} (id {record.id}, {record.timezone}, reports from {record.active_from})")


@clients.command("list")
def clients_list() -> None:
    """List clients."""
    from report_pipelines.services.clients import list_clients

    rows = list_clients(_app().engine)
    if not rows:
        click.echo("no clients yet (report-pipelines clients add SLUG --name NAME --timezone ZONE)")
        return
    width = max(len(r.slug) for r in rows)
    for r in rows:
        click.echo(f"{r.id:>5}  {r.slug:<{width}}  {r.timezone:<24} from {r.active_from}  {r.name}")


