"""``wait_distribution``: answered and abandoned calls per queue by how long they waited.

The period's percentiles of speed of answer (p50, p90) come from the bins
(:func:`speed_of_answer_percentiles`): exact to the bin, interpolated inside it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

import numpy as np
import pandas as pd
import pyarrow as pa

from report_pipelines.domain.reports._calls import prepare
from report_pipelines.domain.reports._maths import ratio
from report_pipelines.domain.reports._wait_bins import bin_fields, bin_labels, binned_day, combine_bins, with_shares
from report_pipelines.domain.reports.base import DayContext, ReportDefinition

#: Bin edges in seconds: 0-5, 5-10, 10-20, 20-30, 30-60, 60-120, 120-300, 300+.
EDGES: tuple[int, ...] = (0, 5, 10, 20, 30, 60, 120, 300)
MEASURES = ("answered", "abandoned", "answered_wait_seconds_sum", "abandoned_wait_seconds_sum")
_KEYS = bin_fields("wait_from_seconds", "wait_to_seconds")
_MEASURES = [pa.field("answered", pa.int64()), pa.field("abandoned", pa.int64()),
             pa.field("answered_wait_seconds_sum", pa.float64()), pa.field("abandoned_wait_seconds_sum", pa.float64())]
DAY_SCHEMA = pa.schema([*_KEYS, *_MEASURES])
PERIOD_SCHEMA = pa.schema([*_KEYS, pa.field("days", pa.int64()), *_MEASURES])


class WaitDistributionReport(ReportDefinition):
    """Per queue and wait bin: inbound calls answered, and abandoned, after waiting that long.

    Bins (seconds, upper bound included, see ``_wait_bins``): ``0-5`` (0 <= w <= 5), ``5-10``,
    ``10-20``, ``20-30``, ``30-60``, ``60-120``, ``120-300``, ``300+`` (w > 300). Keys: ``queue``
    (null: inbound calls without a queue), ``wait_from_seconds``, ``wait_to_seconds`` (null for the
    open last bin). Measures: ``answered`` (wait = answered_at - started_at), ``abandoned`` (wait =
    ended_at - started_at), ``answered_wait_seconds_sum`` and ``abandoned_wait_seconds_sum`` (the
    waits of those calls, so a bin's average wait is exact too). Every bin of every queue that had
    inbound calls that day is a row, zeros included. Missed inbound calls (NO ANSWER, BUSY,
    FAILED) are in no bin.

    With the default 20 s threshold, ``answered`` of the bins up to ``10-20`` adds up to
    ``queue_performance``'s ``answered_within_sl``.

    Period (:meth:`combine`): per queue and bin, counts and sums added, ``days`` = day rows merged.
    """

    name: ClassVar[str] = "wait_distribution"
    title: ClassVar[str] = "Wait distribution"
    description: ClassVar[str] = "Per queue: answered and abandoned calls by wait-time bucket, and speed-of-answer percentiles."
    schema: ClassVar[pa.Schema] = DAY_SCHEMA
    period_schema: ClassVar[pa.Schema] = PERIOD_SCHEMA

    def compute_day(self, calls: pa.Table, ctx: DayContext) -> pa.Table:
        return binned_day(prepare(calls, ctx), EDGES, self.schema, with_sums=True)

    def combine(self, days: pa.Table) -> pa.Table:
        return combine_bins(days, self.period_schema, MEASURES)

    def present(self, combined: pa.Table) -> pd.DataFrame:
        """Per queue and bin, plus ``wait_bucket`` (``"0-5"`` ... ``"300+"``), each count's share of
        the queue's total and its cumulative share (``answered_cumulative_share`` of ``10-20`` is
        the share answered within 20 s), and ``average_answer_wait_seconds`` /
        ``average_abandon_wait_seconds`` in the bin (sum over count)."""
        frame = with_shares(combined.to_pandas(), "wait_from_seconds", "wait_to_seconds", ("answered", "abandoned"))
        frame["average_answer_wait_seconds"] = ratio(frame["answered_wait_seconds_sum"], frame["answered"])
        frame["average_abandon_wait_seconds"] = ratio(frame["abandoned_wait_seconds_sum"], frame["abandoned"])
        return frame


def speed_of_answer_percentiles(combined: pa.Table, percents: Sequence[int] = (50, 90)) -> pd.DataFrame:
    """Percentiles of the speed of answer, per queue and for all queues together (``queue`` null and
    ``all_queues`` true), from a ``wait_distribution`` period table.

    **How exact.** The p-th percentile is the nearest-rank one: the wait of the r-th fastest answered
    call, r = ceil(p/100 x answered). Bins count calls exactly, so the bin holding the r-th call is
    known exactly: the true percentile lies within ``[bin_from_seconds, bin_to_seconds]`` (for the
    first bin 0 <= w <= 5; otherwise from < w <= to) and that interval is printed. Inside the bin
    the calls' waits are unknown; ``estimate_seconds`` interpolates linearly, as if the bin's calls
    were spread evenly over it: ``from + (to - from) x (r - calls in earlier bins) / calls in the
    bin``. So the estimate is off by less than the bin's width: under 5 s below 10 s, 10 s up to 30 s,
    30 s up to 60 s, 60 s up to 120 s, 180 s up to 300 s. In the open ``300+`` bin there is no upper
    bound: ``estimate_seconds`` is null and the percentile is shown as "over 300 s".

    Columns: ``queue``, ``all_queues``, ``percentile``, ``answered`` (calls ranked), ``rank``,
    ``bin_from_seconds``, ``bin_to_seconds`` (``<NA>``: open bin), ``estimate_seconds`` (NaN in the open
    bin); no rows for a
    queue with no answered call.
    """
    frame = combined.to_pandas()
    parts = []
    if len(frame):
        queues = frame["queue"].astype(object).where(frame["queue"].notna(), None)
        for queue in dict.fromkeys(queues):  # in the period table's order: sorted, null last
            parts.append((queue, False, _bins(frame[queues.map(lambda q, wanted=queue: q == wanted)])))
        parts.append((None, True, _bins(frame)))
    records = []
    for queue, everything, bins in parts:
        total = int(bins["answered"].sum())
        if not total:
            continue
        for percent in percents:
            records.append({"queue": None if everything else queue, "all_queues": everything, "percentile": percent,
                            "answered": total, **_percentile(bins, total, percent)})
    columns = ["queue", "all_queues", "percentile", "answered", "rank", "bin_from_seconds", "bin_to_seconds",
               "estimate_seconds"]
    frame = pd.DataFrame.from_records(records, columns=columns)
    frame["queue"] = pd.Series([r["queue"] for r in records], dtype=object, index=frame.index)
    return frame.astype({"all_queues": bool, "percentile": "int64", "answered": "int64", "rank": "int64",
                         "bin_from_seconds": "int64", "bin_to_seconds": "Int64", "estimate_seconds": "float64"})


def _bins(rows: pd.DataFrame) -> pd.DataFrame:
    bins = rows.groupby(["wait_from_seconds"], dropna=False).agg(
        answered=("answered", "sum"), wait_to_seconds=("wait_to_seconds", "first")).reset_index()
    return bins.sort_values("wait_from_seconds").reset_index(drop=True)


def _percentile(bins: pd.DataFrame, total: int, percent: int) -> dict:
    if not 0 < percent <= 100:
        raise ValueError(f"a percentile is 1-100, not {percent!r}")
    rank = -(-percent * total // 100)  # ceil, in integers: no float rounding at exact ranks
    before = np.concatenate([[0], np.cumsum(bins["answered"].to_numpy())[:-1]])
    at = int(np.searchsorted(np.cumsum(bins["answered"].to_numpy()), rank, side="left"))
    lower, upper = int(bins["wait_from_seconds"].iloc[at]), bins["wait_to_seconds"].iloc[at]
    inside = int(bins["answered"].iloc[at])
    if pd.isna(upper):
        estimate, upper = None, None
    else:
        upper = int(upper)
        estimate = lower + (upper - lower) * (rank - int(before[at])) / inside
    return {"rank": rank, "bin_from_seconds": lower, "bin_to_seconds": upper, "estimate_seconds": estimate}


def describe_percentile(row: dict | pd.Series) -> str:
    """``"p90 ≈ 24 s (20-30 s)"``, or ``"p90 over 300 s"`` in the open bin."""
    label = bin_labels([row["bin_from_seconds"]], [row["bin_to_seconds"]])[0]
    if pd.isna(row["estimate_seconds"]):
        return f"p{row['percentile']} over {row['bin_from_seconds']} s"
    return f"p{row['percentile']} ≈ {row['estimate_seconds']:.0f} s ({label} s)"
