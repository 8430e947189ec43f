"""A call-centre export: a CSV with a header row, read through a :class:`CsvMapping`.

Each row is a leg of the call named by the ``call_id`` column (usually one row per call). Outcomes
are mapped with the mapping's table; an answered row needs an answer time (the ``answer`` column,
else start + wait seconds, else end - talk seconds). Dates follow ``date_format``: ``iso`` (naive, or
with an offset that is then used as it is), ``epoch`` (seconds, UTC) or a strptime format (with
``%z`` it is aware too). Naive times are local to the zone the import was given.
"""

from __future__ import annotations

import csv
import datetime as dt
import math
import re
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from report_pipelines.adapters.sources.cdr.mapping import CsvMapping
from report_pipelines.adapters.sources.cdr.rows import (
    Decoder,
    ParsedRow,
    RejectedRow,
    Row,
    numbered_lines,
    order_problems,
    split_csv,
    text_field,
)
from report_pipelines.domain.calls import Direction, Disposition
from report_pipelines.domain.cdr import Leg, LocalTimes
from report_pipelines.domain.errors import InvalidInput

UTC = dt.UTC
_CLOCK = re.compile(r"(?:(\d+):)?([0-5]?\d):([0-5]\d)")


SPREADSHEET_SUFFIXES = (".xlsx", ".xlsm", ".xls", ".ods")


def _header_index(names: list[str], mapping: CsvMapping, header_line: int, where: str) -> dict[str, int]:
    repeated = sorted({name for name in names if names.count(name) > 1 and name})
    if repeated:
        raise InvalidInput("FILE", f"the header ({where}) repeats the column(s) {', '.join(map(repr, repeated))}")
    for key, column in mapping.columns().items():
        if column not in names:
            raise InvalidInput(
                f"--mapping {key}",
                f"column {column!r} is not in the file's header ({where}: {', '.join(map(repr, names))}"
                + (f"; delimiter {mapping.delimiter!r})" if where.startswith("line") else ")"),
            )
    return {column: names.index(column) for column in mapping.columns().values()}


def _cell_text(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, dt.datetime):
        return value.isoformat(sep=" ")
    return str(value)


def read_mapped_sheet(path: Path, times: LocalTimes, mapping: CsvMapping) -> Iterator[Row]:
    """An XLSX or ODS export (python-calamine): the first row is the header; line = sheet row."""
    from python_calamine import CalamineWorkbook

    try:
        workbook = CalamineWorkbook.from_path(str(path))
    except Exception as exc:
        raise InvalidInput("FILE", f"{path.name} cannot be read as a spreadsheet: {exc}") from exc
    names = workbook.sheet_names
    wanted = mapping.sheet if mapping.sheet is not None else 0
    if isinstance(wanted, int):
        if not 0 <= wanted < len(names):
            raise InvalidInput("--mapping sheet", f"no sheet {wanted} ({path.name} has {len(names)}: {', '.join(names)})")
        sheet = workbook.get_sheet_by_index(wanted)
    else:
        if wanted not in names:
            raise InvalidInput("--mapping sheet", f"no sheet {wanted!r} in {path.name} (sheets: {', '.join(names)})")
        sheet = workbook.get_sheet_by_name(wanted)
    rows = iter(sheet.to_python(skip_empty_area=False))
    header = next(rows, None)
    if header is None:
        raise InvalidInput("FILE", f"the sheet {sheet.name!r} is empty (it must start with a header row)")
    index = _header_index([_cell_text(v).strip() for v in header], mapping, 1, f"row 1 of sheet {sheet.name!r}")
    reader = _RowReader(mapping, times)
    for number, cells in enumerate(rows, start=2):
        if all(v in (None, "") for v in cells):
            continue
        cells = list(cells) + [None] * (len(header) - len(cells))
        text = ";".join(_cell_text(v) for v in cells)
        yield reader.row(number, text, {column: cells[i] for column, i in index.items()})


