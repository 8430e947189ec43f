"""``daily_summary``, ``wait_distribution`` and ``abandonment_curve`` on a hand-built day whose every
expected figure was worked out by hand, on DST days, and the percentiles' bin maths.

The day: client 7, America/New_York, Wednesday 2024-06-12 (EDT, UTC-4, 24 hours), threshold 20 s.
Waits are chosen on the bins' edges: a bin holds ``from < w <= to`` (the first one from 0).
"""

from __future__ import annotations

import datetime as dt
import math

import pandas as pd
import pyarrow as pa
import pytest

from report_pipelines.domain.reports import DayContext, get_report
from report_pipelines.domain.reports.screening import screen_calls
from report_pipelines.domain.reports.wait_distribution import describe_percentile, speed_of_answer_percentiles
from report_pipelines_tests.reports_support import call, period, table, with_date

ZONE = "America/New_York"
DAY = dt.date(2024, 6, 12)
CTX = DayContext(client_id=7, timezone=ZONE, day=DAY, service_level_seconds=20)
T0 = dt.datetime(2024, 6, 12, 13, 0)  # 09:00 EDT


def at(minute: int, seconds: float = 0) -> str:
    return (T0 + dt.timedelta(minutes=minute, seconds=seconds)).isoformat(sep=" ")


def answered(pbx_call_id: str, minute: int, wait: float, talk: float, queue: str | None) -> dict:
    return call(pbx_call_id, "inbound", "ANSWERED", at(minute), at(minute, wait + talk), at(minute, wait), queue=queue,
                agent="1001")


def abandoned(pbx_call_id: str, minute: int, waited: float, queue: str | None) -> dict:
    return call(pbx_call_id, "inbound", "ABANDONED", at(minute), at(minute, waited), queue=queue)


CALLS = [
    answered("a1", 0, 0, 60, "support"),      # wait 0: bin 0-5 (the first bin holds 0)
    answered("a2", 1, 5, 120, "support"),     # wait 5: still 0-5 (upper bound included)
    answered("a3", 2, 6, 30, "support"),      # 5-10
    answered("a4", 3, 20, 90, "support"),     # 10-20, and within the 20 s service level
    answered("a5", 4, 21, 45, "support"),     # 20-30, one second outside service level
    answered("a6", 5, 300, 10, "support"),    # 120-300
    answered("a7", 15, 301, 100, "support"),  # 300+
    abandoned("b1", 30, 3, "support"),        # 0-5, a short abandon
    abandoned("b2", 31, 45, "support"),       # 30-60; curve 30-45
    abandoned("b3", 32, 46, "sales"),         # 30-60; curve 45-60
    answered("a8", 33, 10, 200, "sales"),     # 5-10; curve 0-10
    call("m1", "inbound", "NO ANSWER", at(34), at(34, 40), queue="support"),  # missed: in no bin
    answered("n1", 35, 2, 30, None),          # no queue
    call("o1", "outbound", "ANSWERED", at(40), at(41), at(40, 10), agent="1001"),
    call("i1", "internal", "ANSWERED", at(42), at(43), at(42, 3), agent="1001"),
]


@pytest.fixture(scope="module")
def calls() -> pa.Table:
    screened = screen_calls(table(CALLS[::-1]), CTX)
    assert screened.rejected == {}
    return screened.clean


def by_bin(t: pa.Table | pd.DataFrame, from_name: str) -> dict:
    frame = t.to_pandas() if isinstance(t, pa.Table) else t
    frame = frame.astype(object).where(frame.notna(), None)
    return {(r["queue"], r[from_name]): r for r in frame.to_dict("records")}


