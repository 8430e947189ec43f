"""Period requests: one service behind every front door, and the usage log it keeps.

:func:`extract_period` is what the CLI (``report-pipelines extract``), the Dagster job
(``extract_period_job``) and the Python API call; so do ``read_report``, ``read_report_arrow`` and
``summarize_report`` of the public API. One request goes:

1. **validate** everything before anything is read, computed or written (one line naming the field:
   unknown client / report / format, end before start, a day in the future, longer than
   ``REPORT_PIPELINES_EXTRACT_MAX_DAYS``, a client without a reports licence asking for days that are
   not cached, an output that exists without ``force`` or is a folder);
2. **plan and compute the days** (:func:`~report_pipelines.services.reading.prepare_period`): cached
   closed days are read as they are, missing or stale ones computed on the bounded pool in date order
   under the client-day locks (a day another run is computing is waited for and reused), today computed
   live and never cached; past the deadline :class:`~report_pipelines.services.reading.PeriodTimeout`
   (the finished days stay cached);
3. **stream the output** one day at a time (Parquet row groups, CSV chunks, XLSX rows in
   constant-memory mode, JSON lines) through the project's one writer (:mod:`report_pipelines.adapters.
   exports`), atomically: a refused or failed request leaves no file, not even an empty one;
4. **record the request** in ``report_requests``: whatever happens, and never at the request's expense
   (a failure to record is logged and forgotten).
"""

from __future__ import annotations

import datetime as dt
import logging
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

import pandas as pd
import pyarrow as pa

from report_pipelines.adapters.db.models import REQUEST_CHANNELS
from report_pipelines.adapters.db.repositories import CacheManifestRepository
from report_pipelines.adapters.db.usage import UsageRepository
from report_pipelines.adapters.exports import PIPE_FORMATS, STREAM_FORMATS, stream_batches, write_batches
from report_pipelines.app import App, default_app
from report_pipelines.domain.clients import ClientRecord
from report_pipelines.domain.errors import InvalidInput, ReportPipelinesError
from report_pipelines.domain.precache import nearest_rank
from report_pipelines.domain.timezones import parse_zone
from report_pipelines.services.extracts import ClientDayResult
from report_pipelines.services.reading import (
    PeriodDays,
    PeriodRequest,
    PeriodTimeout,
    open_request,
    prepare_period,
    validate_request,
)

log = logging.getLogger(__name__)

SHAPES: tuple[str, ...] = ("days", "summary")
#: File name endings of each format.
EXTENSIONS = {"csv": "csv", "json": "jsonl", "parquet": "parquet", "xlsx": "xlsx"}
STDOUT = "-"


@dataclass(frozen=True)
class Progress:
    """How far a request is: ``done`` of ``total`` days ready (cached ones count from the start)."""

    done: int
    total: int
    computed: int
    eta_s: float | None  # from the computed days' mean duration over the workers; None before the first


@dataclass(frozen=True)
class ExtractResult:
    client: str
    report: str
    start: dt.date
    end: dt.date
    shape: str
    format: str
    path: Path | None  # None: standard output
    rows: int
    bytes: int
    days_cached: int
    days_computed: int
    days_live: int
    duration_s: float


# --- the usage log ------------------------------------------------------------------------------------
@dataclass
class _Entry:
    """What the usage log will say about one request, filled in as it goes."""

    channel: str
    client_ref: str
    report: str
    shape: str
    format: str | None
    requested_at: dt.datetime
    started: float = field(default_factory=time.perf_counter)
    client: ClientRecord | None = None
    start: dt.date | None = None
    end: dt.date | None = None
    days_cached: int = 0
    days_computed: int = 0
    days_live: int = 0
    rows: int = 0
    bytes: int = 0

    def values(self, status: str, error: str | None) -> dict:
        local = self.requested_at.astimezone(parse_zone(self.client.timezone)) if self.client else None
        local_date = local.date() if local else None
        return {
            "client_id": self.client.id if self.client else None, "client_ref": self.client_ref[:200],
            "report": self.report[:64], "period_start": self.start, "period_end": self.end, "shape": self.shape,
            "format": self.format[:16] if self.format else None, "channel": self.channel,
            "requested_at": self.requested_at, "local_date": local_date,
            "local_minute": local.hour * 60 + local.minute if local else None,
            "asks_yesterday": bool(local_date and self.end and self.end == local_date - dt.timedelta(days=1)),
            "days_cached": self.days_cached, "days_computed": self.days_computed, "days_live": self.days_live,
            "rows": self.rows, "bytes": self.bytes, "duration_s": round(time.perf_counter() - self.started, 6),
            "status": status, "error": error[:2000] if error else None,
        }


