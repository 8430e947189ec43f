"""Compute client-days: read a day's calls once, compute every report, cache them, record the manifest.

A *client-day* is the unit of truth: one client, one closed local day, one manifest row per report.
The unit of work is a *batch* of the client-days of one zone-day (:func:`make_batches`): their calls
are read in one query, their rows written in one transaction, their locks taken at once.
:func:`run_client_days` hands batches to a bounded pool of worker processes; each worker takes the
next one when it is free (in-flight balance: exactly one batch per worker is in flight, never a
pre-assigned share), and the largest batches (a big contact centre's day is one of its own) are
handed out first so one big client does not finish last alone.

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
from dataclasses import dataclass, field, replace
from typing import Literal, TypeVar

import pyarrow as pa
import pyarrow.compute as pc

from report_pipelines.adapters.db.cdr_imports import CallEventChanges
from report_pipelines.adapters.db.repositories import (
    AgentIntervalRepository,
    CacheManifestRepository,
    CallEventRepository,
)
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
    host: str = ""  # the Celery worker that did it (its --hostname); "" in a local pool

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
        self.agent_intervals = AgentIntervalRepository(app.engine)
        self.changes = CallEventChanges(app.engine)
        self.manifest = CacheManifestRepository(app.engine)

    def compute(self, task: ClientDay, reports: Sequence[str], *, now: dt.datetime, run_id: str | None = None,
                reuse_since: dt.datetime | None = None, deadline: float | None = None) -> ClientDayResult:
        """Cache ``reports`` for one closed client-day (a batch of one: see :meth:`compute_batch`)."""
        [result] = self.compute_batch([task], reports, now=now, run_id=run_id, reuse_since=reuse_since,
                                      deadline=deadline)
        return result

    def compute_batch(self, tasks: Sequence[ClientDay], reports: Sequence[str], *, now: dt.datetime,
                      run_id: str | None = None, reuse_since: dt.datetime | None = None,
                      deadline: float | None = None) -> list[ClientDayResult]:
        """Cache ``reports`` for client-days of one zone-day (same local date, same zone), together.

        The batch's client-day locks are taken at once (in key order, so two batches never deadlock),
        what is still fresh is reused, the calls of every client left are read in one query, each
        client's day is screened and computed, its old manifest rows are forgotten in one transaction
        before the files are replaced, and the new rows are recorded in one more: the per-client-day
        manifest stays the truth, only the round trips are shared.

        ``reuse_since``: reuse a cached result instead of computing when it is still fresh and was
        computed at or after this instant (``ANY_TIME``: whenever). ``None`` always recomputes.
        ``deadline`` (a ``time.time()`` instant) bounds the wait for another run's locks, together with
        the configured ``lock_timeout_s``; past it :class:`ExtractTimeout`.
        """
        started = time.perf_counter()
        if not tasks:
            return []
        first = tasks[0]
        if any((t.timezone, t.day) != (first.timezone, first.day) for t in tasks):
            raise ValueError("a batch is one zone-day: every task has the same local date and time zone")
        window = local_day_window(first.day, parse_zone(first.timezone))
        if window[1] > now:
            raise DayNotClosed(
                "date",
                f"{first.day} has not ended in {first.timezone} yet (it ends at {window[1].isoformat()}); "
                "the current local day is computed live, never cached",
            )
        wait = self.settings.lock_timeout_s
        if deadline is not None:
            wait = min(wait, deadline - time.time())
            if wait <= 0:
                raise ExtractTimeout(f"deadline: no time left for {len(tasks)} client-day(s) of {first.day}")
        ids = sorted({t.client_id for t in tasks})
        try:
            with self.locks.hold_many(ids, first.day, wait):
                return self._compute_locked(tasks, reports, window, now, run_id, reuse_since, started)
        except LockTimeout:
            if deadline is not None and wait < self.settings.lock_timeout_s:
                raise ExtractTimeout(f"deadline: {first.day} of clients {ids[:5]} was still being computed by "
                                     f"another run when the time ran out ({wait:.1f} s of waiting)") from None
            raise

    def _compute_locked(self, tasks: Sequence[ClientDay], reports: Sequence[str],
                        window: tuple[dt.datetime, dt.datetime], now: dt.datetime, run_id: str | None,
                        reuse_since: dt.datetime | None, started: float) -> list[ClientDayResult]:
        day = tasks[0].day
        reused = self._reusable(tasks, reports, window, reuse_since) if reuse_since is not None else {}
        results = [_result(t, "reused", reused[t.client_id], 0.0) for t in tasks if t.client_id in reused]
        todo = [t for t in tasks if t.client_id not in reused]
        if not todo:
            return _spread(results, time.perf_counter() - started)
        calls_by_client = self.events.zone_day_calls([t.client_id for t in todo], *window,
                                                     expected_rows=sum(t.weight for t in todo))
        inputs_by_client = self._extra_inputs(reports, [t.client_id for t in todo], window)
        computed_at = self.app.now()
        written: list[tuple[ClientDay, dict[str, pa.Table], dict[str, str], list[CachedDay]]] = []
        for task in todo:
            calls = calls_by_client[task.client_id]
            ctx = DayContext(task.client_id, task.timezone, day, self.settings.service_level_seconds)
            screened = screen_calls(calls, ctx, *window, unique_ids=True)  # one client's rows of call_events
            watermark = pc.max(calls.column("ingested_at")).as_py() if calls.num_rows else None
            source_checksum = call_ids_checksum(calls.column("pbx_call_id"))
            inputs = {name: by_client[task.client_id] for name, by_client in inputs_by_client.items()}
            tables = {name: get_report(name).compute_day_from(screened.clean, ctx, inputs) for name in reports}
            provenance = day_provenance(task.timezone, calls.num_rows, source_checksum, watermark, screened.rejected)
            entries = [CachedDay(
                report=name, client_id=task.client_id, local_date=day, path="", rows=0, bytes=0, checksum="",
                source_rows=calls.num_rows, source_checksum=source_checksum, source_watermark=watermark,
                rejected_rows=screened.rejected_total, rejected_reasons=dict(screened.rejected),
                computed_at=computed_at, run_id=run_id, day_table=kept_table(tables[name]))
                for name in reports]
            written.append((task, tables, provenance, entries))
        # A reader trusts a file only with its manifest row: forget the old rows first, so a crash while the
        # files are replaced leaves files without rows (recomputed, or re-recorded by the repair pass from the
        # provenance each file carries), never a row describing another file's bytes.
        self.manifest.forget_many([t.client_id for t in todo], day, tuple(reports))
        pending = [(entry, (entry.report, task.client_id, day, tables[entry.report], provenance))
                   for task, tables, provenance, entries in written for entry in entries]
        stored_days = self.store.write_days([item for _, item in pending])
        recorded = [replace(entry, path=stored.path, rows=stored.rows, bytes=stored.bytes, checksum=stored.checksum)
                    for (entry, _), stored in zip(pending, stored_days, strict=True)]
        self.manifest.replace(recorded)
        by_client: dict[int, list[CachedDay]] = {}
        for entry in recorded:
            by_client.setdefault(entry.client_id, []).append(entry)
        results += [_result(t, "computed", by_client[t.client_id], 0.0) for t in todo]
        return _spread(results, time.perf_counter() - started)

    def _extra_inputs(self, reports: Sequence[str], client_ids: list[int],
                      window: tuple[dt.datetime, dt.datetime]) -> dict[str, dict[int, pa.Table]]:
        """The inputs besides the calls that ``reports`` declare (``extra_inputs``), per client, each
        read in one query for the zone-day; nothing is read when no report needs one."""
        needed = {name for report in reports for name in get_report(report).extra_inputs}
        readers = {"agent_intervals": self.agent_intervals.zone_day_intervals}
        return {name: readers[name](client_ids, *window) for name in sorted(needed)}

    def _reusable(self, tasks: Sequence[ClientDay], reports: Sequence[str], window: tuple[dt.datetime, dt.datetime],
                  since: dt.datetime) -> dict[int, list[CachedDay]]:
        """The batch's client-days whose every report is cached, fresh, computed since ``since``, on disk."""
        day = tasks[0].day
        cached: dict[int, dict[str, CachedDay]] = {}
        for entry in self.manifest.entries_for_day([t.client_id for t in tasks], day):
            if entry.report in reports:
                cached.setdefault(entry.client_id, {})[entry.report] = entry
        complete = [cid for cid, by_report in cached.items() if set(by_report) == set(reports)]
        if not complete:
            return {}
        sources: dict[int, SourceState] = self.events.day_sources(complete, *window)
        # Calls-only reports go stale through their calls (count, watermark); a report with other inputs
        # (agent sessions) also when the day changed after it was computed (a queue_log import).
        changes = self.changes.latest(complete, day, day) if any(get_report(r).extra_inputs for r in reports) else {}
        fresh = {}
        for client_id in complete:
            entries = [cached[client_id][name] for name in reports]
            source = sources.get(client_id, SourceState(0, None))
            if all(e.is_fresh(source, changes.get((client_id, day))) and e.computed_at >= since and self.store.exists(e.report, e.client_id, e.local_date)
                   for e in entries):
                fresh[client_id] = entries
        return fresh

    def live_day(self, report: str, client_id: int, timezone: str, day: dt.date, now: dt.datetime) -> pa.Table:
        """The day table of a day still going on, from its calls so far: computed, never cached."""
        start, end = local_day_window(day, parse_zone(timezone))
        ctx = DayContext(client_id, timezone, day, self.settings.service_level_seconds)
        calls = self.events.day_calls(client_id, start, min(end, now))
        extra = self._extra_inputs([report], [client_id], (start, min(end, now)))
        inputs = {name: by_client[client_id] for name, by_client in extra.items()}
        clean = screen_calls(calls, ctx, start, end, unique_ids=True).clean  # one client's rows of call_events
        return get_report(report).compute_day_from(clean, ctx, inputs)


