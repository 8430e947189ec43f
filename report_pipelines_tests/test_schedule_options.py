"""Per-schedule options of scheduled report e-mails, read back over a real SMTP server (aiosmtpd):
the body (summary / table / none), the no-calls rule (send / skip / notice), the subscriber's own
paragraph, Reply-To; the usage log of scheduled builds; and ``preview`` (writes, sends and records
nothing). On SQLite and PostgreSQL."""

from __future__ import annotations

import datetime as dt
import email
import email.policy
import re
from pathlib import Path

import pytest
from sqlalchemy import Engine, func, select

from report_pipelines.adapters.db.models import (
    ReportFile,
    ReportFileAttempt,
    ReportFileRecipient,
    ReportSchedule,
)
from report_pipelines.adapters.db.models import (
    ReportRequestRow as ReportRequest,
)
from report_pipelines.adapters.db.schedules import ReportFileRepository
from report_pipelines.app import App
from report_pipelines.domain.errors import InvalidInput
from report_pipelines.services.reading import read_report_arrow
from report_pipelines.services.scheduled_reports import (
    edit_schedule,
    get_schedule,
    message_id_for,
    preview_message,
    send_files,
)
from report_pipelines_tests.extract_support import seed
from report_pipelines_tests.schedule_support import NOW, TO, build_due, daily, smtp_mailer, with_mail
from report_pipelines_tests.smtp_support import SmtpServer

#: A week after SMALL's last day: "yesterday" (2024-03-18) had no calls.
QUIET = dt.datetime(2024, 3, 19, 13, 0, tzinfo=dt.UTC)


@pytest.fixture
def smtp(tmp_path_factory: pytest.TempPathFactory):
    server = SmtpServer(tmp_path_factory.mktemp("smtp")).start()
    yield server
    server.stop()


def sent_message(seeded, smtp: SmtpServer, file_id: int, now: dt.datetime = NOW) -> email.message.EmailMessage:
    summary = send_files(seeded.engine, seeded.settings, smtp_mailer(smtp), "sender", now=now)
    assert summary.sent == [file_id], summary
    [message] = [m for _, m in smtp.inbox.messages if m["Message-ID"] == message_id_for(file_id)]
    assert message.defects == [] and all(part.defects == [] for part in message.walk())
    return message


def test_a_summary_body_is_text_html_and_charts_with_the_file_attached(engine: Engine, tmp_path: Path,
                                                                      smtp: SmtpServer) -> None:
    seeded = with_mail(seed(engine, tmp_path))
    row = daily(seeded, fmt="xlsx", message="Hello team,\n<b>targets</b> & goals for March.",
                reply_to="Manager@Example.com")
    [file] = build_due(seeded)
    message = sent_message(seeded, smtp, file.id)

    assert message.get_content_type() == "multipart/mixed"
    assert message["Reply-To"] == "Manager@example.com"
    alternative = message.get_payload()[0]
    assert alternative.get_content_type() == "multipart/alternative"
    text = message.get_body(("plain",)).get_content()
    html = message.get_body(("html",)).get_content()
    assert text.startswith("Queue performance") or "Hello team," in text
    assert "Hello team,<br>&lt;b&gt;targets&lt;/b&gt; &amp; goals for March." in html  # escaped, never markup
    assert "<b>targets</b>" not in html
    # every cid: reference resolves to an inline PNG part of the related HTML
    related = alternative.get_payload()[1]
    assert related.get_content_type() == "multipart/related"
    images = {part["Content-ID"].strip("<>"): part for part in related.iter_parts() if part.get_content_maintype() == "image"}
    referenced = set(re.findall(r'src="cid:([^"]+)"', html))
    assert referenced and referenced == set(images)
    assert all(part.get_payload(decode=True).startswith(b"\x89PNG") for part in images.values())
    # the KPI shown is the period's figure
    ny = seeded.clients["America/New_York"]
    offered = sum(read_report_arrow("daily_summary", ny.id, file.period_start, file.period_end, app=seeded.app,
                                    now=NOW)["offered"].to_pylist())
    assert f"{offered:,}" in text
    [attachment] = list(message.iter_attachments())
    assert attachment.get_filename().endswith(".xlsx")
    assert attachment.get_payload(decode=True) == Path(file.path).read_bytes()
    # the scheduled build is in the usage log
    with engine.connect() as conn:
        logged = conn.execute(select(ReportRequest.channel, ReportRequest.status, ReportRequest.report,
                                     ReportRequest.rows).where(ReportRequest.channel == "schedule")).all()
    assert [(c, s, r) for c, s, r, _ in logged] == [("schedule", "ok", row.report)]


