from __future__ import annotations

import datetime as dt
import time

import pyarrow as pa
import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Engine, inspect, select, text
from sqlalchemy.orm import Session

from report_pipelines.adapters.db import engine as engine_module
from report_pipelines.adapters.db.bulk import CALL_EVENT_SCHEMA, load_call_events
from report_pipelines.adapters.db.engine import make_engine, transaction_free
from report_pipelines.adapters.db.migrate import current_revision, downgrade, head_revision, upgrade
from report_pipelines.adapters.db.models import Base, CallEvent
from report_pipelines.adapters.db.repositories import CallEventRepository
from report_pipelines.domain.errors import Conflict, InvalidInput
from report_pipelines.services.clients import add_client, list_clients

UTC = dt.UTC


def test_migrations_reach_head_and_match_the_models(engine: Engine) -> None:
    assert current_revision(engine) == head_revision()
    with engine.connect() as conn:
        diffs = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    assert diffs == []
    indexes = {ix["name"] for ix in inspect(engine).get_indexes("call_events")}
    assert {"ix_call_events_client_started", "ix_call_events_client_ingested"} <= indexes


def test_migrations_go_down_and_up_again(engine: Engine) -> None:
    downgrade(engine, "base")
    assert "call_events" not in inspect(engine).get_table_names()
    upgrade(engine)
    assert {"clients", "call_events"} <= set(inspect(engine).get_table_names())


def test_clients_add_and_list(engine: Engine) -> None:
    add_client(engine, "zeta", "Zeta Ltd", "Australia/Sydney")
    add_client(engine, "alpha", "Alpha SA", "America/Sao_Paulo")
    assert [(c.slug, c.timezone) for c in list_clients(engine)] == [
        ("alpha", "America/Sao_Paulo"),
        ("zeta", "Australia/Sydney"),
    ]


def test_duplicate_slug_is_refused_and_changes_nothing(engine: Engine) -> None:
    add_client(engine, "acme", "Acme", "Europe/Lisbon")
    with pytest.raises(Conflict) as err:
        add_client(engine, "acme", "Other", "UTC")
    assert err.value.field == "slug"
    assert [c.name for c in list_clients(engine)] == ["Acme"]


@pytest.mark.parametrize(
    ("slug", "zone", "field"),
    [("ok", "Mars/Olympus", "timezone"), ("ok", "", "timezone"), ("ok", "EST", "timezone"), ("ok", "US/Eastern", "timezone"),
     ("../etc", "UTC", "slug"), ("A B", "UTC", "slug"),
     ("acme\n", "UTC", "slug"),  # a trailing newline would pass a ^...$ match and look identical to "acme"
     ],
)
def test_bad_client_input_names_the_field(engine: Engine, slug: str, zone: str, field: str) -> None:
    with pytest.raises(InvalidInput) as err:
        add_client(engine, slug, "Name", zone)
    assert err.value.field == field
    assert list_clients(engine) == []


def _calls(client_id: int, ids: list[str], start: dt.datetime) -> pa.Table:
    n = len(ids)
    return pa.Table.from_pydict(
        {
            "client_id": [client_id] * n,
            "pbx_call_id": ids,
            "direction": ["inbound"] * n,
            "queue": ["support"] * n,
            "agent": [None] * n,
            "caller": ["+351210000000"] * n,
            "callee": ["100"] * n,
            "started_at": [start + dt.timedelta(minutes=i) for i in range(n)],
            "answered_at": [None] * n,
            "ended_at": [start + dt.timedelta(minutes=i, seconds=30) for i in range(n)],
            "disposition": ["ABANDONED"] * n,
            "queued_at": [None] * n,
            "ingested_at": [start + dt.timedelta(hours=1)] * n,
        },
        schema=CALL_EVENT_SCHEMA,
    )


