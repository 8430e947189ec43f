"""``abandonment_curve``: when callers who hang up do it, per queue, and how likely a caller still
waiting is to hang up next."""

from __future__ import annotations

from typing import ClassVar

import pandas as pd
import pyarrow as pa

from report_pipelines.domain.reports._calls import prepare
from report_pipelines.domain.reports._maths import ratio
from report_pipelines.domain.reports._wait_bins import bin_fields, binned_day, combine_bins, with_shares
from report_pipelines.domain.reports.base import DayContext, ReportDefinition

#: Bin edges in seconds: finer where most callers give up.
EDGES: tuple[int, ...] = (0, 10, 20, 30, 45, 60, 90, 120, 180, 240, 300, 600)
MEASURES = ("abandoned", "answered")
_KEYS = bin_fields("waited_from_seconds", "waited_to_seconds")
_MEASURES = [pa.field("abandoned", pa.int64()), pa.field("answered", pa.int64())]
DAY_SCHEMA = pa.schema([*_KEYS, *_MEASURES])
PERIOD_SCHEMA = pa.schema([*_KEYS, pa.field("days", pa.int64()), *_MEASURES])


class AbandonmentCurveReport(ReportDefinition):
    """Per queue and bin of waiting time: how many callers hung up (``abandoned``, waited =
    ended_at - started_at) and how many were answered (``answered``, waited = answered_at -
    started_at) after waiting that long.

    Bins (seconds, upper bound included, see ``_wait_bins``): ``0-10``, ``10-20``, ``20-30``,
    ``30-45``, ``45-60``, ``60-90``, ``90-120``, ``120-180``, ``180-240``, ``240-300``, ``300-600``,
    ``600+``. Keys: ``queue`` (null: no queue), ``waited_from_seconds``, ``waited_to_seconds`` (null
    for the open bin). Every bin of every queue that had inbound calls that day is a row. Missed
    inbound calls are in no bin. The answered counts are stored because they are the other way a
    wait ends: without them "of the callers still waiting after 60 s, how many hung up before 90 s"
    cannot be told.

    Period (:meth:`combine`): per queue and bin, counts added, ``days`` = day rows merged.
    """

    name: ClassVar[str] = "abandonment_curve"
    title: ClassVar[str] = "Abandonment curve"
    description: ClassVar[str] = "Per queue: abandoned calls by how long the caller waited before hanging up."
    schema: ClassVar[pa.Schema] = DAY_SCHEMA
    period_schema: ClassVar[pa.Schema] = PERIOD_SCHEMA

    def compute_day(self, calls: pa.Table, ctx: DayContext) -> pa.Table:
        return binned_day(prepare(calls, ctx), EDGES, self.schema, with_sums=False)

    def combine(self, days: pa.Table) -> pa.Table:
        return combine_bins(days, self.period_schema, MEASURES)

    def present(self, combined: pa.Table) -> pd.DataFrame:
        """Per queue and bin, plus (ratios of counts, NaN when the denominator is 0):

        * ``wait_bucket``: the bin's label (``"0-10"`` ... ``"600+"``);
        * ``abandoned_share`` / ``abandoned_cumulative_share``: of the queue's abandoned calls, the
          share that hung up in this bin / by its end (the abandonment curve);
        * ``still_waiting``: calls still waiting when the bin starts (answered or abandoned in this
          bin or a later one);
        * ``abandon_rate``: abandoned / still_waiting: of the callers still waiting at the bin's
          start, the share who hung up within it.
        """
        frame = with_shares(combined.to_pandas(), "waited_from_seconds", "waited_to_seconds", ("abandoned", "answered"))
        frame = frame.drop(columns=["answered_share", "answered_cumulative_share"])
        key = frame["queue"].astype(object).where(frame["queue"].notna(), "\x00null")
        ended = frame["abandoned"] + frame["answered"]
        frame["still_waiting"] = ended[::-1].groupby(key[::-1], sort=False).cumsum()[::-1].astype("int64")
        frame["abandon_rate"] = ratio(frame["abandoned"], frame["still_waiting"])
        return frame
