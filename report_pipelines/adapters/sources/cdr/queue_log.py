"""Asterisk's ``/var/log/asterisk/queue_log`` (pipe-separated, epoch seconds): the events of
:mod:`report_pipelines.domain.queue_log`; a line that cannot be read is rejected with its reason and
never stops the file.

:func:`read_queue_log` reads 4 MB blocks with Arrow: a block that is UTF-8 without NUL bytes is split
into lines and fields by ``pyarrow.compute``, and a line whose fields all read plainly (five fields or
more, ASCII epoch seconds in range, an event name, ids within :data:`MAX_TEXT`) becomes an event row
there. Any other line, and every line of a block that is not plain UTF-8 (a legacy code page, a NUL, a
BOM, a line longer than ``MAX_LINE_BYTES``, ``--encoding``), goes through :func:`parse_event` line by
line, which gives the same events and the same rejects as :func:`read_queue_log_by_line` (the
reference, line by line; a test compares the two).
"""

from __future__ import annotations

import codecs
import io
from dataclasses import dataclass, field
from typing import BinaryIO

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from report_pipelines.adapters.sources.cdr.rows import MAX_LINE_BYTES, Decoder, RejectedRow, numbered_lines
from report_pipelines.domain.calls import MAX_TEXT
from report_pipelines.domain.errors import InvalidInput
from report_pipelines.domain.queue_log import _EPOCH_MAX, _EPOCH_MIN, QueueLog, parse_event
from report_pipelines.domain.queue_log_columns import (
    DATA_READ,
    EVENT_SCHEMA,
    QueueLogTables,
    build_queue_log,
    event_rows,
)

BLOCK_BYTES = 4 << 20
#: What ``str.strip()`` strips (every character whose ``isspace()`` is true).
PY_WHITESPACE = "\t\n\x0b\x0c\r\x1c\x1d\x1e\x1f \x85\xa0\u1680" + "".join(map(chr, range(0x2000, 0x200B))) + \
    "\u2028\u2029\u202f\u205f\u3000"
_BLANK = " \t\n\r\x0b\x0c"  # what bytes.strip() strips
_PLAIN_EPOCH = r"^[0-9]{9,10}(\.[0-9]{1,6})?$"


@dataclass
class QueueLogFile:
    log: QueueLogTables
    rejects: list[RejectedRow] = field(default_factory=list)
    rows: int = 0
    reference: QueueLog | None = None  # the event-by-event log (from read_queue_log_by_line only)


def read_queue_log_by_line(stream: BinaryIO, decoder: Decoder | None = None) -> QueueLogFile:
    """The reference: every line through :func:`parse_event` and :meth:`QueueLog.add`."""
    log, rejects, rows = QueueLog(), [], 0
    for item in numbered_lines(stream, decoder):
        rows += 1
        if isinstance(item, RejectedRow):
            rejects.append(item)
            continue
        number, text = item
        try:
            log.add(parse_event(number, text))
        except InvalidInput as exc:
            rejects.append(RejectedRow(number, str(exc), text))
    return QueueLogFile(log.tables(), rejects, rows, log)


