"""Commercial use cases: catalogue, policies, proposals, approval, licences, trials.

The rules (pricing, the proposal state machine, licences, who is served) are the pure domain in
:mod:`report_pipelines.domain.commercial`; the statements are the repository's
(:mod:`report_pipelines.adapters.db.commercial`). Each use case here loads what the rules need,
applies them, and stores the result inside one :class:`UnitOfWork`, so a refused action changes
nothing.

Exactly once: approving is a compare-and-set on the proposal's status; applying an approved
proposal (writing the client's products and licences, creating the client if it was a prospect) is a
compare-and-set on ``applied_at`` in the same transaction as the writes, and ``client_products`` has
a unique key on (source proposal, product): any number of sensors or runs can race for it.

Who the pipelines serve is :mod:`report_pipelines.services.serving` (one rule for every caller).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from decimal import Decimal

from sqlalchemy import Engine

from report_pipelines.adapters.db.commercial import StoredProposal, UnitOfWork
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
    Product,
    Proposal,
    ProposalStatus,
    Prospect,
    approve,
    expire,
    licences_from_approved,
    new_proposal,
    price_proposal,
    reject,
    revise,
    submit,
    trial_licences,
)
from report_pipelines.domain.errors import Conflict, InvalidInput, NotFound
from report_pipelines.domain.timezones import local_date_of, parse_zone

__all__ = [
    "StoredProposal", "add_policy", "add_product", "apply_proposal", "approve_proposal", "catalogue",
    "create_proposal", "expire_proposals", "get_proposal", "grant", "licences_of", "list_proposals", "policies",
    "proposals_to_apply", "reject_proposal", "revise_proposal", "start_trial", "submit_proposal", "usage_summary",
]


# --- catalogue and policies ---------------------------------------------------------------------------
def add_product(engine: Engine, code: str, name: str, unit: str, price: str | Decimal, currency: str,
                now: dt.datetime) -> Product:
    try:
        amount = Decimal(str(price))
    except ArithmeticError:
        raise InvalidInput("price", f"{price!r} is not a number") from None
    product = Product(code=code, name=name, unit=unit, list_price=Money(amount, currency))
    with UnitOfWork(engine) as uow:
        uow.commercial.add_product(product, now)
    return product


def catalogue(engine: Engine) -> Catalogue:
    with UnitOfWork(engine) as uow:
        return uow.commercial.catalogue()


def add_policy(engine: Engine, *, code: str, name: str, kind: str, value: str | Decimal, currency: str | None = None,
               products: Iterable[str] = (), valid_from: dt.date, valid_to: dt.date | None = None,
               min_quantity: int | None = None, max_uses: int | None = None, max_uses_per_client: int | None = None,
               stackable: bool = False, created_by: str, now: dt.datetime) -> CommercialPolicy:
    try:
        amount = Decimal(str(value))
    except ArithmeticError:
        raise InvalidInput("value", f"{value!r} is not a number") from None
    if kind == PolicyKind.PERCENTAGE.value and currency:
        raise InvalidInput("currency", "a percentage policy has no currency")
    if kind == PolicyKind.AMOUNT.value and not currency:
        raise InvalidInput("currency", "an amount policy needs the currency of its amount")
    codes = frozenset(products)
    with UnitOfWork(engine) as uow:
        known = uow.commercial.catalogue()
        for product_code in codes:
            known.get(product_code)
        policy = CommercialPolicy(
            code=code, name=name, kind=kind, value=Money(amount, currency) if kind == PolicyKind.AMOUNT.value else amount,
            valid_from=valid_from, valid_to=valid_to, created_by=created_by, products=codes, min_quantity=min_quantity,
            max_uses=max_uses, max_uses_per_client=max_uses_per_client, stackable=stackable)
        uow.commercial.add_policy(policy, amount, currency, now)
    return policy


def policies(engine: Engine) -> list[CommercialPolicy]:
    with UnitOfWork(engine) as uow:
        return uow.commercial.policies()


def usage_summary(engine: Engine) -> dict[str, int]:
    with UnitOfWork(engine) as uow:
        return uow.commercial.usage_summary()


# --- proposals ----------------------------------------------------------------------------------------
def get_proposal(engine: Engine, proposal_id: int) -> StoredProposal:
    with UnitOfWork(engine) as uow:
        return uow.commercial.load_proposal(proposal_id, uow.commercial.catalogue())


def list_proposals(engine: Engine) -> list[StoredProposal]:
    with UnitOfWork(engine) as uow:
        products = uow.commercial.catalogue()
        return [uow.commercial.load_proposal(i, products) for i in uow.commercial.proposal_ids()]


def _customer(engine: Engine, client: str | None,
              prospect: tuple[str, str, str, str] | None) -> tuple[ClientRef | Prospect, int | None, str | None]:
    if (client is None) == (prospect is None):
        raise InvalidInput("client", "give either a client or a prospect")
    if client is not None:
        try:
            record = ClientRepository(engine).get_by_slug(client)
        except NotFound:
            raise NotFound("client", f"no client {client!r}") from None
        return ClientRef(record.slug, record.timezone), record.id, None
    name, email, timezone, prospect_slug = prospect  # type: ignore[misc]
    customer = Prospect(name, email, timezone)
    validate_slug(prospect_slug, "slug")
    try:
        ClientRepository(engine).get_by_slug(prospect_slug)
    except NotFound:
        return customer, None, prospect_slug
    raise Conflict("slug", f"{prospect_slug!r} is already a client (a trial account?): make the proposal "
                           "for that client with --client, or choose another slug for the prospect")


def create_proposal(engine: Engine, *, items: Sequence[tuple[str, int]], valid_until: dt.date, by: str,
                    client: str | None = None, prospect: tuple[str, str, str, str] | None = None,
                    policy: str | None = None, term_days: int | None = None,
                    now: dt.datetime) -> StoredProposal:
    """A priced draft for a client (slug) or a prospect ``(name, email, timezone, slug for the account)``."""
    customer, client_id, prospect_slug = _customer(engine, client, prospect)
    if term_days is not None and term_days < 1:
        raise InvalidInput("term_days", "must be at least 1 day")
    with UnitOfWork(engine) as uow:
        repo = uow.commercial
        priced_items = repo.catalogue().items(items)
        today = local_date_of(now, parse_zone(customer.timezone))
        priced = price_proposal(priced_items, repo.policies(), today, customer.key, repo.usage(customer.key),
                                requested_policy=policy)
        proposal = new_proposal(customer, priced, valid_until=valid_until, by=by, at=now)
        proposal_id = repo.insert_proposal(proposal, client_id=client_id, prospect_slug=prospect_slug,
                                           term_days=term_days, requested_policy=policy, now=now)
    return get_proposal(engine, proposal_id)


def _transition(engine: Engine, proposal_id: int, action, extra=None) -> StoredProposal:
    """Apply a domain transition and store it with a compare-and-set on the status (all or nothing).

    Two transitions of one proposal at once (a double click, two operators): on PostgreSQL the row
    lock makes the second wait and then load the new status (refused by the domain, naming
    ``status``); everywhere the compare-and-set comes before ``extra`` (policy uses, new lines), so a
    loser is refused by it rather than by a unique key.
    """
    with UnitOfWork(engine) as uow:
        repo = uow.commercial
        repo.lock_proposal(proposal_id)
        products = repo.catalogue()
        stored = repo.load_proposal(proposal_id, products)
        moved = action(stored.proposal, uow)
        if not repo.compare_and_set_status(proposal_id, stored.proposal.status, moved.status,
                                           moved.transitions[-1].at):
            raise Conflict("status", f"proposal {proposal_id} changed meanwhile; look at it again")
        if extra is not None:
            extra(uow, stored, moved)
        repo.record_transitions(proposal_id, moved.transitions[len(stored.proposal.transitions):])
    return get_proposal(engine, proposal_id)


def submit_proposal(engine: Engine, proposal_id: int, by: str, now: dt.datetime) -> StoredProposal:
    return _transition(engine, proposal_id, lambda p, _: submit(p, by, now))


def reject_proposal(engine: Engine, proposal_id: int, by: str, reason: str,
                    now: dt.datetime) -> StoredProposal:
    return _transition(engine, proposal_id, lambda p, _: reject(p, by, now, reason))


def revise_proposal(engine: Engine, proposal_id: int, *, by: str, items: Sequence[tuple[str, int]] | None = None,
                    policy: str | None = None, valid_until: dt.date | None = None, term_days: int | None = None,
                    note: str | None = None, now: dt.datetime) -> StoredProposal:
    """Change a draft: its items (priced again today, with ``policy`` if given), validity or term.

    Only a draft can be revised (the domain refuses others, naming ``status``); the new pricing
    replaces the old lines in the same transaction as the status check.
    """
    if term_days is not None and term_days < 1:
        raise InvalidInput("term_days", "must be at least 1 day")
    kept: dict[str, object] = {}

    def action(proposal: Proposal, uow: UnitOfWork) -> Proposal:
        repo = uow.commercial
        wanted = items if items is not None else [(line.product.code, line.quantity) for line in proposal.priced.lines]
        requested = policy if policy is not None else proposal.priced.requested_policy
        today = proposal.local_date(now)
        priced = price_proposal(repo.catalogue().items(wanted), repo.policies(), today, proposal.client_key,
                                repo.usage(proposal.client_key), requested_policy=requested)
        kept["requested"] = requested
        return revise(proposal, priced, by, now, valid_until=valid_until, note=note)

    def store_lines(uow: UnitOfWork, stored: StoredProposal, moved: Proposal) -> None:
        uow.commercial.reprice(stored.id, moved, term_days if term_days is not None else stored.term_days,
                               kept["requested"])  # type: ignore[arg-type]

    return _transition(engine, proposal_id, action, store_lines)


def approve_proposal(engine: Engine, proposal_id: int, by: str, now: dt.datetime) -> StoredProposal:
    """Approve a submitted proposal; its policies' use limits are checked again and their uses recorded.

    A refusal (wrong status, expired, a policy used up meanwhile) raises and changes nothing.
    """

    def check_and_record_uses(uow: UnitOfWork, stored: StoredProposal, moved: Proposal) -> None:
        repo = uow.commercial
        key = stored.proposal.client_key
        applied = stored.proposal.priced.applied
        limits = repo.policy_limits(applied)  # locks them on PostgreSQL: approvals sharing a policy serialise
        usage = repo.usage(key)
        for code in applied:
            max_uses, max_per_client = limits[code]
            used = usage.get(code, PolicyUsage())
            if max_uses is not None and used.total >= max_uses:
                raise InvalidInput("policy", f"{code} has been used {used.total} time(s), its limit is {max_uses}")
            mine = used.by_client.get(key, 0)
            if max_per_client is not None and mine >= max_per_client:
                raise InvalidInput("policy", f"{code} has been used {mine} time(s) by this client, "
                                             f"its limit is {max_per_client}")
            repo.record_use(code, stored.id, key, now)

    return _transition(engine, proposal_id, lambda p, _: approve(p, by, now), check_and_record_uses)


def expire_proposals(engine: Engine, now: dt.datetime) -> list[int]:
    """Mark draft and submitted proposals past their validity date (in the customer's zone) expired."""
    with UnitOfWork(engine) as uow:
        candidates = uow.commercial.proposal_ids(("draft", "submitted"))
    expired = []
    for proposal_id in candidates:
        stored = get_proposal(engine, proposal_id)
        if stored.proposal.is_past_validity(now):
            try:
                _transition(engine, proposal_id, lambda p, _: expire(p, now))
                expired.append(proposal_id)
            except Conflict:
                continue  # approved or rejected at the same moment
    return expired


# --- applying approved proposals: the client's products and licences ----------------------------------
def proposals_to_apply(engine: Engine, limit: int = 1000) -> list[int]:
    with UnitOfWork(engine) as uow:
        return uow.commercial.approved_unapplied(limit)


@dataclass(frozen=True)
class Application:
    proposal_id: int
    client_id: int
    client_created: bool
    licences: tuple[Licence, ...]


def apply_proposal(engine: Engine, proposal_id: int, now: dt.datetime) -> Application | None:
    """Write an approved proposal's products and licences, once; ``None`` if already applied.

    One transaction: claim (``applied_at`` from empty to now), create the client if it was a prospect,
    write ``client_products``. Whoever loses the claim writes nothing. A prospect's slug taken by
    another client meanwhile is refused (``Conflict`` naming ``slug``) and nothing is written: never
    another tenant's account.
    """
    with UnitOfWork(engine) as uow:
        repo = uow.commercial
        stored = repo.load_proposal(proposal_id, repo.catalogue())
        if stored.proposal.status is not ProposalStatus.APPROVED:
            raise InvalidInput("status", f"proposal {proposal_id} is {stored.proposal.status.value}, not approved")
        if not repo.claim_application(proposal_id, now):
            return None
        created = False
        client_id = stored.client_id
        if client_id is None:
            prospect = stored.proposal.prospect
            assert prospect is not None and stored.prospect_slug is not None
            # A prospect's account is always new: an existing client with that slug is another tenant
            # (a trial account is a client: its proposal is made for --client, not as a prospect).
            if repo.slug_taken(stored.prospect_slug):
                raise Conflict("slug", f"a client {stored.prospect_slug!r} already exists: proposal {proposal_id} "
                                       "cannot create it; make the proposal for that client, or give the prospect "
                                       "another slug")
            spec = ClientSpec.parse(stored.prospect_slug, prospect.name, prospect.timezone)
            client_id = repo.create_client(spec, local_date_of(now, parse_zone(spec.timezone)), now)
            created = True
            repo.attach_client(proposal_id, client_id)
        approved_at = stored.proposal.last("approve").at
        licences = licences_from_approved(stored.proposal, stored.proposal.local_date(approved_at), stored.term_days)
        repo.insert_licences(client_id, licences, source_proposal=proposal_id, note=None, now=now)
    return Application(proposal_id, client_id, created, tuple(licences))


def start_trial(engine: Engine, slug: str, name: str, timezone: str, days: int, *,
                products: Sequence[str] = (REPORTS_PRODUCT,), now: dt.datetime) -> ClientRecord:
    """A temporary account for a prospect: a client with free trial licences for ``days`` days, in one
    transaction (a refused trial creates no client)."""
    spec = ClientSpec.parse(slug, name, timezone)
    start = local_date_of(now, parse_zone(spec.timezone))
    with UnitOfWork(engine) as uow:
        repo = uow.commercial
        known = repo.catalogue()
        licences = trial_licences([known.get(code) for code in products], start, days)
        if repo.slug_taken(spec.slug):
            raise Conflict("slug", f"a client with slug {spec.slug!r} already exists")
        client_id = repo.create_client(spec, start, now)
        repo.insert_licences(client_id, licences, source_proposal=None, note=f"trial of {days} days", now=now)
    return ClientRecord(id=client_id, slug=spec.slug, name=spec.name, timezone=spec.timezone, active_from=start)


def grant(engine: Engine, client_id: int, licences: Sequence[Licence], note: str,
          now: dt.datetime) -> None:
    """Write licences that come from no proposal (trials, the demo's clients)."""
    with UnitOfWork(engine) as uow:
        uow.commercial.insert_licences(client_id, licences, source_proposal=None, note=note,
                                       now=now)


def licences_of(engine: Engine, client_id: int) -> list[Licence]:
    with UnitOfWork(engine) as uow:
        return uow.commercial.licences_of(client_id)


def stop_unserved_work(engine: Engine, now: dt.datetime) -> list[int]:
    """Pause the active schedules of clients served neither today nor yesterday (their last licensed day
    has closed and been reported), with the reason; returns the paused schedule ids."""
    from report_pipelines.services.serving import servings

    stopped = [client_id for client_id, s in servings(engine, now).items()
               if not s.serves(s.today) and not s.serves(s.today - dt.timedelta(days=1))]
    with UnitOfWork(engine) as uow:
        return uow.commercial.pause_schedules(
            stopped, f"the client's reports licence ended (checked {now:%Y-%m-%d %H:%M} UTC)", now)
