"""Seed the app database with a realistic demo platform (clients and their calls)."""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import Engine, delete, select

from report_pipelines.adapters.db.bulk import load_call_events
from report_pipelines.adapters.db.models import (
    CacheEntry,
    CallEvent,
    Client,
    ClientProductRow,
    PolicyUseRow,
    ProposalItemRow,
    ProposalRow,
    ProposalTransitionRow,
    ReportFile,
    ReportSchedule,
)
from report_pipelines.adapters.report_store import ParquetReportStore
from report_pipelines.domain.commercial import REPORTS_PRODUCT, Licence, Money, Product
from report_pipelines.domain.errors import NotFound
from report_pipelines.domain.reports import REPORTS
from report_pipelines.services.commercial import add_product, catalogue, grant
from report_pipelines.adapters.db.repositories import ClientRepository
from report_pipelines.adapters.sources.synthetic import CallGenerator, GeneratorConfig
from report_pipelines.domain.clients import ClientSpec
from report_pipelines.domain.errors import Conflict


@dataclass(frozen=True)
class SeedSummary:
    clients: int
    events: int
    first_day: dt.date
    last_day: dt.date
    generate_seconds: float
    load_seconds: float


def seed_demo(engine: Engine, config: GeneratorConfig, *, reset: bool = False,
              store: ParquetReportStore | None = None,
              progress: Callable[[str], None] | None = None) -> SeedSummary:
    """Create the generated clients and load their calls (COPY on PostgreSQL).

    Seeding twice would duplicate nothing but would mix two generations, so a demo client that
    already exists is refused unless ``reset`` is set, which first deletes the demo clients (only
    those whose slugs the generator plans) with everything that hangs on them (calls, cache
    manifest, licences, proposals, schedules and their file rows) and, given the ``store``, their
    cached report files.
    """
    generator = CallGenerator(config)
    slugs = [c.slug for c in generator.clients]
    with engine.begin() as conn:
        existing = set(conn.scalars(select(Client.slug).where(Client.slug.in_(slugs))))
        if existing and not reset:
            raise Conflict("clients", f"{len(existing)} demo clients already exist (e.g. {sorted(existing)[0]!r}); "
                                      "use --reset to replace them")
        if existing:
            ids = list(conn.scalars(select(Client.id).where(Client.slug.in_(slugs))))
            schedules = select(ReportSchedule.id).where(ReportSchedule.client_id.in_(ids)).scalar_subquery()
            conn.execute(delete(ReportFile).where(ReportFile.schedule_id.in_(schedules)))
            conn.execute(delete(ReportSchedule).where(ReportSchedule.client_id.in_(ids)))
            conn.execute(delete(CacheEntry).where(CacheEntry.client_id.in_(ids)))
            conn.execute(delete(ClientProductRow).where(ClientProductRow.client_id.in_(ids)))
            proposals = select(ProposalRow.id).where(ProposalRow.client_id.in_(ids)).scalar_subquery()
            for table in (PolicyUseRow, ProposalItemRow, ProposalTransitionRow):
                conn.execute(delete(table).where(table.proposal_id.in_(proposals)))
            conn.execute(delete(ProposalRow).where(ProposalRow.client_id.in_(ids)))
            conn.execute(delete(CallEvent).where(CallEvent.client_id.in_(ids)))
            conn.execute(delete(Client).where(Client.id.in_(ids)))
            if store is not None:
                for client_id in ids:
                    for report in REPORTS:
                        store.delete_client(report, client_id)

    repo = ClientRepository(engine)
    reports_product = ensure_reports_product(engine)
    generate_s = load_s = 0.0
    events = 0
    for planned in generator.clients:
        record = repo.add(ClientSpec.parse(planned.slug, planned.name, planned.timezone, active_from=config.start))
        grant(engine, record.id, [demo_licence(reports_product, config.start)], note="demo")
        client_events = 0
        for_client = generator.iter_tables(planned, record.id)
        while True:
            t0 = time.perf_counter()
            table = next(for_client, None)
            generate_s += time.perf_counter() - t0
            if table is None:
                break
            t0 = time.perf_counter()
            load_call_events(engine, table)
            load_s += time.perf_counter() - t0
            client_events += table.num_rows
        events += client_events
        if progress:
            progress(f"  {planned.slug:<32} {planned.timezone:<22} {client_events:>9,} calls")
    return SeedSummary(
        clients=len(generator.clients),
        events=events,
        first_day=config.start,
        last_day=config.end,
        generate_seconds=generate_s,
        load_seconds=load_s,
    )


def ensure_reports_product(engine: Engine) -> Product:
    """The reports product, created with a default list price if the catalogue does not have it yet."""
    try:
        return catalogue(engine).get(REPORTS_PRODUCT)
    except NotFound:
        return add_product(engine, REPORTS_PRODUCT, "Call reports", "licence", "49.00", "EUR")


def demo_licence(product: Product, start: dt.date) -> Licence:
    """An open-ended reports licence at list price, as if sold before the demo's first day."""
    zero = Money.zero(product.list_price.currency)
    return Licence(product_code=product.code, quantity=1, unit_price=product.list_price, discount=zero,
                   valid_from=start, valid_to=None, trial=False, source_proposal=None)
