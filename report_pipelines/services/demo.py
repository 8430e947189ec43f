"""Seed the app database with a realistic demo platform (clients and their calls)."""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import Engine

from report_pipelines.adapters.db.bulk import load_call_events
from report_pipelines.adapters.db.commercial import UnitOfWork
from report_pipelines.adapters.db.repositories import ClientRepository
from report_pipelines.adapters.report_store import ParquetReportStore
from report_pipelines.adapters.sources.synthetic import CallGenerator, GeneratorConfig
from report_pipelines.domain.clients import ClientSpec
from report_pipelines.domain.commercial import REPORTS_PRODUCT, Licence, Money, Product
from report_pipelines.domain.errors import Conflict, NotFound
from report_pipelines.domain.reports import REPORTS
from report_pipelines.services.commercial import add_product, catalogue, grant

#: Accounts the demo run creates besides the generated clients (a prospect's and a trial's).
DEMO_ACCOUNTS = ("porto-dental", "braga-hotel-trial")
#: The demo run's own discount policy (deleted with its uses on reset).
DEMO_POLICIES = ("LAUNCH15",)


@dataclass(frozen=True)
class SeedSummary:
    clients: int
    events: int
    first_day: dt.date
    last_day: dt.date
    generate_seconds: float
    load_seconds: float


def seed_demo(engine: Engine, config: GeneratorConfig, *, now: dt.datetime, reset: bool = False,
              store: ParquetReportStore | None = None,
              progress: Callable[[str], None] | None = None) -> SeedSummary:
    """Create the generated clients and load their calls (COPY on PostgreSQL).

    Seeding twice would duplicate nothing but would mix two generations, so a demo client that
    already exists is refused unless ``reset`` is set, which first deletes everything the demo made:
    the generated clients and the demo run's own accounts (:data:`DEMO_ACCOUNTS`, and the prospect
    proposals that would create them) with everything that hangs on them (calls, cache manifest,
    licences, proposals, schedules and their file rows), the demo's policy, and, given the ``store``,
    their cached report files. So ``make demo`` can run any number of times on one database.
    """
    generator = CallGenerator(config)
    slugs = [c.slug for c in generator.clients]
    with UnitOfWork(engine) as uow:
        existing = uow.commercial.existing_slugs(slugs + list(DEMO_ACCOUNTS))
        if existing and not reset:
            raise Conflict("clients", f"{len(existing)} demo clients already exist (e.g. {sorted(existing)[0]!r}); "
                                      "use --reset to replace them")
        if reset:
            deleted = uow.commercial.delete_clients(slugs + list(DEMO_ACCOUNTS))
            uow.commercial.delete_policies(DEMO_POLICIES)
    if reset and store is not None:
        for client_id in deleted:
            for report in REPORTS:
                store.delete_client(report, client_id)

    repo = ClientRepository(engine)
    reports_product = ensure_reports_product(engine, now)
    generate_s = load_s = 0.0
    events = 0
    for planned in generator.clients:
        record = repo.add(ClientSpec.parse(planned.slug, planned.name, planned.timezone, active_from=config.start))
        grant(engine, record.id, [demo_licence(reports_product, config.start)], note="demo", now=now)
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


def ensure_reports_product(engine: Engine, now: dt.datetime) -> Product:
    """The reports product, created with a default list price if the catalogue does not have it yet."""
    try:
        return catalogue(engine).get(REPORTS_PRODUCT)
    except NotFound:
        return add_product(engine, REPORTS_PRODUCT, "Call reports", "licence", "49.00", "EUR", now=now)


def demo_licence(product: Product, start: dt.date) -> Licence:
    """An open-ended reports licence at list price, as if sold before the demo's first day."""
    zero = Money.zero(product.list_price.currency)
    return Licence(product_code=product.code, quantity=1, unit_price=product.list_price, discount=zero,
                   valid_from=start, valid_to=None, trial=False, source_proposal=None)
