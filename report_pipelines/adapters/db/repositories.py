"""Repositories: the only place that speaks SQL about clients and calls."""

from __future__ import annotations

import atexit
import contextlib
import datetime as dt
import io
import json
import logging
import os
import threading
import time
import weakref
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
from psycopg2.extras import execute_values
from sqlalchemy import (
    BigInteger,
    ColumnElement,
    Connection,
    Engine,
    Integer,
    Select,
    String,
    bindparam,
    case,
    delete,
    event,
    func,
    null,
    or_,
    select,
    text,
    update,
)
from sqlalchemy import column as sa_column
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from report_pipelines.adapters.db import call_quarters
from report_pipelines.adapters.db.bulk import CALL_EVENT_SCHEMA, libpq_uri
from report_pipelines.adapters.db.call_quarters import on_quarter, quarter_of, windows_query
from report_pipelines.adapters.db.models import CALL_EVENT_COLUMNS, CacheEntry, CallEvent, CallEventQuarterRow, Client
from report_pipelines.adapters.db.prepared import prepared
from report_pipelines.adapters.db.types import UTCDateTime, one_of
from report_pipelines.domain.cache import CachedDay, KeptRow, SourceStamp, SourceState
from report_pipelines.domain.clients import ClientRecord, ClientSpec
from report_pipelines.domain.errors import Conflict, NotFound
from report_pipelines.domain.timezones import local_date_of, parse_zone

UTC = dt.UTC
log = logging.getLogger(__name__)


def _record(row) -> ClientRecord:
    return ClientRecord(id=row.id, slug=row.slug, name=row.name, timezone=row.timezone, active_from=row.active_from)


class ClientRepository:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def add(self, spec: ClientSpec, now: dt.datetime | None = None) -> ClientRecord:
        """Store a new client, stamped ``now`` (the application's clock; default the wall clock)."""
        now = now or dt.datetime.now(UTC)
        active_from = spec.active_from or local_date_of(now, parse_zone(spec.timezone))
        with self.engine.begin() as conn:
            if conn.execute(select(Client.id).where(Client.slug == spec.slug)).first():
                raise Conflict("slug", f"a client with slug {spec.slug!r} already exists")
            try:
                new_id = conn.execute(
                    Client.__table__.insert()
                    .values(slug=spec.slug, name=spec.name, timezone=spec.timezone, active_from=active_from,
                            created_at=now, updated_at=now)
                    .returning(Client.id)
                ).scalar_one()
            except IntegrityError as exc:  # a concurrent add won the race
                raise Conflict("slug", f"a client with slug {spec.slug!r} already exists") from exc
        return ClientRecord(id=new_id, slug=spec.slug, name=spec.name, timezone=spec.timezone, active_from=active_from)

    def get_by_slug(self, slug: str) -> ClientRecord:
        with self.engine.connect() as conn:
            row = conn.execute(select(Client).where(Client.slug == slug)).first()
        if row is None:
            raise NotFound("client", f"no client with slug {slug!r}")
        return _record(row)

    def get(self, client_id: int) -> ClientRecord:
        with self.engine.connect() as conn:
            row = conn.execute(select(Client).where(Client.id == client_id)).first()
        if row is None:
            raise NotFound("client", f"no client with id {client_id}")
        return _record(row)

    def in_zones(self, timezones: Iterable[str]) -> dict[str, list[ClientRecord]]:
        """The clients of each of these zones, by id, in one query (a zone without clients: an empty list)."""
        wanted = sorted(set(timezones))
        found: dict[str, list[ClientRecord]] = {zone: [] for zone in wanted}
        if wanted:
            with self.engine.connect() as conn:
                for row in conn.execute(select(Client).where(Client.timezone.in_(wanted)).order_by(Client.id)):
                    found[row.timezone].append(_record(row))
        return found

    def zones(self) -> list[str]:
        """The distinct time zones clients use."""
        with self.engine.connect() as conn:
            return list(conn.scalars(select(Client.timezone).distinct().order_by(Client.timezone)))

    def extend_active_from(self, client_id: int, day: dt.date, now: dt.datetime | None = None) -> None:
        """Move the client's first report date back to ``day`` if it is earlier (imported history)."""
        with self.engine.begin() as conn:
            conn.execute(
                update(Client)
                .where(Client.id == client_id, Client.active_from > day)
                .values(active_from=day, updated_at=now or dt.datetime.now(UTC))
            )

    def list(self) -> list[ClientRecord]:
        with self.engine.connect() as conn:
            rows = conn.execute(select(Client).order_by(Client.slug)).all()
        return [_record(r) for r in rows]


