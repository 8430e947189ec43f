"""The command line, as a user runs it: exit codes, one-line errors, no tracebacks."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

CLI = str(Path(sys.executable).with_name("report-pipelines"))


@pytest.fixture
def run(tmp_path: Path):  # noqa: ANN201
    env = {**os.environ, "REPORT_PIPELINES_DATA_DIR": str(tmp_path / "data"), "DAGSTER_HOME": str(tmp_path / "dh")}
    env.pop("REPORT_PIPELINES_DATABASE_URL", None)
    (tmp_path / "dh").mkdir()
    (tmp_path / "dh" / "dagster.yaml").write_text((Path(__file__).parent.parent / "dagster.yaml").read_text())

    def _run(*args: str, url: str | None = None) -> subprocess.CompletedProcess[str]:
        call_env = dict(env, REPORT_PIPELINES_DATABASE_URL=url) if url else env
        return subprocess.run([CLI, *args], env=call_env, capture_output=True, text=True, timeout=300)

    return _run


def test_clients_lifecycle_and_clear_errors(run) -> None:  # noqa: ANN001
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


def test_demo_seed_and_run_end_to_end_on_postgresql(run, pg_url: str) -> None:  # noqa: ANN001
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
    assert "job extract_reports_job over 2024-10-25..2024-10-27 x 3 zones: succeeded" in demo.stdout
    assert "FAILED" not in demo.stdout and demo.stdout.count(": passed") == 8  # call_detail.matches_source + 7 reports complete
    assert "summarize_report('queue_performance'" in demo.stdout and "answer_rate" in demo.stdout
