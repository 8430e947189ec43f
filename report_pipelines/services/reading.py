"""Reading reports back: a period is the union of its days.

Closed days come from the report store (cached ones are read as they are; missing ones are computed
and cached on the way, through the same client-day computation the Dagster assets use); the current
local day is computed live from the calls so far and never cached. Reading cached days touches the
clients table, the licences, the cache manifest and the Parquet files, never the events table.

Which days may be computed is the one serving rule (:mod:`report_pipelines.services.serving`): a
client whose licence ended reads its cached days, and a missing day is computed only if it is served.
"""

from __future__ import annotations

import contextlib
import datetime as dt
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import pyarrow as pa
from sqlalchemy import Connection

from report_pipelines.adapters.db.cdr_imports import CallEventChanges
from report_pipelines.adapters.db.engine import transaction_free
from report_pipelines.adapters.db.repositories import CacheManifestRepository, CallEventRepository
from report_pipelines.app import App, default_app
from report_pipelines.domain.cache import KeptRow, SourceStamp, period_digest
from report_pipelines.domain.clients import ClientRecord
from report_pipelines.domain.errors import InvalidInput, NotFound
from report_pipelines.domain.reports import ReportDefinition, get_report
from report_pipelines.domain.timezones import local_date_of, local_day_window, parse_zone
from report_pipelines.services.extracts import (
    ANY_TIME,
    ClientDay,
    ClientDayResult,
    Extractor,
    ExtractTimeout,
    run_client_days,
)
from report_pipelines.services.read_memo import DecodedDay, decode_kept
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
                     now: dt.datetime, *, conn: Connection | None = None, kept: bool = False) -> PeriodRequest:
    """Check every argument, naming the one that is wrong, before anything is read or computed (on
    ``conn`` when given: a caller's checkout). ``kept``: the serving's :class:`KeptPeriod` of the report's
    days ``start..end`` too, from the same query (PostgreSQL; None elsewhere or for dates that are wrong)."""
    definition = get_report(report)
    by_id = isinstance(client, int) and not isinstance(client, bool)
    period = None
    if kept:
        with contextlib.suppress(InvalidInput):  # a wrong date is named below, after the client
            period = (definition.name, _date(start, "start"), _date(end, "end"))
    # One query for the client and its licences, by id or slug, whatever the size of the fleet.
    found = (servings(app.engine, now, client_ids=[client], conn=conn, kept=period) if by_id
             else servings(app.engine, now, slugs=[str(client)], conn=conn, kept=period))
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


@dataclass(frozen=True)
class KeptTables:
    """The manifest's kept day tables of a period's closed days (one statement: by date, None for a row
    that keeps none, no entry for a day without a row), and the decoded tables this process held for the
    rows the statement did not send (by checksum: see :mod:`report_pipelines.services.read_memo`)."""

    rows: dict[dt.date, KeptRow | None] = field(default_factory=dict)
    held: dict[str, DecodedDay] = field(default_factory=dict)
    #: What each row recorded of its source (the staleness check's side), from the same statement, when
    #: asked for (``stamps``); else None.
    stamps: dict[dt.date, SourceStamp] | None = None
    #: The presented period this process held under the key the validation's :class:`KeptPeriod` named
    #: (:func:`open_request` with ``summary``): then nothing else was read.
    summary: pd.DataFrame | None = None

    @staticmethod
    def read(app: App, client_id: int, report: str, days: list[dt.date], *,
             conn: Connection | None = None, stamps: bool = False) -> KeptTables:
        if not days:
            return KeptTables(stamps={} if stamps else None)
        held = app.memo.held(client_id, report, days)
        rows, recorded = CacheManifestRepository(app.engine).day_tables_and_stamps(
            client_id, days[0], days[-1], report, conn=conn, held=held.keys(), stamps=stamps)
        return KeptTables(rows, held, stamps=recorded)


