"""Import a PBX's call detail records (CDR files) into ``call_events``: ``report-pipelines import-cdr``.

The file is streamed: rows are read one by one and legs are grouped by call id in a dict of *open*
calls. A call is over once the stream has moved ``horizon`` (2 hours) past its latest leg's end:
Asterisk writes a leg when it hangs up, so the legs of one call sit close together in the file. Calls
that are over are collapsed and checked, and bulk-loaded every ``chunk_rows`` (50,000) rows, so
memory is bounded by the calls of that window plus one chunk, whatever the file's size. (A file sorted some
other way still imports; a leg that turns up after its call was stored becomes a second call with
the same id, which the database ignores and the summary counts as a duplicate.)

- Every row that is not imported goes to the rejects file with its line number, the reasons (naming
  the column) and its raw text: malformed rows, and the other legs of a call one of whose legs was
  rejected (a call with a missing leg would be stored wrong), and the legs of a call that fails
  ``Call.problems()``.
- Idempotent: calls are stored with ``on_conflict="ignore"`` on ``(client_id, pbx_call_id)``, so a
  re-import inserts nothing and counts duplicates. Each chunk is its own transaction: an import that
  stops half-way can simply be run again.
- Zone: ``gmt`` (cdr.conf ``usegmtime``) means UTC; else ``timezone``; else (mapped-csv) the
  mapping's zone; else the client's. Times are cross-checked against the epoch in ``uniqueid`` and a
  warning says what offset they look like when they disagree; the import goes on.
"""

from __future__ import annotations

import datetime as dt
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import pyarrow as pa
from sqlalchemy import Engine

from report_pipelines.adapters.db.bulk import CALL_EVENT_SCHEMA, load_call_events
from report_pipelines.adapters.db.repositories import ClientRepository
from report_pipelines.adapters.sources.cdr import (
    CsvMapping,
    ParsedRow,
    RejectsFile,
    Row,
    load_mapping,
    read_asterisk_csv,
    read_asterisk_db,
    read_mapped_csv,
)
from report_pipelines.domain.calls import Call
from report_pipelines.domain.cdr import CDR_FORMATS, ClockCheck, LocalTimes, collapse
from report_pipelines.domain.errors import InvalidInput, NotFound
from report_pipelines.domain.timezones import local_date_of, parse_zone

UTC = dt.timezone.utc
DEFAULT_HORIZON = dt.timedelta(hours=2)


@dataclass(frozen=True, slots=True)
class ImportProgress:
    rows_read: int
    bytes_read: int
    total_bytes: int
    calls: int

    @property
    def percent(self) -> float:
        return 100.0 * self.bytes_read / self.total_bytes if self.total_bytes else 100.0


@dataclass(frozen=True, slots=True)
class ImportSummary:
    """What an import did. ``calls`` = collapsed calls that passed the checks = imported + duplicates;
    ``rejected`` = rows written to ``rejects_path``; ``peak_open_calls`` = the most calls held open
    at once (the memory bound)."""

    rows_read: int
    calls: int
    imported: int
    duplicates: int
    rejected: int
    rejects_path: Path | None
    warnings: tuple[str, ...]
    peak_open_calls: int = 0


class _OpenCall:
    __slots__ = ("rows", "last_end", "rejected_lines")

    def __init__(self, last_end: dt.datetime) -> None:
        self.rows: list[ParsedRow] = []
        self.last_end = last_end
        self.rejected_lines: list[int] = []


