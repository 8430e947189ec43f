"""``queue_performance``: inbound traffic and service level per queue."""

from __future__ import annotations

from typing import ClassVar

import numpy as np
import pandas as pd
import pyarrow as pa

from report_pipelines.domain.reports._calls import prepare
from report_pipelines.domain.reports._maths import (
    INBOUND_COUNTS,
    INBOUND_MAXIMA,
    INBOUND_SUMS,
    inbound_measures,
    inbound_rates,
    regroup,
    totals_frame,
    unrated_if_mixed,
)
from report_pipelines.domain.reports.base import DayContext, ReportDefinition

COUNTS = INBOUND_COUNTS
SUMS = INBOUND_SUMS
MAXIMA = INBOUND_MAXIMA
KEYS = ("queue", "service_level_seconds")

_MEASURES = [*[pa.field(name, pa.int64()) for name in COUNTS], *[pa.field(name, pa.float64()) for name in (*SUMS, *MAXIMA)]]
DAY_SCHEMA = pa.schema([("queue", pa.string()), ("service_level_seconds", pa.int32()), *_MEASURES])
PERIOD_SCHEMA = pa.schema([("queue", pa.string()), ("service_level_seconds", pa.int32()), ("days", pa.int64()), *_MEASURES])


class QueuePerformanceReport(ReportDefinition):
    """One row per queue that had inbound calls that day; outbound and internal calls are not queued.

    Inbound calls without a queue (straight to an extension, or refused before queueing: after-hours
    NO ANSWER) form one row whose ``queue`` is **null** (not a made-up name such as "(none)", which
    could clash with a real queue); it sorts last.

    Counts and sums are the inbound definitions of ``hourly_volume``: ``offered`` = inbound calls,
    ``answered``/``abandoned`` = ANSWERED/ABANDONED, ``missed`` = NO ANSWER/BUSY/FAILED,
    ``answered_within_sl`` = answered with wait <= threshold, ``abandoned_within_sl`` (short
    abandons) = abandoned with (ended_at - wait start) <= threshold, ``wait_seconds_sum``/``_max``
    over the answered (max null when none), ``abandoned_wait_seconds_sum`` over the abandoned,
    ``talk_seconds_sum`` over the answered. ``service_level_seconds`` is the threshold used.

    Period (:meth:`combine`): grouped by ``queue`` **and** ``service_level_seconds``: when a client
    changed its threshold inside the period the queue keeps one row per threshold, because counts
    "within 20 s" and "within 30 s" cannot be added. ``days`` = how many day rows were merged.
    """

    name: ClassVar[str] = "queue_performance"
    title: ClassVar[str] = "Queue performance"
    description: ClassVar[str] = "Per queue: offered, answered, abandoned, service level, speed of answer."
    schema: ClassVar[pa.Schema] = DAY_SCHEMA
    period_schema: ClassVar[pa.Schema] = PERIOD_SCHEMA

    def compute_day(self, calls: pa.Table, ctx: DayContext) -> pa.Table:
        c = prepare(calls, ctx)
        inbound = np.flatnonzero(c.inbound)
        group, queues = c.group_codes("queue", inbound)
        k = len(queues)
        columns = {
            "queue": queues,
            "service_level_seconds": pa.array(np.full(k, ctx.service_level_seconds), type=pa.int32()),
            **inbound_measures(c, group, k, ctx.service_level_seconds, rows=inbound),
        }
        return pa.Table.from_pydict(columns, schema=self.schema)

    def combine(self, days: pa.Table) -> pa.Table:
        return regroup(days, self.period_schema, keys=KEYS, sums=[*COUNTS, *SUMS], maxima=MAXIMA, counted="days")

    def present(self, combined: pa.Table) -> pd.DataFrame:
        """The period per queue with :func:`~report_pipelines.domain.reports._maths.inbound_rates`
        (answer, abandon and missed rates, service level, average speed of answer, average talk and
        abandon wait: each a sum over a sum)."""
        return inbound_rates(combined)

    def totals(self, combined: pa.Table) -> pd.DataFrame:
        """The period's rows added up into one presented row (see ``ReportDefinition.totals``)."""
        return unrated_if_mixed(self.present(totals_frame(combined, sums=(*COUNTS, *SUMS), maxima=MAXIMA)), combined)
