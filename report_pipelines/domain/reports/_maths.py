"""Vectorised group maths shared by the reports: group codes, per-group counts/sums/maxima,
exact re-aggregation of day tables, and safe ratios. No Python loop per call."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from report_pipelines.domain.errors import InvalidInput


def group_codes(values: pa.ChunkedArray | pa.Array) -> tuple[np.ndarray, pa.Array]:
    """``(code per row, keys)``: keys sorted ascending (byte order) with null last; code indexes them."""
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks()
    encoded = pc.dictionary_encode(values, null_encoding="encode")
    order = pc.sort_indices(encoded.dictionary).to_numpy()  # nulls sort last (the default)
    rank = np.empty(len(order), dtype=np.int64)
    rank[order] = np.arange(len(order), dtype=np.int64)
    return rank[encoded.indices.to_numpy(zero_copy_only=False)], encoded.dictionary.take(pa.array(order))


def count(group: np.ndarray, mask: np.ndarray, groups: int) -> pa.Array:
    """Rows per group where ``mask`` holds (int64, zeros for none)."""
    return pa.array(np.bincount(group[mask], minlength=groups).astype(np.int64), type=pa.int64())


def total_seconds(group: np.ndarray, mask: np.ndarray, micros: np.ndarray, groups: int) -> pa.Array:
    """Sum per group of integer ``micros`` where ``mask`` holds, in float64 seconds (0.0 for none).

    The sum is taken over integers (exact in float64 below 2**53 us, 285 years), so it does not
    depend on row order; it is divided by 10**6 once.
    """
    sums = np.bincount(group[mask], weights=micros[mask].astype(np.float64), minlength=groups)
    return pa.array(sums / 1_000_000, type=pa.float64())


def max_seconds(group: np.ndarray, mask: np.ndarray, micros: np.ndarray, groups: int) -> pa.Array:
    """Maximum per group of ``micros`` where ``mask`` holds, in float64 seconds; null for none."""
    best = np.full(groups, np.iinfo(np.int64).min, dtype=np.int64)
    np.maximum.at(best, group[mask], micros[mask])
    empty = best == np.iinfo(np.int64).min
    return pa.array(np.where(empty, 0, best) / 1_000_000, type=pa.float64(), mask=empty)


def conform_days(days: pa.Table, fields: Sequence[pa.Field]) -> pa.Table:
    """The columns ``fields`` of concatenated day tables, cast to their stored types."""
    columns, present = [], {name: i for i, name in enumerate(days.column_names)}
    for f in fields:
        if f.name not in present:
            raise InvalidInput("days", f"column {f.name!r} is missing from the day tables")
        column = days.column(present[f.name])
        if column.type != f.type:  # most are stored as they are read: no cast (a call each, per column)
            if pa.types.is_dictionary(column.type):
                column = column.cast(column.type.value_type)
            column = column.cast(f.type)
        columns.append(column)
    return pa.Table.from_arrays(columns, schema=pa.schema(fields))


def sort_table(table: pa.Table, keys: Sequence[str]) -> pa.Table:
    """``table`` sorted ascending by ``keys``, nulls last."""
    if table.num_rows == 0 or _in_order(table, keys):  # the calls come sorted by start and id: no sort,
        return table                                   # no copy of every column
    order = pc.sort_indices(table, sort_keys=[(k, "ascending") for k in keys])  # nulls last (the default)
    positions = order.to_numpy()
    if (positions[1:] > positions[:-1]).all():  # a permutation that only rises: already in order
        return table
    return table.take(order)


def _comparable(column: pa.ChunkedArray) -> bool:
    """Whether comparing neighbours orders ``column`` as ``sort_indices`` does: no nulls (sorted last),
    no floats (NaN), no dictionaries."""
    t = column.type
    return column.null_count == 0 and (pa.types.is_integer(t) or pa.types.is_timestamp(t) or pa.types.is_date(t)
                                       or pa.types.is_string(t) or pa.types.is_large_string(t))


def _in_order(table: pa.Table, keys: Sequence[str]) -> bool:
    """True when every row is already at the place ``sort_indices`` by ``keys`` (ascending, stable)
    would put it: no neighbour out of order on the first key, nor on a later one where the earlier
    keys tie. Two passes over the keys' neighbours instead of a sort; False when it cannot tell."""
    n = table.num_rows
    tie = None  # neighbours equal on every key so far
    for key in keys:
        column = table.column(key)
        if not _comparable(column):
            return False
        later, earlier = column.slice(1), column.slice(0, n - 1)
        falls = pc.less(later, earlier)
        if pc.any(falls if tie is None else pc.and_(falls, tie)).as_py():
            return False
        equal = pc.equal(later, earlier)
        tie = equal if tie is None else pc.and_(tie, equal)
        if not pc.any(tie).as_py():
            return True
    return True  # rows equal on every key stay in their order: the sort is stable


