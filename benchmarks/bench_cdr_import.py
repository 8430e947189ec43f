"""CDR import throughput: cdr_csv and queue_log, rows/s per core, against a bare ``csv`` read of the same file.

Generates a ``Master.csv`` (21 columns, newcdrcolumns) of queue calls (a ring attempt then an
answer, or an abandon), outbound and internal calls, and the matching ``queue_log``, then measures,
each stage in its own process (so its peak memory is its own, ``ru_maxrss``), on one core:

1. a bare ``csv.reader`` pass over ``Master.csv`` (the baseline: reading, no checks, no calls);
2. our reader + grouping + collapse, no database (what issue 14's target of 100k rows/s is about);
3. the whole ``import_cdr`` into SQLite, and into PostgreSQL (``--no-postgres`` to skip): into the empty
   table (the import outweighs it: its secondary indexes rebuilt), and as into a fuller one (kept);
4. the queue_log: a bare ``str.split('|')`` pass against ``read_queue_log`` (Arrow blocks, events into
   attempts by group-bys) and against ``read_queue_log_by_line`` (the event-by-event reference);
5. read + group + collapse + the queue_log read and joined to the calls, no database: the columns
   (``AttemptJoin``) against the reference (``attempts_by_call`` + ``join_calls`` per call), with a
   digest of every joined block and of the attempts' owners: ``DIFFER`` (exit 1) when they are not equal.

    .venv/bin/python benchmarks/bench_cdr_import.py [--rows 1000000] [--smoke] [--no-postgres]
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import multiprocessing
import random
import resource
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

TARGET = 100_000  # rows/s per core (issue 14)
BASE = dt.datetime(2024, 5, 6, 6, 0, tzinfo=dt.UTC)


def generate(rows: int, folder: Path, seed: int = 7) -> tuple[Path, Path, int]:
    """``Master.csv`` with about ``rows`` legs (UTC times) and its ``queue_log``; returns (cdr, queue_log, calls)."""
    rng = random.Random(seed)
    cdr, qlog = folder / "Master.csv", folder / "queue_log"
    fmt = "%Y-%m-%d %H:%M:%S"
    written = calls = 0
    t = BASE
    with cdr.open("w") as out, qlog.open("w") as ql:
        while written < rows:
            calls += 1
            t += dt.timedelta(seconds=rng.expovariate(1 / 2.0))
            uid = f"{int(t.timestamp())}.{calls}"
            kind = rng.random()
            start = t.strftime(fmt)
            if kind < 0.6:  # inbound queue call: 201 rings out, then 202 answers, or the caller hangs up
                wait, talk = rng.randint(5, 60), rng.randint(30, 400)
                ring = t + dt.timedelta(seconds=min(15, wait))
                answer, end = t + dt.timedelta(seconds=wait), t + dt.timedelta(seconds=wait + talk)
                row = ('"","+4930{n}","5000","ext-queues","""Caller"" <+4930{n}>","SIP/provider-{c:08x}","{dst}",'
                       '"Queue","support,t,,,300","{s}","{a}","{e}",{d},{b},"{disp}","DOCUMENTATION","{u}","","","{u}",{q}\n')
                out.write(row.format(n=calls, c=calls, dst=f"SIP/201-{calls:08x}", s=start, a="",
                                     e=ring.strftime(fmt), d=int((ring - t).total_seconds()), b=0, disp="NO ANSWER",
                                     u=uid, q=1))
                ql.write(f"{int(t.timestamp())}|{uid}|support|NONE|ENTERQUEUE||+4930{calls}|1\n")
                ql.write(f"{int(ring.timestamp())}|{uid}|support|SIP/201|RINGNOANSWER|15000\n")
                if rng.random() < 0.85:
                    out.write(row.format(n=calls, c=calls, dst=f"SIP/202-{calls:08x}", s=start, a=answer.strftime(fmt),
                                         e=end.strftime(fmt), d=wait + talk, b=talk, disp="ANSWERED", u=uid, q=2))
                    ql.write(f"{int(answer.timestamp())}|{uid}|support|SIP/202|CONNECT|{wait}|{uid}9|3\n")
                    ql.write(f"{int(end.timestamp())}|{uid}|support|SIP/202|COMPLETECALLER|{wait}|{talk}|1\n")
                else:
                    out.write(row.format(n=calls, c=calls, dst="", s=start, a=start, e=answer.strftime(fmt), d=wait,
                                         b=wait, disp="ANSWERED", u=uid, q=2))
                    ql.write(f"{int(answer.timestamp())}|{uid}|support|NONE|ABANDON|1|1|{wait}\n")
                written += 2
            else:  # outbound or internal, one leg
                dst = "004930" + str(rng.randint(1000000, 9999999)) if kind < 0.85 else "202"
                dstchan = f"SIP/provider-{calls:08x}" if kind < 0.85 else f"SIP/202-{calls:08x}"
                ring, talk = rng.randint(2, 20), rng.randint(0, 300)
                answered = talk > 30
                answer = (t + dt.timedelta(seconds=ring)).strftime(fmt) if answered else ""
                end = (t + dt.timedelta(seconds=ring + (talk if answered else 0))).strftime(fmt)
                out.write(f'"","201","{dst}","from-internal","""Agent"" <201>","SIP/201-{calls:08x}","{dstchan}",'
                          f'"Dial","{dstchan},60","{start}","{answer}","{end}",{ring + (talk if answered else 0)},'
                          f'{talk if answered else 0},"{"ANSWERED" if answered else "NO ANSWER"}","DOCUMENTATION",'
                          f'"{uid}","","","{uid}",1\n')
                written += 1
    return cdr, qlog, calls


