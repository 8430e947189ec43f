"""Reading a zone-day's calls from PostgreSQL: ``COPY`` in binary into Arrow on the process's ADBC
connection, or as CSV into Arrow's CSV reader; the two give the same tables, to the microsecond and
the character, and a lost or busy ADBC connection costs no read."""

from __future__ import annotations

import datetime as dt

import pyarrow as pa
import pytest
from sqlalchemy import Engine, text

from report_pipelines.adapters.db import repositories
from report_pipelines.adapters.db.bulk import load_call_events
from report_pipelines.adapters.db.repositories import ARROW_READ_MIN_ROWS, CallEventRepository, _ArrowReader
from report_pipelines.services.clients import add_client
from report_pipelines_tests.test_bulk_load import _calls, _tricky_calls

UTC = dt.UTC
#: Both Lisbon days of _tricky_calls and the hours around them, as one window.
START, END = dt.datetime(2024, 3, 30, tzinfo=UTC), dt.datetime(2024, 10, 28, tzinfo=UTC)


@pytest.fixture
def two_clients(pg_engine: Engine) -> list[int]:
    a = add_client(pg_engine, "acme", "Acme", "Europe/Lisbon").id
    b = add_client(pg_engine, "bravo", "Bravo", "Europe/Lisbon").id
    load_call_events(pg_engine, pa.concat_tables([
        _tricky_calls(a),
        _calls(b, [f"b-{i:03d}" for i in range(40)], start=dt.datetime(2024, 6, 1, 23, 59, tzinfo=UTC)),
        _calls(b, ["at-start"], start=START), _calls(b, ["at-end"], start=END),  # the window: [START, END)
        _calls(b, ["same-start-z", "same-start-a"], start=dt.datetime(2024, 6, 2, 12, tzinfo=UTC))[:1],
    ]))
    load_call_events(pg_engine, _calls(b, ["same-start-a"], start=dt.datetime(2024, 6, 2, 12, tzinfo=UTC)))
    return [a, b]


def _reader(engine: Engine) -> _ArrowReader | None:
    return _ArrowReader._by_engine.get(engine)


def test_the_binary_read_gives_the_csv_reads_tables_exactly(pg_engine: Engine, two_clients: list[int]) -> None:
    repo = CallEventRepository(pg_engine)
    by_csv = repo.zone_day_calls(two_clients, START, END)  # expected to be small: no ADBC connection opened
    assert _reader(pg_engine) is None
    by_binary = repo.zone_day_calls(two_clients, START, END, expected_rows=ARROW_READ_MIN_ROWS)
    assert _reader(pg_engine).conn is not None  # this one came through ADBC
    a, b = two_clients
    assert by_binary[a].num_rows == 3 and by_binary[b].num_rows == 43  # at-end is outside [START, END)
    for client_id in two_clients:
        assert by_binary[client_id].schema.equals(by_csv[client_id].schema, check_metadata=True)
        assert by_binary[client_id].equals(by_csv[client_id]), client_id
    ids = by_binary[b].column("pbx_call_id").to_pylist()
    assert ids[0] == "at-start" and ids.index("same-start-a") < ids.index("same-start-z")  # start, then call id
    assert by_binary[a].column("callee").to_pylist() == ["内線 100", "Ελλάδα 🙂", None]
    assert by_binary[a].column("agent").to_pylist() == ["José Ñúñez", None, ""]  # empty text is not null
    empty = repo.zone_day_calls(two_clients, END + dt.timedelta(days=1), END + dt.timedelta(days=2))
    assert all(t.num_rows == 0 and t.schema.equals(by_csv[a].schema) for t in empty.values())


