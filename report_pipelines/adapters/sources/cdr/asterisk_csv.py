"""Asterisk ``cdr_csv`` (``Master.csv``): no header; the 16 standard columns, then what cdr.conf adds.

Columns, as ``cdr_csv`` writes them: accountcode, src, dst, dcontext, clid, channel, dstchannel,
lastapp, lastdata, start, answer, end, duration, billsec, disposition, amaflags; then ``uniqueid``
(``loguniqueid=yes``), ``userfield`` (``loguserfield=yes``), and ``peeraccount``, ``linkedid``,
``sequence`` (``newcdrcolumns=yes``). Strings are quoted (inner quotes doubled), numbers are not.
Times are naive ``YYYY-MM-DD HH:MM:SS`` in the PBX's zone (or UTC with ``usegmtime``; another
format with ``--date-format``); ``answer`` is empty on an unanswered leg.

**Layouts** (:func:`detect_layout`): the column count of the first rows says which columns are
there: 16; 17 (uniqueid, or userfield when the 17th does not look like a uniqueid); 18; 19
(peeraccount, linkedid, sequence); 20 (uniqueid or userfield, then those three); 21 (all); 22 and
more when the first 21 are the full layout (site-specific extra columns after it, ignored). Any
other shape is one error naming the column count and ``--columns`` (the names in order, ``-`` for
a column to ignore), never every row rejected one by one. So is a layout whose sampled rows mostly
fail on the same column (a date format: ``--date-format``).

**Lenient quoting** (:func:`split_fields`): a caller name with unescaped quotes (``""Bob" <201>"``)
breaks strict CSV. The columns are known, so the fields before and after the broken one are parsed
from both ends; when exactly one field is left in between, it is that field. When more is broken,
the row is rejected, with the call id recovered from the fields read from the end (so its call's
other legs are rejected with it).

The call id is ``linkedid``, else ``uniqueid``. Without either (16 columns), each row is its own
call, identified by ``<channel>@<start>`` (the channel's name carries a per-boot sequence number),
so re-importing it stays idempotent but its legs cannot be grouped.

**Fast path** (:func:`read_asterisk_csv`): blocks of the file go through Arrow's CSV reader with the
known layout and are checked and converted column by column (times to UTC with the zone database);
a row that fails any check, or whose local time falls in a DST change, is re-read by the careful
line reader (the rules above, :class:`~report_pipelines.domain.cdr.LocalTimes`), and a block Arrow
cannot split into exactly its lines (broken quoting, a wrong column count, bytes that are not UTF-8)
is read by the careful reader whole. Both give the same legs for the same line.
"""

from __future__ import annotations

import datetime as dt
import io
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import BinaryIO

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from report_pipelines.adapters.sources.cdr.rows import (
    ISO,
    DateFormat,
    Decoder,
    LegBatch,
    RejectedRow,
    Row,
    asterisk_leg,
    asterisk_time,
    batched,
    linked_call_id,
    numbered_lines,
    order_problems,
    text_field,
    whole_seconds,
)
from report_pipelines.domain.calls import INSTANT, MAX_TEXT, Disposition
from report_pipelines.domain.cdr import PBX_DISPOSITIONS, ClockCheck, LocalTimes, epoch_of_uniqueid, map_disposition
from report_pipelines.domain.cdr_collapse import LEG_SCHEMA
from report_pipelines.domain.errors import InvalidInput

UTC = dt.UTC