class _Reader:
    def __init__(self, decoder: Decoder) -> None:
        self.decoder = decoder
        self.tables: list[pa.Table] = []
        self.careful: list = []  # events parsed line by line
        self.rejects: list[RejectedRow] = []
        self.rows = 0

    def line_by_line(self, stream: BinaryIO, start: int) -> None:
        for item in numbered_lines(stream, self.decoder, start):
            self.rows += 1
            if isinstance(item, RejectedRow):
                self.rejects.append(item)
                continue
            self.text(*item)

    def text(self, number: int, text: str) -> None:
        try:
            self.careful.append(parse_event(number, text))
        except InvalidInput as exc:
            self.rejects.append(RejectedRow(number, str(exc), text))

    def block(self, data: bytes, start: int) -> None:
        """The lines of ``data`` (whole lines), the first being line ``start + 1``."""
        plain = self.decoder.encoding is None and b"\x00" not in data and not (start == 0 and data.startswith(codecs.BOM_UTF8))
        if plain:
            try:
                data.decode("utf-8")
            except UnicodeDecodeError:
                plain = False
        if plain:
            ends = np.flatnonzero(np.frombuffer(data, dtype=np.uint8) == 10) + 1
            bounds = np.concatenate(([0], ends, [len(data)] if not data.endswith(b"\n") else [])).astype(np.int32)
            lengths = np.diff(bounds) - 1  # without the "\n" (the last line may have none)
            if not data.endswith(b"\n") and len(lengths):
                lengths[-1] += 1
            plain = not len(lengths) or int(lengths.max()) <= MAX_LINE_BYTES
        if not plain:
            self.line_by_line(io.BytesIO(data), start)
            return
        # One string a line, its "\n" included, over the block's bytes (no copy): rstrip(b"\r\n") takes it off.
        lines = pa.StringArray.from_buffers(len(bounds) - 1, pa.py_buffer(bounds.tobytes()), pa.py_buffer(data))
        number = pa.array(np.arange(start + 1, start + 1 + len(lines), dtype=np.int64))
        lines = pc.utf8_rtrim(lines, "\r\n")
        kept = pc.not_equal(pc.utf8_trim(lines, _BLANK), "")
        lines, number = lines.filter(kept), number.filter(kept)
        self.rows += len(lines)
        self.decoder.counts["utf-8"] += len(lines)
        self._fields(lines, number)

    def _fields(self, lines: pa.Array, number: pa.Array) -> None:
        parts = pc.split_pattern(lines, "|")
        count = pc.list_value_length(parts).to_numpy(zero_copy_only=False)
        offsets = parts.offsets.to_numpy()[:-1]
        values = parts.values

        taken: dict[int, pa.Array] = {}

        def nth(i: int, only: np.ndarray | None = None) -> pa.Array:
            """Field ``i`` of each line (null where the line has fewer, or where not ``only``)."""
            if i not in taken or only is not None:
                has = count > i if only is None else (count > i) & only
                found = values.take(pa.array(np.where(has, offsets + i, 0), mask=~has))
                if only is not None:
                    return found
                taken[i] = found
            return taken[i]

        enough = count >= 5
        epoch = pc.utf8_trim(nth(0), PY_WHITESPACE)
        event = pc.utf8_trim(nth(4), PY_WHITESPACE)
        ok = pc.and_(pa.array(enough), pc.match_substring_regex(epoch, _PLAIN_EPOCH))
        ok = pc.and_(ok, pc.match_substring_regex(event, r"^[A-Z_]+$"))
        for i in (1, 2, 3):
            ok = pc.and_(ok, pc.less_equal(pc.utf8_length(nth(i)), MAX_TEXT))
        ok = pc.fill_null(ok, False)
        epoch = pc.if_else(ok, epoch, "0000000000")
        if pc.any(pc.match_substring(epoch, ".")).as_py():  # fractions: seconds and microseconds apart, exactly
            whole = pc.extract_regex(epoch, r"^(?P<s>[0-9]+)(?:\.(?P<f>[0-9]*))?$")
            seconds = pc.cast(pc.struct_field(whole, "s"), pa.int64())
            fraction = pc.cast(pc.utf8_rpad(pc.fill_null(pc.struct_field(whole, "f"), ""), 6, "0"), pa.int64())
        else:
            seconds, fraction = pc.cast(epoch, pa.int64()), 0
        at = pc.add(pc.multiply(seconds, 1_000_000), fraction)
        ok = pc.and_(ok, pc.and_(pc.greater_equal(at, _EPOCH_MIN * 1_000_000), pc.less(at, _EPOCH_MAX * 1_000_000)))
        odd = np.flatnonzero(~ok.to_numpy(zero_copy_only=False))
        for i in odd:
            self.text(number[i].as_py(), lines[i].as_py())
        if len(odd) == len(lines):
            return
        columns = {"line": number, "at": at, "callid": pc.utf8_trim(nth(1), PY_WHITESPACE),
                   "queue": pc.utf8_trim(nth(2), PY_WHITESPACE), "agent": pc.utf8_trim(nth(3), PY_WHITESPACE),
                   "event": event, **{name: nth(5 + i, pc.fill_null(pc.is_in(event, value_set=pa.array(events)), False)
                                                .to_numpy(zero_copy_only=False))
                                      for i, (name, events) in enumerate(DATA_READ.items())}}
        table = pa.table(columns, schema=EVENT_SCHEMA)
        self.tables.append(table.filter(ok) if len(odd) else table)

    def events(self) -> pa.Table:
        found = [*self.tables, event_rows(self.careful)] if self.careful else self.tables
        return pa.concat_tables(found) if found else EVENT_SCHEMA.empty_table()


class _Joined:
    """``readline`` over some bytes already read, then the rest of the stream."""

    def __init__(self, head: bytes, stream: BinaryIO) -> None:
        self.head, self.stream = io.BytesIO(head), stream

    def readline(self, limit: int = -1) -> bytes:
        line = self.head.readline(limit)
        if line.endswith(b"\n") or (limit >= 0 and len(line) >= limit):
            return line
        return line + self.stream.readline(limit - len(line) if limit >= 0 else -1)


def read_queue_log(stream: BinaryIO, decoder: Decoder | None = None, block_bytes: int = BLOCK_BYTES) -> QueueLogFile:
    """The file's events as attempts, sessions and pauses, and its rejected lines (see the module docstring)."""
    reader = _Reader(decoder or Decoder())
    carry, lines = b"", 0
    while True:
        data = stream.read(block_bytes)
        if not data:
            if carry:
                reader.block(carry, lines)
            break
        data = carry + data
        cut = data.rfind(b"\n") + 1
        if cut == 0:
            if len(data) > MAX_LINE_BYTES:  # a line too long to hold: the rest of the file line by line
                reader.line_by_line(_Joined(data, stream), lines)
                carry = b""
                break
            carry = data
            continue
        reader.block(data[:cut], lines)
        lines += data.count(b"\n", 0, cut)
        carry = data[cut:]
    reader.rejects.sort(key=lambda r: r.line)
    return QueueLogFile(build_queue_log(reader.events()), reader.rejects, reader.rows)

