"""The reports' maths on a hand-built day whose every expected figure was computed by hand.

The day: client 7, America/New_York, Wednesday 2024-06-12 (EDT, UTC-4, a 24-hour day), service
level 20 s. Local 09:00 is 13:00 UTC.
"""

from __future__ import annotations

import datetime as dt
import math

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from report_pipelines.domain.errors import InvalidInput
from report_pipelines.domain.reports import DayContext, get_report
from report_pipelines.domain.reports.screening import screen_calls
from report_pipelines_tests.reports_support import call, period, table, with_date

ZONE = "America/New_York"
DAY = dt.date(2024, 6, 12)
CTX = DayContext(client_id=7, timezone=ZONE, day=DAY, service_level_seconds=20)

D = "2024-06-12 "
CALLS = [
    # 09:xx local ------------------------------------------------------------------------------------
    # answered after exactly the threshold (20 s): within service level
    call("c1", "inbound", "ANSWERED", D + "13:00:00", D + "13:02:00", D + "13:00:20", queue="support", agent="1001"),
    # answered one second too late
    call("c2", "inbound", "ANSWERED", D + "13:10:00", D + "13:15:21", D + "13:10:21", queue="support", agent="1002"),
    # a short abandon (15 s <= 20 s)
    call("c3", "inbound", "ABANDONED", D + "13:20:00", D + "13:20:15", queue="support"),
    # a long abandon
    call("c4", "inbound", "ABANDONED", D + "13:40:00", D + "13:41:00", queue="sales"),
    # 10:xx local ------------------------------------------------------------------------------------
    # missed, never queued, no agent
    call("c5", "inbound", "NO ANSWER", D + "14:05:00", D + "14:05:30"),
    call("c6", "inbound", "ANSWERED", D + "14:30:00", D + "14:40:05", D + "14:30:05", queue="sales", agent="1001"),
    call("c7", "outbound", "ANSWERED", D + "14:50:00", D + "14:52:10", D + "14:50:10", agent="1001"),
    # 11:xx local ------------------------------------------------------------------------------------
    call("c8", "outbound", "NO ANSWER", D + "15:00:00", D + "15:00:30", agent="1002"),
    call("c9", "internal", "ANSWERED", D + "15:10:00", D + "15:11:04", D + "15:10:04", agent="1001"),
    # same start as c9: call_detail orders them by pbx_call_id ("c10" < "c9")
    call("c10", "outbound", "BUSY", D + "15:10:00", D + "15:10:05"),
    # rang agent 1003 and rang out
    call("c11", "inbound", "NO ANSWER", D + "15:30:00", D + "15:30:40", queue="support", agent="1003"),
]


@pytest.fixture(scope="module")
def calls() -> pa.Table:
    shuffled = [CALLS[i] for i in (5, 0, 10, 3, 8, 1, 9, 2, 7, 4, 6)]  # input order must not matter
    screened = screen_calls(table(shuffled), CTX)
    assert screened.rejected == {}
    return screened.clean


def rows(t: pa.Table) -> list[dict]:
    return t.to_pylist()


def test_hourly_volume_day_table(calls: pa.Table) -> None:
    report = get_report("hourly_volume")
    day = report.compute_day(calls, CTX)
    assert day.schema.equals(report.schema)
    assert day.num_rows == 24  # every hour of the day, with zeros where nothing happened
    assert day.column("local_hour").to_pylist() == list(range(24))
    assert set(day.column("utc_offset_minutes").to_pylist()) == {-240}
    assert day.column("hour_start_utc").to_pylist()[0] == dt.datetime(2024, 6, 12, 4, tzinfo=dt.UTC)
    by_hour = {r["local_hour"]: r for r in rows(day)}
    zero = dict(offered=0, answered=0, abandoned=0, missed=0, answered_within_sl=0, abandoned_within_sl=0,
                outbound=0, internal=0, wait_seconds_sum=0.0, abandoned_wait_seconds_sum=0.0,
                talk_seconds_sum=0.0, wait_seconds_max=None)
    expected = {
        9: zero | dict(offered=4, answered=2, abandoned=2, answered_within_sl=1, abandoned_within_sl=1,
                       wait_seconds_sum=41.0, wait_seconds_max=21.0, abandoned_wait_seconds_sum=75.0,
                       talk_seconds_sum=400.0),
        10: zero | dict(offered=2, answered=1, missed=1, answered_within_sl=1, wait_seconds_sum=5.0,
                        wait_seconds_max=5.0, talk_seconds_sum=600.0, outbound=1),
        11: zero | dict(offered=1, missed=1, outbound=2, internal=1),
    }
    for hour in range(24):
        got = {k: v for k, v in by_hour[hour].items() if k in zero}
        assert got == expected.get(hour, zero), hour
    assert {r["service_level_seconds"] for r in rows(day)} == {20}


