"""Calls by how long they waited, in fixed bins of seconds (``wait_distribution``, ``abandonment_curve``).

A bin is written ``from-to`` in whole seconds and holds the waits ``w`` with ``from < w <= to``;
the first bin also holds a wait of exactly 0 (``0 <= w <= to``) and the last one is open
(``w > from``, ``to`` null). Upper bounds are *included* so that the bins agree with the service
level, whose threshold is included too: with a 20 s threshold, "answered within service level" is
exactly the bins up to ``10-20``.

A call's wait: answered inbound calls, ``answered_at - started_at`` (the speed of answer); abandoned
inbound calls, ``ended_at - started_at`` (how long the caller waited before hanging up). Other
inbound calls (missed: NO ANSWER, BUSY, FAILED) did not end their wait by answer or hang-up and are
not binned; outbound and internal calls are not queued.

Rows: every bin of every queue that had inbound calls that day (zeros included, so a stored
distribution is visibly complete), the queue-less inbound calls under a null queue (sorted last),
bins ascending.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import pyarrow as pa

from report_pipelines.domain.reports._calls import Calls
from report_pipelines.domain.reports._maths import count, ratio, regroup, total_seconds

_US = 1_000_000


def bin_fields(from_name: str, to_name: str) -> list[pa.Field]:
    return [pa.field("queue", pa.string()), pa.field(from_name, pa.int32()), pa.field(to_name, pa.int32())]


def bin_labels(lower: Sequence[int], upper: Sequence[int | None]) -> list[str]:
    """``"0-5"``, ``"5-10"`` ... ``"300+"`` for the bins' bounds."""
    return [f"{lo}+" if hi is None or pd.isna(hi) else f"{lo}-{int(hi)}" for lo, hi in zip(lower, upper, strict=True)]


def bin_index(wait_us: np.ndarray, edges: Sequence[int]) -> np.ndarray:
    """The bin of each wait (microseconds) for bins cut at ``edges`` (seconds, ascending, from 0)."""
    uppers = np.asarray(edges[1:], dtype=np.int64) * _US
    return np.searchsorted(uppers, wait_us, side="left")  # first upper >= wait: upper bound included


def binned_day(c: Calls, edges: Sequence[int], schema: pa.Schema, with_sums: bool) -> pa.Table:
    """The day table: per queue with inbound calls and bin, the answered and abandoned calls whose
    wait fell in the bin (and, ``with_sums``, the sum of those waits in seconds)."""
    inbound = np.flatnonzero(c.inbound)
    queue_code, queues = c.group_codes("queue", inbound)
    bins = len(edges)
    k = len(queues) * bins
    answered, abandoned = c.answered[inbound], c.abandoned[inbound]
    wait = np.where(answered, c.wait_us[inbound], c.held_us[inbound])  # answered: to the answer; else to hang-up
    group = queue_code * bins + bin_index(wait, edges)
    lower = np.tile(np.asarray(edges, dtype=np.int64), len(queues))
    upper = np.tile(np.asarray([*edges[1:], 0], dtype=np.int64), len(queues))
    names = schema.names
    columns = {
        "queue": queues.take(pa.array(np.repeat(np.arange(len(queues)), bins), type=pa.int64())),
        names[1]: pa.array(lower, type=pa.int32()),
        names[2]: pa.array(upper, type=pa.int32(), mask=lower == edges[-1]),
        "answered": count(group, answered, k),
        "abandoned": count(group, abandoned, k),
    }
    if with_sums:
        columns["answered_wait_seconds_sum"] = total_seconds(group, answered, wait, k)
        columns["abandoned_wait_seconds_sum"] = total_seconds(group, abandoned, wait, k)
    return pa.Table.from_pydict(columns, schema=schema)


def combine_bins(days: pa.Table, period_schema: pa.Schema, measures: Sequence[str]) -> pa.Table:
    """Bins re-aggregated over days: grouped by queue and bin bounds, measures added, ``days``
    counts the merged day rows. Bins cut differently (another version's edges) stay separate rows."""
    return regroup(days, period_schema, keys=period_schema.names[:3], sums=measures, counted="days")


def with_shares(frame: pd.DataFrame, from_name: str, to_name: str, measures: Sequence[str]) -> pd.DataFrame:
    """Add the bin's label (``wait_bucket``) and, per queue, each measure's share and running
    (cumulative) share: a ratio of counts, NaN when the queue has none of that measure."""
    frame.insert(3, "wait_bucket", bin_labels(frame[from_name].tolist(), frame[to_name].tolist()))
    key = frame["queue"].astype(object).where(frame["queue"].notna(), "\x00null")
    for measure in measures:
        total = frame.groupby(key, sort=False)[measure].transform("sum")
        running = frame.groupby(key, sort=False)[measure].cumsum()
        frame[f"{measure}_share"] = ratio(frame[measure], total)
        frame[f"{measure}_cumulative_share"] = ratio(running, total)
    return frame
