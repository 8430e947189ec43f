"""The PostgreSQL bulk loaders side by side on a real server: CSV COPY (the old path, kept as the
reference) and COPY BINARY through ADBC, incremental and with the indexes rebuilt.

The size thresholds that choose a path are lowered so that a few rows take each one.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

import pyarrow as pa
import pytest
from sqlalchemy import Engine, exc, text

from report_pipelines.adapters.db import bulk
from report_pipelines.adapters.db.bulk import (
    CALL_EVENT_COLUMNS,
    CALL_EVENT_SCHEMA,
    call_event_constraints,
    load_call_events,
    load_call_events_csv,
)
from report_pipelines.domain.errors import InvalidInput
from report_pipelines.services.clients import add_client

UTC = dt.UTC
Loader = Callable[..., int]

#: Every index and constraint of call_events at head (the checks carry the naming convention twice).
EXPECTED = {"pk_call_events", "uq_call_events_client_call", "ix_call_events_client_started",
            "ix_call_events_client_ingested", "ix_call_events_ingested", "fk_call_events_client_id_clients",
            "ck_call_events_ck_call_events_direction", "ck_call_events_ck_call_events_disposition", "ck_call_events_ck_call_events_ends_after_start",
            "ck_call_events_ck_call_events_answered_within_call", "ck_call_events_ck_call_events_queued_within_call"}


@pytest.fixture(params=["csv", "binary", "binary-rebuild"])
def loader(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Loader:
    """One of the PostgreSQL paths, whatever the size of the table."""
    if request.param == "csv":
        return load_call_events_csv
    monkeypatch.setattr(bulk, "BINARY_MIN_ROWS", 1)
    monkeypatch.setattr(bulk, "REBUILD_MIN_ROWS", 1 if request.param == "binary-rebuild" else 10**12)
    return load_call_events


def _assert_constraints_intact(engine: Engine, client_id: int) -> None:
    constraints = call_event_constraints(engine)
    assert set(constraints) == EXPECTED and all(constraints.values()), constraints
    with pytest.raises(exc.IntegrityError, match="fk_call_events_client_id_clients"), engine.begin() as conn:
        conn.exec_driver_sql(
            "INSERT INTO call_events (client_id, pbx_call_id, direction, started_at, ended_at, disposition, ingested_at)"
            " VALUES (%(c)s, 'fk-probe', 'inbound', now(), now(), 'ANSWERED', now())", {"c": client_id + 1000})


def _rows(engine: Engine, client_id: int) -> list[dict]:
    with engine.connect() as conn:
        result = conn.exec_driver_sql(
            f"SELECT {', '.join(CALL_EVENT_COLUMNS)} FROM call_events WHERE client_id = %(c)s ORDER BY pbx_call_id",
            {"c": client_id})
        return [dict(r._mapping) for r in result]


def _count(engine: Engine) -> int:
    with engine.connect() as conn:
        return conn.execute(text("SELECT count(*) FROM call_events")).scalar_one()


def _tricky_calls(client_id: int) -> pa.Table:
    """Instants beside Lisbon's DST changes and at microsecond precision, nulls, non-ASCII text."""
    spring = dt.datetime(2024, 3, 31, 0, 59, 59, 999_999, tzinfo=UTC)  # 01:00 UTC: Lisbon jumps to 02:00
    autumn = dt.datetime(2024, 10, 27, 0, 59, 59, 123_456, tzinfo=UTC)  # 01:00 UTC: back to 01:00 again
    return pa.Table.from_pylist([
        {"client_id": client_id, "pbx_call_id": "a-spring", "direction": "inbound", "queue": "Suporte — São Paulo",
         "agent": "José Ñúñez", "caller": "+351 210 000 000", "callee": "内線 100",
         "started_at": spring, "answered_at": spring + dt.timedelta(microseconds=1),
         "ended_at": spring + dt.timedelta(minutes=3, microseconds=7), "disposition": "ANSWERED",
         "queued_at": spring, "ingested_at": spring + dt.timedelta(hours=1, microseconds=42)},
        {"client_id": client_id, "pbx_call_id": "b-autumn", "direction": "outbound", "queue": None,
         "agent": None, "caller": None, "callee": "Ελλάδα 🙂", "started_at": autumn, "answered_at": None,
         "ended_at": autumn + dt.timedelta(seconds=1), "disposition": "ABANDONED", "queued_at": None,
         "ingested_at": autumn},
        {"client_id": client_id, "pbx_call_id": "c-quote", "direction": "inbound", "queue": 'a "quoted", comma',
         "agent": "", "caller": "line\nbreak", "callee": None, "started_at": autumn + dt.timedelta(hours=1),
         "answered_at": None, "ended_at": autumn + dt.timedelta(hours=1), "disposition": "ABANDONED",
         "queued_at": None, "ingested_at": autumn + dt.timedelta(hours=2)},
    ], schema=CALL_EVENT_SCHEMA)


