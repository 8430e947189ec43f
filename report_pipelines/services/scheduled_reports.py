"""Scheduled reports: one state machine in the database, four steps.

1. **plan**: an active schedule without ``next_send_at`` (new, edited, resumed) gets its next send
   instant from its rule (:func:`plan_schedules`);
2. **process**: a due occurrence is claimed (unique per schedule and instant), its period is read
   from the report cache (closed days missing from it are computed and cached on the way, the
   current local day live), the file is written atomically and recorded ``ready``, and the schedule
   is advanced to its following occurrence (:func:`process_occurrence`);
3. **send**: every file not sent yet is claimed under a lease, e-mailed with a stable Message-ID,
   retried with exponential backoff and jitter on temporary failures, failed after the last attempt
   (:func:`send_files`);
4. **clean**: sent files older than the retention are deleted, file first, then row; never an
   unsent one, never a path outside the files folder (:func:`clean_files`).

Missed occurrences (the daemon was down): only the most recent one is sent, once; the older ones
are recorded as ``skipped`` (:func:`due_occurrences` decides, the processing run records).
"""

from __future__ import annotations

import datetime as dt
import io
import random
import zipfile
from collections.abc import Iterable
from dataclasses import dataclass, field
from email.message import EmailMessage
from email.utils import format_datetime
from pathlib import Path

import pyarrow as pa
from sqlalchemy import Engine

from report_pipelines.adapters.db.repositories import ClientRepository
from report_pipelines.adapters.db.schedules import FileRow, ReportFileRepository, ScheduleRepository, ScheduleRow
from report_pipelines.adapters.exports import FORMATS, write_table
from report_pipelines.adapters.mailer import Mailer, PermanentMailError, TemporaryMailError
from report_pipelines.domain.delivery import DEFAULT_LEASE, backoff_delay, base64_size, fits
from report_pipelines.domain.email_rules import parse_recipients, safe_attachment_name, validate_subject
from report_pipelines.domain.errors import InvalidInput, NotFound
from report_pipelines.domain.reports import get_report
from report_pipelines.domain.schedules import PeriodSpec, ScheduleRule, next_send_at, period_for, plan_missed
from report_pipelines.domain.timezones import UTC, parse_zone
from report_pipelines.app import app_for
from report_pipelines.services.reading import read_report_arrow
from report_pipelines.services.serving import served_today, serving_of
from report_pipelines.settings import Settings


# --- schedules as users see them --------------------------------------------------------------------
def rule_of(row: ScheduleRow) -> ScheduleRule:
    return ScheduleRule.parse(row.frequency, row.send_time, row.timezone, row.weekdays, row.month_day)


def period_of(row: ScheduleRow) -> PeriodSpec:
    return PeriodSpec.parse(row.period, row.period_days)


def _validated(client_zone: str, *, report: str, period: str, period_days: int | None, frequency: str,
               send_time: str, weekdays: Iterable[str | int], month_day: int | None, timezone: str | None,
               recipients: str | Iterable[str], subject: str | None, fmt: str) -> dict:
    """Every field checked, each refusal naming its field; returns the column values to store."""
    get_report(report)
    spec = PeriodSpec.parse(period, period_days)
    zone = parse_zone(timezone, "timezone").key if timezone else client_zone
    rule = ScheduleRule.parse(frequency, send_time, zone, weekdays, month_day)
    if fmt not in FORMATS:
        raise InvalidInput("format", f"{fmt!r} is not one of {', '.join(FORMATS)}")
    return {
        "report": report, "period": spec.rule.value, "period_days": spec.days, "frequency": rule.frequency.value,
        "weekdays": ",".join(str(d) for d in sorted(rule.weekdays)) or None, "month_day": rule.month_day,
        "send_time": rule.send_time.strftime("%H:%M"), "timezone": rule.timezone,
        "recipients": ",".join(parse_recipients(recipients)),
        "subject": validate_subject(subject) if subject else None, "format": fmt,
    }