def regroup(days: pa.Table, schema: pa.Schema, keys: Sequence[str], sums: Sequence[str],
            maxima: Sequence[str] = (), counted: str | None = None) -> pa.Table:
    """Re-aggregate day tables exactly: group by ``keys``, sum ``sums``, take the max of ``maxima``
    (null when every day's was null) and, when ``counted`` is given, count the merged rows into it.

    Returns ``schema`` (keys first), sorted by ``keys`` with nulls last.
    """
    stored = [schema.field(n) for n in (*keys, *sums, *maxima) if n != counted]
    table = conform_days(days, stored).combine_chunks()  # a period's rows are few: one chunk per column
    grouped = _regroup_numpy(table, schema, keys, sums, maxima, counted)
    return grouped if grouped is not None else _regroup_arrow(table, schema, keys, sums, maxima, counted)


def _regroup_arrow(table: pa.Table, schema: pa.Schema, keys: Sequence[str], sums: Sequence[str],
                   maxima: Sequence[str], counted: str | None) -> pa.Table:
    """:func:`regroup` by Arrow's hash aggregation (any key type, nulls among the sums)."""
    aggregations = [(n, "sum") for n in sums if n != counted] + [(n, "max") for n in maxima]
    if counted is not None:
        aggregations.append(([], "count_all"))
    grouped = table.group_by(list(keys), use_threads=False).aggregate(aggregations)
    names = {f"{n}_sum": n for n in sums} | {f"{n}_max": n for n in maxima}
    if counted is not None:
        names["count_all"] = counted
    grouped = grouped.rename_columns([names.get(n, n) for n in grouped.column_names])
    return sort_table(grouped.select(schema.names).cast(schema), keys)


def _key_type(t: pa.DataType) -> bool:
    """Key types whose :func:`group_codes` order is ``sort_indices``' order (no floats: NaN)."""
    return (pa.types.is_integer(t) or pa.types.is_string(t) or pa.types.is_large_string(t)
            or pa.types.is_date(t) or pa.types.is_timestamp(t))