def open_request(app: App, report: str, client: str | int, start: dt.date | str, end: dt.date | str,
                 now: dt.datetime, *, check: Callable[[PeriodRequest], None] | None = None, stamps: bool = False,
                 summary: bool = False) -> tuple[PeriodRequest, KeptTables]:
    """:func:`validate_request` (then ``check``, a front door's own rules) and the manifest's day tables of
    the request's closed days, on one connection: a cached summary's whole database part is one checkout
    and two indexed statements, without a transaction around them. Pass the tables to :func:`prepare_period`
    (``kept``); with ``stamps`` for a ``refresh_stale`` one.

    ``summary``: a caller about to present the period. When the validation's statement says every day is
    kept with the manifest (and none is today) and this process holds the presented period under the
    digest of their checksums, the tables come back with only that frame (``KeptTables.summary``): one
    statement in all, and no :func:`prepare_period` needed (every day is cached, so it has nothing to do)."""
    with transaction_free(app.engine) as conn:
        request = validate_request(app, report, client, start, end, now, conn=conn, kept=summary)
        if check is not None:
            check(request)
        if summary and (frame := _held_summary(app, request)) is not None:
            return request, KeptTables(summary=frame)
        kept = KeptTables.read(app, request.client.id, request.report.name, request.closed_days, conn=conn,
                               stamps=stamps)
    return request, kept


def _summary_key(request: PeriodRequest, digest: str) -> tuple:
    """A presented period's key in the memo: the report, the client, the days and their checksums' digest."""
    return (request.report.name, request.client.id, request.start, request.end, digest)


def _held_summary(app: App, request: PeriodRequest) -> pd.DataFrame | None:
    period = request.serving.kept
    if period is None or request.includes_today or not period.complete(request.start, request.end):
        return None
    return app.memo.summary(_summary_key(request, period.digest), count_miss=False)  # the read counts a miss


class PeriodTimeout(ExtractTimeout):
    """A period request ran out of time; the days it finished stay cached, so asking again is faster."""

    def __init__(self, ready: int, total: int, computed: int, seconds: float) -> None:
        self.ready, self.total, self.computed, self.seconds = ready, total, computed, seconds
        super().__init__(f"deadline: {seconds:g} s passed with {ready} of {total} days ready ({computed} computed "
                         "by this request); they stay cached, so asking again is faster")

    def __reduce__(self):
        return (type(self), (self.ready, self.total, self.computed, self.seconds))


@dataclass
class PeriodDays:
    """A validated period ready to be read: every closed day is in the cache (read as it was, or just
    computed), and today, if asked for, is computed live when read. :meth:`tables` streams the days one
    at a time (one day in memory); :meth:`table` reads them all at once."""

    app: App
    request: PeriodRequest
    now: dt.datetime
    cached: list[dt.date]
    computed: list[dt.date]
    results: list[ClientDayResult] = field(default_factory=list)
    #: The day tables kept with the manifest rows (None: read the day's file), from one query.
    kept: KeptTables = field(default_factory=KeptTables)

    @property
    def live(self) -> bool:
        return self.request.includes_today

    @property
    def days(self) -> list[dt.date]:
        return self.request.closed_days

    def cached_rows(self) -> int:
        """Rows of the closed days, from the manifest (what :meth:`tables` will give before today)."""
        name = self.request.report.name
        entries = CacheManifestRepository(self.app.engine).entries(self.request.client.id, self.request.start,
                                                                  self.request.end, (name,))
        return sum(e.rows for e in entries)

    def _live_table(self) -> pa.Table:
        request = self.request
        client_id = request.client.id
        live = Extractor(self.app).live_day(request.report.name, client_id, request.client.timezone, request.today,
                                            self.now)
        n = live.num_rows
        return (live.append_column("client", pa.array([client_id] * n, pa.int64()))
                .append_column("date", pa.array([request.today] * n, pa.date32())))

    def tables(self) -> Iterator[pa.Table]:
        """The day tables in date order, one at a time (with ``client`` and ``date`` columns), today last."""
        request, store = self.request, self.app.store
        for day in self.days:
            yield store.read_days(request.report.name, request.client.id, [day], request.report.schema)
        if self.live:
            yield self._live_table()

    def summary(self) -> pd.DataFrame:
        """The period re-aggregated (sums over sums) and presented, as ``summarize_report`` gives it. A
        period of closed days whose tables are all kept with the manifest is taken from, or kept in, this
        process's memo, under the checksums of its days (a day recomputed since is another key)."""
        definition, memo = self.request.report, self.app.memo
        key = self._summary_key()
        if key is not None and (frame := memo.summary(key)) is not None:
            return frame
        frame = definition.present(definition.combine(self.table().drop_columns(["client"])))
        if key is not None:
            memo.keep_summary(key, frame)
        return frame

    def _summary_key(self) -> tuple | None:
        rows, days = self.kept.rows, self.days
        if self.live or not days or any(rows.get(day) is None for day in days):
            return None
        return _summary_key(self.request, period_digest(rows[day].checksum for day in days))

    def table(self) -> pa.Table:
        request, store = self.request, self.app.store
        tables = [_closed_days(self.app, request, self.days, self.kept)] if self.days else []
        if self.live:
            tables.append(self._live_table())
        if not tables:
            return store.read_days(request.report.name, request.client.id, [], request.report.schema)
        return pa.concat_tables(tables)


