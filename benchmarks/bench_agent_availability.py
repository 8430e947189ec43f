"""What ``agent_availability`` costs per client-day, against ``agent_performance`` on the same calls.

A contact centre's day (default: 300 agents, each a member of three queues with overlapping
sessions, an AGENTLOGIN, ten pauses written as PAUSEALL plus a PAUSE per queue, and 40,000 answered
calls) is computed by both reports; the figures are medians of repeated runs, printed as a ratio
against ``agent_performance`` measured in the same run. The agent figures are checked second by
second against the raw intervals for a sample of agents: any difference prints ``MISMATCH``.

    python benchmarks/bench_agent_availability.py [--agents 300] [--calls 40000] [--repeat 5] [--smoke]
"""

from __future__ import annotations

import argparse
import datetime as dt
import random
import statistics
import sys
import time
from pathlib import Path

import pyarrow as pa

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from report_pipelines.adapters.db.bulk import CALL_EVENT_SCHEMA
from report_pipelines.domain.queue_log import AGENT_INTERVAL_SCHEMA
from report_pipelines.domain.reports import DayContext, get_report
from report_pipelines.domain.reports.screening import screen_calls

UTC = dt.UTC
ZONE, DAY = "Europe/Berlin", dt.date(2024, 3, 31)  # the 23-hour day


def day_data(agents: int, calls: int, seed: int = 7) -> tuple[pa.Table, pa.Table, DayContext]:
    rng = random.Random(seed)
    ctx = DayContext(1, ZONE, DAY)
    low, high = ctx.window_utc
    span = int((high - low).total_seconds())
    intervals = []
    for a in range(agents):
        agent = f"{1000 + a}"
        start = low + dt.timedelta(seconds=rng.randrange(-3 * 3600, span // 2))
        for queue in ("sales", "support", "billing"):
            begin = start + dt.timedelta(seconds=rng.randrange(0, 1800))
            intervals.append(("session", queue, agent, begin, begin + dt.timedelta(seconds=rng.randrange(4 * 3600, 9 * 3600)), None))
        intervals.append(("session", "NONE", agent, start, start + dt.timedelta(hours=8), None))
        for _ in range(10):
            begin = start + dt.timedelta(seconds=rng.randrange(0, 8 * 3600))
            end = begin + dt.timedelta(seconds=rng.randrange(60, 1800))
            reason = rng.choice(["lunch", "break", "meeting", None])
            intervals.append(("pause", "NONE", agent, begin, end, reason))
            intervals += [("pause", q, agent, begin, end, reason) for q in ("sales", "support", "billing")]
        if rng.random() < 0.1:
            intervals.append(("session", "support", agent, high - dt.timedelta(hours=1), None, None))
    table = pa.Table.from_pylist([dict(zip(AGENT_INTERVAL_SCHEMA.names, i, strict=True)) for i in intervals],
                                 schema=AGENT_INTERVAL_SCHEMA)
    rows = []
    for i in range(calls):
        begin = low + dt.timedelta(seconds=rng.randrange(0, span - 4000))
        answer = begin + dt.timedelta(seconds=rng.randrange(1, 60))
        rows.append({"client_id": 1, "pbx_call_id": f"c{i}", "direction": "inbound", "queue": "support",
                     "agent": f"{1000 + rng.randrange(agents)}", "caller": "+4930", "callee": "5000",
                     "started_at": begin, "answered_at": answer, "ended_at": answer + dt.timedelta(seconds=rng.randrange(1, 900)),
                     "disposition": "ANSWERED", "ingested_at": high})
    return table, screen_calls(pa.Table.from_pylist(rows, schema=CALL_EVENT_SCHEMA), ctx).clean, ctx


def median_seconds(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def check(day: pa.Table, intervals: pa.Table, ctx: DayContext, sample: int) -> list[str]:
    """Second by second, for ``sample`` agents: logged-in and paused seconds inside the day."""
    low, high = (int(t.timestamp()) for t in ctx.window_utc)
    own = {r["agent"]: r for r in day.to_pylist() if r["pause_reason"] is None}
    problems = []
    for agent in sorted(own)[:sample]:
        for kind, column in (("session", "logged_in_seconds"), ("pause", "paused_seconds")):
            seconds = set()
            for i in intervals.to_pylist():
                if i["agent"] == agent and i["kind"] == kind and i["ended_at"] is not None:
                    seconds.update(range(max(low, int(i["started_at"].timestamp())), min(high, int(i["ended_at"].timestamp()))))
            if len(seconds) != own[agent][column]:
                problems.append(f"{agent} {column}: {own[agent][column]} != {len(seconds)}")
    return problems


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--agents", type=int, default=300)
    parser.add_argument("--calls", type=int, default=40_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--smoke", action="store_true", help="tiny: 12 agents, 500 calls, 2 runs")
    args = parser.parse_args()
    if args.smoke:
        args.agents, args.calls, args.repeat = 12, 500, 2
    intervals, calls, ctx = day_data(args.agents, args.calls)
    availability, performance = get_report("agent_availability"), get_report("agent_performance")
    baseline = median_seconds(lambda: performance.compute_day(calls, ctx), args.repeat)
    measured = median_seconds(lambda: availability.compute_day(calls, ctx, agent_intervals=intervals), args.repeat)
    day = availability.compute_day(calls, ctx, agent_intervals=intervals)
    print(f"agent_availability, {args.agents} agents, {intervals.num_rows} intervals, {calls.num_rows} calls, "
          f"{ZONE} {DAY} (23 h): {day.num_rows} rows")
    print(f"  agent_performance (baseline): {baseline * 1000:.1f} ms; agent_availability: {measured * 1000:.1f} ms "
          f"= {measured / baseline:.2f}x the baseline")
    problems = check(day, intervals, ctx, sample=args.agents if args.smoke else 10)
    for problem in problems:
        print(f"MISMATCH {problem}")
    if not problems:
        print("  logged-in and paused seconds equal a second-by-second count of the raw intervals")


if __name__ == "__main__":
    main()
