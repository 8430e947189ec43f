"""The load-balance simulation's workload replayed on real worker processes.

:mod:`report_pipelines.domain.load_balance` predicts how the two policies compare; this module runs
the same client-days (each one sleeps for its simulated cost times ``scale``) on real processes, all
requests handed out at once (a zone's midnight), ``workers`` processes of one thread each:

* ``in_flight``: the project's own hand-out (:func:`~report_pipelines.services.extracts.hand_out_in_flight`,
  what :func:`~report_pipelines.services.extracts.run_client_days` uses) on a process pool;
* ``historical``: each day assigned up front to the process with the fewest days so far, each process
  working through its own list (the old platform's policy).

It returns the same :class:`~report_pipelines.domain.load_balance.Outcome` as the simulation, in
simulated seconds (measured / ``scale``), so the two can be compared; a test checks that they agree
on the ordering (which policy finishes first, which requests finish first), not on timings.
"""

from __future__ import annotations

import multiprocessing
import time
from concurrent.futures import ProcessPoolExecutor

from report_pipelines.domain.load_balance import DayKey, Outcome, Policy, Workload
from report_pipelines.services.extracts import ExtractTimeout, hand_out_in_flight


def _day(item: tuple[int, float]) -> tuple[int, float]:
    index, seconds = item
    time.sleep(seconds)
    return index, time.time()


def _worker_list(items: list[tuple[int, float]], start, results) -> None:
    start.wait()
    for item in items:
        results.put(_day(item))
    results.put(None)


def _hand_out_order(workload: Workload) -> list[DayKey]:
    """Every day once, in the simulation's order: requests in arrival order, largest day first within one."""
    seen: dict[DayKey, None] = {}
    for request in sorted(workload.requests, key=lambda r: (r.arrival, r.id)):
        for key in sorted(dict.fromkeys(request.days), key=lambda k: (-workload.cost[k], k)):
            seen.setdefault(key, None)
    return list(seen)


def replay(workload: Workload, policy: Policy, workers: int, scale: float) -> Outcome:
    """Run a burst ``workload`` (every arrival 0) on ``workers`` real processes under ``policy``."""
    if any(r.arrival for r in workload.requests):
        raise ValueError("replay hands every request out at once: use load_balance.burst(workload)")
    order = _hand_out_order(workload)
    items = [(i, workload.cost[key] * scale) for i, key in enumerate(order)]
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(["report_pipelines.services.pool_replay"])
    finished: dict[int, float] = {}
    if policy == "in_flight":
        pool = ProcessPoolExecutor(max_workers=workers, mp_context=context)
        list(pool.map(time.sleep, [0.3] * workers))  # start the processes before the clock starts
        start = time.time()
        hand_out_in_flight(pool, _day, items, slots=workers, on_result=lambda done: finished.__setitem__(*done),
                           timeout_error=lambda: ExtractTimeout("replay: no deadline"))
    else:
        lists: list[list[tuple[int, float]]] = [[] for _ in range(workers)]
        for item in items:
            min(lists, key=len).append(item)  # fewest days so far; ties: the first process
        go, results = context.Event(), context.Queue()
        processes = [context.Process(target=_worker_list, args=(own, go, results)) for own in lists]
        for process in processes:
            process.start()
        time.sleep(0.3 + 0.1 * workers)  # let them start before the clock does
        start = time.time()
        go.set()
        ended = 0
        while ended < workers:
            done = results.get(timeout=600)
            if done is None:
                ended += 1
            else:
                finished[done[0]] = done[1]
        for process in processes:
            process.join()
    index = {key: i for i, key in enumerate(order)}
    latencies = tuple(max((finished[index[k]] - start for k in r.days), default=0.0) / scale
                      for r in workload.requests)
    return Outcome(policy, workers, 1, makespan=(max(finished.values()) - start) / scale, latencies=latencies,
                   deadline=workload.deadline, computed=len(order), idle_while_waiting=float("nan"))
