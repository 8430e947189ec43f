"""Reading reports back: a period is the union of its days.

Closed days come from the report store (cached ones are read as they are; missing ones are computed
and cached on the way, through the same client-day computation the Dagster assets use); the current
local day is computed live from the calls so far and never cached. Reading cached days touches the
clients table, the licences, the cache manifest and the Parquet files, never the events table.

Which days may be computed is the one serving rule (:mod:`report_pipelines.services.serving`): a
client whose licence ended reads its cached days, and a missing day is computed only if it is served.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyarrow as pa

from report_pipelines.adapters.db.repositories import CacheManifestRepository
from report_pipelines.app import App, default_app
from report_pipelines.domain.clients import ClientRecord
from report_pipelines.domain.errors import InvalidInput, NotFound
from report_pipelines.domain.reports import ReportDefinition, get_report
from report_pipelines.domain.timezones import local_date_of, parse_zone
from report_pipelines.services.extracts import ANY_TIME, ClientDay, Extractor, kept_day, run_client_days
from report_pipelines.services.serving import Serving, servings


@dataclass(frozen=True)
class PeriodRequest:
    """A validated request: which report, whose, which local days, and which of them are closed."""

    report: ReportDefinition
    client: ClientRecord
    start: dt.date
    end: dt.date
    today: dt.date  # the client's current local date
    serving: Serving

    @property
    def served(self) -> bool:
        return self.serving.state == "served"

    @property
    def closed_days(self) -> list[dt.date]:
        last = min(self.end, self.today - dt.timedelta(days=1))
        return [self.start + dt.timedelta(days=i) for i in range((last - self.start).days + 1)]

    @property
    def includes_today(self) -> bool:
        return self.start <= self.today <= self.end


def _date(value: dt.date | str, field: str) -> dt.date:
    if isinstance(value, dt.datetime):
        raise InvalidInput(field, "a date is required (a local day, e.g. 2024-03-31), not a datetime")
    if isinstance(value, dt.date):
        return value
    try:
        return dt.date.fromisoformat(str(value))
    except ValueError:
        raise InvalidInput(field, f"{str(value)[:40]!r} is not a date (YYYY-MM-DD)") from None


def validate_request(app: App, report: str, client: str | int, start: dt.date | str, end: dt.date | str,
                     now: dt.datetime) -> PeriodRequest:
    """Check every argument, naming the one that is wrong, before anything is read or computed."""
    definition = get_report(report)
    by_id = isinstance(client, int) and not isinstance(client, bool)
    # One query for the client and its licences, by id or slug, whatever the size of the fleet.
    found = servings(app.engine, now, client_ids=[client]) if by_id else servings(app.engine, now, slugs=[str(client)])
    if not found:
        raise NotFound("client", f"no client {str(client)[:80]!r} (see: report-pipelines clients list)")
    [serving] = found.values()
    record = serving.client
    if serving.state == "never":
        raise InvalidInput("client", f"{record.slug!r} is not licensed for the reports product")
    first, last = _date(start, "start"), _date(end, "end")
    if last < first:
        raise InvalidInput("end", f"{last} is before start {first}")
    if first < record.active_from:
        raise InvalidInput("start", f"{first} is before client {record.slug!r} existed (its reports start on {record.active_from})")
    today = local_date_of(now, parse_zone(record.timezone))
    if last > today:
        raise InvalidInput("end", f"{last} is in the future for {record.slug!r} (today there is {today} in {record.timezone})")
    return PeriodRequest(report=definition, client=record, start=first, end=last, today=today, serving=serving)


def read_report_arrow(report: str, client: str | int, start: dt.date | str, end: dt.date | str, *,
                      app: App | None = None, now: dt.datetime | None = None,
                      timeout_s: float | None = None, workers: int = 1) -> pa.Table:
    """The day tables of ``report`` for ``client`` (slug or id) over local days ``start..end``.

    One row set per day, with ``client`` and ``date`` columns, days ascending. Closed days missing
    from the cache are computed and cached first (within ``timeout_s``); today, if asked for, is
    computed live from the calls so far. ``app`` defaults to one built from the environment.

    ``workers > 1`` computes missing days on that many processes; like any multiprocessing code,
    a script that asks for it must keep its top-level code under ``if __name__ == "__main__":``.
    The Dagster assets, not this call, are where bulk computation belongs.
    """
    app = app or default_app()
    now = now or app.now()
    request = validate_request(app, report, client, start, end, now)
    name, client_id = request.report.name, request.client.id
    store = app.store

    days = request.closed_days
    manifest = CacheManifestRepository(app.engine)
    # One query: which days have a row, and the day tables kept with them. A day whose table is kept is
    # read from its row; any other needs its file (checked on disk).
    kept = manifest.day_tables(client_id, days[0], days[-1], name) if days else {}
    missing = [d for d in days if d not in kept or (kept[d] is None and not store.exists(name, client_id, d))]
    unserved = [d for d in missing if not request.serving.serves(d)]
    if unserved or (request.includes_today and not request.serving.serves(request.today)):
        what = f"{len(unserved)} day(s) of this period ({unserved[0]}...) are not cached" if unserved else "today"
        raise InvalidInput("client", f"{request.client.slug!r} holds no reports licence for those days: its cached "
                                     f"days can be read, but {what} would need new work")
    if missing:
        run_client_days(app, [ClientDay(client_id, request.client.timezone, d) for d in missing],
                        workers=workers, now=now, reuse_since=ANY_TIME, timeout_s=timeout_s)
        kept = manifest.day_tables(client_id, days[0], days[-1], name)
    tables = [_closed_days(app, request, days, kept)] if days else []
    if request.includes_today:
        live = Extractor(app).live_day(name, client_id, request.client.timezone, request.today, now)
        n = live.num_rows
        tables.append(live.append_column("client", pa.array([client_id] * n, pa.int64()))
                      .append_column("date", pa.array([request.today] * n, pa.date32())))
    if not tables:
        return store.read_days(name, client_id, [], request.report.schema)
    return pa.concat_tables(tables)


def _closed_days(app: App, request: PeriodRequest, days: list[dt.date], kept: dict[dt.date, bytes | None]) -> pa.Table:
    """The cached day tables of ``days``: from the manifest rows when every one keeps its table (the
    summaries: one indexed query), else from the day files."""
    name, client_id = request.report.name, request.client.id
    if not all(kept.get(day) is not None for day in days):
        return app.store.read_days(name, client_id, days, request.report.schema)
    tables = [kept_day(kept[day]) for day in days]
    counts = np.array([t.num_rows for t in tables], dtype=np.int64)
    combined = pa.concat_tables(tables).replace_schema_metadata(None)
    dates = np.repeat(np.array(days, dtype="datetime64[D]"), counts)
    return (combined.append_column("client", pa.array(np.full(int(counts.sum()), client_id, dtype=np.int64)))
            .append_column("date", pa.array(dates).cast(pa.date32())))


def read_report(report: str, client: str | int, start: dt.date | str, end: dt.date | str, **options) -> pd.DataFrame:
    """:func:`read_report_arrow` as a pandas DataFrame."""
    return read_report_arrow(report, client, start, end, **options).to_pandas()


def summarize_report(report: str, client: str | int, start: dt.date | str, end: dt.date | str,
                     **options) -> pd.DataFrame:
    """The period as people read it: the days re-aggregated (sums over sums), then presented."""
    definition = get_report(report)
    days = read_report_arrow(report, client, start, end, **options)
    return definition.present(definition.combine(days.drop_columns(["client"])))
