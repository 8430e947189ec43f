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
@click.option("--active-from", type=click.DateTime(formats=["%Y-%m-%d"]), default=None,
              help="First local date with reports [default: today in the client's zone; imports move it back].")
@_friendly
def clients_add(slug: str, name: str, timezone: str, active_from) -> None:  # noqa: ANN001
    """Add a client."""
    from report_pipelines.services.clients import add_client

    record = add_client(_engine(), slug=slug, name=name, timezone=timezone,
                        active_from=active_from.date() if active_from else None)
    click.echo(f"added client {record.slug} (id {record.id}, {record.timezone}, reports from {record.active_from})")


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
        click.echo(f"{r.id:>5}  {r.slug:<{width}}  {r.timezone:<24} from {r.active_from}  {r.name}")


# --- demo -----------------------------------------------------------------------------------------
@main.group()
def demo() -> None:
    """Demo data and the end-to-end demo run (what `make demo` calls)."""


@demo.command("seed")
@click.option("--clients", default=12, show_default=True, help="How many clients to generate.")
@click.option("--days", default=35, show_default=True, help="How many local days of calls per client.")
@click.option("--end", type=click.DateTime(formats=["%Y-%m-%d"]), default=None,
              help="Last local day generated [default: the day before yesterday (UTC), the newest "
                   "local day that has ended in every time zone].")
@click.option("--largest", default=3000.0, show_default=True, help="Calls per weekday of the largest client.")
@click.option("--smallest", default=12.0, show_default=True, help="Calls per weekday of the smallest client.")
@click.option("--seed", default=20240601, show_default=True, help="Random seed: same seed, same data.")
@click.option("--reset", is_flag=True, help="Replace demo clients that already exist (and their calls).")
@_friendly
def demo_seed(clients: int, days: int, end, largest: float, smallest: float, seed: int, reset: bool) -> None:  # noqa: ANN001
    """Generate realistic clients and calls and bulk-load them (COPY on PostgreSQL)."""
    import datetime as dt

    from report_pipelines.adapters.sources.synthetic import GeneratorConfig
    from report_pipelines.services.demo import seed_demo

    last = end.date() if end else dt.datetime.now(dt.timezone.utc).date() - dt.timedelta(days=2)
    config = GeneratorConfig(start=last - dt.timedelta(days=days - 1), days=days, clients=clients,
                             largest_daily_calls=largest, smallest_daily_calls=smallest, seed=seed)
    click.echo(f"seeding {clients} clients, local days {config.start} .. {config.end} (seed {seed})")
    from report_pipelines.adapters.report_store import ParquetReportStore

    store = ParquetReportStore(Settings.from_env().store_root)
    summary = seed_demo(_engine(), config, reset=reset, store=store, progress=click.echo)
    total = summary.generate_seconds + summary.load_seconds
    click.echo(
        f"seeded {summary.events:,} calls for {summary.clients} clients in {total:.1f} s "
        f"(generate {summary.generate_seconds:.1f} s, load {summary.load_seconds:.1f} s)"
    )


@demo.command("run")
@click.option("--days", default=7, show_default=True, help="Closed local days to extract for every zone.")
@click.option("--end", type=click.DateTime(formats=["%Y-%m-%d"]), default=None,
              help="Last local day [default: the day before yesterday, UTC, as `demo seed`].")
def demo_run(days: int, end) -> None:  # noqa: ANN001
    """Run the jobs in-process on the Dagster instance in DAGSTER_HOME and say where results are."""
    import os

    from report_pipelines.defs.runner import run_demo

    if not os.environ.get("DAGSTER_HOME"):
        click.echo("error: DAGSTER_HOME: set it to a folder holding dagster.yaml (make demo does)", err=True)
        sys.exit(2)
    ok = run_demo(echo=click.echo, days=days, last_day=end.date() if end else None)
    sys.exit(0 if ok else 1)


# --- schedules ------------------------------------------------------------------------------------
@main.group()
def schedules() -> None:
    """Scheduled report e-mails (planned, built, sent and cleaned by the Dagster sensors)."""


