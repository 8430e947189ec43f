"""The report e-mail's domain: KPI deltas against the previous period, periods, the chart series
of DST days, formatting. Every expected figure is worked out by hand here."""

from __future__ import annotations

import datetime as dt

import pyarrow as pa
import pytest

from report_pipelines.domain.errors import InvalidInput
from report_pipelines.domain.report_digest import (
    Kpis,
    compare_kpis,
    daily_series,
    describe_period,
    format_duration,
    hourly_series,
    period_kpis,
    previous_period,
)
from report_pipelines.domain.reports import DayContext, get_report
from report_pipelines.domain.reports.screening import screen_calls
from report_pipelines_tests.reports_support import call, table, with_date

NY = "America/New_York"


def kpis(**values: object) -> Kpis:
    base = dict(offered=1000, answered=950, abandoned=50, answer_rate=0.95, service_level=0.875,
                service_level_seconds=20, average_speed_of_answer=21.6, abandon_rate=0.05, average_handle_seconds=185.0)
    return Kpis(**{**base, **values})  # type: ignore[arg-type]


def test_kpi_changes_against_the_previous_period() -> None:
    before = kpis()
    now = kpis(offered=1100, answered=1000, abandoned=66, answer_rate=1000 / 1100, service_level=0.85,
               average_speed_of_answer=24.4, abandon_rate=0.06)
    lines = {line.key: line for line in compare_kpis(now, before)}
    assert list(lines) == ["offered", "answered", "answer_rate", "service_level", "average_speed_of_answer",
                           "abandon_rate", "average_handle_seconds"]
    # offered 1,000 -> 1,100: +100, +10.0 %; more calls is neither good nor bad news
    assert (lines["offered"].shown, lines["offered"].change, lines["offered"].better) == ("1,100", "▲ 100 (+10.0 %)", None)
    # answered 950 -> 1,000: +50 = +5.26 %, shown +5.3 %; good
    assert (lines["answered"].change, lines["answered"].direction, lines["answered"].better) == ("▲ 50 (+5.3 %)", "up", True)
    # answer rate 95.0 % -> 90.9 % (1000/1100 = 0.90909): -4.1 pp
    assert (lines["answer_rate"].shown, lines["answer_rate"].change, lines["answer_rate"].better) == (
        "90.9 %", "▼ 4.1 pp", False)
    # service level 87.5 % -> 85.0 %: -2.5 pp, worse; its label names the threshold
    assert lines["service_level"].label == "Service level (within 20 s)"
    assert (lines["service_level"].change, lines["service_level"].better) == ("▼ 2.5 pp", False)
    assert lines["service_level"].previous_shown == "87.5 %"
    # speed of answer 21.6 s (shown 22 s) -> 24.4 s (shown 24 s): +2 s, worse (slower)
    assert (lines["average_speed_of_answer"].shown, lines["average_speed_of_answer"].change,
            lines["average_speed_of_answer"].better) == ("24 s", "▲ 2 s", False)
    # abandoned rate 5.0 % -> 6.0 %: +1.0 pp, worse
    assert (lines["abandon_rate"].change, lines["abandon_rate"].better) == ("▲ 1.0 pp", False)
    # handle time unchanged
    assert (lines["average_handle_seconds"].shown, lines["average_handle_seconds"].change,
            lines["average_handle_seconds"].direction) == ("3 min 05 s", "= no change", "same")


def test_no_comparison_without_a_previous_period_or_across_thresholds() -> None:
    alone = compare_kpis(kpis(), None)
    assert all(line.change is None and line.previous_shown is None and line.direction is None for line in alone)
    other_threshold = {line.key: line for line in compare_kpis(kpis(), kpis(service_level_seconds=30, service_level=0.5))}
    assert other_threshold["service_level"].change is None  # "within 20 s" vs "within 30 s" do not compare
    assert other_threshold["offered"].change == "= no change"
    empty = {line.key: line for line in compare_kpis(kpis(offered=0, answered=0, answer_rate=None), kpis())}
    assert (empty["answer_rate"].shown, empty["answer_rate"].change) == ("–", None)
    assert empty["offered"].change == "▼ 1,000 (-100.0 %)"