def read_mapped_csv(stream: BinaryIO, times: LocalTimes, mapping: CsvMapping, decoder: Decoder | None = None) -> Iterator[Row]:
    lines = numbered_lines(stream, decoder)
    header = next(lines, None)
    if header is None:
        raise InvalidInput("FILE", "the file is empty (a mapped-csv file starts with a header row)")
    if isinstance(header, RejectedRow):
        raise InvalidInput("FILE", f"line {header.line} (the header): {header.reason}")
    header_line, header_text = header
    try:
        names = [name.strip() for name in split_csv(header_text, mapping.delimiter)]
    except csv.Error as exc:
        raise InvalidInput("FILE", f"line {header_line} (the header): malformed CSV: {exc}") from exc
    index = _header_index(names, mapping, header_line, f"line {header_line}")
    reader = _RowReader(mapping, times)
    for item in lines:
        if isinstance(item, RejectedRow):
            yield item
            continue
        number, text = item
        try:
            fields = split_csv(text, mapping.delimiter)
        except csv.Error as exc:
            yield RejectedRow(number, f"malformed CSV: {exc}", text)
            continue
        if len(fields) != len(names):
            yield RejectedRow(number, f"wrong column count: {len(fields)} columns, the header has {len(names)}", text)
            continue
        yield reader.row(number, text, {column: fields[i] for column, i in index.items()})