BASE: tuple[str, ...] = (
    "accountcode", "src", "dst", "dcontext", "clid", "channel", "dstchannel", "lastapp", "lastdata",
    "start", "answer", "end", "duration", "billsec", "disposition", "amaflags",
)
NEW_COLUMNS = ("peeraccount", "linkedid", "sequence")
COLUMNS: tuple[str, ...] = (*BASE, "uniqueid", "userfield", *NEW_COLUMNS)
MIN_COLUMNS, MAX_COLUMNS = 16, len(COLUMNS)
#: What ``--columns`` must name (the others may be left out or written ``-``).
REQUIRED = ("channel", "start", "end", "duration", "billsec", "disposition")
SAMPLE_ROWS = 200
#: A line strict CSV reads as it is: fields either quoted (inner quotes doubled) or free of quotes and commas.
WELL_FORMED = r'^(?:"(?:[^"\r\n]|"")*"|[^",\r\n]*)(?:,(?:"(?:[^"\r\n]|"")*"|[^",\r\n]*))*[\r\n]*$'
BLOCK_BYTES = 1 << 22
_ID = re.compile(r"(?:[\w.-]+-)?\d{9,10}\.\d+")


@dataclass(frozen=True)
class Layout:
    """The columns of a file, in order (``-`` = ignored), and how they were chosen."""

    names: tuple[str, ...]
    how: str

    def __len__(self) -> int:
        return len(self.names)

    @property
    def has_id(self) -> bool:
        return "uniqueid" in self.names or "linkedid" in self.names


def parse_columns(spec: str, field: str = "--columns") -> tuple[str, ...]:
    names = tuple(name.strip().lower() for name in spec.split(","))
    unknown = [n for n in names if n not in COLUMNS and n not in ("-", "")]
    if unknown:
        raise InvalidInput(field, f"unknown column(s) {', '.join(map(repr, unknown))} (known: {', '.join(COLUMNS)}; "
                                  "'-' for a column to ignore)")
    named = [n for n in names if n not in ("-", "")]
    repeated = sorted({n for n in named if named.count(n) > 1})
    if repeated:
        raise InvalidInput(field, f"names {', '.join(repeated)} twice")
    missing = [n for n in REQUIRED if n not in named]
    if missing:
        raise InvalidInput(field, f"must name {', '.join(missing)} (and uniqueid or linkedid to group legs)")
    return tuple(n if n else "-" for n in names)


def _looks_like_id(values: list[str]) -> bool:
    filled = [v.strip() for v in values if v.strip()]
    return bool(filled) and sum(bool(_ID.fullmatch(v)) for v in filled) >= 0.8 * len(filled)


def _digits(values: list[str]) -> bool:
    return bool(values) and sum(v.strip().isdigit() for v in values) >= 0.8 * len(values)


def layout_for(count: int, rows: list[list[str]]) -> Layout:
    """The layout of rows with ``count`` columns (see the module docstring), or one error."""
    column = lambda i: [r[i] for r in rows if len(r) > i]
    hint = ("name the columns in order with --columns (e.g. --columns "
            f"{','.join(COLUMNS[:min(count, MAX_COLUMNS)])}{',-' * max(0, count - MAX_COLUMNS)})")
    if count < MIN_COLUMNS:
        raise InvalidInput("FILE", f"rows have {count} columns; Master.csv rows have {MIN_COLUMNS} to {MAX_COLUMNS} "
                                   "(a database export with a header? use --format asterisk-db); or " + hint)
    if count == 16:
        return Layout(BASE, "16 columns (no uniqueid: every row is its own call)")
    if count == 17:
        if _looks_like_id(column(16)):
            return Layout((*BASE, "uniqueid"), "17 columns (+ uniqueid)")
        return Layout((*BASE, "userfield"), "17 columns (+ userfield; no uniqueid: every row is its own call)")
    if count == 18:
        return Layout((*BASE, "uniqueid", "userfield"), "18 columns (+ uniqueid, userfield)")
    if count == 19:
        return Layout((*BASE, *NEW_COLUMNS), "19 columns (+ peeraccount, linkedid, sequence)")
    if count == 20:
        first = "uniqueid" if _looks_like_id(column(16)) else "userfield"
        return Layout((*BASE, first, *NEW_COLUMNS), f"20 columns (+ {first}, peeraccount, linkedid, sequence)")
    if _looks_like_id(column(16)) and _looks_like_id(column(19)) and _digits(column(20)):
        extra = count - MAX_COLUMNS
        how = (f"{count} columns (the 21 standard + {extra} site-specific, ignored)" if extra else
               "21 columns (+ uniqueid, userfield, peeraccount, linkedid, sequence)")
        return Layout((*COLUMNS, *("-",) * extra), how)
    raise InvalidInput("FILE", f"rows have {count} columns and the 21 standard ones are not at the start "
                               f"(column 17 should be uniqueid, 20 linkedid, 21 sequence): {hint}")


