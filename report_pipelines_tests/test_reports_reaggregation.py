"""Property: day tables combined over a period = the period computed directly from the raw calls.

(Every report of the registry: the first four in one test, the trend and wait reports in a second.)

For random calls spread over a few local days of a random zone (DST ones included, and their
transition days), computing each day, concatenating the day tables, ``combine`` then ``present``
gives what a direct computation over all raw calls of the period gives. The direct computation is
written here again, independently, in plain pandas (``tz_convert`` for local time, ``groupby``).
"""

from __future__ import annotations

import datetime as dt
import math

import numpy as np
import pandas as pd
import pyarrow as pa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from report_pipelines.adapters.db.bulk import CALL_EVENT_SCHEMA
from report_pipelines.domain.reports import get_report
from report_pipelines.domain.reports.wait_distribution import speed_of_answer_percentiles
from report_pipelines.domain.timezones import local_day_window, parse_zone
from report_pipelines_tests.reports_support import period

ZONES = ("America/New_York", "Europe/Lisbon", "Australia/Lord_Howe", "Australia/Sydney",
         "America/Sao_Paulo", "Asia/Kolkata", "Europe/Berlin")
# (zone, the day before one of its DST changes): a period starting there usually holds the change.
NEAR_TRANSITIONS = [
    ("America/New_York", dt.date(2024, 3, 9)), ("America/New_York", dt.date(2024, 11, 2)),
    ("Europe/Lisbon", dt.date(2024, 3, 30)), ("Europe/Lisbon", dt.date(2024, 10, 26)),
    ("Europe/Berlin", dt.date(2024, 10, 26)),
    ("Australia/Sydney", dt.date(2024, 4, 6)), ("Australia/Sydney", dt.date(2024, 10, 5)),
    ("Australia/Lord_Howe", dt.date(2024, 4, 6)), ("Australia/Lord_Howe", dt.date(2024, 10, 5)),
    ("America/Sao_Paulo", dt.date(2018, 11, 3)), ("America/Sao_Paulo", dt.date(2019, 2, 16)),
]
OUTCOMES = {"inbound": ["ANSWERED", "ABANDONED", "NO ANSWER", "BUSY", "FAILED"],
            "outbound": ["ANSWERED", "NO ANSWER", "BUSY", "FAILED"],
            "internal": ["ANSWERED", "NO ANSWER", "BUSY"]}
MISSED = ["NO ANSWER", "BUSY", "FAILED"]
US = 1_000_000

event = st.tuples(
    st.floats(0, 1, exclude_max=True),  # where in the period it starts
    st.sampled_from(["inbound", "inbound", "outbound", "internal"]),
    st.integers(0, 4),  # outcome index (modulo the direction's outcomes)
    # wait / ring, milliseconds; whole seconds half the time, so waits land exactly on the threshold
    st.one_of(st.sampled_from([0, 15_000, 20_000]), st.integers(0, 45).map(lambda seconds: seconds * 1000),
              st.integers(0, 45_000)),
    st.integers(0, 600_000),  # talk, milliseconds
    st.sampled_from([None, "sales", "support"]),
    st.sampled_from([None, "1001", "1002", "1003"]),
)
place = st.one_of(
    st.sampled_from(NEAR_TRANSITIONS),
    st.tuples(st.sampled_from(ZONES), st.dates(dt.date(2023, 1, 1), dt.date(2025, 12, 31))),
)
scenario = st.fixed_dictionaries({
    "place": place,
    "days": st.integers(1, 4),
    "threshold": st.sampled_from([0, 15, 20]),
    "events": st.lists(event, max_size=60),
})


def raw_calls(s: dict) -> tuple[pd.DataFrame, list[dt.date], tuple[pd.Timestamp, pd.Timestamp]]:
    zone, first = parse_zone(s["place"][0]), s["place"][1]
    days = [first + dt.timedelta(days=i) for i in range(s["days"])]
    start, end = local_day_window(days[0], zone)[0], local_day_window(days[-1], zone)[1]
    span_us = (end - start) // dt.timedelta(microseconds=1)
    records = []
    for i, (where, direction, outcome, wait_ms, talk_ms, queue, agent) in enumerate(s["events"]):
        disposition = OUTCOMES[direction][outcome % len(OUTCOMES[direction])]
        started = pd.Timestamp(start) + pd.Timedelta(microseconds=int(where * span_us))
        answered = started + pd.Timedelta(milliseconds=wait_ms) if disposition == "ANSWERED" else pd.NaT
        ended = (answered + pd.Timedelta(milliseconds=talk_ms)) if disposition == "ANSWERED" \
            else started + pd.Timedelta(milliseconds=wait_ms)
        records.append(dict(client_id=7, pbx_call_id=f"e{i:03d}", direction=direction,
                            queue=queue if direction == "inbound" else None, agent=agent, caller="x", callee="y",
                            started_at=started, answered_at=answered, ended_at=ended, disposition=disposition,
                            ingested_at=ended))
    frame = pd.DataFrame.from_records(records, columns=CALL_EVENT_SCHEMA.names)
    for column in ("started_at", "answered_at", "ended_at", "queued_at", "ingested_at"):
        frame[column] = pd.to_datetime(frame[column], utc=True).astype("datetime64[us, UTC]")
    return frame, days, (pd.Timestamp(start), pd.Timestamp(end))


