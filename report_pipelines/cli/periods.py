"""`extract`, `usage` and `precache`: period requests, the usage log, and the D-1 pre-cache plan."""

from __future__ import annotations

import sys

import click

from report_pipelines.cli.base import _app, main
from report_pipelines.domain.errors import InvalidInput

#: Exit status of a request that ran out of time (its finished days stay cached).
EXIT_DEADLINE = 3
_FIELDS = {"start": "--from", "end": "--to", "out": "--out", "format": "--format", "deadline": "--deadline",
           "client": "--client", "report": "--report"}


def _progress(stream):
    """Progress on a terminal only: days ready / total, with an estimate, on one rewritten line."""
    if not stream.isatty():
        return None

    def show(p) -> None:
        eta = f", about {p.eta_s:.0f} s left" if p.eta_s else ""
        stream.write(f"\r  {p.done}/{p.total} days ready ({p.computed} computed){eta}   ")
        if p.done == p.total:
            stream.write("\n")
        stream.flush()

    return show


@main.command("extract")
@click.option("--client", required=True, help="Client slug.")
@click.option("--report", required=True, help="Report name (call_detail, hourly_volume, queue_performance, ...).")
@click.option("--from", "from_date", required=True, help="First local day, YYYY-MM-DD.")
@click.option("--to", "to_date", required=True, help="Last local day, YYYY-MM-DD (today is computed live).")
@click.option("--summary", is_flag=True, help="The period re-aggregated and presented, instead of the day rows.")
@click.option("--format", "fmt", type=click.Choice(["csv", "xlsx", "parquet", "json"]), default="csv",
              show_default=True, help="json is JSON lines (one object per row).")
@click.option("--out", default=None, help="Output file, or - for standard output (csv, json) [default: "
                                          "<client>_<report>_<from>_<to>.<ext> in the current folder].")
@click.option("--deadline", type=float, default=None,
              help="Seconds before giving up (exit 3; finished days stay cached) [default: "
                   "REPORT_PIPELINES_EXTRACT_DEADLINE_S, 120].")
@click.option("--force", is_flag=True, help="Replace the output file if it exists.")
def extract(client: str, report: str, from_date: str, to_date: str, summary: bool, fmt: str, out: str | None,
            deadline: float | None, force: bool) -> None:
    """Extract a client's period: cached days read, missing ones computed on the pool, today live."""
    from report_pipelines.services.periods import extract_period
    from report_pipelines.services.reading import PeriodTimeout

    try:
        result = extract_period(client, report, from_date, to_date, shape="summary" if summary else "days",
                                format=fmt, out=out, deadline_s=deadline, channel="cli", force=force, app=_app(),
                                progress=_progress(sys.stderr))
    except PeriodTimeout as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(EXIT_DEADLINE)
    except InvalidInput as exc:
        raise InvalidInput(_FIELDS.get(exc.field, exc.field), exc.message) from None
    if result.path is not None or sys.stderr.isatty():
        where = "standard output" if result.path is None else str(result.path)
        click.echo(f"wrote {result.rows:,} rows ({result.bytes:,} bytes) to {where}: {result.days_cached} days from "
                   f"the cache, {result.days_computed} computed, {result.days_live} live, in {result.duration_s:.1f} s",
                   err=True)


@main.command("usage")
@click.option("--client", default=None, help="Only this client (slug).")
@click.option("--since", type=click.DateTime(formats=["%Y-%m-%d"]), default=None,
              help="From this UTC date [default: the D-1 window, REPORT_PIPELINES_PRECACHE_WINDOW_DAYS before today].")
def usage(client: str | None, since) -> None:
    """Per client: requests, share asking for yesterday (D-1), p50/p95 duration, share of days from the cache."""
    from report_pipelines.services.periods import usage_summary

    lines = usage_summary(_app(), client=client, since=since.date() if since else None)
    if not lines:
        click.echo("no requests logged in that window")
        return
    width = max(12, *(len(line.client) for line in lines))
    click.echo(f"{'client':<{width}}  requests  D-1 share  p50 (s)  p95 (s)  cached share  refused  timeouts")
    for line in lines:
        click.echo(f"{line.client:<{width}}  {line.requests:>8}  {line.d1_share:>9.0%}  {line.p50_s:>7.2f}  "
                   f"{line.p95_s:>7.2f}  {line.cached_share:>12.0%}  {line.refused:>7}  {line.timeouts:>8}")


@main.group()
def precache() -> None:
    """The D-1 pre-cache plan: who gets yesterday first, by when (and an operator's say in it)."""


@precache.command("set")
@click.argument("slug")
@click.option("--priority", "decision", flag_value="priority", help="Always pre-cache first.")
@click.option("--normal", "decision", flag_value="normal", help="Pre-cache with the others.")
@click.option("--skip", "decision", flag_value="skip", help="Never pre-cache (computed when asked for).")
@click.option("--auto", "decision", flag_value="auto", help="Let the usage study decide again.")
@click.option("--by", default=None, help="Who sets it [default: your login name].")
@click.option("--note", default=None, help="Why (shown with the plan).")
def precache_set(slug: str, decision: str | None, by: str | None, note: str | None) -> None:
    """Force a client in or out of the priority pre-cache, or give it back to the study (kept in the database)."""
    import getpass

    from report_pipelines.services.precache import set_precache_choice

    if decision is None:
        raise InvalidInput("decision", "give one of --priority, --normal, --skip, --auto")
    choice = set_precache_choice(_app(), slug, decision, by=by or getpass.getuser(), note=note)
    click.echo(f"{slug}: {choice.decision} (set by {choice.by} at {choice.at:%Y-%m-%d %H:%M} UTC)")


@precache.command("plan")
@click.option("--zone", default=None, help="Only this time zone's clients.")
def precache_plan_command(zone: str | None) -> None:
    """The plan (what asset d1_precache_plan shows) and the order of each zone's next pre-cache."""
    from report_pipelines.domain.timezones import parse_zone
    from report_pipelines.services.precache import precache_plan

    app = _app()
    plans = precache_plan(app, app.now(), zone=parse_zone(zone, "--zone").key if zone else None)
    if not plans:
        click.echo("no served client")
        return
    for line in plan_lines(plans):
        click.echo(line)


def plan_lines(plans) -> list[str]:
    """The plan table, then the order of each zone's next pre-cache (also what the demo prints)."""
    records = [p.record() for p in plans]
    width = max(len(r["client"]) for r in records)
    lines = [f"{'client':<{width}}  {'zone':<22} {'D-1 asks':>8} {'share':>6} {'first':>6}  {'schedule':<14} "
             f"{'decision':<8} {'ready by':>8}  reason"]
    for r in records:
        lines.append(f"{r['client']:<{width}}  {r['timezone']:<22} {r['d1_requests']:>8} {r['d1_share']:>6.0%} "
                     f"{r['typical_first_request'] or '-':>6}  {r['schedule'] or '-':<14} {r['decision']:<8} "
                     f"{r['ready_by'] or '-':>8}  {r['reason']}")
    lines.append("next pre-cache, in order (priority run first, then the others):")
    for zone in dict.fromkeys(p.client.timezone for p in plans):
        members = [p for p in plans if p.client.timezone == zone and p.decision != "skip"]
        day = members[0].closed_day if members else None
        shown = " -> ".join(f"{p.client.slug}{' (by ' + p.record()['ready_by'] + ')' if p.ready_by else ''}"
                            for p in members)
        lines.append(f"  {zone} {day}: {shown or '(all skipped)'}")
    return lines