def _calls(client_id: int, ids: list[str], start: dt.datetime = dt.datetime(2024, 1, 1, tzinfo=UTC)) -> pa.Table:
    return pa.Table.from_pylist([
        {"client_id": client_id, "pbx_call_id": call_id, "direction": "inbound", "queue": "support",
         "started_at": start + dt.timedelta(minutes=i), "ended_at": start + dt.timedelta(minutes=i, seconds=30),
         "disposition": "ABANDONED", "ingested_at": start + dt.timedelta(hours=1)}
        for i, call_id in enumerate(ids)], schema=CALL_EVENT_SCHEMA)


def test_every_path_loads_the_same_rows_exactly(pg_engine: Engine, loader: Loader) -> None:
    reference = add_client(pg_engine, "reference", "Reference", "Europe/Lisbon")
    loaded = add_client(pg_engine, "loaded", "Loaded", "Europe/Lisbon")
    assert load_call_events_csv(pg_engine, _tricky_calls(reference.id)) == 3
    assert loader(pg_engine, _tricky_calls(loaded.id)) == 3

    expected = _tricky_calls(loaded.id).to_pylist()
    got = _rows(pg_engine, loaded.id)
    assert got == expected  # every column: instants to the microsecond, nulls, "" apart from null, text
    assert got == [{**r, "client_id": loaded.id} for r in _rows(pg_engine, reference.id)]
    assert all(r["started_at"].utcoffset() == dt.timedelta(0) for r in got)
    _assert_constraints_intact(pg_engine, loaded.id)


def test_ignore_skips_existing_and_repeated_calls_and_counts_them(pg_engine: Engine, loader: Loader) -> None:
    client = add_client(pg_engine, "acme", "Acme", "Europe/Lisbon")
    assert loader(pg_engine, _calls(client.id, ["a", "b", "c"])) == 3
    assert loader(pg_engine, _calls(client.id, ["b", "c", "d", "d"]), on_conflict="ignore") == 1
    assert [r["pbx_call_id"] for r in _rows(pg_engine, client.id)] == ["a", "b", "c", "d"]
    with pytest.raises(Exception, match="uq_call_events_client_call"):  # each driver raises its own IntegrityError
        loader(pg_engine, _calls(client.id, ["e", "a"]))
    assert _count(pg_engine) == 4
    _assert_constraints_intact(pg_engine, client.id)


@pytest.mark.parametrize("on_conflict", ["error", "ignore"])
def test_an_unknown_client_is_refused_by_name_and_nothing_is_loaded(
        pg_engine: Engine, monkeypatch: pytest.MonkeyPatch, on_conflict: str) -> None:
    client = add_client(pg_engine, "acme", "Acme", "Europe/Lisbon")
    table = pa.concat_tables([_calls(client.id, ["a", "b"]), _calls(client.id + 7, ["c"])])
    for binary_min_rows in (1, 10**9):  # the binary path and the small tables' CSV path
        monkeypatch.setattr(bulk, "BINARY_MIN_ROWS", binary_min_rows)
        with pytest.raises(InvalidInput) as err:
            load_call_events(pg_engine, table, on_conflict=on_conflict)
        assert err.value.field == "client_id" and str(client.id + 7) in err.value.message
        assert _count(pg_engine) == 0