def _next_send_text(row) -> str:  # noqa: ANN001
    import datetime as dt

    from report_pipelines.domain.schedules import next_send_at
    from report_pipelines.domain.timezones import parse_zone
    from report_pipelines.services.scheduled_reports import rule_of

    if not row.active:
        return f"paused ({row.paused_reason or 'no reason given'})"
    instant = row.next_send_at
    note = ""
    if instant is None:
        instant, note = next_send_at(rule_of(row), dt.datetime.now(dt.timezone.utc)), " (not planned yet)"
    local = instant.astimezone(parse_zone(row.timezone))
    return f"{local:%Y-%m-%d %H:%M %Z} = {instant:%Y-%m-%d %H:%M} UTC{note}"


def _describe_rule(row) -> str:  # noqa: ANN001
    names = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
    when = {"daily": "daily", "weekly": "weekly on " + ",".join(names[d] for d in row.weekdays),
            "monthly": f"monthly on day {row.month_day}"}[row.frequency]
    period = f"last {row.period_days} days" if row.period == "last_n_days" else row.period.replace("_", " ")
    return f"{row.report} ({period}) {when} at {row.send_time} {row.timezone}, {row.format}"


@schedules.command("add")
@click.option("--client", required=True, help="Client slug.")
@click.option("--report", required=True, help="call_detail, hourly_volume, agent_performance, queue_performance.")
@click.option("--period", default="yesterday", show_default=True,
              help="yesterday, last_n_days, last_week, last_month or month_to_date.")
@click.option("--days", "period_days", type=int, default=None, help="N for --period last_n_days.")
@click.option("--frequency", default="daily", show_default=True, help="daily, weekly or monthly.")
@click.option("--at", "send_time", default="07:00", show_default=True, help="Local send time, HH:MM.")
@click.option("--weekdays", default="", help="For weekly: e.g. mon,wed,fri.")
@click.option("--month-day", type=int, default=None, help="For monthly: 1-31 (31 = the month's last day).")
@click.option("--timezone", default=None, help="IANA zone of the send time [default: the client's].")
@click.option("--to", "recipients", required=True, help="Recipients, comma-separated addresses.")
@click.option("--subject", default=None, help="E-mail subject [default: report, client and period].")
@click.option("--format", "fmt", default="csv", show_default=True, help="csv, xlsx or parquet.")
@_friendly
def schedules_add(client: str, report: str, period: str, period_days, frequency: str, send_time: str,  # noqa: ANN001
                  weekdays: str, month_day, timezone, recipients: str, subject, fmt: str) -> None:  # noqa: ANN001
    """Add a schedule."""
    from report_pipelines.services.scheduled_reports import add_schedule

    row = add_schedule(_engine(), client, report=report, period=period, period_days=period_days,
                       frequency=frequency, send_time=send_time,
                       weekdays=[w for w in weekdays.replace(" ", "").split(",") if w], month_day=month_day,
                       timezone=timezone, recipients=recipients, subject=subject, fmt=fmt)
    click.echo(f"added schedule {row.id}: {_describe_rule(row)} -> {', '.join(row.recipients)}")
    click.echo(f"  next send: {_next_send_text(row)}")


@schedules.command("list")
@click.option("--client", default=None, help="Only this client's schedules.")
@_friendly
def schedules_list(client) -> None:  # noqa: ANN001
    """List schedules with their next send in local time and UTC."""
    from report_pipelines.adapters.db.schedules import ScheduleRepository
    from report_pipelines.services.clients import get_client

    engine = _engine()
    client_id = get_client(engine, client).id if client else None
    rows = ScheduleRepository(engine).list(client_id)
    if not rows:
        click.echo("no schedules (report-pipelines schedules add --client SLUG --report R --to ADDRESS)")
    for row in rows:
        click.echo(f"{row.id:>5}  {row.client_slug:<28} {_describe_rule(row)}")
        click.echo(f"       next: {_next_send_text(row)}")


@schedules.command("show")
@click.argument("schedule_id", type=int)
@_friendly
def schedules_show(schedule_id: int) -> None:
    """A schedule and its recent files (state, attempts, last error)."""
    from report_pipelines.adapters.db.schedules import ReportFileRepository
    from report_pipelines.services.scheduled_reports import get_schedule

    engine = _engine()
    row = get_schedule(engine, schedule_id)
    click.echo(f"schedule {row.id} of {row.client_slug}: {_describe_rule(row)}")
    click.echo(f"  to: {', '.join(row.recipients)}")
    click.echo(f"  subject: {row.subject or '(default)'}")
    click.echo(f"  next: {_next_send_text(row)}")
    files = ReportFileRepository(engine).list(schedule_id, limit=20)
    click.echo(f"  files ({len(files)} most recent):" if files else "  no files yet")
    for f in files:
        error = f"  last error: {f.last_error}" if f.last_error else ""
        click.echo(f"    {f.id:>6} {f.occurrence:%Y-%m-%d %H:%M}Z {f.state:<8} attempts {f.attempts}"
                   f" {f.period_start}..{f.period_end}{error}")


