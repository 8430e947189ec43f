"""Scheduled reports with real parts: planned, built, sent exactly once, retried, cleaned."""

from __future__ import annotations

import datetime as dt
import random
import threading
from dataclasses import replace
from pathlib import Path

import pytest
from sqlalchemy import Engine

from report_pipelines.adapters.db.schedules import ReportFileRepository, ScheduleRepository, SendOutcome
from report_pipelines.adapters.mailer import OutboxMailer, SmtpMailer
from report_pipelines.domain.delivery import DEFERRED
from report_pipelines.domain.errors import InvalidInput, NotFound
from report_pipelines.domain.schedules import next_send_at
from report_pipelines.services.scheduled_reports import (
    add_schedule,
    clean_files,
    due_occurrences,
    edit_schedule,
    message_id_for,
    plan_schedules,
    process_occurrence,
    rule_of,
    send_files,
)
from report_pipelines_tests.extract_support import UTC, seed
from report_pipelines_tests.schedule_support import NOW, TO, build_due, daily, smtp_mailer, with_mail
from report_pipelines_tests.smtp_support import USER, SmtpServer


@pytest.fixture
def smtp(tmp_path_factory: pytest.TempPathFactory):
    server = SmtpServer(tmp_path_factory.mktemp("smtp")).start()
    yield server
    server.stop()

# --- planning ---------------------------------------------------------------------------------------
def test_planner_plans_new_and_edited_schedules_from_their_rule(sqlite_engine: Engine, tmp_path: Path) -> None:
    seeded = seed(sqlite_engine, tmp_path)
    row = daily(seeded, send_time="02:30")  # in the gap on 2024-03-10 in New York
    assert row.next_send_at is None
    assert plan_schedules(sqlite_engine, dt.datetime(2024, 3, 9, 12, tzinfo=UTC)) == 1
    planned = ScheduleRepository(sqlite_engine).get(row.id)
    assert planned.next_send_at == dt.datetime(2024, 3, 10, 7, 0, tzinfo=UTC)  # 03:00 EDT: the gap rule
    edited = edit_schedule(sqlite_engine, row.id, send_time="08:15")
    assert edited.next_send_at is None and edited.revision == planned.revision + 1
    plan_schedules(sqlite_engine, dt.datetime(2024, 3, 9, 12, tzinfo=UTC))
    # 08:15 EST on the 9th is still ahead at 07:00 EST
    assert ScheduleRepository(sqlite_engine).get(row.id).next_send_at == dt.datetime(2024, 3, 9, 13, 15, tzinfo=UTC)
    edit_schedule(sqlite_engine, row.id, recipients=["new@example.com"])  # not the rule: plan kept
    assert ScheduleRepository(sqlite_engine).get(row.id).next_send_at is not None


@pytest.mark.parametrize(
    ("options", "field"),
    [
        ({"timezone": "Mars/Olympus_Mons"}, "timezone"),
        ({"send_time": "24:00"}, "send_time"),
        ({"send_time": "7pm"}, "send_time"),
        ({"frequency": "weekly", "weekdays": ["mon", "funday"]}, "weekdays"),
        ({"frequency": "weekly", "weekdays": [7]}, "weekdays"),
        ({"frequency": "monthly", "month_day": 32}, "month_day"),
        ({"frequency": "hourly"}, "frequency"),
        ({"recipients": []}, "recipients"),
        ({"recipients": ["not-an-address"]}, "recipients"),
        ({"recipients": ["ops@example.com\r\nBcc: spy@evil.example"]}, "recipients"),
        ({"subject": "Report\r\nBcc: spy@evil.example"}, "subject"),
        ({"report": "salaries"}, "report"),
        ({"fmt": "docx"}, "format"),
        ({"period": "last_n_days", "period_days": 0}, "period_days"),
    ],
)
def test_bad_schedules_are_refused_naming_the_field(sqlite_engine: Engine, tmp_path: Path, options: dict,
                                                    field: str) -> None:
    seeded = seed(sqlite_engine, tmp_path)
    with pytest.raises((InvalidInput, NotFound)) as err:
        daily(seeded, **options)
    assert err.value.field == field
    assert ScheduleRepository(sqlite_engine).list() == []