def _regroup_numpy(table: pa.Table, schema: pa.Schema, keys: Sequence[str], sums: Sequence[str],
                   maxima: Sequence[str], counted: str | None) -> pa.Table | None:
    """:func:`regroup` in NumPy, the same table to the bit (Arrow's grouped sum adds in row order, as
    ``bincount`` does), without Arrow's per-call set-up of a hash aggregation (most of a cached period
    summary's computing: a few hundred rows). ``None`` when it cannot promise that: a key that is not
    an integer, text, date or timestamp, a measure that is not a number, a null in a summed column, a
    NaN among the maxima.

    The groups come out in key order: each key's codes rank its values as ``sort_indices`` does
    (nulls last), and the composite codes are ranked lexicographically, key after key."""
    n = table.num_rows
    if n == 0 or not keys:
        return None
    columns = {name: table.column(name) for name in (*sums, *maxima) if name != counted}
    if any(not _key_type(table.schema.field(k).type) for k in keys):
        return None
    if any(columns[name].null_count for name in sums if name != counted):
        return None
    if any(not (pa.types.is_integer(columns[name].type) or pa.types.is_floating(columns[name].type))
           for name in (*sums, *maxima) if name != counted):
        return None
    composite: np.ndarray | None = None
    for i, key in enumerate(keys):
        code, size = _key_codes(table.column(key))
        if composite is None:
            composite = code  # dense already
            continue
        composite = composite * size + code
        if i < len(keys) - 1:  # dense again before the next key: the composite stays below n * size <= n**2
            _, composite = np.unique(composite, return_inverse=True)
    _, first, group = np.unique(composite, return_index=True, return_inverse=True)
    groups = len(first)
    types = {f.name: f.type for f in schema}
    taken = pa.array(first)
    out: dict[str, pa.Array | pa.ChunkedArray] = {k: table.column(k).take(taken) for k in keys}
    for name in sums:
        if name == counted:
            continue
        values = columns[name].to_numpy()
        if np.issubdtype(values.dtype, np.integer):
            total = np.zeros(groups, dtype=np.int64)
            np.add.at(total, group, values.astype(np.int64, copy=False))  # exact, whatever the size
        else:
            total = np.bincount(group, weights=values.astype(np.float64, copy=False), minlength=groups)
        out[name] = pa.array(total, type=types[name])
    for name in maxima:
        column = columns[name]
        valid = (np.ones(n, dtype=bool) if column.null_count == 0
                 else column.is_valid().to_numpy(zero_copy_only=False))
        values = column.to_numpy(zero_copy_only=False)
        if np.issubdtype(values.dtype, np.floating):
            values = np.where(valid, values, 0.0)
            if np.isnan(values).any():
                return None
            best = np.full(groups, -np.inf)
        else:
            values = np.where(valid, values, 0).astype(np.int64)
            best = np.full(groups, np.iinfo(np.int64).min, dtype=np.int64)
        np.maximum.at(best, group[valid], values[valid])
        empty = np.bincount(group[valid], minlength=groups) == 0
        out[name] = pa.array(np.where(empty, 0, best), mask=empty, type=types[name])
    if counted is not None:
        out[counted] = pa.array(np.bincount(group, minlength=groups).astype(np.int64), type=types[counted])
    return pa.Table.from_arrays([out[f.name] for f in schema], schema=schema)  # every column built as its type


def _key_codes(column: pa.ChunkedArray | pa.Array) -> tuple[np.ndarray, int]:
    """``(dense code per row, number of values)``, the codes ranking the values as ``sort_indices``
    does (nulls last): :func:`group_codes`, or ``np.unique`` straight away for integers without nulls
    (no dictionary to build and sort)."""
    if pa.types.is_integer(column.type) and column.null_count == 0:
        values, code = np.unique(column.to_numpy(), return_inverse=True)
        return code, len(values)
    code, values = group_codes(column)
    return code, len(values)


def ratio(numerator: pd.Series | np.ndarray, denominator: pd.Series | np.ndarray) -> np.ndarray:
    """``numerator / denominator`` as float64, NaN where the denominator is 0 or missing."""
    num = np.asarray(numerator, dtype=np.float64)
    den = np.asarray(denominator, dtype=np.float64)
    out = np.full(np.broadcast(num, den).shape, np.nan)
    ok = np.isfinite(den) & (den != 0)
    np.divide(num, den, out=out, where=ok)
    return out


def arrow_frame(table: pa.Table, extra: dict[str, np.ndarray] | None = None) -> pd.DataFrame:
    """``table.to_pandas()`` (with the float64 columns ``extra`` after its own), built from the columns
    directly when every one converts as ``to_pandas`` would convert it: numbers, booleans without nulls
    and text (a few hundred rows: ``to_pandas``' pandas-metadata handling was half of presenting a
    period); any other column type takes ``to_pandas`` itself."""
    def plain(t: pa.DataType, nulls: int) -> bool:
        return (pa.types.is_floating(t) or (nulls == 0 and (pa.types.is_integer(t) or pa.types.is_boolean(t)))
                or pa.types.is_string(t) or pa.types.is_large_string(t))

    names = table.column_names
    if (table.schema.metadata or len(set(names)) < len(names)
            or not all(plain(c.type, c.null_count) for c in table.columns)):
        frame = table.to_pandas()
        for name, values in (extra or {}).items():
            frame[name] = np.asarray(values, dtype=np.float64)
        return frame
    data: dict[str, object] = {}
    for name, column in zip(names, table.columns, strict=True):
        t = column.type
        data[name] = (column.to_pandas() if pa.types.is_string(t) or pa.types.is_large_string(t)
                      else column.to_numpy(zero_copy_only=False))
    for name, values in (extra or {}).items():
        data[name] = np.asarray(values, dtype=np.float64)
    return pd.DataFrame(data)  # copied into its blocks, writable, as to_pandas gives them


