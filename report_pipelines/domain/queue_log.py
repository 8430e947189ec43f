"""Asterisk's ``queue_log``: the source of truth for queues. Pure Python.

One event a line, pipe-separated: ``epoch|callid|queue|agent|EVENT|data1|data2|...`` (epoch seconds,
UTC; ``callid`` is the caller channel's ``uniqueid``, ``NONE`` for member events; ``agent`` is the
member's name or interface, ``NONE`` when there is none). The events read, with their data:

================== =================================== ==============================================
``ENTERQUEUE``     url, callerid, position             the caller entered the queue: an attempt starts
``RINGNOANSWER``   ring time (ms)                      a member's phone rang out
``CONNECT``        holdtime, member uniqueid, ringtime a member took the call (wait = connect - enter)
``COMPLETEAGENT``  holdtime, calltime, origposition    the member hung up
``COMPLETECALLER`` holdtime, calltime, origposition    the caller hung up
``TRANSFER``       extension, context, holdtime, calltime the member transferred it (also BLIND/ATTENDED)
``ABANDON``        position, origposition, waittime    the caller hung up waiting: ABANDONED
``EXITWITHTIMEOUT`` position, origposition, waittime   the queue gave up: missed (NO ANSWER)
``EXITEMPTY``      position, origposition, waittime    no member could take it: missed
``EXITWITHKEY``    key, position, origposition, waittime the caller left with a key: missed
``ADDMEMBER`` / ``REMOVEMEMBER``                       a member's session in a queue starts / ends
``PAUSE`` / ``UNPAUSE`` (``PAUSEALL``/``UNPAUSEALL``)   reason                   a member's pause
``AGENTLOGIN`` / ``AGENTLOGOFF`` channel (, logged-in seconds)  an agent's login (app_agent_pool), in no queue
================== =================================== ==============================================

Other events (``QUEUESTART``, ``CONFIGRELOAD``, ``DID``...) are counted and skipped.

Sessions (ADDMEMBER..REMOVEMEMBER per queue, AGENTLOGIN..AGENTLOGOFF in queue ``NONE``) and pauses
(PAUSE..UNPAUSE per queue, PAUSEALL..UNPAUSEALL in queue ``NONE``) are intervals per (queue, agent);
an interval whose end is not in the file stays open (``ended_at`` None). An end whose start is not in
the file (the log was rotated while the agent was logged in or paused) is kept in
:attr:`QueueLog.orphan_ends`, so the import can close the interval it stored from an earlier file.

:func:`join_calls` joins the attempts to collapsed CDR calls by call id (``callid`` = the call's
``linkedid`` or the ``uniqueid`` of one of its legs). For a call with attempts: the attempt that
connected (the first), else the last one, gives the queue, the queue entry (``queued_at``), the
agent and the answer (``answered_at`` = CONNECT); the outcome gives the disposition of a call no
agent took: ABANDON -> ABANDONED, EXITWITHTIMEOUT/EXITEMPTY/EXITWITHKEY -> NO ANSWER (missed). A
call the queue did not connect but an agent answered afterwards (a ring group after a timeout)
keeps the CDR's answer. The queue_log's instants are kept inside the CDR call (clamped; a clamp of
more than 5 seconds is counted, it means the two clocks or zones disagree).

The import runs these rules in columns (:mod:`report_pipelines.domain.queue_log_columns`: group-bys
over the whole file and one ``searchsorted`` per block of calls); :class:`QueueLog`, :func:`join_calls`
and :func:`attempts_by_call` here, event by event and call by call, are the reference it is compared
with (``report_pipelines_tests/test_queue_log_columns.py``, ``benchmarks/bench_cdr_import.py``).
:func:`parse_event` reads every line the columns cannot read plainly.
"""

from __future__ import annotations

import datetime as dt
import re
from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from report_pipelines.domain.calls import MAX_TEXT, Disposition
from report_pipelines.domain.errors import InvalidInput