def _record(app: App, entry: _Entry, status: str, error: str | None = None) -> None:
    """Write the request's row; a failure here never fails the request (it is logged, once)."""
    try:
        if entry.client is None:  # refused before the period was checked: still name the client if it exists
            entry.client = _known_client(app, entry.client_ref)
        UsageRepository(app.engine).record(entry.values(status, error))
    except Exception as exc:  # the log serves planning; the request already has its answer
        log.warning("usage log: request of %s %s not recorded: %s", entry.client_ref, entry.report,
                    str(exc).splitlines()[0][:300])


def _known_client(app: App, ref: str) -> ClientRecord | None:
    from report_pipelines.adapters.db.repositories import ClientRepository
    from report_pipelines.domain.errors import NotFound

    repo = ClientRepository(app.engine)
    try:
        return repo.get(int(ref)) if ref.isdigit() else repo.get_by_slug(ref)
    except NotFound:
        return None


def _status_of(exc: BaseException) -> str:
    if isinstance(exc, PeriodTimeout):
        return "timeout"
    return "refused" if isinstance(exc, ReportPipelinesError) else "error"


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _taking(entry: _Entry, request: PeriodRequest) -> None:
    entry.client, entry.start, entry.end = request.client, request.start, request.end


def _filled(entry: _Entry, period: PeriodDays) -> None:
    entry.days_cached, entry.days_computed, entry.days_live = len(period.cached), len(period.computed), int(period.live)


def record_schedule_build(app: App, *, client_id: int, report: str, start: dt.date, end: dt.date, fmt: str,
                          requested_at: dt.datetime, duration_s: float, rows: int, bytes: int,
                          status: str = "ok", error: str | None = None) -> None:
    """Record a scheduled report's build in the usage log (channel ``schedule``); never raises.

    The schedule side calls it once per build, after the file is written (or with ``status="error"``
    and the error line when the build failed). Which days the build computed is read from the cache
    manifest: the days of the period computed at or after ``requested_at``.
    """
    try:
        from report_pipelines.adapters.db.repositories import ClientRepository

        client = ClientRepository(app.engine).get(client_id)
        entries = CacheManifestRepository(app.engine).entries(client_id, start, end, (report,))
        computed = sum(e.computed_at >= requested_at for e in entries)
        entry = _Entry("schedule", client.slug, report, "summary", fmt, requested_at, client=client, start=start,
                       end=end, days_cached=len(entries) - computed, days_computed=computed, rows=rows, bytes=bytes)
        entry.started = time.perf_counter() - duration_s
    except Exception as exc:
        log.warning("usage log: schedule build of client %s not recorded: %s", client_id, str(exc)[:300])
        return
    _record(app, entry, status, error)


# --- the service ----------------------------------------------------------------------------------------
def _output(out: str | Path | None, fmt: str, force: bool) -> Path | None:
    """The output path (``None``: standard output), refused before any work when it cannot be written."""
    if out is None:
        return None
    if str(out) == STDOUT:
        if fmt not in PIPE_FORMATS:
            raise InvalidInput("out", f"{fmt} cannot go to standard output (only {', '.join(PIPE_FORMATS)}); "
                                      "give --out PATH")
        return None
    path = Path(out).expanduser()
    if str(out).endswith(("/", "\\")) or path.is_dir():
        raise InvalidInput("out", f"{str(path)[:200]!r} is a folder; give a file name")
    if path.exists() and not force:
        raise InvalidInput("out", f"{str(path)[:200]!r} exists; give --force to replace it")
    if path.parent.exists() and not path.parent.is_dir():
        raise InvalidInput("out", f"{str(path.parent)[:200]!r} is not a folder")
    return path


def default_name(request: PeriodRequest, shape: str, fmt: str) -> str:
    suffix = "_summary" if shape == "summary" else ""
    return f"{request.client.slug}_{request.report.name}_{request.start}_{request.end}{suffix}.{EXTENSIONS[fmt]}"


def _validate_options(shape: str, fmt: str, channel: str, deadline_s: float | None) -> None:
    if shape not in SHAPES:
        raise InvalidInput("shape", f"{shape!r} is not one of {', '.join(SHAPES)}")
    if fmt not in STREAM_FORMATS:
        raise InvalidInput("format", f"{fmt!r} is not one of {', '.join(STREAM_FORMATS)}")
    if channel not in REQUEST_CHANNELS:
        raise InvalidInput("channel", f"{channel!r} is not one of {', '.join(REQUEST_CHANNELS)}")
    if deadline_s is not None and not deadline_s > 0:
        raise InvalidInput("deadline", f"must be a number of seconds above 0, not {deadline_s!r}")


def _validate_period(app: App, report: str, client: str | int, start: dt.date | str, end: dt.date | str,
                     now: dt.datetime) -> PeriodRequest:
    request = validate_request(app, report, client, start, end, now)
    _check_length(app, request)
    return request