def test_a_table_body_has_no_chart_and_a_none_body_is_plain_text(engine: Engine, tmp_path: Path,
                                                                 smtp: SmtpServer) -> None:
    seeded = with_mail(seed(engine, tmp_path))
    daily(seeded, body="table")
    daily(seeded, body="none", report="hourly_volume", message="See the attached file.")
    files = {get_schedule(engine, f.schedule_id).body: f for f in build_due(seeded)}
    send_files(seeded.engine, seeded.settings, smtp_mailer(smtp), "sender", now=NOW)
    received = {m["Message-ID"]: m for _, m in smtp.inbox.messages}

    table = received[message_id_for(files["table"].id)]
    assert table.get_body(("html",)) is not None
    assert not [p for p in table.walk() if p.get_content_maintype() == "image"]
    assert "<table" in table.get_body(("html",)).get_content()

    plain = received[message_id_for(files["none"].id)]
    assert [p.get_content_type() for p in plain.walk()] == ["multipart/mixed", "text/plain", "text/csv"]
    assert "See the attached file." in plain.get_body(("plain",)).get_content()
    assert plain["Reply-To"] is None


def test_no_calls_skip_is_recorded_once_and_never_sent(engine: Engine, tmp_path: Path, smtp: SmtpServer) -> None:
    seeded = with_mail(seed(engine, tmp_path))
    row = daily(seeded, no_calls="skip")
    [file] = build_due(seeded, now=QUIET)
    assert file.state == "skipped" and "no calls" in file.last_error and file.path is None
    assert get_schedule(engine, row.id).next_send_at > QUIET  # the schedule moved on
    assert build_due(seeded, now=QUIET) == []  # never tried again
    assert send_files(seeded.engine, seeded.settings, smtp_mailer(smtp), "sender", now=QUIET).sent == []
    assert len(smtp.inbox) == 0
    assert [f.state for f in ReportFileRepository(engine).list(row.id)] == ["skipped"]


def test_no_calls_notice_is_one_line_without_the_file(engine: Engine, tmp_path: Path, smtp: SmtpServer) -> None:
    seeded = with_mail(seed(engine, tmp_path))
    daily(seeded, no_calls="notice")
    [file] = build_due(seeded, now=QUIET)
    message = sent_message(seeded, smtp, file.id, now=QUIET)
    assert list(message.iter_attachments()) == []
    assert [p.get_content_type() for p in message.walk()] == ["text/plain"]
    assert message.get_content().startswith("No calls for ")
    assert "X-Report-Pipelines" not in message.as_string()


def test_a_period_with_calls_is_sent_under_no_calls_skip(engine: Engine, tmp_path: Path, smtp: SmtpServer) -> None:
    seeded = with_mail(seed(engine, tmp_path))
    daily(seeded, no_calls="skip")
    [file] = build_due(seeded)
    assert file.state == "ready"