def detect_layout(sample: list[tuple[int, str]], columns: tuple[str, ...] | None) -> Layout:
    """The layout from ``--columns`` or from the column count most sampled rows have."""
    rows = [fields for _, text in sample if (fields := split_fields(text)) is not None]
    if columns is not None:
        return Layout(columns, f"{len(columns)} columns (--columns)")
    if not rows:
        raise InvalidInput("FILE", "no row of the first ones could be read as CSV (is it a cdr_csv Master.csv?)")
    counts: dict[int, int] = {}
    for r in rows:
        counts[len(r)] = counts.get(len(r), 0) + 1
    count = max(counts, key=lambda c: (counts[c], c))
    return layout_for(count, [r for r in rows if len(r) == count])


# --- splitting ------------------------------------------------------------------------------------
def _take_fields(text: str, limit: int) -> tuple[list[str], int]:
    """Well-formed fields from the start of ``text`` (at most ``limit``), and where parsing stopped
    (``len(text) + 1`` when the whole line was read)."""
    fields: list[str] = []
    n, p = len(text), 0
    while p <= n and len(fields) < limit:
        if p < n and text[p] == '"':
            q, parts = p + 1, []
            while True:
                i = text.find('"', q)
                if i < 0:
                    return fields, p
                if i + 1 < n and text[i + 1] == '"':
                    parts.append(text[q:i + 1])
                    q = i + 2
                    continue
                if i + 1 == n or text[i + 1] == ",":
                    parts.append(text[q:i])
                    fields.append("".join(parts))
                    p = i + 2
                    break
                return fields, p
        else:
            i = text.find(",", p)
            i = n if i < 0 else i
            if '"' in text[p:i]:
                return fields, p
            fields.append(text[p:i])
            p = i + 1
    return fields, p


def split_fields(text: str) -> list[str] | None:
    """The fields of a well-formed cdr_csv line, or None."""
    fields, stop = _take_fields(text, 10_000)
    return fields if stop == len(text) + 1 else None


def split_lenient(text: str, expected: int) -> tuple[list[str] | None, list[str]]:
    """``(fields, tail)``: the ``expected`` fields of a line whose one broken field is recovered
    between the well-formed ones read from both ends (fields None when that is not possible), and
    the fields read from the end (to recover a call id from)."""
    left, lstop = _take_fields(text, expected)
    reversed_fields, rstop = _take_fields(text[::-1], expected)
    right = [f[::-1] for f in reversed(reversed_fields)]
    n = len(text)
    if lstop == n + 1 and len(left) == expected:
        return left, right
    middle_end = n - rstop
    if len(left) + len(right) == expected - 1 and lstop <= middle_end + 1:
        middle = text[lstop:max(lstop, middle_end)]
        if middle.startswith('"') and middle.endswith('"') and len(middle) >= 2:
            middle = middle[1:-1]
        return [*left, middle.replace('""', '"'), *right], right
    return None, right


