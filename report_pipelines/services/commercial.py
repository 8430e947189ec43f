"""Commercial use cases: catalogue, policies, proposals, approval, licences, trials.

The rules (pricing, the proposal state machine, licences) are the pure domain in
:mod:`report_pipelines.domain.commercial`; this module loads what they need, applies them, and
stores the result in one transaction each, so a refused action changes nothing.

Exactly once: approving is a compare-and-set on the proposal's status; applying an approved
proposal (writing the client's products and licences, creating the client if it was a prospect) is a
compare-and-set on ``applied_at`` in the same transaction as the writes, and ``client_products`` has
a unique key on (source proposal, product): any number of sensors or runs can race for it.

A client is *served* by the pipelines while it holds an active licence of the reports product on its
current local date (:func:`served_client_ids`).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from decimal import Decimal

from sqlalchemy import Connection, Engine, func, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from report_pipelines.adapters.db.models import (
    Client,
    ClientProductRow,
    PolicyRow,
    PolicyUseRow,
    ProductRow,
    ProposalItemRow,
    ProposalRow,
    ProposalTransitionRow,
    ReportSchedule,
)
from report_pipelines.adapters.db.repositories import ClientRepository
from report_pipelines.domain.clients import ClientRecord, ClientSpec, validate_slug
from report_pipelines.domain.commercial import (
    REPORTS_PRODUCT,
    Catalogue,
    ClientRef,
    CommercialPolicy,
    Licence,
    Money,
    PolicyKind,
    PolicyUsage,
    PricedLine,
    PricedProposal,
    Product,
    Proposal,
    ProposalStatus,
    Prospect,
    Transition,
    approve,
    expire,
    is_active,
    licences_from_approved,
    new_proposal,
    price_proposal,
    reject,
    submit,
    trial_licences,
)
from report_pipelines.domain.errors import Conflict, InvalidInput, NotFound
from report_pipelines.domain.timezones import UTC, local_date_of, parse_zone


# --- catalogue and policies ---------------------------------------------------------------------------
def _product(row: ProductRow) -> Product:
    return Product(code=row.code, name=row.name, unit=row.unit, list_price=Money(row.list_price, row.currency),
                   active=row.active)


def add_product(engine: Engine, code: str, name: str, unit: str, price: str | Decimal, currency: str) -> Product:
    try:
        amount = Decimal(str(price))
    except ArithmeticError:
        raise InvalidInput("price", f"{price!r} is not a number") from None
    product = Product(code=code, name=name, unit=unit, list_price=Money(amount, currency))
    try:
        with engine.begin() as conn:
            conn.execute(insert(ProductRow).values(
                code=product.code, name=product.name, unit=product.unit.value, list_price=product.list_price.amount,
                currency=product.list_price.currency, active=True, created_at=dt.datetime.now(UTC)))
    except IntegrityError:
        raise Conflict("code", f"a product with code {product.code!r} already exists") from None
    return product


def catalogue(engine: Engine) -> Catalogue:
    with engine.connect() as conn:
        return Catalogue(_product(r) for r in conn.execute(select(ProductRow).order_by(ProductRow.code)))


def _policy(row: PolicyRow) -> CommercialPolicy:
    value = Money(row.value, row.currency) if row.kind == PolicyKind.AMOUNT.value else row.value
    return CommercialPolicy(
        code=row.code, name=row.name, kind=row.kind, value=value, valid_from=row.valid_from, valid_to=row.valid_to,
        created_by=row.created_by, products=frozenset(p for p in row.products.split(",") if p),
        min_quantity=row.min_quantity, max_uses=row.max_uses, max_uses_per_client=row.max_uses_per_client,
        stackable=row.stackable, active=row.active)


def add_policy(engine: Engine, *, code: str, name: str, kind: str, value: str | Decimal, currency: str | None = None,
               products: Iterable[str] = (), valid_from: dt.date, valid_to: dt.date | None = None,
               min_quantity: int | None = None, max_uses: int | None = None, max_uses_per_client: int | None = None,
               stackable: bool = False, created_by: str) -> CommercialPolicy:
    try:
        amount = Decimal(str(value))
    except ArithmeticError:
        raise InvalidInput("value", f"{value!r} is not a number") from None
    if kind == PolicyKind.PERCENTAGE.value and currency:
        raise InvalidInput("currency", "a percentage policy has no currency")
    if kind == PolicyKind.AMOUNT.value and not currency:
        raise InvalidInput("currency", "an amount policy needs the currency of its amount")
    codes = frozenset(products)
    known = catalogue(engine)
    for product_code in codes:
        known.get(product_code)
    policy = CommercialPolicy(
        code=code, name=name, kind=kind, value=Money(amount, currency) if kind == PolicyKind.AMOUNT.value else amount,
        valid_from=valid_from, valid_to=valid_to, created_by=created_by, products=codes, min_quantity=min_quantity,
        max_uses=max_uses, max_uses_per_client=max_uses_per_client, stackable=stackable)
    try:
        with engine.begin() as conn:
            conn.execute(insert(PolicyRow).values(
                code=policy.code, name=policy.name, kind=policy.kind.value, value=amount,
                currency=currency if policy.kind is PolicyKind.AMOUNT else None, products=",".join(sorted(codes)),
                valid_from=valid_from, valid_to=valid_to, min_quantity=min_quantity, max_uses=max_uses,
                max_uses_per_client=max_uses_per_client, stackable=stackable, active=True,
                created_by=policy.created_by, created_at=dt.datetime.now(UTC)))
    except IntegrityError:
        raise Conflict("code", f"a policy with code {policy.code!r} already exists") from None
    return policy


def policies(engine: Engine) -> list[CommercialPolicy]:
    with engine.connect() as conn:
        return [_policy(r) for r in conn.execute(select(PolicyRow).order_by(PolicyRow.code))]


def _usage(conn: Connection, client_key: str) -> dict[str, PolicyUsage]:
    totals = dict(conn.execute(select(PolicyUseRow.policy_code, func.count()).group_by(PolicyUseRow.policy_code)).all())
    mine = dict(conn.execute(select(PolicyUseRow.policy_code, func.count())
                             .where(PolicyUseRow.client_key == client_key).group_by(PolicyUseRow.policy_code)).all())
    return {code: PolicyUsage(total=int(n), by_client={client_key: int(mine.get(code, 0))}) for code, n in totals.items()}


# --- proposals ----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class StoredProposal:
    """A proposal as stored: the domain object plus what only the database knows."""

    proposal: Proposal
    client_id: int | None
    prospect_slug: str | None
    term_days: int | None
    applied_at: dt.datetime | None

    @property
    def id(self) -> int:
        assert self.proposal.id is not None
        return self.proposal.id


def _load(conn: Connection, proposal_id: int, products: Catalogue) -> StoredProposal:
    row = conn.execute(select(ProposalRow).where(ProposalRow.id == proposal_id)).first()
    if row is None:
        raise NotFound("proposal", f"no proposal with id {proposal_id}")
    if row.client_id is not None:
        slug = conn.execute(select(Client.slug).where(Client.id == row.client_id)).scalar_one()
        customer: ClientRef | Prospect = ClientRef(slug, row.timezone)
    else:
        customer = Prospect(row.prospect_name, row.prospect_email, row.timezone)
    lines = []
    for item in conn.execute(select(ProposalItemRow).where(ProposalItemRow.proposal_id == proposal_id)
                             .order_by(ProposalItemRow.id)):
        product = products.get(item.product_code)
        money = lambda amount: Money(amount, row.currency)  # noqa: E731
        lines.append(PricedLine(product=product, quantity=item.quantity, unit_price=money(item.unit_price),
                                list_total=money(item.list_total), discount=money(item.discount),
                                line_total=money(item.line_total),
                                applied=tuple(c for c in item.applied.split(",") if c), explanation=item.explanation))
    priced = PricedProposal(
        on=row.priced_on, client_key=customer.key, currency=row.currency, lines=tuple(lines),
        applied=tuple(c for c in row.applied_policies.split(",") if c), requested_policy=row.requested_policy,
        outcomes=(), subtotal=Money(row.subtotal, row.currency), discount=Money(row.discount, row.currency),
        total=Money(row.total, row.currency), explanation=row.explanation)
    transitions = tuple(
        Transition(action=t.action, from_status=ProposalStatus(t.from_status) if t.from_status else None,
                   to_status=ProposalStatus(t.to_status), by=t.by, at=t.at, note=t.note)
        for t in conn.execute(select(ProposalTransitionRow).where(ProposalTransitionRow.proposal_id == proposal_id)
                              .order_by(ProposalTransitionRow.id)))
    proposal = Proposal(id=row.id, customer=customer, priced=priced, status=ProposalStatus(row.status),
                        valid_until=row.valid_until, transitions=transitions)
    return StoredProposal(proposal, row.client_id, row.prospect_slug, row.term_days, row.applied_at)


def get_proposal(engine: Engine, proposal_id: int) -> StoredProposal:
    products = catalogue(engine)
    with engine.connect() as conn:
        return _load(conn, proposal_id, products)


def list_proposals(engine: Engine) -> list[StoredProposal]:
    products = catalogue(engine)
    with engine.connect() as conn:
        ids = list(conn.scalars(select(ProposalRow.id).order_by(ProposalRow.id)))
        return [_load(conn, i, products) for i in ids]


def _record_transitions(conn: Connection, proposal_id: int, transitions: Sequence[Transition]) -> None:
    for t in transitions:
        conn.execute(insert(ProposalTransitionRow).values(
            proposal_id=proposal_id, action=t.action, from_status=t.from_status.value if t.from_status else None,
            to_status=t.to_status.value, by=t.by, at=t.at, note=t.note))


def create_proposal(engine: Engine, *, items: Sequence[tuple[str, int]], valid_until: dt.date, by: str,
                    client: str | None = None, prospect: tuple[str, str, str, str] | None = None,
                    policy: str | None = None, term_days: int | None = None,
                    now: dt.datetime | None = None) -> StoredProposal:
    """A priced draft for a client (slug) or a prospect ``(name, email, timezone, slug for the account)``."""
    now = now or dt.datetime.now(UTC)
    if (client is None) == (prospect is None):
        raise InvalidInput("client", "give either a client or a prospect")
    client_id = None
    prospect_slug = None
    if client is not None:
        try:
            record = ClientRepository(engine).get_by_slug(client)
        except NotFound:
            raise NotFound("client", f"no client {client!r}") from None
        customer: ClientRef | Prospect = ClientRef(record.slug, record.timezone)
        client_id = record.id
    else:
        name, email, timezone, prospect_slug = prospect  # type: ignore[misc]
        customer = Prospect(name, email, timezone)
        validate_slug(prospect_slug, "slug")
        try:
            ClientRepository(engine).get_by_slug(prospect_slug)
        except NotFound:
            pass
        else:
            raise Conflict("slug", f"{prospect_slug!r} is already a client (a trial account?): make the proposal "
                                   "for that client with --client, or choose another slug for the prospect")
    if term_days is not None and term_days < 1:
        raise InvalidInput("term_days", "must be at least 1 day")
    products = catalogue(engine)
    priced_items = products.items(items)
    with engine.begin() as conn:
        usage = _usage(conn, customer.key)
        today = local_date_of(now, parse_zone(customer.timezone))
        priced = price_proposal(priced_items, policies(engine), today, customer.key, usage, requested_policy=policy)
        proposal = new_proposal(customer, priced, valid_until=valid_until, by=by, at=now)
        proposal_id = conn.execute(insert(ProposalRow).values(
            client_id=client_id, prospect_name=getattr(customer, "name", None),
            prospect_email=getattr(customer, "email", None), prospect_slug=prospect_slug,
            timezone=customer.timezone, status=proposal.status.value, valid_until=valid_until, term_days=term_days,
            requested_policy=policy, applied_policies=",".join(priced.applied), currency=priced.currency,
            subtotal=priced.subtotal.amount, discount=priced.discount.amount, total=priced.total.amount,
            priced_on=priced.on, explanation=priced.explanation, created_at=now, updated_at=now,
        ).returning(ProposalRow.id)).scalar_one()
        for line in priced.lines:
            conn.execute(insert(ProposalItemRow).values(
                proposal_id=proposal_id, product_code=line.product.code, quantity=line.quantity,
                unit_price=line.unit_price.amount, list_total=line.list_total.amount, discount=line.discount.amount,
                line_total=line.line_total.amount, applied=",".join(line.applied), explanation=line.explanation))
        _record_transitions(conn, proposal_id, proposal.transitions)
    return get_proposal(engine, proposal_id)


def _transition(engine: Engine, proposal_id: int, action, extra=None) -> StoredProposal:  # noqa: ANN001
    """Apply a domain transition and store it with a compare-and-set on the status (all or nothing).

    Two transitions of one proposal at once (a double click, two operators): on PostgreSQL the row
    lock makes the second wait and then load the new status (refused by the domain, naming
    ``status``); everywhere the compare-and-set comes before ``extra`` (policy uses), so a loser is
    refused by it rather than by the policy-use unique key.
    """
    products = catalogue(engine)
    with engine.begin() as conn:
        conn.execute(select(ProposalRow.id).where(ProposalRow.id == proposal_id).with_for_update())
        stored = _load(conn, proposal_id, products)
        moved = action(stored.proposal)
        changed = conn.execute(update(ProposalRow).where(
            ProposalRow.id == proposal_id, ProposalRow.status == stored.proposal.status.value,
        ).values(status=moved.status.value, updated_at=moved.transitions[-1].at)).rowcount
        if changed != 1:
            raise Conflict("status", f"proposal {proposal_id} changed meanwhile; look at it again")
        if extra is not None:
            extra(conn, stored, moved)
        _record_transitions(conn, proposal_id, moved.transitions[len(stored.proposal.transitions):])
    return get_proposal(engine, proposal_id)


def submit_proposal(engine: Engine, proposal_id: int, by: str, now: dt.datetime | None = None) -> StoredProposal:
    return _transition(engine, proposal_id, lambda p: submit(p, by, now or dt.datetime.now(UTC)))


def reject_proposal(engine: Engine, proposal_id: int, by: str, reason: str,
                    now: dt.datetime | None = None) -> StoredProposal:
    return _transition(engine, proposal_id, lambda p: reject(p, by, now or dt.datetime.now(UTC), reason))


def approve_proposal(engine: Engine, proposal_id: int, by: str, now: dt.datetime | None = None) -> StoredProposal:
    """Approve a submitted proposal; its policies' use limits are checked again and their uses recorded.

    A refusal (wrong status, expired, a policy used up meanwhile) raises and changes nothing.
    """
    now = now or dt.datetime.now(UTC)

    def check_and_record_uses(conn: Connection, stored: StoredProposal, moved: Proposal) -> None:
        key = stored.proposal.client_key
        if conn.dialect.name == "postgresql" and stored.proposal.priced.applied:
            conn.execute(select(PolicyRow.code).where(PolicyRow.code.in_(stored.proposal.priced.applied))
                         .with_for_update())  # serialise approvals that use the same policies
        usage = _usage(conn, key)
        rows = {r.code: r for r in conn.execute(select(PolicyRow).where(
            PolicyRow.code.in_(stored.proposal.priced.applied)))}
        for code in stored.proposal.priced.applied:
            row, used = rows[code], usage.get(code, PolicyUsage())
            if row.max_uses is not None and used.total >= row.max_uses:
                raise InvalidInput("policy", f"{code} has been used {used.total} time(s), its limit is {row.max_uses}")
            mine = used.by_client.get(key, 0)
            if row.max_uses_per_client is not None and mine >= row.max_uses_per_client:
                raise InvalidInput("policy", f"{code} has been used {mine} time(s) by this client, "
                                             f"its limit is {row.max_uses_per_client}")
            conn.execute(insert(PolicyUseRow).values(policy_code=code, proposal_id=stored.id, client_key=key,
                                                     used_at=now))

    return _transition(engine, proposal_id, lambda p: approve(p, by, now), check_and_record_uses)


def expire_proposals(engine: Engine, now: dt.datetime | None = None) -> list[int]:
    """Mark draft and submitted proposals past their validity date (in the customer's zone) expired."""
    now = now or dt.datetime.now(UTC)
    with engine.connect() as conn:
        candidates = list(conn.scalars(select(ProposalRow.id).where(ProposalRow.status.in_(("draft", "submitted")))))
    expired = []
    for proposal_id in candidates:
        stored = get_proposal(engine, proposal_id)
        if stored.proposal.is_past_validity(now):
            try:
                _transition(engine, proposal_id, lambda p: expire(p, now))
                expired.append(proposal_id)
            except Conflict:
                continue  # approved or rejected at the same moment
    return expired


# --- applying approved proposals: the client's products and licences ----------------------------------
def proposals_to_apply(engine: Engine, limit: int = 1000) -> list[int]:
    with engine.connect() as conn:
        return list(conn.scalars(select(ProposalRow.id).where(
            ProposalRow.status == "approved", ProposalRow.applied_at.is_(None)).order_by(ProposalRow.id).limit(limit)))


@dataclass(frozen=True)
class Application:
    proposal_id: int
    client_id: int
    client_created: bool
    licences: tuple[Licence, ...]


def apply_proposal(engine: Engine, proposal_id: int, now: dt.datetime | None = None) -> Application | None:
    """Write an approved proposal's products and licences, once; ``None`` if already applied.

    One transaction: claim (``applied_at`` from empty to now), create the client if it was a prospect,
    write ``client_products``. Whoever loses the claim writes nothing. A prospect's slug taken by
    another client meanwhile is refused (``Conflict`` naming ``slug``) and nothing is written: never
    another tenant's account.
    """
    now = now or dt.datetime.now(UTC)
    products = catalogue(engine)
    with engine.begin() as conn:
        stored = _load(conn, proposal_id, products)
        if stored.proposal.status is not ProposalStatus.APPROVED:
            raise InvalidInput("status", f"proposal {proposal_id} is {stored.proposal.status.value}, not approved")
        claimed = conn.execute(update(ProposalRow).where(
            ProposalRow.id == proposal_id, ProposalRow.status == "approved", ProposalRow.applied_at.is_(None),
        ).values(applied_at=now)).rowcount
        if claimed != 1:
            return None
        created = False
        client_id = stored.client_id
        if client_id is None:
            prospect = stored.proposal.prospect
            assert prospect is not None and stored.prospect_slug is not None
            # A prospect's account is always new: an existing client with that slug is another tenant
            # (a trial account is a client: its proposal is made for --client, not as a prospect).
            if conn.execute(select(Client.id).where(Client.slug == stored.prospect_slug)).scalar() is not None:
                raise Conflict("slug", f"a client {stored.prospect_slug!r} already exists: proposal {proposal_id} "
                                       "cannot create it; make the proposal for that client, or give the prospect "
                                       "another slug")
            spec = ClientSpec.parse(stored.prospect_slug, prospect.name, prospect.timezone)
            client_id = conn.execute(insert(Client).values(
                slug=spec.slug, name=spec.name, timezone=spec.timezone,
                active_from=local_date_of(now, parse_zone(spec.timezone)), created_at=now, updated_at=now,
            ).returning(Client.id)).scalar_one()
            created = True
            conn.execute(update(ProposalRow).where(ProposalRow.id == proposal_id).values(client_id=client_id))
        approved_at = stored.proposal.last("approve").at
        licences = licences_from_approved(stored.proposal, stored.proposal.local_date(approved_at), stored.term_days)
        _insert_licences(conn, client_id, licences, source_proposal=proposal_id, note=None, now=now)
    return Application(proposal_id, client_id, created, tuple(licences))


def start_trial(engine: Engine, slug: str, name: str, timezone: str, days: int, *,
                products: Sequence[str] = (REPORTS_PRODUCT,), now: dt.datetime | None = None) -> ClientRecord:
    """A temporary account for a prospect: a client with free trial licences for ``days`` days."""
    now = now or dt.datetime.now(UTC)
    spec = ClientSpec.parse(slug, name, timezone)
    known = catalogue(engine)
    wanted = [known.get(code) for code in products]
    start = local_date_of(now, parse_zone(spec.timezone))
    licences = trial_licences(wanted, start, days)
    record = ClientRepository(engine).add(spec)
    grant(engine, record.id, licences, note=f"trial of {days} days", now=now)
    return record


def grant(engine: Engine, client_id: int, licences: Sequence[Licence], note: str,
          now: dt.datetime | None = None) -> None:
    """Write licences that come from no proposal (trials, the demo's clients)."""
    with engine.begin() as conn:
        _insert_licences(conn, client_id, licences, source_proposal=None, note=note, now=now or dt.datetime.now(UTC))


def _insert_licences(conn: Connection, client_id: int, licences: Sequence[Licence], *, source_proposal: int | None,
                     note: str | None, now: dt.datetime) -> None:
    for licence in licences:
        conn.execute(insert(ClientProductRow).values(
            client_id=client_id, product_code=licence.product_code, quantity=licence.quantity,
            unit_price=licence.unit_price.amount, discount=licence.discount.amount,
            currency=licence.unit_price.currency, valid_from=licence.valid_from, valid_to=licence.valid_to,
            trial=licence.trial, source_proposal=source_proposal, note=note, created_at=now))


def _licence(row: ClientProductRow) -> Licence:
    return Licence(product_code=row.product_code, quantity=row.quantity,
                   unit_price=Money(row.unit_price, row.currency), discount=Money(row.discount, row.currency),
                   valid_from=row.valid_from, valid_to=row.valid_to, trial=row.trial,
                   source_proposal=row.source_proposal)


def licences_of(engine: Engine, client_id: int) -> list[Licence]:
    with Session(engine) as session:
        rows = session.scalars(select(ClientProductRow).where(ClientProductRow.client_id == client_id)
                               .order_by(ClientProductRow.valid_from, ClientProductRow.id))
        return [_licence(r) for r in rows]


# --- who the pipelines serve --------------------------------------------------------------------------
def reports_licences(engine: Engine) -> dict[int, tuple[str, list[Licence]]]:
    """Every client that ever held a reports licence: its zone and those licences."""
    with Session(engine) as session:
        rows = session.execute(select(ClientProductRow, Client.timezone).join(Client, Client.id == ClientProductRow.client_id)
                               .where(ClientProductRow.product_code == REPORTS_PRODUCT)).all()
    found: dict[int, tuple[str, list[Licence]]] = {}
    for product, zone in rows:
        found.setdefault(product.client_id, (zone, []))[1].append(_licence(product))
    return found


def served_client_ids(engine: Engine, now: dt.datetime | None = None) -> set[int]:
    """Clients with an active reports licence on their own current local date."""
    now = now or dt.datetime.now(UTC)
    return {client_id for client_id, (zone, held) in reports_licences(engine).items()
            if any(is_active(licence, local_date_of(now, parse_zone(zone))) for licence in held)}


def licence_state(engine: Engine, client_id: int, now: dt.datetime | None = None) -> str:
    """``served``, ``ended`` (held a reports licence once; its data stays readable) or ``never``."""
    held = reports_licences(engine).get(client_id)
    if held is None:
        return "never"
    zone, licences = held
    today = local_date_of(now or dt.datetime.now(UTC), parse_zone(zone))
    return "served" if any(is_active(lic, today) for lic in licences) else "ended"


def stop_unserved_work(engine: Engine, now: dt.datetime | None = None) -> list[int]:
    """Pause the active schedules of clients whose reports licence has ended, with the reason."""
    now = now or dt.datetime.now(UTC)
    served = served_client_ids(engine, now)
    with engine.begin() as conn:
        victims = list(conn.scalars(select(ReportSchedule.id).where(ReportSchedule.active.is_(True))
                                    .where(ReportSchedule.client_id.not_in(served) if served else True)))
        if victims:
            conn.execute(update(ReportSchedule).where(ReportSchedule.id.in_(victims)).values(
                active=False, paused_reason=f"the client's reports licence ended (checked {now:%Y-%m-%d %H:%M} UTC)",
                updated_at=now, revision=ReportSchedule.revision + 1))
    return victims


def licensed_zones(engine: Engine, now: dt.datetime | None = None) -> list[str]:
    served = served_client_ids(engine, now)
    return sorted({c.timezone for c in ClientRepository(engine).list() if c.id in served})


def usage_summary(engine: Engine) -> dict[str, int]:
    with engine.connect() as conn:
        return {code: int(n) for code, n in conn.execute(
            select(PolicyUseRow.policy_code, func.count()).group_by(PolicyUseRow.policy_code))}