if TYPE_CHECKING:
    from report_pipelines.domain.queue_log_columns import QueueLogTables

UTC = dt.UTC
ATTEMPT_EVENTS = frozenset({"ENTERQUEUE", "RINGNOANSWER", "CONNECT", "COMPLETEAGENT", "COMPLETECALLER", "TRANSFER",
                            "BLINDTRANSFER", "ATTENDEDTRANSFER", "ABANDON", "EXITWITHTIMEOUT", "EXITEMPTY", "EXITWITHKEY"})
MEMBER_EVENTS = frozenset({"ADDMEMBER", "REMOVEMEMBER", "PAUSE", "UNPAUSE", "PAUSEALL", "UNPAUSEALL",
                           "AGENTLOGIN", "AGENTLOGOFF"})
#: Member events in no queue: their intervals are stored with queue ``NONE``.
_QUEUELESS = frozenset({"PAUSEALL", "UNPAUSEALL", "AGENTLOGIN", "AGENTLOGOFF"})
_SESSION_STARTS, _SESSION_ENDS = frozenset({"ADDMEMBER", "AGENTLOGIN"}), frozenset({"REMOVEMEMBER", "AGENTLOGOFF"})
_PAUSE_STARTS = frozenset({"PAUSE", "PAUSEALL"})
#: Outcome of an attempt -> the disposition of a call no agent took.
OUTCOME_DISPOSITIONS = {"abandoned": Disposition.ABANDONED, "timeout": Disposition.NO_ANSWER,
                        "empty": Disposition.NO_ANSWER, "key": Disposition.NO_ANSWER}
_EXITS = {"ABANDON": "abandoned", "EXITWITHTIMEOUT": "timeout", "EXITEMPTY": "empty", "EXITWITHKEY": "key"}
_ENDS = frozenset({"COMPLETEAGENT", "COMPLETECALLER", "TRANSFER", "BLINDTRANSFER", "ATTENDEDTRANSFER"})
_EPOCH = re.compile(r"\d{9,10}(?:\.\d{1,6})?")
_EVENT = re.compile(r"[A-Z_]+")
_EPOCH0 = dt.datetime(1970, 1, 1, tzinfo=UTC)
_EPOCH_MIN, _EPOCH_MAX = 946_684_800, 4_102_444_800
CLAMP_TOLERANCE = dt.timedelta(seconds=5)


@dataclass(frozen=True, slots=True)
class QueueEvent:
    line: int
    at: dt.datetime
    callid: str
    queue: str
    agent: str
    event: str
    data: tuple[str, ...]


def parse_event(line: int, text: str) -> QueueEvent:
    """One queue_log line, or :class:`InvalidInput` naming the field."""
    parts = text.split("|")
    if len(parts) < 5:
        raise InvalidInput("queue_log", f"{len(parts)} fields (a queue_log line has epoch|callid|queue|agent|EVENT|data...)")
    epoch, callid, queue, agent, event = parts[0].strip(), parts[1], parts[2], parts[3], parts[4].strip()
    seconds = int(epoch) if epoch.isdigit() else float(epoch) if _EPOCH.fullmatch(epoch) else -1
    if not _EPOCH_MIN <= seconds < _EPOCH_MAX:
        raise InvalidInput("epoch", f"{epoch!r} is not epoch seconds (like 1709993702)")
    if not _EVENT.fullmatch(event):
        raise InvalidInput("event", f"{event!r} is not a queue_log event name")
    if len(callid) > MAX_TEXT or len(queue) > MAX_TEXT or len(agent) > MAX_TEXT:
        name = next(n for n, v in (("callid", callid), ("queue", queue), ("agent", agent)) if len(v) > MAX_TEXT)
        raise InvalidInput(name, f"longer than {MAX_TEXT} characters")
    at = _EPOCH0 + dt.timedelta(seconds=seconds)
    return QueueEvent(line, at, callid.strip(), queue.strip(), agent.strip(), event, tuple(parts[5:]))


