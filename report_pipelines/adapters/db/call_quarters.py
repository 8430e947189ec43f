"""Each client's calls per UTC quarter-hour (``call_event_quarters``): the source state of a day
without counting its calls again.

A cached client-day is fresh while its calls' count and newest ``ingested_at`` are what they were when
it was computed (:meth:`CachedDay.is_fresh`). Counting them again per day cost a period request more
than the ``GROUP BY`` its cached summary replaces (272 ms for the largest client's 30 days). Every
zone's offset and DST change falls on a quarter-hour, so a local day is a run of whole quarters (96,
92 or 100) and its state a sum over that many rows, whatever the number of calls.

Kept by the writers, in the writer's own transaction, in one of two ways:

* **increments**, when the writer knows which calls it inserted (PostgreSQL): a load that fails on any
  conflict inserted every row of its table (:func:`add_table_statement`, aggregated in Arrow); an
  ``INSERT ... ON CONFLICT DO NOTHING`` names what it inserted by ``RETURNING`` (:func:`inserting`).
  Each quarter gets ``calls + n`` and the later of the two newest ingests;
* **recomputed** from ``call_events`` (:func:`refresh`) over every quarter of the written clients
  between the first and the last call written, when calls were deleted (``--replace``) or the writer
  cannot tell what it inserted (SQLite's ``INSERT OR IGNORE``). A load into a table that already holds
  the same period re-aggregates all of it (2.24M calls: ~0.4 s), hence the increments.

Either first locks the clients' rows (``FOR NO KEY UPDATE``, which the foreign key's ``FOR KEY SHARE``
does not block), after its calls are written and until it commits: two writes of one client then
update their quarters one after the other, a recomputation in a snapshot that sees the other's
committed calls. An update of those clients' own rows (name, zone, ``active_from``) waits meanwhile.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Sequence

import numpy as np
import pyarrow as pa

UTC = dt.UTC
QUARTER_SECONDS = 900
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=UTC)


def quarter_of(instant: dt.datetime) -> int:
    """The quarter-hour ``instant`` falls in (epoch seconds // 900; exact, no float rounding)."""
    return (instant - _EPOCH) // dt.timedelta(seconds=QUARTER_SECONDS)


def quarter_start(quarter: int) -> dt.datetime:
    return _EPOCH + dt.timedelta(seconds=quarter * QUARTER_SECONDS)


def on_quarter(instant: dt.datetime) -> bool:
    """Whether ``instant`` is the start of a quarter-hour (every local midnight since 1970 is, in
    every zone of the tz database: no zone has kept a local mean time offset since then)."""
    return quarter_start(quarter_of(instant)) == instant


def _ids(client_ids: Sequence[int]) -> str:
    return ", ".join(str(int(i)) for i in sorted(set(client_ids)))  # integers: nothing to quote


def refresh_statements(dialect: str, client_ids: Sequence[int], first: dt.datetime | None = None,
                       last: dt.datetime | None = None) -> tuple[str | None, list[str]]:
    """The lock (PostgreSQL; ``None`` on SQLite, whose writers are serialised) and the statements that
    recompute the quarters of ``client_ids`` from the one ``first`` falls in to the one ``last`` falls in
    (every quarter of theirs without ``first`` and ``last``)."""
    ids, quarter = _ids(client_ids), _quarter_sql(dialect)
    quarters = window = ""
    if first is not None and last is not None:
        low, high = quarter_of(first), quarter_of(last)
        begin, end = quarter_start(low), quarter_start(high + 1)
        quarters = f" AND quarter >= {low} AND quarter <= {high}"
        if dialect == "postgresql":
            window = f" AND started_at >= '{begin.isoformat()}'::timestamptz AND started_at < '{end.isoformat()}'::timestamptz"
        else:  # the stored text is 'YYYY-MM-DD HH:MM:SS.ffffff' (naive UTC): it sorts as the instants do
            naive = "%Y-%m-%d %H:%M:%S"
            window = f" AND started_at >= '{begin.strftime(naive)}' AND started_at < '{end.strftime(naive)}'"
    return (lock_statement(client_ids) if dialect == "postgresql" else None), [
        f"DELETE FROM call_event_quarters WHERE client_id IN ({ids}){quarters}",
        "INSERT INTO call_event_quarters (client_id, quarter, calls, newest_ingest)"
        f" SELECT client_id, {quarter}, count(*), max(ingested_at) FROM call_events"
        f" WHERE client_id IN ({ids}){window} GROUP BY client_id, {quarter}",
    ]


def lock_statement(client_ids: Sequence[int]) -> str:
    """PostgreSQL: the clients' rows locked, in id order, before their quarters are written."""
    return f"SELECT id FROM clients WHERE id IN ({_ids(client_ids)}) ORDER BY id FOR NO KEY UPDATE"


_PG_QUARTER = "floor(extract(epoch FROM started_at) / 900)::bigint"
_SQLITE_QUARTER = "CAST(strftime('%s', started_at) AS INTEGER) / 900"  # calls start after 1970: truncation is floor


def _quarter_sql(dialect: str) -> str:
    """A call's quarter-hour in SQL."""
    if dialect not in ("postgresql", "sqlite"):
        raise RuntimeError(f"no call quarters for database dialect {dialect!r}")
    return _PG_QUARTER if dialect == "postgresql" else _SQLITE_QUARTER
_PG_ADD = ("ON CONFLICT (client_id, quarter) DO UPDATE SET calls = call_event_quarters.calls + excluded.calls,"
           " newest_ingest = greatest(call_event_quarters.newest_ingest, excluded.newest_ingest)")


def inserting(insert_sql: str) -> str:
    """PostgreSQL: ``insert_sql`` (an ``INSERT INTO call_events ... ON CONFLICT DO NOTHING``) with the
    quarters of the calls it inserted added, in one statement whose one row is how many it inserted."""
    return (f"WITH inserted AS ({insert_sql} RETURNING client_id, started_at, ingested_at), "
            "added AS (INSERT INTO call_event_quarters (client_id, quarter, calls, newest_ingest)"
            f" SELECT client_id, {_PG_QUARTER}, count(*), max(ingested_at) FROM inserted"
            f" GROUP BY client_id, {_PG_QUARTER} {_PG_ADD}) "
            "SELECT count(*) FROM inserted")


def table_increments(table: pa.Table) -> pa.Table:
    """Per (client, quarter) of a call table: its calls and newest ingest, as epoch microseconds."""
    started = table.column("started_at").cast(pa.timestamp("us")).cast(pa.int64()).to_numpy()
    ingested = table.column("ingested_at").cast(pa.timestamp("us")).cast(pa.int64())
    calls = pa.table({"client_id": table.column("client_id").cast(pa.int64()),
                      "quarter": pa.array(np.floor_divide(started, QUARTER_SECONDS * 1_000_000)),
                      "ingested": ingested})
    return calls.group_by(["client_id", "quarter"], use_threads=False).aggregate(
        [("ingested", "count"), ("ingested", "max")])


def add_table_statement(table: pa.Table) -> str:
    """PostgreSQL: every call of ``table`` (all of them inserted) added to its quarter, in one statement
    (the increments as four array literals: integers only)."""
    increments = table_increments(table)

    def array(name: str) -> str:
        return "{" + ",".join(str(v) for v in increments.column(name).to_numpy()) + "}"
    return ("INSERT INTO call_event_quarters (client_id, quarter, calls, newest_ingest)"
            " SELECT client_id, quarter, calls, timestamptz 'epoch' + newest * interval '1 microsecond'"
            f" FROM unnest('{array('client_id')}'::int[], '{array('quarter')}'::bigint[],"
            f" '{array('ingested_count')}'::int[], '{array('ingested_max')}'::bigint[])"
            f" AS t(client_id, quarter, calls, newest) {_PG_ADD}")


def refresh(dialect: str, execute: Callable[[str], object], query: Callable[[str], object],
            client_ids: Sequence[int], first: dt.datetime | None, last: dt.datetime | None) -> None:
    """Recompute the quarters a write touched (see the module docstring), through the writer's own
    connection: ``execute`` runs a statement, ``query`` runs one and reads its rows. Nothing when the
    write brought no call (``first`` is None)."""
    if first is None or last is None or not client_ids:
        return
    recompute(dialect, execute, query, client_ids, first, last)


def recompute(dialect: str, execute: Callable[[str], object], query: Callable[[str], object],
              client_ids: Sequence[int], first: dt.datetime | None = None, last: dt.datetime | None = None) -> None:
    """:func:`refresh_statements` run on a connection (see :func:`refresh`), the lock first."""
    lock, statements = refresh_statements(dialect, client_ids, first, last)
    if lock is not None:
        query(lock)
    for statement in statements:
        execute(statement)


def insert_adding(query: Callable[[str], Sequence], client_ids: Sequence[int], insert_sql: str) -> int:
    """PostgreSQL: the clients locked, then ``insert_sql`` run by :func:`inserting` (its calls added to
    their quarters in the same statement); how many calls it inserted."""
    query(lock_statement(client_ids))
    [(inserted,)] = query(inserting(insert_sql))
    return int(inserted)


def drift_statement(dialect: str) -> str:
    """``(client_id, quarter)`` of every quarter whose row differs from its calls (or is missing, or has
    no calls left): the calls aggregated again, compared both ways by ``EXCEPT``."""
    quarter = _quarter_sql(dialect)
    actual = (f"SELECT client_id, {quarter} AS quarter, count(*) AS calls, max(ingested_at) AS newest_ingest"
              f" FROM call_events GROUP BY client_id, {quarter}")
    kept = "SELECT client_id, quarter, calls, newest_ingest FROM call_event_quarters"
    return (f"SELECT DISTINCT client_id, quarter FROM (SELECT * FROM ({actual} EXCEPT {kept}) AS missing"
            f" UNION ALL SELECT * FROM ({kept} EXCEPT {actual}) AS extra) AS differ")


def windows_query(client_id: int, windows: Sequence[tuple[dt.datetime, dt.datetime]]) -> str:
    """One client's ``(window index, calls, newest ingest)`` of each window (on quarter-hours; calls
    NULL when none): two index range scans per window, of at most ~100 quarters each (a join on the
    two bounds was a nested loop comparing every quarter with every window: 16 ms for 30 days).
    Integers only, written into the SQL."""
    client = int(client_id)
    values = ", ".join(f"({i}, {quarter_of(start)}, {quarter_of(end)})" for i, (start, end) in enumerate(windows))
    within = f"FROM call_event_quarters q WHERE q.client_id = {client} AND q.quarter >= w.low AND q.quarter < w.high"
    return (f"WITH w(i, low, high) AS (VALUES {values}) "
            f"SELECT w.i, (SELECT sum(q.calls) {within}), (SELECT max(q.newest_ingest) {within}) FROM w")


__all__ = ["QUARTER_SECONDS", "add_table_statement", "drift_statement", "insert_adding", "inserting", "lock_statement", "on_quarter",
           "quarter_of", "quarter_start", "recompute", "refresh", "refresh_statements", "table_increments",
           "windows_query"]
