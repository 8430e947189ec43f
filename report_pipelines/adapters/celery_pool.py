"""The run's pool backed by Celery: the same batches, the same function, computed on any host.

:func:`~report_pipelines.services.extracts.run_client_days` hands zone-day batches to a
:class:`concurrent.futures.Executor` with exactly one batch per worker slot in flight
(:func:`~report_pipelines.services.extracts.hand_out_in_flight`). With ``REPORT_PIPELINES_POOL=celery``
that executor is a :class:`CeleryPool`: ``submit(fn, batch, ...)`` sends one Celery task naming ``fn``
(an importable module-level function, ``extracts._work`` for a run), and the worker calls that very
function with the same arguments, in a process whose :class:`~report_pipelines.app.App` it built from its
own settings (``report-pipelines worker``). The service code is the same on one machine and on many;
only where the call runs differs.

Delivery (Redis or RabbitMQ broker; Redis also holds the results):

* ``worker_prefetch_multiplier=1`` and ``task_acks_late=True``: a worker process reserves one batch at a
  time and acknowledges it only once it is computed, so each free worker takes the next batch (the
  in-flight balance, now across hosts) and a batch whose worker is lost is not lost;
* ``task_reject_on_worker_lost=True``: a worker child that dies mid-batch puts it back at once; a host
  that dies altogether (its unacknowledged batch stays in the broker) gets it re-delivered to another
  worker after ``REPORT_PIPELINES_VISIBILITY_TIMEOUT_S`` (Redis' ``visibility_timeout``). Keep it
  longer than the longest batch, or a slow batch is delivered twice (still never computed twice at
  once: the client-day locks serialise them, and the second one recomputes the same bytes);
* the client-day locks are PostgreSQL advisory locks held by the worker's database session: a dead
  worker's session ends and its locks with it.

Messages are JSON (never pickle: whoever can write to the broker must not be able to run code on the
workers): the arguments and results are the project's frozen dataclasses (``ClientDay``,
``ClientDayResult``), sent as their fields and rebuilt on the other side (:func:`to_wire`,
:func:`from_wire`: only classes of this package); dates and instants travel as Kombu's typed JSON; an
exception comes back as its own class with its arguments (Celery imports it by module and name).

A worker refuses a batch whose caller uses another database or report store than its own (a worker
started with the wrong settings would otherwise write where nobody reads). When no worker answers for
``REPORT_PIPELINES_WORKER_WAIT_S`` (at the start, or later while batches wait), the run fails with
:class:`NoWorkerAnswered`, one line naming the broker and the queue.
"""

from __future__ import annotations

import dataclasses
import importlib
import logging
import os
import threading
import time
from collections.abc import Callable
from concurrent.futures import CancelledError, Executor, Future
from pathlib import Path
from typing import Any

from celery import Celery
from celery import states as celery_states
from celery.result import AsyncResult
from sqlalchemy.engine import make_url

from report_pipelines.domain.errors import ReportPipelinesError
from report_pipelines.settings import PoolSettings, Settings

TASK = "report_pipelines.call"
POLL_S = 0.05
INSPECT_S = 0.5  # how long the workers have to answer "who consumes the queue?" (ms on a LAN)
READY_STATES = celery_states.READY_STATES

log = logging.getLogger("report_pipelines.worker")


class NoWorkerAnswered(ReportPipelinesError, TimeoutError):
    """No Celery worker consumes the run's queue (or none answered within the wait)."""


class WrongWorkerSettings(ReportPipelinesError):
    """The worker's database or report store is not the caller's."""


def celery_app(pool: PoolSettings) -> Celery:
    """A Celery application for ``pool``'s broker and queue (the caller's and the worker's are the same)."""
    app = Celery("report_pipelines", broker=pool.broker_url, backend=_backend(pool.broker_url),
                 set_as_current=False)
    app.conf.update(
        task_serializer="json", result_serializer="json", accept_content=["json"], result_accept_content=["json"],
        task_default_queue=pool.queue, task_acks_late=True, task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1, task_track_started=True, result_expires=24 * 3600,
        # A live worker sweeps the broker for batches unacknowledged for longer than the visibility
        # timeout (a lost host's) every `unacked_restore_interval` s (Kombu's default: 10 s x a throttle
        # of 10, too slow for a timeout of seconds): a quarter of the timeout, 1 to 60 s.
        broker_transport_options={"visibility_timeout": pool.visibility_timeout_s, "unacked_restore_throttle": 1,
                                  "unacked_restore_interval": max(1, min(60, int(pool.visibility_timeout_s / 4)))},
        result_backend_transport_options={"visibility_timeout": pool.visibility_timeout_s},
        broker_connection_retry_on_startup=True,
        worker_send_task_events=False, task_send_sent_event=False,
    )
    app.task(name=TASK, bind=True)(_call)
    return app


