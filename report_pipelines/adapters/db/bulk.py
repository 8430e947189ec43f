"""Bulk loading of call events: PostgreSQL through ``COPY``, SQLite through one ``executemany``.

Row-by-row ORM inserts are 10-50x slower (``benchmarks/bench_load_events.py`` measures it), so every
path that writes many calls (demo seed, CDR import) comes through here with an Arrow table whose
columns are :data:`CALL_EVENT_COLUMNS`.

PostgreSQL has two paths, chosen by size (``benchmarks/bench_load_events.py`` measures both):

- **COPY BINARY from Arrow** (ADBC, ``adbc-driver-postgresql``) for tables of at least
  :data:`BINARY_MIN_ROWS` rows, on its own connection and in one transaction of its own:
  the client ids are checked once for the whole table (``SELECT ... FOR KEY SHARE``, the lock the
  foreign-key trigger would take per row, so a client cannot be deleted under the load), then

  * *rebuild*, when the table brings at least as many rows as ``call_events`` holds (and at least
    :data:`REBUILD_MIN_ROWS`): the secondary indexes are dropped, the rows copied, the indexes built
    again by one sort each. With ``on_conflict="error"`` the ``(client_id, pbx_call_id)`` unique key
    and the primary key are rebuilt the same way (a duplicate then fails the load when it is
    re-added); ``"ignore"`` needs the unique key in place as the conflict arbiter. The foreign key
    stays, its trigger skipped as below; when the role may not skip it, the key is dropped and
    re-added (PostgreSQL validates it over the whole table). DDL is transactional: a failure
    anywhere puts every index and constraint back.
    The drop takes an ACCESS EXCLUSIVE lock, so readers of ``call_events`` wait for the load.
  * *incremental* otherwise: rows go through every index; the per-row foreign-key trigger is skipped
    (``SET LOCAL session_replication_role = replica``) when the role may set it and ``call_events``
    has no trigger of its own, since the check and the lock above did its work; else it fires.

  ``on_conflict="ignore"`` copies into a temporary table first, then one
  ``INSERT ... SELECT ... ON CONFLICT DO NOTHING``.
- **COPY of CSV text** on a pooled psycopg2 connection (:func:`load_call_events_csv`, the loader
  before the binary one) for small tables: opening an ADBC connection costs ~60 ms.

Every path updates, in its transaction, the quarter-hours of ``call_event_quarters`` it wrote into
(:mod:`report_pipelines.adapters.db.call_quarters`), the source states the freshness checks read: on
PostgreSQL by increments (the table's own, aggregated in Arrow, when every row is inserted; those an
``ON CONFLICT DO NOTHING`` returns otherwise), on SQLite recomputed over the span loaded.
"""

from __future__ import annotations

import datetime as dt
import io
from typing import Literal

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
from sqlalchemy import Engine

from report_pipelines.adapters.db import call_quarters
from report_pipelines.adapters.db.models import CALL_EVENT_COLUMNS
from report_pipelines.domain.calls import CALL_SCHEMA, INSTANT
from report_pipelines.domain.errors import InvalidInput

OnConflict = Literal["error", "ignore"]

_TIMESTAMPS = ("started_at", "answered_at", "ended_at", "queued_at", "ingested_at")
#: Columns a call table may lack (they are then null): added after the first loaders were written.
OPTIONAL_COLUMNS = ("queued_at",)

CALL_EVENT_SCHEMA = pa.schema([("client_id", pa.int64()), *CALL_SCHEMA, ("ingested_at", INSTANT)])
assert tuple(CALL_EVENT_SCHEMA.names) == CALL_EVENT_COLUMNS


def conform(table: pa.Table) -> pa.Table:
    """Select and cast the columns of ``table`` to the call-event schema (raises on a mismatch);
    a missing :data:`OPTIONAL_COLUMNS` column is null."""
    for name in OPTIONAL_COLUMNS:
        if name not in table.column_names:
            table = table.append_column(name, pa.nulls(table.num_rows, CALL_EVENT_SCHEMA.field(name).type))
    return table.select(list(CALL_EVENT_COLUMNS)).cast(CALL_EVENT_SCHEMA)


def _span(table: pa.Table, client_ids: list[int]) -> tuple[list[int], dt.datetime | None, dt.datetime | None]:
    """What recomputing a load's quarter-hours needs (SQLite): the clients, the first and the last call start."""
    span = pc.min_max(table.column("started_at"))
    return client_ids, span["min"].as_py(), span["max"].as_py()


def _query(cursor, sql: str) -> list:
    cursor.execute(sql)
    return cursor.fetchall()


def _refresh_quarters(dialect: str, cursor, span) -> None:
    """:func:`call_quarters.refresh` on a DB-API cursor (psycopg2, ADBC or sqlite3)."""
    call_quarters.refresh(dialect, cursor.execute, lambda sql: _query(cursor, sql), *span)