# --- the careful row reader -----------------------------------------------------------------------
class CarefulReader:
    """Reads one line by the rules of the module docstring (every reason named)."""

    def __init__(self, layout: Layout, times: LocalTimes, fmt: DateFormat = ISO) -> None:
        self.layout = layout
        self.times = times
        self.fmt = fmt
        self.recovered = 0

    def read(self, number: int, text: str) -> Row:
        expected = len(self.layout)
        fields = split_fields(text)
        tail: list[str] = []
        if fields is None:
            fields, tail = split_lenient(text, expected)
            if fields is not None:
                self.recovered += 1
        if fields is None:
            return RejectedRow(number, "malformed CSV: the quoting cannot be repaired (more than one broken field)",
                               text, self._id_from_tail(tail))
        layout = self.layout
        if len(fields) != expected:
            # A row of another standard layout (cdr.conf changed while the file grew) is read as such.
            if MIN_COLUMNS <= len(fields) <= MAX_COLUMNS and self.layout.how.endswith(")") and "--columns" not in layout.how:
                layout = layout_for(len(fields), [fields])
            else:
                return RejectedRow(number, f"wrong column count: {len(fields)} columns (Master.csv rows have "
                                           f"{MIN_COLUMNS} to {MAX_COLUMNS}; this file's: {self.layout.how})", text,
                                   self._id_from_tail(split_lenient(text, expected)[1]))
        row = {name: value for name, value in zip(layout.names, fields, strict=False) if name != "-"}
        for name in BASE:
            row.setdefault(name, "")
        return self._row(number, text, row)

    def _id_from_tail(self, tail: list[str]) -> str | None:
        names = [n for n in self.layout.names]
        found: dict[str, str] = {}
        for name, value in zip(reversed(names), reversed(tail), strict=False):
            found[name] = value.strip()
        return found.get("linkedid") or found.get("uniqueid") or None

    def _row(self, number: int, text: str, row: dict[str, str]) -> Row:
        problems: list[str] = []
        uniqueid: str | None = None
        if "uniqueid" in row or "linkedid" in row:
            call_id, uniqueid = linked_call_id(row, problems)
        else:
            channel = row["channel"].strip()
            call_id = f"{channel}@{row['start'].strip()}" if channel else ""
            if not channel:
                problems.append("channel: empty (without uniqueid the call id is <channel>@<start>)")
            elif len(call_id) > MAX_TEXT:
                problems.append(f"channel: longer than {MAX_TEXT - 20} characters (the call id is <channel>@<start>)")
                call_id = ""

        start_local = asterisk_time(row["start"], "start", problems, required=True, fmt=self.fmt)
        answer_local = asterisk_time(row["answer"], "answer", problems, required=False, fmt=self.fmt)
        end_local = asterisk_time(row["end"], "end", problems, required=True, fmt=self.fmt)
        duration = whole_seconds(row["duration"], "duration", problems)
        billsec = whole_seconds(row["billsec"], "billsec", problems)
        disposition: Disposition | None = None
        try:
            disposition = map_disposition(row["disposition"])
        except InvalidInput as exc:
            problems.append(str(exc))
        src = text_field(row["src"], "src", problems)
        dst = text_field(row["dst"], "dst", problems)

        epoch = epoch_of_uniqueid(uniqueid)
        times = self.times
        start = answer = end = None
        if start_local is not None and end_local is not None and duration is not None and billsec is not None:
            try:
                start = times.to_utc(start_local, "start",
                                     expected=dt.datetime.fromtimestamp(epoch, UTC) if epoch is not None else None)
                end = times.to_utc(end_local, "end", expected=start + dt.timedelta(seconds=duration), not_before=start)
                if answer_local is not None:
                    answer = times.to_utc(answer_local, "answer", expected=end - dt.timedelta(seconds=billsec),
                                          not_before=start)
            except InvalidInput as exc:
                problems.append(str(exc))
        if start is not None and end is not None and (end < start or (answer is not None and not start <= answer <= end)):
            problems.extend(order_problems(start, answer, end, {n: row[n].strip() for n in ("start", "answer", "end")}))

        if problems or start is None or end is None or disposition is None:
            return RejectedRow(number, "; ".join(problems), text, call_id or None)
        if disposition is not Disposition.ANSWERED:
            answer = None  # an unanswered leg's answer (the caller's side, answered by a queue) is not the leg's
        return asterisk_leg(number, text, row, call_id=call_id, uniqueid=uniqueid, started_at=start, ended_at=end,
                            answered_at=answer, disposition=disposition, src=src, dst=dst, local_start=start_local,
                            epoch=epoch)