def test_hourly_volume_presentation(calls: pa.Table) -> None:
    report = get_report("hourly_volume")
    shown = report.present(report.combine(with_date(report.compute_day(calls, CTX), DAY))).set_index("local_hour")
    nine = shown.loc[9]
    assert nine["answer_rate"] == pytest.approx(2 / 4)
    assert nine["abandon_rate"] == pytest.approx(2 / 4)
    assert nine["service_level"] == pytest.approx(1 / (4 - 1))  # the short abandon is left out
    assert nine["service_level_of_offered"] == pytest.approx(1 / 4)
    assert nine["average_speed_of_answer"] == pytest.approx(41 / 2)
    assert nine["average_talk_seconds"] == pytest.approx(400 / 2)
    assert nine["average_abandon_wait_seconds"] == pytest.approx(75 / 2)
    # an hour with nothing offered: rates are NaN, not errors nor zeros
    assert math.isnan(shown.loc[3, "answer_rate"]) and math.isnan(shown.loc[3, "average_speed_of_answer"])
    assert math.isnan(shown.loc[11, "average_speed_of_answer"]) and shown.loc[11, "missed_rate"] == 1.0


def test_queue_performance_day_table(calls: pa.Table) -> None:
    report = get_report("queue_performance")
    day = report.compute_day(calls, CTX)
    assert day.schema.equals(report.schema)
    assert rows(day) == [
        dict(queue="sales", service_level_seconds=20, offered=2, answered=1, abandoned=1, missed=0,
             answered_within_sl=1, abandoned_within_sl=0, wait_seconds_sum=5.0, abandoned_wait_seconds_sum=60.0,
             talk_seconds_sum=600.0, wait_seconds_max=5.0),
        dict(queue="support", service_level_seconds=20, offered=4, answered=2, abandoned=1, missed=1,
             answered_within_sl=1, abandoned_within_sl=1, wait_seconds_sum=41.0, abandoned_wait_seconds_sum=15.0,
             talk_seconds_sum=400.0, wait_seconds_max=21.0),
        # inbound calls without a queue: one row, queue null, last
        dict(queue=None, service_level_seconds=20, offered=1, answered=0, abandoned=0, missed=1,
             answered_within_sl=0, abandoned_within_sl=0, wait_seconds_sum=0.0, abandoned_wait_seconds_sum=0.0,
             talk_seconds_sum=0.0, wait_seconds_max=None),
    ]
    shown = report.present(report.combine(with_date(day, DAY)))
    support = shown[shown["queue"] == "support"].iloc[0]
    assert support["service_level"] == pytest.approx(1 / 3)
    assert support["average_speed_of_answer"] == pytest.approx(20.5)
    assert math.isnan(shown[shown["queue"].isna()].iloc[0]["average_speed_of_answer"])


