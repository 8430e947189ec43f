"""The soak run of the scheduled reports' chaos harness: longer and bigger than the suite's chaos test.

Same harness (``report_pipelines_tests/chaos_support.py``): on a scratch PostgreSQL database,
``--schedules`` schedules fall due over the storm; ``--builders`` and ``--senders`` separate OS
processes run the service functions the Dagster ops run; a loop SIGKILLs a random one every
0.4-1.6 s (``--kill-every``) and starts another; the relay (aiosmtpd) is sometimes slow, greylists
recipients (450, then accepts), refuses one address for good (550) and sometimes drops the
connection after DATA, before or after taking the message. After ``--storm`` seconds the survivors
run on past every lease. It prints the figures and exits non-zero if anything was lost, stuck,
built twice or delivered twice outside the documented window (each duplicate counted by cause).

    .venv/bin/python benchmarks/soak_schedules.py [--schedules 400] [--storm 300] [--smoke]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(ROOT))

from _common import scratch_postgres

from report_pipelines.adapters.db.engine import make_engine
from report_pipelines.adapters.db.migrate import upgrade
from report_pipelines_tests.chaos_support import ChaosConfig, run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--schedules", type=int, default=400)
    parser.add_argument("--builders", type=int, default=3)
    parser.add_argument("--senders", type=int, default=4)
    parser.add_argument("--storm", type=float, default=300.0, help="seconds of SIGKILLs")
    parser.add_argument("--kill-every", type=float, nargs=2, default=(0.4, 1.6), metavar=("MIN", "MAX"))
    parser.add_argument("--seed", type=int, default=9)
    parser.add_argument("--smoke", action="store_true", help="20 schedules, a 6-second storm")
    args = parser.parse_args()
    if args.smoke:
        args.schedules, args.storm = 20, 6.0
    with scratch_postgres("rp_soak_sched") as url, tempfile.TemporaryDirectory(prefix="rp_soak_") as workdir:
        engine = make_engine(url)
        try:
            upgrade(engine)
            config = ChaosConfig(url=url, workdir=workdir, schedules=args.schedules, builders=args.builders,
                                 senders=args.senders, storm_s=args.storm, drain_s=max(120.0, args.storm),
                                 kill_every_s=tuple(args.kill_every), seed=args.seed)
            started = time.monotonic()
            verdict, storm = run(config, engine)
            took = time.monotonic() - started
        finally:
            engine.dispose()
    print(f"soak: {args.schedules} schedules, {args.builders} builders + {args.senders} senders, storm "
          f"{args.storm:.0f} s, {took:.0f} s in all")
    for line in verdict.lines(storm):
        print("  " + line)
    print("verdict: " + ("OK" if verdict.ok() and storm.drained_s is not None else "BROKEN"))
    if not verdict.ok() or storm.drained_s is None:
        for problem in (verdict.stuck + verdict.unexplained + verdict.lost)[:20]:
            print("  " + problem)
        sys.exit(1)


if __name__ == "__main__":
    main()