def test_an_unknown_client_is_refused(sqlite_engine: Engine, tmp_path: Path) -> None:
    seed(sqlite_engine, tmp_path)
    with pytest.raises(NotFound) as err:
        add_schedule(sqlite_engine, "nobody", report="call_detail", recipients=TO)
    assert err.value.field == "client"


# --- exactly once ------------------------------------------------------------------------------------
def test_many_ticks_and_workers_make_one_file_and_one_email_per_occurrence(pg_engine: Engine, tmp_path: Path,
                                                                           smtp: SmtpServer) -> None:
    seeded = with_mail(seed(pg_engine, tmp_path))
    rows = [daily(seeded), daily(seeded, report="hourly_volume", fmt="xlsx")]
    plan_schedules(pg_engine, NOW - dt.timedelta(days=1))
    ticks = [due_occurrences(pg_engine, NOW) for _ in range(3)]  # the sensor seeing the same state thrice
    assert all(len(t) == 2 for t in ticks) and len({o.run_key for t in ticks for o in t}) == 2

    errors: list[BaseException] = []

    def worker(n: int, occurrence) -> None:
        try:
            process_occurrence(pg_engine, seeded.settings, occurrence, owner=f"run-{n}", now=NOW)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(n, occ)) for n, tick in enumerate(ticks) for occ in tick]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    files = ReportFileRepository(pg_engine).list()
    assert sorted((f.schedule_id, f.state) for f in files) == sorted((r.id, "ready") for r in rows)
    for row in rows:  # advanced to the following occurrence exactly once
        assert ScheduleRepository(pg_engine).get(row.id).next_send_at == next_send_at(rule_of(row), NOW)

    senders = [threading.Thread(target=send_files, args=(pg_engine, seeded.settings, smtp_mailer(smtp), f"s{n}"),
                                kwargs={"now": NOW}) for n in range(4)]
    for t in senders:
        t.start()
    for t in senders:
        t.join()
    assert len(smtp.inbox) == 2
    assert {f.state for f in ReportFileRepository(pg_engine).list()} == {"sent"}
    received = {m["Message-ID"]: (rcpts, m) for rcpts, m in smtp.inbox.messages}
    for file in ReportFileRepository(pg_engine).list():
        rcpts, message = received[message_id_for(file.id)]
        assert sorted(rcpts) == sorted(TO)
        [attachment] = list(message.iter_attachments())
        assert attachment.get_payload(decode=True) == Path(file.path).read_bytes()


def test_one_smtp_connection_carries_a_whole_batch(sqlite_engine: Engine, tmp_path: Path, smtp: SmtpServer) -> None:
    seeded = with_mail(seed(sqlite_engine, tmp_path))
    for report in ("call_detail", "hourly_volume", "agent_performance"):
        daily(seeded, report=report)
    built = build_due(seeded)
    summary = send_files(sqlite_engine, seeded.settings, smtp_mailer(smtp), "s", now=NOW)
    assert sorted(summary.sent) == sorted(f.id for f in built) and len(smtp.inbox) == 3
    assert len(smtp.inbox.sessions) == 1  # STARTTLS and login once, not once per message


