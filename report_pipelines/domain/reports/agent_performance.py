"""``agent_performance``: what each agent handled, talked and spent on calls."""

from __future__ import annotations

from typing import ClassVar

import numpy as np
import pandas as pd
import pyarrow as pa

from report_pipelines.domain.reports._calls import prepare
from report_pipelines.domain.reports._maths import (
    count,
    max_seconds,
    ratio,
    regroup,
    total_seconds,
    totals_frame,
)
from report_pipelines.domain.reports.base import DayContext, ReportDefinition

COUNTS = ("calls_handled", "inbound_answered", "inbound_unanswered", "outbound_calls", "internal_calls",
          "answered_calls", "missed")
SUMS = ("talk_seconds_sum", "handle_seconds_sum")
MAXIMA = ("max_talk_seconds",)

_MEASURES = [*[pa.field(name, pa.int64()) for name in COUNTS], *[pa.field(name, pa.float64()) for name in (*SUMS, *MAXIMA)]]
DAY_SCHEMA = pa.schema([("agent", pa.string()), *_MEASURES])
PERIOD_SCHEMA = pa.schema([("agent", pa.string()), ("days", pa.int64()), *_MEASURES])


class AgentPerformanceReport(ReportDefinition):
    """One row per agent (the ``agent`` column: who took an inbound call, who placed an outbound or
    internal one) that appears on at least one call that day; calls without an agent are not here.

    * ``inbound_answered``: inbound ANSWERED calls the agent took.
    * ``inbound_unanswered``: inbound calls logged against the agent that were not answered
      (rang the agent's phone and rang out); not handled, shown so they are not lost.
    * ``outbound_calls`` / ``internal_calls``: calls the agent placed, whatever their outcome.
    * ``calls_handled`` = inbound_answered + outbound_calls + internal_calls.
    * ``answered_calls``: handled calls that had a conversation (inbound answered, outbound and
      internal ANSWERED): the denominator of average talk.
    * ``missed``: outbound calls the agent placed that were not answered (NO ANSWER, BUSY, FAILED,
      or any other non-ANSWERED disposition), so outbound answered = outbound_calls - missed.
    * ``talk_seconds_sum`` / ``max_talk_seconds``: ended_at - answered_at over ``answered_calls``
      (max null when none).
    * ``handle_seconds_sum``: time the agent spent on handled calls. Inbound: answered_at -> ended_at
      (the caller's queue wait is not the agent's time); outbound and internal: started_at ->
      ended_at (dialling and ring plus talk, answered or not: the agent was busy placing the call).
      The CDR has no wrap-up time, so none is counted.

    Period (:meth:`combine`): grouped by agent, counts and sums added, max of maxima, ``days`` = how
    many day rows were merged.
    """

    name: ClassVar[str] = "agent_performance"
    title: ClassVar[str] = "Agent performance"
    description: ClassVar[str] = "Per agent: calls handled, talk and handle time, missed outbound calls."
    schema: ClassVar[pa.Schema] = DAY_SCHEMA
    period_schema: ClassVar[pa.Schema] = PERIOD_SCHEMA

    def compute_day(self, calls: pa.Table, ctx: DayContext) -> pa.Table:
        c = prepare(calls, ctx)
        # Calls of unknown direction are neither taken nor placed by the agent: not counted here.
        rows = np.flatnonzero(~c.table.column("agent").is_null().to_numpy() & ~c.unknown)
        group, agents = c.group_codes("agent", rows)
        k = len(agents)
        inbound, outbound, internal = c.inbound[rows], c.outbound[rows], c.internal[rows]
        answered = c.answered[rows]
        start, end, answer = c.start_us[rows], c.end_us[rows], c.answer_us[rows]
        talk = c.talk_us[rows]
        inbound_answered = inbound & answered
        placed = outbound | internal
        handled = inbound_answered | placed
        handle = np.where(inbound, end - answer, end - start)
        columns = {
            "agent": agents,
            "calls_handled": count(group, handled, k),
            "inbound_answered": count(group, inbound_answered, k),
            "inbound_unanswered": count(group, inbound & ~answered, k),
            "outbound_calls": count(group, outbound, k),
            "internal_calls": count(group, internal, k),
            "answered_calls": count(group, handled & answered, k),
            "missed": count(group, outbound & ~answered, k),
            "talk_seconds_sum": total_seconds(group, handled & answered, talk, k),
            "handle_seconds_sum": total_seconds(group, handled, handle, k),
            "max_talk_seconds": max_seconds(group, handled & answered, talk, k),
        }
        return pa.Table.from_pydict(columns, schema=self.schema)

    def combine(self, days: pa.Table) -> pa.Table:
        return regroup(days, self.period_schema, keys=["agent"], sums=[*COUNTS, *SUMS], maxima=MAXIMA, counted="days")

    def present(self, combined: pa.Table) -> pd.DataFrame:
        """The period per agent, plus (each a sum over a sum, NaN when the denominator is 0):

        * ``average_talk_seconds`` = talk_seconds_sum / answered_calls
        * ``average_handle_seconds`` = handle_seconds_sum / calls_handled
        * ``outbound_answer_rate`` = (outbound_calls - missed) / outbound_calls
        """
        frame = combined.to_pandas()
        frame["average_talk_seconds"] = ratio(frame["talk_seconds_sum"], frame["answered_calls"])
        frame["average_handle_seconds"] = ratio(frame["handle_seconds_sum"], frame["calls_handled"])
        frame["outbound_answer_rate"] = ratio(frame["outbound_calls"] - frame["missed"], frame["outbound_calls"])
        return frame

    def totals(self, combined: pa.Table) -> pd.DataFrame:
        """The period's rows added up into one presented row (see ``ReportDefinition.totals``)."""
        return self.present(totals_frame(combined, sums=(*COUNTS, *SUMS), maxima=MAXIMA))