def as_arrow(frame: pd.DataFrame) -> pa.Table:
    return pa.Table.from_pandas(frame, schema=CALL_EVENT_SCHEMA, preserve_index=False)


def derived(frame: pd.DataFrame, zone: str) -> pd.DataFrame:
    """The raw calls with their local time, waits and durations, computed the plain pandas way."""
    df = frame.copy()
    local = df["started_at"].dt.tz_convert(zone)
    df["local_hour"] = local.dt.hour
    df["local_date"] = local.dt.date
    df["started_local"] = local.dt.strftime("%Y-%m-%d %H:%M:%S")
    df["utc_offset_minutes"] = ((local.dt.tz_localize(None) - df["started_at"].dt.tz_localize(None))
                                .dt.total_seconds() // 60).astype("int64")
    df["wait"] = (df["answered_at"] - df["started_at"]).dt.total_seconds()
    df["talk"] = (df["ended_at"] - df["answered_at"]).dt.total_seconds()
    df["duration"] = (df["ended_at"] - df["started_at"]).dt.total_seconds()
    df["is_answered"] = df["disposition"] == "ANSWERED"
    df["is_abandoned"] = df["disposition"] == "ABANDONED"
    df["is_missed"] = df["disposition"].isin(MISSED)
    return df


def div(num: pd.Series, den: pd.Series) -> pd.Series:
    return (num.astype(float) / den.astype(float)).where(den != 0)


def inbound_figures(inbound: pd.DataFrame, by: str, threshold: int) -> pd.DataFrame:
    answered = inbound[inbound["is_answered"]]
    abandoned = inbound[inbound["is_abandoned"]]
    grouped = inbound.groupby(by, dropna=False)
    out = pd.DataFrame({
        "offered": grouped.size(),
        "answered": grouped["is_answered"].sum(),
        "abandoned": grouped["is_abandoned"].sum(),
        "missed": grouped["is_missed"].sum(),
        "answered_within_sl": answered[answered["wait"] <= threshold].groupby(by, dropna=False).size(),
        "abandoned_within_sl": abandoned[abandoned["duration"] <= threshold].groupby(by, dropna=False).size(),
        "wait_seconds_sum": answered.groupby(by, dropna=False)["wait"].sum(),
        "wait_seconds_max": answered.groupby(by, dropna=False)["wait"].max(),
        "talk_seconds_sum": answered.groupby(by, dropna=False)["talk"].sum(),
        "abandoned_wait_seconds_sum": abandoned.groupby(by, dropna=False)["duration"].sum(),
    })
    return out


def with_rates(out: pd.DataFrame) -> pd.DataFrame:
    counts = ["offered", "answered", "abandoned", "missed", "answered_within_sl", "abandoned_within_sl",
              "wait_seconds_sum", "talk_seconds_sum", "abandoned_wait_seconds_sum"]
    out[counts] = out[counts].fillna(0)
    out["answer_rate"] = div(out["answered"], out["offered"])
    out["abandon_rate"] = div(out["abandoned"], out["offered"])
    out["service_level"] = div(out["answered_within_sl"], out["offered"] - out["abandoned_within_sl"])
    out["average_speed_of_answer"] = div(out["wait_seconds_sum"], out["answered"])
    out["average_talk_seconds"] = div(out["talk_seconds_sum"], out["answered"])
    out["average_abandon_wait_seconds"] = div(out["abandoned_wait_seconds_sum"], out["abandoned"])
    return out


def same(got: pd.DataFrame, expected: pd.DataFrame) -> None:
    got = got[expected.columns].astype(float)
    pd.testing.assert_frame_equal(got, expected.astype(float), check_names=False, check_index_type=False,
                                  rtol=1e-9, atol=1e-6)


def label(values: pd.Series) -> pd.Series:
    return values.astype(object).where(values.notna(), "<null>")


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scenario)
def test_combined_days_equal_the_direct_period_computation(s: dict) -> None:
    frame, days, (start, end) = raw_calls(s)
    zone, threshold = s["place"][0], s["threshold"]
    calls = as_arrow(frame)
    df = derived(frame, zone)

    def shown(name: str) -> pd.DataFrame:
        report = get_report(name)
        combined = period(report, calls, zone, days, service_level_seconds=threshold)
        assert combined.schema.equals(report.period_schema)
        return report.present(combined)

    # --- hourly_volume ----------------------------------------------------------------------------
    grid = pd.date_range(start, end, freq="15min", inclusive="left").tz_convert(zone)
    buckets = pd.DataFrame({"hour": grid.hour, "date": grid.date, "offset": grid.map(lambda t: t.utcoffset())})
    hour_buckets = buckets.drop_duplicates().groupby("hour").size()
    inbound = df[df["direction"] == "inbound"]
    expected = inbound_figures(inbound, "local_hour", threshold).reindex(hour_buckets.index)
    expected["hour_buckets"] = hour_buckets
    for direction in ("outbound", "internal"):
        expected[direction] = df[df["direction"] == direction].groupby("local_hour").size().reindex(hour_buckets.index)
    expected = with_rates(expected.fillna({"outbound": 0, "internal": 0}))
    got = shown("hourly_volume").set_index("local_hour")
    assert (got["service_level_seconds"] == threshold).all()
    same(got, expected)

    # --- queue_performance ------------------------------------------------------------------------
    expected = inbound_figures(inbound, "queue", threshold)
    expected["days"] = inbound.groupby("queue", dropna=False)["local_date"].nunique()
    expected = with_rates(expected)
    expected.index = label(expected.index.to_series())
    got = shown("queue_performance")
    got.index = label(got["queue"])
    same(got.sort_index(), expected.sort_index())

    # --- agent_performance ------------------------------------------------------------------------
    mine = df[df["agent"].notna()].copy()
    inb, out = mine["direction"] == "inbound", mine["direction"] == "outbound"
    mine["inbound_answered"] = inb & mine["is_answered"]
    mine["inbound_unanswered"] = inb & ~mine["is_answered"]
    mine["outbound_calls"] = out
    mine["internal_calls"] = mine["direction"] == "internal"
    mine["missed"] = out & ~mine["is_answered"]
    mine["calls_handled"] = mine["inbound_answered"] | ~inb
    mine["answered_calls"] = mine["calls_handled"] & mine["is_answered"]
    mine["talk_seconds_sum"] = mine["talk"].where(mine["answered_calls"], 0.0)
    mine["max_talk_seconds"] = mine["talk"].where(mine["answered_calls"])
    handle = np.where(inb, (mine["ended_at"] - mine["answered_at"]).dt.total_seconds(), mine["duration"])
    mine["handle_seconds_sum"] = pd.Series(handle, index=mine.index).where(mine["calls_handled"], 0.0)
    g = mine.groupby("agent")
    counted = ["calls_handled", "inbound_answered", "inbound_unanswered", "outbound_calls", "internal_calls",
               "answered_calls", "missed", "talk_seconds_sum", "handle_seconds_sum"]
    expected = g[counted].sum()
    expected["days"] = g["local_date"].nunique()
    expected["max_talk_seconds"] = g["max_talk_seconds"].max()
    expected["average_talk_seconds"] = div(expected["talk_seconds_sum"], expected["answered_calls"])
    expected["average_handle_seconds"] = div(expected["handle_seconds_sum"], expected["calls_handled"])
    expected["outbound_answer_rate"] = div(expected["outbound_calls"] - expected["missed"], expected["outbound_calls"])
    got = shown("agent_performance").set_index("agent")
    assert list(got.index) == sorted(expected.index)
    same(got, expected)

    # --- call_detail: every raw call exactly once, in local time ----------------------------------
    got = shown("call_detail")
    expected = df.sort_values(["started_at", "pbx_call_id"]).reset_index(drop=True)
    assert got["pbx_call_id"].tolist() == expected["pbx_call_id"].tolist()
    assert got["started_local"].tolist() == expected["started_local"].tolist()
    assert got["utc_offset_minutes"].tolist() == expected["utc_offset_minutes"].tolist()
    assert got["date"].tolist() == expected["local_date"].tolist()
    pd.testing.assert_series_equal(got["wait_seconds"].astype(float), expected["wait"], check_names=False)
    pd.testing.assert_series_equal(got["talk_seconds"].astype(float), expected["talk"], check_names=False)
    pd.testing.assert_series_equal(got["duration_seconds"], expected["duration"], check_names=False)