def test_a_sender_killed_after_claiming_is_taken_over_after_its_lease(engine: Engine, tmp_path: Path,
                                                                      smtp: SmtpServer) -> None:
    seeded = with_mail(seed(engine, tmp_path))
    daily(seeded)
    [file] = build_due(seeded)
    files = ReportFileRepository(engine)
    [crashed] = files.claim_sendable("crashed-worker", NOW, dt.timedelta(minutes=10), limit=10)
    assert crashed.id == file.id and crashed.state == "sending"
    assert send_files(engine, seeded.settings, smtp_mailer(smtp), "other", now=NOW).sent == []  # lease still held
    later = NOW + dt.timedelta(minutes=11)
    assert send_files(engine, seeded.settings, smtp_mailer(smtp), "other", now=later).sent == [file.id]
    assert send_files(engine, seeded.settings, smtp_mailer(smtp), "third", now=later).sent == []
    assert len(smtp.inbox) == 1
    sent = files.get(file.id)
    assert sent.state == "sent" and sent.attempts == 2 and sent.sent_at is not None
    # The crashed worker cannot record anything any more (its attempt is kept as "lease_lost").
    late = SendOutcome(file.id, 1, "retry", {a: (DEFERRED, "451 late") for a in TO}, NOW, "late", later)
    assert files.record_sends("crashed-worker", [late], later) == set()
    assert files.get(file.id).state == "sent"
    assert [(a.number, a.owner, a.outcome) for a in files.attempts_of(file.id) if a.kind == "send"] == [
        (2, "other", "sent"), (1, "crashed-worker", "lease_lost")]


# --- a real SMTP server that misbehaves ---------------------------------------------------------------
def test_server_down_then_slow_then_refusing_a_recipient(sqlite_engine: Engine, tmp_path: Path,
                                                         smtp: SmtpServer) -> None:
    seeded = with_mail(seed(sqlite_engine, tmp_path), max_attempts=5)
    daily(seeded)
    [file] = build_due(seeded)
    files = ReportFileRepository(sqlite_engine)
    rng = random.Random(7)

    smtp.stop()  # down
    first = send_files(sqlite_engine, seeded.settings, smtp_mailer(smtp), "s", now=NOW, rng=rng)
    assert [i for i, _ in first.retried] == [file.id]
    waiting = files.get(file.id)
    assert waiting.state == "retry" and waiting.attempts == 1
    assert NOW + dt.timedelta(seconds=30) <= waiting.next_attempt_at <= NOW + dt.timedelta(seconds=60)
    assert send_files(sqlite_engine, seeded.settings, smtp_mailer(smtp), "s", now=NOW, rng=rng).retried == []  # not yet

    smtp.start()
    smtp.behaviour.delay_s = 2.0  # slow: longer than the client waits
    second = send_files(sqlite_engine, seeded.settings, smtp_mailer(smtp, timeout_s=0.5), "s",
                        now=waiting.next_attempt_at, rng=rng)
    assert [i for i, _ in second.retried] == [file.id]
    again = files.get(file.id)
    assert again.attempts == 2 and again.next_attempt_at - waiting.next_attempt_at >= dt.timedelta(seconds=60)

    smtp.behaviour.delay_s = 0.0
    smtp.behaviour.refuse.add("boss@example.com")
    third = send_files(sqlite_engine, seeded.settings, smtp_mailer(smtp), "s", now=again.next_attempt_at, rng=rng)
    assert third.sent == [file.id]
    done = files.get(file.id)
    assert done.state == "sent" and "boss@example.com" in (done.last_error or "")
    [(recipients, message)] = [(r, m) for r, m in smtp.inbox.messages if m["Message-ID"] == message_id_for(file.id)]
    assert recipients == ["ops@example.com"]


def test_attempts_are_bounded_then_the_file_fails(sqlite_engine: Engine, tmp_path: Path, smtp: SmtpServer) -> None:
    seeded = with_mail(seed(sqlite_engine, tmp_path), max_attempts=3)
    daily(seeded)
    [file] = build_due(seeded)
    smtp.stop()
    now, outcomes = NOW, []
    for _ in range(3):
        summary = send_files(sqlite_engine, seeded.settings, smtp_mailer(smtp), "s", now=now)
        outcomes.append("retried" if summary.retried else "failed" if summary.failed else "none")
        now = (ReportFileRepository(sqlite_engine).get(file.id).next_attempt_at or now) + dt.timedelta(seconds=1)
    assert outcomes == ["retried", "retried", "failed"]
    failed = ReportFileRepository(sqlite_engine).get(file.id)
    assert failed.state == "failed" and failed.attempts == 3 and "gave up after 3 attempts" in failed.last_error
    assert send_files(sqlite_engine, seeded.settings, smtp_mailer(smtp), "s", now=now + dt.timedelta(days=1)).failed == []


