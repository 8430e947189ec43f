"""Period requests through the service: streamed outputs, the cache, deadlines, refusals, the usage log."""

from __future__ import annotations

import datetime as dt
import io
import logging
import threading
from dataclasses import replace
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from sqlalchemy import Engine, event, select, text

from report_pipelines.adapters.db.bulk import load_call_events
from report_pipelines.adapters.db.models import ClientProductRow, ReportRequestRow
from report_pipelines.adapters.db.repositories import CacheManifestRepository
from report_pipelines.adapters.exports import write_table
from report_pipelines.app import App, FixedClock
from report_pipelines.domain.errors import InvalidInput, NotFound
from report_pipelines.domain.timezones import local_day_window, parse_zone
from report_pipelines.services.extracts import ANY_TIME, ClientDay, run_client_days
from report_pipelines.services.periods import extract_period, read_report, summarize_report
from report_pipelines.services.reading import PeriodTimeout, read_report_arrow
from report_pipelines.settings import PeriodSettings
from report_pipelines_tests.extract_support import UTC, Seeded, late_call, seed

# 15:00 UTC on 11 March 2024: 11:00 EDT in New York (its clocks went forward on the 10th), so the 11th
# is New York's "today" (computed live) and the 8th..10th are closed.
NOW = dt.datetime(2024, 3, 11, 15, tzinfo=UTC)
FIRST, LAST_CLOSED, TODAY = dt.date(2024, 3, 8), dt.date(2024, 3, 10), dt.date(2024, 3, 11)


def app_at(seeded: Seeded, now: dt.datetime = NOW, **periods) -> App:
    settings = replace(seeded.settings, periods=replace(seeded.settings.periods, **periods)) if periods else seeded.settings
    return App(settings, clock=FixedClock(now))


def logged(engine: Engine) -> list:
    with engine.connect() as conn:
        return list(conn.execute(select(ReportRequestRow.__table__).order_by(ReportRequestRow.id)))


def test_days_stream_byte_for_byte_as_the_one_writer_writes_them_and_a_second_request_reads_the_cache(
        engine: Engine, tmp_path: Path) -> None:
    seeded = seed(engine, tmp_path)
    app = app_at(seeded)
    ny = seeded.clients["America/New_York"]
    out = tmp_path / "out" / "ny.csv"
    first = extract_period(ny.slug, "call_detail", FIRST, TODAY, out=out, app=app, now=NOW)
    assert (first.days_cached, first.days_computed, first.days_live) == (0, 3, 1)
    manifest = CacheManifestRepository(engine)
    computed_at = {e.local_date: e.computed_at for e in manifest.entries(ny.id, FIRST, TODAY, ("call_detail",))}
    assert sorted(computed_at) == [FIRST, dt.date(2024, 3, 9), LAST_CLOSED]  # today is never cached
    # The old path: the whole period in memory, written by write_table. Same bytes.
    whole = read_report_arrow("call_detail", ny.slug, FIRST, TODAY, app=app, now=NOW)
    reference = write_table(whole, tmp_path / "reference.csv", "csv")
    assert out.read_bytes() == reference.path.read_bytes()
    assert first.rows == whole.num_rows and first.bytes == reference.bytes
    again = extract_period(ny.slug, "call_detail", FIRST, TODAY, out=out, force=True, app=app, now=NOW)
    assert (again.days_cached, again.days_computed, again.days_live) == (3, 0, 1)
    assert {e.local_date: e.computed_at for e in manifest.entries(ny.id, FIRST, TODAY, ("call_detail",))} == computed_at
    assert out.read_bytes() == reference.path.read_bytes()


def test_the_summary_is_what_summarize_report_returns(sqlite_engine: Engine, tmp_path: Path) -> None:
    seeded = seed(sqlite_engine, tmp_path)
    app = app_at(seeded)
    lisbon = seeded.clients["Europe/Lisbon"]
    result = extract_period(lisbon.slug, "queue_performance", FIRST, LAST_CLOSED, shape="summary", format="parquet",
                            out=tmp_path / "q.parquet", app=app, now=NOW)
    expected = pa.Table.from_pandas(summarize_report("queue_performance", lisbon.slug, FIRST, LAST_CLOSED, app=app,
                                                     now=NOW), preserve_index=False)
    assert pq.read_table(tmp_path / "q.parquet").equals(expected)
    assert result.rows == expected.num_rows > 1