def _check_length(app: App, request: PeriodRequest) -> None:
    length = (request.end - request.start).days + 1
    if length > app.settings.periods.max_days:
        raise InvalidInput("end", f"the period is {length} days long; at most {app.settings.periods.max_days} "
                                  "(REPORT_PIPELINES_EXTRACT_MAX_DAYS): ask for it in parts")


def validate_period_request(app: App, report: str, client: str | int, start: dt.date | str, end: dt.date | str, *,
                            shape: str = "days", format: str = "csv", now: dt.datetime | None = None) -> PeriodRequest:
    """Every check :func:`extract_period` makes before any work (for a front door that answers before
    the work starts, such as the HTTP API's asynchronous extractions); nothing is recorded."""
    _validate_options(shape, format, "api", None)
    return _validate_period(app, report, client, start, end, now or app.now())


class _Tracker:
    """Turns the period's plan and each computed day into :class:`Progress` reports."""

    def __init__(self, total: int, workers: int, progress: Callable[[Progress], None] | None) -> None:
        self.total, self.workers, self.progress = total, workers, progress
        self.cached = 0
        self.seconds: list[float] = []

    def tell(self, done: int, eta: float | None) -> None:
        if self.progress is not None:
            self.progress(Progress(done, self.total, len(self.seconds), eta))

    def planned(self, cached: int, missing: int) -> None:
        self.cached = cached
        self.tell(cached, None)

    def day(self, result: ClientDayResult) -> None:
        self.seconds.append(result.seconds)
        done = self.cached + len(self.seconds)
        self.tell(done, sum(self.seconds) / len(self.seconds) * (self.total - done) / max(1, self.workers))


def extract_period(client: str | int, report: str, start: dt.date | str, end: dt.date | str, *,
                   shape: str = "days", format: str = "csv", out: str | Path | None = None,
                   deadline_s: float | None = None, channel: str = "python", force: bool = False,
                   app: App | None = None, now: dt.datetime | None = None,
                   progress: Callable[[Progress], None] | None = None, stdout: BinaryIO | None = None,
                   workers: int | None = None, folder: Path | None = None) -> ExtractResult:
    """Write ``report`` for ``client`` over local days ``start..end`` (see the module docstring).

    ``shape``: ``days`` (the day rows, with ``client`` and ``date``) or ``summary`` (the period
    re-aggregated and presented, what ``summarize_report`` returns). ``format``: csv, xlsx, parquet or
    json (JSON lines). ``out``: a file (``force`` replaces an existing one), ``"-"`` for ``stdout``
    (default: this process's standard output; csv and json only), or ``None`` for a file named after the
    request in ``folder`` (default: the current folder). ``deadline_s`` defaults to ``REPORT_PIPELINES_EXTRACT_DEADLINE_S``.
    ``progress`` is told how far the days are after each computed day.
    """
    app = app or default_app()
    now = now or app.now()
    fmt = format.strip().lower() if isinstance(format, str) else format
    entry = _Entry(channel if channel in REQUEST_CHANNELS else "python", str(client), str(report), str(shape),
                   str(fmt), now)
    try:
        _validate_options(shape, fmt, channel, deadline_s)
        request, kept = open_request(app, report, client, start, end, now, check=lambda r: _check_length(app, r),
                                     stamps=True)
        _taking(entry, request)
        target = _output((folder or Path.cwd()) / default_name(request, shape, fmt) if out is None else out, fmt, force)
        deadline = deadline_s or app.settings.periods.deadline_s
        workers = workers or app.settings.workers
        tracker = _Tracker(len(request.closed_days) + int(request.includes_today), workers, progress)
        period = prepare_period(app, request, now=now, timeout_s=deadline, workers=workers, refresh_stale=True,
                                on_day=tracker.day, on_plan=tracker.planned, kept=kept)
        _filled(entry, period)
        batches, schema = _shaped(period, shape)
        if target is None:
            entry.rows, entry.bytes = stream_batches(batches, schema, stdout or sys.stdout.buffer, fmt)
        else:
            written, entry.rows = write_batches(batches, schema, target, fmt, sheet_name=request.report.name[:31])
            entry.bytes = written.bytes
        tracker.tell(tracker.total, 0.0)
    except Exception as exc:
        _record(app, entry, _status_of(exc), _first_line(exc))
        raise
    _record(app, entry, "ok")
    return ExtractResult(client=request.client.slug, report=request.report.name, start=request.start,
                         end=request.end, shape=shape, format=fmt, path=target, rows=entry.rows, bytes=entry.bytes,
                         days_cached=entry.days_cached, days_computed=entry.days_computed,
                         days_live=entry.days_live, duration_s=time.perf_counter() - entry.started)


def _summary_table(period: PeriodDays) -> pa.Table:
    return _presented(period.summary(), "arrow")