def test_the_process_opens_one_adbc_connection_and_reuses_it(pg_engine: Engine, two_clients: list[int],
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    import adbc_driver_postgresql.dbapi as adbc

    opened: list[str] = []
    connect = adbc.connect
    monkeypatch.setattr(adbc, "connect", lambda uri, *a, **k: opened.append(uri) or connect(uri, *a, **k))
    repo = CallEventRepository(pg_engine)
    reference = repo.zone_day_calls(two_clients, START, END)
    answers = [repo.zone_day_calls(two_clients, START, END, expected_rows=ARROW_READ_MIN_ROWS),
               repo.zone_day_calls(two_clients, START, END),  # small, but the connection is open: used
               repo.zone_day_calls(two_clients[:1], START, END)]
    assert len(opened) == 1
    for answer in answers:
        assert all(answer[c].equals(reference[c]) for c in answer)


def test_a_lost_or_busy_adbc_connection_costs_no_read(pg_engine: Engine, two_clients: list[int]) -> None:
    repo = CallEventRepository(pg_engine)
    reference = repo.zone_day_calls(two_clients, START, END)
    repo.zone_day_calls(two_clients, START, END, expected_rows=ARROW_READ_MIN_ROWS)
    reader = _reader(pg_engine)
    with reader.conn.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        [(pid,)] = cursor.fetchall()
    reader.conn.rollback()
    with pg_engine.connect() as conn:
        assert conn.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid}).scalar_one()
    after_loss = repo.zone_day_calls(two_clients, START, END)  # ADBC fails: the CSV COPY answers
    assert reader.conn is None and all(after_loss[c].equals(reference[c]) for c in two_clients)
    again = repo.zone_day_calls(two_clients, START, END, expected_rows=ARROW_READ_MIN_ROWS)
    assert reader.conn is not None and all(again[c].equals(reference[c]) for c in two_clients)  # reopened
    with reader.lock:  # another thread's read in progress: this one does not wait, it takes the CSV path
        busy = repo.zone_day_calls(two_clients, START, END)
    assert all(busy[c].equals(reference[c]) for c in two_clients)


def test_disposing_the_engine_closes_the_adbc_connection(pg_engine: Engine, two_clients: list[int]) -> None:
    def backends() -> int:
        with pg_engine.connect() as conn:
            return conn.execute(text("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
                                     " AND backend_type = 'client backend' AND pid <> pg_backend_pid()")).scalar_one()

    CallEventRepository(pg_engine).zone_day_calls(two_clients, START, END, expected_rows=ARROW_READ_MIN_ROWS)
    assert backends() == 1  # the ADBC connection (the pool's other connections are idle in the pool: none)
    pg_engine.dispose()
    assert _reader(pg_engine).conn is None
    assert backends() == 0


def test_a_read_whose_values_are_written_into_the_sql_cannot_carry_text(two_clients: list[int]) -> None:
    """The binary read's SQL holds its values (ADBC copies only a query without parameters): integers
    and UTC instants formatted by us, so no text from outside can reach it."""
    sql = repositories._calls_query([3, 1], dt.datetime(2024, 3, 31, 1, 0, tzinfo=dt.timezone(dt.timedelta(hours=1))),
                                    END)
    assert "ANY('{3,1}'::int[])" in sql and "'2024-03-31T00:00:00+00:00'::timestamptz" in sql
    with pytest.raises(ValueError):
        repositories._calls_query(["1); DROP TABLE clients; --"], START, END)  # type: ignore[list-item]


def _child_reads(engine: Engine, client_ids: list[int], out) -> None:
    """In a forked child: the parent's connection is forgotten, the child opens its own and closes it."""
    inherited_forgotten = _reader(engine).conn is None
    table = CallEventRepository(engine).zone_day_calls(client_ids, START, END, expected_rows=ARROW_READ_MIN_ROWS)
    opened_own = _reader(engine).conn is not None
    _ArrowReader.close_all()  # what the child's exit does
    out.put((inherited_forgotten, opened_own, sum(t.num_rows for t in table.values())))