def add_schedule(engine: Engine, client: str, *, report: str, period: str = "yesterday", period_days: int | None = None,
                 frequency: str = "daily", send_time: str = "07:00", weekdays: Iterable[str | int] = (),
                 month_day: int | None = None, timezone: str | None = None, recipients: str | Iterable[str] = (),
                 subject: str | None = None, fmt: str = "csv") -> ScheduleRow:
    """Create a schedule for a client (by slug); the planner gives it its first send instant."""
    try:
        record = ClientRepository(engine).get_by_slug(client)
    except NotFound:
        raise NotFound("client", f"no client {client!r} (see: report-pipelines clients list)") from None
    if serving_of(engine, record.id, dt.datetime.now(UTC)).state != "served":
        raise InvalidInput("client", f"client {record.slug!r} holds no active licence of the reports product")
    values = _validated(record.timezone, report=report, period=period, period_days=period_days, frequency=frequency,
                        send_time=send_time, weekdays=weekdays, month_day=month_day, timezone=timezone,
                        recipients=recipients, subject=subject, fmt=fmt)
    repo = ScheduleRepository(engine)
    return repo.get(repo.add(dict(values, client_id=record.id)))


def get_schedule(engine: Engine, schedule_id: int) -> ScheduleRow:
    row = ScheduleRepository(engine).get(schedule_id)
    if row is None:
        raise NotFound("schedule", f"no schedule with id {schedule_id}")
    return row


def edit_schedule(engine: Engine, schedule_id: int, **changes) -> ScheduleRow:  # noqa: ANN003
    """Change some fields; changing the rule re-plans the schedule from its new rule."""
    row = get_schedule(engine, schedule_id)
    client = ClientRepository(engine).get(row.client_id)
    current = {"report": row.report, "period": row.period, "period_days": row.period_days,
               "frequency": row.frequency, "send_time": row.send_time, "weekdays": row.weekdays,
               "month_day": row.month_day, "timezone": row.timezone, "recipients": row.recipients,
               "subject": row.subject, "fmt": row.format}
    unknown = set(changes) - set(current)
    if unknown:
        raise InvalidInput(sorted(unknown)[0], "not a schedule field")
    merged = {**current, **changes}
    # A new frequency or period drops the old one's own fields unless they are given again.
    if "frequency" in changes and merged["frequency"] != "monthly" and "month_day" not in changes:
        merged["month_day"] = None
    if "frequency" in changes and merged["frequency"] != "weekly" and "weekdays" not in changes:
        merged["weekdays"] = ()
    if "period" in changes and merged["period"] != "last_n_days" and "period_days" not in changes:
        merged["period_days"] = None
    values = _validated(client.timezone, **merged)
    old = _validated(client.timezone, **current)
    ScheduleRepository(engine).edit(schedule_id, {k: v for k, v in values.items() if old.get(k) != v})
    return get_schedule(engine, schedule_id)


# --- 1. plan -----------------------------------------------------------------------------------------
def plan_schedules(engine: Engine, now: dt.datetime, limit: int = 5000) -> int:
    """Give unplanned active schedules their next send instant; returns how many were planned."""
    repo = ScheduleRepository(engine)
    plans = [(row.id, row.revision, next_send_at(rule_of(row), now)) for row in repo.unplanned(limit)]
    return repo.plan(plans)


# --- 2. process --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class DueOccurrence:
    """A due schedule, and what to do about it (decided by the sensor, done by the run)."""

    schedule_id: int
    due: dt.datetime  # the stored next_send_at
    send: dt.datetime  # the occurrence to build and send (the most recent one due)
    skipped: tuple[dt.datetime, ...]  # older missed occurrences, recorded, never sent
    following: dt.datetime  # where the schedule goes after this
    attempt: int = 0  # failed builds of this occurrence so far (a retry is a new run)

    @property
    def run_key(self) -> str:
        retry = f":retry-{self.attempt}" if self.attempt else ""
        return f"report-file:{self.schedule_id}:{self.send.isoformat()}{retry}"