def _insert_ignoring(cursor, client_ids: list[int]) -> int:
    """PostgreSQL: ``_incoming_calls`` moved into ``call_events`` (ids stored already skipped) and the
    calls inserted added to their quarters; how many were inserted."""
    columns = ", ".join(CALL_EVENT_COLUMNS)
    return call_quarters.insert_adding(lambda sql: _query(cursor, sql), client_ids,
                                       f"INSERT INTO call_events ({columns}) SELECT {columns} FROM _incoming_calls "
                                       "ON CONFLICT (client_id, pbx_call_id) DO NOTHING")


def _add_quarters(cursor, table: pa.Table, client_ids: list[int]) -> None:
    """PostgreSQL: every call of ``table``, all inserted, added to its quarter."""
    _query(cursor, call_quarters.lock_statement(client_ids))
    cursor.execute(call_quarters.add_table_statement(table))


def _utc_wall_clock(table: pa.Table) -> pa.Table:
    """The same instants as naive UTC timestamps.

    Formatting zone-aware timestamps as text costs Arrow a zone lookup per value (25x slower than
    naive ones: 0.47 s against 0.02 s per million), and both loaders need text. The receiving side
    reads them as UTC: ``SET LOCAL TIME ZONE 'UTC'`` on PostgreSQL, naive-UTC storage on SQLite.
    """
    for name in _TIMESTAMPS:
        index = table.schema.get_field_index(name)
        table = table.set_column(index, name, table.column(name).cast(pa.timestamp("us")))
    return table


#: Below this many rows a table goes by CSV COPY on a pooled connection (see the module docstring).
BINARY_MIN_ROWS = 50_000
#: The binary path drops and rebuilds the secondary indexes for at least this many rows ...
REBUILD_MIN_ROWS = 100_000
#: ... that are at least as many as ``call_events`` holds, estimated from its heap size at this
#: (low) number of bytes per row, so a full table is never mistaken for an empty one.
_MIN_ROW_BYTES = 100


def load_call_events(engine: Engine, table: pa.Table, on_conflict: OnConflict = "error",
                     chunk_rows: int = 200_000) -> int:
    """Insert the rows of ``table`` into ``call_events``; return how many were inserted.

    ``on_conflict="ignore"`` skips rows whose ``(client_id, pbx_call_id)`` already exists, which is
    what makes a re-import idempotent. ``"error"`` is the fastest path, for fresh data (demo seed).
    The whole table is one transaction: either every row lands or none does. A client id that
    ``clients`` does not have is refused (:class:`InvalidInput` on ``client_id``) before anything is
    loaded.
    """
    table = conform(table)
    if table.num_rows == 0:
        return 0
    client_ids = pc.unique(table.column("client_id")).to_pylist()
    if engine.dialect.name == "postgresql" and table.num_rows >= BINARY_MIN_ROWS:
        return _load_postgresql_binary(engine, table, client_ids, on_conflict)
    if engine.dialect.name not in ("postgresql", "sqlite"):
        raise RuntimeError(f"no bulk loader for database dialect {engine.dialect.name!r}")
    with engine.connect() as conn:
        _require_clients(conn.exec_driver_sql(_clients_query(client_ids, lock=False)).all(), client_ids)
    if engine.dialect.name == "postgresql":
        return _load_postgresql_csv(engine, _utc_wall_clock(table), client_ids, on_conflict, chunk_rows)
    return _load_sqlite(engine, _utc_wall_clock(table), _span(table, client_ids), on_conflict, chunk_rows)


def load_call_events_csv(engine: Engine, table: pa.Table, on_conflict: OnConflict = "error",
                         chunk_rows: int = 200_000) -> int:
    """The PostgreSQL loader before the binary one, whatever the size (COPY of CSV text, every
    constraint checked per row): the benchmark's baseline and the tests' reference."""
    table = _utc_wall_clock(conform(table))
    if not table.num_rows:
        return 0
    return _load_postgresql_csv(engine, table, pc.unique(table.column("client_id")).to_pylist(), on_conflict, chunk_rows)


def _clients_query(client_ids: list[int], *, lock: bool) -> str:
    ids = ", ".join(str(int(i)) for i in client_ids)  # ints from an int64 column: nothing to quote
    return f"SELECT id FROM clients WHERE id IN ({ids})" + (" FOR KEY SHARE" if lock else "")


def _require_clients(found_rows, client_ids: list[int]) -> None:
    unknown = sorted(set(client_ids) - {int(row[0]) for row in found_rows})
    if unknown:
        shown = ", ".join(str(i) for i in unknown[:5]) + (", ..." if len(unknown) > 5 else "")
        raise InvalidInput("client_id", f"no client with id {shown} ({len(unknown)} unknown); nothing was loaded")


