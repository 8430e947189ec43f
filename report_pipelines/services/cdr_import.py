"""Import a PBX's call detail records (and its queue_log) into ``call_events``: ``report-pipelines import-cdr``.

The file is streamed in blocks of legs (Arrow tables). Legs are grouped by call id among the *open*
calls; a call is over once the stream has moved ``horizon`` (2 hours) past its latest leg's end
(Asterisk writes a leg when it hangs up, so the legs of one call sit close together in the file).
Calls that are over are collapsed (:func:`~report_pipelines.domain.cdr_collapse.collapse_legs`),
joined to the queue_log when one is given (:mod:`report_pipelines.domain.queue_log`), checked, and
staged. Memory is bounded by the open calls plus one block, whatever the file's size.

- **One transaction** (:class:`~report_pipelines.adapters.db.cdr_imports.CallImport`): the calls are
  staged, then moved into ``call_events`` at the end; a refused import leaves nothing behind.
  Re-importing a file adds nothing (ids already stored are counted as *already imported*).
- **Rejects**: every row that is not imported goes to the rejects file with its line number, the
  reasons (naming the column) and its raw text: malformed rows, the other legs of a call one of
  whose legs was rejected (a call is complete and right, or rejected whole), and the legs of a call
  that fails ``Call.problems()``. More than ``max_reject_share`` of the rows rejected (or every row)
  refuses the import: nothing is stored, the error gives the reasons.
- **Ids repeated inside the file** (an id column that is not unique) are counted apart from the
  already imported, with examples; the first copy is kept. Above ``max_repeated_share`` of the calls
  (and at least :data:`MIN_REPEATED_TO_REFUSE` copies) the import is refused, saying which column to
  map as the id.
- **--replace** deletes the client's calls in the file's time range (first to last call start) in
  the same transaction, and records each local day of that range in ``call_event_changes``, so the
  late-data path recomputes the cached days it touched, even one left with no call at all.
- **Zone**: ``gmt`` (cdr.conf ``usegmtime``) means UTC; else ``timezone``; else (mapped-csv) the
  mapping's zone; else the client's. Times are cross-checked against the epoch in ``uniqueid`` and a
  warning says what offset they look like when they disagree; the import goes on.
- **Direction**: from the client's PBX configuration (stored, or ``pbx`` for this import), the
  channels and the dialplan contexts (:func:`~report_pipelines.domain.cdr.decide_direction`); calls
  nothing decides are ``unknown``, counted and warned about, and a client with no inbound call after
  an import gets a warning naming the channels that would need ``--trunk``.
"""

from __future__ import annotations

import datetime as dt
import os
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from sqlalchemy import Engine

from report_pipelines.adapters.db.cdr_imports import CallImport, MergeResult, PbxConfigRepository
from report_pipelines.adapters.db.repositories import ClientRepository
from report_pipelines.adapters.sources.cdr import (
    SPREADSHEET_SUFFIXES,
    CsvMapping,
    DateFormat,
    Decoder,
    LegBatch,
    RejectsFile,
    batched,
    detect_code_page,
    load_mapping,
    parse_columns,
    parse_db_columns,
    read_asterisk_csv,
    read_asterisk_db,
    read_mapped_csv,
    read_mapped_sheet,
    read_queue_log,
    sample_undecodable,
)
from report_pipelines.domain.calls import Direction
from report_pipelines.domain.cdr import BASES, CDR_FORMATS, ClockCheck, LocalTimes
from report_pipelines.domain.cdr_collapse import CollapsedCalls, collapse_legs, endpoint_keys
from report_pipelines.domain.errors import InvalidInput, NotFound
from report_pipelines.domain.pbx import PbxConfig
from report_pipelines.domain.queue_log import JoinStats
from report_pipelines.domain.queue_log_columns import AttemptJoin, QueueLogTables
from report_pipelines.domain.timezones import parse_zone

UTC = dt.UTC
DEFAULT_HORIZON = dt.timedelta(hours=2)
DEFAULT_MAX_REJECT_SHARE = 0.5
DEFAULT_MAX_REPEATED_SHARE = 0.05
#: A few stray copies never refuse an import, whatever the share (a small file with one repeat).
MIN_REPEATED_TO_REFUSE = 5


@dataclass(frozen=True, slots=True)
class ImportProgress:
    rows_read: int
    bytes_read: int
    total_bytes: int
    calls: int

    @property
    def percent(self) -> float:
        return 100.0 * self.bytes_read / self.total_bytes if self.total_bytes else 100.0