def _maxrss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def stage_csv(path: str) -> tuple[int, float, float]:
    began = time.perf_counter()
    with open(path, newline="") as fh:
        rows = sum(1 for _ in csv.reader(fh))
    return rows, time.perf_counter() - began, _maxrss_mb()


def stage_split(path: str) -> tuple[int, float, float]:
    began = time.perf_counter()
    with open(path) as fh:
        rows = sum(1 for line in fh if line.split("|"))
    return rows, time.perf_counter() - began, _maxrss_mb()


def stage_collapse(path: str) -> tuple[int, float, float]:
    """Our reader, the streaming grouping and the collapse: everything but the database."""
    from report_pipelines.adapters.sources.cdr import Decoder, read_asterisk_csv
    from report_pipelines.domain.cdr import ClockCheck, LocalTimes
    from report_pipelines.domain.cdr_collapse import collapse_legs
    from report_pipelines.services.cdr_import import DEFAULT_HORIZON, _Grouper

    began = time.perf_counter()
    times = LocalTimes(dt.UTC, latest=dt.datetime.now(dt.UTC) + dt.timedelta(days=1))
    grouper, rows, calls = _Grouper(DEFAULT_HORIZON), 0, 0
    with open(path, "rb") as stream:
        for batch in read_asterisk_csv(stream, times, decoder=Decoder(), clock=ClockCheck("UTC")):
            rows += batch.rows
            grouper.add(batch.legs)
            ready = grouper.ready()
            if ready is not None:
                calls += collapse_legs(ready, 1).num_rows
    ready = grouper.ready(everything=True)
    calls += collapse_legs(ready, 1).num_rows if ready is not None else 0
    return rows, time.perf_counter() - began, _maxrss_mb()


def stage_import(path: str, url: str, queue_log: str | None = None, rebuild: bool = True) -> tuple[int, float, float]:
    """The whole import into an empty ``call_events``; on PostgreSQL, without ``rebuild``, as into a
    table larger than the import (its indexes kept: the anti-join and the index rebuild not chosen)."""
    from report_pipelines.adapters.db import bulk
    from report_pipelines.adapters.db.engine import make_engine
    from report_pipelines.adapters.db.migrate import upgrade
    from report_pipelines.services.cdr_import import import_cdr
    from report_pipelines.services.clients import add_client

    if not rebuild:
        bulk.REBUILD_MIN_ROWS = 10**12
    engine = make_engine(url)
    upgrade(engine)
    add_client(engine, "bench", "Bench", "UTC")
    began = time.perf_counter()
    summary = import_cdr(engine, "bench", "asterisk-csv", path, gmt=True, queue_log_path=queue_log,
                         data_dir=Path(path).parent)
    seconds = time.perf_counter() - began
    engine.dispose()
    assert summary.rejected == 0, summary.rejects_by_reason
    return summary.rows_read, seconds, _maxrss_mb()


