"""The schedules commands as a user runs them, on demo clients that hold a reports licence: add (and
refusals naming the field), list with the next send in local time and UTC, show, send-now to the
local outbox, pause, resume, delete."""

from __future__ import annotations

import calendar
import datetime as dt
import email
import email.policy
import os
import re
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

CLI = str(Path(sys.executable).with_name("report-pipelines"))
NEW_YORK = "newyork-insurance-02"  # the demo's clients for --clients 2 (same seed, same clients)
SAO_PAULO = "saopaulo-contact-centre-01"
PARALLEL = min(4, os.cpu_count() or 2)  # independent commands at once, as many as there are CPUs
NEXT = re.compile(r"(\d{4}-\d\d-\d\d \d\d:\d\d) (\S+) = (\d{4}-\d\d-\d\d \d\d:\d\d) UTC")


@pytest.fixture
def run(tmp_path: Path):
    base = {**os.environ, "REPORT_PIPELINES_DATA_DIR": str(tmp_path / "data"),
            "REPORT_PIPELINES_OUTBOX": str(tmp_path / "outbox")}
    for name in ("REPORT_PIPELINES_DATABASE_URL", "REPORT_PIPELINES_SMTP_HOST", "REPORT_PIPELINES_FILES"):
        base.pop(name, None)

    def _run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run([CLI, *args], env={**base, **(env or {})}, capture_output=True, text=True, timeout=120)

    return _run