@dataclass(frozen=True, slots=True)
class ClientWatermark:
    """What the events table holds for one client."""

    client_id: int
    slug: str
    timezone: str
    events: int
    latest_started_at: dt.datetime | None
    ingest_watermark: dt.datetime | None


#: A read expected to bring this many calls opens the process's ADBC connection (~40 ms to open; then
#: ~0.8 us a call less than the CSV COPY: a 114k-call day read in 108 ms instead of 197).
ARROW_READ_MIN_ROWS = 50_000
_clock = time.monotonic  # the ADBC reader's pause (a test moves it)


def _calls_query(ids: list[int], start: dt.datetime, end: dt.datetime,
                 columns: Sequence[str] = CALL_EVENT_COLUMNS,
                 order: str = "client_id, started_at, pbx_call_id") -> str:
    """``columns`` of the calls of ``ids`` started in ``[start, end)``, as SQL text with its values written in:
    ADBC sends a query that has no parameters as ``COPY (...) TO STDOUT (FORMAT binary)``, one with
    parameters row by row. The values are integers and instants formatted here, never text from outside."""
    id_list = ",".join(str(int(i)) for i in ids)
    return (f"SELECT {', '.join(columns)} FROM call_events WHERE client_id = ANY('{{{id_list}}}'::int[]) "
            f"AND started_at >= '{start.astimezone(UTC).isoformat()}'::timestamptz "
            f"AND started_at < '{end.astimezone(UTC).isoformat()}'::timestamptz ORDER BY {order}")


def _by_client(table: pa.Table, ids: list[int]):
    """``(client id, its rows)`` for each of ``ids`` (ascending), from ``table`` ordered by client: slices, no copy."""
    found = table.column("client_id").to_numpy()
    bounds = np.searchsorted(found, np.asarray(ids, dtype=np.int64), side="left").tolist() + [table.num_rows]
    return ((cid, table.slice(bounds[i], bounds[i + 1] - bounds[i])) for i, cid in enumerate(ids))


#: The call ids the checks fingerprint, with their client.
_CALL_IDS_SCHEMA = pa.schema([("client_id", pa.int64()), ("pbx_call_id", pa.string())])


class _ArrowReader:
    """This process's ADBC connection to an engine's database, for the calls' reads (issue 14).

    ``COPY ... (FORMAT binary)`` decoded by the driver into Arrow is ~1.8x the CSV ``COPY`` read by Arrow's
    CSV reader, but an ADBC connection costs ~40 ms to open: it is opened by the first read expected to be
    big and kept for every later read of the process (a worker's batches, an API server's live days).
    One read at a time (a read that finds it busy takes the CSV path); any error closes it and that read
    takes the CSV path (which raises if the database is really gone), three in a row pause it for a
    minute; the engine's ``dispose`` closes
    it, and so does the process's exit; a forked child forgets its parent's without closing it (the
    socket is the parent's)."""

    _by_engine: weakref.WeakKeyDictionary[Engine, _ArrowReader] = weakref.WeakKeyDictionary()
    _registry_lock = threading.Lock()
    _inherited: list[object] = []  # a parent's connections in a forked child: never used, never closed
    #: After this many failures in a row, the CSV path alone for PAUSE_S (the database may be restarting).
    MAX_FAILURES = 3
    PAUSE_S = 60.0

    def __init__(self, uri: str) -> None:
        self.uri = uri
        self.lock = threading.Lock()
        self.conn = None
        self.failures = 0
        self.paused_until = 0.0

    @classmethod
    def of(cls, engine: Engine, *, open_for: int) -> _ArrowReader | _NoReader:
        reader = cls._by_engine.get(engine)
        if reader is None:
            if open_for < ARROW_READ_MIN_ROWS:
                return _NO_READER
            with cls._registry_lock:
                reader = cls._by_engine.get(engine)
                if reader is None:
                    reader = cls(libpq_uri(engine))
                    cls._by_engine[engine] = reader
                    event.listen(engine, "engine_disposed", lambda _engine: reader.close())
        return reader

    def read(self, sql: str, schema: pa.Schema) -> pa.Table | None:
        """The query's rows as Arrow (its columns of ``schema``, cast to it), or None: take the CSV path."""
        if _clock() < self.paused_until or not self.lock.acquire(blocking=False):
            return None
        try:
            if self.conn is None:
                import adbc_driver_postgresql.dbapi as adbc  # a native driver: loaded when first used

                self.conn = adbc.connect(self.uri)
            with self.conn.cursor() as cursor:
                cursor.execute(sql)
                table = cursor.fetch_arrow_table()
            self.conn.rollback()  # a read: its snapshot released, nothing to commit
            self.failures = 0
            return table.select(schema.names).cast(schema)
        except Exception as error:
            self.failures += 1
            if self.failures >= self.MAX_FAILURES:
                self.failures, self.paused_until = 0, _clock() + self.PAUSE_S
            log.warning("reading calls through ADBC failed (%s: %s); the CSV COPY answers this read",
                        type(error).__name__, str(error)[:200])
            self._close_locked()
            return None
        finally:
            self.lock.release()

    def close(self) -> None:
        with self.lock:
            self._close_locked()

    def _close_locked(self) -> None:
        conn, self.conn = self.conn, None
        if conn is not None:
            with contextlib.suppress(Exception):
                conn.close()

    @classmethod
    def close_all(cls) -> None:
        """At exit: each connection ended by the protocol, not by the process dying under it."""
        for reader in list(cls._by_engine.values()):
            reader.close()

    @classmethod
    def _forget_after_fork(cls) -> None:
        for reader in list(cls._by_engine.values()):
            if reader.conn is not None:
                cls._inherited.append(reader.conn)
            reader.conn, reader.lock = None, threading.Lock()
        cls._registry_lock = threading.Lock()