def test_agent_performance_day_table(calls: pa.Table) -> None:
    report = get_report("agent_performance")
    day = report.compute_day(calls, CTX)
    assert day.schema.equals(report.schema)
    assert rows(day) == [
        # c1 (in, talk 100), c6 (in, talk 600), c7 (out, ring 10 + talk 120), c9 (internal, ring 4 + talk 60)
        dict(agent="1001", calls_handled=4, inbound_answered=2, inbound_unanswered=0, outbound_calls=1,
             internal_calls=1, answered_calls=4, missed=0, talk_seconds_sum=880.0,
             handle_seconds_sum=100.0 + 600.0 + 130.0 + 64.0, max_talk_seconds=600.0),
        # c2 (in, wait 21 not counted, talk 300), c8 (out, rang 30 s unanswered)
        dict(agent="1002", calls_handled=2, inbound_answered=1, inbound_unanswered=0, outbound_calls=1,
             internal_calls=0, answered_calls=1, missed=1, talk_seconds_sum=300.0, handle_seconds_sum=330.0,
             max_talk_seconds=300.0),
        # c11 rang 1003 and rang out: listed, nothing handled
        dict(agent="1003", calls_handled=0, inbound_answered=0, inbound_unanswered=1, outbound_calls=0,
             internal_calls=0, answered_calls=0, missed=0, talk_seconds_sum=0.0, handle_seconds_sum=0.0,
             max_talk_seconds=None),
    ]  # c3, c4, c5, c10 have no agent and appear nowhere
    shown = report.present(report.combine(with_date(day, DAY))).set_index("agent")
    assert shown.loc["1001", "average_talk_seconds"] == pytest.approx(880 / 4)
    assert shown.loc["1002", "average_handle_seconds"] == pytest.approx(330 / 2)
    assert shown.loc["1002", "outbound_answer_rate"] == 0.0
    assert math.isnan(shown.loc["1003", "average_handle_seconds"])


def test_call_detail_day_table(calls: pa.Table) -> None:
    report = get_report("call_detail")
    day = report.compute_day(calls, CTX)
    assert day.schema.equals(report.schema)
    assert day.column("pbx_call_id").to_pylist() == ["c1", "c2", "c3", "c4", "c5", "c6", "c7", "c8", "c10", "c9", "c11"]
    first, third = rows(day)[0], rows(day)[2]
    assert first["started_local"] == "2024-06-12 09:00:00" and first["utc_offset_minutes"] == -240
    assert (first["wait_seconds"], first["talk_seconds"], first["duration_seconds"]) == (20.0, 100.0, 120.0)
    assert (third["wait_seconds"], third["talk_seconds"], third["duration_seconds"]) == (None, None, 15.0)
    assert third["disposition"] == "ABANDONED" and third["answered_at"] is None
    assert rows(day)[6]["wait_seconds"] == 10.0  # outbound: ring time
    assert day.column("started_local").to_pylist()[-1] == "2024-06-12 11:30:00"


def test_period_averages_are_sums_over_sums_not_averages_of_days() -> None:
    """Day 1: one call waits 10 s. Day 2: three calls wait 30 s. The period's average speed of answer
    is (10 + 90) / 4 = 25 s; the average of the two daily averages would be 20 s."""
    d1, d2 = "2024-06-12 ", "2024-06-13 "
    rows_ = [call("a", "inbound", "ANSWERED", d1 + "14:00:00", d1 + "14:01:10", d1 + "14:00:10", queue="q", agent="1")]
    rows_ += [call(f"b{i}", "inbound", "ANSWERED", d2 + f"14:0{i}:00", d2 + f"14:0{i}:50", d2 + f"14:0{i}:30",
                   queue="q", agent="1") for i in range(3)]
    calls = table(rows_)
    days = [DAY, DAY + dt.timedelta(days=1)]
    queue = get_report("queue_performance").present(period(get_report("queue_performance"), calls, ZONE, days))
    assert queue["average_speed_of_answer"].tolist() == [25.0]
    assert queue["days"].tolist() == [2]
    assert queue["service_level"].tolist() == [1 / 4]  # 10 s within 20 s; 30 s not
    agent = get_report("agent_performance").present(period(get_report("agent_performance"), calls, ZONE, days))
    assert agent["average_talk_seconds"].tolist() == [(60 + 3 * 20) / 4]  # not (60 + 20) / 2
    hourly = get_report("hourly_volume").present(period(get_report("hourly_volume"), calls, ZONE, days))
    ten = hourly.set_index("local_hour").loc[10]
    assert ten["average_speed_of_answer"] == 25.0 and ten["hour_buckets"] == 2
    assert ten["wait_seconds_max"] == 30.0


