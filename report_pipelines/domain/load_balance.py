"""Two ways to hand client-days to a pool, simulated: by *historical* task count, or by work *in flight*.

The platform this project replaces sent each day of a period request to the worker with the fewest
tasks *ever assigned* (historical count) at the moment the request arrived; each worker's threads then
worked through its own queue. Counts are blind to cost: a worker that drew a few of the heavy days
(an outage day of a busy contact centre costs 20 times a normal one) gets as many new days as the
others, and they queue behind the heavy ones while other workers sit idle. Ours keeps one shared
queue and a thread takes the next day when it is free (in-flight balance), so no thread idles while
any day waits.

This module is a deterministic discrete-event simulation of both policies (plain Python, no
processes, no clock): ``x`` workers of ``y`` threads, a stream of period requests (mostly yesterday,
some weeks, some months) over client-days with a skewed cost, days already computed are cached (free),
days being computed are waited for and reused, never computed twice (both policies). It reports the
makespan, the p50/p95 request latency (arrival to last day done) and the share of requests done
within a deadline. :func:`make_workload` draws a workload from a seed; the same seed gives the same
figures everywhere.
"""

from __future__ import annotations

import heapq
import math
import random
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Literal

Policy = Literal["historical", "in_flight"]
POLICIES: tuple[Policy, ...] = ("historical", "in_flight")

DayKey = tuple[int, int]  # (client, day index)


@dataclass(frozen=True, slots=True)
class Request:
    """A period request: arrives at ``arrival`` (seconds), asks for these client-days."""

    id: int
    arrival: float
    days: tuple[DayKey, ...]


@dataclass(frozen=True)
class Workload:
    requests: tuple[Request, ...]
    cost: dict[DayKey, float]  # seconds of work for each client-day (uncached)
    deadline: float  # seconds from arrival a request may take

    @property
    def unique_work(self) -> float:
        return sum(self.cost[key] for key in {key for r in self.requests for key in r.days})


def make_workload(slots: int, *, seed: int = 11, requests_per_slot: int = 40, clients_per_slot: int = 25,
                  heavy_share: float = 0.04, heavy_factor: float = 20.0, utilisation: float = 0.85,
                  deadline: float = 120.0, mean_day_cost: float = 2.0, history_days: int = 60,
                  largest_to_median: float = 30.0) -> Workload:
    """A request stream sized for ``slots`` threads: ``requests_per_slot x slots`` requests over
    ``clients_per_slot x slots`` clients of Zipf sizes, 70 % asking for yesterday, 20 % for a week, 10 %
    for 30 days; a ``heavy_share`` of client-days cost ``heavy_factor`` times their client's normal day.
    Arrivals are a Poisson stream whose rate makes the unique work ``utilisation`` of the pool."""
    rng = random.Random(seed)
    clients = max(2, clients_per_slot * slots)
    # Zipf-like sizes whose largest client is ``largest_to_median`` times the median one, at any scale.
    exponent = math.log(largest_to_median) / math.log(max(2.0, clients / 2))
    sizes = [1.0 / (rank + 1) ** exponent for rank in range(clients)]
    scale = mean_day_cost / (sum(sizes) / clients)
    cost: dict[DayKey, float] = {}

    def day_cost(key: DayKey) -> float:
        if key not in cost:
            base = sizes[key[0]] * scale * rng.lognormvariate(0.0, 0.25)
            cost[key] = base * (heavy_factor if rng.random() < heavy_share else 1.0)
        return cost[key]

    shapes: list[tuple[int, float]] = [(1, 0.7), (7, 0.2), (30, 0.1)]
    asking = [size ** 0.5 for size in sizes]
    drafts = []
    for _ in range(requests_per_slot * slots):
        client = rng.choices(range(clients), weights=asking)[0]  # busy clients ask more often
        length = rng.choices([n for n, _ in shapes], weights=[w for _, w in shapes])[0]
        end = history_days - 1 if length == 1 or rng.random() < 0.3 else rng.randrange(length - 1, history_days)
        days = tuple((client, end - i) for i in range(length) if end - i >= 0)
        for key in days:
            day_cost(key)
        drafts.append(days)
    unique = sum(cost.values())
    span = unique / (utilisation * slots)
    rate = len(drafts) / span
    arrival, requests = 0.0, []
    for number, days in enumerate(drafts):
        requests.append(Request(number, arrival, days))
        arrival += rng.expovariate(rate)
    return Workload(tuple(requests), cost, deadline)


@dataclass(frozen=True)
class Outcome:
    policy: Policy
    workers: int
    threads: int
    makespan: float
    latencies: tuple[float, ...]  # per request, in request order
    deadline: float
    computed: int  # client-days computed (each at most once)
    idle_while_waiting: float  # thread-seconds a thread sat idle while some day was waiting

    def percentile(self, p: float) -> float:
        ordered = sorted(self.latencies)
        return ordered[max(1, math.ceil(p * len(ordered) / 100)) - 1]

    @property
    def p50(self) -> float:
        return self.percentile(50)

    @property
    def p95(self) -> float:
        return self.percentile(95)

    @property
    def deadline_share(self) -> float:
        return sum(latency <= self.deadline for latency in self.latencies) / len(self.latencies)


