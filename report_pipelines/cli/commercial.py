"""`products`, `policies`, `proposals`, `trials` and `clients licences`."""

from __future__ import annotations

import click

from report_pipelines.cli.base import _app, main
from report_pipelines.cli.clients import clients


# --- commercial: shared parsing and printing -------------------------------------------------------
def _day(value: str | None, option: str):
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


def _amount(value: str, option: str):
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


def _at(instant) -> str:
    return f"{instant:%Y-%m-%d %H:%M} UTC"


def _customer_text(stored) -> str:
    proposal = stored.proposal
    if proposal.client_slug is not None:
        return f"client {proposal.client_slug} ({proposal.customer.timezone})"
    prospect = proposal.prospect
    account = f"account {stored.prospect_slug}" + (f", client id {stored.client_id}" if stored.client_id else "")
    return f"prospect {prospect.name} <{prospect.email}> ({account}, {prospect.timezone})"


def _echo_pricing(stored) -> None:
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


def _licence_text(licence, today) -> str:
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
def products_add(code: str, name: str, unit: str, price: str, currency: str) -> None:
    """Add a product (codes: upper-case letters, digits, '_' and '-', e.g. REPORTS)."""
    from report_pipelines.services.commercial import add_product

    app = _app()
    product = add_product(app.engine, code, name, unit, _amount(price, "--price"), currency, now=app.now())
    click.echo(f"added product {product.code}: {product.name}, {product.list_price} per {product.unit.value}")


@products.command("list")
def products_list() -> None:
    """List the catalogue."""
    from report_pipelines.services.commercial import catalogue

    found = list(catalogue(_app().engine).products.values())
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
def policies_add(code: str, name: str, kind: str, value: str, currency, product_codes: str, valid_from: str,
                 valid_to, min_quantity, max_uses, max_uses_per_client, stackable: bool,
                 created_by: str) -> None:
    """Add a policy."""
    from report_pipelines.domain.errors import InvalidInput
    from report_pipelines.services.commercial import add_policy

    if currency and kind == "percentage":
        raise InvalidInput("--currency", "only an amount policy has a currency (a percentage applies to any)")
    policy = add_policy(
        _app().engine, code=code, name=name, kind=kind, value=_amount(value, "--value"), currency=currency,
        products=[c.strip() for c in product_codes.split(",") if c.strip()], valid_from=_day(valid_from, "--from"),
        valid_to=_day(valid_to, "--to"), min_quantity=_whole(min_quantity, "--min-quantity"),
        max_uses=_whole(max_uses, "--max-uses"), max_uses_per_client=_whole(max_uses_per_client, "--max-uses-per-client"),
        stackable=stackable, created_by=created_by, now=_app().now())
    click.echo(f"added policy {policy.code}: {policy.name}, {policy.describe()}, "
               f"{policy.valid_from} to {policy.valid_to or 'no end'}")


@policies.command("list")
def policies_list() -> None:
    """List policies with their uses so far (approved proposals)."""
    from report_pipelines.services.commercial import policies as all_policies
    from report_pipelines.services.commercial import usage_summary

    engine = _app().engine
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
def proposals_create(client, prospect_name, prospect_email, timezone, slug, items: tuple[str, ...], policy,
                     valid_until: str, term_days, by: str) -> None:
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
        _app().engine, items=parsed_items, valid_until=_day(valid_until, "--valid-until"), by=by, client=client,
        prospect=None if client is not None else (prospect_name, prospect_email, timezone, slug), policy=policy,
        term_days=_whole(term_days, "--term-days"), now=_app().now())
    term = f"{stored.term_days} days" if stored.term_days else "no end"
    click.echo(f"created proposal {stored.id} (draft) for {_customer_text(stored)}, "
               f"valid until {stored.proposal.valid_until}, licences: {term}")
    _echo_pricing(stored)


@proposals.command("revise")
@click.argument("proposal_id", type=int)
@click.option("--item", "items", multiple=True, help="CODE=QTY: the new lines, replacing all of them (repeatable).")
@click.option("--policy", default=None, help="Use this policy for the new pricing.")
@click.option("--valid-until", default=None, help="New last day it can be approved, YYYY-MM-DD.")
@click.option("--term-days", default=None, help="New length of the licences in days.")
@click.option("--note", default=None, help="Why (kept in its history).")
@click.option("--by", required=True, help="Who revises it.")
def proposals_revise(proposal_id: int, items: tuple[str, ...], policy, valid_until, term_days, note,
                     by: str) -> None:
    """Change a draft: its lines (priced again today), validity or term; only a draft can be revised."""
    from report_pipelines.services.commercial import revise_proposal

    stored = revise_proposal(_app().engine, proposal_id, by=by, items=_items(items) if items else None, policy=policy,
                             valid_until=_day(valid_until, "--valid-until"), term_days=_whole(term_days, "--term-days"),
                             note=note, now=_app().now())
    click.echo(f"proposal {stored.id} revised by {by}: total {stored.proposal.priced.total}")
    _echo_pricing(stored)


