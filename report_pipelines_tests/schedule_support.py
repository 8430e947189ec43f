"""Shared set-up for the scheduled-report tests: a seeded database, a daily schedule, a real SMTP server."""

from __future__ import annotations

import datetime as dt
from dataclasses import replace

from report_pipelines.adapters.mailer import SmtpMailer
from report_pipelines.services.scheduled_reports import (
    add_schedule,
    due_occurrences,
    plan_schedules,
    process_occurrence,
)
from report_pipelines.settings import MailSettings
from report_pipelines_tests.extract_support import UTC, Seeded
from report_pipelines_tests.smtp_support import PASSWORD, USER, SmtpServer

# SMALL covers local days 2024-03-08..11; "now" is the morning after in New York.
NOW = dt.datetime(2024, 3, 12, 13, 0, tzinfo=UTC)
TO = ["ops@example.com", "boss@example.com"]


def smtp_mailer(server: SmtpServer, timeout_s: float = 5.0) -> SmtpMailer:
    return SmtpMailer("127.0.0.1", server.port, username=USER, password=PASSWORD, starttls=True,
                      timeout_s=timeout_s, cafile=str(server.cert))


def with_mail(seeded: Seeded, **mail) -> Seeded:
    seeded.settings = replace(seeded.settings, mail=replace(MailSettings(), **mail))
    return seeded


def daily(seeded: Seeded, **options):
    ny = seeded.clients["America/New_York"]
    values = dict(report="queue_performance", period="yesterday", frequency="daily", send_time="07:00",
                  recipients=TO, fmt="csv")
    values.update(options)
    return add_schedule(seeded.engine, ny.slug, **values)


def build_due(seeded: Seeded, now: dt.datetime = NOW, owner: str = "run-1") -> list:
    plan_schedules(seeded.engine, now - dt.timedelta(days=1))
    return [process_occurrence(seeded.engine, seeded.settings, occurrence, owner, now)
            for occurrence in due_occurrences(seeded.engine, now)]


class Clock:
    """A clock a test moves by hand (``clock.now += ...``)."""

    def __init__(self, now: dt.datetime) -> None:
        self.now = now

    def __call__(self) -> dt.datetime:
        return self.now
