"""Scheduled reports: one state machine in the database, four steps.

1. **plan**: an active schedule without ``next_send_at`` (new, edited, resumed) gets its next send
   instant from its rule (:func:`plan_schedules`);
2. **process**: a due occurrence is claimed (unique per schedule and instant) under a lease that
   a heartbeat renews, its period (the client's closed local days) is read from the report cache
   (missing days are computed and cached on the way), the file is written atomically, and it is
   recorded ``ready`` *together with* the schedule's advance to its following occurrence; a build
   that fails is retried after a backoff, a builder that dies is taken over after its lease, and the
   last attempt records the file ``failed`` (and advances the schedule) (:func:`process_occurrence`);
3. **send**: files not sent yet are claimed in batches, each under its own lease, e-mailed with a
   stable Message-ID to the recipients who have not accepted or refused it yet, retried with
   exponential backoff and jitter while some are deferred (4xx), failed after the last attempt
   (:func:`send_files`); an operator can resend a failed file (:func:`resend_file`);
4. **clean**: sent files older than the retention are deleted, file first, then row; never an
   unsent one, never a path outside the files folder (:func:`clean_files`).

Missed occurrences (the daemon was down): only the most recent one is sent, once; the older ones
are recorded as ``skipped`` (:func:`due_occurrences` decides, the processing run records).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import email
import email.policy
import hashlib
import io
import random
import tempfile
import threading
import time
import uuid
import zipfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field, replace
from email.message import EmailMessage
from email.utils import format_datetime
from html import escape as html_escape
from pathlib import Path

import pyarrow as pa
import pyarrow.compute
from sqlalchemy import Engine

from report_pipelines.adapters.db.repositories import CallEventRepository, ClientRepository
from report_pipelines.adapters.db.schedules import (
    Advance,
    AttemptRow,
    FileRow,
    RecipientRow,
    ReportFileRepository,
    ScheduleRepository,
    ScheduleRow,
    SendOutcome,
)
from report_pipelines.adapters.exports import FORMATS, write_bytes
from report_pipelines.adapters.mail_format import CONTENT_TYPES, Attachment, address_header, compose, header
from report_pipelines.adapters.mailer import (
    Cancelled,
    Mailer,
    OutgoingMessage,
    PermanentMailError,
    Send,
    TemporaryMailError,
)
from report_pipelines.app import app_for, system_clock
from report_pipelines.domain.alerts import (
    ALERT,
    CLEAR,
    AlertCondition,
    Evaluation,
    Incident,
    Step,
    WindowFigures,
    evaluate,
    in_business_hours,
    last_check_at,
    next_check_at,
    step,
    window_of,
)
from report_pipelines.domain.delivery import (
    ACCEPTED,
    BACKOFF_BASE,
    BACKOFF_CAP,
    DEFAULT_LEASE,
    DEFAULT_MAX_ATTEMPTS,
    DEFAULT_MAX_BUILD_ATTEMPTS,
    DEFAULT_SEND_DEADLINE,
    DEFERRED,
    FAILED,
    MAX_BUILD_TIME,
    OPEN_STATES,
    REFUSED,
    backoff_delay,
    base64_size,
    file_verdict,
    fits,
    lease_holds,
    reply_state,
)
from report_pipelines.domain.email_rules import (
    parse_recipients,
    safe_attachment_name,
    validate_message,
    validate_reply_to,
    validate_subject,
)
from report_pipelines.domain.errors import InvalidInput, NotFound, ReportPipelinesError
from report_pipelines.domain.report_digest import BODY_OPTIONS, period_kpis
from report_pipelines.domain.reports import get_report
from report_pipelines.domain.reports.base import DayContext
from report_pipelines.domain.schedules import (
    MissedPlan,
    PeriodSpec,
    ScheduleRule,
    next_send_at,
    period_for,
    plan_missed,
)
from report_pipelines.domain.timezones import parse_zone
from report_pipelines.services.clients import get_client
from report_pipelines.services.periods import record_schedule_build
from report_pipelines.services.reading import read_report_arrow
from report_pipelines.services.report_mail import compose_report_message, write_report_attachment
from report_pipelines.services.serving import served_today, serving_of
from report_pipelines.settings import Settings

# --- schedules as users see them --------------------------------------------------------------------
KINDS = ("report", "alert")
NO_CALLS = ("send", "skip", "notice")
#: What an alert schedule stores in the fields of a report schedule that it does not use.
_ALERT_FIELDS = {"report": "daily_summary", "period": "yesterday", "period_days": None, "frequency": "interval",
                 "weekdays": None, "month_day": None, "send_time": "00:00", "format": "none", "body": "none",
                 "no_calls": "send"}


def rule_of(row: ScheduleRow) -> ScheduleRule:
    return ScheduleRule.parse(row.frequency, row.send_time, row.timezone, row.weekdays, row.month_day)


def condition_of(row: ScheduleRow) -> AlertCondition:
    return AlertCondition.parse(row.condition or "")


def next_occurrence(row: ScheduleRow, after: dt.datetime) -> dt.datetime:
    """The schedule's first occurrence strictly after ``after``: its rule's (a report), its check
    interval's (an alert)."""
    if row.kind == "alert":
        return next_check_at(condition_of(row), after)
    return next_send_at(rule_of(row), after)


def missed_plan(row: ScheduleRow, due: dt.datetime, now: dt.datetime) -> MissedPlan:
    """What to do about a due schedule (:func:`plan_missed`); an alert checks only its latest
    instant, and the checks it missed are not recorded (they would say nothing)."""
    if row.kind != "alert":
        return plan_missed(rule_of(row), due, now)
    if due > now:
        return MissedPlan(send=None, skipped=(), next_after=due)
    latest = max(due, last_check_at(condition_of(row), now))
    return MissedPlan(send=latest, skipped=(), next_after=latest)


def period_of(row: ScheduleRow) -> PeriodSpec:
    return PeriodSpec.parse(row.period, row.period_days)