def libpq_uri(engine: Engine) -> str:
    """The engine's database as the libpq URI ADBC wants (``postgresql://user@host:port/db``)."""
    return engine.url.set(drivername="postgresql").render_as_string(hide_password=False)


def _load_postgresql_binary(engine: Engine, table: pa.Table, client_ids: list[int], on_conflict: OnConflict) -> int:
    import adbc_driver_postgresql.dbapi as adbc  # a native driver: loaded when first used

    with adbc.connect(libpq_uri(engine)) as conn, conn.cursor() as cursor:
        try:
            cursor.execute(_clients_query(client_ids, lock=True))
            _require_clients(cursor.fetchall(), client_ids)
            # clients.id is an integer; every id fits now that all of them were found.
            table = table.set_column(0, "client_id", table.column("client_id").cast(pa.int32()))
            rebuild = rebuild_pays(cursor, table.num_rows)
            # The foreign key's trigger skipped: the check and the lock above did its work, and the key
            # stays valid (no re-validation over the whole table after a rebuild).
            trigger_skipped = skip_foreign_key_trigger(cursor)
            dropped = (drop_for_rebuild(cursor, unique_keys=on_conflict == "error", foreign_keys=not trigger_skipped)
                       if rebuild else None)
            if on_conflict == "ignore":
                columns = ", ".join(CALL_EVENT_COLUMNS)
                cursor.execute("CREATE TEMP TABLE _incoming_calls AS SELECT "
                               f"{columns} FROM call_events WITH NO DATA")
                cursor.adbc_ingest("_incoming_calls", table, mode="append", temporary=True)
                inserted = _insert_ignoring(cursor, client_ids)
                cursor.execute("DROP TABLE _incoming_calls")
            else:
                inserted = cursor.adbc_ingest("call_events", table, mode="append")
                _add_quarters(cursor, table, client_ids)
            if dropped is not None:
                restore_dropped(cursor, dropped)
            conn.commit()
            return inserted
        except BaseException:
            conn.rollback()
            raise


def rebuild_pays(cursor, rows: int) -> bool:
    if rows < REBUILD_MIN_ROWS:
        return False
    cursor.execute("SELECT pg_relation_size('call_events')")
    [(heap_bytes,)] = cursor.fetchall()
    return rows >= heap_bytes // _MIN_ROW_BYTES


def drop_for_rebuild(cursor, *, unique_keys: bool, foreign_keys: bool) -> list[str]:
    """Drop the indexes no constraint owns, with ``foreign_keys`` the foreign keys and, with
    ``unique_keys``, the unique constraints and the primary key (keeping its index up to date costs
    the copy more than building it after: 2.0 s vs 0.6 s for 2.24M rows); return the statements that
    restore them (unique keys first: a duplicate fails the load there; indexes before the foreign
    keys, whose validation may use them)."""
    uniques: list[tuple[str, str]] = []
    if unique_keys:
        cursor.execute("SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint"
                       " WHERE conrelid = 'call_events'::regclass AND contype IN ('u', 'p') ORDER BY contype DESC, 1")
        uniques = cursor.fetchall()
    cursor.execute(
        "SELECT i.relname, pg_get_indexdef(i.oid) FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid"
        " WHERE x.indrelid = 'call_events'::regclass"
        " AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conindid = x.indexrelid) ORDER BY 1")
    indexes = cursor.fetchall()
    cursor.execute("SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint"
                   " WHERE conrelid = 'call_events'::regclass AND contype = 'f' ORDER BY 1")
    foreign_keys = cursor.fetchall() if foreign_keys else []
    for name, _ in [*foreign_keys, *uniques]:
        cursor.execute(f'ALTER TABLE call_events DROP CONSTRAINT "{name}"')
    for name, _ in indexes:
        cursor.execute(f'DROP INDEX "{name}"')
    cursor.execute("SET LOCAL maintenance_work_mem = '256MB'")  # each index is one in-memory sort
    add = 'ALTER TABLE call_events ADD CONSTRAINT "{}" {}'
    return ([add.format(*unique) for unique in uniques] + [definition for _, definition in indexes]
            + [add.format(*foreign_key) for foreign_key in foreign_keys])


def restore_dropped(cursor, statements: list[str]) -> None:
    for statement in statements:
        cursor.execute(statement)