def test_bulk_load_round_trips_instants_and_ignores_duplicates(engine: Engine) -> None:
    client = add_client(engine, "acme", "Acme", "Europe/Lisbon")
    start = dt.datetime(2024, 3, 31, 0, 30, 15, tzinfo=UTC)
    assert load_call_events(engine, _calls(client.id, ["a", "b", "c"], start)) == 3
    assert load_call_events(engine, _calls(client.id, ["b", "c", "d"], start), on_conflict="ignore") == 1
    with Session(engine) as session:
        rows = session.scalars(select(CallEvent).order_by(CallEvent.pbx_call_id)).all()
    assert [r.pbx_call_id for r in rows] == ["a", "b", "c", "d"]
    assert rows[0].started_at == start and rows[0].started_at.tzinfo is not None
    assert rows[3].ended_at == start + dt.timedelta(minutes=2, seconds=30)  # "d" was third in its batch
    [mark] = CallEventRepository(engine).watermarks()
    assert (mark.events, mark.latest_started_at, mark.ingest_watermark) == (
        4, start + dt.timedelta(minutes=2), start + dt.timedelta(hours=1))


def test_call_ids_are_unique_and_ordered_byte_by_byte_on_both_backends(engine: Engine) -> None:
    """A call id is an opaque identifier: "C" on PostgreSQL (no locale's strcoll), as SQLite's BINARY, so
    an ``ORDER BY pbx_call_id`` is Python's order there and here, and ids differing only in case or
    accents are different calls."""
    client = add_client(engine, "acme", "Acme", "Europe/Lisbon")
    ids = ["b", "B", "a-2", "a_1", "a10", "a9", "é.1", "e.1", "Z", "1709998200.170", "1709998200.17"]
    load_call_events(engine, _calls(client.id, ids, dt.datetime(2024, 1, 1, tzinfo=UTC)))
    with engine.connect() as conn:
        ordered = conn.execute(select(CallEvent.pbx_call_id).order_by(CallEvent.pbx_call_id)).scalars().all()
        if engine.dialect.name == "postgresql":
            collation = conn.execute(text(
                "SELECT collation_name FROM information_schema.columns"
                " WHERE table_name = 'call_events' AND column_name = 'pbx_call_id'")).scalar_one()
            assert collation == "C"
    # by code point (UTF-8's bytes order the same): digits, upper case, then '-' (0x2d) < '1' < '9' < '_' (0x5f)
    assert ordered == ["1709998200.17", "1709998200.170", "B", "Z", "a-2", "a10", "a9", "a_1", "b", "e.1", "é.1"]
    assert ordered == sorted(ids)


def test_kept_day_tables_are_compressed_with_lz4_on_postgresql_and_read_back_whole(pg_engine: Engine) -> None:
    """Migration 0013: the manifest's day tables (past the 2 KB TOAST threshold) are compressed with lz4,
    not pglz, and a value written after it reads back byte for byte; going down restores the default."""
    from report_pipelines.adapters.db.models import CacheEntry
    from report_pipelines.services.extracts import kept_table

    def method() -> str:
        with pg_engine.connect() as conn:
            return conn.execute(text("SELECT attcompression FROM pg_attribute WHERE attname = 'day_table'"
                                     " AND attrelid = 'report_cache_manifest'::regclass")).scalar_one()

    assert method() == "l"
    client = add_client(pg_engine, "acme", "Acme", "Europe/Lisbon")
    # a summary's day table as it is kept: Arrow IPC, past the TOAST threshold, compressible
    blob = kept_table(pa.table({"queue": ["support", "sales"] * 100, "offered": list(range(200))}))
    assert len(blob) > 2_048
    now = dt.datetime(2024, 1, 2, tzinfo=UTC)
    with Session(pg_engine) as session, session.begin():
        session.add(CacheEntry(report="queue_performance", client_id=client.id, local_date=dt.date(2024, 1, 1),
                               path="p", rows=1, bytes=1, checksum="c", source_rows=1, source_checksum="s",
                               computed_at=now, day_table=blob))
    with pg_engine.connect() as conn:
        stored, size, found = conn.execute(text(
            "SELECT pg_column_compression(day_table), pg_column_size(day_table), day_table"
            " FROM report_cache_manifest")).one()
    assert (stored, bytes(found)) == ("lz4", blob) and size < len(blob)
    downgrade(pg_engine, "0012")
    assert method() == ""
    upgrade(pg_engine)
    assert method() == "l"


