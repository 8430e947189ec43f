"""Local days of 23, 24 and 25 hours (and 24.5 on Lord Howe Island) in the reports."""

from __future__ import annotations

import datetime as dt

import pyarrow as pa
import pytest

from report_pipelines.domain.reports import DayContext, get_report
from report_pipelines.domain.reports.local_time import day_clock
from report_pipelines.domain.reports.screening import screen_calls
from report_pipelines_tests.reports_support import UTC, call, period, table

NY = "America/New_York"


def inbound(pbx_call_id: str, started: str, queue: str = "q") -> dict:
    """An inbound call answered after 10 s, talking 60 s; ``started`` is UTC text."""
    start = dt.datetime.fromisoformat(started)
    ended, answered = start + dt.timedelta(seconds=70), start + dt.timedelta(seconds=10)
    return call(pbx_call_id, "inbound", "ANSWERED", started, ended.isoformat(sep=" "), answered.isoformat(sep=" "),
                queue=queue, agent="1001")


def day_tables(rows: list[dict], zone: str, day: dt.date) -> tuple[pa.Table, pa.Table]:
    ctx = DayContext(7, zone, day)
    screened = screen_calls(table(rows), ctx)
    assert screened.rejected == {}
    return (get_report("hourly_volume").compute_day(screened.clean, ctx),
            get_report("call_detail").compute_day(screened.clean, ctx))


def test_spring_forward_day_has_23_hours_and_no_2am() -> None:
    # 2024-03-10: 02:00 EST (07:00 UTC) jumps to 03:00 EDT
    rows = [inbound("before", "2024-03-10 06:59:59"), inbound("after", "2024-03-10 07:00:00")]
    hourly, detail = day_tables(rows, NY, dt.date(2024, 3, 10))
    assert hourly.num_rows == 23
    assert hourly.column("local_hour").to_pylist() == [0, 1, *range(3, 24)]
    assert hourly.column("utc_offset_minutes").to_pylist() == [-300, -300] + [-240] * 21
    by_hour = {r["local_hour"]: r["offered"] for r in hourly.to_pylist()}
    assert by_hour[1] == 1 and by_hour[3] == 1
    assert detail.column("started_local").to_pylist() == ["2024-03-10 01:59:59", "2024-03-10 03:00:00"]
    assert detail.column("utc_offset_minutes").to_pylist() == [-300, -240]


def test_fall_back_day_has_25_hours_with_1am_twice() -> None:
    # 2024-11-03: 02:00 EDT (06:00 UTC) goes back to 01:00 EST
    rows = [inbound("edt", "2024-11-03 05:30:00"), inbound("est", "2024-11-03 06:30:00"),
            inbound("est2", "2024-11-03 06:45:00")]
    hourly, detail = day_tables(rows, NY, dt.date(2024, 11, 3))
    assert hourly.num_rows == 25
    assert hourly.column("local_hour").to_pylist() == [0, 1, 1, *range(2, 24)]
    ones = [r for r in hourly.to_pylist() if r["local_hour"] == 1]
    assert [(r["utc_offset_minutes"], r["hour_start_utc"], r["offered"]) for r in ones] == [
        (-240, dt.datetime(2024, 11, 3, 5, tzinfo=UTC), 1),
        (-300, dt.datetime(2024, 11, 3, 6, tzinfo=UTC), 2),
    ]
    assert detail.column("started_local").to_pylist() == ["2024-11-03 01:30:00", "2024-11-03 01:30:00",
                                                           "2024-11-03 01:45:00"]
    assert detail.column("utc_offset_minutes").to_pylist() == [-240, -300, -300]
    # a period merges the repeated hour into local hour 1 and says it merged two buckets
    combined = period(get_report("hourly_volume"), table(rows), NY, [dt.date(2024, 11, 3)])
    one = [r for r in combined.to_pylist() if r["local_hour"] == 1]
    assert len(one) == 1 and one[0]["offered"] == 3 and one[0]["hour_buckets"] == 2
    assert combined.num_rows == 24


def test_lisbon_fall_back_day() -> None:
    # 2024-10-27: 02:00 WEST (01:00 UTC) goes back to 01:00 WET
    hourly, _ = day_tables([], "Europe/Lisbon", dt.date(2024, 10, 27))
    assert hourly.num_rows == 25
    assert [(r["local_hour"], r["utc_offset_minutes"]) for r in hourly.to_pylist()][:4] == [
        (0, 60), (1, 60), (1, 0), (2, 0)]
    assert sum(hourly.column("offered").to_pylist()) == 0


def test_lord_howe_half_hour_fall_back() -> None:
    # 2024-04-07: 02:00 +11 (15:00 UTC on the 6th) goes back to 01:30 +10:30; the day lasts 24.5 h
    day = dt.date(2024, 4, 7)
    rows = [inbound("a", "2024-04-06 14:45:00"), inbound("b", "2024-04-06 15:10:00")]
    hourly, detail = day_tables(rows, "Australia/Lord_Howe", day)
    assert hourly.num_rows == 25
    assert [(r["local_hour"], r["utc_offset_minutes"], r["hour_start_utc"]) for r in hourly.to_pylist()][1:4] == [
        (1, 660, dt.datetime(2024, 4, 6, 14, tzinfo=UTC)),
        (1, 630, dt.datetime(2024, 4, 6, 15, tzinfo=UTC)),  # starts at 01:30 local: a 30-minute bucket
        (2, 630, dt.datetime(2024, 4, 6, 15, 30, tzinfo=UTC)),
    ]
    assert detail.column("started_local").to_pylist() == ["2024-04-07 01:45:00", "2024-04-07 01:40:00"]
    assert detail.column("utc_offset_minutes").to_pylist() == [660, 630]
    clock = day_clock("Australia/Lord_Howe", day)
    assert (clock.end_us - clock.start_us) / 3_600_000_000 == 24.5


@pytest.mark.parametrize(("zone", "day", "hours"), [
    ("Australia/Sydney", dt.date(2024, 10, 6), 23),  # southern spring: 02:00 -> 03:00
    ("Australia/Sydney", dt.date(2024, 4, 7), 25),
    ("Australia/Lord_Howe", dt.date(2024, 10, 6), 24),  # 02:00 -> 02:30: hour 2 is half an hour
    ("Asia/Kolkata", dt.date(2024, 3, 10), 24),  # +05:30, no DST
    ("America/Sao_Paulo", dt.date(2018, 11, 4), 23),  # midnight itself skipped: the day starts at 01:00
])
def test_hour_buckets_of_other_zones(zone: str, day: dt.date, hours: int) -> None:
    hourly, _ = day_tables([], zone, day)
    assert hourly.num_rows == hours
    starts = hourly.column("hour_start_utc").to_pylist()
    assert starts == sorted(starts) and len(set(starts)) == hours
    ctx = DayContext(7, zone, day)
    assert starts[0] == ctx.window_utc[0]
    if zone == "America/Sao_Paulo":
        assert hourly.column("local_hour").to_pylist()[0] == 1
    if zone == "Asia/Kolkata":
        assert starts[1] == dt.datetime(2024, 3, 9, 19, 30, tzinfo=UTC)  # local 01:00 at +05:30
