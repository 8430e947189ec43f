"""The period benchmark's smoke size runs, and every path it compares agrees (figures are not checked)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parent.parent / "benchmarks" / "bench_periods.py"


def test_the_period_benchmark_runs_and_its_paths_agree(postgres_server) -> None:
    postgres_server.check()  # the script makes its own scratch database on the same server
    done = subprocess.run([sys.executable, str(SCRIPT), "--smoke"], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "MISMATCH" not in done.stdout
    for agreement in ("the pre-cached answer equals the computed one", "cached summary equals the cold one",
                      "equals write_table of the whole period, byte for byte",
                      "both compute each client-day once; in-flight never idles while work waits"):
        assert f"ok: {agreement}" in done.stdout or agreement in done.stdout, agreement
    assert done.stdout.rstrip().endswith("paths agree: all checks passed")