def prepare_period(app: App, request: PeriodRequest, *, now: dt.datetime, timeout_s: float | None = None,
                   workers: int = 1, refresh_stale: bool = False,
                   on_day: Callable[[ClientDayResult], None] | None = None,
                   on_plan: Callable[[int, int], None] | None = None,
                   kept: KeptTables | None = None) -> PeriodDays:
    """Make every closed day of ``request`` cached: missing ones (and, with ``refresh_stale``, ones whose
    calls changed since: one statement over the client's quarter-hours for the period, against what the
    manifest rows ``kept`` read recorded) are computed on the pool in date order, under the client-day
    locks (a day another run is computing is waited for and reused, never computed twice). Past ``timeout_s``: :class:`PeriodTimeout`, and what finished stays cached. ``on_plan`` is told
    (days cached, days to compute) before any is computed, ``on_day`` each computed day's result.

    A client whose licence ended may read its cached days; a day that would need new work is refused
    (naming ``client``) before anything is computed. ``kept``: the day tables :func:`open_request` read
    (else read here).
    """
    name, client_id = request.report.name, request.client.id
    store = app.store
    days = request.closed_days
    # One query: which days have a row, and the day tables kept with them. A day whose table is kept is
    # read from its row; any other needs its file (checked on disk).
    if kept is None:
        kept = KeptTables.read(app, client_id, name, days)
    rows = kept.rows
    missing = [d for d in days if d not in rows or (rows[d] is None and not store.exists(name, client_id, d))]
    unserved = [d for d in missing if not request.serving.serves(d)]
    if unserved or (request.includes_today and not request.serving.serves(request.today)):
        what = f"{len(unserved)} day(s) of this period ({unserved[0]}...) are not cached" if unserved else "today"
        raise InvalidInput("client", f"{request.client.slug!r} holds no reports licence for those days: its cached "
                                     f"days can be read, but {what} would need new work")
    if refresh_stale:
        if kept.stamps is None:  # read without them: read again with them
            kept = KeptTables.read(app, client_id, name, days, stamps=True)
        events = CallEventRepository(app.engine)
        zone = parse_zone(request.client.timezone)
        changes = (CallEventChanges(app.engine).latest([client_id], request.start, request.end)
                   if request.report.extra_inputs else {})
        cached = [d for d in days if d not in missing and request.serving.serves(d)]
        sources = events.windows_sources(client_id, [local_day_window(d, zone) for d in cached])
        stale = [d for d, source in zip(cached, sources, strict=True)
                 if not kept.stamps[d].is_fresh(source, changes.get((client_id, d)))]
        missing = sorted(set(missing) | set(stale))
    results: list[ClientDayResult] = []
    if on_plan:
        on_plan(len(days) - len(missing), len(missing))

    def done(result: ClientDayResult) -> None:
        results.append(result)
        if on_day:
            on_day(result)

    if missing:
        weights = {}
        if workers > 1 and len(missing) > 1:
            zone = parse_zone(request.client.timezone)
            counts = CallEventRepository(app.engine)
            weights = {d: counts.window_counts([client_id], *local_day_window(d, zone)).get(client_id, 0)
                       for d in missing}
        tasks = [ClientDay(client_id, request.client.timezone, d, weight=weights.get(d, 0)) for d in missing]
        try:
            run_client_days(app, tasks, workers=workers, now=now, reuse_since=ANY_TIME, timeout_s=timeout_s,
                            on_result=done, order="given")
        except ExtractTimeout:
            ready = len(days) - len(missing) + len(results)
            raise PeriodTimeout(ready, len(days) + request.includes_today, len(results), timeout_s or 0.0) from None
        kept = KeptTables.read(app, client_id, name, days)
    computed = sorted(r.day for r in results if r.status == "computed")  # reused: another run computed it
    return PeriodDays(app, request, now, cached=[d for d in days if d not in set(computed)], computed=computed,
                      results=results, kept=kept)


