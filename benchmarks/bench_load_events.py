"""Generate and load ~2 million call events into PostgreSQL; COPY against ORM inserts of the same rows.

Prints generation and loading throughput (events/s) and the COPY path's speed as a ratio over
(a) SQLAlchemy 2.0's ORM bulk INSERT (``session.execute(insert(CallEvent), dicts)``) and
(b) the classic unit of work (``session.add_all(objects)``), all measured in this same run on the same
rows, into the same empty table (truncated between runs). Use ``--orm-rows`` to time the ORM paths
on a prefix of the rows only (their rate is then compared, and the output says so).

    .venv/bin/python benchmarks/bench_load_events.py [--events 2000000] [--orm-rows N]
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import pyarrow as pa
from _common import Timer, scratch_postgres
from sqlalchemy import insert, text
from sqlalchemy.orm import Session

from report_pipelines.adapters.db.bulk import load_call_events
from report_pipelines.adapters.db.engine import make_engine
from report_pipelines.adapters.db.migrate import upgrade
from report_pipelines.adapters.db.models import CallEvent
from report_pipelines.adapters.db.repositories import ClientRepository
from report_pipelines.adapters.sources.synthetic import CallGenerator, GeneratorConfig, plan_clients
from report_pipelines.domain.clients import ClientSpec

WEEKDAY_MEAN = 0.79  # mean of the generator's weekday factors


def config_for(events: int, clients: int, days: int) -> GeneratorConfig:
    """A configuration whose expected volume is ``events`` (Zipf sizes, largest/smallest = 500)."""
    probe = GeneratorConfig(start=dt.date(2024, 9, 2), days=days, clients=clients,
                            largest_daily_calls=500.0, smallest_daily_calls=1.0)
    per_day = sum(c.daily_calls for c in plan_clients(probe)) * WEEKDAY_MEAN
    scale = events / (per_day * days * 1.04)  # spikes add ~4 % on average
    return GeneratorConfig(start=probe.start, days=days, clients=clients,
                           largest_daily_calls=500.0 * scale, smallest_daily_calls=scale)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=2_000_000)
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--orm-rows", type=int, default=None, help="time the ORM paths on this many rows only")
    parser.add_argument("--smoke", action="store_true", help="20,000 events: seconds, not minutes")
    args = parser.parse_args()
    if args.smoke:
        args.events, args.clients, args.days = 20_000, 4, 5

    config = config_for(args.events, args.clients, args.days)
    with scratch_postgres() as url:
        engine = make_engine(url)
        upgrade(engine)
        repo = ClientRepository(engine)
        generator = CallGenerator(config)
        ids = {c.slug: repo.add(ClientSpec.parse(c.slug, c.name, c.timezone)).id for c in generator.clients}

        with Timer() as gen_t:
            tables = [t for c in generator.clients for t in generator.iter_tables(c, ids[c.slug])]
        table = pa.concat_tables(tables).combine_chunks()
        n = table.num_rows
        largest = max(c.daily_calls for c in generator.clients)
        print(f"generated {n:,} events: {args.clients} clients x {args.days} days "
              f"(largest ~{largest:,.0f} calls/weekday) in {gen_t.seconds:.2f} s = {n / gen_t.seconds:,.0f} events/s")

        with Timer() as copy_t:
            load_call_events(engine, table)
        copy_rate = n / copy_t.seconds
        print(f"COPY load:                 {n:>10,} rows in {copy_t.seconds:7.2f} s = {copy_rate:>10,.0f} events/s")

        m = min(n, args.orm_rows or n)
        rows = table.slice(0, m).to_pylist()  # preparation, not timed: both ORM paths start from dicts

        def truncate() -> None:
            with engine.begin() as conn:
                conn.execute(text("TRUNCATE call_events"))

        truncate()
        with Timer() as bulk_t:
            with Session(engine) as session:
                for i in range(0, m, 10_000):
                    session.execute(insert(CallEvent), rows[i:i + 10_000])
                session.commit()
        bulk_rate = m / bulk_t.seconds
        print(f"ORM bulk INSERT (dicts):   {m:>10,} rows in {bulk_t.seconds:7.2f} s = {bulk_rate:>10,.0f} events/s")

        truncate()
        with Timer() as uow_t:
            with Session(engine) as session:
                for i in range(0, m, 10_000):
                    session.add_all([CallEvent(**r) for r in rows[i:i + 10_000]])
                    session.flush()
                    session.expunge_all()
                session.commit()
        uow_rate = m / uow_t.seconds
        print(f"ORM add_all (unit of work):{m:>10,} rows in {uow_t.seconds:7.2f} s = {uow_rate:>10,.0f} events/s")
        engine.dispose()

    basis = "same rows" if m == n else f"rates; ORM timed on the first {m:,} rows"
    print(f"ratio COPY / ORM bulk INSERT:   {copy_rate / bulk_rate:6.1f}x  ({basis})")
    print(f"ratio COPY / ORM add_all:       {copy_rate / uow_rate:6.1f}x  ({basis})")
    print(f"ratio generation / COPY load:   {(n / gen_t.seconds) / copy_rate:6.1f}x")


if __name__ == "__main__":
    main()