def ok(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def next_send(text: str, zone: str) -> dt.datetime:
    """The local instant a ``next`` line shows, checked against the UTC instant beside it."""
    found = NEXT.search(text)
    assert found, text
    local = dt.datetime.strptime(found[1], "%Y-%m-%d %H:%M").replace(tzinfo=ZoneInfo(zone))
    assert found[2] == local.tzname()
    assert local.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M") == found[3]
    assert local > dt.datetime.now(dt.UTC)
    return local


def test_schedules_through_the_cli(run, tmp_path: Path) -> None:
    ok(run("db", "upgrade"))
    ok(run("demo", "seed", "--clients", "2", "--days", "3", "--largest", "200", "--end", "2024-10-27"))
    weekly = ok(run("schedules", "add", "--client", NEW_YORK, "--report", "call_detail", "--frequency", "weekly",
                    "--weekdays", "mon,fri", "--at", "08:30", "--to", "ops@example.com, Boss@Example.com"))
    assert weekly.startswith("added schedule 1: call_detail (yesterday) weekly on mon,fri at 08:30 America/New_York, "
                             "csv -> ops@example.com, Boss@example.com\n  next send: ")
    monthly = ok(run("schedules", "add", "--client", SAO_PAULO, "--report", "hourly_volume", "--period", "last_month",
                     "--frequency", "monthly", "--month-day", "31", "--timezone", "Europe/Lisbon", "--format", "xlsx",
                     "--subject", "Monthly volume", "--to", "director@example.com"))
    assert monthly.startswith("added schedule 2: hourly_volume (last month) monthly on day 31 at 07:00 Europe/Lisbon, "
                              "xlsx -> director@example.com\n")

    add = ("schedules", "add", "--client", NEW_YORK, "--report", "call_detail")
    to = ("--to", "ops@example.com")
    refusals = {
        (*add, *to, "--timezone", "America/New_Yrok"): "error: timezone: unknown time zone 'America/New_Yrok'",
        (*add, *to, "--at", "25:00"): "error: send_time: '25:00' is not a time HH:MM",
        (*add, *to, "--frequency", "weekly", "--weekdays", "funday"): "error: weekdays: 'funday' is not a weekday",
        (*add, *to, "--frequency", "monthly", "--month-day", "32"): "error: month_day: 32 is not a day of the month",
        (*add, "--to", ""): "error: --to: must not be empty (leave the option out for its default)",
        (*add, "--to", "ops@@example.com"): "error: recipients: 'ops@@example.com' is not a valid e-mail address",
        (*add, "--to", "a@b.com\r\nBcc: x@y.com"): "error: recipients: 'a@b.com\\r\\nBcc: x@y.com': a recipient list "
                                                   "must not contain control or invisible characters",
        (*add, *to, "--subject", "Hi\r\nBcc: x@y.com"): "error: subject: 'Hi\\r\\nBcc: x@y.com': a subject must not",
        ("schedules", "add", "--client", NEW_YORK, "--report", "call_volume", *to): "error: report: unknown report "
                                                                                    "'call_volume'; known: call_detail",
    }
    with ThreadPoolExecutor(PARALLEL) as pool:
        results = list(pool.map(lambda args: run(*args), refusals))
    for (args, expected), result in zip(refusals.items(), results, strict=True):
        assert result.returncode == 2 and result.stdout == "", (args, result.stdout, result.stderr)
        assert result.stderr.startswith(expected) and result.stderr.count("\n") == 1, (args, result.stderr)
        assert "Traceback" not in result.stderr

    listed = ok(run("schedules", "list")).splitlines()
    assert len(listed) == 4  # the refused ones wrote nothing
    assert listed[0].split() == ["1", NEW_YORK, "call_detail", "(yesterday)", "weekly", "on", "mon,fri", "at", "08:30",
                                 "America/New_York,", "csv"]
    first = next_send(listed[1], "America/New_York")
    assert (first.strftime("%H:%M"), first.weekday() in (0, 4)) == ("08:30", True)
    second = next_send(listed[3], "Europe/Lisbon")
    assert (second.strftime("%H:%M"), second.day) == ("07:00", calendar.monthrange(second.year, second.month)[1])

    shown = ok(run("schedules", "show", "1"))
    assert "  to: ops@example.com, Boss@example.com\n  subject: (default)\n" in shown and "  no files yet" in shown
    sent = ok(run("schedules", "send-now", "1"))
    found = re.match(r"file (\d+): sent \(0 rows, (\S+)\.\.(\S+)\) (\S+)\n", sent)
    assert found, sent
    attachment_path = Path(found[4])
    assert attachment_path.is_file() and attachment_path.is_relative_to(tmp_path / "data" / "report_files")
    [eml] = (tmp_path / "outbox").glob("*.eml")
    message = email.message_from_bytes(eml.read_bytes(), policy=email.policy.default)
    assert (message["To"], message["Subject"]) == ("ops@example.com, Boss@example.com",
                                                   f"Call detail for Newyork Insurance 2: {found[2]}")
    [attachment] = list(message.iter_attachments())
    assert attachment.get_filename() == f"{NEW_YORK}_call_detail_{found[2]}_{found[3]}.csv"
    assert attachment.get_payload(decode=True).startswith(b"\xef\xbb\xbfpbx_call_id,direction,")  # UTF-8 with BOM
    assert attachment.get_payload(decode=True) == attachment_path.read_bytes()

    shown = ok(run("schedules", "show", "1"))
    assert re.search(rf"^ +{found[1]} \S+ \S+Z sent +attempts 1 {found[2]}\.\.{found[3]}$", shown, re.M), shown
    assert ok(run("schedules", "pause", "1", "--reason", "client on holiday")) == "paused schedule 1: client on holiday\n"
    assert ok(run("schedules", "list")).splitlines()[1].strip() == "next: paused (client on holiday)"
    resumed = ok(run("schedules", "resume", "1"))
    assert resumed.startswith("resumed schedule 1: ")
    next_send(resumed, "America/New_York")
    assert ok(run("schedules", "delete", "1")) == "deleted schedule 1 (1 files removed)\n"
    assert not attachment_path.exists()
    with ThreadPoolExecutor(2) as pool:
        gone, remaining = pool.map(lambda args: run(*args), [("schedules", "show", "1"), ("schedules", "list")])
    assert (gone.returncode, gone.stderr) == (2, "error: schedule: no schedule with id 1\n")
    assert [line.split()[0] for line in ok(remaining).splitlines()] == ["2", "next:"]

    edited = ok(run("schedules", "edit", "2", "--frequency", "weekly", "--weekdays", "tue", "--at", "06:15"))
    assert edited.startswith("schedule 2: hourly_volume (last month) weekly on tue at 06:15 Europe/Lisbon, xlsx")
    again = next_send(edited, "Europe/Lisbon")
    assert (again.strftime("%H:%M"), again.weekday()) == ("06:15", 1)
    nothing = run("schedules", "edit", "2")
    assert (nothing.returncode, nothing.stderr) == (2, "error: schedule: nothing to change (give at least one option)\n")
    bad = run("schedules", "edit", "2", "--month-day", "0")
    assert bad.returncode == 2 and bad.stderr.startswith("error: month_day: ")


def test_refusals_of_empty_and_non_numeric_options_are_one_line(run) -> None:
    ok(run("db", "upgrade"))
    ok(run("demo", "seed", "--clients", "2", "--days", "2", "--largest", "50", "--end", "2024-10-27"))
    add = ("schedules", "add", "--client", NEW_YORK, "--report", "call_detail", "--to", "ops@example.com")
    ok(run(*add))
    refusals = {
        (*add, "--timezone", ""): "error: --timezone: must not be empty (leave the option out for its default)",
        (*add, "--subject", ""): "error: --subject: must not be empty (leave the option out for its default)",
        (*add, "--subject", "   "): "error: subject: a subject cannot be empty",
        (*add, "--period", "last_n_days", "--days", "seven"): "error: --days: 'seven' is not a whole number\n",
        (*add, "--frequency", "monthly", "--month-day", "3.5"): "error: --month-day: '3.5' is not a whole number\n",
        ("schedules", "edit", "1", "--timezone", ""): "error: --timezone: must not be empty (leave the option out for its default)",
        ("schedules", "edit", "1", "--subject", ""): "error: --subject: must not be empty (leave the option out for its default)",
        ("schedules", "edit", "1", "--days", "x"): "error: --days: 'x' is not a whole number\n",
        ("schedules", "show", "one"): "error: schedule_id: 'one' is not a whole number\n",
        ("schedules", "resend", "1e3"): "error: file_id: '1e3' is not a whole number\n",
        ("schedules", "attempts", "999"): "error: file: no report file with id 999\n",
    }
    with ThreadPoolExecutor(PARALLEL) as pool:
        results = list(pool.map(lambda args: run(*args), refusals))
    for (args, expected), result in zip(refusals.items(), results, strict=True):
        assert (result.returncode, result.stdout) == (2, ""), (args, result.stdout, result.stderr)
        assert result.stderr.startswith(expected) and result.stderr.count("\n") == 1, (args, result.stderr)
    shown = ok(run("schedules", "show", "1"))
    assert "America/New_York" in shown and "subject: (default)" in shown  # the edits above changed nothing


def test_a_failed_file_is_shown_per_recipient_and_resent_with_its_history(run, tmp_path: Path) -> None:
    from report_pipelines_tests.smtp_support import free_port

    ok(run("db", "upgrade"))
    ok(run("demo", "seed", "--clients", "2", "--days", "2", "--largest", "50", "--end", "2024-10-27"))
    ok(run("schedules", "add", "--client", NEW_YORK, "--report", "call_detail", "--to", "ops@example.com,boss@example.com"))
    nobody_listens = free_port()
    failed = run("schedules", "send-now", "1", env={"REPORT_PIPELINES_SMTP_HOST": "127.0.0.1",
                                                    "REPORT_PIPELINES_SMTP_PORT": str(nobody_listens),
                                                    "REPORT_PIPELINES_SMTP_STARTTLS": "false",
                                                    "REPORT_PIPELINES_MAX_ATTEMPTS": "1"})
    assert failed.returncode == 1 and "gave up after 1 attempts" in failed.stderr, failed.stderr
    file_id = re.match(r"file (\d+): failed", failed.stdout)[1]
    shown = ok(run("schedules", "show", "1"))
    assert re.search(rf"^ +{file_id} \S+ \S+Z failed +attempts 1 ", shown, re.M), shown
    assert "           ops@example.com: failed (attempts 1)" in shown and "boss@example.com: failed" in shown

    resent = ok(run("schedules", "resend", file_id))
    assert resent.startswith(f"file {file_id}: sent (attempts 1, 0 rows, ")
    [eml] = (tmp_path / "outbox").glob("*.eml")
    assert email.message_from_bytes(eml.read_bytes(), policy=email.policy.default)["Message-ID"] == (
        f"<report-file-{file_id}@report-pipelines>")
    history = ok(run("schedules", "attempts", file_id)).splitlines()
    assert history[0].split()[:2] == [file_id, re.search(r"\d{4}-\d\d-\d\d", history[0])[0]]
    assert [line.split(":")[0].strip() for line in history[1:] if not line.startswith("      ")] == [
        "build 1", "send 1", "send 0", "send 1"]
    assert "send 1: failed" in history[2] and "unreachable or failed" in history[2]
    assert "send 0: resend" in history[5] and "send 1: sent" in history[6]
    again = run("schedules", "resend", file_id)
    assert again.returncode == 2 and again.stderr.startswith(f"error: file: file {file_id} cannot be resent: every "
                                                             "recipient has it")
