"""Screening: which call rows may count in a client-day, and why the others may not.

Reports never see a row that could corrupt a day: :func:`screen_calls` keeps the clean rows and
counts every other one under the *first* reason it meets, in this order (:data:`REJECTION_REASONS`):

=============================== ==================================================================
``null_client_id``              a ``client_id`` column is present and this row's is null
``other_client``                a ``client_id`` column is present and it is not the day's client
``null_<column>``               pbx_call_id, direction, started_at, ended_at or disposition is null
``empty_pbx_call_id``           the call id is the empty string
``unknown_direction``           not inbound / outbound / internal / unknown (a direction value
                                that is not ours; ``unknown``, what an import could not tell, counts)
``unknown_disposition``         not ANSWERED / NO ANSWER / BUSY / FAILED / ABANDONED
``ends_before_start``           ended_at < started_at
``answered_outside_call``       answered_at before started_at or after ended_at
``answered_without_answer_time`` ANSWERED but no answered_at
``answer_time_but_not_answered`` an answered_at on a call whose disposition is not ANSWERED
``outside_day``                 started_at outside ``[window_start_utc, window_end_utc)``
``duplicate_call_id``           another valid row of the day has the same pbx_call_id
=============================== ==================================================================

Duplicates are looked for among the rows that passed every other check, so a broken copy never
displaces a good one. Of the copies, the one with the latest ``ingested_at`` is kept (the PBX's
latest word on the call) when that column exists, ties going to the first in input order.
The clean table keeps the input's columns and the input's row order.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from report_pipelines.domain.reports._calls import (
    REQUIRED_COLUMNS,
    count_reasons,
    epoch_us,
    problem_masks,
    remember_checked,
    view_calls,
    window_us,
)
from report_pipelines.domain.reports.base import DayContext

REJECTION_REASONS: tuple[str, ...] = (
    "null_client_id",
    "other_client",
    *(f"null_{name}" for name in REQUIRED_COLUMNS),
    "empty_pbx_call_id",
    "unknown_direction",
    "unknown_disposition",
    "ends_before_start",
    "answered_outside_call",
    "answered_without_answer_time",
    "answer_time_but_not_answered",
    "outside_day",
    "duplicate_call_id",
)


@dataclass(frozen=True)
class ScreenResult:
    """The rows that may count (``clean``) and how many were rejected, by reason (only reasons met)."""

    clean: pa.Table
    rejected: Mapping[str, int] = field(default_factory=dict)

    @property
    def rejected_total(self) -> int:
        return sum(self.rejected.values())


def screen_calls(calls: pa.Table, ctx: DayContext, window_start_utc: dt.datetime | None = None,
                 window_end_utc: dt.datetime | None = None, *, unique_ids: bool = False) -> ScreenResult:
    """Keep the rows of ``calls`` that may count in ``ctx``'s day; count the others by reason.

    The window defaults to ``ctx``'s local day ``[local midnight, next local midnight)`` in UTC.
    Vectorised: a handful of Arrow/NumPy passes, no Python loop per row. ``unique_ids``: the source
    guarantees one row per pbx_call_id (``call_events``' unique key on client and call id, the
    calls of one client): the duplicate search (a hash of every id) is skipped.
    """
    n = calls.num_rows
    window = window_us(ctx, window_start_utc, window_end_utc)
    view = view_calls(calls)
    masks = problem_masks(calls, ctx.client_id, window, view)
    code, rejected = count_reasons(masks, n)
    valid = np.flatnonzero(code == 0)
    duplicate = np.empty(0, dtype=np.int64) if unique_ids else _later_copies(calls, valid)
    if duplicate.size:
        rejected["duplicate_call_id"] = int(duplicate.size)
        valid = np.setdiff1d(valid, duplicate, assume_unique=True)
    assert set(rejected) <= set(REJECTION_REASONS), rejected
    clean = calls if valid.size == n else calls.take(pa.array(valid, type=pa.int64()))
    if window == window_us(ctx):  # the clean rows pass what prepare() checks: the reports reuse this view
        remember_checked(clean, ctx, view if valid.size == n else view.take(valid))
    return ScreenResult(clean=clean, rejected={r: rejected[r] for r in REJECTION_REASONS if r in rejected})


def _later_copies(calls: pa.Table, rows: np.ndarray) -> np.ndarray:
    """Positions (among ``rows``) of every copy of a pbx_call_id but the one kept."""
    if rows.size < 2:
        return np.empty(0, dtype=np.int64)
    every = rows.size == calls.num_rows  # no row rejected (the usual case): no copy of the ids
    ids = calls.column("pbx_call_id")
    ids = pc.dictionary_encode((ids if every else ids.take(pa.array(rows))).combine_chunks())
    codes = ids.indices.to_numpy(zero_copy_only=False).astype(np.int64)
    if len(ids.dictionary) == rows.size:
        return np.empty(0, dtype=np.int64)
    if "ingested_at" in calls.column_names and pa.types.is_timestamp(calls.schema.field("ingested_at").type):
        ingested_at = calls.column("ingested_at")
        ingested, known = epoch_us(ingested_at if every else ingested_at.take(pa.array(rows)))
        recency = np.where(known, ingested, np.iinfo(np.int64).min)
    else:
        recency = np.zeros(rows.size, dtype=np.int64)
    position = np.arange(rows.size)
    # Per id: latest ingested first, then first in input order; every row after the first is a copy.
    order = np.lexsort((position, -recency.astype(np.float64), codes))
    later = np.ones(rows.size, dtype=bool)
    later[0] = False
    later[1:] = codes[order][1:] == codes[order][:-1]
    return np.sort(rows[order[later]])
