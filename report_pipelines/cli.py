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


# --- commercial: shared parsing and printing -------------------------------------------------------
def _day(value: str | None, option: str):  # noqa: ANN202
    """``YYYY-MM-DD`` as a date, or a refusal naming the option."""
    import datetime as dt

    from report_pipelines.domain.errors import InvalidInput

    if value is None:
        return None
    try:
        return dt.date.fromisoformat(value.strip())
    except ValueError:
        raise InvalidInput(option, f"{value!r} is not a date (YYYY-MM-DD)") from None


def _whole(value: str | None, option: str) -> int | None:
    """A whole number as typed (``12``), or a refusal naming the option; ranges are the services' business."""
    import re

    from report_pipelines.domain.errors import InvalidInput

    if value is None:
        return None
    if not re.fullmatch(r"[+-]?\d{1,9}", value.strip()):
        raise InvalidInput(option, f"{value!r} is not a whole number")
    return int(value)


def _amount(value: str, option: str):  # noqa: ANN202
    """A decimal number as typed (``49.90``; never through a float), or a refusal naming the option."""
    from decimal import Decimal, InvalidOperation

    from report_pipelines.domain.errors import InvalidInput

    try:
        number = Decimal(value.strip())
    except InvalidOperation:
        raise InvalidInput(option, f"{value!r} is not a number (e.g. 49.90)") from None
    if not number.is_finite():
        raise InvalidInput(option, f"{value!r} is not a finite number")
    return number


def _items(values: tuple[str, ...]) -> list[tuple[str, int]]:
    from report_pipelines.domain.errors import InvalidInput

    items = []
    for value in values:
        code, sep, quantity = value.partition("=")
        if not sep or not code.strip():
            raise InvalidInput("--item", f"{value!r} must be CODE=QTY, e.g. REPORTS=1")
        try:
            number = _whole(quantity, "--item")
        except InvalidInput:
            raise InvalidInput("--item", f"{value!r} must be CODE=QTY with a whole number, e.g. SEATS=25") from None
        items.append((code.strip(), number))
    return items


def _at(instant) -> str:  # noqa: ANN001
    return f"{instant:%Y-%m-%d %H:%M} UTC"


def _customer_text(stored) -> str:  # noqa: ANN001
    proposal = stored.proposal
    if proposal.client_slug is not None:
        return f"client {proposal.client_slug} ({proposal.customer.timezone})"
    prospect = proposal.prospect
    account = f"account {stored.prospect_slug}" + (f", client id {stored.client_id}" if stored.client_id else "")
    return f"prospect {prospect.name} <{prospect.email}> ({account}, {prospect.timezone})"


def _echo_pricing(stored) -> None:  # noqa: ANN001
    priced = stored.proposal.priced
    width = max(len(line.product.code) for line in priced.lines)
    for line in priced.lines:
        policies = f"  [{', '.join(line.applied)}]" if line.applied else ""
        click.echo(f"  {line.product.code:<{width}}  {line.quantity} x {line.unit_price} = {line.list_total}"
                   f"  discount {line.discount}  total {line.line_total}{policies}")
    click.echo(f"  subtotal {priced.subtotal}  discount {priced.discount}  total {priced.total}")
    click.echo("  pricing:")
    for text in priced.explanation.splitlines():
        click.echo(f"    {text}")


def _licence_text(licence, today) -> str:  # noqa: ANN001
    from report_pipelines.domain.commercial import is_active

    until = licence.valid_to.isoformat() if licence.valid_to else "no end"
    source = f"proposal {licence.source_proposal}" if licence.source_proposal else "no proposal"
    state = "active today" if is_active(licence, today) else (
        "not active today (ended)" if licence.valid_to and licence.valid_to < today else "not active today (starts later)")
    return (f"{licence.product_code} x{licence.quantity} at {licence.unit_price}, discount {licence.discount}, "
            f"{licence.valid_from} to {until}, {'trial' if licence.trial else 'paid'}, {source}: {state}")