def sample_lines(stream: BinaryIO, decoder: Decoder, rows: int = SAMPLE_ROWS) -> list[tuple[int, str]]:
    """The first ``rows`` decodable lines (the stream is rewound)."""
    found: list[tuple[int, str]] = []
    probe = Decoder(decoder.encoding, decoder.fallback, decoder.detected)
    for item in numbered_lines(stream, probe):
        if isinstance(item, tuple):
            found.append(item)
            if len(found) >= rows:
                break
    stream.seek(0)
    return found


def check_sample(sample: list[tuple[int, str]], reader: CarefulReader) -> None:
    """One error when most sampled rows cannot even be parsed with the layout (a time, a number or a
    disposition where the layout puts it does not read): a wrong layout or date format guess."""
    if len(sample) < 5:
        return
    symptoms = ("is not a date-time", "is not a whole number", "unknown disposition", "wrong column count")
    rejected = [row for row in (reader.read(n, t) for n, t in sample)
                if isinstance(row, RejectedRow) and any(s in row.reason for s in symptoms)]
    if len(rejected) * 2 <= len(sample):
        return
    causes: dict[str, int] = {}
    for row in rejected:
        cause = row.reason.split(":", 1)[0]
        causes[cause] = causes.get(cause, 0) + 1
    cause, count = max(causes.items(), key=lambda kv: kv[1])
    example = next(r.reason for r in rejected if r.reason.startswith(cause))
    fix = ("pass --date-format (e.g. --date-format 'd/m/Y H:M:S')" if cause in ("start", "answer", "end")
           else "name the columns in order with --columns")
    raise InvalidInput("FILE", f"{len(rejected)} of the first {len(sample)} rows fail with the layout "
                               f"{reader.layout.how}, {count} on {cause!r} ({example}): {fix}; nothing was imported")