def _validated(client_zone: str, *, report: str, period: str, period_days: int | None, frequency: str,
               send_time: str, weekdays: Iterable[str | int], month_day: int | None, timezone: str | None,
               recipients: str | Iterable[str], subject: str | None, fmt: str, kind: str = "report",
               body: str = "summary", no_calls: str = "send", message: str | None = None,
               reply_to: str | None = None, condition: str | None = None) -> dict:
    """Every field checked, each refusal naming its field; returns the column values to store."""
    if kind not in KINDS:
        raise InvalidInput("kind", f"{kind!r} is not one of {', '.join(KINDS)}")
    common = {
        "kind": kind, "recipients": ",".join(parse_recipients(recipients)),
        "subject": validate_subject(subject) if subject is not None else None,
        "message": validate_message(message) if message is not None else None,
        "reply_to": validate_reply_to(reply_to) if reply_to is not None else None,
    }
    # None: not given (the default applies); anything else, an empty string too, must be valid.
    zone = parse_zone(timezone, "timezone").key if timezone is not None else client_zone
    if kind == "alert":
        if condition is None:
            raise InvalidInput("condition", "an alert needs a condition, e.g. 'service_level<80 queue=support window=1h'")
        return {**common, **_ALERT_FIELDS, "timezone": zone, "condition": AlertCondition.parse(condition).text}
    if condition is not None:
        raise InvalidInput("condition", "a condition is only for --kind alert")
    get_report(report)
    spec = PeriodSpec.parse(period, period_days)
    rule = ScheduleRule.parse(frequency, send_time, zone, weekdays, month_day)
    if fmt not in SCHEDULE_FORMATS:
        raise InvalidInput("format", f"{fmt!r} is not one of {', '.join(SCHEDULE_FORMATS)}")
    if body not in BODY_OPTIONS:
        raise InvalidInput("body", f"{body!r} is not one of {', '.join(BODY_OPTIONS)}")
    if no_calls not in NO_CALLS:
        raise InvalidInput("no_calls", f"{no_calls!r} is not one of {', '.join(NO_CALLS)}")
    return {
        **common, "report": report, "period": spec.rule.value, "period_days": spec.days,
        "frequency": rule.frequency.value, "weekdays": ",".join(str(d) for d in sorted(rule.weekdays)) or None,
        "month_day": rule.month_day, "send_time": rule.send_time.strftime("%H:%M"), "timezone": rule.timezone,
        "format": fmt, "body": body, "no_calls": no_calls, "condition": None,
    }


def add_schedule(engine: Engine, client: str, *, report: str = "daily_summary", period: str = "yesterday",
                 period_days: int | None = None, frequency: str = "daily", send_time: str = "07:00",
                 weekdays: Iterable[str | int] = (), month_day: int | None = None, timezone: str | None = None,
                 recipients: str | Iterable[str] = (), subject: str | None = None, fmt: str = "csv",
                 kind: str = "report", body: str = "summary", no_calls: str = "send", message: str | None = None,
                 reply_to: str | None = None, condition: str | None = None,
                 now: dt.datetime | None = None) -> ScheduleRow:
    """Create a schedule for a client (by slug); the planner gives it its first send instant.

    ``now`` is the caller's clock (the App's); the licence is checked at that instant."""
    now = now or system_clock()
    record = get_client(engine, client)
    if serving_of(engine, record.id, now).state != "served":
        raise InvalidInput("client", f"client {record.slug!r} holds no active licence of the reports product")
    values = _validated(record.timezone, report=report, period=period, period_days=period_days, frequency=frequency,
                        send_time=send_time, weekdays=weekdays, month_day=month_day, timezone=timezone,
                        recipients=recipients, subject=subject, fmt=fmt, kind=kind, body=body, no_calls=no_calls,
                        message=message, reply_to=reply_to, condition=condition)
    repo = ScheduleRepository(engine)
    return repo.get(repo.add(dict(values, client_id=record.id), now))


def get_schedule(engine: Engine, schedule_id: int) -> ScheduleRow:
    row = ScheduleRepository(engine).get(schedule_id)
    if row is None:
        raise NotFound("schedule", f"no schedule with id {schedule_id}")
    return row


#: Options that ``edit_schedule`` takes to mean "remove it" when given as an empty string.
CLEARABLE = ("subject", "message", "reply_to")


def edit_schedule(engine: Engine, schedule_id: int, now: dt.datetime | None = None, **changes) -> ScheduleRow:
    """Change some fields; changing the rule re-plans the schedule from its new rule. An empty
    ``subject``, ``message`` or ``reply_to`` removes it."""
    now = now or system_clock()
    row = get_schedule(engine, schedule_id)
    client = ClientRepository(engine).get(row.client_id)
    current = {"report": row.report, "period": row.period, "period_days": row.period_days,
               "frequency": row.frequency, "send_time": row.send_time, "weekdays": row.weekdays,
               "month_day": row.month_day, "timezone": row.timezone, "recipients": row.recipients,
               "subject": row.subject, "fmt": row.format, "kind": row.kind, "body": row.body,
               "no_calls": row.no_calls, "message": row.message, "reply_to": row.reply_to, "condition": row.condition}
    unknown = set(changes) - set(current)
    if unknown:
        raise InvalidInput(sorted(unknown)[0], "not a schedule field")
    if "kind" in changes and changes["kind"] != row.kind:
        raise InvalidInput("kind", "a schedule's kind cannot change; add a new schedule")
    for name in CLEARABLE:
        if isinstance(changes.get(name), str) and not changes[name].strip():
            changes[name] = None
    if row.kind == "alert":
        refused = sorted(set(changes) & {"report", "period", "period_days", "frequency", "send_time", "weekdays",
                                         "month_day", "fmt", "body", "no_calls"})
        if refused:
            raise InvalidInput(refused[0], "an alert has no such option (its cadence is the condition's every=)")
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
    ScheduleRepository(engine).edit(schedule_id, {k: v for k, v in values.items() if old.get(k) != v}, now)
    return get_schedule(engine, schedule_id)


#: What a report schedule can attach: the export formats and the PDF of the e-mail's content.
SCHEDULE_FORMATS: tuple[str, ...] = (*FORMATS, "pdf")


# --- 1. plan -----------------------------------------------------------------------------------------
def plan_schedules(engine: Engine, now: dt.datetime, limit: int = 5000) -> int:
    """Give unplanned active schedules their next send instant; returns how many were planned."""
    repo = ScheduleRepository(engine)
    plans = [(row.id, row.revision, next_occurrence(row, now)) for row in repo.unplanned(limit)]
    return repo.plan(plans)


# --- clocks and policies -------------------------------------------------------------------------------
Clock = Callable[[], dt.datetime]


def clock_from(now: dt.datetime | None) -> Clock:
    """A clock that reads ``now`` at first (the wall clock when ``None``) and then moves on with the
    time that really passes: leases and deadlines of a long step need a clock that moves, and a
    test that gives ``now`` keeps its own timeline."""
    start = now or system_clock()
    origin = time.monotonic()
    return lambda: start + dt.timedelta(seconds=time.monotonic() - origin)


@dataclass(frozen=True)
class BuildPolicy:
    lease: dt.timedelta = DEFAULT_LEASE
    max_attempts: int = DEFAULT_MAX_BUILD_ATTEMPTS
    backoff_base: dt.timedelta = BACKOFF_BASE
    backoff_cap: dt.timedelta = BACKOFF_CAP
    max_build_time: dt.timedelta = MAX_BUILD_TIME

    @classmethod
    def from_settings(cls, settings: Settings, lease: dt.timedelta = DEFAULT_LEASE) -> BuildPolicy:
        return cls(lease=lease, max_attempts=settings.max_build_attempts)


