"""What a process keeps of the summaries it read: day tables by checksum, presented periods by their days.

A summary read again must give what a process that never read it gives, must see a day recomputed since
(late data) and a licence changed since, and must keep no more than its bound."""

from __future__ import annotations

import datetime as dt
from dataclasses import replace
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pytest
from sqlalchemy import Engine, delete, update

from report_pipelines.adapters.db.bulk import load_call_events
from report_pipelines.adapters.db.models import CacheEntry, ClientProductRow
from report_pipelines.adapters.db.repositories import CacheManifestRepository
from report_pipelines.app import App
from report_pipelines.domain.errors import InvalidInput
from report_pipelines.domain.timezones import local_day_window, parse_zone
from report_pipelines.services import reading
from report_pipelines.services.extracts import ANY_TIME, ClientDay, kept_table, run_client_days
from report_pipelines.services.read_memo import ReadMemo, decode_kept
from report_pipelines.settings import PeriodSettings, Settings
from report_pipelines_tests.extract_support import SMALL, UTC, late_call, seed

NOW = dt.datetime(2024, 6, 1, tzinfo=UTC)
DAYS = [SMALL.start + dt.timedelta(days=d) for d in range(SMALL.days)]


def _decoded(rows: int) -> tuple:
    blob = kept_table(pa.table({"queue": ["q"] * rows, "offered": pa.array(range(rows), pa.int64())}))
    return decode_kept(blob, {}), len(blob)


# --- the memo on its own ------------------------------------------------------------------------------
def test_held_tables_are_named_by_date_and_a_recomputed_day_replaces_its_old_table() -> None:
    memo = ReadMemo(1 << 20)
    (one, size), (two, _) = _decoded(3), _decoded(4)
    day = dt.date(2024, 3, 10)
    memo.keep_day(7, "queue_performance", day, "c1", one, size)
    assert list(memo.held(7, "queue_performance", [day])) == ["c1"]
    assert memo.held(8, "queue_performance", [day]) == {}  # another client's day is not this one's
    assert memo.held(7, "hourly_volume", [day]) == {}
    assert memo.held(7, "queue_performance", [day + dt.timedelta(days=1)]) == {}
    memo.keep_day(7, "queue_performance", day, "c2", two, size)  # the day recomputed: a new checksum
    held = memo.held(7, "queue_performance", [day])
    assert list(held) == ["c2"] and sum(b.num_rows for b in held["c2"].batches) == 4
    assert memo.size == size + 200  # the old table went with its date


def test_identical_day_files_of_two_dates_share_one_table_and_both_dates_name_it() -> None:
    memo = ReadMemo(1 << 20)
    empty, size = _decoded(0)  # two empty days of one client can be the same file, byte for byte
    first, second = dt.date(2024, 3, 9), dt.date(2024, 3, 10)
    memo.keep_day(7, "queue_performance", first, "same", empty, size)
    memo.keep_day(7, "queue_performance", second, "same", empty, size)
    assert list(memo.held(7, "queue_performance", [first, second])) == ["same"]
    assert memo.held(7, "queue_performance", [first]) and memo.held(7, "queue_performance", [second])
    assert memo.size == size + 200


def test_the_bound_drops_the_least_recently_used_first() -> None:
    table, size = _decoded(2)
    memo = ReadMemo(3 * (size + 200))  # room for three days
    days = [dt.date(2024, 3, 1) + dt.timedelta(days=d) for d in range(4)]
    for i, day in enumerate(days[:3]):
        memo.keep_day(1, "r", day, f"c{i}", table, size)
    memo.held(1, "r", [days[0]])  # the first is used again: the second is now the oldest
    memo.keep_day(1, "r", days[3], "c3", table, size)
    assert sorted(memo.held(1, "r", days)) == ["c0", "c2", "c3"]
    assert memo.size <= memo.max_bytes
    memo.keep_summary(("a",), pd.DataFrame({"x": range(10_000)}))  # larger than the bound: not kept
    assert memo.summary(("a",)) is None and sorted(memo.held(1, "r", days)) == ["c0", "c2", "c3"]