def _backend(broker_url: str) -> str:
    # Results need a store: the Redis broker's own; with RabbitMQ, its RPC replies.
    return broker_url if broker_url.startswith(("redis://", "rediss://")) else "rpc://"


def where(settings: Settings) -> tuple[str, str]:
    """What a worker must share with its caller: the app database and the report store.

    The database by its driver, user and name, not its host: a worker on another host reaches the same
    server at another address (its own route, a relay, another DNS name).
    """
    url = make_url(settings.database_url)
    database = url.database if url.get_backend_name() != "sqlite" else str(Path(url.database or "").resolve())
    return f"{url.get_backend_name()}://{url.username or ''}@/{database}", settings.store_root


# --- the worker side ------------------------------------------------------------------------------
_settings: Settings | None = None


def serve(settings: Settings, *, concurrency: int, hostname: str | None, loglevel: str = "INFO") -> None:
    """Run a Celery worker on ``settings``' queue until it is stopped (``report-pipelines worker``)."""
    global _settings
    _settings = settings
    argv = ["worker", "--queues", settings.pool.queue, "--concurrency", str(concurrency), "--pool", "prefork",
            "--loglevel", loglevel, "--without-gossip", "--without-mingle", "--without-heartbeat"]
    if hostname:
        argv += ["--hostname", hostname]
    # Import the computation here, before the pool forks (each process inherits it), and give each pool
    # process its Extractor when it starts: a batch pays neither (a first batch that takes seconds to
    # start could outlive a short visibility timeout and be delivered twice).
    from celery.signals import worker_process_init

    from report_pipelines.services import extracts

    worker_process_init.connect(lambda **_: extracts.init_worker(settings), weak=False)
    celery_app(settings.pool).worker_main(argv)


def _call(task, module: str, name: str, caller: tuple[str, str], args: tuple) -> Any:
    """The task: ``module.name(*args)`` in this worker, the same function a local pool process calls."""
    from report_pipelines.services import extracts

    if _settings is None:
        raise WrongWorkerSettings("this process was not started by `report-pipelines worker`")
    if tuple(caller) != where(_settings):
        raise WrongWorkerSettings(
            f"worker {task.request.hostname} uses database {where(_settings)[0]!r} and store "
            f"{where(_settings)[1]!r}, the run {caller[0]!r} and {caller[1]!r}: give the worker the run's "
            "REPORT_PIPELINES_DATABASE_URL and REPORT_PIPELINES_STORE")
    if extracts.worker() is None:
        extracts.init_worker(_settings)
    if not module.startswith("report_pipelines."):
        raise WrongWorkerSettings(f"refusing to call {module}.{name}: not a report_pipelines function")
    fn = getattr(importlib.import_module(module), name)
    args = from_wire(args)
    started = time.time()
    log.info("start %s pid=%s %s", task.request.id, os.getpid(), _describe(args))
    try:
        result = fn(*args)
    except ReportPipelinesError as exc:
        # Celery rebuilds an exception as its class called with its args: a field error's are its field and
        # message (as its __reduce__ says), not the one formatted line Exception keeps.
        if hasattr(exc, "field") and hasattr(exc, "message"):
            exc.args = (exc.field, exc.message)
        raise
    host = task.request.hostname or ""
    if isinstance(result, list):
        result = [extracts.on_host(r, host) for r in result]
        for r in result:
            log.info("client-day %s client=%s day=%s status=%s host=%s pid=%s start=%.3f end=%.3f",
                     task.request.id, r.client_id, r.day, r.status, host, os.getpid(), started, time.time())
    log.info("done %s pid=%s", task.request.id, os.getpid())
    return to_wire(result)


def to_wire(value: Any) -> Any:
    """``value`` with its dataclasses as ``{"__dataclass__": "module:Name", "fields": {...}}`` (JSON-able)."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {"__dataclass__": f"{type(value).__module__}:{type(value).__qualname__}",
                "fields": {f.name: to_wire(getattr(value, f.name)) for f in dataclasses.fields(value)}}
    if isinstance(value, list | tuple):
        return [to_wire(v) for v in value]
    if isinstance(value, dict):
        return {k: to_wire(v) for k, v in value.items()}
    return value


def from_wire(value: Any) -> Any:
    """The inverse of :func:`to_wire`; only this package's dataclasses are rebuilt."""
    if isinstance(value, dict) and set(value) == {"__dataclass__", "fields"}:
        module, _, name = value["__dataclass__"].partition(":")
        if not module.startswith("report_pipelines."):
            raise WrongWorkerSettings(f"refusing to rebuild {value['__dataclass__']}: not a report_pipelines class")
        cls = getattr(importlib.import_module(module), name)
        return cls(**{k: from_wire(v) for k, v in value["fields"].items()})
    if isinstance(value, list):
        return [from_wire(v) for v in value]
    if isinstance(value, dict):
        return {k: from_wire(v) for k, v in value.items()}
    return value