def inbound_rates(frame: pd.DataFrame | pa.Table) -> pd.DataFrame:
    """Add the contact-centre rates of inbound traffic to ``frame`` (columns of hourly_volume or
    queue_performance; a DataFrame, or an Arrow table converted once at the end), each a ratio of re-aggregated sums/counts; NaN when the denominator is 0.

    * ``answer_rate`` = answered / offered
    * ``abandon_rate`` = abandoned / offered
    * ``missed_rate`` = missed / offered  (answered + abandoned + missed = offered)
    * ``service_level`` = answered_within_sl / (offered - abandoned_within_sl): the industry
      definition, short abandons (callers who hung up within the threshold) are not held against it
    * ``service_level_of_offered`` = answered_within_sl / offered: the strict variant
    * ``average_speed_of_answer`` = wait_seconds_sum / answered  (seconds)
    * ``average_talk_seconds`` = talk_seconds_sum / answered
    * ``average_abandon_wait_seconds`` = abandoned_wait_seconds_sum / abandoned
    """
    names = ("offered", "answered", "abandoned", "missed", "answered_within_sl", "abandoned_within_sl",
             "wait_seconds_sum", "talk_seconds_sum", "abandoned_wait_seconds_sum")
    if isinstance(frame, pa.Table):  # rates added in Arrow, one conversion to pandas (no per-column copies)
        c = {name: frame.column(name).to_numpy().astype(np.float64, copy=False) for name in names}
    else:
        c = {name: frame[name].to_numpy(dtype=np.float64) for name in names}
    rates = {
        "answer_rate": ratio(c["answered"], c["offered"]),
        "abandon_rate": ratio(c["abandoned"], c["offered"]),
        "missed_rate": ratio(c["missed"], c["offered"]),
        "service_level": ratio(c["answered_within_sl"], c["offered"] - c["abandoned_within_sl"]),
        "service_level_of_offered": ratio(c["answered_within_sl"], c["offered"]),
        "average_speed_of_answer": ratio(c["wait_seconds_sum"], c["answered"]),
        "average_talk_seconds": ratio(c["talk_seconds_sum"], c["answered"]),
        "average_abandon_wait_seconds": ratio(c["abandoned_wait_seconds_sum"], c["abandoned"]),
    }
    if isinstance(frame, pa.Table):
        kept = [name for name in frame.column_names if name not in rates]
        return arrow_frame(frame.select(kept), extra=rates)
    kept = frame.drop(columns=[name for name in rates if name in frame.columns])
    frame = pd.concat([kept, pd.DataFrame(rates, index=frame.index)], axis=1)  # one copy, not one per column
    return frame


#: The inbound measures every traffic report stores (``hourly_volume``, ``queue_performance``,
#: ``daily_summary``): counts, sums and maxima, defined once in :func:`inbound_measures`.
INBOUND_COUNTS = ("offered", "answered", "abandoned", "missed", "answered_within_sl", "abandoned_within_sl")
INBOUND_SUMS = ("wait_seconds_sum", "abandoned_wait_seconds_sum", "talk_seconds_sum")
INBOUND_MAXIMA = ("wait_seconds_max",)


