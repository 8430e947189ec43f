"""The production profile is settings only: deploy/dagster.production.yaml loads as a Dagster instance on
a fresh PostgreSQL database with the queued run coordinator and its limits, and
deploy/production.env.example is a complete, valid configuration of the application."""

from __future__ import annotations

import re
import shlex
import shutil
from pathlib import Path

import dagster as dg
import pytest
from sqlalchemy.engine import make_url

from report_pipelines.cli.demo import serve_commands
from report_pipelines.settings import Settings

REPO = Path(__file__).resolve().parents[1]
PRODUCTION_YAML = REPO / "deploy" / "dagster.production.yaml"
ENV_EXAMPLE = REPO / "deploy" / "production.env.example"


def env_file(path: Path) -> dict[str, str]:
    """VAR=value lines as the shell reads them (`set -a; . file`), comments and blank lines skipped."""
    values = {}
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        match = re.fullmatch(r"([A-Z][A-Z0-9_]*)=(.*)", line)
        assert match, f"{path.name}:{number}: not a VAR=value line: {line!r}"
        [value] = shlex.split(match[2]) or [""]
        values[match[1]] = value
    return values


@pytest.fixture
def production_instance(postgres_server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    url = make_url(postgres_server.create_database("rp_dagster"))
    for name, value in {"DAGSTER_PG_HOST": url.host, "DAGSTER_PG_PORT": str(url.port or 5432),
                        "DAGSTER_PG_USER": url.username, "DAGSTER_PG_PASSWORD": url.password or "",
                        "DAGSTER_PG_DB": url.database}.items():
        monkeypatch.setenv(name, value)
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(PRODUCTION_YAML, home / "dagster.yaml")  # what `make prod` does
    instance = dg.DagsterInstance.from_config(str(home))
    yield instance
    instance.dispose()


def test_the_production_instance_is_on_postgresql_with_the_queued_coordinator_and_its_limits(
        production_instance: dg.DagsterInstance) -> None:
    from dagster._core.run_coordinator.queued_run_coordinator import QueuedRunCoordinator
    from dagster_postgres import PostgresEventLogStorage, PostgresRunStorage, PostgresScheduleStorage

    instance = production_instance
    assert isinstance(instance.run_storage, PostgresRunStorage)
    assert isinstance(instance.event_log_storage, PostgresEventLogStorage)
    assert isinstance(instance.schedule_storage, PostgresScheduleStorage)
    assert isinstance(instance.run_coordinator, QueuedRunCoordinator)
    concurrency = instance.get_concurrency_config()
    queue = concurrency.run_queue_config
    assert queue.max_concurrent_runs == 8
    assert {(limit["value"], limit["limit"]) for limit in queue.tag_concurrency_limits
            if limit["key"] == "report_pipelines/workload"} == {("extract", 4), ("schedule", 2)}
    assert (concurrency.pool_config.default_pool_limit, str(concurrency.pool_config.pool_granularity.value)) == (4, "run")
    assert instance.run_monitoring_enabled and instance.run_retries_enabled
    # The storage works: a run written by one process is read back from PostgreSQL by a fresh instance.

    @dg.asset
    def probe() -> int:
        return 1

    result = dg.materialize([probe], instance=instance)
    fresh = dg.DagsterInstance.from_config(str(Path(instance.root_directory)))
    try:
        assert fresh.get_run_by_id(result.run_id).status == dg.DagsterRunStatus.SUCCESS
        assert fresh.get_latest_materialization_event(dg.AssetKey("probe")) is not None
    finally:
        fresh.dispose()


def test_the_environment_example_is_a_complete_production_configuration() -> None:
    example = env_file(ENV_EXAMPLE)
    settings = Settings.from_env(example)
    assert settings.deployment == "production"
    assert settings.database_url.startswith("postgresql+psycopg2://")
    assert settings.store_root.startswith("s3://")
    assert settings.mail.smtp_host and settings.mail.smtp_starttls
    # every variable the instance file reads is set by the example
    wanted = set(re.findall(r"env: (\w+)", PRODUCTION_YAML.read_text()))
    assert wanted and wanted <= set(example)
    # and every REPORT_PIPELINES_* variable it sets has its row in the README's configuration table
    readme = (REPO / "README.md").read_text()
    undocumented = [name for name in example if name.startswith("REPORT_PIPELINES_") and f"`{name}`" not in readme
                    and f"`{name.rsplit('_', 1)[0]}_" not in readme]
    assert not undocumented


def test_serve_starts_the_webserver_and_the_daemon_on_the_same_code_location() -> None:
    webserver, daemon = serve_commands(REPO, "0.0.0.0", 3100)
    assert Path(webserver[0]).name == "dagster-webserver" and webserver[1:5] == ["-h", "0.0.0.0", "-p", "3100"]
    assert Path(daemon[0]).name == "dagster-daemon" and daemon[1] == "run"
    assert webserver[5:] == daemon[2:] == ["-w", str(REPO / "workspace.yaml")]


INSTANCE_QUERY = """{ instance { runQueuingSupported runQueueConfig { maxConcurrentRuns tagConcurrencyLimitsYaml }
  daemonHealth { allDaemonStatuses { daemonType healthy required } } } }"""


def test_make_prod_serves_the_production_instance_with_its_queue_and_stops_on_sigterm(
        postgres_server, tmp_path: Path) -> None:
    """`make prod` with an .env made from the example (fresh PostgreSQL databases, local folders): the
    webserver answers, reports the queue and its limits, the daemon's loops are healthy, and SIGTERM
    stops everything."""
    import json
    import os
    import signal
    import subprocess
    import sys
    import time
    import urllib.request

    from report_pipelines_tests.s3_support import free_port

    dagster_db = make_url(postgres_server.create_database("rp_dagster"))
    values = {**env_file(ENV_EXAMPLE), "DAGSTER_HOME": str(tmp_path / "dagster_home"),
              "DAGSTER_PG_HOST": dagster_db.host, "DAGSTER_PG_PORT": str(dagster_db.port or 5432),
              "DAGSTER_PG_USER": dagster_db.username, "DAGSTER_PG_PASSWORD": dagster_db.password or "",
              "DAGSTER_PG_DB": dagster_db.database, "DAGSTER_HOST": "127.0.0.1", "DAGSTER_PORT": str(free_port()),
              "REPORT_PIPELINES_DATABASE_URL": postgres_server.create_database(),
              "REPORT_PIPELINES_DATA_DIR": str(tmp_path / "data"), "REPORT_PIPELINES_FILES": str(tmp_path / "files"),
              "REPORT_PIPELINES_STORE": str(tmp_path / "reports")}
    env_path = tmp_path / "production.env"
    env_path.write_text("".join(f"{k}={shlex.quote(v)}\n" for k, v in values.items()))
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("REPORT_PIPELINES_", "DAGSTER_"))}
    log = (tmp_path / "make-prod.log").open("w")
    make = subprocess.Popen(["make", "--no-print-directory", "-o", "install", "prod", f"PROD_ENV={env_path}",
                             f"BIN={Path(sys.executable).parent}"], cwd=REPO, env=environ, stdout=log,
                            stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{values['DAGSTER_PORT']}"

    def instance_view() -> dict | None:
        request = urllib.request.Request(f"{url}/graphql", data=json.dumps({"query": INSTANCE_QUERY}).encode(),
                                         headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=5) as reply:
                return json.load(reply)["data"]["instance"]
        except OSError:
            return None

    try:
        deadline, view = time.monotonic() + 90, None
        while time.monotonic() < deadline:
            assert make.poll() is None, (tmp_path / "make-prod.log").read_text()
            view = instance_view()
            daemons = {d["daemonType"]: d["healthy"] for d in view["daemonHealth"]["allDaemonStatuses"]
                       if d["required"]} if view else {}
            if daemons and all(daemons.values()):
                break
            time.sleep(1)
        else:
            pytest.fail(f"make prod: not serving with healthy daemons in 90 s: {view}\n"
                        f"{(tmp_path / 'make-prod.log').read_text()[-3000:]}")
        assert view["runQueuingSupported"] and view["runQueueConfig"]["maxConcurrentRuns"] == 8
        assert "report_pipelines/workload" in view["runQueueConfig"]["tagConcurrencyLimitsYaml"]
        assert {"QUEUED_RUN_COORDINATOR", "BACKFILL", "SCHEDULER", "SENSOR", "MONITORING"} <= set(daemons)
        assert (tmp_path / "dagster_home" / "dagster.yaml").read_text() == PRODUCTION_YAML.read_text()
    finally:
        if make.poll() is None:
            os.killpg(make.pid, signal.SIGTERM)
        try:
            make.wait(40)
        except subprocess.TimeoutExpired:
            os.killpg(make.pid, signal.SIGKILL)
            make.wait()
            pytest.fail("make prod did not stop within 40 s of SIGTERM")
        finally:
            log.close()


@pytest.mark.parametrize("value", ["minio:9000", "ftp://minio:9000", "http://minio:9000/bucket", "http://"])
def test_a_bad_s3_endpoint_is_refused_naming_its_variable(value: str) -> None:
    from report_pipelines.domain.errors import InvalidInput

    with pytest.raises(InvalidInput, match="REPORT_PIPELINES_S3_ENDPOINT"):
        Settings.from_env({"REPORT_PIPELINES_S3_ENDPOINT": value})
    assert Settings.from_env({"REPORT_PIPELINES_S3_ENDPOINT": "http://127.0.0.1:9000/"}).store_endpoint == (
        "http://127.0.0.1:9000")
