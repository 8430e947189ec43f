"""The command line, as a user runs it: exit codes, one-line errors, no tracebacks."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

CLI = str(Path(sys.executable).with_name("report-pipelines"))


@pytest.fixture
def run(tmp_path: Path):
    env = {**os.environ, "REPORT_PIPELINES_DATA_DIR": str(tmp_path / "data"), "DAGSTER_HOME": str(tmp_path / "dh")}
    env.pop("REPORT_PIPELINES_DATABASE_URL", None)
    (tmp_path / "dh").mkdir()
    (tmp_path / "dh" / "dagster.yaml").write_text((Path(__file__).parent.parent / "dagster.yaml").read_text())

    def _run(*args: str, url: str | None = None) -> subprocess.CompletedProcess[str]:
        call_env = dict(env, REPORT_PIPELINES_DATABASE_URL=url) if url else env
        return subprocess.run([CLI, *args], env=call_env, capture_output=True, text=True, timeout=300)

    return _run


def test_clients_lifecycle_and_clear_errors(run) -> None:
    assert run("db", "upgrade").returncode == 0
    added = run("clients", "add", "acme-sales", "--name", "Acme Sales", "--timezone", "America/Sao_Paulo")
    assert added.returncode == 0, added.stderr
    duplicate = run("clients", "add", "acme-sales", "--name", "Again", "--timezone", "UTC")
    assert duplicate.returncode == 2
    assert duplicate.stderr.strip() == "error: slug: a client with slug 'acme-sales' already exists"
    bad_zone = run("clients", "add", "other", "--name", "Other", "--timezone", "America/Sao_Paolo")
    assert bad_zone.returncode == 2
    assert bad_zone.stderr.startswith("error: timezone: unknown time zone 'America/Sao_Paolo'")
    assert "did you mean 'America/Sao_Paulo'" in bad_zone.stderr
    for failed in (duplicate, bad_zone):
        assert "Traceback" not in failed.stderr
    listed = run("clients", "list")
    assert listed.returncode == 0
    assert "acme-sales" in listed.stdout and "America/Sao_Paulo" in listed.stdout and "other" not in listed.stdout


def test_demo_seed_and_run_end_to_end_on_postgresql(run, pg_url: str) -> None:
    assert run("db", "upgrade", url=pg_url).returncode == 0
    seeded = run("demo", "seed", "--clients", "3", "--days", "3", "--largest", "200", "--end", "2024-10-27", url=pg_url)
    assert seeded.returncode == 0, seeded.stderr
    assert "seeded" in seeded.stdout
    again = run("demo", "seed", "--clients", "3", "--days", "3", "--largest", "200", url=pg_url)
    assert again.returncode == 2 and "--reset" in again.stderr
    demo = run("demo", "run", "--end", "2024-10-27", "--days", "3", url=pg_url)
    assert demo.returncode == 0, demo.stdout + demo.stderr
    assert "job observe_call_events_job: succeeded" in demo.stdout
    assert "3 clients" in demo.stdout
    assert "job extract_reports_job over 2024-10-25..2024-10-27, one run, 3 zones: succeeded" in demo.stdout
    assert "FAILED" not in demo.stdout and demo.stdout.count(": passed") == 2  # matches_source, no_missing_client_days
    assert "summarize_report('queue_performance'" in demo.stdout and "answer_rate" in demo.stdout
    assert "client porto-dental now holds REPORTS x1, SEATS x25: served" in demo.stdout
    # 10. the HTTP API on a loopback port: a client key, three calls, another client's 404
    assert "10. the HTTP API on http://127.0.0.1:" in demo.stdout
    assert "shape=summary -> 200" in demo.stdout and "POST /v1/schedules -> 201" in demo.stdout
    # the summary asked for is of the last day with calls (the seed ends on 2024-10-27), not an empty one
    assert re.search(r"from=2024-10-27&to=2024-10-27&shape=summary -> 200, [1-9]\d* queues", demo.stdout), demo.stdout
    assert "/licences -> REPORTS x1" in demo.stdout and demo.stdout.count("(another client's) -> 404") == 2

    # The PostgreSQL demo works any number of times: the reset removes everything the demo made
    # (its prospect's client, the trial account, their proposals, the launch policy's uses).
    reseeded = run("demo", "seed", "--reset", "--clients", "3", "--days", "3", "--largest", "200",
                   "--end", "2024-10-27", url=pg_url)
    assert reseeded.returncode == 0, reseeded.stderr
    second = run("demo", "run", "--end", "2024-10-27", "--days", "3", url=pg_url)
    assert second.returncode == 0, second.stdout + second.stderr
    assert "FAILED" not in second.stdout and "Traceback" not in second.stderr
    assert "trial account braga-hotel-trial" in second.stdout


def test_demo_run_without_a_dagster_home_is_one_line(run, tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "DAGSTER_HOME"}
    done = subprocess.run([CLI, "demo", "run"], env={**env, "REPORT_PIPELINES_DATA_DIR": str(tmp_path)},
                          capture_output=True, text=True, timeout=120)
    assert (done.returncode, done.stderr.strip()) == (
        2, "error: DAGSTER_HOME: set it to a folder holding dagster.yaml (make demo does)")


def test_dev_uses_the_workspace_of_the_folder_it_runs_in(tmp_path: Path) -> None:
    from report_pipelines.cli.demo import dev_command

    assert dev_command(tmp_path, "127.0.0.1", 3001)[-2:] == ["-w", str(Path(__file__).parent.parent / "workspace.yaml")]
    (tmp_path / "workspace.yaml").write_text("load_from:\n  - python_module: report_pipelines.definitions\n")
    command = dev_command(tmp_path, "0.0.0.0", 3002)
    assert command[1:] == ["dev", "-h", "0.0.0.0", "-p", "3002", "-w", str(tmp_path / "workspace.yaml")]