def _describe(args: tuple) -> str:
    batch = args[0] if args else None
    if isinstance(batch, list) and batch and hasattr(batch[0], "client_id"):
        return f"{batch[0].timezone} {batch[0].day} clients={[t.client_id for t in batch]}"
    return ""


# --- the caller side ------------------------------------------------------------------------------
class CeleryPool(Executor):
    """An executor whose ``submit`` sends a Celery task; one poller thread completes the futures.

    ``slots()`` is how many batches the answering workers take at once (their total concurrency):
    the run keeps that many in flight. No answer for ``worker_wait_s`` fails what is pending with
    :class:`NoWorkerAnswered`.
    """

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.pool = settings.pool
        self.app = celery_app(settings.pool)
        self._pending: dict[str, tuple[AsyncResult, Future]] = {}
        self._lock = threading.Lock()
        self._closed = threading.Event()
        self._poller: threading.Thread | None = None

    def slots(self) -> int:
        """The answering workers' total concurrency on our queue; waits up to ``worker_wait_s`` for one."""
        deadline = time.monotonic() + self.pool.worker_wait_s
        while True:
            found = self.workers()
            if found:
                return sum(found.values())
            if time.monotonic() >= deadline:
                raise self.no_worker()
            time.sleep(0.5)

    def workers(self) -> dict[str, int]:
        """Worker host name -> processes, for the workers consuming our queue that answer within 0.5 s."""
        # A broadcast waits its whole timeout for replies it cannot count on; the second one is addressed
        # to the hosts that answered the first and returns as soon as they all have.
        queues = self.app.control.inspect(timeout=INSPECT_S).active_queues() or {}
        hosts = [host for host, consumed in queues.items() if any(q.get("name") == self.pool.queue for q in consumed)]
        if not hosts:
            return {}
        stats = self.app.control.inspect(destination=hosts, limit=len(hosts), timeout=1.0).stats() or {}
        return {host: int(stats.get(host, {}).get("pool", {}).get("max-concurrency", 1)) for host in hosts}

    def no_worker(self) -> NoWorkerAnswered:
        broker = self.pool.broker_url.split("@")[-1]
        return NoWorkerAnswered(
            f"REPORT_PIPELINES_POOL=celery: no Celery worker answered on {broker} (queue {self.pool.queue!r}) "
            f"within {self.pool.worker_wait_s:g} s; start one with `report-pipelines worker`")

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future:
        if kwargs:
            raise TypeError("CeleryPool.submit takes positional arguments only")
        future: Future = Future()
        result = self.app.send_task(TASK, args=(fn.__module__, fn.__name__, where(self.settings), to_wire(args)),
                                    queue=self.pool.queue)
        future.set_running_or_notify_cancel()
        with self._lock:
            self._pending[result.id] = (result, future)
            if self._poller is None:
                self._poller = threading.Thread(target=self._poll, name="celery-pool", daemon=True)
                self._poller.start()
        return future

    def _poll(self) -> None:
        last_progress = time.monotonic()
        states: dict[str, str] = {}
        while not self._closed.is_set():
            with self._lock:
                pending = list(self._pending.items())
            progressed = not pending
            for task_id, (result, future) in pending:
                state = result.state
                if states.get(task_id) != state:
                    states[task_id] = state
                    progressed = True
                if state not in READY_STATES:
                    continue
                with self._lock:
                    self._pending.pop(task_id, None)
                states.pop(task_id, None)
                outcome = result.get(propagate=False, disable_sync_subtasks=False)
                if state == "SUCCESS":
                    future.set_result(from_wire(outcome))
                else:
                    future.set_exception(outcome if isinstance(outcome, BaseException) else RuntimeError(outcome))
                result.forget()
            if progressed:
                last_progress = time.monotonic()
            elif time.monotonic() - last_progress > self.pool.worker_wait_s:
                if self.workers():
                    last_progress = time.monotonic()  # alive: busy with this run's or other runs' batches
                else:
                    self._fail_pending(self.no_worker())
            self._closed.wait(POLL_S)

    def _fail_pending(self, error: BaseException) -> None:
        with self._lock:
            failed, self._pending = list(self._pending.values()), {}
        for result, future in failed:
            result.revoke()  # not started yet: never will; running: finishes, its writes are atomic
            if not future.done():
                future.set_exception(error)

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        if cancel_futures:
            self._fail_pending(CancelledError())
        while wait and self._pending:
            time.sleep(POLL_S)
        self._closed.set()
        if self._poller is not None:
            self._poller.join(timeout=5)
        self.app.close()
