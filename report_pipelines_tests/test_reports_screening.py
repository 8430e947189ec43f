"""Screening: every bad row is counted under its reason, clean rows pass untouched, and another
client's rows never reach a report."""

from __future__ import annotations

import datetime as dt

import pyarrow as pa
import pytest

from report_pipelines.domain.errors import InvalidInput
from report_pipelines.domain.reports import REPORTS, DayContext
from report_pipelines.domain.reports.screening import REJECTION_REASONS, screen_calls
from report_pipelines_tests.reports_support import call, table

ZONE = "Europe/Lisbon"
DAY = dt.date(2024, 7, 1)  # WEST, UTC+1: the day is [2024-06-30 23:00, 2024-07-01 23:00) UTC
CTX = DayContext(client_id=7, timezone=ZONE, day=DAY)
D = "2024-07-01 "

GOOD = [
    call("g1", "inbound", "ANSWERED", D + "09:00:00", D + "09:05:00", D + "09:00:12", queue="support", agent="1001"),
    call("g2", "outbound", "NO ANSWER", D + "10:00:00", D + "10:00:30", agent="1002"),
    call("g3", "internal", "ANSWERED", D + "11:00:00", D + "11:01:00", D + "11:00:03", agent="1001"),
    # the first and the last instant of the local day
    call("g4", "inbound", "ABANDONED", "2024-06-30 23:00:00", "2024-06-30 23:00:40", queue="sales"),
    call("g5", "inbound", "NO ANSWER", "2024-07-01 22:59:59", "2024-07-02 00:00:30"),
]


def at(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text).replace(tzinfo=dt.UTC)


def bad_rows() -> dict[str, dict]:
    """One row per reason, each otherwise valid."""
    def base(pbx_call_id: str, **changes: object) -> dict:
        row = call(pbx_call_id, "inbound", "ANSWERED", D + "12:00:00", D + "12:03:00", D + "12:00:09",
                   queue="support", agent="1001")
        row.update(changes)
        return row

    return {
        "null_client_id": base("b0", client_id=None),
        # same call id as a good row: must neither appear nor displace the good one
        "other_client": base("g1", client_id=8, agent="9999"),
        "null_pbx_call_id": base(None),
        "null_direction": base("b2", direction=None),
        "null_started_at": base("b3", started_at=None),
        "null_ended_at": base("b4", ended_at=None),
        "null_disposition": base("b5", disposition=None),
        "empty_pbx_call_id": base(""),
        "unknown_direction": base("b6", direction="sideways"),
        "unknown_disposition": base("b7", disposition="answered"),  # our vocabulary is upper case
        "ends_before_start": base("b8", ended_at=at(D + "11:59:00"), answered_at=None, disposition="NO ANSWER"),
        "answered_outside_call": base("b9", answered_at=at(D + "12:04:00")),
        "answered_without_answer_time": base("b10", answered_at=None),
        "answer_time_but_not_answered": base("b11", disposition="ABANDONED"),
        "outside_day": base("b12", started_at=at("2024-06-30 22:59:59"), answered_at=None, disposition="BUSY"),
    }


def test_each_reason_is_counted_and_clean_rows_are_untouched() -> None:
    bad = bad_rows()
    assert set(bad) | {"duplicate_call_id"} == set(REJECTION_REASONS)
    duplicate = {**GOOD[1], "ingested_at": GOOD[1]["ingested_at"] - dt.timedelta(seconds=1)}  # an older copy
    rows = [GOOD[0], bad["null_client_id"], GOOD[1], *list(bad.values())[1:], GOOD[2], duplicate, GOOD[3], GOOD[4]]
    result = screen_calls(table(rows), CTX)
    assert result.rejected == {reason: 1 for reason in REJECTION_REASONS}
    assert result.rejected_total == len(REJECTION_REASONS)
    # the clean rows are exactly the good rows, in input order, every column as given
    assert result.clean.to_pylist() == table(GOOD).to_pylist()
    assert result.clean.schema.equals(table(GOOD).schema)


def test_another_clients_rows_never_appear_in_any_report() -> None:
    theirs = [{**row, "client_id": 8, "agent": "8888", "queue": "theirs", "pbx_call_id": f"t{i}"}
              for i, row in enumerate(GOOD)]
    result = screen_calls(table(GOOD + theirs), CTX)
    assert result.rejected == {"other_client": len(GOOD)}
    for report in REPORTS.values():
        out = report.compute_day(result.clean, CTX)
        text = str(out.to_pylist())
        assert "8888" not in text and "theirs" not in text and "'t0'" not in text, report.name
    detail = REPORTS["call_detail"].compute_day(result.clean, CTX)
    assert sorted(detail.column("pbx_call_id").to_pylist()) == ["g1", "g2", "g3", "g4", "g5"]
    # and a report handed them unscreened refuses rather than counts them
    with pytest.raises(InvalidInput, match="other_client: 5"):
        REPORTS["hourly_volume"].compute_day(table(GOOD + theirs), CTX)