def _closed_days(app: App, request: PeriodRequest, days: list[dt.date], kept: KeptTables) -> pa.Table:
    """The cached day tables of ``days``: from the manifest rows when every one keeps its table (the
    summaries: one indexed query; a table this process held is not sent again, nor decoded again), else
    from the day files."""
    name, client_id = request.report.name, request.client.id
    rows = kept.rows
    if not all(rows.get(day) is not None for day in days):
        return app.store.read_days(name, client_id, days, request.report.schema)
    memo = app.memo
    decoded: list[DecodedDay] = []
    for day in days:
        row = rows[day]
        if row.data is None:  # not sent: this process held it when it asked (the reference kept since)
            decoded.append(kept.held[row.checksum])
            continue
        table = decode_kept(row.data, memo.schemas)
        memo.keep_day(client_id, name, day, row.checksum, table, len(row.data))
        decoded.append(table)
    counts = np.array([sum(b.num_rows for b in day.batches) for day in decoded], dtype=np.int64)
    combined = pa.Table.from_batches([b for day in decoded for b in day.batches], decoded[0].schema
                                     ).replace_schema_metadata(None)
    dates = np.repeat(np.array(days, dtype="datetime64[D]"), counts)
    return (combined.append_column("client", pa.array(np.full(int(counts.sum()), client_id, dtype=np.int64)))
            .append_column("date", pa.array(dates).cast(pa.date32())))


def read_report_arrow(report: str, client: str | int, start: dt.date | str, end: dt.date | str, *,
                      app: App | None = None, now: dt.datetime | None = None,
                      timeout_s: float | None = None, workers: int = 1) -> pa.Table:
    """The day tables of ``report`` for ``client`` (slug or id) over local days ``start..end``.

    One row set per day, with ``client`` and ``date`` columns, days ascending. Closed days missing
    from the cache are computed and cached first (within ``timeout_s``); today, if asked for, is
    computed live from the calls so far. ``app`` defaults to one built from the environment.

    ``workers > 1`` computes missing days on that many processes; like any multiprocessing code,
    a script that asks for it must keep its top-level code under ``if __name__ == "__main__":``.
    The Dagster assets, not this call, are where bulk computation belongs. This is the building block:
    the public API (``report_pipelines.read_report`` ...) goes through the period service, which also
    records the request in the usage log.
    """
    app = app or default_app()
    now = now or app.now()
    request, kept = open_request(app, report, client, start, end, now)
    return prepare_period(app, request, now=now, timeout_s=timeout_s, workers=workers, kept=kept).table()


def read_report(report: str, client: str | int, start: dt.date | str, end: dt.date | str, **options) -> pd.DataFrame:
    """:func:`read_report_arrow` as a pandas DataFrame."""
    return read_report_arrow(report, client, start, end, **options).to_pandas()


def summarize_report(report: str, client: str | int, start: dt.date | str, end: dt.date | str,
                     **options) -> pd.DataFrame:
    """The period as people read it: the days re-aggregated (sums over sums), then presented."""
    app = options.pop("app", None) or default_app()
    now = options.pop("now", None) or app.now()
    request, kept = open_request(app, report, client, start, end, now, summary=not options.get("refresh_stale"))
    if kept.summary is not None:  # held by this process under the checksums the validation named
        return kept.summary
    return prepare_period(app, request, now=now, kept=kept, **options).summary()