def due_occurrences(engine: Engine, now: dt.datetime, limit: int = 10_000) -> list[DueOccurrence]:
    """Due occurrences, as the processor sensor turns them into runs.

    A build that failed is retried after a backoff (its lease end) under a new run key; one that is
    being built (lease still held) is left alone.
    """
    found = []
    rows = ScheduleRepository(engine).due(now, limit)
    if not rows:
        return found
    served = served_today(engine, now)
    building = ReportFileRepository(engine).builds_in_progress([row.id for row in rows])
    for row in rows:
        if row.client_id not in served:
            continue  # its licence ended: the daily commercial job pauses the schedule with the reason
        rule = rule_of(row)
        missed = plan_missed(rule, row.next_send_at, now)
        if missed.send is None:
            continue
        attempt = 0
        if (row.id, missed.send) in building:
            attempt, lease_end = building[(row.id, missed.send)]
            if lease_end is not None and lease_end > now:
                continue  # being built, or waiting before its retry
            attempt += 1
        found.append(DueOccurrence(row.id, row.next_send_at, missed.send, tuple(missed.skipped),
                                   next_send_at(rule, missed.next_after), attempt))
    return found


def message_id_for(file_id: int) -> str:
    """Stable per file: a resend after a crash carries the same Message-ID and can be recognised."""
    return f"<report-file-{file_id}@report-pipelines>"


def process_occurrence(engine: Engine, settings: Settings, occurrence: DueOccurrence, owner: str,
                       now: dt.datetime | None = None, lease: dt.timedelta = DEFAULT_LEASE) -> FileRow | None:
    """Claim, build and record one occurrence, then advance its schedule. ``None``: already done."""
    now = now or dt.datetime.now(UTC)
    schedules, files = ScheduleRepository(engine), ReportFileRepository(engine)
    row = get_schedule(engine, occurrence.schedule_id)
    if occurrence.skipped:
        files.record_skipped(row.id, list(occurrence.skipped), row.format, now,
                             reason=f"missed while the scheduler was down; only {occurrence.send.isoformat()} was sent")
    claimed = files.claim_occurrence(row.id, occurrence.send, row.format, owner, now, lease)
    if claimed is not None:
        try:
            built = build_file(engine, settings, row, claimed, now)
        except Exception as exc:
            files.release_build(claimed.id, owner, f"{type(exc).__name__}: {exc}",
                                retry_at=now + backoff_delay(claimed.attempts + 1))
            raise
        files.mark_ready(claimed.id, owner, **built)
    schedules.advance(row.id, occurrence.due, occurrence.following)
    return files.get(claimed.id) if claimed else None


def build_file(engine: Engine, settings: Settings, row: ScheduleRow, file: FileRow, now: dt.datetime) -> dict:
    """The period's report as a file under ``settings.files_dir``; returns what ``mark_ready`` records."""
    report = get_report(row.report)
    start, end = period_for(period_of(row), file.occurrence, row.timezone)
    client = ClientRepository(engine).get(row.client_id)
    first = max(start, client.active_from)  # a new client's first "last month" starts when it does
    if first <= end:
        days = read_report_arrow(row.report, row.client_id, first, end, app=app_for(settings), now=now)
        table = pa.Table.from_pandas(report.present(report.combine(days.drop_columns(["client"]))),
                                     preserve_index=False)
    else:
        table = pa.Table.from_pandas(report.present(report.combine(
            report.schema.append(pa.field("date", pa.date32())).empty_table())), preserve_index=False)
    name = safe_attachment_name(f"{row.client_slug}_{row.report}_{start}_{end}.{row.format}")
    path = settings.files_dir / f"client={row.client_id}" / f"schedule={row.id}" / f"{file.id}-{name}"
    written = write_table(table, path, row.format)
    return {"path": str(written.path), "size": written.bytes, "checksum": written.sha256, "rows": table.num_rows,
            "period": (start, end), "message_id": message_id_for(file.id)}