# --- the fast path --------------------------------------------------------------------------------
class FastBlocks:
    """Arrow's CSV reader over whole blocks, checked column by column (see the module docstring)."""

    def __init__(self, layout: Layout, times: LocalTimes, fmt: DateFormat, clock: ClockCheck | None,
                 careful: CarefulReader, decoder: Decoder) -> None:
        self.layout, self.times, self.fmt, self.clock, self.careful, self.decoder = layout, times, fmt, clock, careful, decoder
        self.names = [n if n != "-" else f"_ignored_{i}" for i, n in enumerate(layout.names)]
        self.zone = times.name
        self.fast_rows = 0
        self.careful_rows = 0

    def _careful_lines(self, block: bytes, first_line: int, position: int) -> LegBatch:
        stream = io.BytesIO(block)
        rows = []
        for item in numbered_lines(stream, self.decoder):
            if isinstance(item, RejectedRow):
                rows.append(RejectedRow(item.line + first_line - 1, item.reason, item.raw, item.call_id))
            else:
                rows.append(self.careful.read(item[0] + first_line - 1, item[1]))
        self.careful_rows += len(rows)
        [batch] = list(batched(iter(rows), stream, self.clock, size=len(rows) + 1))
        return LegBatch(batch.legs, batch.rejects, batch.rows, position)

    def read(self, block: bytes, first_line: int, position: int) -> LegBatch:
        """The legs of ``block`` (whole lines; the first is line ``first_line`` of the file)."""
        if not block.endswith(b"\n"):
            block += b"\n"
        if b"\x00" in block or first_line == 1 and block.startswith(b"\xef\xbb\xbf"):
            return self._careful_lines(block, first_line, position)
        try:
            block.decode("utf-8")
        except UnicodeDecodeError:
            return self._careful_lines(block, first_line, position)
        data = np.frombuffer(block, dtype=np.uint8)
        ends = np.flatnonzero(data == 10)
        starts = np.r_[0, ends[:-1] + 1]
        content_end = ends - ((ends > starts) & (data[np.maximum(ends - 1, 0)] == 13))
        nonblank = np.flatnonzero(content_end > starts)
        invalid: list[int] = []
        try:
            table = pacsv.read_csv(
                io.BytesIO(block),
                read_options=pacsv.ReadOptions(column_names=self.names, use_threads=False, block_size=len(block) + 1),
                parse_options=pacsv.ParseOptions(invalid_row_handler=lambda row: invalid.append(1) or "skip"),
                convert_options=pacsv.ConvertOptions(column_types={n: pa.string() for n in self.names},
                                                     strings_can_be_null=False, quoted_strings_can_be_null=False),
            )
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            return self._careful_lines(block, first_line, position)
        if invalid or table.num_rows != len(nonblank):
            return self._careful_lines(block, first_line, position)
        return self._checked(table, block, data, starts[nonblank], content_end[nonblank], nonblank + first_line, position)

    def _checked(self, t: pa.Table, block: bytes, data: np.ndarray, starts: np.ndarray, ends: np.ndarray,
                 lines: np.ndarray, position: int) -> LegBatch:
        n = t.num_rows
        col = lambda name: t.column(name).combine_chunks() if name in t.column_names else pa.array([""] * n)
        trim = lambda name: pc.utf8_trim_whitespace(col(name))
        raw = _line_texts(block, starts, ends)
        # Only lines that strict CSV reads as they are (Arrow would read broken quoting its own way).
        ok = pc.match_substring_regex(raw, WELL_FORMED).to_numpy(zero_copy_only=False).copy()

        def np_(array: pa.Array) -> np.ndarray:
            return pc.fill_null(array, False).to_numpy(zero_copy_only=False)

        def local(name: str) -> tuple[pa.Array, np.ndarray]:
            text = trim(name)
            parsed = pc.strptime(text, format=self.fmt.arrow, unit="s", error_is_null=True)
            empty = np_(pc.equal(text, ""))
            if self.fmt.strptime is None:  # ISO: Asterisk writes exactly 19 characters
                parsed = pc.if_else(pc.equal(pc.utf8_length(text), 19), parsed, pa.scalar(None, parsed.type))
            return parsed, empty

        start_l, start_empty = local("start")
        end_l, end_empty = local("end")
        answer_l, answer_empty = local("answer")
        ok &= np_(pc.is_valid(start_l)) & np_(pc.is_valid(end_l)) & (np_(pc.is_valid(answer_l)) | answer_empty)

        wall_start = pc.fill_null(start_l.cast(pa.int64()), 0).to_numpy(zero_copy_only=False)
        known = wall_start[wall_start > 0]
        edges = _offset_changes(self.times.zone, int(known.min()) - 7 * 86400, int(known.max()) + 7 * 86400) \
            if len(known) else []

        def to_utc(naive: pa.Array) -> tuple[np.ndarray, np.ndarray]:
            """Epoch microseconds, and False where the wall time lies near a change of the zone's
            offset (a DST gap or overlap: the careful reader decides those)."""
            wall = pc.fill_null(naive.cast(pa.int64()), 0).to_numpy(zero_copy_only=False)
            if not edges:  # one offset for the whole block: plain arithmetic
                offset = self.times.zone.utcoffset(dt.datetime.fromtimestamp(int(known.min()) if len(known) else 0, UTC)
                                                  .replace(tzinfo=None)) if self.zone != "UTC" else dt.timedelta(0)
                return (wall - int(offset.total_seconds())) * 1_000_000, np.ones(n, dtype=bool)
            early = pc.assume_timezone(naive, timezone=self.zone, ambiguous="earliest", nonexistent="earliest")
            utc = pc.fill_null(early.cast(pa.int64()), 0).to_numpy(zero_copy_only=False) * 1_000_000
            plain = np.ones(n, dtype=bool)
            for edge in edges:  # wall times within 3 hours of a change
                plain &= np.abs(wall - edge) > 3 * 3600
            return utc, plain

        start, s_plain = to_utc(start_l)
        end, e_plain = to_utc(end_l)
        answer, a_plain = to_utc(answer_l)
        ok &= s_plain & e_plain & (a_plain | answer_empty)
        earliest = int(self.times.earliest.timestamp()) * 1_000_000
        latest = int(self.times.latest.timestamp()) * 1_000_000 if self.times.latest else np.iinfo(np.int64).max
        ok &= (start >= earliest) & (start <= latest) & (end <= latest) & (end >= start)
        has_answer = ~answer_empty
        ok &= ~has_answer | ((answer >= start) & (answer <= end))
        for name in ("duration", "billsec"):
            ok &= np_(pc.match_substring_regex(trim(name), r"^\d+$"))
        disposition_text = pc.utf8_upper(trim("disposition"))
        known = list(PBX_DISPOSITIONS)
        index = pc.index_in(disposition_text, value_set=pa.array(known))
        ok &= np_(pc.is_valid(index))
        ours = pa.array([PBX_DISPOSITIONS[k].value for k in known]).take(pc.fill_null(index, 0))
        answered = np_(pc.equal(ours, Disposition.ANSWERED.value))
        for name in ("src", "dst"):
            ok &= pc.fill_null(pc.utf8_length(col(name)), 0).to_numpy(zero_copy_only=False) <= MAX_TEXT

        uniqueid = trim("uniqueid") if "uniqueid" in t.column_names else pa.array([""] * n)
        linkedid = trim("linkedid") if "linkedid" in t.column_names else pa.array([""] * n)
        if self.layout.has_id:
            call_id = pc.if_else(pc.equal(linkedid, ""), uniqueid, linkedid)
        else:
            channel = trim("channel")
            ok &= np_(pc.not_equal(channel, ""))
            call_id = pc.binary_join_element_wise(channel, trim("start"), "@")
        id_length = pc.utf8_length(call_id).to_numpy(zero_copy_only=False)
        ok &= (id_length > 0) & (id_length <= MAX_TEXT)

        good = np.flatnonzero(ok)
        bad = np.flatnonzero(~ok)
        keep = pa.array(good, type=pa.int64())
        null = pa.scalar(None, pa.string())
        as_null = lambda a: pc.if_else(pc.equal(a, ""), null, a)
        answered_at = np.where(answered & has_answer, answer, 0)
        legs = pa.Table.from_pydict({
            "line": pa.array(lines, type=pa.int64()),
            "call_id": call_id,
            "uniqueid": as_null(uniqueid),
            "started_at": pa.array(start, type=pa.int64()).cast(INSTANT),
            "answered_at": pa.array(answered_at, type=pa.int64(), mask=~(answered & has_answer)).cast(INSTANT),
            "ended_at": pa.array(end, type=pa.int64()).cast(INSTANT),
            "disposition": ours,
            "src": as_null(col("src")),
            "dst": as_null(col("dst")),
            "dcontext": col("dcontext"),
            "channel": col("channel"),
            "dstchannel": col("dstchannel"),
            "lastapp": col("lastapp"),
            "lastdata": col("lastdata"),
            "queue": pa.nulls(n, pa.string()),
            "agent": pa.nulls(n, pa.string()),
            "direction": pa.nulls(n, pa.string()),
            "queued_at": pa.nulls(n, INSTANT),
        }, schema=LEG_SCHEMA).take(keep)
        legs = legs.append_column("raw", raw.take(keep))
        self.fast_rows += len(good)
        self.decoder.counts["utf-8"] += len(good)
        if self.clock is not None and len(good):
            epochs = pc.extract_regex(uniqueid.take(keep), r"(?:^|-)(?P<e>\d{9,10})\.\d+$")
            epoch = pc.struct_field(epochs, [0])
            valid = pc.is_valid(epoch).to_numpy(zero_copy_only=False)
            e = pc.fill_null(epoch.cast(pa.int64()), 0).to_numpy(zero_copy_only=False)
            valid &= (e >= 946_684_800) & (e < 4_102_444_800)  # what epoch_of_uniqueid accepts
            if valid.any():
                local_us = pc.fill_null(start_l.take(keep).cast(pa.int64()), 0).to_numpy(zero_copy_only=False) * 1_000_000
                self.clock.observe_many(local_us[valid], start[good][valid], e[valid])
        rejects: list[RejectedRow] = []
        slow = [self.careful.read(int(lines[i]), block[starts[i]:ends[i]].decode("utf-8")) for i in bad.tolist()]
        self.careful_rows += len(slow)
        if slow:
            [extra] = list(batched(iter(slow), io.BytesIO(), self.clock, size=len(slow) + 1))
            rejects = extra.rejects
            if extra.legs.num_rows:
                legs = pa.concat_tables([legs, extra.legs.select(legs.column_names)])
        return LegBatch(legs, rejects, n, position)