def test_a_kept_summary_is_a_copy_each_way_and_a_zero_bound_keeps_nothing() -> None:
    memo = ReadMemo(1 << 20)
    frame = pd.DataFrame({"queue": ["a", "b"], "offered": [3, 4]})
    memo.keep_summary(("k",), frame)
    frame.loc[0, "offered"] = 99  # the caller changes what it gave
    got = memo.summary(("k",))
    assert got["offered"].tolist() == [3, 4]
    got.loc[1, "offered"] = 99  # and what it got
    assert memo.summary(("k",))["offered"].tolist() == [3, 4]
    assert (memo.hits, memo.misses) == (2, 0)
    off = ReadMemo(0)
    table, size = _decoded(2)
    off.keep_day(1, "r", dt.date(2024, 3, 1), "c", table, size)
    off.keep_summary(("k",), frame)
    assert off.held(1, "r", [dt.date(2024, 3, 1)]) == {} and off.summary(("k",)) is None and off.size == 0


def test_the_bound_is_a_setting_and_a_wrong_one_names_the_variable() -> None:
    assert Settings.from_env({"REPORT_PIPELINES_READ_MEMO_MB": "0"}).periods.memo_mb == 0
    assert Settings.from_env({}).periods.memo_mb == 64
    with pytest.raises(InvalidInput) as err:
        Settings.from_env({"REPORT_PIPELINES_READ_MEMO_MB": "lots"})
    assert "REPORT_PIPELINES_READ_MEMO_MB" in str(err.value)


# --- on the database ----------------------------------------------------------------------------------
def test_the_manifest_read_sends_only_the_tables_not_held(engine: Engine, tmp_path: Path) -> None:
    seeded = seed(engine, tmp_path)
    ny = seeded.clients["America/New_York"]
    run_client_days(seeded.app, [ClientDay(ny.id, ny.timezone, d) for d in DAYS], workers=1, now=NOW)
    manifest = CacheManifestRepository(engine)
    sent = manifest.day_tables(ny.id, DAYS[0], DAYS[-1], "queue_performance")
    assert sorted(sent) == DAYS and all(row is not None and row.data for row in sent.values())
    checksums = {e.local_date: e.checksum for e in manifest.entries(ny.id, DAYS[0], DAYS[-1], ("queue_performance",))}
    assert {d: row.checksum for d, row in sent.items()} == checksums
    held = [checksums[DAYS[1]], checksums[DAYS[2]]]
    again = manifest.day_tables(ny.id, DAYS[0], DAYS[-1], "queue_performance", held=held)
    assert {d: row.data is None for d, row in again.items()} == {DAYS[0]: False, DAYS[1]: True, DAYS[2]: True,
                                                                DAYS[3]: False}
    assert again[DAYS[0]].data == sent[DAYS[0]].data
    with engine.begin() as conn:  # a row that keeps no table (its day too large): read from its file
        conn.execute(update(CacheEntry).where(CacheEntry.client_id == ny.id, CacheEntry.local_date == DAYS[3],
                                              CacheEntry.report == "queue_performance").values(day_table=None))
    last = manifest.day_tables(ny.id, DAYS[0], DAYS[-1], "queue_performance", held=held)
    assert last[DAYS[3]] is None and [d for d, row in last.items() if row is None] == [DAYS[3]]