@dataclass(frozen=True)
class QueueLogSummary:
    rows: int
    events: dict[str, int]
    attempts: int
    joined_calls: int
    unmatched_attempts: int
    outcomes: dict[str, int]
    sessions: int
    pauses: int
    rejected: int
    rejects_path: Path | None
    clamped: int


@dataclass(frozen=True)
class ImportSummary:
    """What an import did. ``calls`` = collapsed calls that passed the checks = imported +
    ``duplicates`` (already imported before) + ``repeated_in_file`` (later copies of an id the file
    repeats); ``rejected`` = rows written to ``rejects_path``; ``peak_open_calls`` = the most calls
    held open at once (the memory bound)."""

    rows_read: int
    calls: int
    imported: int
    duplicates: int
    rejected: int
    rejects_path: Path | None
    warnings: tuple[str, ...]
    peak_open_calls: int = 0
    repeated_in_file: int = 0
    repeated_examples: tuple[tuple[str, int, int, int], ...] = ()
    by_direction: dict[str, int] = field(default_factory=dict)
    by_disposition: dict[str, int] = field(default_factory=dict)
    by_basis: dict[str, int] = field(default_factory=dict)
    rejects_by_reason: dict[str, int] = field(default_factory=dict)
    first_call: dt.datetime | None = None  # in the client's zone
    last_call: dt.datetime | None = None
    zone: str = ""
    decoded: str = ""
    layout: str | None = None
    repaired_quoting: int = 0
    replaced: int = 0
    replaced_days: tuple[dt.date, ...] = ()
    queue_log: QueueLogSummary | None = None
    careful_rows: int = 0

    def lines(self) -> list[str]:
        """The summary as the CLI prints it."""
        out = [f"imported {self.imported} calls ({self.duplicates} already imported, {self.repeated_in_file} repeated "
               f"in the file, {self.rejected} rejected rows"
               + (f" -> {self.rejects_path}" if self.rejects_path else "") + f") from {self.rows_read} rows"]
        if self.replaced or self.replaced_days:
            out.append(f"  replaced: {self.replaced} calls stored before in {self.replaced_days[0]}..{self.replaced_days[-1]}"
                       " (their cached days are recomputed by the late-data sensor)")
        if self.first_call is not None:
            out.append(f"  time span: {self.first_call:%Y-%m-%d %H:%M:%S} .. {self.last_call:%Y-%m-%d %H:%M:%S} {self.zone}")
        if self.by_direction:
            out.append("  by direction: " + ", ".join(f"{k} {v}" for k, v in sorted(self.by_direction.items())))
            out.append("  by disposition: " + ", ".join(f"{k} {v}" for k, v in sorted(self.by_disposition.items())))
            out.append("  direction decided by: " + "; ".join(f"{BASES.get(k, k)}: {v}" for k, v in
                                                           sorted(self.by_basis.items(), key=lambda kv: -kv[1])))
        if self.repeated_examples:
            examples = ", ".join(f"{i!r} x{n} (lines {a}..{b})" for i, a, b, n in self.repeated_examples)
            out.append(f"  repeated ids in the file: {self.repeated_in_file} extra copies, e.g. {examples}")
        if self.rejects_by_reason:
            out.append("  rejects by reason: " + "; ".join(f"{k}: {v}" for k, v in
                                                         sorted(self.rejects_by_reason.items(), key=lambda kv: -kv[1])))
        if self.layout:
            out.append(f"  layout: {self.layout}" + (f"; {self.repaired_quoting} rows with broken quoting repaired"
                                                      if self.repaired_quoting else ""))
        out.append(f"  decoded: {self.decoded}")
        q = self.queue_log
        if q is not None:
            out.append(f"  queue_log: {q.rows} rows, {q.attempts} queue calls, {q.joined_calls} joined to CDR calls, "
                       f"{q.unmatched_attempts} without a CDR call, {q.sessions} agent sessions, {q.pauses} pauses, "
                       f"{q.rejected} rejected" + (f" -> {q.rejects_path}" if q.rejects_path else ""))
            if q.outcomes:
                out.append("  queue outcomes: " + ", ".join(f"{k} {v}" for k, v in sorted(q.outcomes.items())))
        return out