def stage_queue_log(path: str, reference: bool = False) -> tuple[int, float, float]:
    from report_pipelines.adapters.sources.cdr.queue_log import read_queue_log, read_queue_log_by_line

    began = time.perf_counter()
    with open(path, "rb") as stream:
        result = (read_queue_log_by_line if reference else read_queue_log)(stream)
    return result.rows, time.perf_counter() - began, _maxrss_mb()


def _digest(table, digest) -> None:
    """Every value of every column, in order (nulls apart): the same digest for equal tables."""
    import pyarrow as pa
    import pyarrow.compute as pc

    for name in table.column_names:
        column = table.column(name).combine_chunks()
        if pa.types.is_timestamp(column.type):
            column = column.cast(pa.int64())
        digest.update(name.encode() + pc.is_valid(column).to_numpy(zero_copy_only=False).tobytes())
        digest.update(repr(column.to_pylist()).encode())


def stage_join(path: str, queue_log: str, reference: bool) -> tuple[int, float, float, str, int]:
    """Read + group + collapse, the queue_log read and joined to each block of calls (no database)."""
    import hashlib

    from report_pipelines.adapters.sources.cdr import Decoder, read_asterisk_csv
    from report_pipelines.adapters.sources.cdr.queue_log import read_queue_log, read_queue_log_by_line
    from report_pipelines.domain.cdr import ClockCheck, LocalTimes
    from report_pipelines.domain.cdr_collapse import collapse_legs
    from report_pipelines.domain.queue_log import AttemptIndex, JoinStats, attempts_by_call, join_calls
    from report_pipelines.domain.queue_log_columns import AttemptJoin
    from report_pipelines.services.cdr_import import DEFAULT_HORIZON, _Grouper

    began = time.perf_counter()
    with open(queue_log, "rb") as stream:
        log = (read_queue_log_by_line if reference else read_queue_log)(stream)
    stats, joined = JoinStats(), []
    if reference:
        index = AttemptIndex(log.reference)

        def join(calls, legs):
            ids, uniqueids = legs.column("call_id").combine_chunks(), legs.column("uniqueid").combine_chunks()
            return join_calls(calls, attempts_by_call(ids, uniqueids, index), stats)
    else:
        columns = AttemptJoin(log.log.attempts)

        def join(calls, legs):
            return columns.join(calls, legs.column("call_id").combine_chunks(), legs.column("uniqueid").combine_chunks(),
                                stats)
    times = LocalTimes(dt.UTC, latest=dt.datetime.now(dt.UTC) + dt.timedelta(days=1))
    grouper, rows = _Grouper(DEFAULT_HORIZON), 0

    def collapse(legs) -> None:
        if legs is not None:
            joined.append(join(collapse_legs(legs, 1).table, legs))

    with open(path, "rb") as stream:
        for batch in read_asterisk_csv(stream, times, decoder=Decoder(), clock=ClockCheck("UTC")):
            rows += batch.rows
            grouper.add(batch.legs)
            collapse(grouper.ready())
    collapse(grouper.ready(everything=True))
    attempts = log.reference.tables().attempts if reference else columns.attempts()
    seconds, peak = time.perf_counter() - began, _maxrss_mb()
    digest = hashlib.sha256(repr((stats.joined, stats.clamped, sorted(stats.outcomes.items()))).encode())
    for table in [*joined, attempts]:
        _digest(table, digest)
    return rows, seconds, peak, digest.hexdigest(), stats.joined


