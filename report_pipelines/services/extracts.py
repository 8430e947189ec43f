"""Compute client-days: read a day's calls once, compute every report, cache them, record the manifest.

A *client-day* is the unit of work: one client, one closed local day. :func:`run_client_days` hands
client-days to a bounded pool of worker processes; each worker takes the next one when it is free
(in-flight balance: exactly one client-day per worker is in flight, never a pre-assigned share), and the
largest client-days are handed out first so one big contact centre does not finish last alone.

Two computations of the same client-day never overlap: :class:`ClientDayLocks` serialises them
(PostgreSQL advisory lock, or a file lock on SQLite). The second one, once it gets the lock, finds
the first one's fresh result in the manifest and reuses it instead of computing again.
"""

from __future__ import annotations

import datetime as dt
import json
import multiprocessing
import os
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import FIRST_COMPLETED, Executor, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Literal, TypeVar

import pyarrow as pa
import pyarrow.compute as pc

from report_pipelines.adapters.db.repositories import CacheManifestRepository, CallEventRepository
from report_pipelines.adapters.locks import LockTimeout
from report_pipelines.app import App, Clock
from report_pipelines.domain.cache import CachedDay, SourceState, call_ids_checksum
from report_pipelines.domain.errors import InvalidInput, ReportPipelinesError
from report_pipelines.domain.reports import REPORTS, DayContext, get_report
from report_pipelines.domain.reports.screening import screen_calls
from report_pipelines.domain.timezones import UTC, local_day_window, parse_zone
from report_pipelines.settings import Settings

T = TypeVar("T")
R = TypeVar("R")

#: ``reuse_since`` value meaning: any fresh cached result will do.
ANY_TIME = dt.datetime(1970, 1, 1, tzinfo=UTC)


class DayNotClosed(InvalidInput):
    """The local day is still going on (or in the future): it is computed live, never cached."""


class ExtractTimeout(ReportPipelinesError, TimeoutError):
    """The work could not finish within the time it was given."""


@dataclass(frozen=True, order=True)
class ClientDay:
    client_id: int
    timezone: str
    day: dt.date
    weight: int = field(default=0, compare=False)  # expected events, to hand out big days first


@dataclass(frozen=True)
class ClientDayResult:
    client_id: int
    day: dt.date
    timezone: str
    status: Literal["computed", "reused"]
    rows: dict[str, int]
    bytes: dict[str, int]
    source_rows: int
    source_watermark: dt.datetime | None
    rejected: dict[str, int]
    seconds: float
    worker: int = field(default_factory=os.getpid)  # the process that did the work

    @property
    def rejected_rows(self) -> int:
        return sum(self.rejected.values())