# --- products -------------------------------------------------------------------------------------
@main.group()
def products() -> None:
    """The catalogue: products sold at a list price per unit and billing period."""


@products.command("add")
@click.argument("code")
@click.option("--name", required=True, help="Display name.")
@click.option("--unit", required=True, help="seat, licence or flat (flat: quantity is always 1).")
@click.option("--price", required=True, help="List price per unit, e.g. 49.90 (exact decimal).")
@click.option("--currency", required=True, help="ISO 4217 code, e.g. EUR.")
@_friendly
def products_add(code: str, name: str, unit: str, price: str, currency: str) -> None:
    """Add a product (codes: upper-case letters, digits, '_' and '-', e.g. REPORTS)."""
    from report_pipelines.services.commercial import add_product

    product = add_product(_engine(), code, name, unit, _amount(price, "--price"), currency)
    click.echo(f"added product {product.code}: {product.name}, {product.list_price} per {product.unit.value}")


@products.command("list")
def products_list() -> None:
    """List the catalogue."""
    from report_pipelines.services.commercial import catalogue

    found = list(catalogue(_engine()).products.values())
    if not found:
        click.echo("no products yet (report-pipelines products add CODE --name N --unit seat --price 9.90 --currency EUR)")
        return
    width = max(len(p.code) for p in found)
    for p in found:
        click.echo(f"{p.code:<{width}}  {str(p.list_price):>14} per {p.unit.value:<8} "
                   f"{'' if p.active else '(inactive) '}{p.name}")


# --- policies -------------------------------------------------------------------------------------
@main.group()
def policies() -> None:
    """Commercial policies: the discounts sales may grant, their windows and use limits."""


@policies.command("add")
@click.argument("code")
@click.option("--name", required=True, help="Display name.")
@click.option("--kind", required=True, help="percentage or amount (an amount is taken off each line once).")
@click.option("--value", required=True, help="Percent (10 = 10%) or amount off (5.00).")
@click.option("--currency", default=None, help="Currency of an amount policy.")
@click.option("--products", "product_codes", default="", help="Products it covers, e.g. REPORTS,SEATS [default: all].")
@click.option("--from", "valid_from", required=True, help="First day it may be used, YYYY-MM-DD.")
@click.option("--to", "valid_to", default=None, help="Last day it may be used (inclusive) [default: no end].")
@click.option("--min-quantity", default=None, help="Lines of fewer units do not get it.")
@click.option("--max-uses", default=None, help="Approved proposals that may use it, overall.")
@click.option("--max-uses-per-client", default=None, help="Approved proposals that may use it, per client.")
@click.option("--stackable", is_flag=True, help="Applies on top of the best non-stackable policy.")
@click.option("--by", "created_by", required=True, help="Who creates it.")
@_friendly
def policies_add(code: str, name: str, kind: str, value: str, currency, product_codes: str, valid_from: str,  # noqa: ANN001
                 valid_to, min_quantity, max_uses, max_uses_per_client, stackable: bool,  # noqa: ANN001
                 created_by: str) -> None:
    """Add a policy."""
    from report_pipelines.domain.errors import InvalidInput
    from report_pipelines.services.commercial import add_policy

    if currency and kind == "percentage":
        raise InvalidInput("--currency", "only an amount policy has a currency (a percentage applies to any)")
    policy = add_policy(
        _engine(), code=code, name=name, kind=kind, value=_amount(value, "--value"), currency=currency,
        products=[c.strip() for c in product_codes.split(",") if c.strip()], valid_from=_day(valid_from, "--from"),
        valid_to=_day(valid_to, "--to"), min_quantity=_whole(min_quantity, "--min-quantity"),
        max_uses=_whole(max_uses, "--max-uses"), max_uses_per_client=_whole(max_uses_per_client, "--max-uses-per-client"),
        stackable=stackable, created_by=created_by)
    click.echo(f"added policy {policy.code}: {policy.name}, {policy.describe()}, "
               f"{policy.valid_from} to {policy.valid_to or 'no end'}")