def test_a_stale_day_is_recomputed_and_the_others_are_read(sqlite_engine: Engine, tmp_path: Path) -> None:
    seeded = seed(sqlite_engine, tmp_path)
    app = app_at(seeded)
    ny = seeded.clients["America/New_York"]
    before = extract_period(ny.slug, "call_detail", FIRST, LAST_CLOSED, out=tmp_path / "a.csv", app=app, now=NOW)
    # a late call for 9 March (16:00 UTC = 11:00 EST), ingested after the day was cached
    load_call_events(sqlite_engine, late_call(ny.id, "late-1", dt.datetime(2024, 3, 9, 16, tzinfo=UTC),
                                              NOW - dt.timedelta(minutes=5)))
    after = extract_period(ny.slug, "call_detail", FIRST, LAST_CLOSED, out=tmp_path / "b.csv", app=app, now=NOW)
    assert (after.days_cached, after.days_computed) == (2, 1)
    assert after.rows == before.rows + 1 and "late-1" in (tmp_path / "b.csv").read_text(encoding="utf-8-sig")


def _end_licence(engine: Engine, client_id: int, last_day: dt.date) -> None:
    with engine.begin() as conn:
        conn.execute(ClientProductRow.__table__.update().where(ClientProductRow.client_id == client_id)
                     .values(valid_to=last_day))


@pytest.mark.parametrize("change, field", [
    (dict(end="2024-03-12"), "end"),  # the future in New York
    (dict(start="2024-03-10", end="2024-03-09"), "end"),
    (dict(start="2024-03-01"), "start"),  # before the client existed
    (dict(report="call_details"), "report"),
    (dict(client="nobody"), "client"),
    (dict(format="xls"), "format"),
    (dict(shape="weekly"), "shape"),
    (dict(deadline_s=0), "deadline"),
    (dict(out="-", format="xlsx"), "out"),
    (dict(out="exists.csv"), "out"),  # exists, no force
    (dict(out="folder"), "out"),  # a folder
    (dict(max_days=2), "end"),  # longer than the configured maximum
    (dict(licence_ends=dt.date(2024, 3, 9)), "client"),  # 10 March is not cached and no longer served
])
def test_bad_input_names_the_field_and_writes_nothing(sqlite_engine: Engine, tmp_path: Path, change: dict,
                                                     field: str) -> None:
    seeded = seed(sqlite_engine, tmp_path)
    ny = seeded.clients["America/New_York"]
    folder = tmp_path / "exports"
    (folder / "folder").mkdir(parents=True)
    (folder / "exists.csv").write_text("keep me")
    if "licence_ends" in change:
        _end_licence(sqlite_engine, ny.id, change.pop("licence_ends"))
    app = app_at(seeded, **({"max_days": change.pop("max_days")} if "max_days" in change else {}))
    args = {"client": ny.slug, "report": "call_detail", "start": "2024-03-08", "end": "2024-03-10", "format": "csv",
            "out": "new.csv", **change}
    out = args.pop("out")
    stdout = io.BytesIO()
    with pytest.raises((InvalidInput, NotFound)) as err:
        extract_period(args.pop("client"), args.pop("report"), args.pop("start"), args.pop("end"),
                       out=out if out == "-" else folder / out, stdout=stdout, app=app, now=NOW, **args)
    assert err.value.field == field
    assert sorted(p.name for p in folder.iterdir()) == ["exists.csv", "folder"]  # no file, no temporary file
    assert (folder / "exists.csv").read_text() == "keep me" and not stdout.getvalue()
    assert not (tmp_path / "reports").exists()  # nothing computed either
    [row] = logged(sqlite_engine)
    assert (row.status, row.channel) == ("refused", "python") and row.error.startswith(f"{field}: ")
    assert row.client_id == (None if field == "client" and "client" in change else ny.id)


