"""Legs become calls, for a whole batch at once: the one implementation of the collapse rules.

:func:`collapse_legs` takes an Arrow table of legs (:data:`LEG_SCHEMA`, any order, several calls)
and returns one row per ``call_id``. It sorts once and reduces per call with NumPy; the rules that
read text (what a channel, a context or an application is) run once per *distinct* value in Python
(:meth:`PbxConfig.classify_endpoint`, :func:`~report_pipelines.domain.pbx.context_class`,
:func:`~report_pipelines.domain.cdr.app_class`, :func:`~report_pipelines.domain.cdr.decide_direction`),
so the rules stay readable and the cost per leg stays a few NumPy passes.
:func:`report_pipelines.domain.cdr.collapse` is this applied to one call.

Per call, with its legs ordered by (start, line):

- **origin** = the leg whose ``uniqueid`` is the call id (Asterisk's ``linkedid``), else the first;
  caller/callee = its src/dst; start = the first leg's start; end = the latest leg end;
- **direction**: :func:`~report_pipelines.domain.cdr.decide_direction` on the origin leg (its
  channel, context and dialled number) and on whether any leg dialled a trunk;
- **answered** = an agent (or, for outbound and internal calls, the called party or a service)
  picked up. A leg counts when it is ANSWERED with an answer time and a ``dstchannel`` (the caller
  was bridged to someone). An ANSWERED leg *without* a ``dstchannel`` was answered by an application
  (IVR, announcement, the Queue's music on hold): for an outbound or internal call that is the
  answer of a service (voicemail, a conference), except in ``Queue``; for an inbound or unknown
  call it is not an answer: the caller was still waiting. A row that states its direction (a
  call-centre export's own record) counts when it says ANSWERED. ``answered_at`` = the earliest counted
  answer, so the wait before it (IVR, queue) is waiting. Unanswered legs with ``billsec > 0``
  (queue members' phones ringing while the caller was held) are part of the call, not a problem;
- **agent** = the first counted answer's stated agent, else the extension of its ``dstchannel``
  (``SIP/202-...``, ``Local/202@from-queue-...``); an unanswered call keeps a stated agent only; an
  outbound call without one gets the extension that placed it;
- **queue** = the first stated queue, else the first ``Queue`` leg's first argument;
- **unanswered dispositions**: an *inbound* call that went to voicemail is NO ANSWER (missed); one
  the PBX held (in a ``Queue``, or answered by an IVR/announcement) and the caller hung up is
  ABANDONED; otherwise (phones rang, nobody took it) the first of ABANDONED, NO ANSWER, BUSY, FAILED
  that a leg has (an ANSWERED leg counting as NO ANSWER). Other directions use that priority only.
  (With a queue_log, :mod:`report_pipelines.domain.queue_log` then corrects queue calls.)
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from report_pipelines.domain.calls import (
    CALL_SCHEMA,
    DIRECTIONS,
    DISPOSITIONS,
    INSTANT,
    MAX_TEXT,
    Call,
    Direction,
    Disposition,
)
from report_pipelines.domain.cdr import BASES, EXTERNAL_NUMBER, Leg, app_class, decide_direction, queue_from_lastdata
from report_pipelines.domain.pbx import Context, Evidence, Kind, PbxConfig, context_class

LEG_SCHEMA = pa.schema([
    ("line", pa.int64()),
    ("call_id", pa.string()),
    ("uniqueid", pa.string()),
    ("started_at", INSTANT),
    ("answered_at", INSTANT),
    ("ended_at", INSTANT),
    ("disposition", pa.string()),
    ("src", pa.string()),
    ("dst", pa.string()),
    ("dcontext", pa.string()),
    ("channel", pa.string()),
    ("dstchannel", pa.string()),
    ("lastapp", pa.string()),
    ("lastdata", pa.string()),
    ("queue", pa.string()),
    ("agent", pa.string()),
    ("direction", pa.string()),
    ("queued_at", INSTANT),
])

#: The collapsed calls: the call columns, then what the import summary and rejects need.
CALLS_SCHEMA = pa.schema([
    *CALL_SCHEMA,
    ("first_line", pa.int64()),
    ("legs", pa.int64()),
    ("basis", pa.string()),
    ("origin_channel", pa.string()),
])

_DISP = {d: i for i, d in enumerate(DISPOSITIONS)}
_ANSWERED, _NO_ANSWER, _BUSY, _FAILED, _ABANDONED = (_DISP[d.value] for d in (
    Disposition.ANSWERED, Disposition.NO_ANSWER, Disposition.BUSY, Disposition.FAILED, Disposition.ABANDONED))
#: Unanswered priority rank by disposition code (ANSWERED legs rank as NO ANSWER).
_RANK = np.array([{_ABANDONED: 0, _NO_ANSWER: 1, _ANSWERED: 1, _BUSY: 2, _FAILED: 3}[i] for i in range(len(DISPOSITIONS))])
_BY_RANK = np.array([_ABANDONED, _NO_ANSWER, _BUSY, _FAILED])
_DIR = {d: i for i, d in enumerate(DIRECTIONS)}
_BASES = tuple(BASES)
_APPS = ("queue", "voicemail", "other")
_US = 1_000_000


def legs_table(legs: Iterable[Leg]) -> pa.Table:
    """The :data:`LEG_SCHEMA` table of these legs."""
    rows = list(legs)
    text = lambda v: v if v else None
    return pa.Table.from_pydict({
        "line": [leg.line for leg in rows],
        "call_id": [leg.call_id for leg in rows],
        "uniqueid": [leg.uniqueid for leg in rows],
        "started_at": [leg.started_at for leg in rows],
        "answered_at": [leg.answered_at for leg in rows],
        "ended_at": [leg.ended_at for leg in rows],
        "disposition": [leg.disposition.value for leg in rows],
        "src": [text(leg.src) for leg in rows],
        "dst": [text(leg.dst) for leg in rows],
        "dcontext": [leg.dcontext for leg in rows],
        "channel": [leg.channel for leg in rows],
        "dstchannel": [leg.dstchannel for leg in rows],
        "lastapp": [leg.lastapp for leg in rows],
        "lastdata": [leg.lastdata for leg in rows],
        "queue": [leg.queue for leg in rows],
        "agent": [leg.agent for leg in rows],
        "direction": [leg.direction.value if leg.direction else None for leg in rows],
        "queued_at": [leg.queued_at for leg in rows],
    }, schema=LEG_SCHEMA)


def _us(column: pa.ChunkedArray | pa.Array) -> tuple[np.ndarray, np.ndarray]:
    ints = column.cast(pa.int64())
    valid = pc.is_valid(ints).to_numpy(zero_copy_only=False)
    return pc.fill_null(ints, 0).to_numpy(zero_copy_only=False), valid


def _text(table: pa.Table, name: str) -> pa.Array:
    return pc.fill_null(table.column(name).combine_chunks(), "")


def map_distinct(values: pa.Array, rule: Callable[[str], object], dtype: object = np.int64) -> np.ndarray:
    """``rule`` applied to each distinct value of ``values`` (Python), spread back to every row."""
    encoded = pc.dictionary_encode(values)
    results = np.array([rule(v) for v in encoded.dictionary.to_pylist()] or [rule("")], dtype=dtype)
    return results[encoded.indices.to_numpy(zero_copy_only=False)]


def endpoint_keys(channels: pa.Array) -> pa.Array:
    """``TECH/endpoint`` of each channel name (``SIP/201-00000a1b`` -> ``SIP/201``,
    ``Local/201@from-queue-1;2`` -> ``Local/201``): few distinct values, unlike the channels."""
    trimmed = pc.utf8_trim_whitespace(channels)
    local = pc.starts_with(pc.utf8_lower(trimmed), "local/")
    local_key = pc.replace_substring_regex(trimmed, r"@.*$", "")
    other_key = pc.replace_substring_regex(trimmed, r"-[^-]*$", "")
    return pc.if_else(local, local_key, other_key)


def _classify(config: PbxConfig) -> Callable[[str], tuple[int, int, str | None]]:
    def rule(key: str) -> tuple[int, int, str | None]:
        tech, slash, endpoint = key.partition("/")
        if not slash or not tech or not endpoint:
            return (int(Kind.UNKNOWN), int(Evidence.NONE), None)
        kind, evidence = config.classify_endpoint(tech, endpoint)
        return (int(kind), int(evidence), config.extension_of_endpoint(tech, endpoint))
    return rule


def _channel_facts(keys: pa.Array, config: PbxConfig) -> tuple[np.ndarray, np.ndarray, pa.Array]:
    encoded = pc.dictionary_encode(keys)
    rule = _classify(config)
    facts = [rule(v) for v in encoded.dictionary.to_pylist()]
    index = encoded.indices.to_numpy(zero_copy_only=False)
    kinds = np.array([f[0] for f in facts] or [0], dtype=np.int64)[index]
    evidence = np.array([f[1] for f in facts] or [0], dtype=np.int64)[index]
    extension = pa.array([f[2] for f in facts], type=pa.string()).take(pa.array(index)) if facts else pa.nulls(0, pa.string())
    return kinds, evidence, extension


class _Segments:
    """Per-call reductions over legs sorted by (call, ...): ``first`` = each call's first position."""

    def __init__(self, group_sorted: np.ndarray) -> None:
        n = len(group_sorted)
        self.n = n
        self.first = np.flatnonzero(np.r_[True, group_sorted[1:] != group_sorted[:-1]]) if n else np.empty(0, np.int64)
        self.positions = np.arange(n)

    def min(self, values: np.ndarray) -> np.ndarray:
        return np.minimum.reduceat(values, self.first)

    def max(self, values: np.ndarray) -> np.ndarray:
        return np.maximum.reduceat(values, self.first)

    def any(self, mask: np.ndarray) -> np.ndarray:
        return np.add.reduceat(mask.astype(np.int64), self.first) > 0

    def first_where(self, mask: np.ndarray) -> np.ndarray:
        """Each call's first sorted position where ``mask`` holds, or -1."""
        positions = np.where(mask, self.positions, self.n)
        found = np.minimum.reduceat(positions, self.first)
        return np.where(found == self.n, -1, found)