def _reason_key(reason: str) -> str:
    if reason.startswith("call ") and "not imported because" in reason:
        return "another leg of the call was rejected"
    if reason.startswith("call "):
        return "call: " + reason.split("): ", 1)[-1].split(":", 1)[0]
    return reason.split(":", 1)[0].split(";", 1)[0]


class _Rejects:
    def __init__(self, file: RejectsFile) -> None:
        self.file = file
        self.by_reason: Counter[str] = Counter()

    def write(self, line: int, reason: str, raw: str) -> None:
        self.file.write(line, reason, raw.rstrip("\r\n"))
        self.by_reason[_reason_key(reason)] += 1


class _Grouper:
    """Open calls' legs (Arrow); hands back the legs of calls the stream has left behind by ``horizon``."""

    def __init__(self, horizon: dt.timedelta) -> None:
        self.horizon_us = int(horizon.total_seconds() * 1_000_000)
        self.pending: list[pa.Table] = []
        self.high_water: int | None = None
        self.tainted: dict[str, list[int]] = {}
        self.peak = 0

    def add(self, legs: pa.Table) -> None:
        if legs.num_rows:
            self.pending.append(legs.append_column("group", legs.column("call_id")))
            newest = pc.max(legs.column("ended_at")).cast(pa.int64()).as_py()
            self.high_water = newest if self.high_water is None else max(self.high_water, newest)

    def taint(self, call_id: str, line: int) -> None:
        self.tainted.setdefault(call_id, []).append(line)

    def ready(self, everything: bool = False) -> pa.Table | None:
        if not self.pending:
            return None
        legs = self._split_repeated(pa.concat_tables(self.pending) if len(self.pending) > 1 else self.pending[0])
        if everything:
            self.pending = []
            return legs
        ends = legs.group_by("group", use_threads=False).aggregate([("ended_at", "max")])
        self.peak = max(self.peak, ends.num_rows)
        cutoff = pa.scalar(self.high_water - self.horizon_us, pa.int64())
        done = ends.filter(pc.less(ends.column("ended_at_max").cast(pa.int64()), cutoff)).column("group")
        if len(done) == 0:
            self.pending = [legs]
            return None
        over = pc.is_in(legs.column("group"), value_set=done.combine_chunks())
        self.pending = [legs.filter(pc.invert(over))]
        return legs.filter(over)

    def _split_repeated(self, legs: pa.Table) -> pa.Table:
        """Legs of one id that the stream had left behind by ``horizon`` before the next one came (or
        that start more than ``horizon`` after the earlier ones ended) are two calls with the same id
        (the file repeats it): each later run of legs gets its own group.
        Only ids whose legs came more than the horizon after one of their earlier legs ended are looked
        at leg by leg (in Python; they are rare)."""
        line = legs.column("line").to_numpy()
        by_line = legs if bool(np.all(line[1:] >= line[:-1])) else legs.take(pc.sort_indices(legs.column("line")))
        ends = by_line.column("ended_at").cast(pa.int64()).to_numpy()
        starts = by_line.column("started_at").cast(pa.int64()).to_numpy()
        # How far the stream had got when this leg came: the latest end before it, or its own start.
        high_before = np.maximum(np.r_[np.iinfo(np.int64).min, np.maximum.accumulate(ends)[:-1]], starts)
        spans = pa.table({"call_id": by_line.column("call_id"), "high": high_before, "end": ends}).group_by(
            "call_id", use_threads=False).aggregate([("high", "max"), ("end", "min")])
        width = pc.subtract(spans.column("high_max"), spans.column("end_min"))
        wide = spans.filter(pc.greater(width, self.horizon_us)).column("call_id")
        if len(wide) == 0:
            return legs
        chosen = np.flatnonzero(pc.is_in(by_line.column("call_id"), value_set=wide.combine_chunks()).to_numpy(
            zero_copy_only=False))
        groups = by_line.column("call_id").to_pylist()
        state: dict[str, tuple[int, int]] = {}  # id -> (run, its last end)
        for i in chosen.tolist():
            call_id = groups[i]
            run, last_end = state.get(call_id, (0, None))
            if last_end is not None and high_before[i] - last_end > self.horizon_us:
                run, last_end = run + 1, None
            state[call_id] = (run, ends[i] if last_end is None else max(last_end, ends[i]))
            if run:
                groups[i] = f"{call_id}\x1f{run}"
        index = by_line.schema.get_field_index("group")
        return by_line.set_column(index, "group", pa.array(groups, type=pa.string()))


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


