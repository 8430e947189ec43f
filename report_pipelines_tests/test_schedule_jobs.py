"""Scheduled reports end to end through Dagster: seed -> schedule -> sensors -> runs -> e-mail -> cleaned."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import dagster as dg
import pytest
from sqlalchemy import Engine, update

from report_pipelines.adapters.db.models import ReportFile, ReportSchedule
from report_pipelines.adapters.db.schedules import ReportFileRepository, ScheduleRepository
from report_pipelines.definitions import defs
from report_pipelines.defs.resources import AppResource
from report_pipelines.defs.schedules.sensors import (
    clean_report_files_schedule,
    report_file_processor_sensor,
    report_file_sender_sensor,
    schedule_planner_sensor,
)
from report_pipelines.services.scheduled_reports import add_schedule
from report_pipelines_tests.extract_support import UTC, seed
from report_pipelines_tests.smtp_support import PASSWORD, USER, SmtpServer

QUIET = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}


@pytest.fixture
def smtp(tmp_path_factory: pytest.TempPathFactory):
    server = SmtpServer(tmp_path_factory.mktemp("smtp")).start()
    yield server
    server.stop()


def _resources(url: str, smtp: SmtpServer) -> dict:
    return {"app": AppResource(database_url=url, smtp_host="127.0.0.1", smtp_port=str(smtp.port))}


def _run(job: str, resources: dict, instance: dg.DagsterInstance, run_config: dict | None = None,
         ) -> dg.ExecuteInProcessResult:
    config = dict(QUIET, **(run_config or {}))
    return defs.resolve_job_def(job).execute_in_process(instance=instance, run_config=config, resources=resources,
                                                        raise_on_error=False)


@pytest.fixture
def env(tmp_path: Path, smtp: SmtpServer, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("REPORT_PIPELINES_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("REPORT_PIPELINES_SMTP_USER", USER)
    monkeypatch.setenv("REPORT_PIPELINES_SMTP_PASSWORD", PASSWORD)
    monkeypatch.setenv("REPORT_PIPELINES_SMTP_CAFILE", str(smtp.cert))
    monkeypatch.setenv("REPORT_PIPELINES_MAX_ATTEMPTS", "1")
    return tmp_path


def test_a_schedule_goes_from_plan_to_inbox_to_cleaned(engine: Engine, env: Path, smtp: SmtpServer,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    seeded = seed(engine, env)
    resources = _resources(seeded.settings.database_url, smtp)
    instance = dg.DagsterInstance.ephemeral()
    ny = seeded.clients["America/New_York"]
    row = add_schedule(engine, ny.slug, report="hourly_volume", period="last_n_days", period_days=3,
                       send_time="06:30", recipients=["ops@example.com"], fmt="xlsx")

    planner = schedule_planner_sensor(dg.build_sensor_context(instance=instance, resources=resources))
    assert "planned 1" in planner.skip_message
    planned = ScheduleRepository(engine).get(row.id).next_send_at
    assert planned is not None and planned > dt.datetime.now(UTC)

    # Time passes: the occurrence is due.
    due = dt.datetime.now(UTC).replace(microsecond=0) - dt.timedelta(minutes=1)
    with engine.begin() as conn:
        conn.execute(update(ReportSchedule).where(ReportSchedule.id == row.id).values(next_send_at=due))
    requests = report_file_processor_sensor(dg.build_sensor_context(instance=instance, resources=resources))
    [request] = requests
    assert request.run_key == f"report-file:{row.id}:{due.isoformat()}"
    built = _run("process_report_file_job", resources, instance, request.run_config)
    assert built.success
    again = _run("process_report_file_job", resources, instance, request.run_config)  # a duplicate run: no-op
    assert again.success
    [file] = ReportFileRepository(engine).list(row.id)
    assert file.state == "ready" and file.path.endswith(".xlsx") and Path(file.path).is_file()
    assert ScheduleRepository(engine).get(row.id).next_send_at > due

    send_request = report_file_sender_sensor(dg.build_sensor_context(instance=instance, resources=resources))
    assert send_request.run_key.startswith("send:")
    assert _run("send_report_files_job", resources, instance).success
    [(recipients, message)] = smtp.inbox.messages
    assert recipients == ["ops@example.com"]
    [attachment] = list(message.iter_attachments())
    assert attachment.get_filename().endswith(".xlsx")
    assert attachment.get_payload(decode=True) == Path(file.path).read_bytes()
    assert isinstance(report_file_sender_sensor(dg.build_sensor_context(instance=instance, resources=resources)),
                      dg.SkipReason)

    monkeypatch.setenv("REPORT_PIPELINES_RETENTION_DAYS", "0")
    cleaned = _run("clean_report_files_job", resources, instance)
    assert cleaned.success
    assert ReportFileRepository(engine).list(row.id) == [] and not Path(file.path).exists()


def test_a_file_that_cannot_be_sent_fails_the_send_run(sqlite_engine: Engine, env: Path, smtp: SmtpServer) -> None:
    seeded = seed(sqlite_engine, env)
    resources = _resources(seeded.settings.database_url, smtp)
    instance = dg.DagsterInstance.ephemeral()
    ny = seeded.clients["America/New_York"]
    row = add_schedule(sqlite_engine, ny.slug, report="call_detail", recipients=["gone@example.com"])
    schedule_planner_sensor(dg.build_sensor_context(instance=instance, resources=resources))
    with sqlite_engine.begin() as conn:
        conn.execute(update(ReportSchedule).where(ReportSchedule.id == row.id).values(
            next_send_at=dt.datetime.now(UTC).replace(microsecond=0) - dt.timedelta(minutes=1)))
    [request] = report_file_processor_sensor(dg.build_sensor_context(instance=instance, resources=resources))
    assert _run("process_report_file_job", resources, instance, request.run_config).success
    smtp.behaviour.refuse.add("gone@example.com")
    result = _run("send_report_files_job", resources, instance)
    assert not result.success
    [failure] = [e for e in result.all_events if e.is_step_failure]
    assert "could not be sent" in failure.step_failure_data.user_failure_data.description
    [file] = ReportFileRepository(sqlite_engine).list(row.id)
    assert file.state == "failed" and "550" in file.last_error


def _make_due(engine: Engine, schedule_id: int) -> dt.datetime:
    due = dt.datetime.now(UTC).replace(microsecond=0) - dt.timedelta(minutes=1)
    with engine.begin() as conn:
        conn.execute(update(ReportSchedule).where(ReportSchedule.id == schedule_id).values(next_send_at=due))
    return due


def test_a_build_that_keeps_failing_is_a_failed_run_per_attempt_then_the_file_fails(
        sqlite_engine: Engine, env: Path, smtp: SmtpServer, monkeypatch: pytest.MonkeyPatch) -> None:
    import report_pipelines.services.scheduled_reports as scheduled

    monkeypatch.setenv("REPORT_PIPELINES_MAX_BUILD_ATTEMPTS", "2")
    seeded = seed(sqlite_engine, env)
    resources = _resources(seeded.settings.database_url, smtp)
    instance = dg.DagsterInstance.ephemeral()
    row = add_schedule(sqlite_engine, seeded.clients["America/New_York"].slug, report="call_detail",
                       recipients=["ops@example.com"])
    schedule_planner_sensor(dg.build_sensor_context(instance=instance, resources=resources))
    due = _make_due(sqlite_engine, row.id)
    builds: list[int] = []

    def broken(*args, **kwargs):
        builds.append(1)
        raise RuntimeError("report store unreachable")

    monkeypatch.setattr(scheduled, "build_file", broken)
    descriptions, keys = [], []
    for _ in range(4):  # sensor ticks; between them the backoff "passes"
        requests = report_file_processor_sensor(dg.build_sensor_context(instance=instance, resources=resources))
        if isinstance(requests, dg.SkipReason):
            break
        [request] = requests
        keys.append(request.run_key)
        result = _run("process_report_file_job", resources, instance, request.run_config)
        assert not result.success
        assert result.dagster_run.tags["dagster/retry_on_asset_or_op_failure"] == "false"  # no run retry
        [failure] = [e for e in result.all_events if e.is_step_failure]
        descriptions.append(failure.step_failure_data.user_failure_data.description)
        with sqlite_engine.begin() as conn:  # the backoff is over
            conn.execute(update(ReportFile).values(lease_expires_at=dt.datetime.now(UTC) - dt.timedelta(seconds=1)))
    assert len(builds) == 2 and keys == [f"report-file:{row.id}:{due.isoformat()}",
                                         f"report-file:{row.id}:{due.isoformat()}:retry-1"]
    assert all("\n" not in d for d in descriptions)  # one line each
    assert "RuntimeError: report store unreachable" in descriptions[0] and "retried after a backoff" in descriptions[0]
    assert "given up" in descriptions[1] and "schedules resend" in descriptions[1]
    [file] = ReportFileRepository(sqlite_engine).list(row.id)
    assert (file.state, file.build_attempts) == ("failed", 2)
    assert ScheduleRepository(sqlite_engine).get(row.id).next_send_at > due


def test_the_sender_sensor_waits_for_the_retry_window_then_its_run_sends(sqlite_engine: Engine, env: Path,
                                                                         smtp: SmtpServer,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REPORT_PIPELINES_MAX_ATTEMPTS", "5")
    seeded = seed(sqlite_engine, env)
    resources = _resources(seeded.settings.database_url, smtp)
    instance = dg.DagsterInstance.ephemeral()
    row = add_schedule(sqlite_engine, seeded.clients["America/New_York"].slug, report="call_detail",
                       recipients=["ops@example.com", "boss@example.com"])
    schedule_planner_sensor(dg.build_sensor_context(instance=instance, resources=resources))
    _make_due(sqlite_engine, row.id)
    [build] = report_file_processor_sensor(dg.build_sensor_context(instance=instance, resources=resources))
    assert _run("process_report_file_job", resources, instance, build.run_config).success

    smtp.behaviour.busy.add("boss@example.com")  # greylisted: retried later, alone
    send = report_file_sender_sensor(dg.build_sensor_context(instance=instance, resources=resources))
    assert isinstance(send, dg.RunRequest)
    assert _run("send_report_files_job", resources, instance, send.run_config).success  # a retry is no failure
    [file] = ReportFileRepository(sqlite_engine).list(row.id)
    assert file.state == "retry" and file.next_attempt_at > dt.datetime.now(UTC)
    waiting = report_file_sender_sensor(dg.build_sensor_context(instance=instance, resources=resources))
    assert isinstance(waiting, dg.SkipReason)
    assert f"the next retry is due at {file.next_attempt_at:%Y-%m-%d %H:%M:%S} UTC" in waiting.skip_message

    smtp.behaviour.busy.clear()
    with sqlite_engine.begin() as conn:  # its backoff is over
        conn.execute(update(ReportFile).values(next_attempt_at=dt.datetime.now(UTC) - dt.timedelta(seconds=1)))
    retry = report_file_sender_sensor(dg.build_sensor_context(instance=instance, resources=resources))
    assert isinstance(retry, dg.RunRequest) and retry.run_key != send.run_key
    assert _run("send_report_files_job", resources, instance, retry.run_config).success
    assert [r for r, _ in smtp.inbox.messages] == [["ops@example.com"], ["boss@example.com"]]
    assert ReportFileRepository(sqlite_engine).get(file.id).state == "sent"


def test_the_clean_schedule_runs_with_its_ticks_time(sqlite_engine: Engine, env: Path, smtp: SmtpServer) -> None:
    seeded = seed(sqlite_engine, env)
    resources = _resources(seeded.settings.database_url, smtp)
    instance = dg.DagsterInstance.ephemeral()
    row = add_schedule(sqlite_engine, seeded.clients["America/New_York"].slug, report="call_detail",
                       recipients=["ops@example.com"])
    files = ReportFileRepository(sqlite_engine)
    schedule_planner_sensor(dg.build_sensor_context(instance=instance, resources=resources))
    _make_due(sqlite_engine, row.id)
    [build] = report_file_processor_sensor(dg.build_sensor_context(instance=instance, resources=resources))
    assert _run("process_report_file_job", resources, instance, build.run_config).success
    assert _run("send_report_files_job", resources, instance).success
    [file] = files.list(row.id)
    tick = file.sent_at + dt.timedelta(days=7, hours=1)  # the default retention is 7 days

    early = clean_report_files_schedule.evaluate_tick(
        dg.build_schedule_context(instance=instance, scheduled_execution_time=tick - dt.timedelta(hours=2)))
    [too_early] = early.run_requests
    assert _run("clean_report_files_job", resources, instance, too_early.run_config).success
    assert files.get(file.id) is not None and Path(file.path).exists()  # 6 days 23 hours: kept

    data = clean_report_files_schedule.evaluate_tick(dg.build_schedule_context(instance=instance,
                                                                               scheduled_execution_time=tick))
    [request] = data.run_requests
    assert request.run_config == {"ops": {"clean_report_files": {"config": {"now": tick.isoformat()}}}}
    assert _run("clean_report_files_job", resources, instance, request.run_config).success
    assert files.get(file.id) is None and not Path(file.path).exists()
