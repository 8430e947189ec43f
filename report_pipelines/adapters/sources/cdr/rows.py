"""What every CDR reader yields, and the byte-level reading they share.

A reader turns a binary stream into one item per non-blank physical line: a :class:`ParsedRow`
(the leg and its raw text) or a :class:`RejectedRow` (why not, and the raw text). Lines are read as
bytes and decoded one by one, so a line with invalid UTF-8 is rejected on its own instead of
stopping the file or being decoded into something it did not say; a row is one physical line
(a quoted field never spans lines), so a stray quote cannot swallow the rest of the file.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pyarrow as pa

import codecs
import csv
import datetime as dt
import re
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from typing import BinaryIO

from report_pipelines.domain.calls import MAX_TEXT, Disposition
from report_pipelines.domain.cdr import Leg
from report_pipelines.domain.errors import InvalidInput

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


#: Single-byte code pages a legacy PBX export is detected in (``--encoding`` can name any other).
DETECTED_CODE_PAGES = ("cp1252", "cp1251", "cp866", "koi8_r")
_MIXED_WORD = re.compile(r"[A-Za-z][\u0370-\u052f]|[\u0370-\u052f][A-Za-z]")


def detect_code_page(sample: bytes) -> str | None:
    """The single-byte code page (of :data:`DETECTED_CODE_PAGES`) these non-UTF-8 bytes read best in.

    charset-normalizer ranks the candidates; one that would put Cyrillic or Greek letters inside a
    Latin word (``Josй`` for a Latin-1 ``José``) is passed over."""
    if not sample:
        return None
    from charset_normalizer import from_bytes

    matches = list(from_bytes(sample, cp_isolation=list(DETECTED_CODE_PAGES)))
    for match in matches:
        if not _MIXED_WORD.search(str(match)):
            return match.encoding
    return matches[0].encoding if matches else None


def sample_undecodable(stream: BinaryIO, limit: int = 64 * 1024, block: int = 1 << 22) -> bytes:
    """Up to ``limit`` bytes of the lines of ``stream`` that are not UTF-8 (the whole file is scanned,
    block by block; a block that decodes is skipped at C speed). The stream is rewound."""
    found = bytearray()
    carry = b""
    while len(found) < limit:
        data = stream.read(block)
        if data:
            data = carry + data
            cut = data.rfind(b"\n") + 1
            if cut == 0:
                carry = data
                continue
            head, carry = data[:cut], data[cut:]
        else:
            head, carry = carry, b""
        if not head:
            break
        try:
            head.decode("utf-8")
        except UnicodeDecodeError:
            for line in head.split(b"\n"):
                try:
                    line.decode("utf-8")
                except UnicodeDecodeError:
                    found += line + b"\n"
        if not data:
            break
    stream.seek(0)
    return bytes(found[:limit])


class Decoder:
    """Decodes a file's lines: UTF-8, and a line that is not UTF-8 in the fallback code page
    (``--encoding``, else the one detected from the file's non-UTF-8 lines). ``encoding`` forces
    one encoding for every line. Counts what was decoded how (:attr:`counts`)."""

    def __init__(self, encoding: str | None = None, fallback: str | None = None, detected: bool = False) -> None:
        self.encoding = encoding
        self.fallback = fallback
        self.detected = detected
        self.counts: Counter[str] = Counter()

    def decode(self, data: bytes) -> str | UnicodeDecodeError:
        if self.encoding is not None:
            try:
                text = data.decode(self.encoding)
            except UnicodeDecodeError as exc:
                return exc
            self.counts[self.encoding] += 1
            return text
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            if self.fallback is None:
                return exc
            try:
                text = data.decode(self.fallback)
            except UnicodeDecodeError:
                return exc
            self.counts[self.fallback] += 1
            return text
        self.counts["utf-8"] += 1
        return text

    def describe(self) -> str:
        """``35 lines UTF-8, 3 lines cp1251 (detected)``."""
        parts = []
        for name, count in sorted(self.counts.items(), key=lambda kv: (kv[0] != "utf-8", kv[0])):
            how = " (detected)" if name == self.fallback and self.detected else " (--encoding)" if name == self.encoding else ""
            parts.append(f"{count} lines {'UTF-8' if name == 'utf-8' else name}{how}")
        return ", ".join(parts) or "no lines"


def numbered_lines(stream: BinaryIO, decoder: Decoder | None = None, start: int = 0
                   ) -> Iterator[tuple[int, str] | RejectedRow]:
    """``(line number, text)`` per non-blank line, or a :class:`RejectedRow` for a line that cannot
    be decoded (shown in the rejects file with ``\\xNN`` escapes). A UTF-8 BOM is skipped. Lines are
    UTF-8, or in the :class:`Decoder`'s fallback code page. ``start``: the lines before the stream's
    first one (a part of a file read from the middle)."""
    decoder = decoder or Decoder()
    number = start
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
        text = decoder.decode(data)
        if isinstance(text, UnicodeDecodeError):
            exc = text
            what = decoder.encoding or "UTF-8"
            hint = "" if decoder.encoding else " (and no fallback code page: pass --encoding)"
            yield RejectedRow(number, f"not valid {what}: byte 0x{data[exc.start]:02x} at byte {exc.start + 1} of the line{hint}",
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
_FORMAT_LETTERS = re.compile(r"(?<!%)\b([dmYyHMSIpbBf])\b")


class DateFormat:
    """How a file writes its date-times: ``iso`` (``2024-03-10 09:15:02``, Asterisk's own) or a
    strptime format (``--date-format '%d/%m/%Y %H:%M:%S'``; ``d/m/Y H:M:S`` means the same)."""

    def __init__(self, spec: str | None = None, field: str = "--date-format") -> None:
        spec = (spec or "iso").strip()
        if spec.lower() == "iso":
            self.strptime: str | None = None
        else:
            if "%" not in spec:
                spec = _FORMAT_LETTERS.sub(r"%\1", spec)
            if not re.search(r"%[dmYyjbB]", spec) or not re.search(r"%[HI]", spec):
                raise InvalidInput(field, f"{spec!r} needs a date and an hour (e.g. '%d/%m/%Y %H:%M:%S' or 'd/m/Y H:M:S')")
            try:
                dt.datetime.strptime(dt.datetime(2024, 3, 9, 9, 15, 2).strftime(spec), spec)
            except ValueError as exc:
                raise InvalidInput(field, f"{spec!r} is not a date format: {exc}") from exc
            self.strptime = spec
        self.spec = spec

    @property
    def arrow(self) -> str:
        """The format for ``pyarrow.compute.strptime``."""
        return self.strptime or "%Y-%m-%d %H:%M:%S"

    def example(self) -> str:
        return dt.datetime(2024, 3, 10, 9, 15, 2).strftime(self.arrow)

    def parse(self, value: str) -> dt.datetime | None:
        if self.strptime is None:
            if _ASTERISK_TIME.fullmatch(value):
                try:
                    return dt.datetime.fromisoformat(value)
                except ValueError:
                    return None
            return None
        try:
            return dt.datetime.strptime(value, self.strptime)
        except ValueError:
            return None


ISO = DateFormat()


def asterisk_time(value: str, column: str, problems: list[str], *, required: bool,
                  fmt: DateFormat = ISO) -> dt.datetime | None:
    """A naive date-time in ``fmt``; an empty field is None (or a problem when required)."""
    value = value.strip()
    if not value:
        if required:
            problems.append(f"{column}: empty")
        return None
    parsed = fmt.parse(value)
    if parsed is not None:
        return parsed
    problems.append(f"{column}: {value!r} is not a date-time like {fmt.example()}"
                    + ("" if fmt.strptime else " (another format? pass --date-format)"))
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
    uniqueid = row.get("uniqueid", "").strip() or None
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


# --- batches --------------------------------------------------------------------------------------
@dataclass(slots=True)
class LegBatch:
    """What a reader hands the import per block: the legs read (``LEG_SCHEMA`` plus ``raw``, the
    line), the rows rejected, how many rows were read and how far into the file."""

    legs: pa.Table
    rejects: list[RejectedRow]
    rows: int
    position: int


def legs_with_raw(parsed: list[ParsedRow]) -> pa.Table:
    import pyarrow as pa

    from report_pipelines.domain.cdr_collapse import legs_table

    table = legs_table([row.leg for row in parsed])
    return table.append_column("raw", pa.array([row.raw for row in parsed], type=pa.string()))


def batched(rows: Iterator[Row], stream: BinaryIO, clock=None, size: int = 20_000) -> Iterator[LegBatch]:
    """Rows of a line-by-line reader, grouped into :class:`LegBatch` es (the clock check sees every
    leg with an epoch)."""
    parsed: list[ParsedRow] = []
    rejects: list[RejectedRow] = []
    count = 0
    for row in rows:
        count += 1
        if type(row) is ParsedRow:
            parsed.append(row)
            leg = row.leg
            if clock is not None and leg.epoch is not None and leg.local_start is not None:
                clock.observe(leg.local_start, leg.started_at, leg.epoch)
        else:
            rejects.append(row)
        if count >= size:
            yield LegBatch(legs_with_raw(parsed), rejects, count, stream.tell())
            parsed, rejects, count = [], [], 0
    yield LegBatch(legs_with_raw(parsed), rejects, count, stream.tell())