# --- daily_summary --------------------------------------------------------------------------------------
def test_daily_summary_day_row(calls: pa.Table) -> None:
    day = get_report("daily_summary").compute_day(calls, CTX).to_pylist()
    assert day == [{
        "service_level_seconds": 20, "day_seconds": 86_400,
        "calls": 15, "offered": 13, "answered": 9, "abandoned": 3, "missed": 1,
        "answered_within_sl": 6,  # a1 0 s, a2 5, a3 6, a4 20, a8 10, n1 2
        "abandoned_within_sl": 1,  # b1 3 s
        "outbound": 1, "internal": 1,
        "wait_seconds_sum": 0 + 5 + 6 + 20 + 21 + 300 + 301 + 10 + 2.0,  # 665
        "abandoned_wait_seconds_sum": 3 + 45 + 46.0,  # 94
        "talk_seconds_sum": 60 + 120 + 30 + 90 + 45 + 10 + 100 + 200 + 30.0,  # 685
        "wait_seconds_max": 301.0,
    }]


def test_daily_summary_agrees_with_hourly_volume_and_queue_performance(calls: pa.Table) -> None:
    day = get_report("daily_summary").compute_day(calls, CTX).to_pylist()[0]
    hourly = get_report("hourly_volume").compute_day(calls, CTX).to_pandas()
    queues = get_report("queue_performance").compute_day(calls, CTX).to_pandas()
    for column in ("offered", "answered", "abandoned", "missed", "answered_within_sl", "wait_seconds_sum"):
        assert hourly[column].sum() == queues[column].sum() == day[column], column


def test_daily_summary_period_keeps_days_and_totals_add_them(calls: pa.Table) -> None:
    report = get_report("daily_summary")
    quiet = DAY + dt.timedelta(days=1)
    combined = period(report, calls, ZONE, [DAY, quiet])
    assert combined.column("date").to_pylist() == [DAY, quiet]
    assert combined.column("offered").to_pylist() == [13, 0]  # a quiet day is a row of zeros
    shown = report.present(combined)
    assert shown["service_level"].iloc[0] == pytest.approx(6 / (13 - 1))  # 0.5
    assert shown["average_speed_of_answer"].iloc[0] == pytest.approx(665 / 9)
    assert math.isnan(shown["service_level"].iloc[1])
    total = report.totals(combined).iloc[0]
    assert total["offered"] == 13 and total["day_seconds"] == 2 * 86_400 and total["service_level_seconds"] == 20
    assert total["answer_rate"] == pytest.approx(9 / 13) and total["wait_seconds_max"] == 301
    assert pd.isna(total["date"])


def test_daily_summary_totals_refuse_to_mix_thresholds(calls: pa.Table) -> None:
    report = get_report("daily_summary")
    other = DayContext(7, ZONE, DAY + dt.timedelta(days=1), service_level_seconds=30)
    both = pa.concat_tables([with_date(report.compute_day(calls, CTX), DAY),
                             with_date(report.compute_day(calls.slice(0, 0), other), other.day)])
    total = report.totals(report.combine(both)).iloc[0]
    assert total["offered"] == 13 and pd.isna(total["service_level_seconds"]) and math.isnan(total["service_level"])


def inbound_at(pbx_call_id: str, started_utc: str) -> dict:
    start = dt.datetime.fromisoformat(started_utc)
    return call(pbx_call_id, "inbound", "ANSWERED", started_utc, (start + dt.timedelta(seconds=70)).isoformat(sep=" "),
                (start + dt.timedelta(seconds=10)).isoformat(sep=" "), queue="q")