@pytest.mark.parametrize("order", [(0, 1), (1, 0)])
def test_of_duplicates_the_latest_ingested_is_kept_whatever_the_order(order: tuple[int, int]) -> None:
    old = call("d", "inbound", "NO ANSWER", D + "09:00:00", D + "09:00:30", ingested=D + "09:01:00")
    new = call("d", "inbound", "ANSWERED", D + "09:00:00", D + "09:05:00", D + "09:00:10", ingested=D + "12:00:00")
    copies = [old, new]
    result = screen_calls(table([copies[i] for i in order] + GOOD[:1]), CTX)
    assert result.rejected == {"duplicate_call_id": 1}
    assert [(r["pbx_call_id"], r["disposition"]) for r in result.clean.to_pylist()] == [("d", "ANSWERED"), ("g1", "ANSWERED")]


def test_a_broken_copy_does_not_displace_a_good_one_and_ties_keep_the_first() -> None:
    broken = {**GOOD[0], "ended_at": None, "ingested_at": GOOD[0]["ingested_at"] + dt.timedelta(days=1)}
    result = screen_calls(table([broken, GOOD[0]]), CTX)
    assert result.rejected == {"null_ended_at": 1}
    assert result.clean.to_pylist() == table([GOOD[0]]).to_pylist()
    twin = {**GOOD[0], "agent": "1009"}  # same id, same ingest time: the first in input order stays
    result = screen_calls(table([GOOD[0], twin]), CTX)
    assert result.rejected == {"duplicate_call_id": 1}
    assert result.clean.column("agent").to_pylist() == ["1001"]


def test_an_explicit_window_and_a_table_without_owner_or_ingest_columns() -> None:
    calls = table(GOOD).drop_columns(["client_id", "ingested_at"])
    start = dt.datetime(2024, 7, 1, 9, 30, tzinfo=dt.UTC)
    end = dt.datetime(2024, 7, 1, 11, 0, tzinfo=dt.UTC)
    result = screen_calls(calls, CTX, start, end)
    assert result.clean.column("pbx_call_id").to_pylist() == ["g2"]  # g3 starts exactly at the (open) end
    assert result.rejected == {"outside_day": 4}
    with pytest.raises(InvalidInput, match="window_start_utc"):
        screen_calls(calls, CTX, start.replace(tzinfo=None), end)


def test_screening_refuses_tables_it_cannot_read() -> None:
    with pytest.raises(InvalidInput, match="'disposition' is missing"):
        screen_calls(table(GOOD).drop_columns(["disposition"]), CTX)
    naive = table(GOOD).set_column(7, "started_at", table(GOOD).column("started_at").cast(pa.timestamp("us")))
    with pytest.raises(InvalidInput, match="started_at: must be a time zone-aware timestamp"):
        screen_calls(naive, CTX)


def test_empty_input_screens_to_an_empty_table() -> None:
    result = screen_calls(table([]), CTX)
    assert result.clean.num_rows == 0 and result.rejected == {}


def test_the_reports_reuse_the_screenings_view_which_equals_a_fresh_one_and_is_checked_once(monkeypatch) -> None:
    """Screening hands its NumPy view of the clean rows to the reports (conformed and checked once per
    client-day): the view equals the one computed from the clean table itself, and a call table screening
    did not produce (or one screened over another window) is still conformed and checked."""
    import numpy as np

    from report_pipelines.domain.reports import _calls

    bad = bad_rows()
    rows = [GOOD[0], bad["null_client_id"], GOOD[1], bad["outside_day"], GOOD[2], GOOD[3], bad["unknown_disposition"], GOOD[4]]
    checks = []
    original = _calls._checked_view
    monkeypatch.setattr(_calls, "_checked_view", lambda calls, ctx: checks.append(calls) or original(calls, ctx))
    result = screen_calls(table(rows), CTX)
    reused = _calls.prepare(result.clean, CTX)
    assert checks == []  # no second conform-and-check
    fresh = _calls.view_calls(result.clean)
    assert reused.table.equals(fresh.table)
    for name in _calls._ARRAYS:
        assert np.array_equal(getattr(reused, name), getattr(fresh, name)), name
    for name in REPORTS:  # every report computes from it
        REPORTS[name].compute_day_from(result.clean, CTX, {})
    assert checks == []
    # a table screening did not produce is checked (and refused when dirty)
    with pytest.raises(InvalidInput, match="screened"):
        _calls.prepare(table(rows), CTX)
    assert len(checks) == 1
    # screened over a window that is not the context's own: the reports check for themselves
    wider = screen_calls(table(GOOD), CTX, at("2024-06-30 00:00:00"), at("2024-07-02 23:00:00"))
    _calls.prepare(wider.clean, CTX)
    assert len(checks) == 2


def test_a_source_with_unique_ids_skips_only_the_duplicate_search() -> None:
    bad = bad_rows()
    rows = [GOOD[0], bad["null_client_id"], GOOD[1], bad["outside_day"], GOOD[2], GOOD[3], GOOD[4]]
    plain, trusted = screen_calls(table(rows), CTX), screen_calls(table(rows), CTX, unique_ids=True)
    assert trusted.clean.equals(plain.clean) and trusted.rejected == plain.rejected
    copy = {**GOOD[1], "ingested_at": GOOD[1]["ingested_at"] - dt.timedelta(seconds=1)}
    assert screen_calls(table([*GOOD, copy]), CTX).rejected == {"duplicate_call_id": 1}  # the default looks