class _CallGrouper:
    """Open calls by id; finalises those the stream has left behind by ``horizon``.

    The check runs each time the high-water mark (the latest leg end seen) has moved a quarter of the
    horizon since the last check, so its cost does not depend on the number of rows; finalised calls
    wait in ``ready`` until the service stores them (every ``chunk_rows`` rows)."""

    def __init__(self, client_id: int, horizon: dt.timedelta, rejects: RejectsFile) -> None:
        self.client_id = client_id
        self.horizon = horizon
        self.rejects = rejects
        self.open: dict[str, _OpenCall] = {}
        self.high_water: dt.datetime | None = None
        self.ready: list[Call] = []
        self.peak = 0
        self._checked_at: dt.datetime | None = None

    def _group(self, call_id: str, last_end: dt.datetime) -> _OpenCall:
        group = self.open.get(call_id)
        if group is None:
            group = self.open[call_id] = _OpenCall(last_end)
            if len(self.open) > self.peak:
                self.peak = len(self.open)
        return group

    def add(self, row: ParsedRow) -> None:
        end = row.leg.ended_at
        group = self._group(row.leg.call_id, end)
        group.rows.append(row)
        if end > group.last_end:
            group.last_end = end
        if self.high_water is None or end > self.high_water:
            self.high_water = end
            if self._checked_at is None or end - self._checked_at >= self.horizon / 4:
                self._checked_at = end
                self.finalise()

    def taint(self, call_id: str, line: int) -> None:
        """A row of this call was rejected: the call's other legs must not be stored without it."""
        self._group(call_id, self.high_water or dt.datetime.min.replace(tzinfo=UTC)).rejected_lines.append(line)

    def finalise(self, everything: bool = False) -> None:
        if everything:
            done = list(self.open)
        elif self.high_water is None:
            return
        else:
            cutoff = self.high_water - self.horizon
            done = [call_id for call_id, group in self.open.items() if group.last_end < cutoff]
        for call_id in done:
            self._finalise(call_id, self.open.pop(call_id))

    def _finalise(self, call_id: str, group: _OpenCall) -> None:
        if not group.rows:
            return
        if group.rejected_lines:
            lines = ", ".join(map(str, group.rejected_lines))
            reason = f"call {call_id!r}: not imported because line(s) {lines} of the same call were rejected"
            for row in group.rows:
                self.rejects.write(row.line, reason, row.raw)
            return
        call = collapse(self.client_id, [row.leg for row in group.rows])
        problems = call.problems()
        if problems:
            lines = ", ".join(str(row.line) for row in sorted(group.rows, key=lambda r: r.line))
            reason = f"call {call_id!r} (lines {lines}): " + "; ".join(problems)
            for row in group.rows:
                self.rejects.write(row.line, reason, row.raw)
            return
        self.ready.append(call)

    def take_ready(self) -> list[Call]:
        ready, self.ready = self.ready, []
        return ready


def calls_table(calls: list[Call], ingested_at: dt.datetime) -> pa.Table:
    """The Arrow table ``load_call_events`` takes, for these calls."""
    return pa.Table.from_pydict(
        {
            "client_id": [c.client_id for c in calls],
            "pbx_call_id": [c.pbx_call_id for c in calls],
            "direction": [c.direction.value for c in calls],
            "queue": [c.queue for c in calls],
            "agent": [c.agent for c in calls],
            "caller": [c.caller for c in calls],
            "callee": [c.callee for c in calls],
            "started_at": [c.started_at for c in calls],
            "answered_at": [c.answered_at for c in calls],
            "ended_at": [c.ended_at for c in calls],
            "disposition": [c.disposition.value for c in calls],
            "ingested_at": [ingested_at] * len(calls),
        },
        schema=CALL_EVENT_SCHEMA,
    )


def _rows(fmt: str, stream: BinaryIO, times: LocalTimes, mapping: CsvMapping | None) -> Iterator[Row]:
    if fmt == "asterisk-csv":
        return read_asterisk_csv(stream, times)
    if fmt == "asterisk-db":
        return read_asterisk_db(stream, times)
    assert mapping is not None
    return read_mapped_csv(stream, times, mapping)


def _zone(client_zone: str, timezone: str | None, gmt: bool, mapping: CsvMapping | None) -> tuple[dt.tzinfo, str]:
    """The zone of the file's naive times, and how to name it in messages."""
    mapped = mapping.timezone if mapping is not None else None
    if gmt:
        if timezone:
            raise InvalidInput("--gmt", "give --gmt or --timezone, not both")
        if mapped and mapped != "UTC":
            raise InvalidInput("--gmt", f"conflicts with the mapping's timezone {mapped!r}; remove one")
        return UTC, "UTC (--gmt)"
    if timezone:
        zone = parse_zone(timezone, field="--timezone")
        if mapped and mapped != zone.key:
            raise InvalidInput("--timezone", f"{zone.key!r} conflicts with the mapping's timezone {mapped!r}; remove one")
        return zone, zone.key
    if mapped:
        return parse_zone(mapped, field="--mapping timezone"), f"{mapped} (the mapping's timezone)"
    return parse_zone(client_zone, field="timezone"), f"{client_zone} (the client's zone)"