def _offset_changes(zone: dt.tzinfo, low: int, high: int) -> list[int]:
    """Wall-clock epoch seconds (naive, as the file writes them) at which ``zone``'s UTC offset
    changes between ``low`` and ``high`` (checked hour by hour: offsets change on whole quarter
    hours, a gap or overlap lasts at least 30 minutes)."""
    if getattr(zone, "key", None) == "UTC" or zone is UTC:
        return []
    found: list[int] = []
    previous = None
    for hour in range(low - low % 3600, high + 3600, 3600):
        offset = dt.datetime.fromtimestamp(hour, UTC).astimezone(zone).utcoffset()
        if previous is not None and offset != previous:
            found.append(hour + int(offset.total_seconds()))
        previous = offset
    return found


def _line_texts(block: bytes, starts: np.ndarray, ends: np.ndarray) -> pa.Array:
    """Each line as an Arrow string over the block itself (no copy): value i runs from ``starts[i]``
    to the next line's start, so it carries its line end (and any blank lines after it); the
    rejects file strips them."""
    if not len(starts):
        return pa.array([], type=pa.string())
    offsets = np.r_[starts, len(block)].astype(np.int32)
    return pa.StringArray.from_buffers(len(starts), pa.py_buffer(offsets), pa.py_buffer(block))