#: A day table this small (Arrow IPC bytes) is kept with its manifest row too: the summaries' are (a
#: few KB), a busy call_detail is not (its file is the data).
DAY_TABLE_MAX_BYTES = 64 * 1024


def kept_table(table: pa.Table) -> bytes | None:
    """The day table as Arrow IPC bytes when it is small enough to keep with its manifest row."""
    if table.nbytes > 4 * DAY_TABLE_MAX_BYTES:
        return None
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    data = sink.getvalue().to_pybytes()
    return data if len(data) <= DAY_TABLE_MAX_BYTES else None


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


def _spread(results: list[ClientDayResult], seconds: float) -> list[ClientDayResult]:
    """The batch's time shared out over its client-days in proportion to their calls (each at least a
    fair share of the fixed cost), so per-client-day figures still add up to the batch's time."""
    weights = [max(r.source_rows, 1) if r.status == "computed" else 0.1 for r in results]
    total = sum(weights)
    return [replace(r, seconds=seconds * w / total) for r, w in zip(results, weights, strict=True)]


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
#: A batch (the unit a worker takes) is at most this many expected calls and clients of one zone-day.
BATCH_CALLS = 200_000
BATCH_CLIENTS = 400

_worker: Extractor | None = None


def _init_worker(settings: Settings, clock: Clock) -> None:
    global _worker
    _worker = Extractor(App(settings, clock=clock))