@policies.command("list")
def policies_list() -> None:
    """List policies with their uses so far (approved proposals)."""
    from report_pipelines.services.commercial import policies as all_policies
    from report_pipelines.services.commercial import usage_summary

    engine = _engine()
    found, uses = all_policies(engine), usage_summary(engine)
    if not found:
        click.echo("no policies yet (report-pipelines policies add CODE --name N --kind percentage --value 10 ...)")
        return
    for p in found:
        limits = [f"min {p.min_quantity} units" if p.min_quantity else "",
                  f"max {p.max_uses} uses" if p.max_uses else "",
                  f"max {p.max_uses_per_client} uses per client" if p.max_uses_per_client else ""]
        used = uses.get(p.code, 0)
        click.echo(f"{p.code}  {p.describe()}, {p.valid_from} to {p.valid_to or 'no end'}, "
                   f"products {','.join(sorted(p.products)) or 'all'}"
                   f"{''.join(', ' + text for text in limits if text)}; used {used}"
                   f"{f' of {p.max_uses}' if p.max_uses else ''}{'' if p.active else ' (inactive)'}  {p.name}")


# --- proposals ------------------------------------------------------------------------------------
@main.group()
def proposals() -> None:
    """Proposals: priced offers, submitted, then approved or rejected; approved ones become licences."""


@proposals.command("create")
@click.option("--client", default=None, help="Slug of an existing client.")
@click.option("--prospect-name", default=None, help="A prospect's name (not a client yet).")
@click.option("--prospect-email", default=None, help="The prospect's e-mail address.")
@click.option("--timezone", default=None, help="The prospect's IANA time zone (validity dates are its local days).")
@click.option("--slug", default=None, help="Slug of the client account approval creates for the prospect.")
@click.option("--item", "items", multiple=True, required=True, help="CODE=QTY, e.g. SEATS=25 (repeatable).")
@click.option("--policy", default=None, help="Use this policy (refused, with its reasons, if it cannot apply).")
@click.option("--valid-until", required=True, help="Last day it can be approved (inclusive, the customer's date).")
@click.option("--term-days", default=None, help="Length of the licences in days [default: no end].")
@click.option("--by", required=True, help="Who creates it.")
@_friendly
def proposals_create(client, prospect_name, prospect_email, timezone, slug, items: tuple[str, ...], policy,  # noqa: ANN001
                     valid_until: str, term_days, by: str) -> None:  # noqa: ANN001
    """Create a priced draft for a client or a prospect and print its pricing."""
    from report_pipelines.domain.errors import InvalidInput
    from report_pipelines.services.commercial import create_proposal

    prospect_options = {"--prospect-name": prospect_name, "--prospect-email": prospect_email,
                        "--timezone": timezone, "--slug": slug}
    given = [option for option, value in prospect_options.items() if value is not None]
    if client is not None and given:
        raise InvalidInput("--client", f"give either --client or a prospect ({', '.join(given)}), not both")
    if client is None:
        missing = [option for option, value in prospect_options.items() if value is None]
        if len(missing) == len(prospect_options):
            raise InvalidInput("--client", "give --client SLUG, or --prospect-name, --prospect-email, --timezone "
                                           "and --slug for a prospect")
        if missing:
            raise InvalidInput(missing[0], "required for a prospect")
    parsed_items = _items(items)
    stored = create_proposal(
        _engine(), items=parsed_items, valid_until=_day(valid_until, "--valid-until"), by=by, client=client,
        prospect=None if client is not None else (prospect_name, prospect_email, timezone, slug), policy=policy,
        term_days=_whole(term_days, "--term-days"))
    term = f"{stored.term_days} days" if stored.term_days else "no end"
    click.echo(f"created proposal {stored.id} (draft) for {_customer_text(stored)}, "
               f"valid until {stored.proposal.valid_until}, licences: {term}")
    _echo_pricing(stored)


