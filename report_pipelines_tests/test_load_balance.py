"""The load balance, proved: the simulation of both policies, and the same workload on real processes."""

from __future__ import annotations

from report_pipelines.domain.load_balance import (
    Request,
    Workload,
    burst,
    compare,
    completion_order,
    kendall_tau,
    make_workload,
    simulate,
)
from report_pipelines.services.pool_replay import replay


def _hand_worked() -> Workload:
    # R0 asks for A (10 s) and B (1 s), R1 for C and D (1 s each), R2 for A again; all at t = 0.
    cost = {(0, 0): 10.0, (0, 1): 1.0, (1, 0): 1.0, (1, 1): 1.0}
    return Workload((Request(0, 0.0, ((0, 0), (0, 1))), Request(1, 0.0, ((1, 0), (1, 1))),
                     Request(2, 0.0, ((0, 0),))), cost, deadline=5.0)


def test_two_policies_on_a_hand_worked_workload() -> None:
    workload = _hand_worked()
    # historical, 2 workers x 1 thread: A -> w0, B -> w1, C -> w0 (1-1 tie: the first), D -> w1.
    # w0 runs A 0-10 then C 10-11; w1 runs B 0-1, D 1-2, then idles 2-10 while C waits behind A.
    old = simulate(workload, "historical", 2, 1)
    assert old.latencies == (10.0, 11.0, 10.0) and old.makespan == 11.0
    assert old.idle_while_waiting == 8.0
    # in flight: one queue A, B, C, D; slot 1 runs A 0-10, slot 2 runs B 0-1, C 1-2, D 2-3.
    new = simulate(workload, "in_flight", 2, 1)
    assert new.latencies == (10.0, 3.0, 10.0) and new.makespan == 10.0
    assert new.idle_while_waiting == 0.0
    # A was asked for twice and computed once, under both policies
    assert old.computed == new.computed == 4
    assert (old.deadline_share, new.deadline_share) == (0.0, 1 / 3)  # only R1 under in-flight is within 5 s
    assert (old.p50, new.p95) == (10.0, 10.0)


def test_the_simulation_is_deterministic_and_in_flight_never_idles_while_work_waits() -> None:
    for workers, threads in ((2, 4), (8, 8)):
        workload = make_workload(workers * threads, requests_per_slot=10)
        first, again = compare(workload, workers, threads), compare(workload, workers, threads)
        assert first == again
        assert first["in_flight"].idle_while_waiting == 0.0
        assert first["historical"].idle_while_waiting > 0.0
        assert first["in_flight"].computed == first["historical"].computed == len(
            {key for r in workload.requests for key in r.days})  # each client-day once


def test_the_real_pool_agrees_with_the_simulation_on_the_ordering() -> None:
    # Two real processes, every client-day sleeping its simulated cost x scale (~20 s of work in all: at a
    # quarter of that, most days slept 1-5 ms and a starved machine's per-task overhead ate the margin).
    workload = burst(make_workload(2, seed=1, requests_per_slot=12, clients_per_slot=8))
    simulated = compare(workload, 2, 1)
    assert simulated["historical"].makespan > 1.3 * simulated["in_flight"].makespan  # what we check again below
    real = {policy: replay(workload, policy, 2, scale=0.02) for policy in ("historical", "in_flight")}
    # Same ordering of the policies (makespan and p95 latency), and requests finish in about the same order.
    assert real["historical"].makespan > real["in_flight"].makespan
    assert real["historical"].p95 > real["in_flight"].p95
    for policy in real:
        tau = kendall_tau(completion_order(simulated[policy], workload.requests),
                          completion_order(real[policy], workload.requests))
        assert tau > 0.6, (policy, tau)
