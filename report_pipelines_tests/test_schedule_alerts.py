"""Alert schedules: a condition checked at every occurrence through the same claims and leases as
report files; one incident sends one alert and one "recovered" message, read back over a real SMTP
server; the incident state is stored in the database; the processor sensor's run requests are
executed. On SQLite and PostgreSQL."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from sqlalchemy import Engine

from report_pipelines.adapters.db.bulk import load_call_events
from report_pipelines.adapters.db.schedules import ReportFileRepository
from report_pipelines.app import App
from report_pipelines.defs.schedules.sensors import (
    report_file_processor_sensor,
    report_file_sender_sensor,
    schedule_planner_sensor,
)
from report_pipelines.domain.errors import InvalidInput
from report_pipelines.services.scheduled_reports import (
    add_schedule,
    clean_files,
    due_occurrences,
    edit_schedule,
    get_schedule,
    plan_schedules,
    preview_message,
    process_occurrence,
    send_files,
)
from report_pipelines_tests.dagster_support import execute, persistent_instance, tick
from report_pipelines_tests.extract_support import late_call, seed
from report_pipelines_tests.schedule_support import TO, smtp_mailer, with_mail
from report_pipelines_tests.smtp_support import SmtpServer

UTC = dt.UTC
DAY = dt.datetime(2024, 3, 20, tzinfo=UTC)  # after SMALL's days: only the calls a test adds
CONDITION = "offered>=1 window=1h every=15m grace=30m"


@pytest.fixture
def smtp(tmp_path_factory: pytest.TempPathFactory):
    server = SmtpServer(tmp_path_factory.mktemp("smtp")).start()
    yield server
    server.stop()


def at(hh: int, mm: int) -> dt.datetime:
    return DAY.replace(hour=hh, minute=mm)


def calls_at(seeded, *instants: dt.datetime) -> None:
    ny = seeded.clients["America/New_York"]
    for n, started in enumerate(instants):
        load_call_events(seeded.engine, late_call(ny.id, f"alert-{started:%H%M}-{n}", started, started))


def alert(seeded, condition: str = CONDITION, **options):
    ny = seeded.clients["America/New_York"]
    return add_schedule(seeded.engine, ny.slug, kind="alert", condition=condition, recipients=TO,
                        now=DAY, **options)


def test_one_incident_sends_one_alert_and_one_recovery(engine: Engine, tmp_path: Path, smtp: SmtpServer) -> None:
    seeded = with_mail(seed(engine, tmp_path))
    calls_at(seeded, at(10, 5), at(11, 20))
    row = alert(seeded, message="Call the trunk provider if this lasts.", subject="Support queue is busy")
    assert row.kind == "alert" and row.condition == CONDITION and row.format == "none"
    plan_schedules(engine, at(10, 0))
    assert get_schedule(engine, row.id).next_send_at == at(10, 15)
    states = []
    check = at(10, 15)
    while check <= at(13, 0):
        for occurrence in due_occurrences(engine, check):
            process_occurrence(engine, seeded.settings, occurrence, "run", check)
            assert process_occurrence(engine, seeded.settings, occurrence, "again", check) is None  # exactly once
        send_files(engine, seeded.settings, smtp_mailer(smtp), "sender", now=check)
        states.append((f"{check:%H:%M}", get_schedule(engine, row.id).alert_state))
        check += dt.timedelta(minutes=15)
    # calls at 10:05 and 11:20, a one-hour window: held 10:15-11:00, cleared 11:15, held again 11:30-12:15
    # (the same incident), cleared from 12:30, recovered once the 30-minute grace was over (13:00)
    assert states == [("10:15", "firing"), ("10:30", "firing"), ("10:45", "firing"), ("11:00", "firing"),
                      ("11:15", "clearing"), ("11:30", "firing"), ("11:45", "firing"), ("12:00", "firing"),
                      ("12:15", "firing"), ("12:30", "clearing"), ("12:45", "clearing"), ("13:00", "clear")]
    subjects = [m["Subject"] for _, m in smtp.inbox.messages]
    assert len(subjects) == 2 and subjects[0] == "Support queue is busy" and subjects[1].startswith("Recovered for ")
    first = smtp.inbox.messages[0][1]
    assert first.get_content_type() == "text/plain" and "Call the trunk provider" in first.get_content()
    assert "offered >= 1 over the last 1h: holds, 1 " in first.get_content()
    files = ReportFileRepository(engine).list(row.id)
    assert sorted(f.state for f in files).count("sent") == 2 and len(files) == 12
    assert {f.state for f in files} == {"sent", "skipped"}
    assert all(f.last_error for f in files if f.state == "skipped")  # each check says what it found


def test_a_new_condition_starts_from_a_clear_incident(sqlite_engine: Engine, tmp_path: Path) -> None:
    seeded = seed(sqlite_engine, tmp_path)
    calls_at(seeded, at(10, 5))
    row = alert(seeded)
    plan_schedules(sqlite_engine, at(10, 0))
    for occurrence in due_occurrences(sqlite_engine, at(10, 15)):
        process_occurrence(sqlite_engine, seeded.settings, occurrence, "run", at(10, 15))
    assert get_schedule(sqlite_engine, row.id).alert_state == "firing"
    row = edit_schedule(sqlite_engine, row.id, condition="offered>=5 window=2h", now=at(10, 20))
    assert (row.alert_state, row.next_send_at, row.condition) == (None, None, "offered>=5 window=2h every=15m grace=30m")
    with pytest.raises(InvalidInput) as err:
        edit_schedule(sqlite_engine, row.id, body="table")
    assert err.value.field == "body"
    with pytest.raises(InvalidInput) as err:
        edit_schedule(sqlite_engine, row.id, condition="offered>>1")
    assert err.value.field == "condition"


def test_alerts_outside_business_hours_change_nothing_and_preview_says_so(sqlite_engine: Engine,
                                                                           tmp_path: Path) -> None:
    seeded = seed(sqlite_engine, tmp_path)
    row = alert(seeded, condition="offered=0 window=1h hours=08:00-18:00 days=mon-fri")
    app = App(seeded.settings, clock=lambda: at(9, 0))  # 05:00 in New York
    preview = preview_message(app, row.id, tmp_path / "alert.eml")
    assert preview.path is None and "outside business hours" in preview.note
    app = App(seeded.settings, clock=lambda: at(15, 0))  # 11:00 in New York, no call: a broken trunk?
    preview = preview_message(app, row.id, tmp_path / "alert.eml")
    assert preview.path == tmp_path / "alert.eml" and b"Subject: Alert for " in preview.path.read_bytes()
    assert get_schedule(sqlite_engine, row.id).alert_state is None and ReportFileRepository(sqlite_engine).list() == []


def test_the_processor_sensor_drives_alerts(engine: Engine, tmp_path: Path) -> None:
    seeded = seed(engine, tmp_path)
    calls_at(seeded, at(10, 5))
    row = alert(seeded)
    instance = persistent_instance(tmp_path / "dagster")
    tick(schedule_planner_sensor, instance, seeded.settings, at(10, 0))
    data = tick(report_file_processor_sensor, instance, seeded.settings, at(10, 16))
    requests = list(data.run_requests or [])
    assert [r.run_key for r in requests] == [f"report-file:{row.id}:{at(10, 15).isoformat()}"]
    for request in requests:
        assert execute(request, "process_report_file_job", instance, seeded.settings, at(10, 16)).success
    for request in tick(report_file_sender_sensor, instance, seeded.settings, at(10, 16)).run_requests or []:
        assert execute(request, "send_report_files_job", instance, seeded.settings, at(10, 16)).success
    [file] = ReportFileRepository(engine).list(row.id)
    assert file.state == "sent" and get_schedule(engine, row.id).alert_state == "firing"
    outbox = list(Path(seeded.settings.outbox_dir).glob("*.eml"))
    assert len(outbox) == 1 and b"Subject: Alert for " in outbox[0].read_bytes()
    # the next tick asks for the next check only
    data = tick(report_file_processor_sensor, instance, seeded.settings, at(10, 31))
    assert [r.run_key for r in data.run_requests or []] == [f"report-file:{row.id}:{at(10, 30).isoformat()}"]


def test_the_cleaner_deletes_skipped_checks_past_the_retention(sqlite_engine: Engine, tmp_path: Path) -> None:
    seeded = seed(sqlite_engine, tmp_path)
    row = alert(seeded)
    plan_schedules(sqlite_engine, at(10, 0))
    for check in (at(10, 15), at(10, 30)):
        for occurrence in due_occurrences(sqlite_engine, check):
            process_occurrence(sqlite_engine, seeded.settings, occurrence, "run", check)
    assert [f.state for f in ReportFileRepository(sqlite_engine).list(row.id)] == ["skipped", "skipped"]
    kept = clean_files(sqlite_engine, seeded.settings, at(11, 0))
    assert kept.skipped_deleted == 0
    later = at(10, 20) + dt.timedelta(days=seeded.settings.retention_days)
    assert clean_files(sqlite_engine, seeded.settings, later).skipped_deleted == 1  # the 10:15 check only
    assert len(ReportFileRepository(sqlite_engine).list(row.id)) == 1


def test_racing_runs_apply_a_check_once(pg_engine: Engine, tmp_path: Path, smtp: SmtpServer) -> None:
    import threading

    seeded = with_mail(seed(pg_engine, tmp_path))
    calls_at(seeded, at(10, 5))
    row = alert(seeded)
    plan_schedules(pg_engine, at(10, 0))
    [occurrence] = due_occurrences(pg_engine, at(10, 15))
    results = []
    runs = [threading.Thread(target=lambda n=n: results.append(
        process_occurrence(pg_engine, seeded.settings, occurrence, f"run-{n}", at(10, 15)))) for n in range(4)]
    for t in runs:
        t.start()
    for t in runs:
        t.join()
    assert sum(r is not None for r in results) == 1
    send_files(pg_engine, seeded.settings, smtp_mailer(smtp), "sender", now=at(10, 16))
    assert len(smtp.inbox) == 1 and get_schedule(pg_engine, row.id).alert_state == "firing"
    assert get_schedule(pg_engine, row.id).next_send_at == at(10, 30)