def test_every_recipient_refused_is_a_permanent_failure(sqlite_engine: Engine, tmp_path: Path, smtp: SmtpServer) -> None:
    seeded = with_mail(seed(sqlite_engine, tmp_path))
    daily(seeded)
    [file] = build_due(seeded)
    smtp.behaviour.refuse.update(TO)
    summary = send_files(sqlite_engine, seeded.settings, smtp_mailer(smtp), "s", now=NOW)
    assert [i for i, _ in summary.failed] == [file.id]
    assert ReportFileRepository(sqlite_engine).get(file.id).state == "failed"


def test_a_wrong_password_is_a_permanent_failure(sqlite_engine: Engine, tmp_path: Path, smtp: SmtpServer) -> None:
    seeded = with_mail(seed(sqlite_engine, tmp_path))
    daily(seeded)
    build_due(seeded)
    mailer = SmtpMailer("127.0.0.1", smtp.port, username=USER, password="wrong", cafile=str(smtp.cert), timeout_s=5)
    summary = send_files(sqlite_engine, seeded.settings, mailer, "s", now=NOW)
    assert len(summary.failed) == 1 and "login" in summary.failed[0][1]


def test_large_attachments_are_zipped_or_explained(sqlite_engine: Engine, tmp_path: Path) -> None:
    seeded = with_mail(seed(sqlite_engine, tmp_path), max_attachment_bytes=2_000)
    daily(seeded, report="call_detail")  # a few hundred calls: tens of kB of CSV, compressible
    [file] = build_due(seeded)
    outbox = OutboxMailer(tmp_path / "outbox")
    size = Path(file.path).stat().st_size
    assert size > 2_000
    seeded.settings = replace(seeded.settings, mail=replace(seeded.settings.mail, max_attachment_bytes=size))
    send_files(sqlite_engine, seeded.settings, outbox, "s", now=NOW)
    import email
    import email.policy

    [eml] = list((tmp_path / "outbox").glob("*.eml"))
    message = email.message_from_bytes(eml.read_bytes(), policy=email.policy.default)
    [attachment] = list(message.iter_attachments())
    assert attachment.get_filename().endswith(".csv.zip")
    assert "zipped" in message.get_body(("plain",)).get_content()


def test_an_attachment_too_large_even_zipped_is_explained_not_sent_empty(sqlite_engine: Engine, tmp_path: Path) -> None:
    seeded = with_mail(seed(sqlite_engine, tmp_path), max_attachment_bytes=200)
    daily(seeded, report="call_detail")
    [file] = build_due(seeded)
    assert send_files(sqlite_engine, seeded.settings, OutboxMailer(tmp_path / "outbox"), "s", now=NOW).sent == [file.id]
    import email
    import email.policy

    [eml] = list((tmp_path / "outbox").glob("*.eml"))
    message = email.message_from_bytes(eml.read_bytes(), policy=email.policy.default)
    assert list(message.iter_attachments()) == []
    body = message.get_body(("plain",)).get_content()
    assert "too large to attach" in body and f"report file {file.id}" in body