def init_worker(settings: Settings) -> None:
    """Make this process a worker on ``settings`` with the system clock (a Celery worker's child)."""
    from report_pipelines.app import system_clock

    _init_worker(settings, system_clock)


def worker() -> Extractor | None:
    return _worker


def on_host(result: ClientDayResult, host: str) -> ClientDayResult:
    return replace(result, host=host)


def _work(batch: list[ClientDay], reports: tuple[str, ...], now: dt.datetime, run_id: str | None,
          reuse_since: dt.datetime | None, deadline: float | None) -> list[ClientDayResult]:
    assert _worker is not None, "worker not initialised"
    return _worker.compute_batch(batch, reports, now=now, run_id=run_id, reuse_since=reuse_since, deadline=deadline)


def make_batches(tasks: Iterable[ClientDay], max_calls: int = BATCH_CALLS,
                 max_clients: int = BATCH_CLIENTS, *, keep_order: bool = False) -> list[list[ClientDay]]:
    """Client-days cut into work items: the clients of one zone-day together (their calls read in one
    query, their manifest rows written in one transaction), at most ``max_calls`` expected calls and
    ``max_clients`` clients each, so a big contact centre's day is an item of its own and a zone of 200
    small offices is one or a few. Items come largest first (by expected calls).

    ``keep_order``: the tasks' own order is the hand-out order (the D-1 pre-cache's earliest ready-by
    first, a period's days in date order): only neighbours of the same zone-day share a batch, in order.
    """
    if keep_order:
        return _ordered_batches(list(tasks), max_calls, max_clients)
    by_zone_day: dict[tuple[str, dt.date], list[ClientDay]] = {}
    for task in tasks:
        by_zone_day.setdefault((task.timezone, task.day), []).append(task)
    batches: list[list[ClientDay]] = []
    for members in by_zone_day.values():
        current: list[ClientDay] = []
        weight = 0
        for task in sorted(members, key=lambda t: (-t.weight, t.client_id)):
            if current and (weight + task.weight > max_calls or len(current) >= max_clients):
                batches.append(current)
                current, weight = [], 0
            current.append(task)
            weight += task.weight
        if current:
            batches.append(current)
    return sorted(batches, key=lambda b: (-sum(t.weight for t in b), b[0].day, b[0].timezone, b[0].client_id))