class _NoReader:
    def read(self, sql: str, schema: pa.Schema) -> None:
        return None


_NO_READER = _NoReader()
atexit.register(_ArrowReader.close_all)
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_ArrowReader._forget_after_fork)


class CallEventRepository:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def watermarks(self) -> list[ClientWatermark]:
        """Per client: event count, latest call start and newest ingest instant (the watermark). The count
        and the watermark from the clients' quarter-hours, the latest start by one backward step of the
        ``(client_id, started_at)`` index per client: no pass over the calls (it was one, ~0.2 s a million)."""
        quarter = CallEventQuarterRow
        stats = (
            select(
                quarter.client_id,
                func.sum(quarter.calls).label("events"),
                func.max(quarter.newest_ingest).label("watermark"),
            )
            .group_by(quarter.client_id)
            .subquery()
        )
        latest = select(func.max(CallEvent.started_at)).where(CallEvent.client_id == Client.id).scalar_subquery()
        query = (
            select(Client.id, Client.slug, Client.timezone, stats.c.events, latest.label("latest"), stats.c.watermark)
            .outerjoin(stats, stats.c.client_id == Client.id)
            .order_by(Client.slug)
        )
        with self.engine.connect() as conn:
            rows = conn.execute(query).all()
        return [
            ClientWatermark(
                client_id=r.id,
                slug=r.slug,
                timezone=r.timezone,
                events=int(r.events or 0),
                latest_started_at=_as_utc(r.latest),
                ingest_watermark=_as_utc(r.watermark),
            )
            for r in rows
        ]

    def day_calls(self, client_id: int, start: dt.datetime, end: dt.datetime) -> pa.Table:
        """The client's calls that started in ``[start, end)``, as an Arrow table of CALL_EVENT_SCHEMA."""
        return self.zone_day_calls([client_id], start, end)[client_id]

    def zone_day_calls(self, client_ids: Sequence[int], start: dt.datetime, end: dt.datetime, *,
                       expected_rows: int = 0) -> dict[int, pa.Table]:
        """Each client's calls that started in ``[start, end)`` (one local day of one zone), in one query.

        Ordered by start and PBX call id within a client, so a client's table is the same whether it is
        read alone or with its zone. PostgreSQL sends the rows by ``COPY``: in binary straight into Arrow
        on this process's ADBC connection (:class:`_ArrowReader`: opened by the first read expected to
        bring ``ARROW_READ_MIN_ROWS``, then used by every read), else as CSV into Arrow's CSV reader;
        SQLite hands them to Arrow column by column. None makes one Python object per row and column.
        """
        ids = sorted(set(client_ids))
        if not ids:
            return {}
        if self.engine.dialect.name == "postgresql":
            table = self._copy(_calls_query(ids, start, end), CALL_EVENT_SCHEMA, expected_rows)
        else:
            table = self._calls_sqlite(ids, start, end)
        return dict(_by_client(table, ids))

    def _calls_sqlite(self, ids: list[int], start: dt.datetime, end: dt.datetime) -> pa.Table:
        columns = ", ".join(CALL_EVENT_COLUMNS)
        marks = ", ".join("?" for _ in ids)
        raw = self.engine.raw_connection()
        try:
            cursor = raw.cursor()
            cursor.execute(
                f"SELECT {columns} FROM call_events WHERE client_id IN ({marks}) AND started_at >= ? AND started_at < ? "
                "ORDER BY client_id, started_at, pbx_call_id",
                (*ids, _sqlite_text(start), _sqlite_text(end)),
            )
            rows = cursor.fetchall()
        finally:
            raw.close()
        values = list(zip(*rows, strict=True)) if rows else [[] for _ in CALL_EVENT_COLUMNS]
        arrays = []
        for name, column in zip(CALL_EVENT_COLUMNS, values, strict=True):
            field = CALL_EVENT_SCHEMA.field(name)
            if pa.types.is_timestamp(field.type):
                arrays.append(pa.array(column, type=pa.string()).cast(pa.timestamp("us")).cast(field.type))
            else:
                arrays.append(pa.array(column, type=field.type))
        return pa.Table.from_arrays(arrays, schema=CALL_EVENT_SCHEMA)

    def _copy(self, sql: str, schema: pa.Schema, expected_rows: int) -> pa.Table:
        """``sql``'s rows as Arrow ``schema``: on the process's ADBC connection if it is open (or this read is
        expected to be big enough to open it), else by the CSV ``COPY``."""
        table = _ArrowReader.of(self.engine, open_for=expected_rows).read(sql, schema)
        return table if table is not None else self._copy_csv(sql, schema)

    def _copy_csv(self, sql: str, schema: pa.Schema) -> pa.Table:
        """``COPY (sql) TO STDOUT`` as CSV, read by Arrow's CSV reader into ``schema`` (its columns' order)."""
        raw = self.engine.raw_connection()
        try:
            cursor = raw.cursor()
            cursor.execute("SET TIME ZONE 'UTC'")  # the CSV's instants in UTC
            buffer = io.BytesIO()
            cursor.copy_expert(f"COPY ({sql}) TO STDOUT WITH (FORMAT csv, HEADER true)", buffer)
            raw.rollback()
        finally:
            raw.close()
        buffer.seek(0)
        return pacsv.read_csv(
            buffer,
            convert_options=pacsv.ConvertOptions(
                column_types=schema, strings_can_be_null=True, quoted_strings_can_be_null=False
            ),
        ).select(schema.names).cast(schema)

    def window_counts(self, client_ids: list[int], start: dt.datetime, end: dt.datetime) -> dict[int, int]:
        """Calls started in ``[start, end)`` per client (clients of one zone share a local-day window): from
        their quarter-hours when the window is on quarter-hours (a local day is), else counted."""
        if not client_ids:
            return {}
        if on_quarter(start) and on_quarter(end):
            return {cid: state.rows for cid, state in self.day_sources(client_ids, start, end).items()}
        query = (
            select(CallEvent.client_id, func.count())
            .where(CallEvent.client_id.in_(client_ids), CallEvent.started_at >= start, CallEvent.started_at < end)
            .group_by(CallEvent.client_id)
        )
        with self.engine.connect() as conn:
            return {client_id: int(n) for client_id, n in conn.execute(query)}

    def day_call_ids(self, client_id: int, start: dt.datetime, end: dt.datetime) -> list[str]:
        """The PBX call ids of the client's calls started in ``[start, end)`` (the checks fingerprint them)."""
        query = select(CallEvent.pbx_call_id).where(
            CallEvent.client_id == client_id, CallEvent.started_at >= start, CallEvent.started_at < end)
        with self.engine.connect() as conn:
            return list(conn.scalars(query))

    def zone_day_call_ids(self, client_ids: Sequence[int], start: dt.datetime, end: dt.datetime, *,
                          expected_rows: int = 0) -> dict[int, pa.Array]:
        """:meth:`day_call_ids` of several clients of one zone-day, in one query (clients without calls absent),
        as Arrow text arrays: the checks fingerprint them with no Python object per call. PostgreSQL reads
        them as :meth:`zone_day_calls` reads the calls."""
        ids = sorted(set(client_ids))
        if not ids:
            return {}
        if self.engine.dialect.name == "postgresql":
            table = self._copy(_calls_query(ids, start, end, columns=_CALL_IDS_SCHEMA.names, order="client_id"),
                               _CALL_IDS_SCHEMA, expected_rows)
        else:
            query = select(CallEvent.client_id, CallEvent.pbx_call_id).where(
                CallEvent.client_id.in_(ids), CallEvent.started_at >= start, CallEvent.started_at < end
            ).order_by(CallEvent.client_id)
            with self.engine.connect() as conn:
                rows = conn.execute(query).all()
            table = pa.table([pa.array([r[0] for r in rows], pa.int64()), pa.array([r[1] for r in rows], pa.string())],
                             schema=_CALL_IDS_SCHEMA)
        return {cid: rows.column("pbx_call_id").combine_chunks() for cid, rows in _by_client(table, ids) if rows.num_rows}

    def day_sources(self, client_ids: Sequence[int], start: dt.datetime, end: dt.datetime) -> dict[int, SourceState]:
        """:meth:`day_source` of several clients of one zone-day, in one query (clients without calls
        absent): from their quarter-hours (``call_event_quarters``) when the window is on quarter-hours,
        as local days are, else from the calls."""
        if not client_ids:
            return {}
        if on_quarter(start) and on_quarter(end):
            row = CallEventQuarterRow
            query = (select(row.client_id, func.sum(row.calls), func.max(row.newest_ingest))
                     .where(row.client_id.in_(list(client_ids)), row.quarter >= quarter_of(start),
                            row.quarter < quarter_of(end))
                     .group_by(row.client_id))
        else:
            query = (select(CallEvent.client_id, func.count(), func.max(CallEvent.ingested_at))
                     .where(CallEvent.client_id.in_(list(client_ids)), CallEvent.started_at >= start,
                            CallEvent.started_at < end)
                     .group_by(CallEvent.client_id))
        with self.engine.connect() as conn:
            return {cid: SourceState(rows=int(n), watermark=_as_utc(newest)) for cid, n, newest in conn.execute(query)}

    def day_source(self, client_id: int, start: dt.datetime, end: dt.datetime) -> SourceState:
        """Count and newest ingest of the client's calls started in ``[start, end)``."""
        return self.windows_sources(client_id, [(start, end)])[0]

    def windows_sources(self, client_id: int, windows: Sequence[tuple[dt.datetime, dt.datetime]]) -> list[SourceState]:
        """:meth:`day_source` of each window (a period's days), in one statement over the client's
        quarter-hours when every window is on quarter-hours (local days are), else counted from the calls."""
        if not windows:
            return []
        if not all(on_quarter(start) and on_quarter(end) for start, end in windows):
            return [self.day_source_from_calls(client_id, start, end) for start, end in windows]
        query = text(windows_query(client_id, windows)).columns(
            sa_column("i", Integer), sa_column("calls", BigInteger), sa_column("newest", UTCDateTime()))
        with self.engine.connect() as conn:
            found = {int(i): SourceState(rows=int(n or 0), watermark=_as_utc(newest))
                     for i, n, newest in conn.execute(query)}
        return [found[i] for i in range(len(windows))]

    def quarter_drift(self) -> dict[int, int]:
        """Per client, how many of its quarter-hours (``call_event_quarters``) differ from its calls: none
        unless something wrote ``call_events`` without keeping them (a hand-made ``INSERT``). One pass over
        every call: an operator's check (``db check-quarters``), not a request path."""
        with self.engine.connect() as conn:
            rows = conn.exec_driver_sql(call_quarters.drift_statement(self.engine.dialect.name)).all()
        drift: dict[int, int] = {}
        for client_id, _ in rows:
            drift[int(client_id)] = drift.get(int(client_id), 0) + 1
        return drift

    def rebuild_quarters(self, client_ids: Sequence[int]) -> None:
        """Every quarter-hour of these clients recomputed from their calls, in one transaction."""
        if not client_ids:
            return
        with self.engine.begin() as conn:
            call_quarters.recompute(self.engine.dialect.name, conn.exec_driver_sql,
                                    lambda sql: conn.exec_driver_sql(sql).all(), client_ids)

    def day_source_from_calls(self, client_id: int, start: dt.datetime, end: dt.datetime) -> SourceState:
        """:meth:`day_source` counted from the calls themselves (index and heap): the reference the
        quarter-hours are checked against, and the way for a window that is not on quarter-hours."""
        query = select(func.count(), func.max(CallEvent.ingested_at)).where(
            CallEvent.client_id == client_id, CallEvent.started_at >= start, CallEvent.started_at < end
        )
        with self.engine.connect() as conn:
            count, newest = conn.execute(query).one()
        return SourceState(rows=int(count), watermark=_as_utc(newest))

    def ingested_since(self, after: dt.datetime) -> list[tuple[int, dt.datetime, dt.datetime]]:
        """What arrived after ``after``: ``(client_id, 15-minute bucket start, newest ingested_at)``.

        Calls are grouped by the UTC quarter-hour they started in: every zone's offset and DST
        transition falls on a quarter-hour, so each bucket lies inside one local day of its client,
        and the result stays small (at most 96 rows per client-day) however many calls arrived.
        """
        if self.engine.dialect.name == "postgresql":
            bucket = func.floor(func.extract("epoch", CallEvent.started_at) / 900).cast(BigInteger)
        else:
            bucket = func.cast(func.strftime("%s", CallEvent.started_at), Integer) / 900
        query = (
            select(CallEvent.client_id, bucket.label("bucket"), func.max(CallEvent.ingested_at))
            .where(CallEvent.ingested_at > after)
            .group_by(CallEvent.client_id, bucket)
        )
        with self.engine.connect() as conn:
            return [
                (client_id, dt.datetime.fromtimestamp(int(b) * 900, UTC), _as_utc(newest))
                for client_id, b, newest in conn.execute(query)
            ]

    def newest_ingest(self) -> dt.datetime | None:
        with self.engine.connect() as conn:
            return _as_utc(conn.execute(select(func.max(CallEvent.ingested_at))).scalar_one())

    def count(self, client_id: int) -> int:
        with self.engine.connect() as conn:
            return int(conn.execute(select(func.count()).where(CallEvent.client_id == client_id)).scalar_one())