@dataclass(order=True)
class _Event:
    at: float
    order: int
    kind: str = field(compare=False)  # "arrive" or "done"
    payload: object = field(compare=False)


def simulate(workload: Workload, policy: Policy, workers: int, threads: int) -> Outcome:
    """Run ``workload`` on ``workers x threads`` under ``policy`` (see the module docstring).

    Within a request, its days are handed out largest first (as the real pool does); across requests,
    in arrival order. ``historical``: at arrival each new day goes to the worker with the fewest days
    assigned so far (ties: the lowest number) and waits in that worker's queue. ``in_flight``: one
    shared queue, a free thread takes its head.
    """
    if policy not in POLICIES:
        raise ValueError(f"unknown policy {policy!r}")
    events: list[_Event] = []
    sequence = 0

    def push(at: float, kind: str, payload: object) -> None:
        nonlocal sequence
        heapq.heappush(events, _Event(at, sequence, kind, payload))
        sequence += 1

    for request in workload.requests:
        push(request.arrival, "arrive", request)
    queues: list[deque[DayKey]] = [deque() for _ in range(workers if policy == "historical" else 1)]
    free = [threads] * workers if policy == "historical" else [workers * threads]
    assigned = [0] * workers
    state: dict[DayKey, str] = {}  # "waiting" / "running" / "done"
    waiters: dict[DayKey, list[int]] = {}
    remaining: dict[int, int] = {}
    arrival_of: dict[int, float] = {}
    finished: dict[int, float] = {}
    computed = 0
    idle = 0.0
    now = 0.0

    def start_work(queue_index: int, at: float) -> None:
        nonlocal computed
        while free[queue_index] and queues[queue_index]:
            key = queues[queue_index].popleft()
            free[queue_index] -= 1
            state[key] = "running"
            computed += 1
            push(at + workload.cost[key], "done", (key, queue_index))

    def day_done(key: DayKey, at: float) -> None:
        state[key] = "done"
        for request_id in waiters.pop(key, []):
            remaining[request_id] -= 1
            if remaining[request_id] == 0:
                finished[request_id] = at

    while events:
        event = heapq.heappop(events)
        # Idle thread-seconds while some day waits (for the historical policy: in any worker's queue).
        waiting = any(queues)
        if waiting:
            idle += (event.at - now) * sum(free)
        now = event.at
        if event.kind == "arrive":
            request: Request = event.payload  # type: ignore[assignment]
            arrival_of[request.id] = now
            new = []
            pending = 0
            for key in dict.fromkeys(request.days):
                if state.get(key) == "done":
                    continue
                pending += 1
                waiters.setdefault(key, []).append(request.id)
                if key not in state:
                    state[key] = "waiting"
                    new.append(key)
            remaining[request.id] = pending
            if not pending:
                finished[request.id] = now
            for key in sorted(new, key=lambda k: (-workload.cost[k], k)):
                if policy == "historical":
                    worker = min(range(workers), key=lambda w: (assigned[w], w))
                    assigned[worker] += 1
                    queues[worker].append(key)
                else:
                    queues[0].append(key)
            for index in range(len(queues)):
                start_work(index, now)
        else:
            key, queue_index = event.payload  # type: ignore[misc]
            free[queue_index] += 1
            day_done(key, now)
            start_work(queue_index, now)
    latencies = tuple(finished[r.id] - arrival_of[r.id] for r in workload.requests)
    return Outcome(policy, workers, threads, makespan=now, latencies=latencies, deadline=workload.deadline,
                   computed=computed, idle_while_waiting=idle)


def burst(workload: Workload) -> Workload:
    """The same requests all arriving at once (a replay on a real pool hands them out together)."""
    return Workload(tuple(Request(r.id, 0.0, r.days) for r in workload.requests), workload.cost, workload.deadline)


def compare(workload: Workload, workers: int, threads: int) -> dict[Policy, Outcome]:
    return {policy: simulate(workload, policy, workers, threads) for policy in POLICIES}


def completion_order(outcome: Outcome, requests: Sequence[Request]) -> list[int]:
    """Request ids by finishing time (ties by id)."""
    return [r.id for r in sorted(requests, key=lambda r: (r.arrival + outcome.latencies[r.id], r.id))]


def kendall_tau(first: Iterable[int], second: Iterable[int]) -> float:
    """Rank agreement of two orderings of the same items: 1 identical, -1 reversed."""
    a, b = list(first), list(second)
    position = {item: i for i, item in enumerate(b)}
    ranks = [position[item] for item in a]
    n = len(ranks)
    if n < 2:
        return 1.0
    concordant = sum(1 for i in range(n) for j in range(i + 1, n) if ranks[i] < ranks[j])
    pairs = n * (n - 1) // 2
    return (2 * concordant - pairs) / pairs


__all__ = ["POLICIES", "Outcome", "Policy", "Request", "Workload", "burst", "compare", "completion_order",
           "kendall_tau", "make_workload", "simulate"]
