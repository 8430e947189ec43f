"""``call_event_quarters``: each client's calls per UTC quarter-hour, kept by every writer of
``call_events`` and read by the freshness checks instead of counting a day's calls again.

Every test compares the table with the calls themselves, quartered here in Python (epoch seconds
// 900), not by the code under test; the quarters named by number are worked out by hand.
"""

from __future__ import annotations

import datetime as dt
import re
import threading
from dataclasses import replace
from pathlib import Path

import pyarrow as pa
import pytest
from sqlalchemy import Engine, event, func, select

from report_pipelines.adapters.db import bulk, call_quarters
from report_pipelines.adapters.db.bulk import load_call_events
from report_pipelines.adapters.db.call_quarters import on_quarter, quarter_of
from report_pipelines.adapters.db.migrate import downgrade, upgrade
from report_pipelines.adapters.db.models import CallEvent, CallEventQuarterRow
from report_pipelines.adapters.db.repositories import CallEventRepository
from report_pipelines.domain.timezones import local_day_window, parse_zone
from report_pipelines.services import reading
from report_pipelines.services.cdr_import import import_cdr
from report_pipelines.services.clients import list_clients
from report_pipelines.services.demo import seed_demo
from report_pipelines.services.extracts import ClientDay, run_client_days
from report_pipelines_tests.extract_support import SEEDED_AT, SMALL, UTC, late_call, seed
from report_pipelines_tests.test_cdr_pbx_exports import day_file, licensed_client

NOW = dt.datetime(2024, 6, 1, tzinfo=UTC)
DAYS = [SMALL.start + dt.timedelta(days=d) for d in range(SMALL.days)]
EPOCH = dt.datetime(1970, 1, 1, tzinfo=UTC)