def test_previous_period_of_the_same_length() -> None:
    # a Monday-Sunday week: the 7 days before
    assert previous_period(dt.date(2024, 3, 4), dt.date(2024, 3, 10)) == (dt.date(2024, 2, 26), dt.date(2024, 3, 3))
    # March 2024, 31 days: the 31 days before, from 30 January through the leap day
    assert previous_period(dt.date(2024, 3, 1), dt.date(2024, 3, 31)) == (dt.date(2024, 1, 30), dt.date(2024, 2, 29))
    assert previous_period(dt.date(2024, 3, 1), dt.date(2024, 3, 1)) == (dt.date(2024, 2, 29), dt.date(2024, 2, 29))
    # a client whose first day is 2024-02-27 has no full previous week
    assert previous_period(dt.date(2024, 3, 4), dt.date(2024, 3, 10), dt.date(2024, 2, 27)) is None
    assert previous_period(dt.date(2024, 3, 4), dt.date(2024, 3, 10), dt.date(2024, 2, 26)) is not None
    with pytest.raises(InvalidInput, match="end"):
        previous_period(dt.date(2024, 3, 4), dt.date(2024, 3, 3))
    assert describe_period(dt.date(2024, 3, 4), dt.date(2024, 3, 10), NY) == "2024-03-04 to 2024-03-10 (7 local days, America/New_York)"
    assert describe_period(dt.date(2024, 3, 10), dt.date(2024, 3, 10), NY) == "Sun 2024-03-10 (local day, America/New_York)"


def test_durations_read_like_a_person_writes_them() -> None:
    assert [format_duration(s) for s in (0, 42.4, 59.6, 185, 3725, None)] == ["0 s", "42 s", "1 min 00 s", "3 min 05 s",
                                                                              "1 h 02 min", "–"]


def inbound(pbx_call_id: str, started: str, wait: int = 10, disposition: str = "ANSWERED") -> dict:
    start = dt.datetime.fromisoformat(started)
    if disposition != "ANSWERED":
        return call(pbx_call_id, "inbound", disposition, started, (start + dt.timedelta(seconds=wait)).isoformat(sep=" "),
                    queue="q")
    return call(pbx_call_id, "inbound", "ANSWERED", started, (start + dt.timedelta(seconds=wait + 60)).isoformat(sep=" "),
                (start + dt.timedelta(seconds=wait)).isoformat(sep=" "), queue="q")


def day_table(report: str, rows: list[dict], zone: str, day: dt.date) -> pa.Table:
    ctx = DayContext(7, zone, day)
    screened = screen_calls(table(rows), ctx)
    assert screened.rejected == {}
    return with_date(get_report(report).compute_day(screened.clean, ctx), day)


def test_hourly_series_of_a_spring_forward_day() -> None:
    # 2024-03-10 New York: 00:00 EST = 05:00 UTC; 02:00 EST jumps to 03:00 EDT (07:00 UTC)
    rows = [inbound("a", "2024-03-10 06:30:00"), inbound("b", "2024-03-10 07:10:00", wait=30),
            inbound("c", "2024-03-10 07:20:00", disposition="ABANDONED")]
    series = hourly_series(day_table("hourly_volume", rows, NY, dt.date(2024, 3, 10)), NY)
    assert len(series.labels) == 23 and series.unit == "hour"
    assert series.labels[:4] == ("00:00", "01:00", "03:00", "04:00")  # no 02:00
    assert [i for i, m in enumerate(series.marked) if m] == [2]  # the first hour after the jump
    assert series.note == "a 23-hour day: clocks went forward"
    assert (series.offered[1], series.answered[1]) == (1, 1)  # 01:30 EST
    assert (series.offered[2], series.answered[2], series.abandoned[2]) == (2, 1, 1)  # 03:10 and 03:20 EDT
    # service level per hour: 01:00 1/1; 03:00: answered after 30 s (outside 20 s), abandoned after 10 s
    # (a short abandon, not held against it): 0 / (2 - 1) = 0; hours without calls are gaps
    assert series.service_level[1] == 1.0 and series.service_level[2] == 0.0
    assert series.service_level[0] != series.service_level[0]  # NaN
    assert series.axis_label == "local hour (America/New_York)"


