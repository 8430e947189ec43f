"""The CDR import's SQL: one import is one transaction (:class:`CallImport`), the client's PBX
configuration (:class:`PbxConfigRepository`) and the replaced client-days the late-data path reads
(:class:`CallEventChanges`).

An import stages its calls in a temporary table as the file streams (PostgreSQL ``COPY``, SQLite
``executemany``), then, still in the same transaction, looks for ids repeated inside the file,
deletes what ``--replace`` replaces, and moves the calls into ``call_events`` (the first copy of a
repeated id wins; ids already stored are left as they are). Nothing is visible to anyone until the
commit, and a refused import (too many rejects or repeated ids) rolls back everything.

On PostgreSQL the move is the bulk loader's (:mod:`report_pipelines.adapters.db.bulk`): the instants
staged as epoch microseconds, the client's row locked and the foreign key's per-row trigger skipped,
and an import that outweighs ``call_events`` moved with the secondary indexes dropped and rebuilt
(:meth:`CallImport._move_postgresql`; ``benchmarks/bench_cdr_import.py`` measures both).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import io
import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
from sqlalchemy import Connection, Engine, bindparam, delete, func, insert, select, update

from report_pipelines.adapters.db import bulk, call_quarters
from report_pipelines.adapters.db.models import (
    CALL_EVENT_COLUMNS,
    CallEventChangeRow,
    Client,
    ClientPbxConfigRow,
    QueueAgentPauseRow,
    QueueAgentSessionRow,
    QueueCallRow,
)
from report_pipelines.adapters.db.repositories import _as_utc
from report_pipelines.domain.errors import NotFound
from report_pipelines.domain.pbx import PbxConfig, config_from_json
from report_pipelines.domain.queue_log import AgentInterval, OrphanEnd

UTC = dt.UTC
STAGED = (*CALL_EVENT_COLUMNS, "first_line")
_TIMESTAMPS = ("started_at", "answered_at", "ended_at", "queued_at", "ingested_at")
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=UTC)


def _instant_sql(column: str) -> str:
    """PostgreSQL: a staged column of epoch microseconds as an instant (exact: the factor is an integer
    below 2^53, and one microsecond times it is computed in whole microseconds)."""
    return f"timestamptz 'epoch' + {column} * interval '1 microsecond'"


@dataclass
class MergeResult:
    staged: int = 0  # calls staged (copies of a repeated id included)
    distinct: int = 0
    inserted: int = 0
    already_imported: int = 0
    repeated_in_file: int = 0  # copies beyond the first of ids repeated inside the file
    repeated_examples: list[tuple[str, int, int, int]] = field(default_factory=list)  # id, first line, last line, copies
    replaced: int = 0  # calls deleted by --replace
    replaced_days: list[dt.date] = field(default_factory=list)
    earliest: dt.datetime | None = None
    latest: dt.datetime | None = None


class CallImport:
    """One client's import, in one transaction (a context manager: commit on success)."""

    def __init__(self, engine: Engine, client_id: int) -> None:
        self.engine = engine
        self.client_id = client_id
        self.postgresql = engine.dialect.name == "postgresql"
        self.conn: Connection | None = None

    def __enter__(self) -> CallImport:
        self.conn = self.engine.connect()
        self.transaction = self.conn.begin()
        if self.postgresql:
            self.conn.exec_driver_sql("SET LOCAL TIME ZONE 'UTC'")
            # Instants staged as epoch microseconds: PostgreSQL reads an integer in about half the time it
            # parses a timestamp (0.76 vs 1.38 s for 625k calls); the move turns them into instants.
            self.conn.exec_driver_sql(
                "CREATE TEMP TABLE _import_calls (client_id integer, pbx_call_id text, direction text, queue text,"
                " agent text, caller text, callee text, started_at bigint, answered_at bigint,"
                " ended_at bigint, disposition text, queued_at bigint, ingested_at bigint,"
                " first_line bigint) ON COMMIT DROP")
        else:
            self.conn.exec_driver_sql("DROP TABLE IF EXISTS temp._import_calls")
            self.conn.exec_driver_sql(
                "CREATE TEMP TABLE _import_calls (client_id INTEGER, pbx_call_id TEXT, direction TEXT, queue TEXT,"
                " agent TEXT, caller TEXT, callee TEXT, started_at TEXT, answered_at TEXT, ended_at TEXT,"
                " disposition TEXT, queued_at TEXT, ingested_at TEXT, first_line INTEGER)")
        return self

    def __exit__(self, kind, value, traceback) -> None:
        assert self.conn is not None
        try:
            if kind is None:
                self.transaction.commit()
            else:
                self.transaction.rollback()
        finally:
            self.conn.close()

    def rollback(self) -> None:
        """Undo everything this import did (the context manager then only closes)."""
        self.transaction.rollback()
        self.transaction = self.conn.begin()  # an empty one for __exit__ to commit

    # --- calls ------------------------------------------------------------------------------------
    def stage(self, calls: pa.Table) -> None:
        """Stage calls (columns :data:`STAGED`; instants aware UTC)."""
        if calls.num_rows == 0:
            return
        table = calls.select(list(STAGED))
        for name in _TIMESTAMPS:  # PostgreSQL: epoch microseconds; SQLite: naive UTC wall clock, read back as UTC
            index = table.schema.get_field_index(name)
            column = table.column(name).cast(pa.timestamp("us"))
            table = table.set_column(index, name, column.cast(pa.int64()) if self.postgresql else column)
        if self.postgresql:
            buffer = io.BytesIO()
            pacsv.write_csv(table, buffer, pacsv.WriteOptions(include_header=False))
            buffer.seek(0)
            cursor = self.conn.connection.dbapi_connection.cursor()
            cursor.copy_expert(f"COPY _import_calls ({', '.join(STAGED)}) FROM STDIN WITH (FORMAT csv)", buffer)
        else:
            columns = [table.column(n).cast(pa.string()).to_pylist() if n in _TIMESTAMPS else table.column(n).to_pylist()
                       for n in STAGED]
            cursor = self.conn.connection.dbapi_connection.cursor()
            cursor.executemany(f"INSERT INTO _import_calls ({', '.join(STAGED)}) VALUES ({', '.join('?' * len(STAGED))})",
                               zip(*columns, strict=False))

    def merge(self, *, replace: bool, zone: dt.tzinfo, now: dt.datetime) -> MergeResult:
        """Move the staged calls into ``call_events`` (see the module docstring)."""
        conn = self.conn
        result = MergeResult()
        staged, distinct, low, high = conn.exec_driver_sql(
            "SELECT count(*), count(DISTINCT pbx_call_id), min(started_at), max(started_at) FROM _import_calls").one()
        result.staged, result.distinct = int(staged), int(distinct)
        result.repeated_in_file = result.staged - result.distinct
        if self.postgresql:
            low, high = (None if v is None else _EPOCH + dt.timedelta(microseconds=int(v)) for v in (low, high))
        result.earliest, result.latest = _as_utc(low), _as_utc(high)
        if result.repeated_in_file:
            result.repeated_examples = [
                (r[0], int(r[1]), int(r[2]), int(r[3])) for r in conn.exec_driver_sql(
                    "SELECT pbx_call_id, min(first_line), max(first_line), count(*) FROM _import_calls"
                    " GROUP BY pbx_call_id HAVING count(*) > 1 ORDER BY min(first_line) LIMIT 3")]
        if not result.staged:
            return result
        if replace:
            result.replaced = self._replace(result.earliest, result.latest, zone, now, result)
        if self.postgresql:
            result.inserted = self._move_postgresql(result.staged, repeated=bool(result.repeated_in_file),
                                                    replace=replace)
        else:
            columns = ", ".join(CALL_EVENT_COLUMNS)
            moved = conn.exec_driver_sql(
                f"INSERT OR IGNORE INTO call_events ({columns}) SELECT {columns} FROM _import_calls ORDER BY first_line")
            result.inserted = int(moved.rowcount)
        result.already_imported = result.distinct - result.inserted
        if replace or not self.postgresql:
            # The quarter-hours of the file's time span, which hold what --replace deleted too.
            call_quarters.refresh("postgresql" if self.postgresql else "sqlite", conn.exec_driver_sql,
                                  lambda sql: conn.exec_driver_sql(sql).all(), [self.client_id],
                                  result.earliest, result.latest)
        return result

    def _move_postgresql(self, staged: int, *, repeated: bool, replace: bool) -> int:
        """The staged calls into ``call_events`` (the first copy of a repeated id; ids stored already left
        as they are); how many were inserted. Without ``replace``, their quarters are added in the same
        statement (with it, :meth:`merge` recomputes the span's).

        As the bulk loader does (:mod:`report_pipelines.adapters.db.bulk`): the foreign key's per-row
        trigger is skipped when the role may (the client's row is locked by this import, so it cannot
        go), and when the import outweighs the table its secondary indexes are dropped and rebuilt by
        one sort each. The drop holds ``call_events`` exclusively, so no other writer can insert an id
        meanwhile: the calls go in by a plain insert of the ids not stored (an anti-join), without the
        per-row speculative insertion of ``ON CONFLICT``, which needs the unique key as its arbiter.
        """
        cursor = self.conn.connection.dbapi_connection.cursor()
        dropped = (bulk.drop_for_rebuild(cursor, unique_keys=False, foreign_keys=False)
                   if bulk.rebuild_pays(cursor, staged) else None)
        columns = ", ".join(CALL_EVENT_COLUMNS)
        values = ", ".join(_instant_sql(f"s.{c}") if c in _TIMESTAMPS else f"s.{c}" for c in CALL_EVENT_COLUMNS)
        source = ("(SELECT DISTINCT ON (pbx_call_id) * FROM _import_calls ORDER BY pbx_call_id, first_line) AS s"
                  if repeated else "_import_calls AS s")  # the first copy of a repeated id wins
        move = f"INSERT INTO call_events ({columns}) SELECT {values} FROM {source}"
        move += (" WHERE NOT EXISTS (SELECT 1 FROM call_events e WHERE e.client_id = s.client_id"
                 " AND e.pbx_call_id = s.pbx_call_id)" if dropped is not None
                 else " ON CONFLICT (client_id, pbx_call_id) DO NOTHING")
        with self._client_locked_unchecked(cursor, "call_events"):
            if replace:  # the quarters recomputed by merge (calls were deleted)
                inserted = int(self.conn.exec_driver_sql(move).rowcount)
            else:  # the calls inserted added to their quarters in the same statement (the lock is held)
                [(inserted,)] = self.conn.exec_driver_sql(call_quarters.inserting(move)).all()
        if dropped is not None:
            bulk.restore_dropped(cursor, dropped)
        return inserted

    @contextlib.contextmanager
    def _client_locked_unchecked(self, cursor, table: str) -> Iterator[None]:
        """PostgreSQL: an insert into ``table`` with its foreign-key trigger skipped where
        :func:`bulk.skip_foreign_key_trigger` allows it, and the triggers back on after it (the rest of
        the import keeps them). First the client's row is locked until the commit (``FOR NO KEY UPDATE``,
        as the quarters' writers lock it), so it cannot be deleted under the insert; an import whose
        client was deleted since it was looked up stops here, nothing stored."""
        if not self.conn.exec_driver_sql(call_quarters.lock_statement([self.client_id])).all():
            raise NotFound("--client", f"client {self.client_id} was deleted during the import; nothing was imported")
        skipped = bulk.skip_foreign_key_trigger(cursor, table)
        yield
        if skipped:
            cursor.execute("SET LOCAL session_replication_role = origin")

    def _replace(self, low: dt.datetime, high: dt.datetime, zone: dt.tzinfo, now: dt.datetime,
                 result: MergeResult) -> int:
        from report_pipelines.adapters.db.models import CallEvent
        from report_pipelines.domain.timezones import local_date_of

        deleted = self.conn.execute(delete(CallEvent).where(
            CallEvent.client_id == self.client_id, CallEvent.started_at >= low, CallEvent.started_at <= high))
        first, last = local_date_of(low, zone), local_date_of(high, zone)
        days = [first + dt.timedelta(days=i) for i in range((last - first).days + 1)]
        result.replaced_days = days
        self.conn.execute(insert(CallEventChangeRow), [
            {"client_id": self.client_id, "local_date": day, "changed_at": now} for day in days])
        return int(deleted.rowcount)

    def has_inbound(self) -> bool:
        """Whether the client has any inbound call stored (this import's included)."""
        from report_pipelines.adapters.db.models import CallEvent

        return self.conn.execute(select(CallEvent.id).where(
            CallEvent.client_id == self.client_id, CallEvent.direction == "inbound").limit(1)).first() is not None

    def extend_active_from(self, day: dt.date, now: dt.datetime) -> None:
        self.conn.execute(update(Client).where(Client.id == self.client_id, Client.active_from > day)
                          .values(active_from=day, updated_at=now))

    # --- queue_log --------------------------------------------------------------------------------
    def store_queue_log(self, attempts: pa.Table, sessions: list[AgentInterval], pauses: list[AgentInterval],
                        *, replace: bool, orphan_ends: list[OrphanEnd] = (), zone: dt.tzinfo | None = None,
                        now: dt.datetime | None = None) -> int:
        """Store a queue_log's attempts, sessions and pauses (ignoring what is stored already; with
        ``replace``, the client's rows in the log's time range are deleted first). Returns attempts stored.

        A session or pause stored open (its end was not in an earlier file) is closed by this file:
        by the same interval, now with its end (a longer copy of the file), or by an end whose start
        is not in this file (``orphan_ends``: the log was rotated meanwhile), which closes the latest
        open interval of that queue and agent that started before it.

        With ``zone`` and ``now``, every local day these sessions and pauses cover (the intervals
        closed included) is recorded in ``call_event_changes``, so the late-data path recomputes a
        cached day whose agent figures this file changed even when its calls did not change."""
        entered = pc.min_max(attempts.column("entered_at"))
        instants = [i.started_at for i in (*sessions, *pauses)] + \
            ([entered["min"].as_py(), entered["max"].as_py()] if attempts.num_rows else [])
        if replace and instants:
            low, high = min(instants), max(instants)
            for model in (QueueCallRow, QueueAgentSessionRow, QueueAgentPauseRow):
                start = model.entered_at if model is QueueCallRow else model.started_at
                self.conn.execute(delete(model).where(model.client_id == self.client_id, start >= low, start <= high))
        instant = pa.timestamp("us", tz="UTC")
        text = pa.string()
        attempt_columns = {"callid": text, "pbx_call_id": text, "queue": text, "entered_at": instant,
                           "connected_at": instant, "ended_at": instant, "agent": text, "outcome": text,
                           "ring_attempts": pa.int64(), "caller": text}
        stored = self._copy_ignore("queue_calls", attempt_columns, attempts, ("client_id", "callid", "queue", "entered_at"))
        interval = {"queue": text, "agent": text, "started_at": instant, "ended_at": instant}
        keys = ("client_id", "queue", "agent", "started_at")
        self._copy_ignore("queue_agent_sessions", interval, sessions, keys)
        self._copy_ignore("queue_agent_pauses", {**interval, "reason": text}, pauses, keys)
        closed = self._close_open(sessions, pauses, orphan_ends)
        if zone is not None and now is not None:
            spans = [(i.started_at, i.ended_at or i.started_at) for i in (*sessions, *pauses)] + closed
            self._record_changes(spans, zone, now)
        return stored

    def _record_changes(self, spans: list[tuple[dt.datetime, dt.datetime]], zone: dt.tzinfo, now: dt.datetime) -> None:
        from report_pipelines.domain.timezones import local_date_of

        days: set[dt.date] = set()
        for start, end in spans:
            first, last = local_date_of(start, zone), local_date_of(max(start, end), zone)
            days.update(first + dt.timedelta(days=i) for i in range((last - first).days + 1))
        if days:
            self.conn.execute(insert(CallEventChangeRow), [
                {"client_id": self.client_id, "local_date": day, "changed_at": now} for day in sorted(days)])

    def _close_open(self, sessions: list[AgentInterval], pauses: list[AgentInterval],
                    orphan_ends: list[OrphanEnd]) -> list[tuple[dt.datetime, dt.datetime]]:
        """Close what earlier files left open (see :meth:`store_queue_log`); the spans closed by orphan ends."""
        closed: list[tuple[dt.datetime, dt.datetime]] = []
        for model, intervals, kind in ((QueueAgentSessionRow, sessions, "session"), (QueueAgentPauseRow, pauses, "pause")):
            ended = [i for i in intervals if i.ended_at is not None]
            if ended:
                self.conn.execute(
                    update(model).where(model.client_id == self.client_id, model.queue == bindparam("q"),
                                        model.agent == bindparam("a"), model.started_at == bindparam("s"),
                                        model.ended_at.is_(None)).values(ended_at=bindparam("e")),
                    [{"q": i.queue, "a": i.agent, "s": i.started_at, "e": i.ended_at} for i in ended])
            for end in (o for o in orphan_ends if o.kind == kind):
                latest = self.conn.execute(
                    select(model.id, model.started_at).where(model.client_id == self.client_id, model.queue == end.queue,
                                           model.agent == end.agent, model.ended_at.is_(None), model.started_at <= end.at)
                    .order_by(model.started_at.desc()).limit(1)).first()
                if latest is not None:
                    self.conn.execute(update(model).where(model.id == latest[0]).values(ended_at=end.at))
                    closed.append((_as_utc(latest[1]), end.at))
        return closed

    def _copy_ignore(self, table: str, columns: dict[str, pa.DataType], items: list | pa.Table, keys: tuple[str, ...]) -> int:
        """Insert the items' ``columns`` (and this client) into ``table``, skipping rows whose ``keys``
        are stored already: PostgreSQL through COPY into a temporary table, SQLite one executemany.
        ``items``: objects with those attributes, or a table with those columns."""
        count = items.num_rows if isinstance(items, pa.Table) else len(items)
        if not count:
            return 0
        column = (lambda name, kind: items.column(name).cast(kind)) if isinstance(items, pa.Table) else \
            (lambda name, kind: pa.array([getattr(i, name) for i in items], type=kind))
        data = pa.table({"client_id": pa.array(np.full(count, self.client_id, dtype=np.int64)),
                         **{name: column(name, kind) for name, kind in columns.items()}})
        names = ", ".join(data.column_names)
        instants = {name for name, kind in columns.items() if pa.types.is_timestamp(kind)}
        for name in instants:  # PostgreSQL: epoch microseconds (as the calls); SQLite: naive UTC, read back as UTC
            column = data.column(name).cast(pa.timestamp("us"))
            data = data.set_column(data.schema.get_field_index(name), name,
                                   column.cast(pa.int64()) if self.postgresql else column)
        cursor = self.conn.connection.dbapi_connection.cursor()
        if self.postgresql:
            self.conn.exec_driver_sql(f"CREATE TEMP TABLE _import_{table} ON COMMIT DROP AS SELECT " + ", ".join(
                f"NULL::bigint AS {n}" if n in instants else n for n in data.column_names) + f" FROM {table} WITH NO DATA")
            buffer = io.BytesIO()
            pacsv.write_csv(data, buffer, pacsv.WriteOptions(include_header=False))
            buffer.seek(0)
            cursor.copy_expert(f"COPY _import_{table} ({names}) FROM STDIN WITH (FORMAT csv)", buffer)
            values = ", ".join(_instant_sql(n) if n in instants else n for n in data.column_names)
            with self._client_locked_unchecked(cursor, table):  # as the calls' move
                moved = self.conn.exec_driver_sql(f"INSERT INTO {table} ({names}) SELECT {values} FROM _import_{table} "
                                                  f"ON CONFLICT ({', '.join(keys)}) DO NOTHING")
            return int(moved.rowcount)
        values = [data.column(n).cast(pa.string()).to_pylist() if pa.types.is_timestamp(data.schema.field(n).type)
                  else data.column(n).to_pylist() for n in data.column_names]
        before = self.conn.connection.dbapi_connection.total_changes
        cursor.executemany(f"INSERT OR IGNORE INTO {table} ({names}) VALUES ({', '.join('?' * len(values))})",
                           zip(*values, strict=False))
        return self.conn.connection.dbapi_connection.total_changes - before