def test_an_unknown_client_is_refused_on_sqlite_too(sqlite_engine: Engine) -> None:
    with pytest.raises(InvalidInput) as err:
        load_call_events(sqlite_engine, _calls(41, ["a"]))
    assert err.value.field == "client_id"


def test_a_failure_half_way_leaves_nothing_and_every_index_in_place(pg_engine: Engine, loader: Loader) -> None:
    client = add_client(pg_engine, "acme", "Acme", "Europe/Lisbon")
    assert loader(pg_engine, _calls(client.id, ["before"])) == 1
    start = dt.datetime(2024, 2, 1, tzinfo=UTC)
    good = _calls(client.id, [f"call-{i:05d}" for i in range(3_000)], start)
    bad = _calls(client.id, ["backwards"], start)  # ends before it starts: the check constraint refuses it
    bad = bad.set_column(bad.schema.get_field_index("ended_at"), "ended_at",
                         pa.array([start - dt.timedelta(seconds=1)], CALL_EVENT_SCHEMA.field("ended_at").type))
    for on_conflict in ("error", "ignore"):
        with pytest.raises(Exception, match="ends_after_start"):  # each driver raises its own IntegrityError
            loader(pg_engine, pa.concat_tables([good, bad, good.slice(0, 0)]), on_conflict=on_conflict)
        assert [r["pbx_call_id"] for r in _rows(pg_engine, client.id)] == ["before"]
        _assert_constraints_intact(pg_engine, client.id)


