"""The calls a report reads, their validity rules, and their NumPy view (shared by every report).

The rules live here once: :func:`problem_masks` is what screening rejects and what
:func:`prepare` refuses, so a report cannot be fed a row that screening would have thrown out.
"""

from __future__ import annotations

import datetime as dt
import functools
import threading
from dataclasses import dataclass, fields

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

# CALL_SCHEMA: the call columns reports read (the owner and ingest columns are screening's business).
from report_pipelines.domain.calls import CALL_SCHEMA, DISPOSITIONS, Direction, Disposition
from report_pipelines.domain.errors import InvalidInput
from report_pipelines.domain.reports._maths import group_codes
from report_pipelines.domain.reports.base import DayContext
from report_pipelines.domain.timezones import ensure_utc

#: Columns that may not be null in a call.
REQUIRED_COLUMNS = ("pbx_call_id", "direction", "started_at", "ended_at", "disposition")

_US = 1_000_000


def _column(table: pa.Table, name: str, target: pa.DataType) -> pa.ChunkedArray:
    if name not in table.column_names:
        raise InvalidInput("calls", f"column {name!r} is missing (calls need: {', '.join(CALL_SCHEMA.names)})")
    column = table.column(name)
    if pa.types.is_timestamp(target):
        if not pa.types.is_timestamp(column.type) or column.type.tz is None:
            raise InvalidInput(name, f"must be a time zone-aware timestamp (UTC instants), not {column.type}")
        return column.cast(target, safe=False)
    if pa.types.is_dictionary(column.type):
        column = column.cast(column.type.value_type)
    try:
        return column.cast(target)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
        raise InvalidInput(name, f"must be text, not {column.type}") from exc


#: Columns a call table may lack (read as null): ``queued_at`` exists only where a queue_log said it.
OPTIONAL_COLUMNS = ("queued_at",)


def conform_calls(calls: pa.Table) -> pa.Table:
    """The columns of :data:`CALL_SCHEMA`, cast to it (instants to ``timestamp[us, UTC]``)."""
    return pa.Table.from_arrays(
        [pa.chunked_array([pa.nulls(calls.num_rows, f.type)]) if f.name in OPTIONAL_COLUMNS and f.name not in calls.column_names
         else _column(calls, f.name, f.type) for f in CALL_SCHEMA], schema=CALL_SCHEMA)


def epoch_us(column: pa.ChunkedArray) -> tuple[np.ndarray, np.ndarray]:
    """``(values, valid)``: microseconds since the epoch (0 where null) and the validity mask."""
    ints = column.cast(pa.int64())
    valid = np.ones(len(ints), dtype=bool) if ints.null_count == 0 else pc.is_valid(ints).to_numpy()
    return pc.fill_null(ints, 0).to_numpy(), valid


def _flag(values: pa.ChunkedArray) -> np.ndarray:
    return pc.fill_null(values, False).to_numpy()


def window_us(ctx: DayContext, start: dt.datetime | None = None, end: dt.datetime | None = None) -> tuple[int, int]:
    """The local day's ``[start, end)`` in epoch microseconds (``ctx``'s own window by default)."""
    own_start, own_end = ctx.window_utc
    start = ensure_utc(start if start is not None else own_start, "window_start_utc")
    end = ensure_utc(end if end is not None else own_end, "window_end_utc")
    epoch = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
    return (start - epoch) // dt.timedelta(microseconds=1), (end - epoch) // dt.timedelta(microseconds=1)