def test_a_call_crossing_local_midnight_counts_on_its_start_day_only() -> None:
    # 23:50 EDT on the 12th (03:50 UTC on the 13th) to 00:20 EDT on the 13th
    late = call("late", "inbound", "ANSWERED", "2024-06-13 03:50:00", "2024-06-13 04:20:00", "2024-06-13 03:50:10",
                queue="support", agent="1001")
    calls = table([late])
    next_day = DayContext(7, ZONE, DAY + dt.timedelta(days=1))
    assert screen_calls(calls, CTX).clean.num_rows == 1
    assert screen_calls(calls, next_day).rejected == {"outside_day": 1}
    hourly = get_report("hourly_volume")
    on_start_day = {r["local_hour"]: r for r in rows(hourly.compute_day(screen_calls(calls, CTX).clean, CTX))}
    assert on_start_day[23]["offered"] == 1 and on_start_day[23]["talk_seconds_sum"] == 1790.0  # all of it
    on_next_day = hourly.compute_day(screen_calls(calls, next_day).clean, next_day)
    assert sum(on_next_day.column("offered").to_pylist()) == 0
    both = period(hourly, calls, ZONE, [DAY, DAY + dt.timedelta(days=1)])
    assert sum(both.column("offered").to_pylist()) == 1
    detail = get_report("call_detail").compute_day(screen_calls(calls, CTX).clean, CTX)
    assert detail.column("started_local").to_pylist() == ["2024-06-12 23:50:00"]


def test_a_different_threshold_changes_service_level_and_periods_keep_thresholds_apart(calls: pa.Table) -> None:
    report = get_report("queue_performance")
    strict = DayContext(7, ZONE, DAY, service_level_seconds=19)
    day19 = {r["queue"]: r for r in rows(report.compute_day(calls, strict))}
    assert day19["support"]["answered_within_sl"] == 0  # c1's 20 s wait is now outside
    assert day19["support"]["abandoned_within_sl"] == 1
    at_15 = DayContext(7, ZONE, DAY, service_level_seconds=15)
    day15 = {r["queue"]: r for r in rows(report.compute_day(calls, at_15))}
    assert day15["support"]["abandoned_within_sl"] == 1  # c3 hung up after exactly 15 s: a short abandon
    hour9 = [r for r in rows(get_report("hourly_volume").compute_day(calls, at_15)) if r["local_hour"] == 9][0]
    assert (hour9["answered_within_sl"], hour9["abandoned_within_sl"]) == (0, 1)
    at_14 = DayContext(7, ZONE, DAY, service_level_seconds=14)
    assert {r["queue"]: r for r in rows(report.compute_day(calls, at_14))}["support"]["abandoned_within_sl"] == 0
    both = pa.concat_tables([with_date(report.compute_day(calls, CTX), DAY),
                             with_date(report.compute_day(calls, strict), DAY + dt.timedelta(days=1))])
    combined = report.combine(both)
    assert [(r["queue"], r["service_level_seconds"]) for r in rows(combined)] == [
        ("sales", 19), ("sales", 20), ("support", 19), ("support", 20), (None, 19), (None, 20)]


def test_compute_day_refuses_rows_screening_would_reject(calls: pa.Table) -> None:
    bad = table([call("x", "inbound", "ANSWERED", "2024-06-12 13:00:00", "2024-06-12 12:00:00", "2024-06-12 13:00:01")])
    for name in ("call_detail", "hourly_volume", "agent_performance", "queue_performance"):
        with pytest.raises(InvalidInput, match="ends_before_start"):
            get_report(name).compute_day(bad, CTX)
    other_day = DayContext(7, ZONE, DAY + dt.timedelta(days=3))
    with pytest.raises(InvalidInput, match="outside_day: 11"):
        get_report("hourly_volume").compute_day(calls, other_day)


