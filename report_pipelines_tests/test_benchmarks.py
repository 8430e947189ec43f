"""Benchmarks that cannot rot: every script runs at its ``--smoke`` size and agrees with itself.

Each script compares the path it measures with a baseline on the same data and exits non-zero when
the two disagree (results, counts, answers); this test checks exactly that, never a timing.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"
SCRIPTS = sorted(p.name for p in BENCHMARKS.glob("*.py") if not p.name.startswith("_"))


@pytest.mark.parametrize("script", SCRIPTS)
def test_the_benchmark_runs_at_its_smoke_size(script: str) -> None:
    done = subprocess.run([sys.executable, str(BENCHMARKS / script), "--smoke"], capture_output=True, text=True,
                          timeout=600, cwd=BENCHMARKS.parent)
    assert done.returncode == 0, f"{script} --smoke failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    assert "DIFFER" not in done.stdout and "disagree" not in done.stdout and "MISMATCH" not in done.stdout