def test_past_the_deadline_it_says_how_far_it_got_and_the_retry_reuses_those_days(sqlite_engine: Engine,
                                                                                 tmp_path: Path) -> None:
    seeded = seed(sqlite_engine, tmp_path)
    app = app_at(seeded)
    ny = seeded.clients["America/New_York"]
    held, release = threading.Event(), threading.Event()

    def slow_worker() -> None:  # another run is computing 10 March and does not finish in time
        with app_at(seeded).locks.hold(ny.id, LAST_CLOSED, 5):
            held.set()
            release.wait(30)

    holder = threading.Thread(target=slow_worker)
    holder.start()
    held.wait(5)
    out = tmp_path / "ny.csv"
    try:
        with pytest.raises(PeriodTimeout) as err:
            extract_period(ny.slug, "call_detail", FIRST, LAST_CLOSED, out=out, deadline_s=1.0, app=app, now=NOW)
    finally:
        release.set()
        holder.join()
    assert str(err.value) == ("deadline: 1 s passed with 2 of 3 days ready (2 computed by this request); they stay "
                              "cached, so asking again is faster")
    assert not out.exists() and not list(tmp_path.glob(".ny.csv.*"))
    retry = extract_period(ny.slug, "call_detail", FIRST, LAST_CLOSED, out=out, app=app, now=NOW)
    assert (retry.days_cached, retry.days_computed) == (2, 1)
    timeout_row, ok_row = logged(sqlite_engine)
    assert (timeout_row.status, timeout_row.days_computed, ok_row.status) == ("timeout", 0, "ok")
    assert timeout_row.error.startswith("deadline: 1 s passed with 2 of 3 days ready")


def test_two_requests_for_the_same_days_at_once_compute_each_day_once(engine: Engine, tmp_path: Path) -> None:
    seeded = seed(engine, tmp_path)
    sydney = seeded.clients["Australia/Sydney"]
    results, errors = [], []

    def ask(name: str) -> None:
        try:
            results.append(extract_period(sydney.slug, "call_detail", FIRST, dt.date(2024, 3, 10),
                                          out=tmp_path / f"{name}.csv", app=app_at(seeded), now=NOW))
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=ask, args=(name,)) for name in ("a", "b")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    assert sum(r.days_computed for r in results) == 3  # the other request waited and reused each day
    assert sum(r.days_cached for r in results) == 3
    assert (tmp_path / "a.csv").read_bytes() == (tmp_path / "b.csv").read_bytes()


def test_each_request_is_one_row_of_the_usage_log(engine: Engine, tmp_path: Path) -> None:
    seeded = seed(engine, tmp_path)
    app = app_at(seeded)
    ny = seeded.clients["America/New_York"]
    extract_period(ny.slug, "hourly_volume", LAST_CLOSED, LAST_CLOSED, shape="summary", format="json",
                   out=tmp_path / "y.jsonl", channel="cli", app=app, now=NOW)
    frame = read_report("hourly_volume", ny.slug, FIRST, LAST_CLOSED, app=app, now=NOW)
    cli, python = logged(engine)
    # 15:00 UTC is 11:00 EDT: local minute 660 of 11 March; the period ends on the 10th, New York's yesterday
    assert (cli.channel, cli.shape, cli.format, cli.status) == ("cli", "summary", "json", "ok")
    assert (cli.local_date, cli.local_minute, cli.asks_yesterday) == (TODAY, 660, True)
    assert (cli.period_start, cli.period_end, cli.client_id, cli.client_ref) == (LAST_CLOSED, LAST_CLOSED, ny.id, ny.slug)
    assert (cli.days_cached, cli.days_computed, cli.days_live) == (0, 1, 0)
    assert cli.rows == 23 and cli.bytes == (tmp_path / "y.jsonl").stat().st_size  # a 23-hour day
    assert cli.requested_at == NOW and cli.duration_s > 0
    assert (python.channel, python.format, python.asks_yesterday) == ("python", "pandas", True)
    assert (python.days_cached, python.days_computed, python.rows) == (1, 2, len(frame))