def import_cdr(
    engine: Engine,
    client_slug: str,
    fmt: str,
    path: str | Path,
    *,
    timezone: str | None = None,
    gmt: bool = False,
    mapping_path: str | Path | None = None,
    rejects_path: str | Path | None = None,
    data_dir: str | Path | None = None,
    progress: Callable[[ImportProgress], None] | None = None,
    chunk_rows: int = 50_000,
    horizon: dt.timedelta = DEFAULT_HORIZON,
    progress_interval: float = 1.0,
) -> ImportSummary:
    """Import one CDR file for one client; see the module docstring. Bad arguments raise
    ``InvalidInput``/``NotFound`` naming the option before anything is read or written."""
    if fmt not in CDR_FORMATS:
        raise InvalidInput("--format", f"{fmt!r} is not one of {', '.join(CDR_FORMATS)}")
    path = Path(path)
    if not path.is_file():
        raise InvalidInput("FILE", f"no such file: {path}")
    mapping: CsvMapping | None = None
    if fmt == "mapped-csv":
        if mapping_path is None:
            raise InvalidInput("--mapping", "required with --format mapped-csv (a YAML or JSON column mapping)")
        mapping = load_mapping(mapping_path)
    elif mapping_path is not None:
        raise InvalidInput("--mapping", f"only used with --format mapped-csv, not {fmt}")
    if rejects_path is not None:
        rejects_path = Path(rejects_path)
        if rejects_path.exists():
            raise InvalidInput("--rejects", f"{rejects_path} already exists (a rejects file is never overwritten)")
    if chunk_rows < 1:
        raise InvalidInput("chunk_rows", "must be at least 1")
    try:
        client = ClientRepository(engine).get_by_slug(client_slug)
    except NotFound as exc:
        raise NotFound("--client", f"no client with slug {client_slug!r} (see: report-pipelines clients list)") from exc
    zone, zone_label = _zone(client.timezone, timezone, gmt, mapping)

    now = dt.datetime.now(UTC)
    if rejects_path is None:
        if data_dir is None:
            from report_pipelines.app import load_settings

            data_dir = load_settings().data_dir
        stamp = now.strftime("%Y%m%dT%H%M%SZ")
        rejects = RejectsFile(Path(data_dir) / "rejects" / f"{path.name}.{stamp}.rejects.csv", find_free_name=True)
    else:
        rejects = RejectsFile(rejects_path)

    times = LocalTimes(zone, latest=now + dt.timedelta(days=1))
    clock = ClockCheck(zone_label)
    grouper = _CallGrouper(client.id, horizon, rejects)
    rows_read = imported = duplicates = calls = 0
    earliest: dt.datetime | None = None

    def store() -> None:
        nonlocal imported, duplicates, calls, earliest
        ready = grouper.take_ready()
        if ready:
            first = min(c.started_at for c in ready)
            earliest = first if earliest is None else min(earliest, first)
            inserted = load_call_events(engine, calls_table(ready, now), on_conflict="ignore")
            calls += len(ready)
            imported += inserted
            duplicates += len(ready) - inserted

    try:
        stream = path.open("rb")
    except OSError as exc:
        raise InvalidInput("FILE", f"cannot read {path}: {exc.strerror}") from exc
    try:
        total_bytes = os.fstat(stream.fileno()).st_size
        last_report = time.monotonic()
        for row in _rows(fmt, stream, times, mapping):
            rows_read += 1
            if type(row) is ParsedRow:
                grouper.add(row)
                leg = row.leg
                if leg.epoch is not None and leg.local_start is not None:
                    clock.observe(leg.local_start, leg.started_at, leg.epoch)
            else:
                rejects.write(row.line, row.reason, row.raw)
                if row.call_id:
                    grouper.taint(row.call_id, row.line)
            if len(grouper.ready) >= chunk_rows or rows_read % chunk_rows == 0:
                store()
            if progress is not None and rows_read % 1000 == 0 and time.monotonic() - last_report >= progress_interval:
                last_report = time.monotonic()
                progress(ImportProgress(rows_read, stream.tell(), total_bytes, calls + len(grouper.ready)))
        grouper.finalise(everything=True)
        store()
        if progress is not None:
            progress(ImportProgress(rows_read, stream.tell(), total_bytes, calls))
    finally:
        stream.close()
        rejects.close()
    if earliest is not None:  # imported history: the client's reports now start that far back
        ClientRepository(engine).extend_active_from(client.id, local_date_of(earliest, parse_zone(client.timezone)))

    warnings: list[str] = []
    clock_warning = clock.warning()
    if clock_warning:
        warnings.append(f"{clock_warning}; check --timezone/--gmt")
    if times.overlaps_guessed:
        warnings.append(
            f"{times.overlaps_guessed} time(s) fell in a DST fall-back hour of {times.name} and were read as the first "
            "occurrence (nothing in the row told which one)"
        )
    return ImportSummary(
        rows_read=rows_read,
        calls=calls,
        imported=imported,
        duplicates=duplicates,
        rejected=rejects.count,
        rejects_path=rejects.path,
        warnings=tuple(warnings),
        peak_open_calls=grouper.peak,
    )