def _truth(engine: Engine) -> dict[tuple[int, int], tuple[int, dt.datetime]]:
    """``(client, quarter) -> (calls, newest ingest)`` from the calls, quartered in Python."""
    with engine.connect() as conn:
        rows = conn.execute(select(CallEvent.client_id, CallEvent.started_at, CallEvent.ingested_at)).all()
    truth: dict[tuple[int, int], tuple[int, dt.datetime]] = {}
    for client_id, started, ingested in rows:
        key = (client_id, int((started - EPOCH).total_seconds()) // 900)
        calls, newest = truth.get(key, (0, ingested))
        truth[key] = (calls + 1, max(newest, ingested))
    return truth


def _kept(engine: Engine) -> dict[tuple[int, int], tuple[int, dt.datetime]]:
    row = CallEventQuarterRow
    with engine.connect() as conn:
        return {(c, q): (n, newest) for c, q, n, newest in
                conn.execute(select(row.client_id, row.quarter, row.calls, row.newest_ingest))}


# --- the arithmetic -----------------------------------------------------------------------------------
def test_quarters_are_exact_and_every_local_day_is_a_run_of_whole_quarters() -> None:
    # 2024-03-09 14:00 UTC is epoch 1,709,992,800 = 900 x 1,899,992; 14:14:59.999999 is the same quarter.
    assert quarter_of(dt.datetime(2024, 3, 9, 14, 0, tzinfo=UTC)) == 1_899_992
    assert quarter_of(dt.datetime(2024, 3, 9, 14, 14, 59, 999_999, tzinfo=UTC)) == 1_899_992
    assert quarter_of(dt.datetime(2024, 3, 9, 14, 15, tzinfo=UTC)) == 1_899_993
    assert not on_quarter(dt.datetime(2024, 3, 9, 14, 7, tzinfo=UTC))
    # Offsets of 5:45 (Kathmandu) and 12:45/13:45 (Chatham, on its DST days), Lord Howe's half-hour
    # DST change, New York's gap and overlap: every local midnight is on a quarter-hour.
    for zone, day in (("Asia/Kathmandu", dt.date(2024, 3, 10)), ("Pacific/Chatham", dt.date(2024, 4, 7)),
                      ("Pacific/Chatham", dt.date(2024, 9, 29)), ("Australia/Lord_Howe", dt.date(2024, 4, 7)),
                      ("America/New_York", dt.date(2024, 3, 10)), ("America/New_York", dt.date(2024, 11, 3))):
        start, end = local_day_window(day, parse_zone(zone))
        assert on_quarter(start) and on_quarter(end), (zone, day)
    # A 23-hour and a 25-hour day: 92 and 100 quarters; Lord Howe's 24.5-hour day: 98.
    for zone, day, quarters in (("America/New_York", dt.date(2024, 3, 10), 92),
                                ("America/New_York", dt.date(2024, 11, 3), 100),
                                ("Australia/Lord_Howe", dt.date(2024, 4, 7), 98)):
        start, end = local_day_window(day, parse_zone(zone))
        assert quarter_of(end) - quarter_of(start) == quarters


# --- every writer keeps the table equal to the calls ------------------------------------------------
def test_the_seed_a_late_call_and_an_ignored_repeat_keep_the_quarters_equal_to_the_calls(engine: Engine,
                                                                                          tmp_path: Path) -> None:
    seeded = seed(engine, tmp_path)
    assert _kept(engine) == _truth(engine) and len(_kept(engine)) > 100
    ny = seeded.clients["America/New_York"]
    started = dt.datetime(2024, 3, 9, 14, 7, tzinfo=UTC)
    before = _kept(engine).get((ny.id, 1_899_992), (0, None))[0]
    ingested = dt.datetime(2024, 5, 1, 9, 30, tzinfo=UTC)
    assert load_call_events(engine, late_call(ny.id, "late-q-1", started, ingested)) == 1
    assert _kept(engine)[(ny.id, 1_899_992)] == (before + 1, ingested)
    assert _kept(engine) == _truth(engine)
    # The source observation's per-client figures come from the quarters: what the calls say.
    by_client: dict[int, tuple[int, dt.datetime]] = {}
    for (client_id, _), (calls, newest) in _truth(engine).items():
        n, latest = by_client.get(client_id, (0, newest))
        by_client[client_id] = (n + calls, max(latest, newest))
    marks = CallEventRepository(engine).watermarks()
    assert {m.client_id: (m.events, m.ingest_watermark) for m in marks} == by_client
    with engine.connect() as conn:
        newest_start = conn.execute(select(func.max(CallEvent.started_at)).where(CallEvent.client_id == ny.id)).scalar()
    assert [m.latest_started_at for m in marks if m.client_id == ny.id] == [newest_start]
    # The same call again, ingested later, ignored as a repeat: the quarter keeps its first ingest.
    again = late_call(ny.id, "late-q-1", started, ingested + dt.timedelta(days=1))
    assert load_call_events(engine, again, on_conflict="ignore") == 0
    assert _kept(engine)[(ny.id, 1_899_992)] == (before + 1, ingested)
    assert _kept(engine) == _truth(engine)


@pytest.mark.parametrize("path", ["binary", "binary-rebuild", "binary-ignore"])
def test_the_binary_loads_keep_the_quarters_equal_to_the_calls(pg_engine: Engine, tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch, path: str) -> None:
    seeded = seed(pg_engine, tmp_path)
    monkeypatch.setattr(bulk, "BINARY_MIN_ROWS", 1)
    monkeypatch.setattr(bulk, "REBUILD_MIN_ROWS", 1 if path == "binary-rebuild" else 10**12)
    lisbon = seeded.clients["Europe/Lisbon"]
    starts = [dt.datetime(2024, 3, 9, 23, 59, 59, tzinfo=UTC), dt.datetime(2024, 3, 10, 0, 0, tzinfo=UTC),
              dt.datetime(2024, 3, 10, 0, 14, tzinfo=UTC)]
    table = pa.concat_tables([late_call(lisbon.id, f"bin-{i}", s, NOW) for i, s in enumerate(starts)])
    if path == "binary-ignore":  # and a call stored already, ingested again later: skipped, its quarter unchanged
        with pg_engine.connect() as conn:
            stored_id, stored_start = conn.execute(select(CallEvent.pbx_call_id, CallEvent.started_at).where(
                CallEvent.client_id == lisbon.id).limit(1)).one()
        table = pa.concat_tables([table, late_call(lisbon.id, stored_id, stored_start, NOW + dt.timedelta(days=1))])
    if path == "binary-rebuild":  # a rebuild needs the table to bring at least what call_events holds
        monkeypatch.setattr(bulk, "_MIN_ROW_BYTES", 10**9)
    loaded = load_call_events(pg_engine, table, on_conflict="ignore" if path == "binary-ignore" else "error")
    assert loaded == 3
    kept = _kept(pg_engine)
    # 2024-03-09 23:59:59 is the last second of quarter 1,900,031 (2024-03-10 00:00 = 1,710,028,800 s
    # = 900 x 1,900,032); 00:00 and 00:14 are both in 1,900,032.
    assert kept[(lisbon.id, 1_900_032)][1] == NOW and kept[(lisbon.id, 1_900_031)][1] == NOW
    assert kept == _truth(pg_engine)


def test_an_import_with_replace_keeps_the_quarters_equal_to_the_calls(engine: Engine, tmp_path: Path) -> None:
    client = licensed_client(engine, "fix", "Fix", "UTC")
    # 2024-05-06 07:00 UTC = 1,714,978,800 s = 900 x 1,905,532; 08:00 is 4 quarters later; 7 May 07:00 96 later.
    first = day_file(tmp_path / "first.csv", [("1714978800.1", "2024-05-06 07:00:00"),
                                              ("1714982400.2", "2024-05-06 08:00:00"),
                                              ("1715065200.3", "2024-05-07 07:00:00")])
    import_cdr(engine, "fix", "asterisk-csv", first, data_dir=tmp_path)
    assert {q: n for (c, q), (n, _) in _kept(engine).items() if c == client.id} == {1_905_532: 1, 1_905_536: 1,
                                                                                    1_905_628: 1}
    # The repaired file spans 6 May 07:00 .. 7 May 07:00: its two calls replace the three, and 08:00 empties.
    repaired = day_file(tmp_path / "repaired.csv", [("1714978800.8", "2024-05-06 07:00:00"),
                                                     ("1715065200.3", "2024-05-07 07:00:00")])
    summary = import_cdr(engine, "fix", "asterisk-csv", repaired, data_dir=tmp_path, replace=True)
    assert (summary.replaced, summary.imported) == (3, 2)
    assert {q: n for (c, q), (n, _) in _kept(engine).items() if c == client.id} == {1_905_532: 1, 1_905_628: 1}
    assert _kept(engine) == _truth(engine)


def test_a_demo_reset_takes_the_clients_quarters_with_their_calls(engine: Engine, tmp_path: Path) -> None:
    seeded = seed(engine, tmp_path)
    old = seeded.clients["America/New_York"].id
    assert old in {c for c, _ in _kept(engine)}
    # Seeded again (reset) with its first client only: that client is deleted with its calls and made anew.
    seed_demo(engine, replace(SMALL, clients=1), now=SEEDED_AT, reset=True)
    [new] = [c.id for c in list_clients(engine) if c.slug == seeded.clients["America/New_York"].slug]
    assert new != old and old not in {c for c, _ in _kept(engine)} and new in {c for c, _ in _kept(engine)}
    assert _kept(engine) == _truth(engine)


def test_the_migration_fills_the_quarters_from_the_calls_already_stored(engine: Engine, tmp_path: Path) -> None:
    seed(engine, tmp_path)
    expected = _truth(engine)
    downgrade(engine, "0013")
    upgrade(engine)
    assert _kept(engine) == expected


def test_two_writers_of_one_client_recompute_one_after_the_other(pg_engine: Engine, tmp_path: Path) -> None:
    """Each writer inserts into the same quarter; the second's recomputation waits for the first's commit
    (the clients' rows locked), then counts both calls. Without the lock it would meet the first's
    uncommitted quarter row and fail on the primary key."""
    seeded = seed(pg_engine, tmp_path)
    ny = seeded.clients["America/New_York"]
    started = dt.datetime(2024, 3, 9, 14, 1, tzinfo=UTC)
    before = _kept(pg_engine).get((ny.id, 1_899_992), (0, None))[0]
    insert = ("INSERT INTO call_events (client_id, pbx_call_id, direction, started_at, ended_at, disposition,"
              " ingested_at) VALUES (%(c)s, %(id)s, 'inbound', %(s)s, %(s)s, 'NO ANSWER', %(i)s)")
    first, second = pg_engine.connect(), pg_engine.connect()
    try:
        tx_first, tx_second = first.begin(), second.begin()
        first.exec_driver_sql(insert, {"c": ny.id, "id": "w-1", "s": started, "i": NOW})
        second.exec_driver_sql(insert, {"c": ny.id, "id": "w-2", "s": started, "i": NOW + dt.timedelta(seconds=1)})

        def refresh(conn) -> None:
            call_quarters.refresh("postgresql", conn.exec_driver_sql, lambda sql: conn.exec_driver_sql(sql).all(),
                                  [ny.id], started, started)

        refresh(first)
        errors: list[BaseException] = []

        def run_second() -> None:
            try:
                refresh(second)
                tx_second.commit()
            except BaseException as err:  # surfaced below
                errors.append(err)

        waiting = threading.Thread(target=run_second)
        waiting.start()
        waiting.join(0.5)
        assert waiting.is_alive()  # waits for the first writer's lock
        tx_first.commit()
        waiting.join(30)
        assert not waiting.is_alive() and errors == []
    finally:
        first.close()
        second.close()
    assert _kept(pg_engine)[(ny.id, 1_899_992)] == (before + 2, NOW + dt.timedelta(seconds=1))
    assert _kept(pg_engine) == _truth(pg_engine)


# --- the readers ------------------------------------------------------------------------------------
def test_a_period_check_reads_the_quarters_not_the_calls_and_finds_the_late_day(engine: Engine, tmp_path: Path) -> None:
    seeded = seed(engine, tmp_path)
    app = seeded.app
    ny = seeded.clients["America/New_York"]
    zone = parse_zone(ny.timezone)
    run_client_days(app, [ClientDay(ny.id, ny.timezone, d) for d in DAYS], workers=1, now=NOW)
    events = CallEventRepository(engine)
    windows = [local_day_window(d, zone) for d in DAYS]
    # The quarters give each day what counting its calls gives (the 10th is New York's 23-hour day).
    assert events.windows_sources(ny.id, windows) == [events.day_source_from_calls(ny.id, *w) for w in windows]
    assert events.day_sources([ny.id], *windows[2]) == {ny.id: events.day_source_from_calls(ny.id, *windows[2])}
    assert events.window_counts([ny.id], *windows[2]) == {ny.id: events.day_source_from_calls(ny.id, *windows[2]).rows}
    # A window off the quarter-hours (a day cut at now) is counted from the calls.
    cut = (windows[2][0], windows[2][0] + dt.timedelta(hours=13, minutes=7))
    assert events.windows_sources(ny.id, [cut]) == [events.day_source_from_calls(ny.id, *cut)]
    assert events.window_counts([ny.id], *cut) == {ny.id: events.day_source_from_calls(ny.id, *cut).rows}

    start, _ = local_day_window(DAYS[1], zone)
    load_call_events(engine, late_call(ny.id, "late-period-1", start + dt.timedelta(hours=9), NOW))
    statements: list[str] = []
    planned: list[int] = []

    def seen(conn, cursor, statement, *args) -> None:
        statements.append(statement)

    event.listen(app.engine, "before_cursor_execute", seen)
    try:
        request, kept = reading.open_request(app, "call_detail", ny.slug, DAYS[0], DAYS[-1], NOW, stamps=True)
        period = reading.prepare_period(app, request, now=NOW, refresh_stale=True, kept=kept,
                                        on_plan=lambda cached, missing: planned.append(len(statements)))
    finally:
        event.remove(app.engine, "before_cursor_execute", seen)
    assert period.computed == [DAYS[1]]  # the late call's day, and only it
    before_plan = statements[:planned[0]]
    assert not [s for s in before_plan if re.search(r"\bcall_events\b", s)]  # no call counted to decide
    assert sum("call_event_quarters" in s for s in before_plan) == 1  # one statement for the four days
    assert sum("report_cache_manifest" in s for s in before_plan) == 1  # the day tables and stamps together


def test_check_quarters_finds_a_hand_made_insert_and_fix_recomputes_it(engine: Engine, tmp_path: Path) -> None:
    """A call written into call_events by hand (as with psql), bypassing the writers: the command names
    the client and its one differing quarter, exits 1, and with --fix recomputes them."""
    from click.testing import CliRunner

    from report_pipelines.cli import main

    seeded = seed(engine, tmp_path)
    sydney = seeded.clients["Australia/Sydney"]
    env = {"REPORT_PIPELINES_DATABASE_URL": engine.url.render_as_string(hide_password=False),
           "REPORT_PIPELINES_DATA_DIR": str(tmp_path / "data")}
    runner = CliRunner()
    clean = runner.invoke(main, ["db", "check-quarters"], env=env)
    assert clean.exit_code == 0 and clean.stdout == "call_event_quarters agrees with call_events\n"
    with engine.begin() as conn:  # through the ORM, not a writer that keeps the quarters
        conn.execute(CallEvent.__table__.insert().values(
            client_id=sydney.id, pbx_call_id="by-hand-1", direction="inbound", started_at=dt.datetime(
                2024, 3, 9, 14, 7, tzinfo=UTC), ended_at=dt.datetime(2024, 3, 9, 14, 9, tzinfo=UTC),
            disposition="NO ANSWER", ingested_at=NOW))
    found = runner.invoke(main, ["db", "check-quarters"], env=env)
    assert found.exit_code == 1
    assert found.stdout == f"1 quarter-hours of 1 client(s) differ from their calls (client {sydney.id}: 1)\n"
    assert "--fix" in found.stderr
    fixed = runner.invoke(main, ["db", "check-quarters", "--fix"], env=env)
    assert fixed.exit_code == 0 and fixed.stdout.endswith("recomputed the quarters of 1 client(s): they agree now\n")
    assert _kept(engine) == _truth(engine)
    assert _kept(engine)[(sydney.id, 1_899_992)][1] == NOW