def test_day_tables_do_not_depend_on_input_order(calls: pa.Table) -> None:
    reversed_calls = calls.take(pa.array(list(range(calls.num_rows))[::-1]))
    for name in ("call_detail", "hourly_volume", "agent_performance", "queue_performance"):
        report = get_report(name)
        assert report.compute_day(reversed_calls, CTX).equals(report.compute_day(calls, CTX)), name


def test_combine_accepts_what_a_parquet_reader_hands_back(calls: pa.Table) -> None:
    """Strings read back as dictionaries or large strings are still re-aggregated."""
    report = get_report("queue_performance")
    stored = with_date(report.compute_day(calls, CTX), DAY)
    as_read = stored.set_column(0, "queue", stored.column("queue").dictionary_encode())
    assert report.combine(as_read).equals(report.combine(stored))
    assert isinstance(report.present(report.combine(as_read)), pd.DataFrame)


def test_the_inbound_counts_from_one_bincount_equal_one_masked_count_per_figure() -> None:
    """inbound_measures' counts come from one bincount of each call's outcome; the reference below is
    the masked count per figure it replaced (and the same sums and maxima), bit for bit."""
    from types import SimpleNamespace

    import numpy as np

    from report_pipelines.domain.reports._maths import count, inbound_measures, max_seconds, total_seconds

    rng = np.random.default_rng(7)
    n, groups = 20_000, 17
    direction = rng.integers(0, 3, n)
    outcome = rng.integers(0, 3, n)  # answered, abandoned, other
    answered = outcome == 0
    c = SimpleNamespace(inbound=direction == 0, answered=answered, abandoned=outcome == 1,
                        wait_us=np.where(answered, rng.integers(0, 60_000_000, n), 0),
                        talk_us=np.where(answered, rng.integers(0, 900_000_000, n), 0),
                        held_us=rng.integers(0, 120_000_000, n))
    group = rng.integers(0, groups, n)
    group[group == 5] = 4  # a group with no call at all
    for threshold in (0, 20, 45):
        t = threshold * 1_000_000
        inbound, ans, ab = c.inbound, c.inbound & c.answered, c.inbound & c.abandoned
        reference = {
            "offered": count(group, inbound, groups), "answered": count(group, ans, groups),
            "abandoned": count(group, ab, groups), "missed": count(group, inbound & ~ans & ~ab, groups),
            "answered_within_sl": count(group, ans & (c.wait_us <= t), groups),
            "abandoned_within_sl": count(group, ab & (c.held_us <= t), groups),
            "wait_seconds_sum": total_seconds(group, ans, c.wait_us, groups),
            "abandoned_wait_seconds_sum": total_seconds(group, ab, c.held_us, groups),
            "talk_seconds_sum": total_seconds(group, ans, c.talk_us, groups),
            "wait_seconds_max": max_seconds(group, ans, c.wait_us, groups)}
        ours = inbound_measures(c, group, groups, threshold)
        assert list(ours) == list(reference)
        for name in reference:
            assert ours[name].equals(reference[name]), (threshold, name)
        assert ours["offered"].to_pylist()[5] == 0


def test_a_table_found_in_order_is_what_sorting_it_gives() -> None:
    """sort_table skips the sort when neighbours show the rows already in order; on tables in order, out
    of order only on a tied later key, with nulls or with floats, it returns what sort_indices + take does."""
    import numpy as np

    from report_pipelines.domain.reports._maths import _in_order, sort_table

    rng = np.random.default_rng(3)
    n = 2_000
    start = np.sort(rng.integers(0, 500, n)) * 1_000_000  # many ties on the first key
    ids = [f"c{rng.integers(0, 50):02d}" for _ in range(n)]
    keyed = pa.table({"started_at": pa.array(start, pa.timestamp("us", tz="UTC")), "pbx_call_id": ids,
                      "row": np.arange(n)})
    ordered = keyed.take(pc.sort_indices(keyed, sort_keys=[("started_at", "ascending"), ("pbx_call_id", "ascending")]))
    keys = ["started_at", "pbx_call_id"]
    assert _in_order(ordered, keys) and sort_table(ordered, keys) is ordered
    assert not _in_order(keyed, keys)  # ties on started_at whose ids fall: found out of order
    with_nulls = pa.table({"k": pa.array([1, None, 2])})
    floats = pa.table({"k": pa.array([1.0, float("nan"), 2.0])})
    for rows, by in ((keyed, keys), (with_nulls, ["k"]), (floats, ["k"]),
                      (pa.table({"k": [3, 1, 2]}), ["k"]), (pa.table({"k": [1, 1, 1], "r": [0, 1, 2]}), ["k"])):
        expected = rows.take(pc.sort_indices(rows, sort_keys=[(k, "ascending") for k in by]))
        assert repr(sort_table(rows, by).to_pydict()) == repr(expected.to_pydict())  # repr: nan is nan
    assert not _in_order(with_nulls, ["k"]) and not _in_order(floats, ["k"])  # cannot tell: sorted
    assert _in_order(pa.table({"k": [1, 1, 1]}), ["k"])  # ties keep their order (a stable sort)