def _presented(summary: pd.DataFrame, fmt: str) -> pd.DataFrame | pa.Table:
    """A presented period as a pandas caller gets it (``fmt`` "pandas": no round trip through Arrow),
    else as an Arrow table."""
    frame = summary.reset_index(drop=True)  # what a round trip through Arrow gave before
    return frame if fmt == "pandas" else pa.Table.from_pandas(frame, preserve_index=False)


def _shaped(period: PeriodDays, shape: str):
    if shape == "summary":
        table = _summary_table(period)
        return [table], table.schema
    schema = period.request.report.schema.append(pa.field("client", pa.int64())).append(pa.field("date", pa.date32()))
    return period.tables(), schema


# --- the Python API -------------------------------------------------------------------------------------
def _read(report: str, client: str | int, start: dt.date | str, end: dt.date | str, shape: str, fmt: str, *,
          app: App | None = None, now: dt.datetime | None = None, timeout_s: float | None = None,
          workers: int = 1) -> pa.Table | pd.DataFrame:
    app = app or default_app()
    now = now or app.now()
    entry = _Entry("python", str(client), str(report), shape, fmt, now)
    try:
        request, kept = open_request(app, report, client, start, end, now, check=lambda r: _check_length(app, r),
                                     summary=shape == "summary")
        _taking(entry, request)
        if kept.summary is not None:  # every day cached, none live, and this process presented them already
            entry.days_cached = len(request.closed_days)
            table = _presented(kept.summary, fmt)
        else:
            period = prepare_period(app, request, now=now, timeout_s=timeout_s, workers=workers, kept=kept)
            _filled(entry, period)
            table = period.table() if shape == "days" else _presented(period.summary(), fmt)
        entry.rows = len(table)
    except Exception as exc:
        _record(app, entry, _status_of(exc), _first_line(exc))
        raise
    _record(app, entry, "ok")
    return table


def read_report_arrow(report: str, client: str | int, start: dt.date | str, end: dt.date | str,
                      **options) -> pa.Table:
    """The day tables of ``report`` for ``client`` over local days ``start..end`` (one row set per day,
    with ``client`` and ``date``): closed days from the cache (missing ones computed and cached on the
    way), today computed live. Options: ``app``, ``now``, ``timeout_s``, ``workers``. Recorded in the
    usage log (channel ``python``)."""
    return _read(report, client, start, end, "days", "arrow", **options)


def read_report(report: str, client: str | int, start: dt.date | str, end: dt.date | str,
                **options) -> pd.DataFrame:
    """:func:`read_report_arrow` as a pandas DataFrame."""
    return _read(report, client, start, end, "days", "pandas", **options).to_pandas()


def summarize_report(report: str, client: str | int, start: dt.date | str, end: dt.date | str,
                     **options) -> pd.DataFrame:
    """The period as people read it: the days re-aggregated (sums over sums), then presented."""
    return _read(report, client, start, end, "summary", "pandas", **options)


# --- `usage` --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class UsageLine:
    client: str
    requests: int
    d1_share: float  # share of its requests asking for yesterday
    p50_s: float
    p95_s: float
    cached_share: float  # share of the days read that came from the cache
    refused: int
    timeouts: int


def usage_summary(app: App, *, client: str | None = None, since: dt.date | None = None,
                  now: dt.datetime | None = None) -> list[UsageLine]:
    """Per client, since ``since`` (default: the D-1 window before today, UTC): requests, D-1 share,
    p50/p95 duration and the share of days served from the cache; busiest client first."""
    from report_pipelines.services.clients import get_client

    now = now or app.now()
    first = since or (now.date() - dt.timedelta(days=app.settings.periods.window_days))
    client_id = None if client is None else get_client(app.engine, client).id
    rows = UsageRepository(app.engine).requests(dt.datetime.combine(first, dt.time(), dt.UTC), client_id)
    by_client: dict[str, list] = {}
    for row in rows:
        by_client.setdefault(row.slug, []).append(row)
    lines = []
    for slug, logged in by_client.items():
        durations = [r.duration_s for r in logged]
        days = sum(r.days_cached + r.days_computed + r.days_live for r in logged)
        lines.append(UsageLine(
            client=slug, requests=len(logged), d1_share=sum(r.asks_yesterday for r in logged) / len(logged),
            p50_s=nearest_rank(durations, 50) or 0.0, p95_s=nearest_rank(durations, 95) or 0.0,
            cached_share=sum(r.days_cached for r in logged) / days if days else 0.0,
            refused=sum(r.status == "refused" for r in logged), timeouts=sum(r.status == "timeout" for r in logged)))
    return sorted(lines, key=lambda line: (-line.requests, line.client))


__all__ = ["SHAPES", "ExtractResult", "PeriodTimeout", "Progress", "UsageLine", "extract_period", "read_report",
           "read_report_arrow", "record_schedule_build", "summarize_report", "usage_summary",
           "validate_period_request"]