class AgentIntervalRepository:
    """The agent sessions and pauses imported from queue_logs (``queue_agent_sessions``,
    ``queue_agent_pauses``), as the ``agent_availability`` report reads them."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def zone_day_intervals(self, client_ids: Sequence[int], start: dt.datetime, end: dt.datetime) -> dict[int, pa.Table]:
        """Each client's sessions and pauses that overlap or touch ``[start, end]`` (started before
        ``end``; ended at or after ``start``, or still open), one table of ``AGENT_INTERVAL_SCHEMA``
        per client (every client given, empty when it has none), in two queries.

        An interval that merely ends at ``start`` is included so that an agent's back-to-back
        intervals across ``start`` are seen as one (the report counts a session on the day it began).
        Ordered by kind, agent, start and queue, so a client's table does not depend on the others."""
        from report_pipelines.adapters.db.models import QueueAgentPauseRow, QueueAgentSessionRow
        from report_pipelines.domain.queue_log import AGENT_INTERVAL_SCHEMA

        ids = sorted(set(client_ids))
        rows: dict[int, list[tuple]] = {cid: [] for cid in ids}
        if ids:
            with self.engine.connect() as conn:
                for kind, model in (("pause", QueueAgentPauseRow), ("session", QueueAgentSessionRow)):
                    reason = model.reason if model is QueueAgentPauseRow else None
                    query = select(model.client_id, model.queue, model.agent, model.started_at, model.ended_at,
                                   *([reason] if reason is not None else [])).where(
                        model.client_id.in_(ids), model.started_at < end,
                        or_(model.ended_at.is_(None), model.ended_at >= start),
                    ).order_by(model.client_id, model.agent, model.started_at, model.queue)
                    for r in conn.execute(query):
                        rows[r[0]].append((kind, r[1], r[2], _as_utc(r[3]), _as_utc(r[4]), r[5] if reason is not None else None))
        names = AGENT_INTERVAL_SCHEMA.names
        return {cid: pa.Table.from_pylist([dict(zip(names, row, strict=True)) for row in found], schema=AGENT_INTERVAL_SCHEMA)
                for cid, found in rows.items()}