class PbxConfigRepository:
    """A client's stored PBX configuration (trunk patterns, extension ranges, DIDs)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def get(self, client_id: int) -> PbxConfig:
        with self.engine.connect() as conn:
            row = conn.execute(select(ClientPbxConfigRow).where(ClientPbxConfigRow.client_id == client_id)).first()
        if row is None:
            return PbxConfig()
        return config_from_json(json.dumps({"trunks": json.loads(row.trunks), "extensions": json.loads(row.extensions),
                                            "dids": json.loads(row.dids)}))

    def save(self, client_id: int, config: PbxConfig, now: dt.datetime) -> None:
        values = {key: json.dumps(value) for key, value in config.to_json().items()}
        with self.engine.begin() as conn:
            conn.execute(delete(ClientPbxConfigRow).where(ClientPbxConfigRow.client_id == client_id))
            conn.execute(insert(ClientPbxConfigRow).values(client_id=client_id, updated_at=now, **values))


class CallEventChanges:
    """Client-days whose calls an import replaced (read by the late-data path)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def latest(self, client_ids: Sequence[int], first: dt.date, last: dt.date) -> dict[tuple[int, dt.date], dt.datetime]:
        """``(client_id, local date) -> latest change`` of the clients' days ``first..last`` that changed."""
        if not client_ids:
            return {}
        row = CallEventChangeRow
        query = (select(row.client_id, row.local_date, func.max(row.changed_at))
                 .where(row.client_id.in_(list(client_ids)), row.local_date >= first, row.local_date <= last)
                 .group_by(row.client_id, row.local_date))
        with self.engine.connect() as conn:
            return {(client_id, day): _as_utc(changed) for client_id, day, changed in conn.execute(query)}

    def since(self, after: dt.datetime) -> list[tuple[int, dt.date, dt.datetime]]:
        """``(client_id, local date, changed_at)`` of every change after ``after``."""
        query = select(CallEventChangeRow.client_id, CallEventChangeRow.local_date, CallEventChangeRow.changed_at).where(
            CallEventChangeRow.changed_at > after)
        with self.engine.connect() as conn:
            return [(r[0], r[1], _as_utc(r[2])) for r in conn.execute(query)]


__all__ = ["CallEventChanges", "CallImport", "MergeResult", "PbxConfigRepository"]