def _decoder(path: Path, encoding: str | None) -> Decoder:
    if encoding:
        import codecs

        try:
            name = codecs.lookup(encoding).name
        except LookupError as exc:
            raise InvalidInput("--encoding", f"unknown encoding {encoding!r} (e.g. utf-8, cp1251, cp866, latin-1)") from exc
        return Decoder(None if name == "utf-8" else name)
    with path.open("rb") as stream:
        sample = sample_undecodable(stream)
    fallback = detect_code_page(sample)
    return Decoder(None, fallback, detected=fallback is not None)


def _legs(fmt: str, path: Path, stream: BinaryIO, times: LocalTimes, mapping: CsvMapping | None, *, decoder: Decoder,
          columns: str | None, date_format: DateFormat, clock: ClockCheck, fast: bool, info: dict) -> Iterator[LegBatch]:
    if fmt == "asterisk-csv":
        names = parse_columns(columns) if columns else None
        return read_asterisk_csv(stream, times, decoder=decoder, columns=names, date_format=date_format, clock=clock,
                                 fast=fast, info=info)
    if fmt == "asterisk-db":
        names = parse_db_columns(columns) if columns else None
        return batched(read_asterisk_db(stream, times, decoder=decoder, columns=names, date_format=date_format),
                       stream, clock)
    assert mapping is not None
    if path.suffix.lower() in SPREADSHEET_SUFFIXES:
        return batched(read_mapped_sheet(path, times, mapping), stream, clock)
    return batched(read_mapped_csv(stream, times, mapping, decoder), stream, clock)