# --- 3. send -----------------------------------------------------------------------------------------
@dataclass
class SendSummary:
    sent: list[int] = field(default_factory=list)
    retried: list[tuple[int, str]] = field(default_factory=list)
    failed: list[tuple[int, str]] = field(default_factory=list)


def build_message(settings: Settings, row: ScheduleRow, file: FileRow, now: dt.datetime) -> EmailMessage:
    """The e-mail for one file: the file attached, zipped if too large, or a clear note if still too large."""
    report = get_report(row.report)
    period = f"{file.period_start} to {file.period_end}" if file.period_start != file.period_end else str(file.period_start)
    message = EmailMessage()
    message["From"] = settings.mail.mail_from
    message["To"] = ", ".join(row.recipients)
    message["Subject"] = row.subject or f"{report.title} for {row.client_name}: {period}"
    message["Message-ID"] = file.message_id or message_id_for(file.id)
    message["Date"] = format_datetime(now)
    path = Path(file.path or "")
    data = path.read_bytes()
    name = path.name.split("-", 1)[1] if "-" in path.name else path.name
    limit = settings.mail.max_attachment_bytes
    lines = [f"{report.title} for {row.client_name}, local days {period} ({row.timezone}).",
             f"{file.rows} rows, {row.format.upper()}."]
    attachment: tuple[bytes, str, str] | None = None
    if fits(len(data), limit):
        attachment = (data, name, row.format)
    else:
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
            archive.writestr(name, data)
        zipped = buffer.getvalue()
        if fits(len(zipped), limit):
            attachment = (zipped, f"{name}.zip", "zip")
            lines.append(f"The file is zipped: {len(data) / 1e6:.1f} MB would exceed the {limit / 1e6:.0f} MB limit.")
        else:
            lines.append(
                f"The file is too large to attach: {base64_size(len(zipped)) / 1e6:.1f} MB even zipped, over the "
                f"{limit / 1e6:.0f} MB limit. Choose a shorter period or the parquet format, or ask us for the file "
                f"(reference: report file {file.id}).")
    message.set_content("\n".join(lines) + "\n")
    if attachment:
        content, filename, kind = attachment
        subtype = {"csv": ("text", "csv"), "xlsx": ("application", "vnd.openxmlformats-officedocument.spreadsheetml.sheet"),
                   "parquet": ("application", "vnd.apache.parquet"), "zip": ("application", "zip")}[kind]
        params = {"charset": "utf-8"} if kind == "csv" else {}
        message.add_attachment(content, maintype=subtype[0], subtype=subtype[1], filename=filename, params=params)
    return message


def send_files(engine: Engine, settings: Settings, mailer: Mailer, owner: str, *, now: dt.datetime | None = None,
               limit: int = 1000, lease: dt.timedelta = DEFAULT_LEASE, rng: random.Random | None = None,
               file_ids: Iterable[int] | None = None) -> SendSummary:
    """Claim and send every file that may be sent now (or just ``file_ids``); one file's failure
    never stops the others."""
    now = now or dt.datetime.now(UTC)
    files, schedules = ReportFileRepository(engine), ScheduleRepository(engine)
    summary = SendSummary()
    with mailer.session() as send:  # one SMTP connection for the whole batch
        _send_each(files, schedules, settings, send, owner, now, lease, rng, summary,
                   files.sendable_ids(now, limit) if file_ids is None else list(file_ids))
    return summary