def _sqlite_text(instant: dt.datetime) -> str:
    """An instant as SQLite stores it (naive UTC text, see UTCDateTime)."""
    return instant.astimezone(UTC).replace(tzinfo=None).isoformat(sep=" ", timespec="microseconds")


def _day_tables(held: ColumnElement[bool], stamps: bool) -> Select:
    return select(
        CacheEntry.local_date, CacheEntry.checksum, CacheEntry.day_table.is_not(None),
        case((held, null()), else_=CacheEntry.day_table),
        *((CacheEntry.source_rows, CacheEntry.source_watermark, CacheEntry.computed_at) if stamps else ()),
    ).where(CacheEntry.client_id == bindparam("client_id"), CacheEntry.report == bindparam("report"),
            CacheEntry.local_date >= bindparam("first"), CacheEntry.local_date <= bindparam("last"))


#: Every summary read runs it: built once. A table whose checksum the reader names as held is not sent
#: (its row still says that it keeps one). On PostgreSQL the checksums are one array parameter
#: (``= ANY``): an expanding ``IN`` of 30 is rewritten by SQLAlchemy at each execution (1.13-1.16x, in turns).
#: With ``stamps``, what each row recorded of its source too (a period request's staleness check; three
#: more columns cost a read ~0.04 ms, ~4 % of a summary read again, so a read that needs none has its own).
_DAY_TABLES = {(pg, stamps): _day_tables(one_of(CacheEntry.checksum, "held", String, arrays=pg), stamps)
               for pg in (False, True) for stamps in (False, True)}