def test_bulk_load_is_all_or_nothing(engine: Engine) -> None:
    client = add_client(engine, "acme", "Acme", "Europe/Lisbon")
    start = dt.datetime(2024, 1, 1, tzinfo=UTC)
    with pytest.raises(Exception):  # noqa: B017 - the duplicate inside one batch violates the unique key
        load_call_events(engine, _calls(client.id, ["x", "y", "x"], start))
    assert CallEventRepository(engine).count(client.id) == 0


def test_plain_postgresql_url_uses_psycopg2(pg_url: str) -> None:
    engine = make_engine(pg_url.replace("postgresql+psycopg2://", "postgresql://"))
    assert engine.dialect.driver == "psycopg2"
    engine.dispose()


def test_upgrade_from_0001_gives_existing_clients_an_active_from(engine: Engine) -> None:
    downgrade(engine, "0001")
    with engine.begin() as conn:
        conn.exec_driver_sql(
            "INSERT INTO clients (id, slug, name, timezone, created_at, updated_at) VALUES "
            "(1, 'old', 'Old', 'UTC', '2024-05-01 10:00:00', '2024-05-01 10:00:00'), "
            "(2, 'new', 'New', 'UTC', '2024-05-01 10:00:00', '2024-05-01 10:00:00')"
        )
        conn.exec_driver_sql(
            "INSERT INTO call_events (client_id, pbx_call_id, direction, started_at, ended_at, disposition, ingested_at)"
            " VALUES (1, 'x', 'inbound', '2024-02-03 12:00:00', '2024-02-03 12:01:00', 'BUSY', '2024-02-03 12:02:00')"
        )
    upgrade(engine)
    by_slug = {c.slug: c.active_from for c in list_clients(engine)}
    assert by_slug == {"old": dt.date(2024, 2, 3), "new": dt.date(2024, 5, 1)}


def test_a_new_client_is_active_from_today_in_its_own_zone(engine: Engine) -> None:
    client = add_client(engine, "kiritimati", "Line Islands", "Pacific/Kiritimati")
    assert client.active_from == dt.datetime.now(dt.timezone(dt.timedelta(hours=14))).date()
    assert list_clients(engine)[0].active_from == client.active_from
    explicit = add_client(engine, "since", "Since", "UTC", active_from=dt.date(2023, 1, 1))
    assert explicit.active_from == dt.date(2023, 1, 1)


def test_a_new_client_is_stamped_with_the_applications_clock(engine: Engine) -> None:
    from report_pipelines.adapters.db.models import Client

    # 10:30 UTC on 29 Feb 2024 is already 1 March in Kiritimati (UTC+14) and still 29 Feb in Honolulu
    pinned = dt.datetime(2024, 2, 29, 10, 30, tzinfo=UTC)
    east = add_client(engine, "line-islands", "Line Islands", "Pacific/Kiritimati", now=pinned)
    west = add_client(engine, "honolulu", "Honolulu", "Pacific/Honolulu", now=pinned)
    assert (east.active_from, west.active_from) == (dt.date(2024, 3, 1), dt.date(2024, 2, 29))
    with engine.connect() as conn:
        stamps = conn.execute(select(Client.created_at, Client.updated_at).where(Client.id == east.id)).one()
    assert tuple(s.astimezone(UTC) for s in stamps) == (pinned, pinned)


# --- the pool: a ping only after idle time; reads without a transaction -----------------------------------
def _backend_pid(engine: Engine) -> int:
    with engine.connect() as conn:
        return conn.execute(text("SELECT pg_backend_pid()")).scalar_one()


def test_a_connection_used_a_moment_ago_is_not_pinged_and_an_idle_one_is(pg_url: str, monkeypatch) -> None:
    engine = make_engine(pg_url)
    pings: list[object] = []
    real_ping = engine.dialect.do_ping
    monkeypatch.setattr(engine.dialect, "do_ping", lambda c: pings.append(c) or real_ping(c))
    try:
        first = _backend_pid(engine)  # a new connection: it has just answered the connect
        assert [_backend_pid(engine) for _ in range(5)] == [first] * 5 and pings == []  # reused, not pinged
        monkeypatch.setattr(engine_module, "IDLE_PING_S", 0.0)  # every connection counts as idle
        assert _backend_pid(engine) == first and len(pings) == 1
    finally:
        engine.dispose()