def problem_masks(calls: pa.Table, client_id: int, window: tuple[int, int], view: Calls | None = None) -> dict[str, np.ndarray]:
    """Every reason a row cannot be counted, as a boolean mask per reason, in precedence order
    (a row is reported under the first reason it meets). Duplicates are not looked for here.
    ``view`` is :func:`view_calls` of ``calls`` when the caller already has it."""
    v = view if view is not None else view_calls(calls)
    table = v.table
    masks: dict[str, np.ndarray] = {}
    if "client_id" in calls.column_names:
        owner = calls.column("client_id")
        masks["null_client_id"] = _flag(owner.is_null())
        masks["other_client"] = _flag(pc.not_equal(owner, pa.scalar(client_id, owner.type)))
    for name in REQUIRED_COLUMNS:
        column = table.column(name)
        masks[f"null_{name}"] = _flag(column.is_null()) if column.null_count else np.zeros(v.size, dtype=bool)
    masks["empty_pbx_call_id"] = _flag(pc.equal(table.column("pbx_call_id"), ""))
    masks["unknown_direction"] = ~(v.inbound | v.outbound | v.internal | v.unknown)
    masks["unknown_disposition"] = ~_flag(pc.is_in(table.column("disposition"), value_set=pa.array(DISPOSITIONS)))
    start, end, answer, has_answer = v.start_us, v.end_us, v.answer_us, v.has_answer
    masks["ends_before_start"] = end < start
    masks["answered_outside_call"] = has_answer & ((answer < start) | (answer > end))
    masks["answered_without_answer_time"] = v.answered & ~has_answer
    masks["answer_time_but_not_answered"] = has_answer & ~v.answered
    masks["outside_day"] = (start < window[0]) | (start >= window[1])
    return masks


def first_reason(masks: dict[str, np.ndarray], n: int) -> np.ndarray:
    """Per row, 1 + the index of the first reason it meets in ``masks``, or 0 when it meets none."""
    code = np.zeros(n, dtype=np.int64)
    ordered = list(masks.values())
    for index in range(len(ordered), 0, -1):  # reversed, so the first reason wins
        code[ordered[index - 1]] = index
    return code


def count_reasons(masks: dict[str, np.ndarray], n: int) -> tuple[np.ndarray, dict[str, int]]:
    """``(first-reason code per row, {reason: rows counted under it})`` (only reasons met)."""
    code = first_reason(masks, n)
    counts = np.bincount(code, minlength=len(masks) + 1)
    return code, {reason: int(counts[i + 1]) for i, reason in enumerate(masks) if counts[i + 1]}


@dataclass(frozen=True)
class Calls:
    """Screened calls of one client-day as NumPy arrays (microsecond instants) plus the table."""

    table: pa.Table  # conformed to CALL_SCHEMA
    start_us: np.ndarray
    end_us: np.ndarray
    answer_us: np.ndarray  # 0 where there is no answer
    has_answer: np.ndarray
    inbound: np.ndarray
    outbound: np.ndarray
    internal: np.ndarray
    unknown: np.ndarray  # direction "unknown": counted in no direction's figures
    answered: np.ndarray  # disposition ANSWERED (== has_answer once screened)
    abandoned: np.ndarray  # disposition ABANDONED
    wait_from_us: np.ndarray  # when waiting started: queued_at where the queue_log said it, else started_at

    @property
    def size(self) -> int:
        return self.table.num_rows

    def take(self, rows: np.ndarray) -> Calls:
        """The view of these rows (positions), as :func:`view_calls` of the table's rows would give."""
        return Calls(table=self.table.take(pa.array(rows, type=pa.int64())),
                     **{name: getattr(self, name)[rows] for name in _ARRAYS})

    def group_codes(self, name: str, rows: np.ndarray | None = None) -> tuple[np.ndarray, pa.Array]:
        """:func:`group_codes` of column ``name`` at ``rows`` (every row by default): the same codes and
        keys as encoding those rows alone, from one encoding of the whole column per view (the reports
        group the same queue and agent columns over different rows)."""
        cache = self.__dict__.setdefault("_codes", {})  # a frozen dataclass: its cache beside the fields
        if name not in cache:
            cache[name] = group_codes(self.table.column(name))
        code, keys = cache[name]
        if rows is None:
            return code, keys
        code = code[rows]
        present = np.bincount(code, minlength=len(keys)) > 0
        if present.all():
            return code, keys
        return (np.cumsum(present) - 1)[code], keys.filter(pa.array(present))

    # The derived durations: computed once per view (several reports read them); never written to.
    @functools.cached_property
    def wait_us(self) -> np.ndarray:
        """answer - wait start for answered calls, 0 otherwise (the wait start is the queue entry
        when a queue_log said it, else the call's start)."""
        return np.where(self.has_answer, self.answer_us - self.wait_from_us, 0)

    @functools.cached_property
    def held_us(self) -> np.ndarray:
        """end - wait start: how long an unanswered (abandoned) caller waited."""
        return self.end_us - self.wait_from_us

    @functools.cached_property
    def talk_us(self) -> np.ndarray:
        """end - answer for answered calls, 0 otherwise."""
        return np.where(self.has_answer, self.end_us - self.answer_us, 0)


