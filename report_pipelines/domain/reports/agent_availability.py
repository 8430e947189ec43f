"""``agent_availability``: per agent per local day, how long they were logged in, paused (by
reason), talking, and how occupied their available time was; from the queue_log's agent sessions
and pauses plus the day's calls.

The sessions and pauses come from the imported queue_log (``queue_agent_sessions`` /
``queue_agent_pauses``; see :mod:`report_pipelines.domain.queue_log`), as a table of
:data:`~report_pipelines.domain.queue_log.AGENT_INTERVAL_SCHEMA` holding every interval of the
client that overlaps (or touches) the local day. It is this report's second input: the report
declares it in :attr:`AgentAvailabilityReport.extra_inputs` and the extractor reads it only when a
report that needs it is computed, so the other reports' path is unchanged.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import ClassVar

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from report_pipelines.domain.errors import InvalidInput
from report_pipelines.domain.queue_log import AGENT_INTERVAL_SCHEMA
from report_pipelines.domain.reports._calls import epoch_us, prepare, window_us
from report_pipelines.domain.reports._maths import conform_days, ratio, totals_frame
from report_pipelines.domain.reports.base import DayContext, ReportDefinition

SECONDS = ("logged_in_seconds", "paused_seconds", "paused_in_session_seconds", "reason_paused_seconds",
           "talk_seconds_sum")
COUNTS = ("sessions", "pauses", "reason_pauses", "open_intervals", "answered_calls")
_KEYS = [pa.field("agent", pa.string()), pa.field("pause_reason", pa.string())]
_MEASURES = [*[pa.field(n, pa.float64()) for n in SECONDS], *[pa.field(n, pa.int64()) for n in COUNTS]]
DAY_SCHEMA = pa.schema([*_KEYS, *_MEASURES])
PERIOD_SCHEMA = pa.schema([*_KEYS, pa.field("days", pa.int64()), *_MEASURES])
#: The ``pause_reason`` of a pause the queue_log gave no reason for (null is the agent's own row; not
#: ``""``, which a CSV could not tell from null).
NO_REASON = "(no reason)"

Pieces = list[tuple[int, int]]


def union(intervals: Iterable[tuple[int, int]]) -> Pieces:
    """Intervals merged where they overlap or touch, in order: an agent in two queues at once is
    logged in once, a PAUSEALL written with a PAUSE per queue is one pause."""
    merged: Pieces = []
    for start, end in sorted(intervals):
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        else:
            merged.append((start, end))
    return merged


def intersect(a: Pieces, b: Pieces) -> Pieces:
    """The overlap of two merged, ordered piece lists."""
    out: Pieces = []
    i = j = 0
    while i < len(a) and j < len(b):
        start, end = max(a[i][0], b[j][0]), min(a[i][1], b[j][1])
        if start < end:
            out.append((start, end))
        if a[i][1] < b[j][1]:
            i += 1
        else:
            j += 1
    return out


def measure(pieces: Pieces, low: int, high: int) -> int:
    """Microseconds of ``pieces`` inside ``[low, high)``."""
    return sum(max(0, min(end, high) - max(start, low)) for start, end in pieces)


def started(pieces: Pieces, low: int, high: int) -> int:
    """How many pieces begin inside ``[low, high)`` (a piece is counted on the day it begins)."""
    return sum(1 for start, _ in pieces if low <= start < high)


def conform_intervals(intervals: pa.Table | None) -> pa.Table:
    """``intervals`` as :data:`AGENT_INTERVAL_SCHEMA` (none: an empty table)."""
    if intervals is None:
        return AGENT_INTERVAL_SCHEMA.empty_table()
    try:
        table = conform_days(intervals, list(AGENT_INTERVAL_SCHEMA))
    except InvalidInput as exc:
        raise InvalidInput("agent_intervals", str(exc).split(": ", 1)[-1].replace("day tables", "agent intervals")) from None
    if table.num_rows and not pc.all(pc.is_in(table.column("kind"), value_set=pa.array(["session", "pause"]))).as_py():
        raise InvalidInput("agent_intervals", "kind must be 'session' or 'pause'")
    for name in ("agent", "started_at"):
        if table.column(name).null_count:
            raise InvalidInput("agent_intervals", f"{name} may not be null")
    return table


class AgentAvailabilityReport(ReportDefinition):
    """Per agent and local day: one *agent row* (``pause_reason`` null) and one *reason row* per
    pause reason the agent used that day (``pause_reason`` = the reason, ``"(no reason)"`` when the
    queue_log gave none). Every column adds up over every row: an agent row holds the agent's figures and
    zeros in the ``reason_*`` columns, a reason row holds only ``reason_paused_seconds`` and
    ``reason_pauses``, so ``SUM(paused_seconds)`` is the paused time and ``SUM(reason_paused_seconds)
    GROUP BY pause_reason`` the paused time by reason, in any tool.

    Agent row (seconds are float64, summed in integer microseconds):

    * ``logged_in_seconds``: inside the local day, the time covered by the agent's sessions
      (ADDMEMBER..REMOVEMEMBER in any queue, AGENTLOGIN..AGENTLOGOFF), the union: an agent in three
      queues at once is logged in once. ``sessions``: pieces of that union that began this day.
    * ``paused_seconds`` / ``pauses``: the same for pauses (PAUSE..UNPAUSE in any queue,
      PAUSEALL..UNPAUSEALL), whatever the reason: a global pause, which Asterisk writes as a
      PAUSEALL plus a PAUSE per queue, is one pause.
    * ``paused_in_session_seconds``: paused time that fell inside logged-in time (static members
      pause without any session), so ``available = logged_in - paused_in_session`` is never negative.
    * ``talk_seconds_sum`` / ``answered_calls``: from the calls (as ``agent_performance``): answered
      inbound calls the agent took plus answered outbound and internal calls the agent placed,
      ended_at - answered_at; a call counts on the local day it started. ``answered_at`` of a queue
      call is the queue_log's CONNECT (joined at import), so this is CONNECT..COMPLETE* talk.
    * ``open_intervals``: sessions and pauses that began this day with no end in the queue_log yet
      (still logged in or paused when the file was written): counted here, but in no time.

    Reason row: ``reason_paused_seconds`` / ``reason_pauses``: the union of the agent's pauses with
    that reason, inside the day / begun this day.

    Every interval is cut at the client's local midnights (``zoneinfo``; 23- and 25-hour days
    included): a session from 22:00 to 02:00 gives 2 h to each day and counts as a session of
    the first. An agent appears on a day when any figure is not zero: sessions without calls and
    calls without sessions both do.

    Period (:meth:`combine`): grouped by agent and reason, everything added, ``days`` = day rows merged.
    """

    name: ClassVar[str] = "agent_availability"
    title: ClassVar[str] = "Agent availability"
    description: ClassVar[str] = "Per agent: logged-in time, paused time by reason, talk time and occupancy (queue_log)."
    schema: ClassVar[pa.Schema] = DAY_SCHEMA
    period_schema: ClassVar[pa.Schema] = PERIOD_SCHEMA
    extra_inputs: ClassVar[tuple[str, ...]] = ("agent_intervals",)

    def compute_day(self, calls: pa.Table, ctx: DayContext, agent_intervals: pa.Table | None = None) -> pa.Table:
        low, high = window_us(ctx)
        talk = self._talk(calls, ctx)
        intervals = conform_intervals(agent_intervals)
        starts, _ = epoch_us(intervals.column("started_at"))
        ends, has_end = epoch_us(intervals.column("ended_at"))
        by_agent: dict[str, dict[str, list]] = {}
        for kind, agent, reason, start, end, closed in zip(
                intervals.column("kind").to_pylist(), intervals.column("agent").to_pylist(),
                intervals.column("reason").to_pylist(), starts.tolist(), ends.tolist(), has_end.tolist(), strict=True):
            mine = by_agent.setdefault(agent, {"session": [], "pause": [], "open": []})
            if not closed:
                mine["open"].append(start)
            elif end >= start:
                mine[kind].append((start, end, NO_REASON if reason is None else reason))
        rows: list[dict] = []
        zeros = dict.fromkeys((*SECONDS, *COUNTS), 0)
        for agent in sorted(set(by_agent) | set(talk)):
            mine = by_agent.get(agent)
            if mine is None:  # calls only, no queue_log interval: nothing to measure (most agents without a queue_log)
                calls_answered, talk_us = talk[agent]
                if calls_answered or talk_us:
                    rows.append({**zeros, "agent": agent, "pause_reason": None, "talk_seconds_sum": talk_us,
                                 "answered_calls": calls_answered})
                continue
            sessions = union((s, e) for s, e, _ in mine["session"])
            pauses = union((s, e) for s, e, _ in mine["pause"])
            calls_answered, talk_us = talk.get(agent, (0, 0))
            row = {"agent": agent, "pause_reason": None,
                   "logged_in_seconds": measure(sessions, low, high), "paused_seconds": measure(pauses, low, high),
                   "paused_in_session_seconds": measure(intersect(pauses, sessions), low, high),
                   "reason_paused_seconds": 0, "talk_seconds_sum": talk_us,
                   "sessions": started(sessions, low, high), "pauses": started(pauses, low, high), "reason_pauses": 0,
                   "open_intervals": sum(1 for s in mine["open"] if low <= s < high), "answered_calls": calls_answered}
            if not any(row[n] for n in (*SECONDS, *COUNTS)):
                continue
            rows.append(row)
            for reason in sorted({r for _, _, r in mine["pause"]}):
                pieces = union((s, e) for s, e, r in mine["pause"] if r == reason)
                seconds, count = measure(pieces, low, high), started(pieces, low, high)
                if seconds or count:
                    rows.append({**zeros, "agent": agent, "pause_reason": reason,
                                 "reason_paused_seconds": seconds, "reason_pauses": count})
        for row in rows:
            for name in SECONDS:
                row[name] = row[name] / 1_000_000
        return pa.Table.from_pylist(rows, schema=self.schema)

    @staticmethod
    def _talk(calls: pa.Table, ctx: DayContext) -> dict[str, tuple[int, int]]:
        """Agent -> (answered calls handled, their talk in microseconds), as agent_performance counts
        them (vectorised: one bincount per figure, no loop per call)."""
        c = prepare(calls, ctx)
        agent = c.table.column("agent")
        counted = c.answered & (c.inbound | c.outbound | c.internal) & ~agent.is_null().to_numpy(zero_copy_only=False)
        rows = np.flatnonzero(counted)
        if not rows.size:
            return {}
        group, agents = c.group_codes("agent", rows)
        answered = np.bincount(group, minlength=len(agents))
        talk = np.bincount(group, weights=c.talk_us[rows].astype(np.float64), minlength=len(agents))  # exact below 2**53
        return {name: (int(n), int(us)) for name, n, us in zip(agents.to_pylist(), answered, talk, strict=True)}

    def combine(self, days: pa.Table) -> pa.Table:
        stored = [self.period_schema.field(n) for n in self.period_schema.names if n != "days"]
        table = conform_days(days, stored)
        grouped = table.group_by(["agent", "pause_reason"], use_threads=False).aggregate(
            [(n, "sum") for n in (*SECONDS, *COUNTS)] + [([], "count_all")])
        names = {f"{n}_sum": n for n in (*SECONDS, *COUNTS)} | {"count_all": "days"}
        grouped = grouped.rename_columns([names.get(n, n) for n in grouped.column_names])
        grouped = grouped.select(self.period_schema.names).cast(self.period_schema)
        if grouped.num_rows == 0:
            return grouped
        # The agent's own row (pause_reason null) first, then its reasons.
        reason_row = pc.is_valid(grouped.column("pause_reason"))
        keyed = grouped.append_column("_reason_row", reason_row)
        order = pc.sort_indices(keyed, sort_keys=[("agent", "ascending"), ("_reason_row", "ascending"),
                                                  ("pause_reason", "ascending")])
        return grouped.take(order)

    def present(self, combined: pa.Table) -> pd.DataFrame:
        """The period per agent and reason, plus (sums over sums, NaN when the denominator is 0):

        * agent rows: ``available_seconds`` = logged_in - paused_in_session; ``occupancy`` =
          talk_seconds_sum / available_seconds (talk outside a session, such as an outbound call
          while paused, can take it above 1); ``paused_share`` = paused_in_session / logged_in;
          ``average_talk_seconds`` = talk_seconds_sum / answered_calls;
        * reason rows: ``reason_share`` = reason_paused_seconds / the agent's paused_seconds.
        """
        frame = combined.to_pandas()
        own = frame["pause_reason"].isna().to_numpy()
        available = frame["logged_in_seconds"] - frame["paused_in_session_seconds"]
        frame["available_seconds"] = np.where(own, available, np.nan)
        frame["occupancy"] = np.where(own, ratio(frame["talk_seconds_sum"], available), np.nan)
        frame["paused_share"] = np.where(own, ratio(frame["paused_in_session_seconds"], frame["logged_in_seconds"]), np.nan)
        frame["average_talk_seconds"] = np.where(own, ratio(frame["talk_seconds_sum"], frame["answered_calls"]), np.nan)
        agent_paused = frame["agent"].map(frame.loc[own].set_index("agent")["paused_seconds"]) if own.any() else np.nan
        frame["reason_share"] = np.where(~own, ratio(frame["reason_paused_seconds"], agent_paused), np.nan)
        return frame

    def totals(self, combined: pa.Table) -> pd.DataFrame:
        """Every agent's figures added into one presented row (an agent row: occupancy over the
        whole team's available time)."""
        total = totals_frame(combined, sums=(*SECONDS, *COUNTS))
        total = total.set_column(total.schema.get_field_index("pause_reason"), "pause_reason",
                                 pa.nulls(1, pa.string()))
        return self.present(total)
