"""The commercial side in the database: catalogue, policies, proposals, policy uses, licences.

Every statement the commercial use cases need, and nothing else: the rules (pricing, the proposal
state machine, licences, who is served) are the pure domain; the use cases in
:mod:`report_pipelines.services.commercial` compose these methods inside one :class:`UnitOfWork`
each, so a refused action changes nothing.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from functools import lru_cache
from types import TracebackType

from sqlalchemy import (
    Connection,
    Date,
    Engine,
    Integer,
    Select,
    String,
    bindparam,
    delete,
    func,
    insert,
    literal_column,
    select,
    true,
    update,
)
from sqlalchemy.dialects.postgresql import aggregate_order_by
from sqlalchemy.exc import IntegrityError

from report_pipelines.adapters.db.models import (
    CacheEntry,
    CallEvent,
    CallEventQuarterRow,
    Client,
    ClientProductRow,
    PolicyRow,
    PolicyUseRow,
    ProductRow,
    ProposalItemRow,
    ProposalRow,
    ProposalTransitionRow,
    ReportFile,
    ReportSchedule,
)
from report_pipelines.adapters.db.prepared import prepared
from report_pipelines.adapters.db.types import one_of
from report_pipelines.domain.cache import KeptPeriod
from report_pipelines.domain.clients import ClientRecord, ClientSpec
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
)
from report_pipelines.domain.errors import Conflict, NotFound


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


class UnitOfWork:
    """One transaction for a use case that spans several tables: commit at the end, roll back on error.

    ``with UnitOfWork(engine) as uow: uow.commercial.<...>``
    """

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def __enter__(self) -> UnitOfWork:
        self._transaction = self.engine.begin()
        self.connection = self._transaction.__enter__()
        self.commercial = CommercialRepository(self.connection)
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        self._transaction.__exit__(kind, error, trace)


def _product(row: ProductRow) -> Product:
    return Product(code=row.code, name=row.name, unit=row.unit, list_price=Money(row.list_price, row.currency),
                   active=row.active)


def _policy(row: PolicyRow) -> CommercialPolicy:
    value = Money(row.value, row.currency) if row.kind == PolicyKind.AMOUNT.value else row.value
    return CommercialPolicy(
        code=row.code, name=row.name, kind=row.kind, value=value, valid_from=row.valid_from, valid_to=row.valid_to,
        created_by=row.created_by, products=frozenset(p for p in row.products.split(",") if p),
        min_quantity=row.min_quantity, max_uses=row.max_uses, max_uses_per_client=row.max_uses_per_client,
        stackable=row.stackable, active=row.active)


@lru_cache(maxsize=16)
def _reports_licences_query(by_ids: bool, by_zone: bool, by_slugs: bool, arrays: bool = False,
                            kept: bool = False) -> Select:
    """The clients-and-reports-licences query, built once per filter shape (every read validates through
    it: building a statement costs more than the indexed lookup it runs); ``arrays``: PostgreSQL's.
    ``kept`` (PostgreSQL): each client's :class:`KeptPeriod` of the report and days given as parameters
    ``kept_report``, ``kept_first``, ``kept_last``, from the same statement (a lateral aggregate: one row
    per client whatever the manifest holds)."""
    licences = ClientProductRow.__table__
    clients = Client.__table__
    if kept:
        clients = clients.join(_KEPT, true())
    query = (select(Client.id, Client.slug, Client.name, Client.timezone, Client.active_from,
                    *[licences.c[name] for name in _LICENCE_COLUMNS], *((_KEPT.c.kept_days, _KEPT.c.kept_digest)
                                                                       if kept else ()))
             .select_from(clients.outerjoin(licences, (licences.c.client_id == Client.id)
                                            & (licences.c.product_code == REPORTS_PRODUCT))))
    if by_ids:
        query = query.where(one_of(Client.id, "ids", Integer, arrays))
    if by_zone:
        query = query.where(one_of(Client.timezone, "zones", String, arrays))
    if by_slugs:
        query = query.where(one_of(Client.slug, "slugs", String, arrays))
    return query.order_by(Client.id, licences.c.id)


def _kept_period():
    """How many of the period's days keep their table with the manifest row, and the digest of every
    row's checksum in date order: :func:`report_pipelines.domain.cache.period_digest` in SQL
    (SHA-256 of the concatenated hex checksums, in hex)."""
    m = CacheEntry.__table__
    ordered = func.string_agg(m.c.checksum, aggregate_order_by(literal_column("''"), m.c.local_date))
    return (select(func.count(m.c.day_table).label("kept_days"),
                   func.encode(func.sha256(func.convert_to(ordered, literal_column("'UTF8'"))),
                               literal_column("'hex'")).label("kept_digest"))
            .where(m.c.client_id == Client.id, m.c.report == bindparam("kept_report"),
                   m.c.local_date >= bindparam("kept_first", type_=Date),
                   m.c.local_date <= bindparam("kept_last", type_=Date))
            .lateral("kept"))


_KEPT = _kept_period()


_LICENCE_COLUMNS = ("product_code", "quantity", "unit_price", "discount", "currency", "valid_from", "valid_to",
                    "trial", "source_proposal")


def _licence(row: ClientProductRow) -> Licence:
    return Licence(product_code=row.product_code, quantity=row.quantity,
                   unit_price=Money(row.unit_price, row.currency), discount=Money(row.discount, row.currency),
                   valid_from=row.valid_from, valid_to=row.valid_to, trial=row.trial,
                   source_proposal=row.source_proposal)


class CommercialRepository:
    """The commercial tables, inside one connection (a :class:`UnitOfWork`'s, or a read-only one)."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn

    # --- catalogue --------------------------------------------------------------------------------
    def add_product(self, product: Product, now: dt.datetime) -> None:
        try:  # the caller's unit of work rolls back on the Conflict
            self.conn.execute(insert(ProductRow).values(
                code=product.code, name=product.name, unit=product.unit.value, list_price=product.list_price.amount,
                currency=product.list_price.currency, active=True, created_at=now))
        except IntegrityError:
            raise Conflict("code", f"a product with code {product.code!r} already exists") from None

    def catalogue(self) -> Catalogue:
        return Catalogue(_product(r) for r in self.conn.execute(select(ProductRow).order_by(ProductRow.code)))

    # --- policies ---------------------------------------------------------------------------------
    def add_policy(self, policy: CommercialPolicy, amount: Decimal, currency: str | None, now: dt.datetime) -> None:
        try:  # the caller's unit of work rolls back on the Conflict
            self.conn.execute(insert(PolicyRow).values(
                code=policy.code, name=policy.name, kind=policy.kind.value, value=amount,
                currency=currency if policy.kind is PolicyKind.AMOUNT else None,
                products=",".join(sorted(policy.products)), valid_from=policy.valid_from,
                valid_to=policy.valid_to, min_quantity=policy.min_quantity, max_uses=policy.max_uses,
                max_uses_per_client=policy.max_uses_per_client, stackable=policy.stackable, active=True,
                created_by=policy.created_by, created_at=now))
        except IntegrityError:
            raise Conflict("code", f"a policy with code {policy.code!r} already exists") from None

    def policies(self) -> list[CommercialPolicy]:
        return [_policy(r) for r in self.conn.execute(select(PolicyRow).order_by(PolicyRow.code))]

    def policy_limits(self, codes: Sequence[str]) -> dict[str, tuple[int | None, int | None]]:
        """``code -> (max_uses, max_uses_per_client)``; on PostgreSQL the rows are locked, which
        serialises approvals that use the same policies."""
        if not codes:
            return {}
        query = select(PolicyRow.code, PolicyRow.max_uses, PolicyRow.max_uses_per_client).where(PolicyRow.code.in_(codes))
        if self.conn.dialect.name == "postgresql":
            query = query.with_for_update()
        return {code: (total, per_client) for code, total, per_client in self.conn.execute(query)}

    def usage(self, client_key: str) -> dict[str, PolicyUsage]:
        totals = dict(self.conn.execute(select(PolicyUseRow.policy_code, func.count())
                                        .group_by(PolicyUseRow.policy_code)).all())
        mine = dict(self.conn.execute(select(PolicyUseRow.policy_code, func.count())
                                      .where(PolicyUseRow.client_key == client_key)
                                      .group_by(PolicyUseRow.policy_code)).all())
        return {code: PolicyUsage(total=int(n), by_client={client_key: int(mine.get(code, 0))})
                for code, n in totals.items()}

    def usage_summary(self) -> dict[str, int]:
        return {code: int(n) for code, n in self.conn.execute(
            select(PolicyUseRow.policy_code, func.count()).group_by(PolicyUseRow.policy_code))}

    def record_use(self, code: str, proposal_id: int, client_key: str, now: dt.datetime) -> None:
        self.conn.execute(insert(PolicyUseRow).values(policy_code=code, proposal_id=proposal_id, client_key=client_key,
                                                      used_at=now))

    # --- proposals --------------------------------------------------------------------------------
    def load_proposal(self, proposal_id: int, products: Catalogue) -> StoredProposal:
        row = self.conn.execute(select(ProposalRow).where(ProposalRow.id == proposal_id)).first()
        if row is None:
            raise NotFound("proposal", f"no proposal with id {proposal_id}")
        if row.client_id is not None:
            slug = self.conn.execute(select(Client.slug).where(Client.id == row.client_id)).scalar_one()
            customer: ClientRef | Prospect = ClientRef(slug, row.timezone)
        else:
            customer = Prospect(row.prospect_name, row.prospect_email, row.timezone)

        def money(amount: Decimal) -> Money:
            return Money(amount, row.currency)

        lines = tuple(
            PricedLine(product=products.get(item.product_code), quantity=item.quantity,
                       unit_price=money(item.unit_price), list_total=money(item.list_total),
                       discount=money(item.discount), line_total=money(item.line_total),
                       applied=tuple(c for c in item.applied.split(",") if c), explanation=item.explanation)
            for item in self.conn.execute(select(ProposalItemRow).where(ProposalItemRow.proposal_id == proposal_id)
                                          .order_by(ProposalItemRow.id)))
        priced = PricedProposal(
            on=row.priced_on, client_key=customer.key, currency=row.currency, lines=lines,
            applied=tuple(c for c in row.applied_policies.split(",") if c), requested_policy=row.requested_policy,
            outcomes=(), subtotal=money(row.subtotal), discount=money(row.discount), total=money(row.total),
            explanation=row.explanation)
        transitions = tuple(
            Transition(action=t.action, from_status=ProposalStatus(t.from_status) if t.from_status else None,
                       to_status=ProposalStatus(t.to_status), by=t.by, at=t.at, note=t.note)
            for t in self.conn.execute(select(ProposalTransitionRow)
                                       .where(ProposalTransitionRow.proposal_id == proposal_id)
                                       .order_by(ProposalTransitionRow.id)))
        proposal = Proposal(id=row.id, customer=customer, priced=priced, status=ProposalStatus(row.status),
                            valid_until=row.valid_until, transitions=transitions)
        return StoredProposal(proposal, row.client_id, row.prospect_slug, row.term_days, row.applied_at)

    def proposal_ids(self, statuses: Sequence[str] | None = None) -> list[int]:
        query = select(ProposalRow.id).order_by(ProposalRow.id)
        if statuses is not None:
            query = query.where(ProposalRow.status.in_(statuses))
        return list(self.conn.scalars(query))

    def insert_proposal(self, proposal: Proposal, *, client_id: int | None, prospect_slug: str | None,
                        term_days: int | None, requested_policy: str | None, now: dt.datetime) -> int:
        priced, customer = proposal.priced, proposal.customer
        proposal_id = self.conn.execute(insert(ProposalRow).values(
            client_id=client_id, prospect_name=getattr(customer, "name", None),
            prospect_email=getattr(customer, "email", None), prospect_slug=prospect_slug,
            timezone=customer.timezone, status=proposal.status.value, valid_until=proposal.valid_until,
            term_days=term_days, requested_policy=requested_policy, applied_policies=",".join(priced.applied),
            currency=priced.currency, subtotal=priced.subtotal.amount, discount=priced.discount.amount,
            total=priced.total.amount, priced_on=priced.on, explanation=priced.explanation, created_at=now,
            updated_at=now,
        ).returning(ProposalRow.id)).scalar_one()
        self._insert_items(proposal_id, priced)
        self.record_transitions(proposal_id, proposal.transitions)
        return proposal_id

    def _insert_items(self, proposal_id: int, priced: PricedProposal) -> None:
        for line in priced.lines:
            self.conn.execute(insert(ProposalItemRow).values(
                proposal_id=proposal_id, product_code=line.product.code, quantity=line.quantity,
                unit_price=line.unit_price.amount, list_total=line.list_total.amount, discount=line.discount.amount,
                line_total=line.line_total.amount, applied=",".join(line.applied), explanation=line.explanation))

    def reprice(self, proposal_id: int, proposal: Proposal, term_days: int | None, requested_policy: str | None) -> None:
        """Replace a draft's lines and totals (a revision); the status compare-and-set comes first."""
        priced = proposal.priced
        self.conn.execute(delete(ProposalItemRow).where(ProposalItemRow.proposal_id == proposal_id))
        self.conn.execute(update(ProposalRow).where(ProposalRow.id == proposal_id).values(
            valid_until=proposal.valid_until, term_days=term_days, requested_policy=requested_policy,
            applied_policies=",".join(priced.applied), currency=priced.currency, subtotal=priced.subtotal.amount,
            discount=priced.discount.amount, total=priced.total.amount, priced_on=priced.on,
            explanation=priced.explanation))
        self._insert_items(proposal_id, priced)

    def lock_proposal(self, proposal_id: int) -> None:
        """Make a concurrent transition of the same proposal wait (PostgreSQL row lock)."""
        self.conn.execute(select(ProposalRow.id).where(ProposalRow.id == proposal_id).with_for_update())

    def compare_and_set_status(self, proposal_id: int, expected: ProposalStatus, new: ProposalStatus,
                               at: dt.datetime) -> bool:
        return self.conn.execute(update(ProposalRow).where(
            ProposalRow.id == proposal_id, ProposalRow.status == expected.value,
        ).values(status=new.value, updated_at=at)).rowcount == 1

    def record_transitions(self, proposal_id: int, transitions: Sequence[Transition]) -> None:
        for t in transitions:
            self.conn.execute(insert(ProposalTransitionRow).values(
                proposal_id=proposal_id, action=t.action, from_status=t.from_status.value if t.from_status else None,
                to_status=t.to_status.value, by=t.by, at=t.at, note=t.note))

    def approved_unapplied(self, limit: int) -> list[int]:
        return list(self.conn.scalars(select(ProposalRow.id).where(
            ProposalRow.status == "approved", ProposalRow.applied_at.is_(None)).order_by(ProposalRow.id).limit(limit)))

    def claim_application(self, proposal_id: int, now: dt.datetime) -> bool:
        """Compare-and-set ``applied_at`` from empty: whoever loses writes nothing."""
        return self.conn.execute(update(ProposalRow).where(
            ProposalRow.id == proposal_id, ProposalRow.status == "approved", ProposalRow.applied_at.is_(None),
        ).values(applied_at=now)).rowcount == 1

    def slug_taken(self, slug: str) -> bool:
        return self.conn.execute(select(Client.id).where(Client.slug == slug)).scalar() is not None

    def create_client(self, spec: ClientSpec, active_from: dt.date, now: dt.datetime) -> int:
        try:  # a concurrent creation of the same slug loses here; the unit of work rolls back
            return self.conn.execute(insert(Client).values(
                slug=spec.slug, name=spec.name, timezone=spec.timezone, active_from=active_from, created_at=now,
                updated_at=now,
            ).returning(Client.id)).scalar_one()
        except IntegrityError:
            raise Conflict("slug", f"a client with slug {spec.slug!r} already exists") from None

    def attach_client(self, proposal_id: int, client_id: int) -> None:
        self.conn.execute(update(ProposalRow).where(ProposalRow.id == proposal_id).values(client_id=client_id))

    # --- licences ---------------------------------------------------------------------------------
    def insert_licences(self, client_id: int, licences: Sequence[Licence], *, source_proposal: int | None,
                        note: str | None, now: dt.datetime) -> None:
        for licence in licences:
            self.conn.execute(insert(ClientProductRow).values(
                client_id=client_id, product_code=licence.product_code, quantity=licence.quantity,
                unit_price=licence.unit_price.amount, discount=licence.discount.amount,
                currency=licence.unit_price.currency, valid_from=licence.valid_from, valid_to=licence.valid_to,
                trial=licence.trial, source_proposal=source_proposal, note=note, created_at=now))

    def licences_of(self, client_id: int) -> list[Licence]:
        rows = self.conn.execute(select(ClientProductRow).where(ClientProductRow.client_id == client_id)
                                 .order_by(ClientProductRow.valid_from, ClientProductRow.id))
        return [_licence(r) for r in rows]

    def reports_licences(self, *, client_ids: Sequence[int] | None = None, zones: Sequence[str] | None = None,
                         slugs: Sequence[str] | None = None, kept: tuple[str, dt.date, dt.date] | None = None,
                         ) -> dict[int, tuple[ClientRecord, list[Licence], KeptPeriod | None]]:
        """Clients (all, these ids or slugs, or those of these zones) with their reports licences (possibly
        none), and (``kept``: a report and its days, on PostgreSQL; else None) the :class:`KeptPeriod` of
        that report's days, from the same statement."""
        with_kept = kept is not None and self.conn.dialect.name == "postgresql"
        query = _reports_licences_query(client_ids is not None, zones is not None, slugs is not None,
                                        self.conn.dialect.name == "postgresql", with_kept)
        params: dict[str, object] = {}
        if client_ids is not None:
            params["ids"] = list(client_ids)
        if zones is not None:
            params["zones"] = list(zones)
        if slugs is not None:
            params["slugs"] = list(slugs)
        if with_kept:
            params["kept_report"], params["kept_first"], params["kept_last"] = kept
        found: dict[int, tuple[ClientRecord, list[Licence], KeptPeriod | None]] = {}
        for row in prepared(query).execute(self.conn, params):  # one query, clients and licences
            if row.id not in found:
                found[row.id] = (ClientRecord(id=row.id, slug=row.slug, name=row.name, timezone=row.timezone,
                                              active_from=row.active_from), [],
                                 KeptPeriod(row.kept_days, row.kept_digest) if with_kept else None)
            if row.product_code is not None:
                found[row.id][1].append(_licence(row))
        return found

    def pause_schedules(self, client_ids: Sequence[int], reason: str, now: dt.datetime) -> list[int]:
        """Pause the active schedules of these clients, with the reason; returns their ids."""
        if not client_ids:
            return []
        victims = list(self.conn.scalars(select(ReportSchedule.id).where(
            ReportSchedule.active.is_(True), ReportSchedule.client_id.in_(list(client_ids)))))
        if victims:
            self.conn.execute(update(ReportSchedule).where(ReportSchedule.id.in_(victims)).values(
                active=False, paused_reason=reason, updated_at=now, revision=ReportSchedule.revision + 1))
        return victims

    # --- demo reset -------------------------------------------------------------------------------
    def delete_clients(self, slugs: Sequence[str]) -> list[int]:
        """Delete these clients and everything that hangs on them (calls, cache manifest, licences,
        proposals with their items, transitions and policy uses, schedules and their file rows);
        returns the deleted ids, so the caller can remove their files."""
        ids = list(self.conn.scalars(select(Client.id).where(Client.slug.in_(list(slugs)))))
        prospects = list(self.conn.scalars(select(ProposalRow.id).where(
            ProposalRow.client_id.is_(None), ProposalRow.prospect_slug.in_(list(slugs)))))
        proposals = list(self.conn.scalars(select(ProposalRow.id).where(ProposalRow.client_id.in_(ids)))) + prospects
        if ids:
            schedules = select(ReportSchedule.id).where(ReportSchedule.client_id.in_(ids)).scalar_subquery()
            self.conn.execute(delete(ReportFile).where(ReportFile.schedule_id.in_(schedules)))
            self.conn.execute(delete(ReportSchedule).where(ReportSchedule.client_id.in_(ids)))
            self.conn.execute(delete(CacheEntry).where(CacheEntry.client_id.in_(ids)))
        self.conn.execute(delete(ClientProductRow).where(
            ClientProductRow.client_id.in_(ids) | ClientProductRow.source_proposal.in_(proposals)))
        for table in (PolicyUseRow, ProposalItemRow, ProposalTransitionRow):
            self.conn.execute(delete(table).where(table.proposal_id.in_(proposals)))
        self.conn.execute(delete(ProposalRow).where(ProposalRow.id.in_(proposals)))
        if ids:
            self.conn.execute(delete(CallEventQuarterRow).where(CallEventQuarterRow.client_id.in_(ids)))
            self.conn.execute(delete(CallEvent).where(CallEvent.client_id.in_(ids)))
            self.conn.execute(delete(Client).where(Client.id.in_(ids)))
        return ids

    def existing_slugs(self, slugs: Sequence[str]) -> set[str]:
        return set(self.conn.scalars(select(Client.slug).where(Client.slug.in_(list(slugs)))))

    def delete_policies(self, codes: Sequence[str]) -> None:
        """Delete policies nobody used any more (the demo's own, after its proposals are gone)."""
        used = set(self.conn.scalars(select(PolicyUseRow.policy_code).where(PolicyUseRow.policy_code.in_(list(codes)))))
        self.conn.execute(delete(PolicyRow).where(PolicyRow.code.in_([c for c in codes if c not in used])))