@pytest.mark.parametrize(("zone", "day", "starts", "seconds"), [
    # fall back: 2024-11-03 00:00 EDT = 04:00 UTC .. 2024-11-04 00:00 EST = 05:00 UTC, 25 hours;
    # 01:30 EDT (05:30 UTC) and 01:30 EST (06:30 UTC) both count, as do the first and last seconds
    ("America/New_York", dt.date(2024, 11, 3),
     ["2024-11-03 04:00:00", "2024-11-03 05:30:00", "2024-11-03 06:30:00", "2024-11-04 04:59:59"], 90_000),
    # spring forward: 2024-03-10 00:00 EST = 05:00 UTC .. 2024-03-11 00:00 EDT = 04:00 UTC, 23 hours
    ("America/New_York", dt.date(2024, 3, 10), ["2024-03-10 05:00:00", "2024-03-10 06:59:59", "2024-03-11 03:59:59"],
     82_800),
    # Lord Howe falls back half an hour on 2024-04-07: 00:00 +11 = 13:00 UTC .. 00:00 +10:30 = 13:30 UTC
    ("Australia/Lord_Howe", dt.date(2024, 4, 7), ["2024-04-06 13:00:00", "2024-04-07 13:29:59"], 88_200),
])
def test_daily_summary_on_dst_days(zone: str, day: dt.date, starts: list[str], seconds: int) -> None:
    rows = [inbound_at(f"c{i}", s) for i, s in enumerate(starts)]
    ctx = DayContext(7, zone, day)
    screened = screen_calls(table(rows), ctx)
    assert screened.rejected == {}
    (row,) = get_report("daily_summary").compute_day(screened.clean, ctx).to_pylist()
    assert (row["day_seconds"], row["offered"], row["answered"]) == (seconds, len(starts), len(starts))
    # the days around it: 24 hours each, and the period's length adds up
    days = [day - dt.timedelta(days=1), day, day + dt.timedelta(days=1)]
    combined = period(get_report("daily_summary"), table(rows), zone, days)
    assert combined.column("day_seconds").to_pylist() == [86_400, seconds, 86_400]
    assert combined.column("offered").to_pylist() == [0, len(starts), 0]
    assert get_report("daily_summary").totals(combined)["day_seconds"].iloc[0] == 2 * 86_400 + seconds


# --- wait_distribution ----------------------------------------------------------------------------------
EDGES = [0, 5, 10, 20, 30, 60, 120, 300]


def test_wait_distribution_day_table(calls: pa.Table) -> None:
    day = get_report("wait_distribution").compute_day(calls, CTX)
    # every bin of every queue with inbound calls; queues sorted, the queue-less calls (null) last
    assert [r["queue"] for r in day.to_pylist()] == ["sales"] * 8 + ["support"] * 8 + [None] * 8
    assert day.column("wait_from_seconds").to_pylist()[:8] == EDGES
    assert day.column("wait_to_seconds").to_pylist()[:8] == [5, 10, 20, 30, 60, 120, 300, None]
    got = by_bin(day, "wait_from_seconds")
    support = {lo: (got[("support", lo)]["answered"], got[("support", lo)]["abandoned"]) for lo in EDGES}
    assert support == {0: (2, 1), 5: (1, 0), 10: (1, 0), 20: (1, 0), 30: (0, 1), 60: (0, 0), 120: (1, 0), 300: (1, 0)}
    assert got[("support", 0)]["answered_wait_seconds_sum"] == 0 + 5
    assert got[("support", 0)]["abandoned_wait_seconds_sum"] == 3
    assert got[("support", 300)]["answered_wait_seconds_sum"] == 301
    sales = {lo: (got[("sales", lo)]["answered"], got[("sales", lo)]["abandoned"]) for lo in EDGES}
    assert sales == {0: (0, 0), 5: (1, 0), 10: (0, 0), 20: (0, 0), 30: (0, 1), 60: (0, 0), 120: (0, 0), 300: (0, 0)}
    assert [got[(None, lo)]["answered"] for lo in EDGES] == [1, 0, 0, 0, 0, 0, 0, 0]
    # the missed call m1 is in no bin: support's 7 answered + 2 abandoned
    assert sum(support[lo][0] for lo in EDGES) == 7 and sum(support[lo][1] for lo in EDGES) == 2


def test_wait_distribution_bins_agree_with_the_service_level(calls: pa.Table) -> None:
    """With a 20 s threshold, the bins up to 10-20 hold exactly the calls answered within service level."""
    bins = get_report("wait_distribution").compute_day(calls, CTX).to_pandas()
    queues = get_report("queue_performance").compute_day(calls, CTX).to_pandas()
    within = bins[bins["wait_to_seconds"] <= 20].groupby("queue", dropna=False)["answered"].sum()
    assert within.to_dict() == dict(zip(queues["queue"], queues["answered_within_sl"], strict=True))