def test_hourly_series_of_a_fall_back_day() -> None:
    # 2024-11-03 New York: 01:00-02:00 twice, EDT (05:00 UTC) then EST (06:00 UTC)
    rows = [inbound("edt", "2024-11-03 05:30:00"), inbound("est", "2024-11-03 06:30:00"),
            inbound("est2", "2024-11-03 06:45:00")]
    series = hourly_series(day_table("hourly_volume", rows, NY, dt.date(2024, 11, 3)), NY)
    assert len(series.labels) == 25
    assert series.labels[:4] == ("00:00", "01:00 EDT", "01:00 EST", "02:00")
    assert series.marked[:4] == (False, True, True, False)
    assert series.offered[:4] == (0, 1, 2, 0)
    assert series.note == "a 25-hour day: clocks went back"


def test_daily_series_draws_every_day_of_the_period() -> None:
    saturday = [inbound("a", "2024-11-02 15:00:00")]
    monday = [inbound("b", "2024-11-04 15:00:00"), inbound("c", "2024-11-04 16:00:00")]
    days = [day_table("daily_summary", saturday, NY, dt.date(2024, 11, 2)),
            day_table("daily_summary", monday, NY, dt.date(2024, 11, 4))]
    # 2024-11-03 is missing from the tables (e.g. not cached): drawn as zero, still labelled
    series = daily_series(pa.concat_tables(days), NY, dt.date(2024, 11, 2), dt.date(2024, 11, 4))
    assert series.labels == ("Sat 02", "Sun 03", "Mon 04") and series.offered == (1, 0, 2)
    assert series.service_level_seconds == 20 and series.note == ""
    # with the fall-back Sunday in the tables, the chart says how long it was
    sunday = day_table("daily_summary", [], NY, dt.date(2024, 11, 3))
    series = daily_series(pa.concat_tables([*days, sunday]), NY, dt.date(2024, 11, 2), dt.date(2024, 11, 4))
    assert series.note == "DST: Sun 03 had 25 hours"


def test_period_kpis_are_sums_over_sums() -> None:
    # day 1: 2 answered after 10 s and 30 s (one within 20 s), 1 abandoned after 5 s (short);
    # day 2: 1 answered after 20 s (within), 1 missed
    rows1 = [inbound("a", "2024-06-12 14:00:00", 10), inbound("b", "2024-06-12 14:05:00", 30),
             inbound("c", "2024-06-12 14:10:00", 5, "ABANDONED")]
    rows2 = [inbound("d", "2024-06-13 14:00:00", 20), inbound("e", "2024-06-13 14:05:00", 40, "NO ANSWER")]
    days = pa.concat_tables([day_table("daily_summary", rows1, NY, dt.date(2024, 6, 12)),
                             day_table("daily_summary", rows2, NY, dt.date(2024, 6, 13))])
    got = period_kpis(days)
    assert (got.offered, got.answered, got.abandoned) == (5, 3, 1)
    assert got.answer_rate == pytest.approx(3 / 5)
    assert got.service_level == pytest.approx(2 / (5 - 1))  # 2 within 20 s; the short abandon is not held against it
    assert got.service_level_seconds == 20
    assert got.average_speed_of_answer == pytest.approx((10 + 30 + 20) / 3)  # 20 s, not the mean of daily means
    assert got.abandon_rate == pytest.approx(1 / 5)
    assert got.average_handle_seconds == pytest.approx(60.0)  # talk 60 s each