def _send_each(files: ReportFileRepository, schedules: ScheduleRepository, settings: Settings, send, owner: str,  # noqa: ANN001
               now: dt.datetime, lease: dt.timedelta, rng: random.Random | None, summary: SendSummary,
               file_ids: list[int]) -> None:
    for file_id in file_ids:
        file = files.claim_for_sending(file_id, owner, now, lease)
        if file is None:
            continue  # another sender has it
        row = schedules.get(file.schedule_id)
        try:
            if row is None:
                raise PermanentMailError("the schedule was deleted")
            if not file.path or not Path(file.path).is_file():
                raise PermanentMailError(f"the file is missing on disk: {file.path}")
            delivery = send(build_message(settings, row, file, now))
        except TemporaryMailError as exc:
            if file.attempts >= settings.mail.max_attempts:
                files.mark_failed(file.id, owner, f"gave up after {file.attempts} attempts: {exc}")
                summary.failed.append((file.id, str(exc)))
            else:
                files.mark_retry(file.id, owner, str(exc), now + backoff_delay(file.attempts, rng))
                summary.retried.append((file.id, str(exc)))
            continue
        except PermanentMailError as exc:
            files.mark_failed(file.id, owner, str(exc))
            summary.failed.append((file.id, str(exc)))
            continue
        note = f"refused by the server for: {delivery.refused}" if delivery.refused else None
        files.mark_sent(file.id, owner, now, note)
        summary.sent.append(file.id)


# --- 4. clean ----------------------------------------------------------------------------------------
@dataclass
class CleanSummary:
    deleted: list[int] = field(default_factory=list)
    missing_on_disk: list[int] = field(default_factory=list)
    refused_paths: list[tuple[int, str]] = field(default_factory=list)


def inside(folder: Path, path: Path) -> bool:
    """Is ``path`` inside ``folder`` once both are resolved (``..`` and symlinks included)?"""
    return path.resolve().is_relative_to(folder.resolve())


def clean_files(engine: Engine, settings: Settings, now: dt.datetime | None = None) -> CleanSummary:
    """Delete sent files older than the retention: the file from disk first, then its row.

    Only ``sent`` rows are ever considered; a path outside the files folder is refused (row kept,
    reported); a file already gone from disk is reported, and its row deleted.
    """
    now = now or dt.datetime.now(UTC)
    files = ReportFileRepository(engine)
    summary = CleanSummary()
    for file in files.sent_before(now - dt.timedelta(days=settings.retention_days)):
        if file.path:
            path = Path(file.path)
            if not inside(settings.files_dir, path):
                summary.refused_paths.append((file.id, file.path))
                continue
            try:
                path.unlink()
            except FileNotFoundError:
                summary.missing_on_disk.append(file.id)
        if files.delete_sent(file.id):
            summary.deleted.append(file.id)
    return summary


def delete_schedule(engine: Engine, settings: Settings, schedule_id: int) -> int:
    """Delete a schedule, its file rows and their files (inside the files folder only)."""
    get_schedule(engine, schedule_id)
    removed = 0
    for path in ScheduleRepository(engine).delete(schedule_id):
        if inside(settings.files_dir, Path(path)):
            Path(path).unlink(missing_ok=True)
            removed += 1
    return removed


def send_now(engine: Engine, settings: Settings, mailer: Mailer, schedule_id: int, owner: str,
             now: dt.datetime | None = None) -> FileRow:
    """Build and send an extra occurrence at ``now`` (the schedule's own plan is unchanged)."""
    now = (now or dt.datetime.now(UTC)).replace(microsecond=0)
    row = get_schedule(engine, schedule_id)
    files = ReportFileRepository(engine)
    claimed = files.claim_occurrence(row.id, now, row.format, owner, now, DEFAULT_LEASE)
    if claimed is None:
        raise InvalidInput("schedule", "a send for this instant is already in progress; try again in a second")
    try:
        built = build_file(engine, settings, row, claimed, now)
    except Exception as exc:
        files.release_build(claimed.id, owner, f"{type(exc).__name__}: {exc}", retry_at=now)
        raise
    files.mark_ready(claimed.id, owner, **built)
    send_files(engine, settings, mailer, owner, now=now, file_ids=[claimed.id])
    return files.get(claimed.id)