def test_wait_distribution_presentation(calls: pa.Table) -> None:
    report = get_report("wait_distribution")
    shown = by_bin(report.present(period(report, calls, ZONE, [DAY])), "wait_from_seconds")
    assert shown[("support", 0)]["wait_bucket"] == "0-5" and shown[("support", 300)]["wait_bucket"] == "300+"
    assert shown[("support", 0)]["answered_share"] == pytest.approx(2 / 7)
    assert shown[("support", 10)]["answered_cumulative_share"] == pytest.approx(4 / 7)  # within 20 s
    assert shown[("support", 30)]["abandoned_cumulative_share"] == pytest.approx(1.0)
    assert shown[("support", 0)]["average_answer_wait_seconds"] == pytest.approx(2.5)
    assert shown[("support", 60)]["average_answer_wait_seconds"] is None  # no call in the bin: NaN
    assert shown[("support", 0)]["days"] == 1


def test_speed_of_answer_percentiles_from_the_day(calls: pa.Table) -> None:
    report = get_report("wait_distribution")
    got = speed_of_answer_percentiles(period(report, calls, ZONE, [DAY]))
    rows = {(r["queue"], r["all_queues"], r["percentile"]): r for r in got.to_dict("records")}
    # support's answered waits, sorted: 0, 5, 6, 20, 21, 300, 301 (7 calls).
    # p50: rank ceil(3.5) = 4, the 20 s call; bins 0-5: 2, 5-10: 1 (3 so far), 10-20: 1 -> 10 + 10 x (4-3)/1 = 20
    p50 = rows[("support", False, 50)]
    assert (p50["rank"], p50["bin_from_seconds"], p50["bin_to_seconds"], p50["estimate_seconds"]) == (4, 10, 20, 20.0)
    # p90: rank ceil(6.3) = 7, the 301 s call, in the open bin: no estimate
    p90 = rows[("support", False, 90)]
    assert (p90["rank"], p90["bin_from_seconds"]) == (7, 300) and pd.isna(p90["bin_to_seconds"])
    assert math.isnan(p90["estimate_seconds"]) and describe_percentile(p90) == "p90 over 300 s"
    # the queue-less call waited 2 s: the bin 0-5 is certain, the estimate 0 + 5 x 1/1 = 5 is its upper bound
    assert rows[(None, False, 50)]["estimate_seconds"] == 5.0
    # every queue: 0, 2, 5, 6, 10, 20, 21, 300, 301; p50 rank ceil(4.5) = 5 -> bin 5-10 (3 before, 2 in it)
    # -> 5 + 5 x (5 - 3)/2 = 10, the true value
    everything = rows[(None, True, 50)]
    assert (everything["answered"], everything["rank"], everything["estimate_seconds"]) == (9, 5, 10.0)
    assert describe_percentile(everything) == "p50 ≈ 10 s (5-10 s)"


def test_percentile_interpolates_inside_its_bin() -> None:
    """Hand-made period bins: 10 calls in 0-5, 30 in 5-10, 40 in 10-20, 20 in 20-30 (100 calls)."""
    counts = [10, 30, 40, 20, 0, 0, 0, 0]
    combined = pa.Table.from_pydict({
        "queue": ["q"] * 8, "wait_from_seconds": EDGES, "wait_to_seconds": [5, 10, 20, 30, 60, 120, 300, None],
        "days": [1] * 8, "answered": counts, "abandoned": [0] * 8,
        "answered_wait_seconds_sum": [0.0] * 8, "abandoned_wait_seconds_sum": [0.0] * 8,
    }, schema=get_report("wait_distribution").period_schema)
    got = speed_of_answer_percentiles(combined, (50, 90, 10, 100))
    q = got[~got["all_queues"]].set_index("percentile")
    # p50: rank 50; 40 calls up to 10 s, so the 10th of the 40 in 10-20: 10 + 10 x 10/40 = 12.5
    assert (q.loc[50, "bin_from_seconds"], q.loc[50, "estimate_seconds"]) == (10, 12.5)
    # p90: rank 90; 80 up to 20 s, the 10th of 20 in 20-30: 20 + 10 x 10/20 = 25
    assert (q.loc[90, "bin_from_seconds"], q.loc[90, "estimate_seconds"]) == (20, 25.0)
    # p10: rank 10, the last call of 0-5: its upper bound; p100: rank 100, the top of 20-30
    assert q.loc[10, "estimate_seconds"] == 5.0 and q.loc[100, "estimate_seconds"] == 30.0
    assert len(got) == 8  # the queue and "all queues", four percentiles each