@proposals.command("submit")
@click.argument("proposal_id", type=int)
@click.option("--by", required=True, help="Who submits it.")
def proposals_submit(proposal_id: int, by: str) -> None:
    """Submit a draft for approval."""
    from report_pipelines.services.commercial import submit_proposal

    stored = submit_proposal(_app().engine, proposal_id, by, _app().now())
    click.echo(f"proposal {stored.id} submitted by {by} (total {stored.proposal.priced.total})")


@proposals.command("approve")
@click.argument("proposal_id", type=int)
@click.option("--by", required=True, help="Who approves it.")
def proposals_approve(proposal_id: int, by: str) -> None:
    """Approve a submitted proposal (its policies' use limits are checked again)."""
    from report_pipelines.services.commercial import approve_proposal

    stored = approve_proposal(_app().engine, proposal_id, by, _app().now())
    click.echo(f"proposal {stored.id} approved by {by} (total {stored.proposal.priced.total})")
    click.echo(f"  its licences are written by the approved_proposals_sensor, or now: "
               f"report-pipelines proposals apply {stored.id}")


@proposals.command("reject")
@click.argument("proposal_id", type=int)
@click.option("--by", required=True, help="Who rejects it.")
@click.option("--reason", required=True, help="Why (the customer reads it).")
def proposals_reject(proposal_id: int, by: str, reason: str) -> None:
    """Reject a submitted proposal, with a reason."""
    from report_pipelines.services.commercial import reject_proposal

    stored = reject_proposal(_app().engine, proposal_id, by, reason, _app().now())
    click.echo(f"proposal {stored.id} rejected by {by}: {stored.proposal.transitions[-1].note}")


@proposals.command("list")
def proposals_list() -> None:
    """List proposals: status, customer, total, validity, applied or not."""
    from report_pipelines.services.commercial import list_proposals

    found = list_proposals(_app().engine)
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
def proposals_show(proposal_id: int) -> None:
    """A proposal: lines, totals, pricing explanation, status history, applied or not."""
    from report_pipelines.services.commercial import get_proposal

    stored = get_proposal(_app().engine, proposal_id)
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
def proposals_apply(proposal_id: int) -> None:
    """Write an approved proposal's licences now (what the sensor's run does; exactly once)."""
    from report_pipelines.adapters.db.repositories import ClientRepository
    from report_pipelines.services.commercial import apply_proposal

    engine = _app().engine
    applied = apply_proposal(engine, proposal_id, _app().now())
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
def trials_start(slug: str, name: str, timezone: str, days: str, product_codes: tuple[str, ...]) -> None:
    """Create a client with free trial licences for a number of days."""
    from report_pipelines.domain.commercial import REPORTS_PRODUCT
    from report_pipelines.services.commercial import licences_of, start_trial

    engine = _app().engine
    record = start_trial(engine, slug, name, timezone, _whole(days, "--days"),
                         products=product_codes or (REPORTS_PRODUCT,), now=_app().now())
    held = licences_of(engine, record.id)
    codes = ", ".join(lic.product_code for lic in held)
    click.echo(f"trial account {record.slug} (id {record.id}, {record.timezone}): {codes} free from "
               f"{held[0].valid_from} to {held[0].valid_to} inclusive")


# --- clients licences -----------------------------------------------------------------------------
@clients.command("licences")
@click.argument("slug")
def clients_licences(slug: str) -> None:
    """A client's licences, and whether the pipelines serve it."""
    import datetime as dt

    from report_pipelines.domain.commercial import REPORTS_PRODUCT
    from report_pipelines.services.clients import get_client
    from report_pipelines.services.commercial import licences_of
    from report_pipelines.services.serving import serving_of

    app = _app()
    engine = app.engine
    record = get_client(engine, slug)
    serving = serving_of(engine, record.id, app.now())
    today = serving.today
    held = licences_of(engine, record.id)
    click.echo(f"licences of {record.slug} (id {record.id}, {record.timezone}, today {today}):")
    if not held:
        click.echo("  none")
    for licence in held:
        click.echo(f"  {_licence_text(licence, today)}")
    through = serving.served_through
    click.echo({
        "served": f"served by the pipelines: yes (an active {REPORTS_PRODUCT} licence"
                  + (f", through {through})" if through and through != dt.date.max else ")"),
        "ended": f"served by the pipelines: no, its {REPORTS_PRODUCT} licence ended on {through} (its days up to then "
                 "stay served and readable; no later day is computed or sent)",
        "never": f"served by the pipelines: no, it never held a {REPORTS_PRODUCT} licence",
    }[serving.state])