def test_a_views_group_codes_at_some_rows_are_those_of_the_rows_alone() -> None:
    """Calls.group_codes encodes a column once and narrows it to rows; the codes and keys are those of
    group_codes over the taken rows (sorted keys, null last, only keys present)."""
    import numpy as np

    from report_pipelines.domain.reports._calls import view_calls
    from report_pipelines.domain.reports._maths import group_codes

    rng = np.random.default_rng(5)
    n = 500
    queues = [None if x == 0 else f"q{x}" for x in rng.integers(0, 8, n)]
    t0 = dt.datetime(2024, 3, 31, tzinfo=dt.UTC)
    calls = pa.table({
        "pbx_call_id": [f"id{i}" for i in range(n)], "direction": ["inbound"] * n, "queue": queues,
        "agent": ["a"] * n, "caller": ["1"] * n, "callee": ["2"] * n,
        "started_at": pa.array([t0] * n, pa.timestamp("us", tz="UTC")),
        "answered_at": pa.array([None] * n, pa.timestamp("us", tz="UTC")),
        "ended_at": pa.array([t0] * n, pa.timestamp("us", tz="UTC")), "disposition": ["ABANDONED"] * n})
    c = view_calls(calls)
    for rows in (np.arange(n), np.flatnonzero(rng.random(n) < 0.1), np.flatnonzero(np.array(queues) == "q3"),
                 np.array([], dtype=np.int64)):
        code, keys = c.group_codes("queue", rows)
        expected_code, expected_keys = group_codes(calls.column("queue").take(pa.array(rows, pa.int64())))
        assert np.array_equal(code, expected_code) and keys.equals(expected_keys), len(rows)
    assert c.group_codes("queue")[1].to_pylist()[-1] is None  # null last