def _take(array: pa.Array, index: np.ndarray) -> pa.Array:
    """``array[index]``, null where index is -1."""
    mask = index < 0
    return array.take(pa.array(np.where(mask, 0, index), type=pa.int64(), mask=mask))


@dataclass(frozen=True)
class CollapsedCalls:
    """One row per call (:data:`CALLS_SCHEMA`), in the order of their first line in the file."""

    table: pa.Table
    client_id: int

    @property
    def num_rows(self) -> int:
        return self.table.num_rows

    def calls(self, rows: Sequence[int] | None = None) -> list[Call]:
        table = self.table if rows is None else self.table.take(pa.array(list(rows), type=pa.int64()))
        return [
            Call(client_id=self.client_id, pbx_call_id=r["pbx_call_id"], direction=Direction(r["direction"]),
                 started_at=r["started_at"], ended_at=r["ended_at"], disposition=Disposition(r["disposition"]),
                 answered_at=r["answered_at"], queue=r["queue"], agent=r["agent"], caller=r["caller"],
                 callee=r["callee"], queued_at=r["queued_at"])
            for r in table.to_pylist()
        ]

    def problems(self) -> dict[int, list[str]]:
        """``{row: Call.problems()}`` of the calls that cannot be stored as they are.

        A vectorised pre-check picks the rows that might fail; :meth:`Call.problems` (the one rule)
        decides for those."""
        t = self.table
        if t.num_rows == 0:
            return {}
        suspect = np.zeros(t.num_rows, dtype=bool)
        for name in ("pbx_call_id", "queue", "agent", "caller", "callee"):
            lengths = pc.fill_null(pc.utf8_length(t.column(name)), 0).to_numpy(zero_copy_only=False)
            suspect |= lengths > MAX_TEXT
        suspect |= pc.fill_null(pc.equal(t.column("pbx_call_id"), ""), True).to_numpy(zero_copy_only=False)
        start, _ = _us(t.column("started_at"))
        end, _ = _us(t.column("ended_at"))
        answer, answered = _us(t.column("answered_at"))
        queued, is_queued = _us(t.column("queued_at"))
        answered_disposition = pc.equal(t.column("disposition"), Disposition.ANSWERED.value).to_numpy(zero_copy_only=False)
        suspect |= end < start
        suspect |= answered & ((answer < start) | (answer > end))
        suspect |= answered != answered_disposition
        suspect |= is_queued & ((queued < start) | (queued > end) | (answered & (queued > answer)))
        rows = np.flatnonzero(suspect).tolist()
        found = {}
        for row, call in zip(rows, self.calls(rows), strict=False):
            problems = call.problems()
            if problems:
                found[row] = problems
        return found