def _rejects_file(path: Path, rejects_path: Path | None, data_dir: str | Path | None, now: dt.datetime) -> RejectsFile:
    if rejects_path is not None:
        return RejectsFile(rejects_path)
    if data_dir is None:
        from report_pipelines.app import load_settings

        data_dir = load_settings().data_dir
    stamp = now.strftime("%Y%m%dT%H%M%SZ")
    return RejectsFile(Path(data_dir) / "rejects" / f"{path.name}.{stamp}.rejects.csv", find_free_name=True)


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
    horizon: dt.timedelta = DEFAULT_HORIZON,
    progress_interval: float = 1.0,
    encoding: str | None = None,
    date_format: str | None = None,
    columns: str | None = None,
    replace: bool = False,
    queue_log_path: str | Path | None = None,
    pbx: PbxConfig | None = None,
    save_pbx: bool = False,
    max_reject_share: float = DEFAULT_MAX_REJECT_SHARE,
    max_repeated_share: float = DEFAULT_MAX_REPEATED_SHARE,
    fast: bool = True,
    now: dt.datetime | None = None,
) -> ImportSummary:
    """Import one CDR file (and its queue_log) for one client; see the module docstring. Bad
    arguments raise ``InvalidInput``/``NotFound`` naming the option before anything is read or written."""
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
        if columns:
            raise InvalidInput("--columns", "not with --format mapped-csv (the mapping names the columns)")
    elif mapping_path is not None:
        raise InvalidInput("--mapping", f"only used with --format mapped-csv, not {fmt}")
    if columns:
        (parse_columns if fmt == "asterisk-csv" else parse_db_columns)(columns)
    queue_path = Path(queue_log_path) if queue_log_path is not None else None
    if queue_path is not None and not queue_path.is_file():
        raise InvalidInput("--queue-log", f"no such file: {queue_path}")
    if rejects_path is not None:
        rejects_path = Path(rejects_path)
        if rejects_path.exists():
            raise InvalidInput("--rejects", f"{rejects_path} already exists (a rejects file is never overwritten)")
    for name, share in (("--max-reject-share", max_reject_share), ("--max-repeated-share", max_repeated_share)):
        if not 0 <= share <= 1:
            raise InvalidInput(name, f"{share} is not a share between 0 and 1")
    parsed_format = DateFormat(date_format)
    try:
        client = ClientRepository(engine).get_by_slug(client_slug)
    except NotFound as exc:
        raise NotFound("--client", f"no client with slug {client_slug!r} (see: report-pipelines clients list)") from exc
    zone, zone_label = _zone(client.timezone, timezone, gmt, mapping)
    client_zone = parse_zone(client.timezone)
    config = PbxConfigRepository(engine).get(client.id).merged(pbx or PbxConfig())
    decoder = _decoder(path, encoding)

    now = now or dt.datetime.now(UTC)
    rejects = _Rejects(_rejects_file(path, rejects_path, data_dir, now))
    times = LocalTimes(zone, latest=now + dt.timedelta(days=1))
    clock = ClockCheck(zone_label)

    queue_log: QueueLogTables | None = None
    queue_file = None
    queue_rejects: RejectsFile | None = None
    if queue_path is not None:
        with queue_path.open("rb") as stream:
            queue_file = read_queue_log(stream, _decoder(queue_path, encoding))
        queue_log = queue_file.log
        if queue_file.rejects:
            queue_rejects = _rejects_file(queue_path, None, data_dir if rejects_path is None else rejects_path.parent, now)
            for row in queue_file.rejects:
                queue_rejects.write(row.line, row.reason, row.raw)
            queue_rejects.close()
    by_callid = AttemptJoin(queue_log.attempts) if queue_log is not None else None
    join = JoinStats()

    grouper = _Grouper(horizon)
    counts = {"direction": Counter(), "disposition": Counter(), "basis": Counter()}
    not_inbound_origins: Counter[str] = Counter()
    unknown_origins: Counter[str] = Counter()
    state = {"rows": 0, "calls": 0}
    info: dict = {}

    def process(legs: pa.Table | None, session: CallImport) -> None:
        if legs is None or legs.num_rows == 0:
            return
        if grouper.tainted:
            hit = pc.is_in(legs.column("call_id"), value_set=pa.array(list(grouper.tainted), type=pa.string()))
            hit_np = pc.fill_null(hit, False).to_numpy(zero_copy_only=False)
            if hit_np.any():
                for row in legs.filter(hit).select(["line", "call_id", "raw"]).to_pylist():
                    lines = ", ".join(map(str, grouper.tainted[row["call_id"]]))
                    rejects.write(row["line"], f"call {row['call_id']!r}: not imported because line(s) {lines} of the "
                                               "same call were rejected", row["raw"])
                legs = legs.filter(pc.invert(hit))
        if legs.num_rows == 0:
            return
        collapsed = collapse_legs(legs, client.id, config)
        table = collapsed.table
        if by_callid:
            table = by_callid.join(table, legs.column("call_id").combine_chunks(), legs.column("uniqueid").combine_chunks(),
                                   join)
        checked = CollapsedCalls(table, client.id)
        problems = checked.problems()
        if problems:
            bad_ids = {table.column("pbx_call_id")[i].as_py(): p for i, p in problems.items()}
            bad = pc.is_in(legs.column("call_id"), value_set=pa.array(list(bad_ids), type=pa.string()))
            bad_legs = legs.filter(bad).select(["line", "call_id", "raw"]).to_pylist()
            lines_of: dict[str, list[int]] = {}
            for row in bad_legs:
                lines_of.setdefault(row["call_id"], []).append(row["line"])
            for row in bad_legs:
                call_lines = ", ".join(map(str, sorted(lines_of[row["call_id"]])))
                rejects.write(row["line"], f"call {row['call_id']!r} (lines {call_lines}): "
                                           + "; ".join(bad_ids[row["call_id"]]), row["raw"])
            keep = [i for i in range(table.num_rows) if i not in problems]
            table = table.take(pa.array(keep, type=pa.int64()))
        if table.num_rows == 0:
            return
        for key in ("direction", "disposition", "basis"):
            for item in pc.value_counts(table.column(key)).to_pylist():
                counts[key][item["values"]] += item["counts"]
        direction = table.column("direction")
        origins = endpoint_keys(pc.fill_null(table.column("origin_channel"), ""))
        for counter, mask in ((not_inbound_origins, pc.not_equal(direction, Direction.INBOUND.value)),
                              (unknown_origins, pc.equal(direction, Direction.UNKNOWN.value))):
            if pc.any(mask).as_py():
                for item in pc.value_counts(origins.filter(mask)).to_pylist():
                    counter[item["values"] or "(no channel)"] += item["counts"]
        n = table.num_rows
        staged = pa.table({
            "client_id": pa.array([client.id] * n, type=pa.int64()),
            **{name: table.column(name) for name in ("pbx_call_id", "direction", "queue", "agent", "caller", "callee",
                                                     "started_at", "answered_at", "ended_at", "disposition", "queued_at")},
            "ingested_at": pa.array([now] * n, type=pa.timestamp("us", tz="UTC")),
            "first_line": table.column("first_line"),
        })
        session.stage(staged)
        state["calls"] += n

    try:
        stream = path.open("rb")
    except OSError as exc:
        raise InvalidInput("FILE", f"cannot read {path}: {exc.strerror}") from exc
    refused: InvalidInput | None = None
    merged = MergeResult()
    try:
        with CallImport(engine, client.id) as session:
            total_bytes = os.fstat(stream.fileno()).st_size
            last_report = time.monotonic()
            for batch in _legs(fmt, path, stream, times, mapping, decoder=decoder, columns=columns,
                               date_format=parsed_format, clock=clock, fast=fast, info=info):
                state["rows"] += batch.rows
                for row in batch.rejects:
                    rejects.write(row.line, row.reason, row.raw)
                    if row.call_id:
                        grouper.taint(row.call_id, row.line)
                grouper.add(batch.legs)
                process(grouper.ready(), session)
                if progress is not None and time.monotonic() - last_report >= progress_interval:
                    last_report = time.monotonic()
                    progress(ImportProgress(state["rows"], batch.position, total_bytes, state["calls"]))
            process(grouper.ready(everything=True), session)
            if progress is not None:
                progress(ImportProgress(state["rows"], stream.tell(), total_bytes, state["calls"]))
            rows = state["rows"]
            if rows == 0:
                refused = InvalidInput("FILE", f"{path.name} has no rows")
            elif rejects.file.count and (state["calls"] == 0 or rejects.file.count > max_reject_share * rows):
                reasons = "; ".join(f"{k}: {v}" for k, v in rejects.by_reason.most_common())
                refused = InvalidInput("FILE", f"{rejects.file.count} of {rows} rows rejected (more than the "
                                               f"--max-reject-share of {max_reject_share:.0%}): nothing was imported; "
                                               f"reasons: {reasons}; the rows are in {rejects.file.path}")
            else:
                merged = session.merge(replace=replace, zone=client_zone, now=now)
                if merged.repeated_in_file >= MIN_REPEATED_TO_REFUSE and \
                        merged.repeated_in_file > max_repeated_share * merged.staged:
                    refused = _repeated_refusal(fmt, merged, max_repeated_share)
            if refused is not None:
                session.rollback()
            else:
                if merged.earliest is not None:
                    from report_pipelines.domain.timezones import local_date_of

                    session.extend_active_from(local_date_of(merged.earliest, client_zone), now)
                if queue_log is not None and by_callid is not None:
                    session.store_queue_log(by_callid.attempts(), queue_log.sessions, queue_log.pauses, replace=replace,
                                            orphan_ends=queue_log.orphan_ends, zone=client_zone, now=now)
                state["client_has_inbound"] = session.has_inbound()
    finally:
        stream.close()
        rejects.file.close()
    if refused is not None:
        raise refused
    if save_pbx and pbx is not None:
        PbxConfigRepository(engine).save(client.id, config, now)

    warnings = _warnings(clock, times, counts["direction"], not_inbound_origins, unknown_origins, config, join,
                         client_has_inbound=state.get("client_has_inbound", True))
    queue_summary = None
    if queue_log is not None and queue_file is not None and by_callid is not None:
        queue_summary = QueueLogSummary(
            rows=queue_file.rows, events=dict(queue_log.events), attempts=queue_log.attempts.num_rows,
            joined_calls=join.joined, unmatched_attempts=by_callid.attempts().column("pbx_call_id").null_count,
            outcomes=dict(join.outcomes), sessions=len(queue_log.sessions), pauses=len(queue_log.pauses),
            rejected=len(queue_file.rejects), rejects_path=queue_rejects.path if queue_rejects else None,
            clamped=join.clamped)
    layout = info.get("layout")
    careful = info.get("careful")
    blocks = info.get("blocks")
    return ImportSummary(
        rows_read=state["rows"],
        calls=state["calls"],
        imported=merged.inserted,
        duplicates=merged.already_imported,
        rejected=rejects.file.count,
        rejects_path=rejects.file.path,
        warnings=tuple(warnings),
        peak_open_calls=grouper.peak,
        repeated_in_file=merged.repeated_in_file,
        repeated_examples=tuple(merged.repeated_examples),
        by_direction=dict(counts["direction"]),
        by_disposition=dict(counts["disposition"]),
        by_basis=dict(counts["basis"]),
        rejects_by_reason=dict(rejects.by_reason),
        first_call=merged.earliest.astimezone(client_zone) if merged.earliest else None,
        last_call=merged.latest.astimezone(client_zone) if merged.latest else None,
        zone=client.timezone,
        decoded=decoder.describe(),
        layout=layout.how if layout is not None else None,
        repaired_quoting=careful.recovered if careful is not None else 0,
        replaced=merged.replaced,
        replaced_days=tuple(merged.replaced_days),
        queue_log=queue_summary,
        careful_rows=blocks.careful_rows if blocks is not None else state["rows"],
    )