class Extractor:
    """Computes and caches client-days with the pieces of one :class:`App` (one per process)."""

    def __init__(self, app: App) -> None:
        self.app = app
        self.settings = app.settings
        self.store = app.store
        self.locks = app.locks
        self.events = CallEventRepository(app.engine)
        self.manifest = CacheManifestRepository(app.engine)

    def compute(self, task: ClientDay, reports: Sequence[str], *, now: dt.datetime, run_id: str | None = None,
                reuse_since: dt.datetime | None = None, deadline: float | None = None) -> ClientDayResult:
        """Cache ``reports`` for one closed client-day.

        ``reuse_since``: reuse the cached result instead of computing when it is still fresh and was
        computed at or after this instant (``ANY_TIME``: whenever). ``None`` always recomputes.
        ``deadline`` (a ``time.time()`` instant) bounds the wait for another run's lock on the same
        client-day, together with the configured ``lock_timeout_s``; past it :class:`ExtractTimeout`.
        """
        started = time.perf_counter()
        zone = parse_zone(task.timezone)
        window = local_day_window(task.day, zone)
        if window[1] > now:
            raise DayNotClosed(
                "date",
                f"{task.day} has not ended in {task.timezone} yet (it ends at {window[1].isoformat()}); "
                "the current local day is computed live, never cached",
            )
        wait = self.settings.lock_timeout_s
        if deadline is not None:
            wait = min(wait, deadline - time.time())
            if wait <= 0:
                raise ExtractTimeout(f"deadline: no time left for client {task.client_id} {task.day}")
        try:
            with self.locks.hold(task.client_id, task.day, wait):
                return self._compute_locked(task, reports, window, now, run_id, reuse_since, started)
        except LockTimeout:
            if deadline is not None and wait < self.settings.lock_timeout_s:
                raise ExtractTimeout(f"deadline: client {task.client_id} {task.day} was still being computed by "
                                     f"another run when the time ran out ({wait:.1f} s of waiting)") from None
            raise

    def _compute_locked(self, task: ClientDay, reports: Sequence[str], window: tuple[dt.datetime, dt.datetime],
                        now: dt.datetime, run_id: str | None, reuse_since: dt.datetime | None,
                        started: float) -> ClientDayResult:
        if reuse_since is not None:
            reused = self._reusable(task, reports, window, reuse_since)
            if reused is not None:
                return _result(task, "reused", reused, time.perf_counter() - started)
        calls = self.events.day_calls(task.client_id, *window)
        ctx = DayContext(task.client_id, task.timezone, task.day, self.settings.service_level_seconds)
        screened = screen_calls(calls, ctx, *window)
        watermark = pc.max(calls.column("ingested_at")).as_py() if calls.num_rows else None
        source_checksum = call_ids_checksum(calls.column("pbx_call_id").to_pylist())
        computed_at = self.app.now()
        tables = {name: get_report(name).compute_day(screened.clean, ctx) for name in reports}
        provenance = day_provenance(task.timezone, calls.num_rows, source_checksum, watermark, screened.rejected)
        # A reader trusts a file only with its manifest row: forget the old rows first, so a crash while the
        # files are replaced leaves files without rows (recomputed, or re-recorded by the repair pass from the
        # provenance each file carries), never a row describing another file's bytes.
        self.manifest.forget(task.client_id, task.day, tuple(reports))
        entries = []
        for name, table in tables.items():
            stored = self.store.write_day(name, task.client_id, task.day, table, provenance)
            entries.append(CachedDay(
                report=name, client_id=task.client_id, local_date=task.day, path=stored.path, rows=stored.rows,
                bytes=stored.bytes, checksum=stored.checksum, source_rows=calls.num_rows,
                source_checksum=source_checksum, source_watermark=watermark,
                rejected_rows=screened.rejected_total, rejected_reasons=dict(screened.rejected),
                computed_at=computed_at, run_id=run_id,
            ))
        self.manifest.replace(entries)
        return _result(task, "computed", entries, time.perf_counter() - started)

    def _reusable(self, task: ClientDay, reports: Sequence[str], window: tuple[dt.datetime, dt.datetime],
                  since: dt.datetime) -> list[CachedDay] | None:
        cached = {e.report: e for e in self.manifest.entries(task.client_id, task.day, task.day, tuple(reports))}
        if set(cached) != set(reports):
            return None
        source: SourceState = self.events.day_source(task.client_id, *window)
        entries = [cached[name] for name in reports]
        if all(e.is_fresh(source) and e.computed_at >= since and self.store.exists(e.report, e.client_id, e.local_date)
               for e in entries):
            return entries
        return None

    def live_day(self, report: str, client_id: int, timezone: str, day: dt.date, now: dt.datetime) -> pa.Table:
        """The day table of a day still going on, from its calls so far: computed, never cached."""
        start, end = local_day_window(day, parse_zone(timezone))
        ctx = DayContext(client_id, timezone, day, self.settings.service_level_seconds)
        calls = self.events.day_calls(client_id, start, min(end, now))
        return get_report(report).compute_day(screen_calls(calls, ctx, start, end).clean, ctx)


def day_provenance(timezone: str, source_rows: int, source_checksum: str, watermark: dt.datetime | None,
                   rejected: dict[str, int]) -> dict[str, str]:
    """What every day file records about where it came from (Parquet key-value metadata).

    Deterministic (no run id, no computation time): recomputing the same calls gives the same bytes.
    """
    return {
        "timezone": timezone,
        "source_rows": str(source_rows),
        "source_checksum": source_checksum,
        "source_watermark": watermark.isoformat() if watermark else "",
        "rejected_reasons": json.dumps(dict(sorted(rejected.items()))),
    }


def _result(task: ClientDay, status: Literal["computed", "reused"], entries: list[CachedDay],
            seconds: float) -> ClientDayResult:
    first = entries[0]
    return ClientDayResult(
        client_id=task.client_id, day=task.day, timezone=task.timezone, status=status,
        rows={e.report: e.rows for e in entries}, bytes={e.report: e.bytes for e in entries},
        source_rows=first.source_rows, source_watermark=first.source_watermark,
        rejected=dict(first.rejected_reasons), seconds=seconds,
    )


# --- the pool -------------------------------------------------------------------------------------
_worker: Extractor | None = None


def _init_worker(settings: Settings, clock: Clock) -> None:
    global _worker
    _worker = Extractor(App(settings, clock=clock))


def _work(task: ClientDay, reports: tuple[str, ...], now: dt.datetime, run_id: str | None,
          reuse_since: dt.datetime | None, deadline: float | None) -> ClientDayResult:
    assert _worker is not None, "worker not initialised"
    return _worker.compute(task, reports, now=now, run_id=run_id, reuse_since=reuse_since, deadline=deadline)


