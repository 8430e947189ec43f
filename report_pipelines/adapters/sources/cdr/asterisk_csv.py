"""Asterisk ``cdr_csv`` (``Master.csv``): no header, 16 standard columns and up to 5 optional ones.

Columns: accountcode, src, dst, dcontext, clid, channel, dstchannel, lastapp, lastdata, start,
answer, end, duration, billsec, disposition, amaflags, then (``loguniqueid``/``loguserfield`` and
newer Asterisk) uniqueid, userfield, peeraccount, linkedid, sequence. Times are naive
``YYYY-MM-DD HH:MM:SS`` in the PBX's zone (or UTC with ``usegmtime``); ``answer`` is empty on an
unanswered leg.

The call id is ``linkedid``, else ``uniqueid``. A 16-column file has neither: each row is then its
own call, identified by ``<channel>@<start>`` (the channel's name carries a per-boot sequence
number), so re-importing it stays idempotent but its legs cannot be grouped.
"""

from __future__ import annotations

import csv
import datetime as dt
from collections.abc import Iterator
from typing import BinaryIO

from report_pipelines.adapters.sources.cdr.rows import (
    RejectedRow,
    Row,
    asterisk_leg,
    asterisk_time,
    linked_call_id,
    numbered_lines,
    order_problems,
    split_csv,
    text_field,
    whole_seconds,
)
from report_pipelines.domain.calls import MAX_TEXT, Disposition
from report_pipelines.domain.cdr import LocalTimes, epoch_of_uniqueid, map_disposition
from report_pipelines.domain.errors import InvalidInput

UTC = dt.timezone.utc

COLUMNS: tuple[str, ...] = (
    "accountcode", "src", "dst", "dcontext", "clid", "channel", "dstchannel", "lastapp", "lastdata",
    "start", "answer", "end", "duration", "billsec", "disposition", "amaflags",
    "uniqueid", "userfield", "peeraccount", "linkedid", "sequence",
)
MIN_COLUMNS, MAX_COLUMNS = 16, len(COLUMNS)


def read_asterisk_csv(stream: BinaryIO, times: LocalTimes) -> Iterator[Row]:
    for item in numbered_lines(stream):
        if isinstance(item, RejectedRow):
            yield item
            continue
        number, text = item
        try:
            fields = split_csv(text)
        except csv.Error as exc:
            yield RejectedRow(number, f"malformed CSV: {exc}", text)
            continue
        if not MIN_COLUMNS <= len(fields) <= MAX_COLUMNS:
            yield RejectedRow(
                number, f"wrong column count: {len(fields)} columns (Master.csv rows have {MIN_COLUMNS} to {MAX_COLUMNS})",
                text)
            continue
        yield _row(number, text, dict(zip(COLUMNS, fields)), times)


def _row(number: int, text: str, row: dict[str, str], times: LocalTimes) -> Row:
    problems: list[str] = []
    uniqueid: str | None = None
    if "uniqueid" in row:
        call_id, uniqueid = linked_call_id(row, problems)
    else:
        channel = row["channel"].strip()
        call_id = f"{channel}@{row['start'].strip()}" if channel else ""
        if not channel:
            problems.append("channel: empty (a 16-column file has no uniqueid: the call id is <channel>@<start>)")
        elif len(call_id) > MAX_TEXT:
            problems.append(f"channel: longer than {MAX_TEXT - 20} characters (the call id is <channel>@<start>)")
            call_id = ""

    start_local = asterisk_time(row["start"], "start", problems, required=True)
    answer_local = asterisk_time(row["answer"], "answer", problems, required=False)
    end_local = asterisk_time(row["end"], "end", problems, required=True)
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
        problems.extend(order_problems(start, answer, end, {name: row[name].strip() for name in ("start", "answer", "end")}))
        if disposition is Disposition.ANSWERED and answer is None:
            problems.append("answer: empty but the disposition is ANSWERED")

    if problems or start is None or end is None or disposition is None:
        return RejectedRow(number, "; ".join(problems), text, call_id or None)
    if disposition is not Disposition.ANSWERED:
        answer = None  # an unanswered leg's answer field (some Asterisk versions fill it) means nothing
    return asterisk_leg(number, text, row, call_id=call_id, uniqueid=uniqueid, started_at=start, ended_at=end,
                        answered_at=answer, disposition=disposition, src=src, dst=dst, local_start=start_local,
                        epoch=epoch)