@pytest.mark.parametrize(("options", "field"), [
    ({"message": "hello\r\nBcc: spy@evil.example"}, "message"),
    ({"message": "x" * 1001}, "message"),
    ({"message": "   "}, "message"),
    ({"reply_to": "boss@example.com\r\nBcc: spy@evil.example"}, "reply_to"),
    ({"reply_to": "a@example.com, b@example.com"}, "reply_to"),
    ({"reply_to": '"Boss" <boss@example.com>'}, "reply_to"),
    ({"body": "fancy"}, "body"),
    ({"no_calls": "maybe"}, "no_calls"),
    ({"condition": "offered=0"}, "condition"),
])
def test_hostile_or_bad_options_are_refused_naming_the_field(sqlite_engine: Engine, tmp_path: Path, options: dict,
                                                            field: str) -> None:
    seeded = seed(sqlite_engine, tmp_path)
    with pytest.raises(InvalidInput) as err:
        daily(seeded, **options)
    assert err.value.field == field and "\n" not in str(err.value)
    if options == {"message": "   "}:
        return  # in an edit, an empty value removes the message
    row = daily(seeded)
    with pytest.raises(InvalidInput) as err:
        edit_schedule(sqlite_engine, row.id, **options)
    assert err.value.field == field


def test_options_are_edited_and_cleared(sqlite_engine: Engine, tmp_path: Path) -> None:
    seeded = seed(sqlite_engine, tmp_path)
    row = daily(seeded)
    assert (row.body, row.no_calls, row.message, row.reply_to) == ("summary", "send", None, None)
    row = edit_schedule(sqlite_engine, row.id, body="table", no_calls="notice", message="Hi", reply_to="a@example.com")
    assert (row.body, row.no_calls, row.message, row.reply_to) == ("table", "notice", "Hi", "a@example.com")
    row = edit_schedule(sqlite_engine, row.id, message="", reply_to="")
    assert (row.message, row.reply_to) == (None, None)
    assert row.next_send_at is None or row.next_send_at  # options do not re-plan by themselves


def counts(engine: Engine) -> tuple:
    with engine.connect() as conn:
        return tuple(conn.execute(select(func.count()).select_from(t)).scalar_one()
                     for t in (ReportFile, ReportFileRecipient, ReportFileAttempt, ReportRequest)) + \
            tuple(conn.execute(select(ReportSchedule.next_send_at, ReportSchedule.revision,
                                      ReportSchedule.updated_at)).all())


def test_preview_writes_the_next_message_and_changes_nothing(engine: Engine, tmp_path: Path, smtp: SmtpServer) -> None:
    seeded = with_mail(seed(engine, tmp_path))
    row = daily(seeded, message="Preview me", reply_to="boss@example.com")
    app = App(seeded.settings, clock=lambda: NOW)
    before = counts(engine)
    out = tmp_path / "next.eml"
    preview = preview_message(app, row.id, out)
    assert preview.path == out and counts(engine) == before and len(smtp.inbox) == 0
    message = email.message_from_bytes(out.read_bytes(), policy=email.policy.default)
    assert message["Reply-To"] == "boss@example.com" and message["To"] == ", ".join(TO)
    assert message.get_body(("html",)) is not None and "Preview me" in message.get_body(("plain",)).get_content()
    [attachment] = list(message.iter_attachments())
    assert attachment.get_filename().endswith(".csv")
    assert not list((seeded.settings.files_dir).glob("**/*")) or not any(
        p.is_file() for p in seeded.settings.files_dir.glob("**/*"))  # nothing left under the files folder


def test_preview_of_a_skipped_occurrence_says_so(sqlite_engine: Engine, tmp_path: Path) -> None:
    seeded = seed(sqlite_engine, tmp_path)
    row = daily(seeded, no_calls="skip")
    app = App(seeded.settings, clock=lambda: QUIET)
    preview = preview_message(app, row.id, tmp_path / "x.eml")
    assert preview.path is None and "no calls" in preview.note and not (tmp_path / "x.eml").exists()


def test_a_failed_scheduled_build_is_an_error_in_the_usage_log(sqlite_engine: Engine, tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    from report_pipelines.services import scheduled_reports as scheduled

    seeded = seed(sqlite_engine, tmp_path)
    daily(seeded)

    def broken(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(scheduled, "build_file", broken)
    with pytest.raises(OSError):
        build_due(seeded)
    with sqlite_engine.connect() as conn:
        logged = conn.execute(select(ReportRequest.channel, ReportRequest.status, ReportRequest.error)).all()
    assert logged == [("schedule", "error", "OSError: disk full")]