class _RowReader:
    def __init__(self, mapping: CsvMapping, times: LocalTimes) -> None:
        self.m = mapping
        self.times = times
        self.outcomes_lower = {k.lower(): v for k, v in mapping.outcome_values.items()}
        self.directions_lower = {k.lower(): v for k, v in mapping.direction_values.items()}

    def time_of(self, row: dict[str, object], key: str, problems: list[str], *, required: bool,
                not_before: dt.datetime | None = None) -> dt.datetime | None:
        """The instant of a time key: its column, or its date and time columns combined."""
        column = getattr(self.m, key)
        time_column = self.m.time_columns.get(key)
        value = row[column]
        if time_column is None:
            return self.instant(value, column, problems, required=required, not_before=not_before)
        clock = row[time_column]
        if isinstance(value, dt.datetime):
            value = value.date()
        if isinstance(value, dt.date) and isinstance(clock, (dt.time, dt.datetime)):
            when = clock.time() if isinstance(clock, dt.datetime) else clock
            return self.instant(dt.datetime.combine(value, when), f"{column} + {time_column}", problems,
                                required=required, not_before=not_before)
        date_text, clock_text = _cell_text(value).strip(), _cell_text(clock).strip()
        if not clock_text:  # no time: no instant (the date column is shared by every time key)
            return self.instant("", time_column, problems, required=required)
        if isinstance(value, dt.date):
            date_text = value.strftime(self.m.date_format.split(" ")[0]) if "%" in self.m.date_format else value.isoformat()
        if isinstance(clock, dt.time):
            clock_text = clock.strftime("%H:%M:%S")
        return self.instant(f"{date_text} {clock_text}", f"{column} + {time_column}", problems, required=required,
                            not_before=not_before)

    def instant(self, value: object, column: str, problems: list[str], *, required: bool,
                not_before: dt.datetime | None = None) -> dt.datetime | None:
        if isinstance(value, dt.datetime):  # a spreadsheet's date-time cell: naive local, or aware
            return self._localise(value, column, value.isoformat(sep=" "), problems, not_before)
        value = _cell_text(value).strip()
        if not value:
            if required:
                problems.append(f"{column}: empty")
            return None
        fmt = self.m.date_format
        try:
            if fmt == "epoch":
                seconds = float(value)
                if not math.isfinite(seconds):
                    raise ValueError(value)
                parsed = dt.datetime.fromtimestamp(seconds, UTC)
            elif fmt == "iso":
                parsed = dt.datetime.fromisoformat(value)
            else:
                parsed = dt.datetime.strptime(value, fmt)
        except (ValueError, OverflowError, OSError):
            expected = "epoch seconds" if fmt == "epoch" else "an ISO 8601 date-time" if fmt == "iso" else f"the date format {fmt!r}"
            problems.append(f"{column}: {value!r} is not {expected}")
            return None
        return self._localise(parsed, column, value, problems, not_before)

    def _localise(self, parsed: dt.datetime, column: str, shown: str, problems: list[str],
                  not_before: dt.datetime | None) -> dt.datetime | None:
        try:
            if parsed.tzinfo is not None:
                return self.times.check_range(parsed.astimezone(UTC), column, shown)
            return self.times.to_utc(parsed, column, not_before=not_before)
        except InvalidInput as exc:
            problems.append(str(exc))
            return None

    @staticmethod
    def seconds(value: object, column: str, problems: list[str]) -> float | None:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            if math.isfinite(value) and value >= 0:
                return float(value)
            problems.append(f"{column}: {value!r} is not a duration (seconds, or [H:]MM:SS)")
            return None
        if isinstance(value, dt.timedelta):
            return value.total_seconds()
        if isinstance(value, dt.time):
            return value.hour * 3600 + value.minute * 60 + value.second + value.microsecond / 1e6
        value = _cell_text(value).strip()
        if not value:
            return 0.0
        clock = _CLOCK.fullmatch(value)
        if clock:
            hours, minutes, secs = clock.groups()
            return int(hours or 0) * 3600 + int(minutes) * 60 + int(secs)
        try:
            number = float(value)
        except ValueError:
            number = -1.0
        if not math.isfinite(number) or number < 0:
            problems.append(f"{column}: {value!r} is not a duration (seconds, or [H:]MM:SS)")
            return None
        return number

    def row(self, number: int, text: str, row: dict[str, object]) -> Row:
        m = self.m
        problems: list[str] = []
        call_id = _cell_text(row[m.call_id]).strip()
        if not call_id:
            problems.append(f"{m.call_id}: empty call id")
        call_id = text_field(call_id, m.call_id, problems) or ""

        outcome_text = _cell_text(row[m.outcome]).strip()
        disposition = m.outcome_values.get(outcome_text) or self.outcomes_lower.get(outcome_text.lower())
        if disposition is None:
            known = ", ".join(map(repr, m.outcome_values))
            problems.append(f"{m.outcome}: outcome {outcome_text!r} is not in the mapping's outcome.values ({known})")

        direction = m.default_direction
        if m.direction:
            direction_text = _cell_text(row[m.direction]).strip()
            if direction_text:
                found = m.direction_values.get(direction_text) or self.directions_lower.get(direction_text.lower())
                if found is None:
                    known = ", ".join(map(repr, m.direction_values))
                    problems.append(f"{m.direction}: direction {direction_text!r} is not in the mapping's direction.values ({known})")
                else:
                    direction = found

        texts = {key: text_field(_cell_text(row[getattr(m, key)]), getattr(m, key), problems) if getattr(m, key) else None
                 for key in ("queue", "agent", "caller", "callee")}
        wait = self.seconds(row[m.wait_seconds], m.wait_seconds, problems) if m.wait_seconds else None
        talk = self.seconds(row[m.talk_seconds], m.talk_seconds, problems) if m.talk_seconds else None

        start = self.time_of(row, "start", problems, required=True)
        end = answer = queued = None
        if start is not None:
            if m.queued:
                queued = self.time_of(row, "queued", problems, required=False, not_before=start)
            if m.end:
                end = self.time_of(row, "end", problems, required=True, not_before=start)
            elif wait is not None or talk is not None:
                if (m.wait_seconds is None or wait is not None) and (m.talk_seconds is None or talk is not None):
                    end = start + dt.timedelta(seconds=(wait or 0) + (talk or 0))
            answer_cell = row[m.time_columns["answer"]] if "answer" in m.time_columns else row[m.answer] if m.answer else None
            if m.answer and _cell_text(answer_cell).strip():
                answer = self.time_of(row, "answer", problems, required=False, not_before=start)
            elif disposition is Disposition.ANSWERED:
                if m.wait_seconds and wait is not None:
                    answer = start + dt.timedelta(seconds=wait)
                elif m.talk_seconds and talk is not None and end is not None:
                    answer = end - dt.timedelta(seconds=talk)
            if disposition is Disposition.ANSWERED and answer is None and not problems:
                problems.append(f"{m.answer or 'answer'}: the outcome is ANSWERED but there is no answer time "
                                "(map answer, wait_seconds or talk_seconds)")
            if disposition is not Disposition.ANSWERED:
                answer = None
        if start is not None and end is not None:
            shown = {m.start: _cell_text(row[m.start]).strip(),
                     m.end or "end": _cell_text(row[m.end]).strip() if m.end else "start + durations"}
            names = (m.start, m.answer or "answer", m.end or "end")
            shown[names[1]] = _cell_text(row[m.answer]).strip() if m.answer else "start + wait"
            problems.extend(order_problems(start, answer, end, shown, names))
            if queued is not None and not (start <= queued <= (answer or end)):
                problems.append(f"{m.queued}: the queue entry is not between the start and the "
                                + ("answer" if answer else "end"))

        if problems or start is None or end is None or disposition is None:
            return RejectedRow(number, "; ".join(problems), text, call_id or None)
        leg = Leg(
            line=number,
            call_id=call_id,
            started_at=start,
            ended_at=end,
            disposition=disposition,
            answered_at=answer,
            src=texts["caller"],
            dst=texts["callee"],
            queue=texts["queue"],
            agent=texts["agent"],
            direction=Direction(direction),
            queued_at=queued,
        )
        return ParsedRow(number, leg, text)