def test_regroup_in_numpy_is_arrows_hash_aggregation_to_the_bit() -> None:
    """The period summaries re-aggregate day tables in NumPy; on random day tables (null keys, several
    chunks as the day tables come, null and all-null maxima, float sums of every magnitude) the table
    equals Arrow's grouped sum, max and count, floats bit for bit, groups in key order with nulls last.
    What NumPy cannot promise (a null among the sums, a float key) is left to Arrow."""
    import numpy as np

    from report_pipelines.domain.reports._maths import _regroup_arrow, _regroup_numpy, regroup

    rng = np.random.default_rng(14)
    schema = pa.schema([("queue", pa.string()), ("threshold", pa.int32()), ("date", pa.date32()),
                        ("days", pa.int64()), ("offered", pa.int64()), ("wait_sum", pa.float64()),
                        ("wait_max", pa.float64())])
    stored = pa.schema([f for f in schema if f.name != "days"])

    def day(n: int) -> pa.Table:
        queue = [None if x == 0 else f"q{x}" for x in rng.integers(0, 6, n)]
        wait_max = rng.random(n) * 300
        return pa.table({
            "queue": pa.array(queue, pa.string()), "threshold": pa.array(rng.choice([-5, 20, 30, 7], n), pa.int32()),
            "date": pa.array(dt.date(2024, 3, 1) + dt.timedelta(days=int(d)) for d in rng.integers(0, 3, n)),
            "offered": pa.array(rng.integers(0, 10**6, n), pa.int64()),
            "wait_sum": pa.array(rng.random(n) * 10.0 ** rng.integers(-3, 9, n)),
            "wait_max": pa.array(wait_max, mask=rng.random(n) < 0.3)}, schema=stored)

    for trial in range(60):
        days = pa.concat_tables([day(int(rng.integers(1, 40))) for _ in range(int(rng.integers(1, 8)))])
        keys = [["queue"], ["queue", "threshold"], ["date", "queue", "threshold"], ["threshold", "queue"]][trial % 4]
        rest = pa.schema([schema.field(k) for k in keys] + [f for f in schema if f.name not in {"queue", "threshold",
                                                                                                 "date"}])
        args = (rest, keys, ["offered", "wait_sum"], ["wait_max"], "days")
        ours, arrows = _regroup_numpy(days, *args), _regroup_arrow(days, *args)
        assert ours is not None and ours.equals(arrows), trial
        for name in ("wait_sum", "wait_max"):
            assert np.array_equal(ours.column(name).fill_null(-1.0).to_numpy().view(np.int64),
                                  arrows.column(name).fill_null(-1.0).to_numpy().view(np.int64)), (trial, name)
        if keys == ["queue"]:
            queues = ours.column("queue").to_pylist()
            assert queues == sorted(q for q in queues if q is not None) + [None] * (None in queues), trial

    every_null = day(5).set_column(stored.get_field_index("wait_max"), "wait_max", pa.nulls(5, pa.float64()))
    summed = _regroup_numpy(every_null, pa.schema([schema.field("queue"), schema.field("wait_max")]), ["queue"],
                            [], ["wait_max"], None)
    assert summed.column("wait_max").null_count == summed.num_rows  # a max over no value is null, not -inf

    with_null_sum = day(6).set_column(stored.get_field_index("offered"), "offered",
                                      pa.array([1, None, 3, 4, 5, 6], pa.int64()))
    args = (pa.schema([schema.field("queue"), schema.field("offered")]), ["queue"], ["offered"], [], None)
    assert _regroup_numpy(with_null_sum, *args) is None
    assert regroup(with_null_sum, *args).equals(_regroup_arrow(with_null_sum, *args))
    float_key = pa.table({"x": [0.5, float("nan"), 0.5], "offered": pa.array([1, 2, 3], pa.int64())})
    assert _regroup_numpy(float_key, float_key.schema, ["x"], ["offered"], [], None) is None


def test_a_presented_frame_is_what_to_pandas_gives() -> None:
    """``arrow_frame`` builds the presented DataFrame from the columns (numbers, text) instead of
    ``to_pandas``; the dtypes, values, nulls and index are the same, the frame is writable, and a column
    it cannot promise (an integer with a null, a date) takes ``to_pandas``."""
    import numpy as np

    from report_pipelines.domain.reports._maths import arrow_frame

    plain = pa.table({"queue": pa.array(["sales", None, "ünïcode"]), "offered": pa.array([3, 0, 2], pa.int64()),
                      "threshold": pa.array([20, 20, 30], pa.int32()), "wait_max": pa.array([1.5, None, 0.0]),
                      "flag": pa.array([True, False, True])})
    rates = {"answer_rate": np.array([0.5, np.nan, 1.0])}
    expected = plain.to_pandas()
    expected["answer_rate"] = rates["answer_rate"]
    ours = arrow_frame(plain, extra=rates)
    pd.testing.assert_frame_equal(ours, expected, check_exact=True)
    assert list(ours.dtypes.astype(str)) == list(expected.dtypes.astype(str))
    ours.loc[0, "offered"] = 7  # writable, as to_pandas' frame is
    for other in (pa.table({"offered": pa.array([1, None], pa.int64())}),
                  pa.table({"date": pa.array([dt.date(2024, 2, 29), None], pa.date32())})):
        pd.testing.assert_frame_equal(arrow_frame(other), other.to_pandas())