def skip_foreign_key_trigger(cursor, table: str = "call_events") -> bool:
    """``SET LOCAL session_replication_role = replica`` if this role may, no trigger of our own on
    ``table`` would be skipped with its foreign keys', and every foreign key of ``table`` is to
    ``clients``, whose rows the caller checked and locked (True); nothing otherwise (False: the trigger
    then checks each row, or a rebuild drops the key and re-adds it). The caller sets the role back to
    ``origin`` when its write is done, if more of its transaction should keep the triggers."""
    cursor.execute(f"SELECT (SELECT count(*) FROM pg_trigger WHERE tgrelid = '{table}'::regclass AND NOT tgisinternal)"
                   f" + (SELECT count(*) FROM pg_constraint WHERE conrelid = '{table}'::regclass AND contype = 'f'"
                   " AND confrelid <> 'clients'::regclass)")
    [(others,)] = cursor.fetchall()
    if others or not _may_set_replication_role(cursor):
        return False
    cursor.execute("SET LOCAL session_replication_role = replica")
    return True


def _may_set_replication_role(cursor) -> bool:
    """Whether this role may set ``session_replication_role``: a superuser, or (PostgreSQL 15+) one granted
    ``SET`` on it. Asked, not tried: a refused ``SET`` leaves an ADBC connection refusing every statement,
    even the ``ROLLBACK TO SAVEPOINT`` that would undo it."""
    cursor.execute("SELECT rolsuper, current_setting('server_version_num')::int FROM pg_roles"
                   " WHERE rolname = current_user")
    [(superuser, version)] = cursor.fetchall()
    if superuser or version < 150000:
        return bool(superuser)
    cursor.execute("SELECT has_parameter_privilege('session_replication_role', 'SET')")
    [(granted,)] = cursor.fetchall()
    return bool(granted)


def _load_postgresql_csv(engine: Engine, table: pa.Table, client_ids: list[int], on_conflict: OnConflict,
                         chunk_rows: int) -> int:
    columns = ", ".join(CALL_EVENT_COLUMNS)
    raw = engine.raw_connection()
    try:
        cursor = raw.cursor()
        cursor.execute("SET LOCAL TIME ZONE 'UTC'")  # the CSV holds naive UTC wall-clock times
        if on_conflict == "ignore":
            cursor.execute(
                "CREATE TEMP TABLE _incoming_calls (LIKE call_events INCLUDING DEFAULTS) ON COMMIT DROP"
            )
            target = "_incoming_calls"
        else:
            target = "call_events"
        copy_sql = f"COPY {target} ({columns}) FROM STDIN WITH (FORMAT csv)"
        for batch in table.to_batches(max_chunksize=chunk_rows):
            buffer = io.BytesIO()
            pacsv.write_csv(pa.Table.from_batches([batch]), buffer, pacsv.WriteOptions(include_header=False))
            buffer.seek(0)
            cursor.copy_expert(copy_sql, buffer)
        if on_conflict == "ignore":
            inserted = _insert_ignoring(cursor, client_ids)
        else:
            inserted = table.num_rows
            _add_quarters(cursor, table, client_ids)
        raw.commit()
        return inserted
    except BaseException:
        raw.rollback()
        raise
    finally:
        raw.close()


def _sqlite_rows(batch: pa.RecordBatch):
    arrays = []
    for name in CALL_EVENT_COLUMNS:
        column = batch.column(name)
        if name in _TIMESTAMPS:
            # "YYYY-MM-DD HH:MM:SS.ffffff": the text SQLAlchemy's SQLite DATETIME reads and writes.
            column = column.cast(pa.string())
        arrays.append(column.to_pylist())
    return zip(*arrays, strict=True)


def _load_sqlite(engine: Engine, table: pa.Table, span, on_conflict: OnConflict, chunk_rows: int) -> int:
    verb = "INSERT OR IGNORE" if on_conflict == "ignore" else "INSERT"
    placeholders = ", ".join("?" for _ in CALL_EVENT_COLUMNS)
    sql = f"{verb} INTO call_events ({', '.join(CALL_EVENT_COLUMNS)}) VALUES ({placeholders})"
    raw = engine.raw_connection()
    try:
        dbapi = raw.driver_connection
        before = dbapi.total_changes
        cursor = raw.cursor()
        for batch in table.to_batches(max_chunksize=chunk_rows):
            cursor.executemany(sql, _sqlite_rows(batch))
        inserted = dbapi.total_changes - before
        _refresh_quarters("sqlite", cursor, span)
        raw.commit()
        return inserted
    except BaseException:
        raw.rollback()
        raise
    finally:
        raw.close()


def call_event_constraints(engine: Engine) -> dict[str, bool]:
    """Every index and constraint of ``call_events`` on PostgreSQL, by name: whether it is valid
    (an index ready and valid, a constraint validated). What a load must leave as it found."""
    with engine.connect() as conn:
        indexes = conn.exec_driver_sql(
            "SELECT i.relname, x.indisvalid AND x.indisready FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid"
            " WHERE x.indrelid = 'call_events'::regclass").all()
        constraints = conn.exec_driver_sql(
            "SELECT conname, convalidated FROM pg_constraint WHERE conrelid = 'call_events'::regclass").all()
    return {str(name): bool(valid) for name, valid in [*indexes, *constraints]}