def bin_of(wait: float, edges: list[int]) -> int:
    """The bin of a wait, the plain way: the first bin whose upper bound is >= the wait."""
    for index, upper in enumerate(edges[1:]):
        if wait <= upper:
            return edges[index]
    return edges[-1]


def binned(inbound: pd.DataFrame, edges: list[int], from_name: str, sums: bool) -> pd.DataFrame:
    """Per queue with inbound calls and bin: answered and abandoned by wait (the direct way)."""
    waited = inbound[inbound["is_answered"] | inbound["is_abandoned"]].copy()
    waited["waited"] = waited["wait"].where(waited["is_answered"], waited["duration"])
    waited["bin"] = [bin_of(w, edges) for w in waited["waited"]]
    waited["queue"] = label(waited["queue"])
    queues = sorted(set(label(inbound["queue"])))
    index = pd.MultiIndex.from_product([queues, edges], names=["queue", from_name])
    out = pd.DataFrame(index=index)
    for outcome, flag in (("answered", "is_answered"), ("abandoned", "is_abandoned")):
        rows = waited[waited[flag]]
        out[outcome] = rows.groupby(["queue", "bin"]).size().reindex(index).fillna(0)
        if sums:
            out[f"{outcome}_wait_seconds_sum"] = rows.groupby(["queue", "bin"])["waited"].sum().reindex(index).fillna(0)
    per_queue_days = inbound.assign(queue=label(inbound["queue"])).groupby("queue")["local_date"].nunique()
    out["days"] = [per_queue_days[q] for q, _ in out.index]
    return out


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scenario)
def test_trend_and_wait_reports_combined_equal_the_direct_period_computation(s: dict) -> None:
    frame, days, (start, end) = raw_calls(s)
    zone, threshold = s["place"][0], s["threshold"]
    calls = as_arrow(frame)
    df = derived(frame, zone)
    inbound = df[df["direction"] == "inbound"]

    def combined(name: str) -> pa.Table:
        report = get_report(name)
        table = period(report, calls, zone, days, service_level_seconds=threshold)
        assert table.schema.equals(report.period_schema)
        return table

    # --- daily_summary: one row per day, quiet days too; the day's length from a 15-minute grid -----
    table = combined("daily_summary")
    got = get_report("daily_summary").present(table).set_index("date")
    grid = pd.date_range(start, end, freq="15min", inclusive="left").tz_convert(zone)
    day_seconds = pd.Series(grid.date).value_counts().reindex(days) * 900
    expected = inbound_figures(inbound, "local_date", threshold).reindex(days)
    expected["calls"] = df.groupby("local_date").size().reindex(days)
    for direction in ("outbound", "internal"):
        expected[direction] = df[df["direction"] == direction].groupby("local_date").size().reindex(days)
    expected = with_rates(expected.fillna({"calls": 0, "outbound": 0, "internal": 0}))
    expected["day_seconds"] = day_seconds.to_numpy()
    assert list(got.index) == days and (got["service_level_seconds"] == threshold).all()
    same(got, expected)
    total = get_report("daily_summary").totals(table).iloc[0]
    assert total["offered"] == len(inbound) and total["day_seconds"] == (end - start).total_seconds()
    assert total["answered"] == inbound["is_answered"].sum()

    # --- wait_distribution, and its percentiles lie in the bin they name ---------------------------
    table = combined("wait_distribution")
    got = get_report("wait_distribution").present(table)
    got.index = pd.MultiIndex.from_arrays([label(got["queue"]), got["wait_from_seconds"]])
    expected = binned(inbound, [0, 5, 10, 20, 30, 60, 120, 300], "wait_from_seconds", sums=True)
    same(got.sort_index(), expected.sort_index())
    answered_waits = inbound[inbound["is_answered"]].assign(queue=label(inbound["queue"]))
    for row in speed_of_answer_percentiles(table, (50, 90)).to_dict("records"):
        waits = answered_waits["wait"] if row["all_queues"] else \
            answered_waits[answered_waits["queue"] == (row["queue"] if row["queue"] is not None else "<null>")]["wait"]
        rank = math.ceil(row["percentile"] * len(waits) / 100)
        true = sorted(waits)[rank - 1]
        assert row["rank"] == rank and row["answered"] == len(waits)
        assert row["bin_from_seconds"] <= true and (row["bin_from_seconds"] == 0 or true > row["bin_from_seconds"])
        if pd.isna(row["bin_to_seconds"]):
            assert math.isnan(row["estimate_seconds"])
        else:
            assert true <= row["bin_to_seconds"]
            assert row["bin_from_seconds"] <= row["estimate_seconds"] <= row["bin_to_seconds"]
            assert abs(row["estimate_seconds"] - true) <= row["bin_to_seconds"] - row["bin_from_seconds"]

    # --- abandonment_curve -------------------------------------------------------------------------
    got = get_report("abandonment_curve").present(combined("abandonment_curve"))
    got.index = pd.MultiIndex.from_arrays([label(got["queue"]), got["waited_from_seconds"]])
    expected = binned(inbound, [0, 10, 20, 30, 45, 60, 90, 120, 180, 240, 300, 600], "waited_from_seconds", sums=False)
    ended = expected["answered"] + expected["abandoned"]
    expected["still_waiting"] = ended[::-1].groupby(level=0).cumsum()[::-1]
    expected["abandon_rate"] = div(expected["abandoned"], expected["still_waiting"])
    same(got.sort_index(), expected.sort_index())