def collapse_legs(legs: pa.Table, client_id: int, config: PbxConfig | None = None) -> CollapsedCalls:
    """The calls of these legs (every leg of each call must be there); see the module docstring.
    Legs are grouped by ``call_id``, or by a ``group`` column when the table has one."""
    config = config or PbxConfig()
    # ``group`` (optional) splits legs that share an id into several calls (an id the file repeats).
    key = legs.column("group") if "group" in legs.column_names else legs.column("call_id")
    legs = legs.select(LEG_SCHEMA.names).cast(LEG_SCHEMA)
    n = legs.num_rows
    if n == 0:
        return CollapsedCalls(CALLS_SCHEMA.empty_table(), client_id)
    encoded = pc.dictionary_encode(key.combine_chunks())
    group = encoded.indices.to_numpy(zero_copy_only=False).astype(np.int64)
    start, _ = _us(legs.column("started_at"))
    end, _ = _us(legs.column("ended_at"))
    answer, has_answer = _us(legs.column("answered_at"))
    queued, has_queued = _us(legs.column("queued_at"))
    line = legs.column("line").to_numpy()
    order = np.lexsort((line, start, group))  # by call, then start, then line
    seg = _Segments(group[order])
    pos = lambda values: values[order]

    call_ids = legs.column("call_id").combine_chunks()
    uniqueid = legs.column("uniqueid").combine_chunks()
    is_origin = pc.fill_null(pc.equal(uniqueid, call_ids), False).to_numpy(zero_copy_only=False)
    origin_sorted = seg.first_where(pos(is_origin))
    origin_sorted = np.where(origin_sorted < 0, seg.first, origin_sorted)
    origin = order[origin_sorted]  # leg index of each call's origin

    disposition = pc.index_in(legs.column("disposition").combine_chunks(), value_set=pa.array(DISPOSITIONS))
    disposition = pc.fill_null(disposition, _FAILED).to_numpy(zero_copy_only=False).astype(np.int64)
    answered_leg = (disposition == _ANSWERED) & has_answer
    bridged = pc.utf8_length(pc.utf8_trim_whitespace(_text(legs, "dstchannel"))).to_numpy(zero_copy_only=False) > 0
    app = map_distinct(_text(legs, "lastapp"), lambda v: _APPS.index(app_class(v)))
    in_queue, in_voicemail = app == 0, app == 1

    chan_kind, chan_evidence, chan_ext = _channel_facts(endpoint_keys(_text(legs, "channel")), config)
    dst_kind, _, dst_ext = _channel_facts(endpoint_keys(_text(legs, "dstchannel")), config)
    context = map_distinct(_text(legs, "dcontext"), lambda v: int(context_class(v)))
    dst = pc.utf8_trim_whitespace(_text(legs, "dst"))
    external = pc.match_substring_regex(dst, f"^{EXTERNAL_NUMBER.pattern}$").to_numpy(zero_copy_only=False)
    if config.dids:
        digits = pc.replace_substring_regex(dst, r"\D", "")
        is_did = pc.is_in(digits, value_set=pa.array(list(config.dids))).to_numpy(zero_copy_only=False)
    else:
        is_did = np.zeros(n, dtype=bool)
    stated_code = pc.index_in(legs.column("direction").combine_chunks(), value_set=pa.array(DIRECTIONS))
    stated = pc.fill_null(stated_code, len(DIRECTIONS)).to_numpy(zero_copy_only=False).astype(np.int64)

    # Direction: the stated one (origin's first), else the rule on the origin's facts.
    first_stated = seg.first_where(pos(stated < len(DIRECTIONS)))
    call_stated = np.where(stated[origin] < len(DIRECTIONS), stated[origin],
                           np.where(first_stated >= 0, stated[order[np.maximum(first_stated, 0)]], len(DIRECTIONS)))
    dials_trunk = seg.any(pos(dst_kind == int(Kind.TRUNK)))
    # The facts of each call packed in one small integer: the rule runs once per distinct combination.
    facts = (((((call_stated * 4 + chan_kind[origin]) * 4 + chan_evidence[origin]) * 3 + context[origin]) * 2
              + is_did[origin]) * 2 + external[origin]) * 2 + dials_trunk
    distinct, inverse = np.unique(facts, return_inverse=True)

    def unpack(key: int) -> tuple[int, ...]:
        key, t = divmod(key, 2)
        key, x = divmod(key, 2)
        key, d = divmod(key, 2)
        key, c = divmod(key, 3)
        key, e = divmod(key, 4)
        s, k = divmod(key, 4)
        return s, k, e, c, d, x, t

    decided = [decide_direction(Direction(DIRECTIONS[s]) if s < len(DIRECTIONS) else None, (Kind(k), Evidence(e)),
                                Context(c), bool(d), bool(x), bool(t)) for s, k, e, c, d, x, t in map(unpack, distinct.tolist())]
    direction = np.array([_DIR[d.value] for d, _ in decided], dtype=np.int64)[inverse.reshape(-1)]
    basis = np.array([_BASES.index(b) for _, b in decided], dtype=np.int64)[inverse.reshape(-1)]
    placed = (direction == _DIR["outbound"]) | (direction == _DIR["internal"])

    # Answers: bridged answers always; an application's answer only for calls placed by a phone.
    # A row that states its direction is an export's own record of the call: its ANSWERED is an answer.
    counts = answered_leg & (bridged | (stated < len(DIRECTIONS)) | (placed[group] & ~in_queue))
    answer_order = np.lexsort((line, np.where(counts, answer, np.iinfo(np.int64).max), group))
    aseg = _Segments(group[answer_order])  # same calls, same sizes: same segment boundaries
    first_answer = aseg.first_where(counts[answer_order])
    is_answered = first_answer >= 0
    answer_leg = np.where(is_answered, answer_order[np.maximum(first_answer, 0)], -1)

    stated_agent = legs.column("agent").combine_chunks()
    leg_agent = pc.coalesce(stated_agent, dst_ext)
    has_leg_agent = pc.is_valid(leg_agent).to_numpy(zero_copy_only=False)
    agent_answer = aseg.first_where((counts & has_leg_agent)[answer_order])
    agent_leg = np.where(agent_answer >= 0, answer_order[np.maximum(agent_answer, 0)], -1)
    first_stated_agent = seg.first_where(pos(pc.is_valid(stated_agent).to_numpy(zero_copy_only=False)))
    unanswered_agent_leg = np.where(first_stated_agent >= 0, order[np.maximum(first_stated_agent, 0)], -1)
    agent = pc.if_else(pa.array(is_answered), _take(leg_agent, agent_leg), _take(stated_agent, unanswered_agent_leg))
    outbound = direction == _DIR["outbound"]
    agent = pc.if_else(pc.and_(pa.array(outbound), pc.is_null(agent)), chan_ext.take(pa.array(origin)), agent)

    # Dispositions of the unanswered.
    priority = _BY_RANK[seg.min(pos(_RANK[disposition]))]
    inbound = direction == _DIR["inbound"]
    voicemail = seg.any(pos(in_voicemail))
    held = seg.any(pos(in_queue | (answered_leg & ~bridged)))
    unanswered = np.where(inbound & voicemail, _NO_ANSWER, np.where(inbound & held, _ABANDONED, priority))
    call_disposition = np.where(is_answered, _ANSWERED, unanswered)

    # Queue: the first stated, else the first Queue leg's first argument.
    stated_queue = legs.column("queue").combine_chunks()
    app_queue = pa.array(map_distinct(pc.if_else(pa.array(in_queue), _text(legs, "lastdata"), ""),
                                      lambda v: queue_from_lastdata("Queue", v) if v else None, dtype=object),
                         type=pa.string())
    first_stated_queue = seg.first_where(pos(pc.is_valid(stated_queue).to_numpy(zero_copy_only=False)))
    first_app_queue = seg.first_where(pos(pc.is_valid(app_queue).to_numpy(zero_copy_only=False)))
    queue = pc.coalesce(_take(stated_queue, np.where(first_stated_queue >= 0, order[np.maximum(first_stated_queue, 0)], -1)),
                        _take(app_queue, np.where(first_app_queue >= 0, order[np.maximum(first_app_queue, 0)], -1)))

    queued_min = seg.min(pos(np.where(has_queued, queued, np.iinfo(np.int64).max)))
    ended = seg.max(pos(end))
    empty_to_null = lambda a: pc.if_else(pc.equal(a, ""), pa.scalar(None, pa.string()), a)
    instants = lambda us, mask=None: pa.array(us, type=pa.int64(), mask=mask).cast(INSTANT)
    table = pa.Table.from_pydict({
        "pbx_call_id": call_ids.take(pa.array(order[seg.first])),
        "direction": pa.array(np.array(DIRECTIONS, dtype=object)[direction], type=pa.string()),
        "queue": queue,
        "agent": agent,
        "caller": empty_to_null(legs.column("src").combine_chunks().take(pa.array(origin))),
        "callee": empty_to_null(legs.column("dst").combine_chunks().take(pa.array(origin))),
        "started_at": instants(start[order[seg.first]]),
        "answered_at": instants(np.where(is_answered, answer[np.maximum(answer_leg, 0)], 0), ~is_answered),
        "ended_at": instants(ended),
        "disposition": pa.array(np.array(DISPOSITIONS, dtype=object)[call_disposition], type=pa.string()),
        "queued_at": instants(np.where(queued_min == np.iinfo(np.int64).max, 0, queued_min),
                              queued_min == np.iinfo(np.int64).max),
        "first_line": pa.array(seg.min(pos(line)), type=pa.int64()),
        "legs": pa.array(np.diff(np.r_[seg.first, n]), type=pa.int64()),
        "basis": pa.array(np.array(_BASES, dtype=object)[basis], type=pa.string()),
        "origin_channel": legs.column("channel").combine_chunks().take(pa.array(origin)),
    }, schema=CALLS_SCHEMA)
    table = table.take(pc.sort_indices(table.column("first_line")))
    return CollapsedCalls(table, client_id)
