"""The queue_log in columns: what :class:`~report_pipelines.domain.queue_log.QueueLog` builds event by
event and :func:`~report_pipelines.domain.queue_log.join_calls` joins call by call, done with Arrow and
NumPy group-bys over the whole file (issue 14: the per-event and per-call Python loops made an import
with a queue_log 5k rows/s).

The rules are those of :mod:`report_pipelines.domain.queue_log` (its docstring says them; its classes
stay as the reference the tests compare with, table for table):

* **Attempts.** The attempt events of one (callid, queue), in line order, fall into attempts: an
  attempt starts at the key's first event, at an ENTERQUEUE, and after an event that closed the
  previous one (an exit: ABANDON, EXITWITHTIMEOUT, EXITEMPTY, EXITWITHKEY; an end: COMPLETEAGENT,
  COMPLETECALLER, a TRANSFER). Its entry is its first event's instant (less the hold or wait that a
  CONNECT or an exit says, when the ENTERQUEUE was before the file), its answer the last CONNECT (an
  end without one: the entry), its outcome the closing exit, else ``answered`` when connected, else
  ``open``.
* **Sessions and pauses.** Per (queue, agent), a start opens an interval when none is open (a start
  while one is open is ignored), an end closes the open one, or is an orphan end when none is.
* **The join** (:class:`AttemptJoin`): the attempts are sorted once by ``callid`` (fixed-width bytes,
  so each block of calls is matched with one ``searchsorted``); a call's attempts are those whose
  ``callid`` is its id or a leg's ``uniqueid``; the chosen one per call is a lexicographic sort.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from report_pipelines.domain.calls import Disposition
from report_pipelines.domain.queue_log import (
    _ENDS,
    _EPOCH0,
    _EXITS,
    _QUEUELESS,
    ATTEMPT_EVENTS,
    CLAMP_TOLERANCE,
    MEMBER_EVENTS,
    OUTCOME_DISPOSITIONS,
    AgentInterval,
    JoinStats,
    OrphanEnd,
    _seconds,
    member_agent,
)

INSTANT = pa.timestamp("us", tz="UTC")
#: The parsed events, one row a line (``at`` in microseconds since the epoch, UTC; ``d0``..``d3`` the
#: first four data fields as written, null when the line has fewer).
EVENT_SCHEMA = pa.schema([("line", pa.int64()), ("at", pa.int64()), ("callid", pa.string()), ("queue", pa.string()),
                          ("agent", pa.string()), ("event", pa.string()), ("d0", pa.string()), ("d1", pa.string()),
                          ("d2", pa.string()), ("d3", pa.string())])
#: The attempts (one caller's stay in one queue), in the order the file started them.
ATTEMPT_SCHEMA = pa.schema([("callid", pa.string()), ("queue", pa.string()), ("entered_at", INSTANT),
                            ("first_line", pa.int64()), ("connected_at", INSTANT), ("ended_at", INSTANT),
                            ("agent", pa.string()), ("outcome", pa.string()), ("ring_attempts", pa.int64()),
                            ("caller", pa.string()), ("pbx_call_id", pa.string())])
#: The data fields the rules read, by event (the others need not be kept): a CONNECT's holdtime, a
#: pause's reason, an ENTERQUEUE's caller, an exit's wait.
DATA_READ = {"d0": ("CONNECT", "PAUSE", "PAUSEALL"), "d1": ("ENTERQUEUE",),
             "d2": ("ABANDON", "EXITWITHTIMEOUT", "EXITEMPTY"), "d3": ("EXITWITHKEY",)}
_US = dt.timedelta(microseconds=1)
_ENTER, _CONNECT, _EXIT, _RING, _END = range(5)
_NO = np.iinfo(np.int64).max


@dataclass
class QueueLogTables:
    """What a queue_log file said: the attempts as a table (:data:`ATTEMPT_SCHEMA`), the sessions,
    pauses and orphan ends (few) as objects, and the events counted."""

    attempts: pa.Table
    sessions: list[AgentInterval] = field(default_factory=list)
    pauses: list[AgentInterval] = field(default_factory=list)
    orphan_ends: list[OrphanEnd] = field(default_factory=list)
    events: Counter[str] = field(default_factory=Counter)
    skipped: Counter[str] = field(default_factory=Counter)


def event_rows(events: list) -> pa.Table:
    """:class:`~report_pipelines.domain.queue_log.QueueEvent` objects as :data:`EVENT_SCHEMA` rows."""
    data = [(e.data + (None,) * 4)[:4] for e in events]
    return pa.table({"line": [e.line for e in events], "at": [(e.at - _EPOCH0) // _US for e in events],
                     "callid": [e.callid for e in events], "queue": [e.queue for e in events],
                     "agent": [e.agent for e in events], "event": [e.event for e in events],
                     **{f"d{i}": [d[i] for d in data] for i in range(4)}}, schema=EVENT_SCHEMA)


def _per_value(values: pa.Array, fn, kind: pa.DataType) -> pa.Array:
    """``fn`` of each value, computed once per distinct value (agents and holdtimes repeat)."""
    encoded = pc.dictionary_encode(values)
    return pa.array([fn(v) for v in encoded.dictionary.to_pylist()], type=kind).take(encoded.indices)


def _back_us(values: pa.Array) -> np.ndarray:
    """The hold/wait field in microseconds (what ``at - timedelta(seconds=hold or 0)`` takes off)."""
    micros = _per_value(values, lambda v: dt.timedelta(seconds=_seconds((v,), 0) or 0) // _US, pa.int64())
    return pc.fill_null(micros, 0).to_numpy()


def _np(values: pa.Array | pa.ChunkedArray) -> np.ndarray:
    return values.to_numpy(zero_copy_only=False) if isinstance(values, pa.Array) else values.combine_chunks().to_numpy(
        zero_copy_only=False)


def _codes(events: pa.Array) -> np.ndarray:
    code = np.full(len(events), _RING, dtype=np.int8)
    for names, value in ((("ENTERQUEUE",), _ENTER), (("CONNECT",), _CONNECT), (tuple(_EXITS), _EXIT), (tuple(_ENDS), _END)):
        code[_np(pc.is_in(events, value_set=pa.array(names)))] = value
    return code


def _keys(*columns: pa.Array) -> np.ndarray:
    """One integer per distinct tuple of the (string) columns."""
    key = np.zeros(len(columns[0]), dtype=np.int64)
    for column in columns:
        encoded = pc.dictionary_encode(column)
        key = key * max(len(encoded.dictionary), 1) + _np(encoded.indices)
    return key


def _instants(micros: np.ndarray, valid: np.ndarray) -> pa.Array:
    return pa.array(np.where(valid, micros, 0), type=pa.int64(), mask=~valid).cast(INSTANT)


def build_attempts(events: pa.Table, rows: np.ndarray | None = None) -> pa.Table:
    """The attempt events (line order; ``rows``: their positions in ``events``, default all) as
    attempts (:data:`ATTEMPT_SCHEMA`, ``pbx_call_id`` null). Only the columns' values an attempt
    reads are taken (the whole file's events are not copied)."""
    rows = np.arange(events.num_rows) if rows is None else rows
    if not len(rows):
        return ATTEMPT_SCHEMA.empty_table()

    def values(name: str, at: np.ndarray, mask: np.ndarray | None = None) -> pa.Array:
        return pc.take(events.column(name), pa.array(rows[at], mask=mask)).combine_chunks()

    everything = np.arange(len(rows))
    key = _keys(values("callid", everything), values("queue", everything))
    line = _np(events.column("line"))[rows]
    in_order = len(line) < 2 or bool((line[1:] > line[:-1]).all())
    order = np.argsort(key, kind="stable") if in_order else np.lexsort((line, key))
    rows, key, line = rows[order], key[order], line[order]
    at = _np(events.column("at"))[rows]
    code = _codes(values("event", everything))
    closes = (code == _EXIT) | (code == _END)
    start = np.ones(len(key), dtype=bool)
    start[1:] = (key[1:] != key[:-1]) | (code[1:] == _ENTER) | closes[:-1]
    first = np.flatnonzero(start)
    last = np.append(first[1:], len(key)) - 1
    seg = np.cumsum(start) - 1
    n = len(first)
    # The entry: the first event's instant, less the hold (CONNECT) or the wait (exits) it says.
    first_code = code[first]
    back = np.zeros(n, dtype=np.int64)
    hit = first_code == _CONNECT
    if hit.any():
        back[hit] = _back_us(values("d0", first[hit]))
    hit = first_code == _EXIT
    if hit.any():
        exits = first[hit]
        with_key = pc.equal(values("event", exits), "EXITWITHKEY")
        back[hit] = _back_us(pc.if_else(with_key, values("d3", exits), values("d2", exits)))
    entered = at[first] - back
    # The answer: the last CONNECT of the attempt; an end without one answers at the entry.
    connect_row = np.full(n, -1, dtype=np.int64)
    connects = np.flatnonzero(code == _CONNECT)
    np.maximum.at(connect_row, seg[connects], connects)
    has_connect = connect_row >= 0
    closed = closes[last]
    ended_by = (code[last] == _END) & closed
    agent_row = np.where(has_connect, connect_row, np.where(ended_by, last, 0))
    agents = values("agent", agent_row, ~(has_connect | ended_by))
    connected = np.where(has_connect, at[np.maximum(connect_row, 0)], entered)
    outcome = np.where(has_connect | ended_by, "answered", "open").astype(object)
    is_exit = code[last] == _EXIT
    outcome[is_exit] = [_EXITS[name] for name in values("event", last[is_exit]).to_pylist()]
    caller = values("d1", first, first_code != _ENTER)
    caller = pc.if_else(pc.equal(caller, ""), pa.scalar(None, pa.string()), caller)
    table = pa.table({
        "callid": values("callid", first), "queue": values("queue", first),
        "entered_at": _instants(entered, np.ones(n, dtype=bool)), "first_line": pa.array(line[first]),
        "connected_at": _instants(connected, has_connect | ended_by), "ended_at": _instants(at[last], closed),
        "agent": _per_value(agents, member_agent, pa.string()),
        "outcome": pa.array(outcome, type=pa.string()),
        "ring_attempts": pa.array(np.bincount(seg, weights=code == _RING, minlength=n).astype(np.int64)),
        "caller": caller, "pbx_call_id": pa.nulls(n, pa.string()),
    }, schema=ATTEMPT_SCHEMA)
    return table.take(pa.array(np.argsort(line[first], kind="stable")))


def _intervals(events: pa.Table, starts: frozenset[str], with_reason: bool
               ) -> tuple[list[AgentInterval], list[tuple[int, OrphanEnd]]]:
    """One state machine per (queue, agent) over the member events of one kind (line order)."""
    if events.num_rows == 0:
        return [], []
    key = _keys(events.column("queue").combine_chunks(), events.column("agent").combine_chunks())
    line = _np(events.column("line"))
    order = np.lexsort((line, key))
    key, line = key[order], line[order]
    at = _np(events.column("at"))[order]
    is_start = _np(pc.is_in(events.column("event"), value_set=pa.array(sorted(starts))))[order]
    was_open = np.zeros(len(key), dtype=bool)
    was_open[1:] = (key[1:] == key[:-1]) & is_start[:-1]
    opens = is_start & ~was_open
    interval = np.cumsum(opens) - 1
    closes = ~is_start & was_open
    ended = np.full(int(opens.sum()), -1, dtype=np.int64)
    ended[interval[closes]] = at[closes]
    queues, agents = (_np(events.column(c)).astype(object)[order] for c in ("queue", "agent"))
    reasons = _np(events.column("d0")).astype(object)[order] if with_reason else None
    found = []
    for i, row in enumerate(np.flatnonzero(opens)):
        end = None if ended[i] < 0 else _EPOCH0 + dt.timedelta(microseconds=int(ended[i]))
        reason = (reasons[row] or None) if with_reason else None
        found.append((line[row], AgentInterval(queues[row], agents[row], _EPOCH0 + dt.timedelta(microseconds=int(at[row])),
                                                end, reason)))
    found.sort(key=lambda item: item[0])
    kind = "pause" if with_reason else "session"
    orphans = [(line[row], OrphanEnd(kind, queues[row], agents[row], _EPOCH0 + dt.timedelta(microseconds=int(at[row]))))
               for row in np.flatnonzero(~is_start & ~was_open)]
    return [interval for _, interval in found], orphans


def _counted(values: pa.Array) -> Counter[str]:
    """Counts in the order of first appearance (as a :class:`Counter` filled event by event is)."""
    counts: Counter[str] = Counter()
    for item in pc.value_counts(values).to_pylist():
        counts[item["values"]] = item["counts"]
    return counts


def build_queue_log(events: pa.Table) -> QueueLogTables:
    """The whole file's events (:data:`EVENT_SCHEMA`, any order) as attempts, sessions and pauses."""
    line = _np(events.column("line"))
    if len(line) > 1 and (line[1:] < line[:-1]).any():
        events = events.take(pa.array(np.argsort(line, kind="stable")))
    names = events.column("event").combine_chunks()
    is_attempt = pc.is_in(names, value_set=pa.array(sorted(ATTEMPT_EVENTS)))
    is_member = pc.is_in(names, value_set=pa.array(sorted(MEMBER_EVENTS)))
    agents = _per_value(events.column("agent").combine_chunks(), member_agent, pa.string())
    skipped = pc.or_(pc.and_(pc.invert(is_attempt), pc.invert(is_member)), pc.and_(is_member, pc.is_null(agents)))
    members = pc.and_(is_member, pc.is_valid(agents))
    member_events = events.set_column(events.schema.get_field_index("agent"), "agent", agents).filter(members)
    queueless = pc.is_in(member_events.column("event"), value_set=pa.array(sorted(_QUEUELESS)))
    queue = pc.if_else(pc.or_(queueless, pc.equal(member_events.column("queue"), "")), "NONE",
                       member_events.column("queue"))
    member_events = member_events.set_column(member_events.schema.get_field_index("queue"), "queue", queue)
    session_kind = pc.is_in(member_events.column("event"),
                            value_set=pa.array(["ADDMEMBER", "REMOVEMEMBER", "AGENTLOGIN", "AGENTLOGOFF"]))
    sessions, session_orphans = _intervals(member_events.filter(session_kind), frozenset({"ADDMEMBER", "AGENTLOGIN"}), False)
    pauses, pause_orphans = _intervals(member_events.filter(pc.invert(session_kind)), frozenset({"PAUSE", "PAUSEALL"}), True)
    orphans = [end for _, end in sorted(session_orphans + pause_orphans, key=lambda item: item[0])]
    return QueueLogTables(build_attempts(events, np.flatnonzero(_np(is_attempt))), sessions, pauses, orphans, _counted(names),
                          _counted(names.filter(skipped)))


def _fixed_width(values: pa.Array, width: int) -> tuple[np.ndarray, np.ndarray]:
    """The strings as NumPy ``S<width>`` bytes (for sorting and ``searchsorted``), and which are
    usable (not null, at most ``width`` bytes; a longer one matches no shorter key)."""
    values = values.cast(pa.large_binary()) if not pa.types.is_large_binary(values.type) else values
    n = len(values)
    offsets = np.frombuffer(values.buffers()[1], dtype=np.int64, count=n + 1, offset=values.offset * 8)
    data = np.frombuffer(values.buffers()[2], dtype=np.uint8) if values.buffers()[2] is not None else np.zeros(0, np.uint8)
    lengths = np.diff(offsets)
    usable = (lengths <= width) & _np(pc.is_valid(values))
    lengths = np.where(usable, lengths, 0)
    out = np.zeros((n, max(width, 1)), dtype=np.uint8)
    if usable.all():  # the bytes are contiguous: one shift per row
        width = max(width, 1)
        shift = np.repeat(np.arange(n) * width - (offsets[:-1] - offsets[0]), lengths)
        out.reshape(-1)[np.arange(len(shift)) + shift] = data[offsets[0]:offsets[-1]]
        return out.view(f"S{width}").reshape(n), usable
    rows = np.repeat(np.arange(n), lengths)
    starts = np.repeat(offsets[:-1], lengths)
    cols = np.arange(len(rows)) - np.repeat(np.cumsum(lengths) - lengths, lengths)
    out[rows, cols] = data[starts + cols]
    return out.view(f"S{max(width, 1)}").reshape(n), usable


def _clamp(instant: np.ndarray, low: np.ndarray, high: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``instant`` moved into ``[low, high]``, and whether it moved by more than the tolerance."""
    fitted = np.minimum(np.maximum(instant, low), high)
    return fitted, np.abs(fitted - instant) > CLAMP_TOLERANCE // _US


class AttemptJoin:
    """The attempts, indexed once by ``callid``, joined to the collapsed calls block by block
    (:meth:`join`, the rule of :func:`~report_pipelines.domain.queue_log.join_calls`); :meth:`attempts`
    gives them back with each one's ``pbx_call_id`` (the last call it was joined to)."""

    def __init__(self, attempts: pa.Table) -> None:
        self._attempts = attempts
        callid = attempts.column("callid").combine_chunks()
        self.width = max(int(pc.max(pc.binary_length(callid)).as_py() or 0), 1) if len(callid) else 1
        ids, _ = _fixed_width(callid, self.width)
        self.order = np.argsort(ids, kind="stable")
        ordered = ids[self.order]
        bounds = np.flatnonzero(np.append(True, ordered[1:] != ordered[:-1])) if len(ordered) else np.zeros(0, np.int64)
        self.keys = ordered[bounds]
        self.starts, self.ends = bounds, np.append(bounds[1:], len(ordered))
        self._entered = _np(attempts.column("entered_at").cast(pa.int64()))
        connected = attempts.column("connected_at").cast(pa.int64())
        self._connected = _np(pc.fill_null(connected, _NO))
        self._has_connect = _np(pc.is_valid(connected))
        self._line = _np(attempts.column("first_line"))
        self._owners: list[tuple[np.ndarray, pa.Array]] = []

    def __bool__(self) -> bool:
        return len(self.keys) > 0

    def _matches(self, column: pa.Array) -> tuple[np.ndarray, np.ndarray]:
        """(leg index, key index) of the legs whose value is a ``callid``."""
        values, usable = _fixed_width(column, self.width)
        where = np.minimum(np.searchsorted(self.keys, values), len(self.keys) - 1)
        hit = usable & (self.keys[where] == values)
        return np.flatnonzero(hit), where[hit]

    def join(self, calls: pa.Table, legs_call_ids: pa.Array, legs_uniqueids: pa.Array, stats: JoinStats) -> pa.Table:
        if not self or calls.num_rows == 0:
            return calls
        legs, keys = zip(*(self._matches(column) for column in (legs_call_ids, legs_uniqueids)), strict=True)
        leg, key = np.concatenate(legs), np.concatenate(keys)
        if not len(leg):
            return calls
        pairs = pa.table({"pbx_call_id": legs_call_ids.take(pa.array(leg)), "key": key})
        rows = pa.table({"pbx_call_id": calls.column("pbx_call_id"), "row": np.arange(calls.num_rows)})
        joined = pairs.join(rows, "pbx_call_id", join_type="inner")
        if joined.num_rows == 0:
            return calls
        row, key = _np(joined.column("row")), _np(joined.column("key"))
        counts = self.ends[key] - self.starts[key]
        row = np.repeat(row, counts)
        position = np.repeat(self.starts[key], counts) + np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts)
        attempt = self.order[position]
        pair = np.unique(row * len(self._line) + attempt)
        row, attempt = pair // len(self._line), pair % len(self._line)
        self._owners.append((attempt, calls.column("pbx_call_id").take(pa.array(row)).combine_chunks()))
        # The chosen attempt: the first connected (connect, line), else the last entered (entry, line).
        connected = self._has_connect[attempt]
        first_key = np.where(connected, self._connected[attempt], -self._entered[attempt])
        second_key = np.where(connected, self._line[attempt], -self._line[attempt])
        order = np.lexsort((second_key, first_key, ~connected, row))
        row, attempt = row[order], attempt[order]
        head = np.append(True, row[1:] != row[:-1])
        row, attempt = row[head], attempt[head]
        return self._apply(calls, row, attempt, stats)

    def _apply(self, calls: pa.Table, row: np.ndarray, attempt: np.ndarray, stats: JoinStats) -> pa.Table:
        chosen = self._attempts.take(pa.array(attempt))
        current = calls.take(pa.array(row))
        outcome = chosen.column("outcome").combine_chunks()
        stats.joined += len(row)
        stats.outcomes.update(_counted(outcome))
        start = _np(current.column("started_at").cast(pa.int64()))
        end = _np(current.column("ended_at").cast(pa.int64()))
        answered_now = current.column("answered_at").cast(pa.int64())
        has_answer = _np(pc.is_valid(answered_now))
        answered = _np(pc.fill_null(answered_now, 0))
        connected = self._has_connect[attempt]
        fitted, answer_moved = _clamp(self._connected[attempt], start, end)
        answered = np.where(connected, fitted, answered)
        has_answer |= connected
        queued, entry_moved = _clamp(self._entered[attempt], start, np.where(has_answer, answered, end))
        stats.clamped += int(answer_moved[connected].sum() + entry_moved.sum())
        missed = pc.and_(pc.invert(pa.array(connected)), pc.and_(pc.invert(pa.array(has_answer)),
                                                                 pc.is_in(outcome, value_set=pa.array(list(OUTCOME_DISPOSITIONS)))))
        missed_np = _np(missed)
        agent = pc.if_else(pa.array(connected), pc.coalesce(chosen.column("agent"), current.column("agent")),
                           pc.if_else(missed, pa.scalar(None, pa.string()), current.column("agent")))
        disposition = pc.if_else(pa.array(connected), Disposition.ANSWERED.value, current.column("disposition"))
        if missed_np.any():
            mapped = {k: v.value for k, v in OUTCOME_DISPOSITIONS.items()}
            names = outcome.to_numpy(zero_copy_only=False)
            disposition = pc.if_else(missed, pa.array([mapped.get(o, "") for o in names], type=pa.string()), disposition)
        new = {"queue": chosen.column("queue"), "agent": agent, "disposition": disposition,
               "answered_at": _instants(answered, has_answer), "queued_at": _instants(queued, np.ones(len(row), bool))}
        index = np.arange(calls.num_rows)
        index[row] = calls.num_rows + np.arange(len(row))
        take = pa.array(index)
        for name, values in new.items():
            position = calls.schema.get_field_index(name)
            kind = calls.schema.field(name)
            both = pa.concat_arrays([calls.column(name).combine_chunks(), _as_array(values).cast(kind.type)])
            calls = calls.set_column(position, kind, both.take(take))
        return calls

    def attempts(self) -> pa.Table:
        """The attempts with ``pbx_call_id`` set (null for an attempt no call had)."""
        if not self._owners:
            return self._attempts
        attempt = np.concatenate([a for a, _ in self._owners])
        ids = pa.concat_arrays([i for _, i in self._owners])
        _, last = np.unique(attempt[::-1], return_index=True)
        last = len(attempt) - 1 - last
        index = np.full(self._attempts.num_rows, -1, dtype=np.int64)
        index[attempt[last]] = last
        owner = ids.take(pa.array(index, mask=index < 0))
        return self._attempts.set_column(self._attempts.schema.get_field_index("pbx_call_id"), "pbx_call_id", owner)


def _as_array(values: pa.Array | pa.ChunkedArray) -> pa.Array:
    return values.combine_chunks() if isinstance(values, pa.ChunkedArray) else values