def _ordered_batches(tasks: list[ClientDay], max_calls: int, max_clients: int) -> list[list[ClientDay]]:
    batches: list[list[ClientDay]] = []
    weight = 0
    for task in tasks:
        current = batches[-1] if batches else None
        if (current is None or (current[0].timezone, current[0].day) != (task.timezone, task.day)
                or weight + task.weight > max_calls or len(current) >= max_clients):
            batches.append([task])
            weight = task.weight
        else:
            current.append(task)
            weight += task.weight
    return batches


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
    batch_calls: int = BATCH_CALLS,
    batch_clients: int = BATCH_CLIENTS,
    order: Literal["largest_first", "given"] = "largest_first",
) -> list[ClientDayResult]:
    """Compute client-days on at most ``workers`` processes, in zone-day batches, biggest first.

    A worker takes the next batch when it is free (in-flight balance: exactly one batch per worker in
    flight, never a pre-assigned share). Small work runs in this process: one batch, ``workers=1``,
    or fewer expected calls (task weights) than ``pool_min_calls``; starting worker processes costs
    1-1.5 s here, more than ~200,000 calls take to compute. A failure of any batch stops the hand-out
    and is raised once the batches already running have finished (their results are cached and kept).
    ``order="given"`` hands the tasks out in their own order instead (the D-1 pre-cache: earliest
    ready-by first; a period request: its days in date order), batching only same zone-day neighbours.
    ``timeout_s`` bounds the whole call, waiting for other runs' locks included: past it, nothing new
    starts and :class:`ExtractTimeout` says how far it got. Results: one per client-day, in completion
    order.
    """
    reports = tuple(reports or REPORTS)
    for name in reports:
        get_report(name)
    if workers < 1:
        raise InvalidInput("workers", "must be at least 1")
    ordered = list(tasks)
    batches = make_batches(ordered, batch_calls, batch_clients, keep_order=order == "given")
    now = now or app.now()
    deadline = None if timeout_s is None else time.time() + timeout_s
    results: list[ClientDayResult] = []

    def done(batch_results: list[ClientDayResult]) -> None:
        for result in batch_results:
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

    celery = app.settings.pool.kind == "celery"  # every batch to the workers, however small the run
    if not celery and (len(batches) <= 1 or workers == 1 or sum(t.weight for t in ordered) < pool_min_calls):
        extractor = Extractor(app)
        for batch in batches:
            if expired():
                raise timeout_error()
            try:
                done(extractor.compute_batch(batch, reports, now=now, run_id=run_id, reuse_since=reuse_since,
                                             deadline=deadline))
            except ExtractTimeout:
                raise timeout_error() from None
        return results

    if not batches:
        return results
    pool, slots = _pool(app, workers, len(batches))
    # One batch per worker in flight: a worker that becomes free gets the next one.
    hand_out_in_flight(pool, _work, batches, slots=slots, args=(reports, now, run_id, reuse_since, deadline),
                       deadline=deadline, on_result=done, timeout_error=timeout_error)
    return results


def _pool(app: App, workers: int, batches: int) -> tuple[Executor, int]:
    """The run's executor and how many batches it keeps in flight.

    ``REPORT_PIPELINES_POOL=process``: ``workers`` local processes (at most one per batch), each with
    its own App from the run's settings. ``celery``: the Celery workers consuming the queue, as many
    batches in flight as they have processes (``workers`` is the local pool's size; a cluster's is
    its workers' ``--concurrency``); :class:`~report_pipelines.adapters.celery_pool.NoWorkerAnswered`
    when none answers within ``REPORT_PIPELINES_WORKER_WAIT_S``.
    """
    if app.settings.pool.kind == "celery":
        from report_pipelines.adapters.celery_pool import CeleryPool

        pool = CeleryPool(app.settings)
        try:
            return pool, pool.slots()
        except BaseException:
            pool.shutdown(wait=False)
            raise
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(["report_pipelines.services.extracts"])
    slots = min(workers, batches)
    return ProcessPoolExecutor(max_workers=slots, mp_context=context, initializer=_init_worker,
                               initargs=(app.settings, app.clock)), slots


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
                except BaseException as exc:  # re-raised below, after draining
                    failure = failure or exc
                if failure is None and not expired():
                    submit_next()
        if failure is not None:
            raise failure
    finally:
        # On a timeout, do not wait for what is running: its writes are atomic and its locks die with it.
        pool.shutdown(wait=not timed_out, cancel_futures=True)
    if next(pending, None) is not None:
        raise timeout_error()