def read_asterisk_csv(stream: BinaryIO, times: LocalTimes, *, decoder: Decoder | None = None,
                      columns: tuple[str, ...] | None = None, date_format: DateFormat = ISO,
                      clock: ClockCheck | None = None, fast: bool = True, block_bytes: int = BLOCK_BYTES,
                      info: dict | None = None) -> Iterator[LegBatch]:
    """The file's legs, block by block (see the module docstring). Raises one ``InvalidInput``
    before anything is read when the layout cannot be told or is evidently wrong."""
    decoder = decoder or Decoder()
    sample = sample_lines(stream, decoder)
    layout = detect_layout(sample, columns)
    careful = CarefulReader(layout, times, date_format)
    check_sample(sample, CarefulReader(layout, LocalTimes(times.zone, latest=times.latest), date_format))
    if info is not None:
        info["layout"] = layout
        info["careful"] = careful
    if not fast or decoder.encoding not in (None, "utf-8"):
        rows = (item if isinstance(item, RejectedRow) else careful.read(*item) for item in numbered_lines(stream, decoder))
        yield from batched(rows, stream, clock)
        return
    blocks = FastBlocks(layout, times, date_format, clock, careful, decoder)
    if info is not None:
        info["blocks"] = blocks
    line, carry = 1, b""
    while True:
        data = stream.read(block_bytes)
        if not data:
            if carry:
                yield blocks.read(carry, line, stream.tell())
            return
        data = carry + data
        cut = data.rfind(b"\n") + 1
        if cut == 0:  # no line end yet: read on
            carry = data
            continue
        block, carry = data[:cut], data[cut:]
        batch = blocks.read(block, line, stream.tell() - len(carry))
        line += block.count(b"\n")
        yield batch


__all__ = ["COLUMNS", "CarefulReader", "Layout", "detect_layout", "parse_columns", "read_asterisk_csv",
           "split_fields", "split_lenient"]
