"""``call_detail``: one row per call in the client's local time (the CDR export clients ask for)."""

from __future__ import annotations

from typing import ClassVar

import numpy as np
import pandas as pd
import pyarrow as pa

from report_pipelines.domain.reports._calls import prepare, seconds
from report_pipelines.domain.reports._maths import conform_days, sort_table
from report_pipelines.domain.reports.base import INSTANT, DayContext, ReportDefinition
from report_pipelines.domain.reports.local_time import day_clock


class CallDetailReport(ReportDefinition):
    """One row per call, sorted by ``started_at`` then ``pbx_call_id``.

    * ``started_local``: the local wall clock at the start, text ``YYYY-MM-DD HH:MM:SS`` (seconds,
      sub-second part dropped). Text, not a naive timestamp, so no tool re-reads it in its own zone;
      in a fall-back hour two calls may show the same text, ``utc_offset_minutes`` (local - UTC,
      e.g. -240 for EDT, -300 for EST, +630 for Lord Howe standard time) tells them apart.
    * ``wait_seconds`` = answered_at - wait start (queue wait for inbound, ring time for outbound and
      internal; the wait starts at ``queued_at``, the queue entry, when the PBX's queue_log said it,
      else at ``started_at``), ``talk_seconds`` = ended_at - answered_at; both null when the call
      was not answered.
      ``duration_seconds`` = ended_at - started_at, always set.

    The period table is the day tables concatenated (with their ``date`` column, the local start
    date), sorted by ``started_at``, ``pbx_call_id``, ``date``.
    """

    name: ClassVar[str] = "call_detail"
    title: ClassVar[str] = "Call detail"
    description: ClassVar[str] = "Every call of the period, one row each, with local start time, waits and durations."
    schema: ClassVar[pa.Schema] = pa.schema(
        [
            ("pbx_call_id", pa.string()),
            ("direction", pa.string()),
            ("queue", pa.string()),
            ("agent", pa.string()),
            ("caller", pa.string()),
            ("callee", pa.string()),
            ("started_at", INSTANT),
            ("started_local", pa.string()),
            ("utc_offset_minutes", pa.int32()),
            ("answered_at", INSTANT),
            ("ended_at", INSTANT),
            ("wait_seconds", pa.float64()),
            ("talk_seconds", pa.float64()),
            ("duration_seconds", pa.float64()),
            ("disposition", pa.string()),
        ]
    )
    period_schema: ClassVar[pa.Schema] = schema.append(pa.field("date", pa.date32()))

    def compute_day(self, calls: pa.Table, ctx: DayContext) -> pa.Table:
        c = prepare(calls, ctx)
        clock = day_clock(ctx.timezone, ctx.day)
        offset_s = clock.offsets_s(c.start_us)
        local = pa.array(np.floor_divide(c.start_us, 1_000_000) + offset_s, type=pa.int64())
        no_answer = ~c.has_answer
        t = c.table
        table = pa.Table.from_arrays(
            [
                t.column("pbx_call_id"),
                t.column("direction"),
                t.column("queue"),
                t.column("agent"),
                t.column("caller"),
                t.column("callee"),
                t.column("started_at"),
                local.cast(pa.timestamp("s")).cast(pa.string()),
                pa.array(offset_s // 60, type=pa.int32()),
                t.column("answered_at"),
                t.column("ended_at"),
                pa.array(seconds(c.wait_us), type=pa.float64(), mask=no_answer),
                pa.array(seconds(c.talk_us), type=pa.float64(), mask=no_answer),
                pa.array(seconds(c.end_us - c.start_us), type=pa.float64()),
                t.column("disposition"),
            ],
            schema=self.schema,
        )
        return sort_table(table, ["started_at", "pbx_call_id"])

    def combine(self, days: pa.Table) -> pa.Table:
        return sort_table(conform_days(days, list(self.period_schema)), ["started_at", "pbx_call_id", "date"])

    def present(self, combined: pa.Table) -> pd.DataFrame:
        """The period table as a DataFrame (instants stay aware UTC)."""
        return combined.to_pandas()