def _repeated_refusal(fmt: str, merged: MergeResult, share: float) -> InvalidInput:
    examples = ", ".join(f"{i!r} x{n} (lines {a} and {b})" for i, a, b, n in merged.repeated_examples)
    fix = {
        "asterisk-csv": "the call id is linkedid, else uniqueid: if another column is unique per call, name it "
                        "linkedid in --columns",
        "asterisk-db": "the call id is linkedid, else uniqueid: name the column that is unique per call as "
                       "linkedid (or uniqueid) in --columns",
        "mapped-csv": "map a column that is unique per call as call_id in the mapping",
    }[fmt]
    return InvalidInput("FILE", f"{merged.repeated_in_file} of {merged.staged} calls repeat an id already used by "
                                f"another call of the file (more than the --max-repeated-share of {share:.0%}; e.g. "
                                f"{examples}): the id column is not unique; {fix}; nothing was imported")


def _warnings(clock: ClockCheck, times: LocalTimes, directions: Counter[str], not_inbound: Counter[str],
              unknown: Counter[str], config: PbxConfig, join: JoinStats, *, client_has_inbound: bool) -> list[str]:
    warnings: list[str] = []
    clock_warning = clock.warning()
    if clock_warning:
        warnings.append(f"{clock_warning}; check --timezone/--gmt")
    if times.overlaps_guessed:
        warnings.append(
            f"{times.overlaps_guessed} time(s) fell in a DST fall-back hour of {times.name} and were read as the first "
            "occurrence (nothing in the row told which one)")
    top = lambda c: ", ".join(f"{k!r} ({v})" for k, v in c.most_common(3))
    if directions.get("unknown"):
        warnings.append(f"{directions['unknown']} call(s) of unknown direction: nothing in the records says whether "
                        f"they came in or went out (caller channels {top(unknown)}); if those are trunks pass --trunk "
                        "'<pattern>', or give the phones' range with --extensions (and --did), then re-import with "
                        "--replace")
    total = sum(directions.values())
    if total and not client_has_inbound:
        pieces = ", ".join(f"{v} {k}" for k, v in sorted(directions.items()))
        warnings.append(f"the client has no inbound call after importing {total} ({pieces}): the likely cause is trunks named like "
                        f"extensions; the calls came from {top(not_inbound)} (PBX configuration: {config.describe()}): "
                        "pass --trunk with the trunks' channel names, then re-import with --replace")
    if join.clamped:
        warnings.append(f"{join.clamped} queue_log time(s) fell outside their CDR call by more than 5 s and were moved "
                        "into it: the two files' clocks or zones disagree (check --timezone/--gmt)")
    return warnings


def client_pbx_config(engine: Engine, slug: str, *, pbx_config_args: tuple[tuple[str, ...], ...] = ((), (), ()),
                      clear: bool = False, now: dt.datetime | None = None) -> PbxConfig:
    """The client's stored PBX configuration, after replacing the parts given (or clearing it)."""
    from report_pipelines.domain.pbx import pbx_config

    try:
        client = ClientRepository(engine).get_by_slug(slug)
    except NotFound as exc:
        raise NotFound("SLUG", f"no client with slug {slug!r} (see: report-pipelines clients list)") from exc
    repository = PbxConfigRepository(engine)
    given = pbx_config(*pbx_config_args)
    if clear:
        if not given.empty:
            raise InvalidInput("--clear", "give --clear alone, or the parts to set")
        repository.save(client.id, PbxConfig(), now or dt.datetime.now(UTC))
        return PbxConfig()
    if given.empty:
        return repository.get(client.id)
    config = repository.get(client.id).merged(given)
    repository.save(client.id, config, now or dt.datetime.now(UTC))
    return config