def member_agent(agent: str) -> str | None:
    """The agent of a queue_log member field: ``SIP/201``, ``PJSIP/201``, ``Local/201@from-queue/n``
    -> ``201``; a member name (``Alice``) stays; ``NONE`` or empty -> None."""
    agent = agent.strip()
    if not agent or agent.upper() == "NONE":
        return None
    tech, slash, rest = agent.partition("/")
    if slash and tech and rest:
        endpoint = rest.split("@", 1)[0] if tech.upper() == "LOCAL" else rest
        return endpoint or agent
    return agent


#: A hold or talk time above this (a year) is not a call's: read as unknown, like a negative one.
MAX_SECONDS = 366 * 86_400.0


def _seconds(data: tuple[str, ...], index: int) -> float | None:
    """A queue_log seconds field (holdtime, calltime...), or None when it is missing, negative, not a
    number or not finite (``inf``, ``nan``, ``1e300``: a corrupt line must not stop the import)."""
    try:
        value = float(data[index])
    except (IndexError, ValueError):
        return None
    return value if 0 <= value <= MAX_SECONDS else None


@dataclass(slots=True)
class QueueAttempt:
    """One caller's stay in one queue."""

    callid: str
    queue: str
    entered_at: dt.datetime
    first_line: int
    connected_at: dt.datetime | None = None
    ended_at: dt.datetime | None = None
    agent: str | None = None
    outcome: str = "open"  # answered, abandoned, timeout, empty, key; open = no outcome in the file
    ring_attempts: int = 0
    caller: str | None = None
    pbx_call_id: str | None = None


@dataclass(slots=True)
class AgentInterval:
    """A member's session in a queue (ADDMEMBER..REMOVEMEMBER) or a pause (PAUSE..UNPAUSE)."""

    queue: str
    agent: str
    started_at: dt.datetime
    ended_at: dt.datetime | None = None
    reason: str | None = None


#: The agent intervals a report reads (``kind``: ``session`` or ``pause``), one table per client.
AGENT_INTERVAL_SCHEMA = pa.schema([
    pa.field("kind", pa.string(), nullable=False),
    pa.field("queue", pa.string(), nullable=False),
    pa.field("agent", pa.string(), nullable=False),
    pa.field("started_at", pa.timestamp("us", tz="UTC"), nullable=False),
    pa.field("ended_at", pa.timestamp("us", tz="UTC")),
    pa.field("reason", pa.string()),
])


@dataclass(frozen=True, slots=True)
class OrphanEnd:
    """The end of a session or pause whose start is not in the file (``kind``: session or pause)."""

    kind: str
    queue: str
    agent: str
    at: dt.datetime