class CacheManifestRepository:
    """The cache manifest: one row per (report, client, local day)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def replace(self, entries: list[CachedDay]) -> None:
        """Write entries, replacing any existing row of the same (report, client, day): one upsert
        (``INSERT ... ON CONFLICT DO UPDATE`` on the manifest's unique key) for all of them."""
        if not entries:
            return
        rows = [{
            "report": e.report, "client_id": e.client_id, "local_date": e.local_date, "path": e.path,
            "rows": e.rows, "bytes": e.bytes, "checksum": e.checksum, "source_rows": e.source_rows,
            "source_checksum": e.source_checksum, "source_watermark": e.source_watermark,
            "rejected_rows": e.rejected_rows, "rejected_reasons": json.dumps(e.rejected_reasons, sort_keys=True),
            "computed_at": e.computed_at, "run_id": e.run_id, "day_table": e.day_table,
        } for e in entries]
        keys = ("report", "client_id", "local_date")
        names = list(rows[0])
        with self.engine.begin() as conn:
            if conn.dialect.name == "postgresql":
                # one multi-row VALUES statement per 1,000 rows (the driver's executemany is a round
                # trip per row: ~4 ms a client-day of eight reports); instants checked and converted
                # by the columns' own type, as SQLAlchemy would
                instant = UTCDateTime()
                for row in rows:
                    for name in ("computed_at", "source_watermark"):
                        row[name] = instant.process_bind_param(row[name], conn.dialect)
                updates = ", ".join(f"{n} = EXCLUDED.{n}" for n in names if n not in keys)
                sql = (f"INSERT INTO {CacheEntry.__tablename__} ({', '.join(names)}) VALUES %s "
                       f"ON CONFLICT ({', '.join(keys)}) DO UPDATE SET {updates}")
                cursor = conn.connection.dbapi_connection.cursor()
                execute_values(cursor, sql, [tuple(row[n] for n in names) for row in rows], page_size=1000)
                return
            statement = sqlite_insert(CacheEntry.__table__)
            conn.execute(statement.on_conflict_do_update(
                index_elements=list(keys), set_={name: statement.excluded[name] for name in names if name not in keys}),
                rows)

    def forget(self, client_id: int, day: dt.date, reports: tuple[str, ...]) -> None:
        """Delete the rows of these reports for one client-day (before their files are replaced)."""
        self.forget_many([client_id], day, reports)

    def forget_many(self, client_ids: Sequence[int], day: dt.date, reports: tuple[str, ...]) -> None:
        """Delete the rows of these reports for these clients' ``day``, in one transaction."""
        with self.engine.begin() as conn:
            conn.execute(delete(CacheEntry).where(
                CacheEntry.client_id.in_(list(client_ids)), CacheEntry.local_date == day,
                CacheEntry.report.in_(reports)))

    def entries(self, client_id: int, first: dt.date, last: dt.date,
                reports: tuple[str, ...] | None = None) -> list[CachedDay]:
        """The client's manifest rows for local dates ``first..last`` (inclusive)."""
        query = select(CacheEntry).where(
            CacheEntry.client_id == client_id, CacheEntry.local_date >= first, CacheEntry.local_date <= last)
        if reports is not None:
            query = query.where(CacheEntry.report.in_(reports))
        with Session(self.engine) as session:
            return [_cached(row) for row in session.scalars(query.order_by(CacheEntry.local_date, CacheEntry.report))]

    def day_tables(self, client_id: int, first: dt.date, last: dt.date, report: str, *,
                   conn: Connection | None = None, held: Collection[str] = ()) -> dict[dt.date, KeptRow | None]:
        """The day tables kept with the rows of ``report`` for the client's dates ``first..last``, with
        their checksums (None for a row that holds none: read its file); dates without a row are absent.
        A table whose checksum is in ``held`` (the reader has it decoded) comes without its bytes. On
        ``conn`` when given (a caller's checkout: the read's validation and this in one)."""
        return self.day_tables_and_stamps(client_id, first, last, report, conn=conn, held=held, stamps=False)[0]

    def day_tables_and_stamps(self, client_id: int, first: dt.date, last: dt.date, report: str, *,
                              conn: Connection | None = None, held: Collection[str] = (), stamps: bool = True
                              ) -> tuple[dict[dt.date, KeptRow | None], dict[dt.date, SourceStamp] | None]:
        """:meth:`day_tables`, and (``stamps``; else None) what each of those rows recorded of its source
        (a period request's staleness check), from the same statement."""
        params = {"client_id": client_id, "report": report, "first": first, "last": last, "held": list(held)}
        query = _DAY_TABLES[(self.engine.dialect.name == "postgresql", stamps)]
        tables: dict[dt.date, KeptRow | None] = {}
        recorded: dict[dt.date, SourceStamp] = {}
        with contextlib.nullcontext(conn) if conn is not None else self.engine.connect() as conn:
            for day, checksum, kept, blob, *source in prepared(query).execute(conn, params):
                tables[day] = KeptRow(checksum, bytes(blob) if blob is not None else None) if kept else None
                if stamps:
                    recorded[day] = SourceStamp(*source)
        return tables, recorded if stamps else None

    def all_entries(self) -> list[CachedDay]:
        """Every row (the repair pass compares them with the files)."""
        with Session(self.engine) as session:
            return [_cached(row) for row in session.scalars(select(CacheEntry))]

    def entries_for_day(self, client_ids: list[int], day: dt.date) -> list[CachedDay]:
        """Every report's row for ``day`` for these clients (one partition's clients)."""
        if not client_ids:
            return []
        return [e for rows in self.entries_for_days((client_id, day) for client_id in client_ids).values() for e in rows]

    def entries_for_days(self, wanted: Iterable[tuple[int, dt.date]],
                         reports: Sequence[str] | None = None) -> dict[tuple[int, dt.date], list[CachedDay]]:
        """:meth:`entries_for_day` of several (client, day) pairs (a run's zone-days) at once: every row of
        these reports (or of all) for each pair, keyed by the pair (pairs without rows absent). One query
        per 5,000 clients, without the ORM's unit of work and without the day tables."""
        wanted = set(wanted)
        ids = sorted({client_id for client_id, _ in wanted})
        days = sorted({day for _, day in wanted})
        found: dict[tuple[int, dt.date], list[CachedDay]] = {}
        with self.engine.connect() as conn:
            for at in range(0, len(ids), 5_000):
                query = select(*_ENTRY_COLUMNS).where(CacheEntry.client_id.in_(ids[at:at + 5_000]),
                                                      CacheEntry.local_date.in_(days))
                if reports is not None:
                    query = query.where(CacheEntry.report.in_(list(reports)))
                for row in conn.execute(query):
                    key = (row.client_id, row.local_date)
                    if key in wanted:
                        found.setdefault(key, []).append(_cached(row))
        return found


#: Every manifest column a :class:`CachedDay` holds (not the day table).
_ENTRY_COLUMNS = tuple(column for column in CacheEntry.__table__.c if column.name not in ("id", "day_table"))


def _cached(row: CacheEntry) -> CachedDay:
    return CachedDay(
        report=row.report, client_id=row.client_id, local_date=row.local_date, path=row.path, rows=row.rows,
        bytes=row.bytes, checksum=row.checksum, source_rows=row.source_rows, source_checksum=row.source_checksum,
        source_watermark=row.source_watermark, rejected_rows=row.rejected_rows,
        rejected_reasons=json.loads(row.rejected_reasons or "{}"), computed_at=row.computed_at, run_id=row.run_id,
    )


def _as_utc(value: dt.datetime | str | None) -> dt.datetime | None:
    """Aggregates bypass the column type on SQLite (``max`` returns the stored text)."""
    if value is None:
        return None
    if isinstance(value, str):
        value = dt.datetime.fromisoformat(value)
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)