@pytest.mark.parametrize("reads", [False, True], ids=["in a transaction", "transaction-free"])
def test_an_idle_connection_the_server_dropped_is_replaced_before_anyone_uses_it(pg_url: str, monkeypatch,
                                                                                 reads: bool) -> None:
    engine, admin = make_engine(pg_url), make_engine(pg_url)
    try:
        dropped = _backend_pid(engine)
        with admin.connect() as conn:
            assert conn.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": dropped}).scalar_one()
        monkeypatch.setattr(engine_module, "IDLE_PING_S", 0.0)
        if reads:  # no error: the ping found it dead, the pool reconnected
            with transaction_free(engine) as conn:
                replaced = conn.execute(text("SELECT pg_backend_pid()")).scalar_one()
        else:
            replaced = _backend_pid(engine)
        assert replaced != dropped
    finally:
        engine.dispose()
        admin.dispose()


def _in_transaction_block(conn) -> bool:
    """Whether the statement runs inside a transaction begun earlier: only then is the transaction's start
    (``now()``) before the statement's (the pause makes them apart by more than the clock's microsecond)."""
    time.sleep(0.002)
    return conn.execute(text("SELECT now() < statement_timestamp()")).scalar_one()


def test_transaction_free_reads_have_no_transaction_see_each_commit_and_hand_back_a_normal_connection(
        pg_engine: Engine) -> None:
    # One connection: the next checkout is the same.
    engine = make_engine(pg_engine.url.render_as_string(hide_password=False), pool_size=1, max_overflow=0)
    try:
        with transaction_free(engine) as conn:
            driver = conn.connection.dbapi_connection
            assert conn.execute(text("SELECT count(*) FROM clients")).scalar_one() == 0
            add_client(pg_engine, "acme", "Acme", "Europe/Lisbon")  # committed on another connection meanwhile
            assert conn.execute(text("SELECT slug FROM clients")).scalars().all() == ["acme"]  # no old snapshot
            assert not _in_transaction_block(conn)
            assert driver.get_transaction_status() == 0  # idle between statements, not "idle in transaction"
        assert driver.autocommit is False  # back in the pool as any other connection
        with engine.connect() as conn:
            assert conn.connection.dbapi_connection is driver
            conn.execute(text("SELECT 1"))
            assert _in_transaction_block(conn)  # transactions as usual
            conn.execute(text("UPDATE clients SET name = 'Changed'"))
            conn.rollback()
        assert list_clients(pg_engine)[0].name == "Acme"  # the rollback undid the update: it was a transaction
    finally:
        engine.dispose()


def test_with_sqlite_transaction_free_is_a_plain_connection(sqlite_engine: Engine) -> None:
    with transaction_free(sqlite_engine) as conn:
        assert conn.execute(text("SELECT count(*) FROM clients")).scalar_one() == 0


class _Node:
    def __init__(self) -> None:
        self.other: _Node | None = None


def test_gc_paused_holds_the_collector_off_restores_it_and_leaves_no_cycle_behind() -> None:
    import gc
    import weakref

    from report_pipelines.adapters.db.engine import gc_paused

    assert gc.isenabled()
    with gc_paused():
        assert not gc.isenabled()
        a, b = _Node(), _Node()
        a.other, b.other = b, a  # a cycle made while the collector is off
        gone = weakref.ref(a)
        young = [_Node() for _ in range(20_000)]  # a large build's objects ...
    assert gc.isenabled()
    assert gc.get_count()[0] < 1_000  # ... do not count towards the next young collection
    assert all(gc.is_tracked(n) for n in young)  # still the collector's (in the oldest generation)
    del a, b
    assert gone() is not None  # reference counting cannot free a cycle ...
    gc.collect()
    assert gone() is None  # ... the next full collection does
    gc.collect()
    with gc_paused():
        few = [_Node() for _ in range(100)]  # a small read's objects ...
    assert gc.get_count()[0] >= 100  # ... stay young, and so do the process's other young objects
    del few
    gc.disable()
    try:
        with gc_paused():
            pass
        assert not gc.isenabled()  # a collector that was off stays off
    finally:
        gc.enable()