@proposals.command("submit")
@click.argument("proposal_id", type=int)
@click.option("--by", required=True, help="Who submits it.")
@_friendly
def proposals_submit(proposal_id: int, by: str) -> None:
    """Submit a draft for approval."""
    from report_pipelines.services.commercial import submit_proposal

    stored = submit_proposal(_engine(), proposal_id, by)
    click.echo(f"proposal {stored.id} submitted by {by} (total {stored.proposal.priced.total})")


@proposals.command("approve")
@click.argument("proposal_id", type=int)
@click.option("--by", required=True, help="Who approves it.")
@_friendly
def proposals_approve(proposal_id: int, by: str) -> None:
    """Approve a submitted proposal (its policies' use limits are checked again)."""
    from report_pipelines.services.commercial import approve_proposal

    stored = approve_proposal(_engine(), proposal_id, by)
    click.echo(f"proposal {stored.id} approved by {by} (total {stored.proposal.priced.total})")
    click.echo(f"  its licences are written by the approved_proposals_sensor, or now: "
               f"report-pipelines proposals apply {stored.id}")


@proposals.command("reject")
@click.argument("proposal_id", type=int)
@click.option("--by", required=True, help="Who rejects it.")
@click.option("--reason", required=True, help="Why (the customer reads it).")
@_friendly
def proposals_reject(proposal_id: int, by: str, reason: str) -> None:
    """Reject a submitted proposal, with a reason."""
    from report_pipelines.services.commercial import reject_proposal

    stored = reject_proposal(_engine(), proposal_id, by, reason)
    click.echo(f"proposal {stored.id} rejected by {by}: {stored.proposal.transitions[-1].note}")


@proposals.command("list")
def proposals_list() -> None:
    """List proposals: status, customer, total, validity, applied or not."""
    from report_pipelines.services.commercial import list_proposals

    found = list_proposals(_engine())
    if not found:
        click.echo("no proposals yet (report-pipelines proposals create ...)")
        return
    for stored in found:
        p = stored.proposal
        applied = f", applied {_at(stored.applied_at)}" if stored.applied_at else ""
        click.echo(f"{stored.id:>5}  {p.status.value:<9} {str(p.priced.total):>14}  valid until {p.valid_until}"
                   f"{applied}  {_customer_text(stored)}")


@proposals.command("show")
@click.argument("proposal_id", type=int)
@_friendly
def proposals_show(proposal_id: int) -> None:
    """A proposal: lines, totals, pricing explanation, status history, applied or not."""
    from report_pipelines.services.commercial import get_proposal

    stored = get_proposal(_engine(), proposal_id)
    p = stored.proposal
    term = f"{stored.term_days} days" if stored.term_days else "no end"
    click.echo(f"proposal {stored.id}: {p.status.value}, for {_customer_text(stored)}")
    click.echo(f"  valid until {p.valid_until} (inclusive, {p.customer.timezone}); licences: {term}; "
               f"priced on {p.priced.on}" + (f"; requested policy {p.priced.requested_policy}"
                                             if p.priced.requested_policy else ""))
    _echo_pricing(stored)
    click.echo("  history:")
    for t in p.transitions:
        moved = f"{t.from_status.value} -> {t.to_status.value}" if t.from_status else f"-> {t.to_status.value}"
        note = f": {t.note}" if t.note else ""
        click.echo(f"    {_at(t.at)}  {t.action:<8} {moved:<22} by {t.by}{note}")
    if stored.applied_at:
        click.echo(f"  applied at {_at(stored.applied_at)} (client id {stored.client_id})")
    elif p.status.value == "approved":
        click.echo(f"  not applied yet (the approved_proposals_sensor applies it; or: "
                   f"report-pipelines proposals apply {stored.id})")
    else:
        click.echo("  not applied (only an approved proposal is)")