@dataclass
class QueueLog:
    """What a queue_log file said, built event by event (:meth:`add`)."""

    attempts: list[QueueAttempt] = field(default_factory=list)
    sessions: list[AgentInterval] = field(default_factory=list)
    pauses: list[AgentInterval] = field(default_factory=list)
    orphan_ends: list[OrphanEnd] = field(default_factory=list)
    events: Counter[str] = field(default_factory=Counter)
    skipped: Counter[str] = field(default_factory=Counter)
    _open: dict[tuple[str, str], QueueAttempt] = field(default_factory=dict)
    _sessions: dict[tuple[str, str], AgentInterval] = field(default_factory=dict)
    _pauses: dict[tuple[str, str], AgentInterval] = field(default_factory=dict)

    def add(self, e: QueueEvent) -> None:
        self.events[e.event] += 1
        if e.event in ATTEMPT_EVENTS:
            self._attempt_event(e)
        elif e.event in MEMBER_EVENTS:
            self._member_event(e)
        else:
            self.skipped[e.event] += 1

    def _attempt(self, e: QueueEvent, entered: dt.datetime) -> QueueAttempt:
        key = (e.callid, e.queue)
        attempt = self._open.get(key)
        if attempt is None:
            attempt = self._open[key] = QueueAttempt(e.callid, e.queue, entered, e.line)
            self.attempts.append(attempt)
        return attempt

    def _attempt_event(self, e: QueueEvent) -> None:
        if e.event == "ENTERQUEUE":
            self._open.pop((e.callid, e.queue), None)
            attempt = self._attempt(e, e.at)
            attempt.caller = (e.data[1] if len(e.data) > 1 else "") or None
            return
        if e.event == "CONNECT":
            hold = _seconds(e.data, 0)
            attempt = self._attempt(e, e.at - dt.timedelta(seconds=hold or 0))
            attempt.connected_at, attempt.agent, attempt.outcome = e.at, member_agent(e.agent), "answered"
            return
        if e.event in _EXITS:
            wait = _seconds(e.data, 3 if e.event == "EXITWITHKEY" else 2)
            attempt = self._attempt(e, e.at - dt.timedelta(seconds=wait or 0))
            attempt.ended_at, attempt.outcome = e.at, _EXITS[e.event]
            self._open.pop((e.callid, e.queue), None)
            return
        attempt = self._attempt(e, e.at)
        if e.event == "RINGNOANSWER":
            attempt.ring_attempts += 1
        elif e.event in _ENDS:
            attempt.ended_at = e.at
            if attempt.connected_at is None:  # the CONNECT was before the file began
                attempt.connected_at, attempt.agent, attempt.outcome = attempt.entered_at, member_agent(e.agent), "answered"
            self._open.pop((e.callid, e.queue), None)

    def _member_event(self, e: QueueEvent) -> None:
        agent = member_agent(e.agent)
        if agent is None:
            self.skipped[e.event] += 1
            return
        queue = "NONE" if e.event in _QUEUELESS else e.queue or "NONE"
        key = (queue, agent)
        if e.event in _SESSION_STARTS:
            if key not in self._sessions:
                self._sessions[key] = interval = AgentInterval(queue, agent, e.at)
                self.sessions.append(interval)
        elif e.event in _SESSION_ENDS:
            interval = self._sessions.pop(key, None)
            if interval is not None:
                interval.ended_at = e.at
            else:
                self.orphan_ends.append(OrphanEnd("session", queue, agent, e.at))
        elif e.event in _PAUSE_STARTS:
            if key not in self._pauses:
                reason = (e.data[0] if e.data else "") or None
                self._pauses[key] = interval = AgentInterval(queue, agent, e.at, reason=reason)
                self.pauses.append(interval)
        else:
            interval = self._pauses.pop(key, None)
            if interval is not None:
                interval.ended_at = e.at
            else:
                self.orphan_ends.append(OrphanEnd("pause", queue, agent, e.at))

    def tables(self) -> QueueLogTables:
        """The same as :func:`~report_pipelines.domain.queue_log_columns.build_queue_log` gives."""
        from report_pipelines.domain.queue_log_columns import ATTEMPT_SCHEMA, QueueLogTables

        attempts = pa.table({name: [getattr(a, name) for a in self.attempts] for name in ATTEMPT_SCHEMA.names},
                            schema=ATTEMPT_SCHEMA)
        return QueueLogTables(attempts, list(self.sessions), list(self.pauses), list(self.orphan_ends),
                              Counter(self.events), Counter(self.skipped))

    def by_callid(self) -> dict[str, list[QueueAttempt]]:
        found: dict[str, list[QueueAttempt]] = {}
        for attempt in self.attempts:
            found.setdefault(attempt.callid, []).append(attempt)
        return found


@dataclass
class JoinStats:
    joined: int = 0  # calls that had queue_log attempts
    clamped: int = 0  # queue_log instants moved by more than CLAMP_TOLERANCE to fit the CDR call
    outcomes: Counter[str] = field(default_factory=Counter)


def _chosen(attempts: list[QueueAttempt]) -> QueueAttempt:
    connected = [a for a in attempts if a.connected_at is not None]
    if connected:
        return min(connected, key=lambda a: (a.connected_at, a.first_line))
    return max(attempts, key=lambda a: (a.entered_at, a.first_line))