def run(stage, *args) -> tuple[int, float, float]:
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        return pool.apply(stage, args)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--smoke", action="store_true", help="20,000 rows: finishes in seconds")
    parser.add_argument("--no-postgres", action="store_true")
    args = parser.parse_args()
    rows = 20_000 if args.smoke else args.rows
    with tempfile.TemporaryDirectory() as folder:
        began = time.perf_counter()
        cdr, qlog, calls = generate(rows, Path(folder))
        print(f"generated {rows:,} cdr_csv rows ({calls:,} calls, {cdr.stat().st_size / 1e6:.0f} MB) and "
              f"{sum(1 for _ in qlog.open()):,} queue_log rows in {time.perf_counter() - began:.1f} s")
        results = {}
        results["csv"] = run(stage_csv, str(cdr))
        results["collapse"] = run(stage_collapse, str(cdr))
        results["sqlite"] = run(stage_import, str(cdr), f"sqlite:///{Path(folder) / 'bench.sqlite3'}")
        if not args.no_postgres:
            from _common import scratch_postgres

            with scratch_postgres() as url:
                results["postgres"] = run(stage_import, str(cdr), url)
            with scratch_postgres() as url:
                results["postgres-kept"] = run(stage_import, str(cdr), url, None, False)
            with scratch_postgres() as url:
                results["postgres+queue_log"] = run(stage_import, str(cdr), url, str(qlog))
        results["split"] = run(stage_split, str(qlog))
        results["queue_log"] = run(stage_queue_log, str(qlog))
        results["queue_log_by_line"] = run(stage_queue_log, str(qlog), True)
        joins = {name: run(stage_join, str(cdr), str(qlog), name == "reference") for name in ("reference", "columns")}

    def rate(key: str) -> float:
        n, seconds, _ = results[key]
        return n / seconds

    baseline = rate("csv")
    print(f"\n{'stage':<44} {'rows/s':>10} {'vs csv':>8} {'peak MB':>8}")
    labels = {"csv": "bare csv.reader of Master.csv (baseline)", "collapse": "read + group + collapse (no database)",
              "sqlite": "import_cdr into SQLite", "postgres": "import_cdr into PostgreSQL (COPY)",
              "postgres-kept": "  the same, indexes kept (a fuller table)",
              "postgres+queue_log": "import_cdr + queue_log join, PostgreSQL"}
    for key, label in labels.items():
        if key in results:
            print(f"{label:<44} {rate(key):>10,.0f} {rate(key) / baseline:>7.2f}x {results[key][2]:>8.0f}")
    split = rate("split")
    print(f"{'bare split of queue_log (baseline)':<44} {split:>10,.0f} {1:>7.2f}x {results['split'][2]:>8.0f}")
    for key, label in (("queue_log", "read_queue_log (Arrow blocks, group-bys)"),
                       ("queue_log_by_line", "read_queue_log_by_line (the reference)")):
        print(f"{label:<44} {rate(key):>10,.0f} {rate(key) / split:>7.2f}x {results[key][2]:>8.0f}")
    print(f"read_queue_log = {rate('queue_log') / rate('queue_log_by_line'):.1f}x the line-by-line reference")
    print(f"\n{'read + collapse + queue_log join (no db)':<44} {'rows/s':>10} {'vs ref':>8} {'peak MB':>8}")
    reference_rate = joins["reference"][0] / joins["reference"][1]
    for name, (n, seconds, peak, _, calls_joined) in joins.items():
        print(f"{name:<44} {n / seconds:>10,.0f} {n / seconds / reference_rate:>7.2f}x {peak:>8.0f}  "
              f"({calls_joined:,} calls joined)")
    same = joins["reference"][3] == joins["columns"][3]
    print("joined calls and attempts: " + ("equal (digest of every block and of the attempts' owners)" if same else
                                           "DIFFER between the columns and the reference"))
    reached = rate("collapse")
    joined_rate = joins["columns"][0] / joins["columns"][1]
    print(f"\nissue 14 target: {TARGET:,} cdr_csv rows/s per core; read + collapse reaches {reached:,.0f} "
          f"({reached / TARGET:.0%} of it), with the queue_log joined {joined_rate:,.0f} ({joined_rate / TARGET:.0%}); "
          f"the whole SQLite import {rate('sqlite'):,.0f}"
          + (f", PostgreSQL {rate('postgres'):,.0f} ({rate('postgres-kept'):,.0f} with its indexes kept)"
             if "postgres" in results else ""))
    if not same:
        sys.exit(1)


if __name__ == "__main__":
    main()