def view_calls(calls: pa.Table) -> Calls:
    """:class:`Calls` of any call table (conformed, not checked)."""
    table = conform_calls(calls)
    start, _ = epoch_us(table.column("started_at"))
    end, _ = epoch_us(table.column("ended_at"))
    answer, has_answer = epoch_us(table.column("answered_at"))
    queued, has_queued = epoch_us(table.column("queued_at"))
    direction, disposition = table.column("direction"), table.column("disposition")
    return Calls(
        table=table,
        start_us=start,
        end_us=end,
        answer_us=answer,
        has_answer=has_answer,
        inbound=_flag(pc.equal(direction, Direction.INBOUND.value)),
        outbound=_flag(pc.equal(direction, Direction.OUTBOUND.value)),
        internal=_flag(pc.equal(direction, Direction.INTERNAL.value)),
        unknown=_flag(pc.equal(direction, Direction.UNKNOWN.value)),
        answered=_flag(pc.equal(disposition, Disposition.ANSWERED.value)),
        abandoned=_flag(pc.equal(disposition, Disposition.ABANDONED.value)),
        wait_from_us=np.where(has_queued, queued, start),
    )


#: The view's per-call arrays (every field but the table).
_ARRAYS = tuple(f.name for f in fields(Calls) if f.name != "table")

_last = threading.local()


def remember_checked(calls: pa.Table, ctx: DayContext, view: Calls) -> None:
    """Screening's word that ``calls`` (its clean table, this very object) pass every check of
    ``ctx``'s own day window, with their view: :func:`prepare` then neither conforms nor checks them again."""
    _last.value = (calls, ctx, view)


def prepare(calls: pa.Table, ctx: DayContext) -> Calls:
    """Conform and check the calls of ``ctx``'s day; refuse (``InvalidInput``) any row screening
    would reject (duplicates aside), so a report never counts a row that could corrupt the day.

    Every report of a client-day is computed from the same screened table: the view of the last
    table (the very same object, same day) is kept per thread, so a client-day is conformed and
    checked once, not once per report.
    """
    last = getattr(_last, "value", None)
    if last is not None and last[0] is calls and last[1] == ctx:
        return last[2]
    view = _checked_view(calls, ctx)
    _last.value = (calls, ctx, view)
    return view


def _checked_view(calls: pa.Table, ctx: DayContext) -> Calls:
    view = view_calls(calls)
    _, bad = count_reasons(problem_masks(calls, ctx.client_id, window_us(ctx), view), calls.num_rows)
    if bad:
        detail = ", ".join(f"{reason}: {count}" for reason, count in bad.items())
        raise InvalidInput("calls", f"calls must be screened for client {ctx.client_id} on {ctx.day} first ({detail})")
    return view


def seconds(microseconds: np.ndarray) -> np.ndarray:
    """Float seconds from integer (or integer-valued float) microseconds."""
    return np.asarray(microseconds, dtype=np.float64) / _US