def join_calls(calls: pa.Table, attempts_of: dict[str, list[QueueAttempt]], stats: JoinStats) -> pa.Table:
    """``calls`` (the collapsed-calls table) with queue facts from the attempts of each call
    (``attempts_of``: call id -> its attempts, found by the caller); see the module docstring.
    Each attempt joined gets its ``pbx_call_id``."""
    if not attempts_of or calls.num_rows == 0:
        return calls
    ids = calls.column("pbx_call_id").to_pylist()
    rows = [i for i, call_id in enumerate(ids) if call_id in attempts_of]
    if not rows:
        return calls
    take = pa.array(rows, type=pa.int64())
    sub = calls.take(take).select(["started_at", "ended_at", "answered_at", "disposition", "queue", "agent", "queued_at"]).to_pylist()
    columns = {name: calls.column(name).to_pylist() for name in ("queue", "agent", "answered_at", "disposition", "queued_at")}
    for row, current in zip(rows, sub, strict=False):
        attempts = attempts_of[ids[row]]
        for a in attempts:
            a.pbx_call_id = ids[row]
        chosen = _chosen(attempts)
        stats.joined += 1
        stats.outcomes[chosen.outcome] += 1
        start, end = current["started_at"], current["ended_at"]

        def inside(instant: dt.datetime, low: dt.datetime, high: dt.datetime) -> dt.datetime:
            fitted = min(max(instant, low), high)
            if abs(fitted - instant) > CLAMP_TOLERANCE:
                stats.clamped += 1
            return fitted

        columns["queue"][row] = chosen.queue
        answered_at = current["answered_at"]
        if chosen.connected_at is not None:
            answered_at = inside(chosen.connected_at, start, end)
            columns["agent"][row] = chosen.agent or current["agent"]
            columns["disposition"][row] = Disposition.ANSWERED.value
        elif answered_at is None and chosen.outcome in OUTCOME_DISPOSITIONS:
            columns["disposition"][row] = OUTCOME_DISPOSITIONS[chosen.outcome].value
            columns["agent"][row] = None
        columns["answered_at"][row] = answered_at
        columns["queued_at"][row] = inside(chosen.entered_at, start, answered_at or end)
    for name, values in columns.items():
        index = calls.schema.get_field_index(name)
        calls = calls.set_column(index, calls.schema.field(name), pa.array(values, type=calls.schema.field(name).type))
    return calls


class AttemptIndex:
    """The queue_log's attempts by ``callid``, with the ids as one Arrow array (built once)."""

    def __init__(self, log: QueueLog) -> None:
        self.by_callid = log.by_callid()
        self.keys = pa.array(list(self.by_callid), type=pa.string())

    def __bool__(self) -> bool:
        return bool(self.by_callid)


def attempts_by_call(legs_call_ids: pa.Array, legs_uniqueids: pa.Array, index: AttemptIndex
                     ) -> dict[str, list[QueueAttempt]]:
    """Call id -> the attempts whose queue_log ``callid`` is the call's id or one of its legs' uniqueids."""
    if not index:
        return {}
    by_callid, keys = index.by_callid, index.keys
    found: dict[str, list[QueueAttempt]] = {}
    seen: dict[str, set[str]] = {}
    for column in (legs_call_ids, legs_uniqueids):
        hits = np.flatnonzero(pc.fill_null(pc.is_in(column, value_set=keys), False).to_numpy(zero_copy_only=False))
        if not hits.size:
            continue
        index = pa.array(hits, type=pa.int64())
        for call_id, callid in zip(legs_call_ids.take(index).to_pylist(), column.take(index).to_pylist(), strict=False):
            if callid not in seen.setdefault(call_id, set()):
                seen[call_id].add(callid)
                found.setdefault(call_id, []).extend(by_callid[callid])
    return found
