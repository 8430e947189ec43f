"""What every CDR reader yields, and the byte-level reading they share.

A reader turns a binary stream into one item per non-blank physical line: a :class:`ParsedRow`
(the leg and its raw text) or a :class:`RejectedRow` (why not, and the raw text). Lines are read as
bytes and decoded one by one, so a line with invalid UTF-8 is rejected on its own instead of
stopping the file or being decoded into something it did not say; a row is one physical line
(a quoted field never spans lines), so a stray quote cannot swallow the rest of the file.
"""

from __future__ import annotations

import codecs
import csv
import datetime as dt
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import BinaryIO

from report_pipelines.domain.calls import MAX_TEXT, Disposition
from report_pipelines.domain.cdr import Leg

#: A longer line is rejected without being held in memory whole.
MAX_LINE_BYTES = 1 << 20


@dataclass(frozen=True, slots=True)
class ParsedRow:
    line: int
    leg: Leg
    raw: str


@dataclass(frozen=True, slots=True)
class RejectedRow:
    """A row that cannot be imported: its line number, the reasons (naming the column) and its text.

    ``call_id`` is set when the row could still be tied to a call, so that the call's other legs are
    not imported as if this one had not existed.
    """

    line: int
    reason: str
    raw: str
    call_id: str | None = None


Row = ParsedRow | RejectedRow


def _shown(data: bytes) -> str:
    return data.decode("utf-8", "backslashreplace").replace("\x00", "\\x00")


def numbered_lines(stream: BinaryIO) -> Iterator[tuple[int, str] | RejectedRow]:
    """``(line number, text)`` per non-blank line, or a :class:`RejectedRow` for a line that is not
    UTF-8 text (shown in the rejects file with ``\\xNN`` escapes). A UTF-8 BOM is skipped."""
    number = 0
    while True:
        data = stream.readline(MAX_LINE_BYTES + 1)
        if not data:
            return
        number += 1
        if number == 1 and data.startswith(codecs.BOM_UTF8):
            data = data[len(codecs.BOM_UTF8):]
        if len(data) > MAX_LINE_BYTES and not data.endswith(b"\n"):
            rest = data
            while rest and not rest.endswith(b"\n"):
                rest = stream.readline(MAX_LINE_BYTES)
            yield RejectedRow(number, f"line longer than {MAX_LINE_BYTES} bytes", _shown(data[:200]) + "...")
            continue
        data = data.rstrip(b"\r\n")
        if not data.strip():
            continue
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            yield RejectedRow(number, f"not valid UTF-8: byte 0x{data[exc.start]:02x} at byte {exc.start + 1} of the line",
                              _shown(data))
            continue
        if "\x00" in text:
            yield RejectedRow(number, f"contains a NUL byte at character {text.index(chr(0)) + 1} (not text)", _shown(data))
            continue
        yield number, text


def split_csv(text: str, delimiter: str = ",") -> list[str]:
    """The fields of one CSV line (strict quoting: raises ``csv.Error``)."""
    return next(csv.reader((text,), delimiter=delimiter, strict=True))


_ASTERISK_TIME = re.compile(r"\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}(?:\.\d{1,6})?")


def asterisk_time(value: str, column: str, problems: list[str], *, required: bool) -> dt.datetime | None:
    """A naive ``YYYY-MM-DD HH:MM:SS`` time; an empty field is None (or a problem when required)."""
    value = value.strip()
    if not value:
        if required:
            problems.append(f"{column}: empty")
        return None
    if _ASTERISK_TIME.fullmatch(value):
        try:
            return dt.datetime.fromisoformat(value)
        except ValueError:
            pass
    problems.append(f"{column}: {value!r} is not a date-time like 2024-03-10 09:15:02")
    return None


def whole_seconds(value: str, column: str, problems: list[str]) -> int | None:
    value = value.strip()
    if value.isdigit():
        return int(value)
    problems.append(f"{column}: {value!r} is not a whole number of seconds")
    return None


def text_field(value: str, column: str, problems: list[str]) -> str | None:
    """The value, or None when empty; stored verbatim (formula-like caller ids included)."""
    if not value:
        return None
    if len(value) > MAX_TEXT:
        problems.append(f"{column}: longer than {MAX_TEXT} characters")
    return value


def order_problems(start: dt.datetime, answer: dt.datetime | None, end: dt.datetime,
                   shown: dict[str, str], names: tuple[str, str, str] = ("start", "answer", "end")) -> list[str]:
    """Reasons why start <= answer <= end does not hold, naming the columns and showing their text."""
    start_name, answer_name, end_name = names
    found: list[str] = []
    if end < start:
        found.append(f"{end_name}: {shown[end_name]} is before {start_name} {shown[start_name]}")
    if answer is not None:
        if answer < start:
            found.append(f"{answer_name}: {shown[answer_name]} is before {start_name} {shown[start_name]}")
        elif answer > end:
            found.append(f"{answer_name}: {shown[answer_name]} is after {end_name} {shown[end_name]}")
    return found


def linked_call_id(row: dict[str, str], problems: list[str]) -> tuple[str, str | None]:
    """An Asterisk leg's call id (``linkedid``, else ``uniqueid``) and its ``uniqueid``."""
    uniqueid = row["uniqueid"].strip() or None
    linkedid = row.get("linkedid", "").strip()
    call_id = linkedid or uniqueid or ""
    if not call_id:
        problems.append("uniqueid: empty (the call id is linkedid, else uniqueid)")
    elif len(call_id) > MAX_TEXT:
        problems.append(f"{'linkedid' if linkedid else 'uniqueid'}: longer than {MAX_TEXT} characters")
        call_id = ""
    return call_id, uniqueid


def asterisk_leg(number: int, text: str, row: dict[str, str], *, call_id: str, uniqueid: str | None,
                 started_at: dt.datetime, ended_at: dt.datetime, answered_at: dt.datetime | None,
                 disposition: Disposition, src: str | None, dst: str | None, local_start: dt.datetime,
                 epoch: int | None) -> ParsedRow:
    """The parsed row of one Asterisk CDR leg (Master.csv and the database export alike)."""
    leg = Leg(
        line=number, call_id=call_id, started_at=started_at, ended_at=ended_at, disposition=disposition,
        answered_at=answered_at, uniqueid=uniqueid, src=src, dst=dst, dcontext=row["dcontext"],
        channel=row["channel"], dstchannel=row["dstchannel"], lastapp=row["lastapp"], lastdata=row["lastdata"],
        local_start=local_start, epoch=epoch,
    )
    return ParsedRow(number, leg, text)