# --- abandonment_curve ----------------------------------------------------------------------------------
CURVE = [0, 10, 20, 30, 45, 60, 90, 120, 180, 240, 300, 600]


def test_abandonment_curve_day_and_presentation(calls: pa.Table) -> None:
    report = get_report("abandonment_curve")
    day = report.compute_day(calls, CTX)
    assert day.num_rows == 3 * 12
    got = by_bin(day, "waited_from_seconds")
    # support ended its waits: answered after 0, 5, 6 | 20 | 21 | 300 | 301; abandoned after 3 | 45
    support = {lo: (got[("support", lo)]["abandoned"], got[("support", lo)]["answered"]) for lo in CURVE}
    assert support == {0: (1, 3), 10: (0, 1), 20: (0, 1), 30: (1, 0), 45: (0, 0), 60: (0, 0), 90: (0, 0),
                       120: (0, 0), 180: (0, 0), 240: (0, 1), 300: (0, 1), 600: (0, 0)}
    # sales: answered after 10 s (0-10, upper bound included), abandoned after 46 s (45-60)
    assert (got[("sales", 0)]["answered"], got[("sales", 45)]["abandoned"]) == (1, 1)

    shown = by_bin(report.present(period(report, calls, ZONE, [DAY])), "waited_from_seconds")
    still = [shown[("support", lo)]["still_waiting"] for lo in CURVE]
    # 9 waits ended (7 answered + 2 abandoned); 4 ended in 0-10, then 1, 1, 1, none until 240-300 and 300-600
    assert still == [9, 5, 4, 3, 2, 2, 2, 2, 2, 2, 1, 0]
    assert shown[("support", 0)]["abandon_rate"] == pytest.approx(1 / 9)
    assert shown[("support", 30)]["abandon_rate"] == pytest.approx(1 / 3)
    assert shown[("support", 600)]["abandon_rate"] is None  # nobody left waiting: NaN
    assert shown[("support", 0)]["abandoned_cumulative_share"] == pytest.approx(0.5)
    assert shown[("support", 30)]["abandoned_cumulative_share"] == pytest.approx(1.0)
    assert shown[("sales", 30)]["wait_bucket"] == "30-45" and shown[("sales", 600)]["wait_bucket"] == "600+"


def test_wait_reports_on_a_fall_back_day() -> None:
    """Both 01:30s of 2024-11-03 in New York (EDT, then EST) are in the day's bins; a period of the
    day before and the day adds the two days' bins."""
    ny = "America/New_York"
    rows = [answered_utc("edt", "2024-11-03 05:30:00", 4), answered_utc("est", "2024-11-03 06:30:00", 4),
            answered_utc("sat", "2024-11-02 15:00:00", 25)]
    days = [dt.date(2024, 11, 2), dt.date(2024, 11, 3)]
    report = get_report("wait_distribution")
    got = by_bin(period(report, table(rows), ny, days), "wait_from_seconds")
    assert (got[("q", 0)]["answered"], got[("q", 0)]["days"]) == (2, 2)  # both 01:30 calls; a row each day
    assert got[("q", 20)]["answered"] == 1
    curve = by_bin(period(get_report("abandonment_curve"), table(rows), ny, days), "waited_from_seconds")
    assert curve[("q", 0)]["answered"] == 2 and curve[("q", 20)]["answered"] == 1


def answered_utc(pbx_call_id: str, started_utc: str, wait: int) -> dict:
    start = dt.datetime.fromisoformat(started_utc)
    return call(pbx_call_id, "inbound", "ANSWERED", started_utc, (start + dt.timedelta(seconds=wait + 60)).isoformat(sep=" "),
                (start + dt.timedelta(seconds=wait)).isoformat(sep=" "), queue="q")