@dataclass(frozen=True)
class SendPolicy:
    """How a send batch runs: leases, attempts and backoff, its deadline, and how often it records.

    Outcomes are written in batches (one transaction for up to ``mark_batch`` messages), but never
    later than ``mark_interval`` after the relay accepted a message, and at once when the relay is
    slow: that delay is the window in which a process that dies has sent a message it did not
    record, the one way a recipient gets a message twice (with the same Message-ID).
    """

    lease: dt.timedelta = DEFAULT_LEASE
    max_attempts: int = DEFAULT_MAX_ATTEMPTS
    deadline: dt.timedelta = DEFAULT_SEND_DEADLINE
    backoff_base: dt.timedelta = BACKOFF_BASE
    backoff_cap: dt.timedelta = BACKOFF_CAP
    claim_batch: int = 50
    mark_batch: int = 50
    mark_interval: dt.timedelta = dt.timedelta(milliseconds=100)

    @classmethod
    def from_settings(cls, settings: Settings, lease: dt.timedelta = DEFAULT_LEASE) -> SendPolicy:
        return cls(lease=lease, max_attempts=settings.mail.max_attempts,
                   deadline=dt.timedelta(seconds=settings.mail.send_deadline_s))


class BuildFailed(ReportPipelinesError):
    """A report file's build failed for the last time: the file is recorded failed."""

    def __init__(self, file_id: int, attempts: int, error: str) -> None:
        self.file_id, self.attempts, self.error = file_id, attempts, error
        super().__init__(f"file {file_id}: the build failed {attempts} time(s) and was given up: {error} "
                         f"(after fixing the cause: report-pipelines schedules resend {file_id})")

    def __reduce__(self):
        return (type(self), (self.file_id, self.attempts, self.error))


# --- 2. process --------------------------------------------------------------------------------------
#: A due occurrence no run has claimed for this long is asked for again (see ``due_occurrences``).
RERUN_AFTER = dt.timedelta(minutes=10)


@dataclass(frozen=True)
class DueOccurrence:
    """A due schedule, and what to do about it (decided by the sensor, done by the run)."""

    schedule_id: int
    due: dt.datetime  # the stored next_send_at
    send: dt.datetime  # the occurrence to build and send (the most recent one due)
    skipped: tuple[dt.datetime, ...]  # older missed occurrences, recorded, never sent
    following: dt.datetime  # where the schedule goes after this
    attempt: int = 0  # build claims of this occurrence so far (a retry is a new run)
    window: int | None = None  # set when it has waited long for a run: asked again once per window

    @property
    def run_key(self) -> str:
        retry = f":retry-{self.attempt}" if self.attempt else ""
        again = f":w{self.window}" if self.window is not None else ""
        return f"report-file:{self.schedule_id}:{self.send.isoformat()}{retry}{again}"

    @property
    def advance(self) -> Advance:
        return (self.schedule_id, self.due, self.following)


def due_occurrences(engine: Engine, now: dt.datetime, limit: int = 10_000) -> list[DueOccurrence]:
    """Due occurrences, as the processor sensor turns them into runs.

    An occurrence whose build is held (a live builder's lease, or a failed build's backoff) is left
    alone; once that lease has expired (the builder died, or the backoff is over) it is asked for
    again under a new run key, until the run that finds it at its last attempt records it failed.
    One that has waited more than ``RERUN_AFTER`` since it fell due (or since its lease expired)
    is asked for again once per such window: the run asked for before may have died before it
    could claim anything, and the daemon never launches a run key twice.
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
        missed = missed_plan(row, row.next_send_at, now)
        if missed.send is None:
            continue
        attempt, waiting_since = 0, missed.send
        if (row.id, missed.send) in building:
            attempt, lease_end = building[(row.id, missed.send)]
            if lease_end is not None and lease_end >= now:
                continue  # being built, or waiting before its retry
            waiting_since = lease_end or missed.send
        window = int(now.timestamp() // RERUN_AFTER.total_seconds()) if now - waiting_since > RERUN_AFTER else None
        found.append(DueOccurrence(row.id, row.next_send_at, missed.send, tuple(missed.skipped),
                                   next_occurrence(row, missed.next_after), attempt, window))
    return found


def message_id_for(file_id: int) -> str:
    """Stable per file: a resend after a crash carries the same Message-ID and can be recognised."""
    return f"<report-file-{file_id}@report-pipelines>"


def process_occurrence(engine: Engine, settings: Settings, occurrence: DueOccurrence, owner: str,
                       now: dt.datetime | None = None, lease: dt.timedelta = DEFAULT_LEASE, *,
                       policy: BuildPolicy | None = None, clock: Clock | None = None) -> FileRow | None:
    """Claim, build and record one occurrence; recording it ready (or, at the last attempt, failed)
    advances its schedule in the same transaction. ``None``: another builder holds it, or it is
    already recorded. A build that fails raises (it is retried after a backoff by a new run);
    the last one raises :class:`BuildFailed`."""
    clock = clock or clock_from(now)
    now = clock()
    policy = policy or BuildPolicy.from_settings(settings, lease)
    files = ReportFileRepository(engine)
    row = get_schedule(engine, occurrence.schedule_id)
    if occurrence.skipped:
        files.record_skipped(row.id, list(occurrence.skipped), row.format, now,
                             reason=f"missed while the scheduler was down; only {occurrence.send.isoformat()} was sent")
    claim = files.claim_build(row.id, occurrence.send, row.format, owner, now, policy.lease, policy.max_attempts,
                              advance=occurrence.advance)
    if claim.status == "gave_up":
        raise BuildFailed(claim.file.id, claim.file.build_attempts, claim.file.last_error or "")
    if claim.status == "done":
        ScheduleRepository(engine).advance(*occurrence.advance)  # recorded already: the schedule may move on
        return None
    if claim.status == "held":
        return None
    return _build_and_record(engine, settings, row, claim.file, owner, policy, clock, occurrence.advance)


def _build_and_record(engine: Engine, settings: Settings, row: ScheduleRow, file: FileRow, owner: str,
                      policy: BuildPolicy, clock: Clock, advance: Advance | None,
                      give_up: bool = False) -> FileRow | None:
    files = ReportFileRepository(engine)
    started = clock()
    app = app_for(settings, clock)
    with _heartbeat(files, file.id, owner, policy, clock):
        try:
            built = build_file(engine, settings, row, file, started)
        except Exception as exc:
            error = f"{type(exc).__name__}: {exc}"
            last = give_up or file.build_attempts >= policy.max_attempts
            end = clock()
            _usage(app, row, file, started, end, {}, status="error", error=error)
            retry_at = end + backoff_delay(file.build_attempts, base=policy.backoff_base, cap=policy.backoff_cap)
            if files.fail_build(file.id, owner, error, now=end, started_at=started, retry_at=retry_at, give_up=last,
                                advance=advance) == "failed":
                raise BuildFailed(file.id, file.build_attempts, error) from exc
            raise
    end = clock()
    if row.kind == "report":
        _usage(app, row, file, started, end, built)
    schedule_values = built.pop("schedule_values", None)
    if "skip" in built:
        recorded = files.skip_build(file.id, owner, built["skip"], period=built.get("period"), now=end,
                                    started_at=started, advance=advance, schedule_values=schedule_values)
    else:
        recorded = files.finish_build(file.id, owner, **built, now=end, started_at=started, advance=advance,
                                      schedule_values=schedule_values)
    if not recorded:
        return None  # the lease was lost (a build longer than its heartbeat): the new holder records it
    return files.get(file.id)


def _usage(app, row: ScheduleRow, file: FileRow, started: dt.datetime, end: dt.datetime, built: dict,
           status: str = "ok", error: str | None = None) -> None:
    """The build in the usage log (channel ``schedule``); an alert's checks are not report requests."""
    if row.kind != "report":
        return
    period = built.get("period") or period_for(period_of(row), file.occurrence, row.client_timezone)
    record_schedule_build(app, client_id=row.client_id, report=row.report, start=period[0], end=period[1],
                          fmt=row.format, requested_at=started, duration_s=(end - started).total_seconds(),
                          rows=built.get("rows") or 0, bytes=built.get("size") or 0, status=status, error=error)


