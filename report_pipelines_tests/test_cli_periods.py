"""`extract`, `usage` and `precache` as a user runs them: exit codes 0 / 2 / 3, data only on `--out -`."""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from sqlalchemy import Engine

from report_pipelines.adapters.locks import ClientDayLocks
from report_pipelines_tests.extract_support import Seeded, seed

CLI = str(Path(sys.executable).with_name("report-pipelines"))


@pytest.fixture
def seeded(sqlite_engine: Engine, tmp_path: Path) -> Seeded:
    return seed(sqlite_engine, tmp_path)


def run(seeded: Seeded, *args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "REPORT_PIPELINES_DATA_DIR": str(seeded.settings.data_dir),
           "REPORT_PIPELINES_DATABASE_URL": seeded.settings.database_url,
           "REPORT_PIPELINES_STORE": seeded.settings.store_root}
    return subprocess.run([CLI, *args], env=env, capture_output=True, text=True, timeout=300, cwd=cwd)


def test_extract_to_standard_output_is_the_data_and_nothing_else(seeded: Seeded, tmp_path: Path) -> None:
    ny = seeded.clients["America/New_York"]
    done = run(seeded, "extract", "--client", ny.slug, "--report", "hourly_volume", "--from", "2024-03-09",
               "--to", "2024-03-10", "--out", "-")
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    lines = done.stdout.splitlines()
    assert lines[0].startswith("hour_start_utc,local_hour,") and lines[0].endswith(",client,date")
    assert len(lines) == 1 + 24 + 23  # the header, then 9 March and the 23-hour 10 March


def test_extract_to_a_file_then_refusals_in_one_line_with_status_2(seeded: Seeded, tmp_path: Path) -> None:
    ny = seeded.clients["America/New_York"]
    base = ["extract", "--client", ny.slug, "--report", "queue_performance", "--from", "2024-03-08", "--to",
            "2024-03-10", "--summary"]
    done = run(seeded, *base, "--format", "xlsx", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    name = f"{ny.slug}_queue_performance_2024-03-08_2024-03-10_summary.xlsx"
    assert (tmp_path / name).stat().st_size > 0
    assert done.stderr.startswith("wrote ") and "3 days from the cache" not in done.stderr  # computed this time
    again = run(seeded, *base, "--format", "xlsx", cwd=tmp_path)
    assert (again.returncode, again.stderr) == (2, f"error: --out: '{tmp_path / name}' exists; give --force to replace it\n")
    forced = run(seeded, *base, "--format", "xlsx", "--force", cwd=tmp_path)
    assert forced.returncode == 0 and "3 days from the cache, 0 computed" in forced.stderr
    for args, line in [
        (["--from", "2024-03-10", "--to", "2024-03-08"], "error: --to: 2024-03-08 is before start 2024-03-10\n"),
        (["--from", "2024-03-08", "--to", "2030-01-01"], "error: --to: 2030-01-01 is in the future"),
        (["--from", "8 March", "--to", "2024-03-10"], "error: --from: '8 March' is not a date (YYYY-MM-DD)\n"),
        (["--from", "2024-03-08", "--to", "2024-03-10", "--format", "xls"], "error: --format: "),
        (["--from", "2024-03-08", "--to", "2024-03-10", "--deadline", "soon"], "error: --deadline: "),
    ]:
        refused = run(seeded, "extract", "--client", ny.slug, "--report", "call_detail", *args, "--out",
                      str(tmp_path / "refused.csv"))
        assert refused.returncode == 2 and refused.stderr.startswith(line), (args, refused.stderr)
        assert len(refused.stderr.splitlines()) == 1 and "Traceback" not in refused.stderr
        assert not (tmp_path / "refused.csv").exists()


def test_a_request_past_its_deadline_exits_3_with_one_line(seeded: Seeded, tmp_path: Path) -> None:
    lisbon = seeded.clients["Europe/Lisbon"]
    locks = ClientDayLocks(seeded.engine, seeded.settings.lock_dir)
    held, release = threading.Event(), threading.Event()

    def another_run() -> None:  # computing 9 March, slowly
        with locks.hold(lisbon.id, dt.date(2024, 3, 9), 5):
            held.set()
            release.wait(60)

    holder = threading.Thread(target=another_run)
    holder.start()
    held.wait(5)
    try:
        done = run(seeded, "extract", "--client", lisbon.slug, "--report", "call_detail", "--from", "2024-03-08",
                   "--to", "2024-03-09", "--deadline", "1.5", "--out", str(tmp_path / "l.csv"))
    finally:
        release.set()
        holder.join()
    assert done.returncode == 3
    assert done.stderr == ("error: deadline: 1.5 s passed with 1 of 2 days ready (1 computed by this request); they "
                           "stay cached, so asking again is faster\n")
    assert not (tmp_path / "l.csv").exists()
    usage = run(seeded, "usage", "--since", "2020-01-01")
    assert usage.returncode == 0
    [line] = [row for row in usage.stdout.splitlines() if row.startswith(lisbon.slug)]
    assert line.split()[1:2] == ["1"] and line.split()[-1] == "1"  # one request, one timeout


def test_precache_set_and_plan(seeded: Seeded) -> None:
    sydney = seeded.clients["Australia/Sydney"]
    done = run(seeded, "precache", "set", sydney.slug, "--priority", "--by", "ops@noc", "--note", "VIP")
    assert done.returncode == 0 and done.stdout.startswith(f"{sydney.slug}: priority (set by ops@noc at ")
    plan = run(seeded, "precache", "plan")
    assert plan.returncode == 0
    [row] = [line for line in plan.stdout.splitlines() if line.startswith(sydney.slug)]
    assert " priority " in row and "set to priority by ops@noc" in row
    assert "next pre-cache, in order" in plan.stdout
    refused = run(seeded, "precache", "set", "nobody", "--skip")
    assert (refused.returncode, refused.stderr.split(":")[0:2]) == (2, ["error", " client"])
    missing = run(seeded, "precache", "set", sydney.slug)
    assert missing.returncode == 2 and missing.stderr.startswith("error: decision: give one of --priority")