def test_a_summary_read_again_is_logged_as_its_cached_days_and_sees_a_late_call(engine: Engine,
                                                                                tmp_path: Path) -> None:
    """The logged summary read again (every day kept, none live, the period held by this process) is
    answered by the validation's statement alone, and still logged: its days as cached, its rows. A late
    call recomputed since changes a day's checksum: the next read presents the new figures."""
    seeded = seed(engine, tmp_path)
    app = app_at(seeded)
    ny = seeded.clients["America/New_York"]
    first = summarize_report("queue_performance", ny.slug, FIRST, LAST_CLOSED, app=app, now=NOW)
    statements: list[str] = []
    event.listen(app.engine, "before_cursor_execute", lambda *args: statements.append(args[2]))
    again = summarize_report("queue_performance", ny.slug, FIRST, LAST_CLOSED, app=app, now=NOW)
    assert again.equals(first) and app.memo.hits == 1
    if engine.dialect.name == "postgresql":  # the validation, then the usage log's row (its own transaction)
        reads = [s for s in statements if s.lstrip().upper().startswith(("EXECUTE", "SELECT"))
                 and s.strip().lower() != "select 1"]
        assert len(reads) == 1 and reads[0].startswith("EXECUTE rp_"), reads
    one, two = logged(engine)
    assert (one.days_cached, one.days_computed, one.days_live) == (0, 3, 0)
    assert (two.days_cached, two.days_computed, two.days_live, two.rows, two.status) == (3, 0, 0, len(first), "ok")
    # One late answered call in queue "support" on the 9th (local 10:00): that day's table changes.
    start, _ = local_day_window(dt.date(2024, 3, 9), parse_zone(ny.timezone))
    load_call_events(engine, late_call(ny.id, "late-periods-1", start + dt.timedelta(hours=10), NOW))
    run_client_days(app, [ClientDay(ny.id, ny.timezone, dt.date(2024, 3, 9))], workers=1, now=NOW, reuse_since=ANY_TIME)
    late = summarize_report("queue_performance", ny.slug, FIRST, LAST_CLOSED, app=app, now=NOW)
    offered = {q: int(v) for q, v in zip(first["queue"], first["offered"], strict=True)}
    assert {q: int(v) for q, v in zip(late["queue"], late["offered"], strict=True)} == {
        q: v + (q == "support") for q, v in offered.items()} | ({} if "support" in offered else {"support": 1})
    assert app.memo.hits == 1


def test_a_usage_log_that_cannot_be_written_never_fails_the_request(sqlite_engine: Engine, tmp_path: Path,
                                                                    caplog: pytest.LogCaptureFixture) -> None:
    seeded = seed(sqlite_engine, tmp_path)
    app = app_at(seeded)
    with app.engine.begin() as conn:
        conn.execute(text("DROP TABLE report_requests"))
    ny = seeded.clients["America/New_York"]
    with caplog.at_level(logging.WARNING, logger="report_pipelines.services.periods"):
        result = extract_period(ny.slug, "call_detail", FIRST, LAST_CLOSED, out=tmp_path / "ny.csv", app=app, now=NOW)
        with pytest.raises(InvalidInput):  # a refusal is still the refusal, not a logging error
            extract_period(ny.slug, "call_detail", LAST_CLOSED, FIRST, out=tmp_path / "x.csv", app=app, now=NOW)
    assert result.rows > 0 and (tmp_path / "ny.csv").exists()
    warnings = [r.getMessage() for r in caplog.records]
    assert len(warnings) == 2 and all("usage log: request of" in w and "not recorded" in w for w in warnings)


def test_json_lines_and_xlsx_of_the_days(sqlite_engine: Engine, tmp_path: Path) -> None:
    import json

    import openpyxl

    seeded = seed(sqlite_engine, tmp_path)
    app = app_at(seeded)
    lisbon = seeded.clients["Europe/Lisbon"]
    extract_period(lisbon.slug, "hourly_volume", FIRST, dt.date(2024, 3, 9), format="json", out=tmp_path / "h.jsonl",
                   app=app, now=NOW)
    rows = [json.loads(line) for line in (tmp_path / "h.jsonl").read_text().splitlines()]
    assert len(rows) == 48 and rows[0]["date"] == "2024-03-08" and rows[0]["hour_start_utc"] == "2024-03-08T00:00:00+00:00"
    extract_period(lisbon.slug, "hourly_volume", FIRST, dt.date(2024, 3, 9), format="xlsx", out=tmp_path / "h.xlsx",
                   app=app, now=NOW)
    sheet = openpyxl.load_workbook(tmp_path / "h.xlsx", read_only=True)["hourly_volume"]
    values = list(sheet.iter_rows(values_only=True))
    assert len(values) == 49 and values[0][-2:] == ("client", "date") and values[1][-1] == dt.datetime(2024, 3, 8)