def run_client_days(
    app: App,
    tasks: Iterable[ClientDay],
    *,
    reports: Sequence[str] | None = None,
    workers: int = 2,
    now: dt.datetime | None = None,
    run_id: str | None = None,
    reuse_since: dt.datetime | None = None,
    timeout_s: float | None = None,
    on_result: Callable[[ClientDayResult], None] | None = None,
    pool_min_calls: int = 200_000,
    order: Literal["largest_first", "given"] = "largest_first",
) -> list[ClientDayResult]:
    """Compute client-days on at most ``workers`` processes, biggest first; results in completion order.

    ``order="given"`` hands them out in the order of ``tasks`` instead (the D-1 pre-cache: earliest
    ready-by first; a period request: its days in date order).

    Small work runs in this process: one task, ``workers=1``, or fewer expected calls (task weights)
    than ``pool_min_calls``; starting worker processes costs 1-1.5 s here, more than ~200,000
    calls take to compute. A failure of any client-day stops the hand-out and is
    raised once the items already running have finished (their results are cached and kept).
    ``timeout_s`` bounds the whole call, waiting for other runs' locks included: past it, nothing new
    starts and :class:`ExtractTimeout` says how far it got.
    """
    reports = tuple(reports or REPORTS)
    for name in reports:
        get_report(name)
    if workers < 1:
        raise InvalidInput("workers", "must be at least 1")
    ordered = list(tasks) if order == "given" else sorted(tasks, key=lambda t: (-t.weight, t.day, t.client_id))
    now = now or app.now()
    deadline = None if timeout_s is None else time.time() + timeout_s
    results: list[ClientDayResult] = []

    def done(result: ClientDayResult) -> None:
        results.append(result)
        if on_result:
            on_result(result)

    def expired() -> bool:
        return deadline is not None and time.time() > deadline

    def timeout_error() -> ExtractTimeout:
        return ExtractTimeout(
            f"timeout_s: {len(results)} of {len(ordered)} client-days done in {timeout_s:g} s; "
            "what finished is cached: give more time or fewer days/clients"
        )

    if len(ordered) <= 1 or workers == 1 or sum(t.weight for t in ordered) < pool_min_calls:
        extractor = Extractor(app)
        for task in ordered:
            if expired():
                raise timeout_error()
            try:
                done(extractor.compute(task, reports, now=now, run_id=run_id, reuse_since=reuse_since,
                                       deadline=deadline))
            except ExtractTimeout:
                raise timeout_error() from None
        return results

    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(["report_pipelines.services.extracts"])
    pool = ProcessPoolExecutor(max_workers=min(workers, len(ordered)), mp_context=context,
                               initializer=_init_worker, initargs=(app.settings, app.clock))
    hand_out_in_flight(pool, _work, ordered, slots=min(workers, len(ordered)),
                       args=(reports, now, run_id, reuse_since, deadline), deadline=deadline, on_result=done,
                       timeout_error=timeout_error)
    return results


def hand_out_in_flight(pool: Executor, fn: Callable[..., R], items: Iterable[T], *, slots: int, args: tuple = (),
                       deadline: float | None = None, on_result: Callable[[R], None],
                       timeout_error: Callable[[], BaseException]) -> None:
    """Run ``fn(item, *args)`` for every item on ``pool`` with exactly ``slots`` in flight: whenever one
    finishes, the next item (in the given order) goes to the free worker. This is the in-flight balance
    of :func:`run_client_days` (and of the load-balance replay, which proves it against the simulation).

    A failure stops the hand-out and is raised once the running items have finished (their results are
    passed to ``on_result`` first). Past ``deadline`` (a ``time.time()`` instant), or when an item raises
    :class:`ExtractTimeout`, nothing new starts and ``timeout_error()`` is raised without waiting for what
    is still running. The pool is shut down on the way out.
    """
    pending = iter(items)
    running: set[Future[R]] = set()
    failure: BaseException | None = None
    timed_out = False

    def expired() -> bool:
        return deadline is not None and time.time() > deadline

    def submit_next() -> bool:
        item = next(pending, None)
        if item is None:
            return False
        running.add(pool.submit(fn, item, *args))
        return True

    try:
        for _ in range(slots):
            submit_next()
        while running:
            remaining = None if deadline is None else max(0.0, deadline - time.time())
            finished, running = wait(running, timeout=remaining, return_when=FIRST_COMPLETED)
            if not finished:  # the deadline passed with work still running
                timed_out = True
                raise timeout_error()
            for future in finished:
                try:
                    on_result(future.result())
                except ExtractTimeout:
                    timed_out = True
                    failure = failure or timeout_error()
                except BaseException as exc:
                    failure = failure or exc
                if failure is None and not expired():
                    submit_next()
        if failure is not None:
            raise failure
    finally:
        # On a timeout, do not wait for what is running: its writes are atomic and its lock dies with it.
        pool.shutdown(wait=not timed_out, cancel_futures=True)
    if next(pending, None) is not None:
        raise timeout_error()