def inbound_measures(c, group: np.ndarray, groups: int, service_level_seconds: int,
                     rows: np.ndarray | None = None) -> dict[str, pa.Array]:
    """The inbound counts, sums and maxima per group, over the inbound calls of ``c``.

    ``group`` gives each call's group code (``rows``: the positions of ``c`` it is for; every call
    by default). ``offered`` = inbound calls; ``answered`` / ``abandoned`` = inbound ANSWERED /
    ABANDONED; ``missed`` = the other inbound outcomes (NO ANSWER, BUSY, FAILED), so answered +
    abandoned + missed = offered; ``answered_within_sl`` = answered with wait <= the threshold
    (included); ``abandoned_within_sl`` = abandoned having waited at most the threshold;
    ``wait_seconds_sum`` / ``_max`` over the answered (answered_at - the wait's start, max null when
    none), ``abandoned_wait_seconds_sum`` over the abandoned (ended_at - the wait's start),
    ``talk_seconds_sum`` over the answered (ended_at - answered_at). The wait starts when the call
    entered the queue (``queued_at``, from the PBX's queue_log) when known, else when it started.
    """
    outcome, answered, wait, wait_w, talk_w, held_w = _inbound_parts(c, service_level_seconds)
    if rows is not None:
        outcome, answered, wait, wait_w, talk_w, held_w = (a[rows] for a in (outcome, answered, wait, wait_w, talk_w,
                                                                              held_w))
    per = np.bincount(group * 6 + outcome, minlength=groups * 6).reshape(groups, 6)

    def counts(values: np.ndarray) -> pa.Array:
        return pa.array(values.astype(np.int64), type=pa.int64())

    def seconds(weights: np.ndarray) -> pa.Array:  # integer microseconds summed in float64: exact below 2**53,
        # so the zeros of the calls outside the figure change nothing
        return pa.array(np.bincount(group, weights=weights, minlength=groups) / 1_000_000, type=pa.float64())

    return {
        "offered": counts(per[:, :5].sum(axis=1)),
        "answered": counts(per[:, 0] + per[:, 1]),
        "abandoned": counts(per[:, 2] + per[:, 3]),
        "missed": counts(per[:, 4]),
        "answered_within_sl": counts(per[:, 0]),
        "abandoned_within_sl": counts(per[:, 2]),
        "wait_seconds_sum": seconds(wait_w),
        "abandoned_wait_seconds_sum": seconds(held_w),
        "talk_seconds_sum": seconds(talk_w),
        "wait_seconds_max": max_seconds(group, answered, wait, groups),
    }


def _inbound_parts(c, service_level_seconds: int) -> tuple[np.ndarray, ...]:
    """Per call of ``c``: its outcome (0 answered within the threshold, 1 answered after it, 2 abandoned
    within it, 3 abandoned after it, 4 missed, 5 not inbound), whether it is an answered inbound call,
    its wait, and the float64 weights of the three sums (the call's figure, 0.0 outside it). Three
    reports ask for them on the same calls: computed once per view and threshold, kept beside it."""
    cache = c.__dict__.setdefault("_inbound_parts", {})
    if service_level_seconds not in cache:
        inbound = c.inbound
        answered, abandoned = inbound & c.answered, inbound & c.abandoned
        wait, talk, duration = c.wait_us, c.talk_us, c.held_us
        threshold_us = service_level_seconds * 1_000_000
        outcome = np.where(answered, wait > threshold_us, np.where(abandoned, 2 + (duration > threshold_us),
                                                                    np.where(inbound, 4, 5))).astype(np.int64)
        cache[service_level_seconds] = (
            outcome, answered, wait, np.where(answered, wait, 0).astype(np.float64),
            np.where(answered, talk, 0).astype(np.float64), np.where(abandoned, duration, 0).astype(np.float64))
    return cache[service_level_seconds]


def totals_frame(combined: pa.Table, sums: Sequence[str], maxima: Sequence[str] = ()) -> pa.Table:
    """One row: the sums of ``sums`` and the maxima of ``maxima`` over every row of ``combined``
    (a period table), the other columns null except a key column holding one value throughout
    (such as a single service-level threshold), which keeps it. The row a "totals" line shows."""
    columns = []
    for f in combined.schema:
        column = combined.column(f.name)
        if f.name in sums:
            value = pc.sum(column).as_py() if combined.num_rows else 0
            columns.append(pa.array([value if value is not None else 0], type=f.type))
        elif f.name in maxima:
            columns.append(pa.array([pc.max(column).as_py() if combined.num_rows else None], type=f.type))
        else:
            distinct = pc.unique(column).to_pylist() if combined.num_rows else []
            columns.append(pa.array([distinct[0] if len(distinct) == 1 else None], type=f.type))
    return pa.Table.from_arrays(columns, schema=combined.schema)


def unrated_if_mixed(frame: pd.DataFrame, combined: pa.Table) -> pd.DataFrame:
    """A totals row of inbound rates whose period mixed service-level thresholds (its
    ``service_level_seconds`` is null) cannot have a service level: "within 20 s" and "within 30 s"
    counts do not add. Sets both service-level rates to NaN then."""
    if combined.num_rows and "service_level_seconds" in frame and frame["service_level_seconds"].isna().all():
        frame[["service_level", "service_level_of_offered"]] = np.nan
    return frame
