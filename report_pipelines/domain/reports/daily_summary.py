"""``daily_summary``: one row per client-local day: the trend a week or month report charts."""

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
    count,
    inbound_measures,
    inbound_rates,
    regroup,
    totals_frame,
    unrated_if_mixed,
)
from report_pipelines.domain.reports.base import DayContext, ReportDefinition

COUNTS = ("calls", *INBOUND_COUNTS, "outbound", "internal")
KEYS = ("service_level_seconds", "day_seconds")
_MEASURES = [*[pa.field(n, pa.int64()) for n in COUNTS], *[pa.field(n, pa.float64()) for n in (*INBOUND_SUMS, *INBOUND_MAXIMA)]]
DAY_SCHEMA = pa.schema([pa.field("service_level_seconds", pa.int32()), pa.field("day_seconds", pa.int64()), *_MEASURES])
PERIOD_SCHEMA = pa.schema([pa.field("date", pa.date32()), *DAY_SCHEMA])


class DailySummaryReport(ReportDefinition):
    """Exactly one row per client-local day, calls or not (a quiet day is a row of zeros, so a
    week's trend has no holes).

    * ``day_seconds``: how long the local day is: 86,400, or 82,800 / 90,000 on a spring-forward /
      fall-back day (84,600 / 88,200 for Lord Howe's half-hour shift); every call of the day counts
      once, the repeated hour's included.
    * ``calls``: every call of the day (inbound + outbound + internal); ``outbound``, ``internal``.
    * The inbound measures of ``hourly_volume`` and ``queue_performance`` (one definition,
      ``_maths.inbound_measures``): ``offered``, ``answered``, ``abandoned``, ``missed``,
      ``answered_within_sl``, ``abandoned_within_sl``, ``wait_seconds_sum``,
      ``abandoned_wait_seconds_sum``, ``talk_seconds_sum``, ``wait_seconds_max``; so a day's
      ``offered`` is the sum of its ``hourly_volume`` hours and of its ``queue_performance`` queues.

    Period (:meth:`combine`): the days stay separate (one row per ``date``, ascending), with their
    threshold and length; :meth:`totals` adds them up.
    """

    name: ClassVar[str] = "daily_summary"
    title: ClassVar[str] = "Daily summary"
    description: ClassVar[str] = "One row per local day: offered, answered, abandoned, service level, speed of answer, talk time."
    schema: ClassVar[pa.Schema] = DAY_SCHEMA
    period_schema: ClassVar[pa.Schema] = PERIOD_SCHEMA

    def compute_day(self, calls: pa.Table, ctx: DayContext) -> pa.Table:
        c = prepare(calls, ctx)
        start, end = ctx.window_utc
        group = np.zeros(c.size, dtype=np.int64)
        every = np.ones(c.size, dtype=bool)
        columns = {
            "service_level_seconds": pa.array([ctx.service_level_seconds], type=pa.int32()),
            "day_seconds": pa.array([int((end - start).total_seconds())], type=pa.int64()),
            "calls": count(group, every, 1),
            **inbound_measures(c, group, 1, ctx.service_level_seconds),
            "outbound": count(group, c.outbound, 1),
            "internal": count(group, c.internal, 1),
        }
        return pa.Table.from_pydict(columns, schema=self.schema)

    def combine(self, days: pa.Table) -> pa.Table:
        return regroup(days, self.period_schema, keys=["date", *KEYS], sums=COUNTS + INBOUND_SUMS, maxima=INBOUND_MAXIMA)

    def present(self, combined: pa.Table) -> pd.DataFrame:
        """Per day, with :func:`~report_pipelines.domain.reports._maths.inbound_rates` (sum over sum)."""
        return inbound_rates(combined)

    def totals(self, combined: pa.Table) -> pd.DataFrame:
        """The whole period as one presented row: counts and sums added over the days, the maximum
        of maxima, then the rates (sum over sum). ``date`` is null; ``service_level_seconds`` is the
        threshold when every day had the same one, else null (and the service level, which cannot
        add counts of different thresholds, NaN); ``day_seconds`` is the period's length."""
        total = totals_frame(combined, sums=(*COUNTS, *INBOUND_SUMS, "day_seconds"), maxima=INBOUND_MAXIMA)
        return unrated_if_mixed(self.present(total), combined)
