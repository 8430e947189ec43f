"""The Dagster UI in a real browser: ``dagster-webserver`` and ``dagster-daemon`` (subprocesses, a free
port, a temporary ``DAGSTER_HOME``) on a demo instance seeded by ``report-pipelines demo seed``, and
Debian's headless Chromium (``/usr/bin/chromium``, driven by Playwright; nothing is downloaded) through
the asset graph, the report asset's partition grid, a 2-day backfill launched through the webserver's
GraphQL, its runs succeeding, and the asset checks' verdicts.

Screenshots go to the test's temporary folder; a failure lists them in its message. The daemon is
started right after the backfill is requested: its backfill loop runs at start and then every 30 s,
so the backfill is picked up at once instead of up to half a minute later.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from report_pipelines.cli.demo import serve_commands
from report_pipelines_tests.s3_support import free_port

REPO = Path(__file__).resolve().parents[1]
CHROMIUM = "/usr/bin/chromium"
ASSET = "report_days"
CHECKS = {"matches_source", "no_missing_client_days"}


class Dagster:
    """The two processes and a GraphQL client of the webserver."""

    def __init__(self, tmp_path: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.home, self.data, self.logs = tmp_path / "dagster_home", tmp_path / "data", tmp_path / "logs"
        for folder in (self.home, self.data, self.logs):
            folder.mkdir()
        shutil.copy(REPO / "dagster.yaml", self.home / "dagster.yaml")  # the demo instance (SQLite storage)
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("REPORT_PIPELINES_")}
        self.env.update(DAGSTER_HOME=str(self.home), REPORT_PIPELINES_DATA_DIR=str(self.data))
        self.webserver_args, self.daemon_args = serve_commands(REPO, "127.0.0.1", self.port)
        self.processes: list[subprocess.Popen] = []
        self.log_files: list = []

    def cli(self, *args: str) -> str:
        done = subprocess.run([sys.executable, "-m", "report_pipelines.cli", *args], cwd=REPO, env=self.env,
                              capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stdout + done.stderr
        return done.stdout

    def start(self, name: str, args: list[str]) -> None:
        log = open(self.logs / f"{name}.log", "w")
        self.log_files.append(log)
        self.processes.append(subprocess.Popen(args, cwd=REPO, env=self.env, stdout=log, stderr=subprocess.STDOUT,
                                               start_new_session=True))

    def wait_ready(self, timeout_s: float = 60) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            assert self.processes[0].poll() is None, self.log("webserver")
            try:
                with urllib.request.urlopen(f"{self.url}/server_info", timeout=2) as reply:
                    if reply.status == 200:
                        break
            except OSError:
                time.sleep(0.3)
        else:
            pytest.fail(f"the webserver did not answer within {timeout_s:g} s:\n{self.log('webserver')}")
        # the code location is loaded once the repository answers
        self.until(lambda: self.graphql("{ assetNodes { assetKey { path } } }")["assetNodes"], timeout_s, "code location")

    def graphql(self, query: str, variables: dict | None = None) -> dict:
        body = json.dumps({"query": query, "variables": variables or {}}).encode()
        request = urllib.request.Request(f"{self.url}/graphql", data=body, headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=30) as reply:
            answer = json.load(reply)
        assert not answer.get("errors"), answer["errors"]
        return answer["data"]

    def until(self, probe: Callable[[], object], timeout_s: float, what: str):
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            found = probe()
            if found:
                return found
            time.sleep(0.5)
        pytest.fail(f"{what}: not within {timeout_s:g} s\n--- daemon log ---\n{self.log('daemon')[-3000:]}")

    def log(self, name: str) -> str:
        path = self.logs / f"{name}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def stop(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
        for process in self.processes:
            try:
                process.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
        for log in self.log_files:
            log.close()


@pytest.fixture
def dagster(tmp_path: Path) -> Iterator[Dagster]:
    instance = Dagster(tmp_path)
    try:
        yield instance
    finally:
        instance.stop()


LAUNCH = """mutation($params: LaunchBackfillParams!) { launchPartitionBackfill(backfillParams: $params) {
  __typename ... on LaunchBackfillSuccess { backfillId } ... on PythonError { message } } }"""
RUNS = """query($id: String!) { runsOrError(filter: {tags: [{key: "dagster/backfill", value: $id}]}) {
  ... on Runs { results { runId status } } } }"""
BACKFILL = """query($id: String!) { partitionBackfillOrError(backfillId: $id) {
  ... on PartitionBackfill { status } } }"""
CHECK_EXECUTIONS = """query($check: String!) { assetCheckExecutions(assetKey: {path: ["report_days"]},
  checkName: $check, limit: 50) { runId status evaluation { success } } }"""
MATERIALIZED = """{ assetNodes(assetKeys: [{path: ["report_days"]}]) { assetPartitionStatuses {
  ... on TimePartitionStatuses { ranges { status startKey endKey } } } } }"""


def test_the_ui_shows_the_graph_and_partitions_runs_a_two_day_backfill_and_shows_the_checks(
        dagster: Dagster, tmp_path: Path) -> None:
    from playwright.sync_api import sync_playwright

    end = dt.datetime.now(dt.UTC).date() - dt.timedelta(days=2)  # ended in every zone
    days = [(end - dt.timedelta(days=1)).isoformat(), end.isoformat()]
    yesterday = (end + dt.timedelta(days=1)).isoformat()
    dagster.cli("db", "upgrade")
    dagster.cli("demo", "seed", "--clients", "3", "--days", "3", "--end", end.isoformat(),
                "--largest", "200", "--smallest", "20")
    dagster.start("webserver", dagster.webserver_args)
    dagster.wait_ready()
    dagster.graphql("mutation { setNuxSeen }")  # the first visit's community pop-up
    shots: list[Path] = []

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True,
                                             args=["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"])
        page = browser.new_page(viewport={"width": 1400, "height": 900})
        page.set_default_timeout(20_000)

        def shot(name: str) -> None:
            shots.append(tmp_path / f"{len(shots) + 1:02d}-{name}.png")
            page.screenshot(path=str(shots[-1]))

        try:
            # 1. the asset graph: its groups (sources -> reports, periods), then the reports group opened
            page.goto(f"{dagster.url}/asset-groups")
            for group in ("sources", "reports", "periods"):
                page.get_by_text(group, exact=True).first.wait_for()
            shot("asset-graph")
            page.goto(f"{dagster.url}/locations/report_pipelines/asset-groups/reports")
            page.get_by_text(ASSET, exact=True).first.wait_for()
            shot("reports-group")
            # 2. the report asset's partition grid (one partition per local date)
            page.goto(f"{dagster.url}/assets/{ASSET}?view=partitions")
            page.get_by_text("Partitions", exact=False).first.wait_for()
            page.get_by_text(days[-1]).first.wait_for()
            shot("partitions-before")
            # 3. a 2-day backfill through the webserver's GraphQL (what the UI's Materialize dialog sends)
            launched = dagster.graphql(LAUNCH, {"params": {
                "partitionNames": days, "assetSelection": [{"path": [ASSET]}], "fromFailure": False}})
            backfill = launched["launchPartitionBackfill"]
            assert backfill["__typename"] == "LaunchBackfillSuccess", backfill
            backfill_id = backfill["backfillId"]
            dagster.start("daemon", dagster.daemon_args)
            page.goto(f"{dagster.url}/runs/b/{backfill_id}")
            page.get_by_text(backfill_id).first.wait_for()
            shot("backfill-requested")
            # 4. its runs succeed (the daemon launches them through the run queue)

            def finished() -> list[dict] | None:
                runs = dagster.graphql(RUNS, {"id": backfill_id})["runsOrError"]["results"]
                failed = [r for r in runs if r["status"] in ("FAILURE", "CANCELED")]
                assert not failed, f"backfill runs failed: {failed}\n{dagster.log('daemon')[-3000:]}"
                return runs if runs and all(r["status"] == "SUCCESS" for r in runs) else None

            dagster.until(finished, 90, "the backfill's runs succeed")  # about 15 s on an idle machine

            def materialized() -> bool:
                [node] = dagster.graphql(MATERIALIZED)["assetNodes"]
                ranges = node["assetPartitionStatuses"]["ranges"]
                # the D-1 pre-cache (the daemon runs its sensor) may materialize yesterday, the day after ours,
                # meanwhile: the range then ends a day later
                return any(r["status"] == "MATERIALIZED" and r["startKey"] == days[0] and r["endKey"] in (days[1], yesterday)
                           for r in ranges)

            dagster.until(materialized, 15, "both days materialized")
            page.goto(f"{dagster.url}/assets/{ASSET}?view=partitions")
            # the grid's legend: our two days (and yesterday, when the pre-cache has made it)
            page.get_by_text(re.compile(r"Materialized \([23]\)")).first.wait_for()
            shot("partitions-after")
            # 5. the asset checks' verdicts, in the UI and in GraphQL
            page.goto(f"{dagster.url}/assets/{ASSET}?view=checks")
            for name in CHECKS:
                page.get_by_text(name).first.wait_for()
            page.get_by_text("Passed").first.wait_for()
            shot("checks")

            # Each backfill run's own verdicts (not "the latest materialization's": runs may record their checks
            # in either order, and the D-1 pre-cache may materialize yesterday meanwhile). A run evaluates each
            # check once over all its dates; Dagster marks the per-partition executions it planned as skipped.
            backfill_runs = {r["runId"] for r in dagster.graphql(RUNS, {"id": backfill_id})["runsOrError"]["results"]}

            def recorded() -> dict | None:
                found = {name: [e for e in dagster.graphql(CHECK_EXECUTIONS, {"check": name})["assetCheckExecutions"]
                                if e["runId"] in backfill_runs] for name in CHECKS}
                settled = all(e["status"] not in ("IN_PROGRESS", "PLANNED") for runs in found.values() for e in runs)
                evaluated = all({e["runId"] for e in runs if e["evaluation"]} == backfill_runs for runs in found.values())
                return found if settled and evaluated else None

            verdicts = dagster.until(recorded, 30, "each backfill run's checks recorded")
            assert all(e["status"] == "SUCCEEDED" and e["evaluation"]["success"]
                       for runs in verdicts.values() for e in runs if e["evaluation"]), verdicts
            assert not [e for runs in verdicts.values() for e in runs if e["status"] in ("FAILED", "EXECUTION_FAILED")]
        except BaseException as exc:
            try:
                shot("failure")
            except Exception:
                pass  # the page may be gone
            raise AssertionError(f"{exc}\nscreenshots: {', '.join(map(str, shots))}") from exc
        finally:
            browser.close()
    assert len(shots) == 6 and all(p.stat().st_size > 10_000 for p in shots)