@proposals.command("apply")
@click.argument("proposal_id", type=int)
@_friendly
def proposals_apply(proposal_id: int) -> None:
    """Write an approved proposal's licences now (what the sensor's run does; exactly once)."""
    from report_pipelines.adapters.db.repositories import ClientRepository
    from report_pipelines.services.commercial import apply_proposal

    engine = _engine()
    applied = apply_proposal(engine, proposal_id)
    if applied is None:
        click.echo(f"proposal {proposal_id} already applied: nothing written")
        return
    client = ClientRepository(engine).get(applied.client_id)
    click.echo(f"applied proposal {proposal_id} to client {client.slug} (id {client.id}, "
               f"{'created' if applied.client_created else 'existing'}): {len(applied.licences)} licences")
    for licence in applied.licences:
        until = licence.valid_to.isoformat() if licence.valid_to else "no end"
        click.echo(f"  {licence.product_code} x{licence.quantity} at {licence.unit_price}, discount {licence.discount},"
                   f" {licence.valid_from} to {until}")


# --- trials ---------------------------------------------------------------------------------------
@main.group()
def trials() -> None:
    """Free trial accounts for prospects."""


@trials.command("start")
@click.argument("slug")
@click.option("--name", required=True, help="Display name.")
@click.option("--timezone", required=True, help="IANA time zone of the account.")
@click.option("--days", required=True, help="Length of the trial in days (1-90, today included).")
@click.option("--product", "product_codes", multiple=True, help="Products on trial (repeatable) [default: REPORTS].")
@_friendly
def trials_start(slug: str, name: str, timezone: str, days: str, product_codes: tuple[str, ...]) -> None:
    """Create a client with free trial licences for a number of days."""
    from report_pipelines.domain.commercial import REPORTS_PRODUCT
    from report_pipelines.services.commercial import licences_of, start_trial

    engine = _engine()
    record = start_trial(engine, slug, name, timezone, _whole(days, "--days"),
                         products=product_codes or (REPORTS_PRODUCT,))
    held = licences_of(engine, record.id)
    codes = ", ".join(lic.product_code for lic in held)
    click.echo(f"trial account {record.slug} (id {record.id}, {record.timezone}): {codes} free from "
               f"{held[0].valid_from} to {held[0].valid_to} inclusive")


# --- clients licences -----------------------------------------------------------------------------
@clients.command("licences")
@click.argument("slug")
@_friendly
def clients_licences(slug: str) -> None:
    """A client's licences, and whether the pipelines serve it."""
    import datetime as dt

    from report_pipelines.domain.commercial import REPORTS_PRODUCT
    from report_pipelines.domain.errors import NotFound
    from report_pipelines.domain.timezones import local_date_of, parse_zone
    from report_pipelines.services.clients import get_client
    from report_pipelines.services.commercial import licence_state, licences_of

    engine = _engine()
    try:
        record = get_client(engine, slug)
    except NotFound:
        raise NotFound("client", f"no client {slug!r} (see: report-pipelines clients list)") from None
    now = dt.datetime.now(dt.timezone.utc)
    today = local_date_of(now, parse_zone(record.timezone))
    held = licences_of(engine, record.id)
    click.echo(f"licences of {record.slug} (id {record.id}, {record.timezone}, today {today}):")
    if not held:
        click.echo("  none")
    for licence in held:
        click.echo(f"  {_licence_text(licence, today)}")
    state = licence_state(engine, record.id, now)
    click.echo({
        "served": f"served by the pipelines: yes (an active {REPORTS_PRODUCT} licence)",
        "ended": f"served by the pipelines: no, its {REPORTS_PRODUCT} licence ended (cached days stay readable, "
                 "nothing new is computed or sent)",
        "never": f"served by the pipelines: no, it never held a {REPORTS_PRODUCT} licence",
    }[state])


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