def test_rebuild_only_when_the_load_outweighs_the_table(pg_engine: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    """The incremental path for a small load into a full table; the rebuild for a large one."""
    monkeypatch.setattr(bulk, "BINARY_MIN_ROWS", 1)
    monkeypatch.setattr(bulk, "REBUILD_MIN_ROWS", 1)
    client = add_client(pg_engine, "acme", "Acme", "Europe/Lisbon")
    load_call_events(pg_engine, _calls(client.id, [f"old-{i}" for i in range(2_000)]))
    chosen: list[bool] = []
    decide = bulk.rebuild_pays
    monkeypatch.setattr(bulk, "rebuild_pays", lambda cursor, rows: chosen.append(decide(cursor, rows)) or chosen[-1])
    load_call_events(pg_engine, _calls(client.id, ["one-more"]))
    load_call_events(pg_engine, _calls(client.id, [f"new-{i}" for i in range(20_000)]))
    assert chosen == [False, True]
    assert _count(pg_engine) == 22_001
    _assert_constraints_intact(pg_engine, client.id)


def test_a_repeated_call_in_one_table_fails_it_whole(pg_engine: Engine, loader: Loader) -> None:
    """On the rebuild path the unique key is re-added after the copy, and refuses there."""
    client = add_client(pg_engine, "acme", "Acme", "Europe/Lisbon")
    with pytest.raises(Exception, match="uq_call_events_client_call"):  # each driver raises its own IntegrityError
        loader(pg_engine, _calls(client.id, ["x", "y", "x"]))
    assert _count(pg_engine) == 0
    _assert_constraints_intact(pg_engine, client.id)


def test_a_role_that_may_not_skip_the_trigger_rebuilds_with_the_foreign_key_revalidated(
        pg_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """A database owner that is no superuser may not set ``session_replication_role``: the incremental
    path keeps the per-row trigger and the rebuild drops the foreign key and re-adds it (validated over
    the whole table); both load, refuse an unknown client and leave every constraint intact. Granted
    ``SET`` on the parameter, it skips the trigger as a superuser does, and the key stays."""
    import uuid

    from sqlalchemy.engine import make_url

    from report_pipelines.adapters.db.engine import make_engine
    from report_pipelines.adapters.db.migrate import upgrade

    role, url = f"rp_loader_{uuid.uuid4().hex[:8]}", make_url(pg_url)
    admin = make_engine(url.set(database="postgres").render_as_string(hide_password=False))
    with admin.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text(f'CREATE ROLE "{role}" LOGIN NOSUPERUSER'))
        conn.execute(text(f'ALTER DATABASE "{url.database}" OWNER TO "{role}"'))  # CREATE on its public schema
    engine = make_engine(url.set(username=role).render_as_string(hide_password=False))
    try:
        upgrade(engine)  # the tables are the role's: it may drop and re-add their constraints
        monkeypatch.setattr(bulk, "BINARY_MIN_ROWS", 1)
        monkeypatch.setattr(bulk, "REBUILD_MIN_ROWS", 1)
        skipped: list[bool] = []
        restored: list[str] = []
        skip, drop = bulk.skip_foreign_key_trigger, bulk.drop_for_rebuild
        monkeypatch.setattr(bulk, "skip_foreign_key_trigger", lambda cursor: skipped.append(skip(cursor)) or skipped[-1])
        monkeypatch.setattr(bulk, "drop_for_rebuild", lambda cursor, **kw: restored.extend(drop(cursor, **kw)) or restored)
        client = add_client(engine, "acme", "Acme", "Europe/Lisbon")
        load_call_events(engine, _calls(client.id, [f"a-{i}" for i in range(300)]))  # the table is empty: rebuild
        load_call_events(engine, _calls(client.id, ["one-more"]))  # 1 row into 300: incremental
        assert skipped == [False, False]
        assert [s for s in restored if "FOREIGN KEY" in s] == [
            'ALTER TABLE call_events ADD CONSTRAINT "fk_call_events_client_id_clients" FOREIGN KEY (client_id) '
            "REFERENCES clients(id) ON DELETE RESTRICT"]
        assert any("PRIMARY KEY" in s for s in restored) and any("uq_call_events_client_call" in s for s in restored)
        with pytest.raises(InvalidInput, match="client_id"):
            load_call_events(engine, _calls(client.id + 1000, [f"b-{i}" for i in range(300)]))
        assert _count(engine) == 301
        _assert_constraints_intact(engine, client.id)

        with admin.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:  # PostgreSQL 15+
            conn.execute(text(f'GRANT SET ON PARAMETER session_replication_role TO "{role}"'))
        restored.clear()
        load_call_events(engine, _calls(client.id, [f"c-{i}" for i in range(5_000)]))  # outweighs the table
        assert skipped[-1] is True and restored and not [s for s in restored if "FOREIGN KEY" in s]
        assert _count(engine) == 5_301
        _assert_constraints_intact(engine, client.id)
    finally:
        engine.dispose()
        with admin.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{url.database}" WITH (FORCE)'))
            conn.execute(text(f'DROP OWNED BY "{role}"'))  # its grant on the parameter
            conn.execute(text(f'DROP ROLE IF EXISTS "{role}"'))
        admin.dispose()


def test_as_a_superuser_the_rebuild_keeps_the_foreign_key_and_skips_its_trigger(
        pg_engine: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    """The rows' clients are checked once per load (and locked), so the per-row trigger is skipped and
    the key is neither dropped nor re-validated; it still refuses a bad row afterwards."""
    monkeypatch.setattr(bulk, "BINARY_MIN_ROWS", 1)
    monkeypatch.setattr(bulk, "REBUILD_MIN_ROWS", 1)
    restored: list[str] = []
    drop = bulk.drop_for_rebuild
    monkeypatch.setattr(bulk, "drop_for_rebuild", lambda cursor, **kw: restored.extend(drop(cursor, **kw)) or restored)
    client = add_client(pg_engine, "acme", "Acme", "Europe/Lisbon")
    load_call_events(pg_engine, _calls(client.id, [f"a-{i}" for i in range(300)]))
    assert restored and not [s for s in restored if "FOREIGN KEY" in s]
    assert any("PRIMARY KEY" in s for s in restored)
    assert _count(pg_engine) == 300
    _assert_constraints_intact(pg_engine, client.id)