def _counting_decodes(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    calls: list[int] = []
    original = reading.decode_kept

    def counted(blob, schemas):
        calls.append(len(blob))
        return original(blob, schemas)

    monkeypatch.setattr(reading, "decode_kept", counted)
    return calls


def _support(frame: pd.DataFrame) -> tuple[int, int]:
    row = frame[frame["queue"] == "support"]
    return (int(row["offered"].sum()), int(row["answered"].sum())) if len(row) else (0, 0)


def test_a_summary_read_again_decodes_nothing_and_sees_a_late_call_and_a_licence_change(
        engine: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    seeded = seed(engine, tmp_path)
    ny = seeded.clients["America/New_York"]
    app = seeded.app
    run_client_days(app, [ClientDay(ny.id, ny.timezone, d) for d in DAYS], workers=1, now=NOW)
    never_kept = App(replace(seeded.settings, periods=PeriodSettings(memo_mb=0)))
    decodes = _counting_decodes(monkeypatch)

    def summary(on: App = app) -> pd.DataFrame:
        return reading.summarize_report("queue_performance", ny.slug, DAYS[0], DAYS[-1], app=on, now=NOW)

    first = summary()
    assert len(decodes) == len(DAYS)  # a first read: every day table sent and decoded
    again = summary()
    assert len(decodes) == len(DAYS) and app.memo.hits == 1  # read again: none sent, none decoded
    pd.testing.assert_frame_equal(again, first)
    pd.testing.assert_frame_equal(summary(never_kept), first)  # what a process that keeps nothing gives
    again.loc[:, "offered"] = -1  # a caller's change stays its own
    pd.testing.assert_frame_equal(summary(), first)

    # A late answered call on the third day, in queue "support": that day is recomputed (a new checksum),
    # so the next read gets that one table, and the period counts one more offered and answered call.
    decodes.clear()
    start, _ = local_day_window(DAYS[2], parse_zone(ny.timezone))
    load_call_events(engine, late_call(ny.id, "late-memo-1", start + dt.timedelta(hours=10), NOW))
    [result] = run_client_days(app, [ClientDay(ny.id, ny.timezone, DAYS[2])], workers=1, now=NOW,
                               reuse_since=ANY_TIME)
    assert result.status == "computed"
    offered, answered = _support(first)
    late = summary()
    assert len(decodes) == 1  # only the recomputed day came from the database
    assert _support(late) == (offered + 1, answered + 1)
    pd.testing.assert_frame_equal(late, summary(never_kept))

    # The licence is checked on every read, memo or not.
    with engine.begin() as conn:
        conn.execute(delete(ClientProductRow).where(ClientProductRow.client_id == ny.id,
                                                    ClientProductRow.product_code == "REPORTS"))
    with pytest.raises(InvalidInput) as err:
        summary()
    assert err.value.field == "client" and "not licensed" in str(err.value)
    never_kept.dispose()


def test_the_validation_names_the_period_kept_and_a_period_not_all_kept_is_read_from_its_files(
        engine: Engine, tmp_path: Path) -> None:
    """On PostgreSQL the validation's statement also says how many of the period's days keep their table
    and the SHA-256 of their checksums in date order (worked out here from the manifest's rows); a read
    again of a period held in the memo is answered from that alone, and one with a day that keeps no
    table is read as before (never from the memo, whatever it holds)."""
    import hashlib

    from report_pipelines.services.serving import servings

    seeded = seed(engine, tmp_path)
    ny = seeded.clients["America/New_York"]
    app = seeded.app
    run_client_days(app, [ClientDay(ny.id, ny.timezone, d) for d in DAYS], workers=1, now=NOW)
    entries = CacheManifestRepository(engine).entries(ny.id, DAYS[0], DAYS[-1], ("queue_performance",))
    checksums = [e.checksum for e in sorted(entries, key=lambda e: e.local_date)]
    assert len(checksums) == len(DAYS)
    [serving] = servings(engine, NOW, client_ids=[ny.id], kept=("queue_performance", DAYS[0], DAYS[-1])).values()
    [nothing] = servings(engine, NOW, client_ids=[ny.id],
                         kept=("queue_performance", dt.date(2020, 1, 1), dt.date(2020, 1, 31))).values()
    if engine.dialect.name == "postgresql":
        assert serving.kept.kept_days == len(DAYS)
        assert serving.kept.digest == hashlib.sha256("".join(checksums).encode()).hexdigest()
        assert serving.kept.complete(DAYS[0], DAYS[-1]) and not serving.kept.complete(DAYS[0], DAYS[-1] + dt.timedelta(1))
        assert (nothing.kept.kept_days, nothing.kept.digest) == (0, None)
    else:  # SQLite: the read takes the manifest's rows (no round trip to save)
        assert serving.kept is None and nothing.kept is None

    def summary() -> pd.DataFrame:
        return reading.summarize_report("queue_performance", ny.slug, DAYS[0], DAYS[-1], app=app, now=NOW)

    first = summary()
    again = summary()
    assert app.memo.hits == 1
    pd.testing.assert_frame_equal(again, first)
    with engine.begin() as conn:  # the second day's row keeps no table any more: its file is read
        conn.execute(update(CacheEntry).where(CacheEntry.client_id == ny.id, CacheEntry.local_date == DAYS[1],
                                              CacheEntry.report == "queue_performance").values(day_table=None))
    opened: list[list[dt.date]] = []
    original = app.store.read_days
    app.store.read_days = lambda *a, **k: opened.append(list(a[2])) or original(*a, **k)
    from_files = summary()
    assert opened == [DAYS] and app.memo.hits == 1  # every day from its file, nothing from the memo
    pd.testing.assert_frame_equal(from_files, first)