def test_a_failed_build_is_retried_after_a_backoff_under_a_new_run_key(sqlite_engine: Engine, tmp_path: Path,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    import report_pipelines.services.scheduled_reports as scheduled

    seeded = seed(sqlite_engine, tmp_path)
    row = daily(seeded)
    plan_schedules(sqlite_engine, NOW - dt.timedelta(days=1))
    [occurrence] = due_occurrences(sqlite_engine, NOW)
    real_build = scheduled.build_file

    def broken(*args, **kwargs):
        raise RuntimeError("report store unreachable")

    monkeypatch.setattr(scheduled, "build_file", broken)
    with pytest.raises(RuntimeError):
        process_occurrence(sqlite_engine, seeded.settings, occurrence, "run-1", NOW)
    [building] = ReportFileRepository(sqlite_engine).list(row.id)
    assert building.state == "building" and "unreachable" in building.last_error
    assert ScheduleRepository(sqlite_engine).get(row.id).next_send_at == occurrence.due  # not advanced
    assert due_occurrences(sqlite_engine, NOW + dt.timedelta(seconds=20)) == []  # backing off
    [retry] = due_occurrences(sqlite_engine, NOW + dt.timedelta(minutes=2))
    assert retry.attempt == 1 and retry.run_key == f"report-file:{row.id}:{occurrence.send.isoformat()}:retry-1"

    monkeypatch.setattr(scheduled, "build_file", real_build)
    built = process_occurrence(sqlite_engine, seeded.settings, retry, "run-2", NOW + dt.timedelta(minutes=2))
    assert built.state == "ready" and built.attempts == 0 and built.last_error is None
    assert ScheduleRepository(sqlite_engine).get(row.id).next_send_at == occurrence.following


# --- missed occurrences ---------------------------------------------------------------------------------
def test_after_downtime_only_the_latest_missed_occurrence_is_sent(sqlite_engine: Engine, tmp_path: Path) -> None:
    seeded = seed(sqlite_engine, tmp_path)
    row = daily(seeded)
    plan_schedules(sqlite_engine, dt.datetime(2024, 3, 8, 13, tzinfo=UTC))  # next: 2024-03-09 07:00 EST
    [occurrence] = due_occurrences(sqlite_engine, NOW)  # the daemon wakes up three days later
    assert occurrence.send == dt.datetime(2024, 3, 12, 11, 0, tzinfo=UTC)  # 07:00 EDT
    assert occurrence.skipped == (dt.datetime(2024, 3, 9, 12, 0, tzinfo=UTC), dt.datetime(2024, 3, 10, 11, 0, tzinfo=UTC),
                                  dt.datetime(2024, 3, 11, 11, 0, tzinfo=UTC))
    process_occurrence(sqlite_engine, seeded.settings, occurrence, "run", NOW)
    states = sorted((f.occurrence, f.state) for f in ReportFileRepository(sqlite_engine).list(row.id))
    assert [s for _, s in states] == ["skipped", "skipped", "skipped", "ready"]
    assert ScheduleRepository(sqlite_engine).get(row.id).next_send_at == dt.datetime(2024, 3, 13, 11, 0, tzinfo=UTC)
    assert due_occurrences(sqlite_engine, NOW) == []


# --- cleaning -------------------------------------------------------------------------------------------
def test_cleaner_deletes_only_sent_files_past_retention(sqlite_engine: Engine, tmp_path: Path) -> None:
    seeded = seed(sqlite_engine, tmp_path)
    daily(seeded)
    daily(seeded, report="hourly_volume")
    daily(seeded, report="agent_performance")
    sent_file, unsent_file, outside_file = build_due(seeded)
    files = ReportFileRepository(sqlite_engine)
    outbox = OutboxMailer(tmp_path / "outbox")
    send_files(sqlite_engine, seeded.settings, outbox, "s", now=NOW, file_ids=[sent_file.id, outside_file.id])
    # A row whose path points outside the files folder (tampered with): never deleted.
    from sqlalchemy import update

    from report_pipelines.adapters.db.models import ReportFile
    victim = tmp_path / "precious.txt"
    victim.write_text("keep me")
    with sqlite_engine.begin() as conn:
        conn.execute(update(ReportFile).where(ReportFile.id == outside_file.id).values(path=str(victim)))
    Path(sent_file.path).unlink()  # already gone from disk: logged, row deleted

    later = NOW + dt.timedelta(days=seeded.settings.retention_days, hours=1)
    summary = clean_files(sqlite_engine, seeded.settings, later)
    assert summary.deleted == [sent_file.id] and summary.missing_on_disk == [sent_file.id]
    assert summary.refused_paths == [(outside_file.id, str(victim))]
    assert victim.read_text() == "keep me"
    assert files.get(sent_file.id) is None
    assert files.get(unsent_file.id).state == "ready" and Path(unsent_file.path).exists()
    assert clean_files(sqlite_engine, seeded.settings, NOW).deleted == []  # nothing is old enough yet
