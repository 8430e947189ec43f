"""The Asterisk/FreePBX ``cdr`` table (database ``asteriskcdrdb``) exported to CSV with a header row.

Columns are found by header name (case-insensitive): calldate, clid, src, dst, dcontext, channel,
dstchannel, lastapp, lastdata, duration, billsec, disposition, amaflags, accountcode, uniqueid,
userfield, and optionally did, recordingfile, cnum, cnam, outbound_cnum, outbound_cnam, dst_cnam,
linkedid, peeraccount, sequence. Other columns are ignored.

There is no answer or end column: start = calldate, end = start + duration (computed in UTC, so a
call across a DST change keeps its real length), and an ANSWERED leg was answered at
end - billsec. An ANSWERED leg with billsec 0 (picked up and hung up within the second) is
answered at its end. A leg that is not ANSWERED but has billsec > 0 is normal (a queue member's
phone ringing while the caller's side was answered by the queue or an IVR): it is kept, unanswered.

A database dump without a header line is read with ``--columns`` naming its columns in order
(``-`` for one to ignore). Dates are ``YYYY-MM-DD HH:MM:SS`` unless ``--date-format`` says otherwise.
"""

from __future__ import annotations

import csv
import datetime as dt
import itertools
from collections.abc import Iterator
from typing import BinaryIO

from report_pipelines.adapters.sources.cdr.rows import (
    ISO,
    DateFormat,
    Decoder,
    RejectedRow,
    Row,
    asterisk_leg,
    asterisk_time,
    linked_call_id,
    numbered_lines,
    split_csv,
    text_field,
    whole_seconds,
)
from report_pipelines.domain.calls import Disposition
from report_pipelines.domain.cdr import LocalTimes, epoch_of_uniqueid, map_disposition
from report_pipelines.domain.errors import InvalidInput

UTC = dt.UTC

REQUIRED: tuple[str, ...] = (
    "calldate", "src", "dst", "dcontext", "channel", "dstchannel", "lastapp", "lastdata",
    "duration", "billsec", "disposition", "uniqueid",
)


def parse_db_columns(spec: str, field: str = "--columns") -> list[str]:
    names = [name.strip().lower() or "-" for name in spec.split(",")]
    missing = [name for name in REQUIRED if name not in names]
    if missing:
        raise InvalidInput(field, f"must name the column(s) {', '.join(missing)} of an asterisk-db export")
    named = [n for n in names if n != "-"]
    repeated = sorted({n for n in named if named.count(n) > 1})
    if repeated:
        raise InvalidInput(field, f"names {', '.join(repeated)} twice")
    return names


def read_asterisk_db(stream: BinaryIO, times: LocalTimes, *, decoder: Decoder | None = None,
                     columns: list[str] | None = None, date_format: DateFormat = ISO) -> Iterator[Row]:
    lines = numbered_lines(stream, decoder)
    first = next(lines, None)
    if first is None:
        raise InvalidInput("FILE", "the file is empty (an asterisk-db export starts with a header row)")
    if isinstance(first, RejectedRow):
        raise InvalidInput("FILE", f"line {first.line} (the header): {first.reason}")
    header_line, header_text = first
    try:
        first_fields = [name.strip().lower() for name in split_csv(header_text)]
    except csv.Error as exc:
        raise InvalidInput("FILE", f"line {header_line} (the header): malformed CSV: {exc}") from exc
    if columns is not None:
        names = columns
        if not set(REQUIRED) <= set(first_fields):  # no header line: the first line is a row
            lines = itertools.chain([first], lines)
    else:
        names = first_fields
        missing = [name for name in REQUIRED if name not in names]
        if missing:
            headerless = len([n for n in names if n]) >= 10 and not any(n.isalpha() and n in REQUIRED for n in names)
            raise InvalidInput(
                "FILE",
                f"the first line has {len(names)} columns and lacks the column(s) {', '.join(missing)}"
                + " of an asterisk-db export (is it Master.csv? use --format asterisk-csv)"
                + ("; an export without a header line? name its columns in order with --columns "
                   "(e.g. --columns calldate,clid,src,dst,dcontext,channel,dstchannel,lastapp,lastdata,duration,"
                   "billsec,disposition,amaflags,accountcode,uniqueid,userfield)" if headerless else ""),
            )
    index = {name: names.index(name) for name in (*REQUIRED, "linkedid") if name in names}
    for item in lines:
        if isinstance(item, RejectedRow):
            yield item
            continue
        number, text = item
        try:
            fields = split_csv(text)
        except csv.Error as exc:
            yield RejectedRow(number, f"malformed CSV: {exc}", text)
            continue
        if len(fields) != len(names):
            yield RejectedRow(number, f"wrong column count: {len(fields)} columns, the header has {len(names)}", text)
            continue
        yield _row(number, text, {name: fields[i] for name, i in index.items()}, times, date_format)


def _row(number: int, text: str, row: dict[str, str], times: LocalTimes, date_format: DateFormat) -> Row:
    problems: list[str] = []
    call_id, uniqueid = linked_call_id(row, problems)

    start_local = asterisk_time(row["calldate"], "calldate", problems, required=True, fmt=date_format)
    duration = whole_seconds(row["duration"], "duration", problems)
    billsec = whole_seconds(row["billsec"], "billsec", problems)
    disposition: Disposition | None = None
    try:
        disposition = map_disposition(row["disposition"])
    except InvalidInput as exc:
        problems.append(str(exc))
    src = text_field(row["src"], "src", problems)
    dst = text_field(row["dst"], "dst", problems)
    if duration is not None and billsec is not None and billsec > duration:
        problems.append(f"billsec: {billsec} is more than duration {duration}")

    epoch = epoch_of_uniqueid(uniqueid)
    start = None
    if start_local is not None:
        try:
            start = times.to_utc(start_local, "calldate",
                                 expected=dt.datetime.fromtimestamp(epoch, UTC) if epoch is not None else None)
        except InvalidInput as exc:
            problems.append(str(exc))
    if problems or start is None or duration is None or billsec is None or disposition is None:
        return RejectedRow(number, "; ".join(problems), text, call_id or None)
    end = start + dt.timedelta(seconds=duration)
    answer = end - dt.timedelta(seconds=billsec) if disposition is Disposition.ANSWERED else None
    return asterisk_leg(number, text, row, call_id=call_id, uniqueid=uniqueid, started_at=start, ended_at=end,
                        answered_at=answer, disposition=disposition, src=src, dst=dst, local_start=start_local,
                        epoch=epoch)
