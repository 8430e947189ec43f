"""The Dagster code location: it loads, its instance configs load, and the source observation is right."""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import dagster as dg
import pyarrow as pa
import pytest
from sqlalchemy import Engine
from sqlalchemy.engine import make_url

from report_pipelines.adapters.db.bulk import CALL_EVENT_SCHEMA, load_call_events
from report_pipelines.definitions import MAIN_JOB_NAME, defs
from report_pipelines.defs.events.jobs import observe_call_events_job
from report_pipelines.defs.resources import AppResource
from report_pipelines.services.clients import add_client

ROOT = Path(__file__).resolve().parent.parent
UTC = dt.UTC


def test_definitions_load() -> None:
    dg.Definitions.validate_loadable(defs)
    assert defs.resolve_job_def(MAIN_JOB_NAME) is not None
    source = defs.resolve_asset_graph().get(dg.AssetKey("call_events"))
    assert source.is_observable and not source.is_materializable


def test_dagster_definitions_validate_passes_on_the_workspace(tmp_path: Path) -> None:
    env = {**os.environ, "DAGSTER_HOME": str(tmp_path), "REPORT_PIPELINES_DATA_DIR": str(tmp_path / "data")}
    (tmp_path / "dagster.yaml").write_text((ROOT / "dagster.yaml").read_text())
    done = subprocess.run(
        [str(Path(sys.executable).with_name("dagster")), "definitions", "validate", "-w", str(ROOT / "workspace.yaml")],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=180,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def _instance(config_file: str, home: Path) -> dg.DagsterInstance:
    home.mkdir(parents=True, exist_ok=True)
    (home / "dagster.yaml").write_text((ROOT / config_file).read_text())
    return dg.DagsterInstance.from_config(str(home))


def test_embedded_instance_has_a_bounded_run_queue(tmp_path: Path) -> None:
    with _instance("dagster.yaml", tmp_path / "home") as instance:
        queue = instance.get_concurrency_config().run_queue_config
        assert queue is not None and queue.max_concurrent_runs == 4
        assert queue.tag_concurrency_limits == [{"key": "report_pipelines/workload", "value": "extract", "limit": 2}]
        assert "sqlite" in type(instance.run_storage).__name__.lower()
        pools = instance.get_concurrency_config().pool_config
        assert pools.default_pool_limit == 2 and pools.pool_granularity.value == "run"


def _calls(client_id: int, n: int, start: dt.datetime, ingested: dt.datetime, prefix: str) -> pa.Table:
    return pa.Table.from_pydict(
        {
            "client_id": [client_id] * n,
            "pbx_call_id": [f"{prefix}{i}" for i in range(n)],
            "direction": ["inbound"] * n,
            "queue": ["sales"] * n,
            "agent": ["1001"] * n,
            "caller": ["+15550001"] * n,
            "callee": ["+15550002"] * n,
            "started_at": [start + dt.timedelta(minutes=i) for i in range(n)],
            "answered_at": [start + dt.timedelta(minutes=i, seconds=9) for i in range(n)],
            "ended_at": [start + dt.timedelta(minutes=i, seconds=99) for i in range(n)],
            "disposition": ["ANSWERED"] * n,
            "queued_at": [None] * n,
            "ingested_at": [ingested] * n,
        },
        schema=CALL_EVENT_SCHEMA,
    )


def _observe(url: str, instance: dg.DagsterInstance) -> dg.AssetObservation:
    job = defs.resolve_job_def(observe_call_events_job.name)
    result = job.execute_in_process(instance=instance, resources={"app": AppResource(database_url=url)})
    assert result.success
    [event] = result.get_asset_observation_events()
    return event.asset_observation_data.asset_observation


def _engine_url(engine: Engine) -> str:
    return make_url(engine.url).render_as_string(hide_password=False)


def test_source_observation_reports_per_client_watermarks(engine: Engine) -> None:
    lisbon = add_client(engine, "lisbon", "Lisbon", "Europe/Lisbon")
    sydney = add_client(engine, "sydney", "Sydney", "Australia/Sydney")
    add_client(engine, "empty", "No calls yet", "UTC")
    day = dt.datetime(2024, 10, 27, 9, 0, tzinfo=UTC)
    load_call_events(engine, _calls(lisbon.id, 5, day, day + dt.timedelta(hours=2), "a"))
    load_call_events(engine, _calls(sydney.id, 3, day, day + dt.timedelta(hours=1), "b"))
    url = _engine_url(engine)
    instance = dg.DagsterInstance.ephemeral()

    first = _observe(url, instance)
    meta = first.metadata
    assert meta["calls"].value == 8 and meta["clients"].value == 3
    assert meta["ingest_watermark"].value == (day + dt.timedelta(hours=2)).timestamp()
    rows = {r.data["client"]: r.data for r in meta["per_client"].value.records}
    assert rows["lisbon"]["calls"] == 5
    assert rows["lisbon"]["latest_call_utc"] == (day + dt.timedelta(minutes=4)).isoformat()
    assert rows["sydney"]["ingest_watermark_utc"] == (day + dt.timedelta(hours=1)).isoformat()
    assert rows["empty"] == {"client": "empty", "timezone": "UTC", "calls": 0, "latest_call_utc": "",
                             "ingest_watermark_utc": ""}

    # Nothing new: same data version. A late call for Sydney: new version, new watermark for Sydney only.
    assert _observe(url, instance).tags["dagster/data_version"] == first.tags["dagster/data_version"]
    late = day + dt.timedelta(days=1)
    load_call_events(engine, _calls(sydney.id, 1, day - dt.timedelta(hours=5), late, "late"))
    second = _observe(url, instance)
    assert second.tags["dagster/data_version"] != first.tags["dagster/data_version"]
    rows = {r.data["client"]: r.data for r in second.metadata["per_client"].value.records}
    assert rows["sydney"]["ingest_watermark_utc"] == late.isoformat()
    assert rows["sydney"]["latest_call_utc"] == (day + dt.timedelta(minutes=2)).isoformat()
    assert rows["lisbon"]["ingest_watermark_utc"] == (day + dt.timedelta(hours=2)).isoformat()


def test_postgres_instance_stores_runs_in_postgresql(tmp_path: Path, pg_engine: Engine, postgres_server,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    dagster_db = make_url(postgres_server.create_database("rp_dagster"))
    monkeypatch.setenv("DAGSTER_PG_HOST", dagster_db.host or "127.0.0.1")
    monkeypatch.setenv("DAGSTER_PG_PORT", str(dagster_db.port or 5432))
    monkeypatch.setenv("DAGSTER_PG_USER", dagster_db.username or "postgres")
    monkeypatch.setenv("DAGSTER_PG_PASSWORD", dagster_db.password or "")
    monkeypatch.setenv("DAGSTER_PG_DB", dagster_db.database or "")
    add_client(pg_engine, "acme", "Acme", "America/New_York")
    with _instance("dagster.postgres.yaml", tmp_path / "home") as instance:
        assert "postgres" in type(instance.run_storage).__name__.lower()
        observation = _observe(_engine_url(pg_engine), instance)
        assert observation.metadata["clients"].value == 1
        runs = instance.get_runs()
        assert len(runs) == 1 and runs[0].job_name == observe_call_events_job.name
        assert instance.get_concurrency_config().run_queue_config.max_concurrent_runs == 4


def test_failed_runs_are_retried_except_where_jobs_retry_themselves(tmp_path: Path) -> None:
    with _instance("dagster.yaml", tmp_path / "home") as instance:
        assert instance.run_retries_enabled and instance.run_retries_max_retries == 2
    for job in ("process_report_file_job", "send_report_files_job"):
        assert defs.resolve_job_def(job).tags["dagster/retry_on_asset_or_op_failure"] == "false"


def test_the_executor_and_the_deployment_are_settings(tmp_path: Path) -> None:
    from report_pipelines.definitions import build_definitions
    from report_pipelines.settings import Settings

    base = Settings(data_dir=tmp_path, database_url=f"sqlite:///{tmp_path / 'a.db'}", store_root=str(tmp_path / "r"))
    local = build_definitions(base)
    assert local.resolve_job_def("extract_reports_job").executor_def.name == "in_process"
    assert local.resources["app"].database_url is None  # local: the environment decides
    multi = build_definitions(replace(base, executor="multiprocess", workers=3))
    assert multi.resolve_job_def("extract_reports_job").executor_def.name == "multiprocess"
    app = build_definitions(replace(base, deployment="production")).resources["app"]
    assert isinstance(app.database_url, dg.EnvVar) and app.database_url.env_var_name == "REPORT_PIPELINES_DATABASE_URL"
    assert isinstance(app.smtp_password, dg.EnvVar) and app.smtp_password.env_var_name == "REPORT_PIPELINES_SMTP_PASSWORD"


def test_production_fails_a_run_loudly_when_a_bound_variable_is_missing(tmp_path: Path,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    from report_pipelines.definitions import build_definitions
    from report_pipelines.settings import Settings

    for name in ("REPORT_PIPELINES_DATABASE_URL", "REPORT_PIPELINES_SMTP_PASSWORD"):
        monkeypatch.delenv(name, raising=False)
    base = Settings(data_dir=tmp_path, database_url=f"sqlite:///{tmp_path / 'a.db'}", store_root=str(tmp_path / "r"),
                    deployment="production")
    job = build_definitions(base).resolve_job_def(observe_call_events_job.name)
    with pytest.raises(Exception, match="REPORT_PIPELINES_DATABASE_URL"):
        job.execute_in_process(instance=dg.DagsterInstance.ephemeral())