def test_a_forked_child_never_uses_nor_closes_its_parents_adbc_connection(pg_engine: Engine,
                                                                         two_clients: list[int]) -> None:
    import multiprocessing
    import warnings

    repo = CallEventRepository(pg_engine)
    reference = repo.zone_day_calls(two_clients, START, END, expected_rows=ARROW_READ_MIN_ROWS)
    parents = _reader(pg_engine).conn
    context = multiprocessing.get_context("fork")
    out = context.Queue()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # fork() of a process with threads: the child only reads
        child = context.Process(target=_child_reads, args=(pg_engine, two_clients, out))
        child.start()
        child.join(60)
    assert child.exitcode == 0 and out.get(timeout=5) == (True, True, 46)
    again = repo.zone_day_calls(two_clients, START, END)
    assert _reader(pg_engine).conn is parents  # the parent's connection still works: not closed by the child
    assert all(again[c].equals(reference[c]) for c in two_clients)


@pytest.mark.parametrize("backend", ["postgresql-csv", "postgresql-binary", "sqlite"])
def test_the_call_ids_the_checks_fingerprint_are_each_clients_by_every_read(
        backend: str, pg_engine: Engine, sqlite_engine: Engine) -> None:
    """What the source check reads: each client's call ids in the window, as Arrow text (a client without
    calls absent), fingerprinted as the ids one by one would be."""
    from report_pipelines.domain.cache import call_ids_checksum

    engine = sqlite_engine if backend == "sqlite" else pg_engine
    a = add_client(engine, "acme", "Acme", "Europe/Lisbon").id
    b = add_client(engine, "bravo", "Bravo", "Europe/Lisbon").id
    idle = add_client(engine, "idle", "Idle", "Europe/Lisbon").id
    load_call_events(engine, pa.concat_tables([
        _tricky_calls(a), _calls(b, ["z-9", "a-1", "m-5"], start=dt.datetime(2024, 6, 1, tzinfo=UTC)),
        _calls(b, ["outside"], start=END)]))
    expected_rows = ARROW_READ_MIN_ROWS if backend == "postgresql-binary" else 0
    found = CallEventRepository(engine).zone_day_call_ids([b, idle, a], START, END, expected_rows=expected_rows)
    assert (_reader(engine) is not None) == (backend == "postgresql-binary")
    assert set(found) == {a, b}
    assert sorted(found[a].to_pylist()) == ["a-spring", "b-autumn", "c-quote"]
    assert sorted(found[b].to_pylist()) == ["a-1", "m-5", "z-9"]
    assert call_ids_checksum(found[b]) == call_ids_checksum(["z-9", "a-1", "m-5"])


def test_three_failures_in_a_row_pause_the_binary_read_for_a_minute(pg_engine: Engine, two_clients: list[int],
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """A database that refuses ADBC (restarting, say) costs one failed attempt per read three times, then
    the CSV path alone answers for PAUSE_S, then ADBC is tried again; every read is answered."""
    import adbc_driver_postgresql.dbapi as adbc

    clock = [1000.0]
    monkeypatch.setattr(repositories, "_clock", lambda: clock[0])
    attempts: list[str] = []
    connect = adbc.connect

    def refusing(uri, *args, **kwargs):
        attempts.append(uri)
        raise OSError("the server is restarting")

    monkeypatch.setattr(adbc, "connect", refusing)
    repo = CallEventRepository(pg_engine)
    reference = repo.zone_day_calls(two_clients, START, END)
    for _ in range(5):
        got = repo.zone_day_calls(two_clients, START, END, expected_rows=ARROW_READ_MIN_ROWS)
        assert all(got[c].equals(reference[c]) for c in two_clients)
    assert len(attempts) == 3  # then paused: the 4th and 5th reads did not try
    monkeypatch.setattr(adbc, "connect", connect)
    clock[0] += _ArrowReader.PAUSE_S + 1
    got = repo.zone_day_calls(two_clients, START, END)
    assert _reader(pg_engine).conn is not None and all(got[c].equals(reference[c]) for c in two_clients)