def test_the_excel_row_limit_is_refused_naming_it_and_nothing_is_written(sqlite_engine: Engine, tmp_path: Path,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    from report_pipelines.adapters import exports

    seeded = seed(sqlite_engine, tmp_path)
    monkeypatch.setattr(exports, "EXCEL_MAX_ROWS", 30)  # a sheet of 29 rows below its header
    lisbon = seeded.clients["Europe/Lisbon"]
    with pytest.raises(InvalidInput) as err:
        extract_period(lisbon.slug, "hourly_volume", FIRST, dt.date(2024, 3, 9), format="xlsx",
                       out=tmp_path / "x" / "h.xlsx", app=app_at(seeded), now=NOW)
    assert err.value.field == "rows" and "at most 29 below the header" in str(err.value)
    assert not list((tmp_path / "x").iterdir())


def test_period_settings_are_read_from_the_environment() -> None:
    from report_pipelines.settings import Settings

    settings = Settings.from_env({"REPORT_PIPELINES_DATA_DIR": "/tmp/rp", "REPORT_PIPELINES_EXTRACT_DEADLINE_S": "30",
                                  "REPORT_PIPELINES_PRECACHE_QUIET_HOURS": "01:00-05:00",
                                  "REPORT_PIPELINES_PRECACHE_MIN_SHARE": "40"})
    assert settings.periods == PeriodSettings(deadline_s=30.0, min_share_percent=40, quiet_hours="01:00-05:00")
    for name, value in (("PRECACHE_QUIET_HOURS", "1am-5am"), ("PRECACHE_MIN_SHARE", "140"),
                        ("EXTRACT_MAX_DAYS", "0"), ("PRECACHE_GRACE_MINUTES", "x")):
        with pytest.raises(InvalidInput) as err:
            Settings.from_env({"REPORT_PIPELINES_DATA_DIR": "/tmp/rp", f"REPORT_PIPELINES_{name}": value})
        assert err.value.field == f"REPORT_PIPELINES_{name}"


def test_a_scheduled_build_is_recorded_with_the_days_it_computed(sqlite_engine: Engine, tmp_path: Path) -> None:
    from report_pipelines.services.periods import record_schedule_build

    seeded = seed(sqlite_engine, tmp_path)
    app = app_at(seeded)
    lisbon = seeded.clients["Europe/Lisbon"]
    # what the schedule side does: read the period (two days computed now), write its file, record the build
    read_report_arrow("queue_performance", lisbon.id, FIRST, dt.date(2024, 3, 9), app=app, now=NOW)
    record_schedule_build(app, client_id=lisbon.id, report="queue_performance", start=FIRST, end=dt.date(2024, 3, 10),
                          fmt="xlsx", requested_at=NOW, duration_s=0.5, rows=12, bytes=3000)
    later = NOW + dt.timedelta(days=1)
    record_schedule_build(app, client_id=lisbon.id, report="queue_performance", start=FIRST, end=dt.date(2024, 3, 9),
                          fmt="xlsx", requested_at=later, duration_s=0.1, rows=12, bytes=3000, status="error",
                          error="OSError: disk full")
    record_schedule_build(app, client_id=999, report="queue_performance", start=FIRST, end=FIRST, fmt="csv",
                          requested_at=later, duration_s=0.1, rows=0, bytes=0)  # no such client: logged, not raised
    first, second = logged(sqlite_engine)
    assert (first.channel, first.shape, first.format, first.status) == ("schedule", "summary", "xlsx", "ok")
    # 8 and 9 March were computed at NOW (the build's start): computed; 10 March was not cached at all
    assert (first.days_computed, first.days_cached, first.rows, first.duration_s) == (2, 0, 12, pytest.approx(0.5, abs=0.05))
    assert (second.days_computed, second.days_cached, second.status, second.error) == (0, 2, "error", "OSError: disk full")
    assert second.local_minute == 15 * 60  # 15:00 UTC is 15:00 in Lisbon in March (WET)