@schedules.command("pause")
@click.argument("schedule_id", type=int)
@click.option("--reason", default="paused by an operator", show_default=True)
@_friendly
def schedules_pause(schedule_id: int, reason: str) -> None:
    """Stop sending (the schedule is kept)."""
    from report_pipelines.adapters.db.schedules import ScheduleRepository
    from report_pipelines.services.scheduled_reports import get_schedule

    get_schedule(_engine(), schedule_id)
    ScheduleRepository(_engine()).set_active(schedule_id, False, reason)
    click.echo(f"paused schedule {schedule_id}: {reason}")


@schedules.command("resume")
@click.argument("schedule_id", type=int)
@_friendly
def schedules_resume(schedule_id: int) -> None:
    """Send again, from the next occurrence after now (missed ones are not sent)."""
    from report_pipelines.adapters.db.schedules import ScheduleRepository
    from report_pipelines.services.scheduled_reports import get_schedule

    get_schedule(_engine(), schedule_id)
    ScheduleRepository(_engine()).set_active(schedule_id, True)
    click.echo(f"resumed schedule {schedule_id}: {_next_send_text(get_schedule(_engine(), schedule_id))}")


@schedules.command("delete")
@click.argument("schedule_id", type=int)
@_friendly
def schedules_delete(schedule_id: int) -> None:
    """Delete a schedule, its files and their rows."""
    from report_pipelines.services.scheduled_reports import delete_schedule

    removed = delete_schedule(_engine(), Settings.from_env(), schedule_id)
    click.echo(f"deleted schedule {schedule_id} ({removed} files removed)")


@schedules.command("send-now")
@click.argument("schedule_id", type=int)
@_friendly
def schedules_send_now(schedule_id: int) -> None:
    """Build this schedule's report for now and send it at once (its plan is unchanged)."""
    import uuid

    from report_pipelines.adapters.mailer import mailer_from_settings
    from report_pipelines.services.scheduled_reports import send_now

    settings = Settings.from_env()
    file = send_now(_engine(), settings, mailer_from_settings(settings), schedule_id, owner=f"cli-{uuid.uuid4().hex[:8]}")
    click.echo(f"file {file.id}: {file.state} ({file.rows} rows, {file.period_start}..{file.period_end}) {file.path}")
    if file.state != "sent":
        click.echo(f"error: not sent: {file.last_error}", err=True)
        sys.exit(1)


@main.command("dev")
@click.option("--port", default=3000, show_default=True)
@click.option("--host", default="127.0.0.1", show_default=True)
def dev(port: int, host: str) -> None:
    """Start `dagster dev` (UI + daemon) on this code location.

    A process started with `&` from a script inherits SIGINT ignored and dagster dev copies that onto
    SIGTERM, so it could not be stopped; both handlers are reset to default before exec.
    """
    import os
    import shutil
    import signal

    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    workspace = Path(__file__).resolve().parent.parent / "workspace.yaml"
    beside = Path(sys.executable).with_name("dagster")  # the venv's, even when it is not on PATH
    dagster = str(beside) if beside.exists() else (shutil.which("dagster") or "dagster")
    args = [dagster, "dev", "-h", host, "-p", str(port)]
    args += ["-w", str(workspace)] if workspace.exists() else ["-m", "report_pipelines.definitions"]
    os.execvp(dagster, args)


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
        rejects_path=rejects_path, data_dir=Settings.from_env().data_dir, progress=None if no_progress else show,
    )
    if interactive and not no_progress:
        click.echo("", err=True)
    rejected = f"{summary.rejected} rejected rows -> {summary.rejects_path}" if summary.rejects_path else "0 rejected"
    click.echo(f"imported {summary.imported} calls ({summary.duplicates} duplicates, {rejected}) "
               f"from {summary.rows_read} rows")
    for warning in summary.warnings:
        click.echo(f"warning: {warning}", err=True)


if __name__ == "__main__":  # pragma: no cover
    main()