@contextlib.contextmanager
def _heartbeat(files: ReportFileRepository, file_id: int, owner: str, policy: BuildPolicy,
               clock: Clock) -> Iterator[None]:
    """Renew a build's lease every third of it while the build runs (up to ``max_build_time``), so
    a live builder keeps its claim however long the build takes and a dead one loses it after one
    lease."""
    stop = threading.Event()
    until = clock() + policy.max_build_time

    def beat() -> None:
        while not stop.wait(policy.lease.total_seconds() / 3):
            now = clock()
            if now >= until or not files.renew_build(file_id, owner, now + policy.lease):
                return

    thread = threading.Thread(target=beat, name=f"lease-{file_id}", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


BODY_SUFFIX = ".body"
#: A header of the stored body that says "send it without the file" (a no-calls notice); removed before sending.
_NO_ATTACHMENT = "X-Report-Pipelines-No-Attachment"


def body_path(path: str | Path) -> Path:
    """Where the e-mail's body (the MIME text, HTML and inline charts, no headers) of a built file is
    kept: beside the file, so that a retry or a resend sends the same body."""
    return Path(f"{path}{BODY_SUFFIX}")


def build_file(engine: Engine, settings: Settings, row: ScheduleRow, file: FileRow, now: dt.datetime, *,
               app=None, folder: Path | None = None) -> dict:
    """The period's report as a file under ``settings.files_dir`` (or ``folder``), and its e-mail's
    body beside it; returns what ``finish_build`` records (or, when the period had no calls and
    the schedule says ``--no-calls skip``, ``{"skip": reason}``).

    The period is made of the *client's* local days (the days its data are cut in) that have closed
    at the occurrence; the schedule's own zone only decides when it is sent. The body is the
    schedule's ``body`` (summary, table or none) with its ``message``; ``--no-calls notice`` makes
    it a one-line notice, sent without the file.
    """
    app = app or app_for(settings)
    if row.kind == "alert":
        return build_alert(engine, row, file, now, app=app, folder=folder)
    report = get_report(row.report)
    start, end = period_for(period_of(row), file.occurrence, row.client_timezone)
    client = ClientRepository(engine).get(row.client_id)
    first = max(start, client.active_from)  # a new client's first "last month" starts when it does
    if first <= end:
        days = read_report_arrow(row.report, row.client_id, first, end, app=app, now=now)
        summary = days if row.report == "daily_summary" else read_report_arrow(
            "daily_summary", row.client_id, first, end, app=app, now=now)
        calls = int(pa.compute.sum(summary["calls"]).as_py() or 0) if summary.num_rows else 0
    else:
        days, calls = report.schema.append(pa.field("date", pa.date32())).empty_table(), 0
    if calls == 0 and row.no_calls == "skip":
        return {"skip": f"no calls in {start}..{end}; not sent (--no-calls skip)", "period": (start, end)}
    fmt = row.format if row.format != "pdf" or (first <= end and not (calls == 0 and row.no_calls == "notice")) \
        else "csv"  # a pdf is the e-mail's content: with nothing to show, the (empty) table is kept as csv
    name = safe_attachment_name(f"{row.client_slug}_{row.report}_{start}_{end}.{fmt}")
    target = (folder or settings.files_dir / f"client={row.client_id}" / f"schedule={row.id}") / f"{file.id}-{name}"
    combined = report.combine(days.drop_columns([c for c in ("client",) if c in days.column_names]))
    rows = len(report.present(combined))
    period = str(start) if start == end else f"{start} to {end}"
    if calls == 0 and row.no_calls == "notice":
        body = EmailMessage()
        body.set_content(f"No calls for {row.client_name} in {period} ({row.client_timezone}): "
                         f"nothing to report in {report.title}.\n"
                         + (f"\n{row.message}\n" if row.message else ""))
        body[_NO_ATTACHMENT] = "yes"
        composed = None
    elif first <= end:
        composed = compose_report_message(app, row.client_id, row.report, first, end, now=now, body=row.body,
                                          note=row.message)
        body = composed.message
    else:  # the client did not exist yet in the period: nothing to show but the (empty) file
        composed, body = None, EmailMessage()
        body.set_content(f"{report.title} for {row.client_name}, local days {period} ({row.client_timezone}): "
                         "no data yet (the client's reports start later).\n"
                         + (f"\n{row.message}\n" if row.message else ""))
    written = write_report_attachment(row.report, days, target, fmt, client_name=row.client_name,
                                      timezone=row.client_timezone, start=first, end=end, composed=composed)
    for name in ("From", "To", "Subject", "Message-ID", "Date"):
        del body[name]
    write_bytes(body_path(written.path), body.as_bytes(policy=email.policy.SMTP))
    return {"path": str(written.path), "size": written.bytes, "checksum": written.sha256, "rows": rows,
            "period": (start, end), "message_id": message_id_for(file.id), "recipients": row.recipients}


# --- alerts --------------------------------------------------------------------------------------------
def window_figures(engine: Engine, client_id: int, timezone: str, condition: AlertCondition,
                   at: dt.datetime, service_level_seconds: int) -> WindowFigures | None:
    """The figures of the condition's window before ``at`` (``None``: outside its business hours),
    computed by the ``daily_summary`` maths over the window's calls (the queue's only, if named)."""
    if not in_business_hours(condition, at, timezone):
        return None
    start, end = window_of(condition, at, timezone)
    calls = CallEventRepository(engine).day_calls(client_id, start, end)
    if condition.queue is not None:
        calls = calls.filter(pa.compute.equal(calls["queue"], condition.queue))
    local = at.astimezone(parse_zone(timezone)).date()
    table = get_report("daily_summary").compute_day(calls, DayContext(client_id, timezone, local,
                                                                      service_level_seconds))
    kpis = period_kpis(table.append_column("date", pa.array([local] * table.num_rows, pa.date32())))
    return WindowFigures(offered=kpis.offered, answered=kpis.answered, abandoned=kpis.abandoned,
                         service_level=kpis.service_level, abandoned_rate=kpis.abandon_rate,
                         answer_rate=kpis.answer_rate, average_speed_of_answer=kpis.average_speed_of_answer)


def evaluate_alert(engine: Engine, row: ScheduleRow, at: dt.datetime,
                   service_level_seconds: int) -> tuple[Evaluation, Step]:
    """Check an alert schedule's condition at ``at`` and what its incident becomes."""
    condition = condition_of(row)
    evaluation = evaluate(condition, window_figures(engine, row.client_id, row.client_timezone, condition, at,
                                                    service_level_seconds))
    incident = Incident(row.alert_state or CLEAR, row.alert_since)
    return evaluation, step(incident, evaluation.holds, at, condition.grace)


def build_alert(engine: Engine, row: ScheduleRow, file: FileRow, now: dt.datetime, *, app,
                folder: Path | None = None) -> dict:
    """One check of an alert schedule at its occurrence: the incident's new state (stored with the
    file's record, in one transaction), and an e-mail only when an incident starts or clears;
    otherwise the occurrence is recorded ``skipped`` with what was found."""
    evaluation, moved = evaluate_alert(engine, row, file.occurrence, app.settings.service_level_seconds)
    values = {"alert_state": moved.incident.state, "alert_since": moved.incident.since}
    condition = condition_of(row)
    local = file.occurrence.astimezone(parse_zone(row.client_timezone))
    if moved.event is None:
        return {"skip": f"{evaluation.text}; incident {moved.incident.state}", "schedule_values": values}
    if moved.event == ALERT:
        subject = row.subject or f"Alert for {row.client_name}: {condition.describe}"
        lead = f"Alert: {evaluation.text}."
    else:
        since = f" since {row.alert_since:%Y-%m-%d %H:%M} UTC" if row.alert_since else ""
        subject = f"Recovered for {row.client_name}: {condition.describe} no longer holds"
        lead = f"Recovered: the condition has not held for {_span(condition.grace)}{since}. Now: {evaluation.text}."
    text = (f"{lead}\n\nClient: {row.client_name}\nChecked at {local:%Y-%m-%d %H:%M %Z} ({row.client_timezone})\n"
            f"Condition: {condition.text}\n" + (f"\n{row.message}\n" if row.message else ""))
    body = EmailMessage()
    body.set_content(text)
    body["Subject"] = subject
    target = (folder or app.settings.files_dir / f"client={row.client_id}" / f"schedule={row.id}") / \
        f"{file.id}-alert-{moved.event}.eml"
    written = write_bytes(target, body.as_bytes(policy=email.policy.SMTP))
    day = local.date()
    return {"path": str(written.path), "size": written.bytes, "checksum": written.sha256, "rows": 0,
            "period": (day, day), "message_id": message_id_for(file.id), "recipients": row.recipients,
            "schedule_values": values}


def _span(value: dt.timedelta) -> str:
    minutes = int(value.total_seconds() // 60)
    return f"{minutes // 60} h" if minutes % 60 == 0 else f"{minutes} min"


# --- 3. send -----------------------------------------------------------------------------------------
@dataclass
class SendSummary:
    sent: list[int] = field(default_factory=list)
    retried: list[tuple[int, str]] = field(default_factory=list)
    failed: list[tuple[int, str]] = field(default_factory=list)
    released: list[int] = field(default_factory=list)  # claimed, not tried (deadline, relay down): no attempt counted
    lost: list[int] = field(default_factory=list)  # their lease was taken over: not sent, or sent and not recorded
    #: seconds from the relay's answer to the commit of its record, per message: the duplicate window
    record_delays: list[float] = field(default_factory=list)


def build_message(settings: Settings, row: ScheduleRow, file: FileRow, now: dt.datetime,
                  to: tuple[str, ...] | None = None) -> OutgoingMessage:
    """The e-mail for one file: its stored body (``multipart/alternative`` text + HTML with ``cid:``
    charts, or plain text) with the file attached, zipped if too large, or a clear note if still
    too large; an alert's message as it was built.

    ``to`` is the file's recipients (frozen when it was built); the schedule's by default.
    """
    path = Path(file.path or "")
    if row.kind == "alert" or path.suffix == ".eml" and row.format == "none":
        stored = email.message_from_bytes(path.read_bytes(), _class=EmailMessage, policy=email.policy.default)
        return _finish(settings, row, file, now, to, stored, stored["Subject"])
    body = body_path(path)
    if not body.is_file():
        return _plain_message(settings, row, file, now, to)
    report = get_report(row.report)
    stored = email.message_from_bytes(body.read_bytes(), _class=EmailMessage, policy=email.policy.default)
    if stored[_NO_ATTACHMENT]:
        del stored[_NO_ATTACHMENT]
        return _finish(settings, row, file, now, to, stored, None)
    attachment, note = _attachment(settings, row, file)
    if note:
        _append_note(stored, note)
    if attachment is not None:
        maintype, subtype = CONTENT_TYPES.get(attachment.kind, "application/octet-stream").split("/")
        stored.add_attachment(attachment.data, maintype=maintype, subtype=subtype, filename=attachment.filename)
    period = f"{file.period_start} to {file.period_end}" if file.period_start != file.period_end else str(file.period_start)
    return _finish(settings, row, file, now, to, stored, f"{report.title} for {row.client_name}: {period}")


def _finish(settings: Settings, row: ScheduleRow, file: FileRow, now: dt.datetime, to: tuple[str, ...] | None,
            message: EmailMessage, subject: str | None) -> OutgoingMessage:
    """Headers set on a stored body (values validated when the schedule was saved; a control
    character that got here anyway is refused by ``header``), as the wire bytes."""
    report = get_report(row.report)
    period = f"{file.period_start} to {file.period_end}" if file.period_start != file.period_end else str(file.period_start)
    # an alert's subject was decided when it was built (a custom one for the alert, never for "Recovered")
    chosen = subject if row.kind == "alert" else row.subject or subject
    subject = chosen or f"{report.title} for {row.client_name}: {period}"
    message_id = file.message_id or message_id_for(file.id)
    recipients = to or row.recipients
    for name in ("From", "To", "Subject", "Message-ID", "Date", "Reply-To", "MIME-Version"):
        del message[name]
    heads = [header("From", settings.mail.mail_from), address_header("To", recipients), header("Subject", subject),
             header("Message-ID", message_id), header("Date", format_datetime(now))]
    if row.reply_to:
        heads.append(header("Reply-To", row.reply_to))
    heads.append(b"MIME-Version: 1.0")
    data = b"\r\n".join(heads) + b"\r\n" + message.as_bytes(policy=email.policy.SMTP)
    return OutgoingMessage(message_id=message_id, sender=settings.mail.mail_from, to=tuple(recipients), data=data)


def _append_note(message: EmailMessage, note: str) -> None:
    """A line (the attachment was zipped, or left out) at the end of the text and HTML parts."""
    for part in message.walk():
        if part.get_content_type() == "text/plain" and not part.is_attachment():
            part.set_content(part.get_content().rstrip("\n") + f"\n\n{note}\n")
        elif part.get_content_type() == "text/html":
            html = part.get_content().replace("</body>", f'<p style="font-family:Arial,sans-serif;font-size:13px">'
                                                          f"{html_escape(note)}</p></body>", 1)
            part.set_content(html, subtype="html")


def _attachment(settings: Settings, row: ScheduleRow, file: FileRow) -> tuple[Attachment | None, str | None]:
    """The file as it can be attached (zipped when too large), and the note that says so."""
    path = Path(file.path or "")
    data = path.read_bytes()
    name = path.name.split("-", 1)[1] if "-" in path.name else path.name
    limit = settings.mail.max_attachment_bytes
    if fits(len(data), limit):
        return Attachment(data, name, path.suffix.lstrip(".")), None
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr(name, data)
    zipped = buffer.getvalue()
    if fits(len(zipped), limit):
        return (Attachment(zipped, f"{name}.zip", "zip"),
                f"The file is zipped: {len(data) / 1e6:.1f} MB would exceed the {limit / 1e6:.0f} MB limit.")
    return None, (f"The file is too large to attach: {base64_size(len(zipped)) / 1e6:.1f} MB even zipped, over the "
                  f"{limit / 1e6:.0f} MB limit. Choose a shorter period or the parquet format, or ask us for the file "
                  f"(reference: report file {file.id}).")


def _plain_message(settings: Settings, row: ScheduleRow, file: FileRow, now: dt.datetime,
                   to: tuple[str, ...] | None) -> OutgoingMessage:
    """A file built without a stored body (before bodies were stored): a note and the file."""
    report = get_report(row.report)
    period = f"{file.period_start} to {file.period_end}" if file.period_start != file.period_end else str(file.period_start)
    lines = [f"{report.title} for {row.client_name}, local days {period} ({row.client_timezone}).",
             f"{file.rows} rows, {row.format.upper()}."]
    attachment, note = _attachment(settings, row, file)
    if note:
        lines.append(note)
    return compose(sender=settings.mail.mail_from, to=to or row.recipients,
                   subject=row.subject or f"{report.title} for {row.client_name}: {period}",
                   message_id=file.message_id or message_id_for(file.id), date=now, text="\n".join(lines) + "\n",
                   attachment=attachment, reply_to=row.reply_to)


def send_files(engine: Engine, settings: Settings, mailer: Mailer, owner: str, *, now: dt.datetime | None = None,
               limit: int = 1000, lease: dt.timedelta = DEFAULT_LEASE, rng: random.Random | None = None,
               file_ids: Iterable[int] | None = None, policy: SendPolicy | None = None,
               clock: Clock | None = None) -> SendSummary:
    """Claim and send every file that may be sent now (or just ``file_ids``), in batches, over one
    connection; one file's failure never stops the others, a relay that cannot be reached stops
    the batch (the files not tried are given back, uncounted), and so does the batch's deadline.

    Each recipient gets its own outcome: accepted, deferred (4xx: retried with the file's backoff,
    alone), refused (5xx: recorded, never retried). A file is ``sent`` when every recipient has
    accepted or refused it. A message is only started while its file's lease covers it (renewed
    when it would not), and checked once more right before ``DATA``: a sender never sends a file
    whose lease it no longer holds.
    """
    batch = _SendBatch(ReportFileRepository(engine), ScheduleRepository(engine), settings, mailer, owner,
                       policy or SendPolicy.from_settings(settings, lease), clock or clock_from(now), rng)
    return batch.run(limit, None if file_ids is None else list(file_ids))


class _SendBatch:
    def __init__(self, files: ReportFileRepository, schedules: ScheduleRepository, settings: Settings, mailer: Mailer,
                 owner: str, policy: SendPolicy, clock: Clock, rng: random.Random | None) -> None:
        self.files, self.schedules, self.settings, self.mailer = files, schedules, settings, mailer
        self.owner, self.policy, self.clock, self.rng = owner, policy, clock, rng
        self.summary = SendSummary()
        #: the most one message can take: the body's send and the reply, each bounded by the timeout
        self.message_time = dt.timedelta(seconds=2 * mailer.timeout_s)
        self.lease_end: dict[int, dt.datetime] = {}
        self.rows: dict[int, ScheduleRow | None] = {}
        self.recorder = _Recorder(files, owner, clock, policy, self.summary)

    def run(self, limit: int, file_ids: list[int] | None) -> SendSummary:
        deadline = self.clock() + self.policy.deadline
        with self.mailer.session() as send, self.recorder:
            while limit > 0:
                now = self.clock()
                if now + self.message_time > deadline:
                    break
                batch = self.files.claim_sendable(self.owner, now, self.policy.lease,
                                                  min(self.policy.claim_batch, limit), file_ids)
                if not batch:
                    break
                limit -= len(batch)
                if self._send_batch(send, batch, deadline):
                    break
        return self.summary

    def _send_batch(self, send: Send, batch: list[FileRow], deadline: dt.datetime) -> bool:
        """Send a claimed batch; ``True`` when the run must stop (deadline, relay down)."""
        self.lease_end.update({f.id: f.lease_expires_at for f in batch})
        recipients = self.files.recipients(f.id for f in batch)
        missing = {f.schedule_id for f in batch} - set(self.rows)
        if missing:
            found = self.schedules.get_many(missing)
            self.rows.update({i: found.get(i) for i in missing})
        for position, file in enumerate(batch):
            rest = [f.id for f in batch[position:]]
            now = self.clock()
            if now + self.message_time > deadline:
                self._release(rest, None)
                return True
            if not lease_holds(self.lease_end[file.id], now, 2 * self.message_time):
                held = self.files.renew_sending(rest, self.owner, now + self.policy.lease)
                for file_id in rest:
                    self.lease_end[file_id] = now + self.policy.lease if file_id in held else now
                if file.id not in held:
                    self.summary.lost.append(file.id)
                    continue
            retry_at = self._send_one(send, file, recipients[file.id], deadline)
            if retry_at is not None:  # the relay is down: give the rest back for when this one is retried
                self._release(rest[1:], retry_at)
                return True
        return False

    def _release(self, file_ids: list[int], retry_at: dt.datetime | None) -> None:
        if file_ids:
            self.files.release(self.owner, file_ids, retry_at)
            self.summary.released.extend(file_ids)

    def _before_data(self, file_id: int) -> Callable[[], None]:
        def check() -> None:
            now = self.clock()
            if lease_holds(self.lease_end[file_id], now, self.message_time):
                return
            if file_id not in self.files.renew_sending([file_id], self.owner, now + self.policy.lease):
                raise Cancelled(f"file {file_id}: its lease was taken over")
            self.lease_end[file_id] = now + self.policy.lease
        return check

    def _send_one(self, send: Send, file: FileRow, recipients: list[RecipientRow],
                  deadline: dt.datetime) -> dt.datetime | None:
        """Send one file to its open recipients and queue its outcome; returns the retry instant when
        the relay could not be reached (the batch stops)."""
        started = self.clock()
        states = {r.address: r.state for r in recipients}
        targets = [r.address for r in recipients if r.state in OPEN_STATES]
        row = self.rows.get(file.schedule_id)
        relay_down = False
        try:
            if row is None:
                raise PermanentMailError("the schedule was deleted")
            if not targets:
                raise PermanentMailError("no recipient left to send to")
            if not file.path or not Path(file.path).is_file():
                raise PermanentMailError(f"the file is missing on disk: {file.path}")
            try:
                message = build_message(self.settings, row, file, started, to=tuple(r.address for r in recipients))
            except (OSError, ValueError) as exc:
                raise PermanentMailError(f"the message could not be written: {type(exc).__name__}: {exc}") from exc
            # Bounded by the time a message may take (what the lease was checked against), and the deadline.
            finish_by = time.monotonic() + min(deadline - started, self.message_time).total_seconds()
            delivery = send(message, targets, before_data=self._before_data(file.id), finish_by=finish_by)
            answered = time.monotonic()
        except Cancelled:
            self.summary.lost.append(file.id)
            return None
        except TemporaryMailError as exc:  # what the server answered before the failure still counts
            answered = time.monotonic()
            replies = {a: (DEFERRED, f"no answer: {exc}") for a in targets}
            replies |= {a: (reply_state(r), r) for a, r in {**exc.deferred, **exc.refused}.items()}
            error, relay_down = str(exc), exc.relay_down
        except PermanentMailError as exc:
            answered = time.monotonic()
            replies, error, relay_down = {a: (FAILED, str(exc)) for a in targets}, str(exc), exc.relay_down
        else:
            replies = {a: (ACCEPTED, delivery.reply) for a in delivery.accepted}
            replies |= {a: (reply_state(r), r) for a, r in {**delivery.deferred, **delivery.refused}.items()}
            error = None
        states.update({address: state for address, (state, _) in replies.items()})
        verdict = file_verdict(states, file.attempts, self.policy.max_attempts)
        open_replies = {a: r for a, (s, r) in replies.items() if s in OPEN_STATES}
        refused = {r.address: r.last_reply for r in recipients if r.state == REFUSED}  # earlier attempts'
        refused |= {a: r for a, (s, r) in replies.items() if s == REFUSED}
        next_at = None
        if verdict == "sent":
            note = f"refused by the server for: {refused}" if refused else None
            self.summary.sent.append(file.id)
        elif verdict == "retry":
            note = error or f"deferred by the server for: {open_replies}"
            next_at = self.clock() + backoff_delay(file.attempts, self.rng, self.policy.backoff_base,
                                                   self.policy.backoff_cap)
            self.summary.retried.append((file.id, note))
        else:
            if any(s in OPEN_STATES for s in states.values()):
                note = f"gave up after {file.attempts} attempts: {error or open_replies}"
            else:
                note = error or f"every recipient refused: {refused}"
            self.summary.failed.append((file.id, note))
        self.recorder.add(SendOutcome(file.id, file.attempts, verdict, replies, started, note, next_at), answered)
        if not relay_down:
            return None
        return next_at or self.clock() + backoff_delay(1, self.rng, self.policy.backoff_base, self.policy.backoff_cap)


class _Recorder:
    """Writes a batch's outcomes on a thread of its own: in batches of ``mark_batch``, and never later
    than ``mark_interval`` after an outcome was queued, however long the relay then takes over the
    next message. That delay is the window in which a sender that dies has sent what it has not
    recorded. A failure to write is raised in the sender's thread when the batch ends."""

    def __init__(self, files: ReportFileRepository, owner: str, clock: Clock, policy: SendPolicy,
                 summary: SendSummary) -> None:
        self.files, self.owner, self.clock, self.summary = files, owner, clock, summary
        self.batch, self.interval = policy.mark_batch, policy.mark_interval
        self.queue: list[SendOutcome] = []
        self.answered: list[float] = []
        self.since: dt.datetime | None = None
        self.full: list[list[SendOutcome]] = []
        self.writing = self.closed = False
        self.error: BaseException | None = None
        self.cond = threading.Condition()
        self.thread = threading.Thread(target=self._loop, name=f"record-{owner}", daemon=True)

    def __enter__(self) -> _Recorder:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        with self.cond:
            self.closed = True
            self.cond.notify_all()
        self.thread.join()
        if self.error is not None and exc[0] is None:
            raise self.error

    def add(self, outcome: SendOutcome, answered: float) -> None:
        """Queue an outcome; ``answered`` is the ``time.monotonic()`` of the relay's answer."""
        with self.cond:
            self.answered.append(answered)
            self.queue.append(outcome)
            self.since = self.since or self.clock()
            if len(self.queue) >= self.batch:
                self.full.append(self.queue)
                self.queue, self.since = [], None
            self.cond.notify_all()

    def _next(self) -> list[SendOutcome] | None:
        with self.cond:
            while True:
                if self.full:
                    work = self.full.pop(0)
                elif self.queue and (self.closed or self.clock() - self.since >= self.interval):
                    work, self.queue, self.since = self.queue, [], None
                elif self.closed:
                    return None
                else:
                    self.cond.wait(timeout=max(self.interval.total_seconds() / 4, 0.005))
                    continue
                self.writing = True
                return work

    def _loop(self) -> None:
        while (work := self._next()) is not None:
            try:
                recorded = self.files.record_sends(self.owner, work, self.clock())
                done = time.monotonic()
                self.summary.lost.extend(o.file_id for o in work if o.file_id not in recorded)
                with self.cond:
                    answered, self.answered = self.answered[:len(work)], self.answered[len(work):]
                self.summary.record_delays.extend(done - t for t in answered)
            except BaseException as exc:
                self.error = self.error or exc
            with self.cond:
                self.writing = False
                self.cond.notify_all()


def send_request(engine: Engine, now: dt.datetime, window: dt.timedelta = dt.timedelta(minutes=5),
                 limit: int = 1000) -> SendRequest:
    """What the sender sensor asks for: a run key when files wait to be sent, else when the next
    retry is due.

    The key is the waiting set (ids and attempts) and the current ``window``: a new file is sent at
    once, the same set is asked for at most once per window (a send run claims every file anyway),
    and a set that a crashed run left behind is asked for again in the next window rather than never.
    """
    files = ReportFileRepository(engine)
    waiting = files.sendable(now, limit)
    if not waiting:
        return SendRequest(None, 0, files.next_retry_at())
    digest = hashlib.sha256(repr(waiting).encode()).hexdigest()[:16]
    return SendRequest(f"send:{digest}:{int(now.timestamp()) // int(window.total_seconds())}", len(waiting), None)


@dataclass(frozen=True)
class SendRequest:
    run_key: str | None
    waiting: int
    next_retry_at: dt.datetime | None


# --- 4. clean ----------------------------------------------------------------------------------------
@dataclass
class CleanSummary:
    deleted: list[int] = field(default_factory=list)
    missing_on_disk: list[int] = field(default_factory=list)
    refused_paths: list[tuple[int, str]] = field(default_factory=list)
    skipped_deleted: int = 0  # records of occurrences that sent nothing, past the retention


def inside(folder: Path, path: Path) -> bool:
    """Is ``path`` inside ``folder`` once both are resolved (``..`` and symlinks included)?"""
    return path.resolve().is_relative_to(folder.resolve())


def clean_files(engine: Engine, settings: Settings, now: dt.datetime | None = None) -> CleanSummary:
    """Delete sent files older than the retention: the file from disk first, then its row (and the
    records of skipped occurrences older than the retention).

    Only ``sent`` rows are ever considered; a path outside the files folder is refused (row kept,
    reported); a file already gone from disk is reported, and its row deleted.
    """
    now = now or system_clock()
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
            body_path(path).unlink(missing_ok=True)
        if files.delete_sent(file.id):
            summary.deleted.append(file.id)
    summary.skipped_deleted = files.delete_skipped_before(now - dt.timedelta(days=settings.retention_days))
    return summary


def delete_schedule(engine: Engine, settings: Settings, schedule_id: int) -> int:
    """Delete a schedule, its file rows and their files (inside the files folder only)."""
    get_schedule(engine, schedule_id)
    removed = 0
    for path in ScheduleRepository(engine).delete(schedule_id):
        if inside(settings.files_dir, Path(path)):
            Path(path).unlink(missing_ok=True)
            body_path(path).unlink(missing_ok=True)
            removed += 1
    return removed




# --- preview -------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Preview:
    occurrence: dt.datetime
    path: Path | None  # the .eml written; None when the occurrence would send nothing
    note: str  # what it would send, or why nothing


def preview_message(app, schedule_id: int, out: str | Path | None = None) -> Preview:
    """Write the message the schedule's next occurrence would send (``out``, default
    ``<outbox>/preview-schedule-<id>.eml``), without sending or recording anything: no file row,
    no schedule change, no usage-log row (missing closed days may be computed into the report
    cache, as any read does). An alert is checked on the window that ends now, against its
    current incident state."""
    row = get_schedule(app.engine, schedule_id)
    now = app.now()
    occurrence = row.next_send_at or next_occurrence(row, now)
    early = ""
    if row.kind == "alert":
        occurrence = now.replace(microsecond=0)
    elif period_for(period_of(row), occurrence, row.client_timezone)[1] >= now.astimezone(
            parse_zone(row.client_timezone)).date():
        # its period has days that have not closed yet: show what it would send if it were due now
        early = f" (the period of {occurrence:%Y-%m-%d %H:%M} UTC has not closed yet: previewed as if due now)"
        occurrence = now.replace(microsecond=0)
    target = Path(out) if out is not None else Path(app.settings.outbox_dir) / f"preview-schedule-{row.id}.eml"
    if target.is_dir():
        raise InvalidInput("out", f"{str(target)[:200]!r} is a folder; give a file name")
    placeholder = FileRow(id=0, schedule_id=row.id, occurrence=occurrence, period_start=None, period_end=None,
                          format=row.format, path=None, bytes=None, checksum=None, rows=None, state="building",
                          attempts=0, build_attempts=0, last_error=None, next_attempt_at=None, lease_owner=None,
                          lease_expires_at=None, message_id=None, created_at=now, sent_at=None)
    with tempfile.TemporaryDirectory(prefix="report-preview-") as folder:
        built = build_file(app.engine, app.settings, row, placeholder, now, app=app, folder=Path(folder))
        if "skip" in built:
            return Preview(occurrence, None, f"nothing would be sent: {built['skip']}{early}")
        period = built["period"]
        file = replace(placeholder, path=built["path"], period_start=period[0], period_end=period[1],
                       rows=built["rows"], bytes=built["size"],
                       message_id=f"<report-preview-{row.id}-{uuid.uuid4().hex[:12]}@report-pipelines>")
        message = build_message(app.settings, row, file, now)
    write_bytes(target, message.data)
    return Preview(occurrence, target, f"{len(message.data):,} bytes to {', '.join(message.to)}{early}")


# --- operators: send now, resend, history -------------------------------------------------------------
def send_now(engine: Engine, settings: Settings, mailer: Mailer, schedule_id: int, owner: str,
             now: dt.datetime | None = None) -> FileRow:
    """Build and send an extra occurrence at ``now`` (the schedule's own plan is unchanged)."""
    clock = clock_from((now or system_clock()).replace(microsecond=0))
    now = clock()
    row = get_schedule(engine, schedule_id)
    files = ReportFileRepository(engine)
    policy = BuildPolicy.from_settings(settings)
    claim = files.claim_build(row.id, now, row.format, owner, now, policy.lease, policy.max_attempts)
    if claim.status != "claimed":
        raise InvalidInput("schedule", "a send for this instant is already in progress; try again in a second")
    _build_and_record(engine, settings, row, claim.file, owner, policy, clock, advance=None, give_up=True)
    send_files(engine, settings, mailer, owner, clock=clock, file_ids=[claim.file.id])
    return files.get(claim.file.id)


def resend_file(engine: Engine, settings: Settings, mailer: Mailer, file_id: int, owner: str,
                now: dt.datetime | None = None) -> FileRow:
    """An operator's resend of a file that ran out of attempts (or that some recipients never got):
    its attempts count afresh, every recipient that has not accepted it is tried again (those who
    did are not sent it twice), a file whose build had failed is built again first, and its
    history is kept. Then it is sent at once (a temporary failure leaves it to the sender's retries)."""
    clock = clock_from(now)
    files = ReportFileRepository(engine)
    file = files.get(file_id)
    if file is None:
        raise NotFound("file", f"no report file with id {file_id}")
    recipients = files.recipients([file_id])[file_id]
    open_or_lost = [r for r in recipients if r.state != ACCEPTED]
    if not (file.state == FAILED or (file.state == "sent" and open_or_lost)):
        what = "every recipient has it" if file.state == "sent" else f"it is {file.state}"
        raise InvalidInput("file", f"file {file_id} cannot be resent: {what} (only a failed file, or a sent one "
                                   "that some recipients did not get, can be)")
    if not files.reopen(file_id, owner, clock(), expected_state=file.state):
        raise InvalidInput("file", f"file {file_id} changed meanwhile; look at it again (schedules show)")
    if file.path is None:  # it was never built: build it now
        row = get_schedule(engine, file.schedule_id)
        policy = BuildPolicy.from_settings(settings)
        claim = files.claim_build(row.id, file.occurrence, row.format, owner, clock(), policy.lease, policy.max_attempts)
        if claim.status != "claimed":
            raise InvalidInput("file", f"file {file_id} is being built by another process; look at it again later")
        _build_and_record(engine, settings, row, claim.file, owner, policy, clock, advance=None, give_up=True)
    send_files(engine, settings, mailer, owner, clock=clock, file_ids=[file_id])
    return files.get(file_id)


@dataclass(frozen=True)
class FileDetail:
    file: FileRow
    recipients: list[RecipientRow]
    attempts: list[AttemptRow]


def file_detail(engine: Engine, file_id: int) -> FileDetail:
    """A file, its recipients' states and its attempt history (oldest first)."""
    files = ReportFileRepository(engine)
    file = files.get(file_id)
    if file is None:
        raise NotFound("file", f"no report file with id {file_id}")
    return FileDetail(file, files.recipients([file_id])[file_id], files.attempts_of(file_id))
