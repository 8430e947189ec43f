"""`schedules`: scheduled report e-mails."""

from __future__ import annotations

import sys

import click

from report_pipelines.cli.base import _app, _engine, _friendly, main


class _OneLineError(click.BadParameter):
    """A bad option value reported like every other refusal: ``error: --option: ...``, exit 2."""

    def show(self, file=None) -> None:
        click.echo(f"error: {self.param_hint}: {self.message}", err=True)


class _Whole(click.ParamType):
    """A whole number (``--days``, ``--month-day``, ids), refused in one line when it is not one."""

    name = "integer"

    def convert(self, value, param, ctx):
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        text = str(value).strip()
        if text.lstrip("-").isdigit() and text.isascii():
            return int(text)
        hint = (param.opts[0] if param.opts and param.param_type_name == "option" else param.human_readable_name) \
            if param else "value"
        raise _OneLineError(f"{str(value)[:40]!r} is not a whole number", ctx=ctx, param=param, param_hint=hint)


WHOLE = _Whole()


# --- schedules ------------------------------------------------------------------------------------
@main.group()
def schedules() -> None:
    """Scheduled report e-mails (planned, built, sent and cleaned by the Dagster sensors)."""


def _next_send_text(row) -> str:

    from report_pipelines.domain.timezones import parse_zone
    from report_pipelines.services.scheduled_reports import next_occurrence

    if not row.active:
        return f"paused ({row.paused_reason or 'no reason given'})"
    instant = row.next_send_at
    note = ""
    if instant is None:
        instant, note = next_occurrence(row, _app().now()), " (not planned yet)"
    local = instant.astimezone(parse_zone(row.timezone))
    return f"{local:%Y-%m-%d %H:%M %Z} = {instant:%Y-%m-%d %H:%M} UTC{note}"


def _describe_rule(row) -> str:
    if row.kind == "alert":
        return f"alert when {row.condition} ({row.client_timezone}), incident {row.alert_state or 'clear'}"
    names = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
    when = {"daily": "daily", "weekly": "weekly on " + ",".join(names[d] for d in row.weekdays),
            "monthly": f"monthly on day {row.month_day}"}[row.frequency]
    period = f"last {row.period_days} days" if row.period == "last_n_days" else row.period.replace("_", " ")
    body = f", body {row.body}" if row.body != "summary" else ""
    return f"{row.report} ({period}) {when} at {row.send_time} {row.timezone}, {row.format}{body}"


@schedules.command("add")
@click.option("--client", required=True, help="Client slug.")
@click.option("--report", default="daily_summary", show_default=True,
              help="A report name (report-pipelines reports list); an alert reads daily_summary's figures.")
@click.option("--period", default="yesterday", show_default=True,
              help="yesterday, last_n_days, last_week, last_month or month_to_date.")
@click.option("--days", "period_days", type=WHOLE, default=None, help="N for --period last_n_days.")
@click.option("--frequency", default="daily", show_default=True, help="daily, weekly or monthly.")
@click.option("--at", "send_time", default="07:00", show_default=True, help="Local send time, HH:MM.")
@click.option("--weekdays", default="", help="For weekly: e.g. mon,wed,fri.")
@click.option("--month-day", type=WHOLE, default=None, help="For monthly: 1-31 (31 = the month's last day).")
@click.option("--timezone", default=None,
              help="IANA zone of the send time [default: the client's]; the period is always the client's days.")
@click.option("--to", "recipients", required=True, help="Recipients, comma-separated addresses.")
@click.option("--subject", default=None, help="E-mail subject [default: report, client and period].")
@click.option("--format", "fmt", default="csv", show_default=True, help="csv, xlsx, parquet or pdf.")
@click.option("--kind", default="report", show_default=True,
              help="report (a file every occurrence) or alert (a condition checked every occurrence).")
@click.option("--condition", default=None,
              help="For --kind alert: e.g. 'service_level<80 queue=support window=1h' (see the README).")
@click.option("--body", default="summary", show_default=True,
              help="summary (KPIs, chart, table), table (KPIs and table) or none (plain text).")
@click.option("--no-calls", "no_calls", default="send", show_default=True,
              help="When the period had no calls: send (as usual), skip (send nothing) or notice (one line).")
@click.option("--message", default=None, help="Your own paragraph, shown first in the e-mail.")
@click.option("--reply-to", "reply_to", default=None, help="Reply-To address.")
@_friendly
def schedules_add(client: str, report: str, period: str, period_days, frequency: str, send_time: str,
                  weekdays: str, month_day, timezone, recipients: str, subject, fmt: str, kind: str, condition,
                  body: str, no_calls: str, message, reply_to) -> None:
    """Add a schedule (a report, or an alert)."""
    from report_pipelines.services.scheduled_reports import add_schedule

    row = add_schedule(_engine(), client, report=report, period=period, period_days=period_days,
                       frequency=frequency, send_time=send_time,
                       weekdays=[w for w in weekdays.replace(" ", "").split(",") if w], month_day=month_day,
                       timezone=timezone, recipients=recipients, subject=subject, fmt=fmt, kind=kind,
                       condition=condition, body=body, no_calls=no_calls, message=message, reply_to=reply_to,
                       now=_app().now())
    click.echo(f"added schedule {row.id}: {_describe_rule(row)} -> {', '.join(row.recipients)}")
    click.echo(f"  next send: {_next_send_text(row)}")


@schedules.command("edit")
@click.argument("schedule_id", type=WHOLE)
@click.option("--report", default=None)
@click.option("--period", default=None)
@click.option("--days", "period_days", type=WHOLE, default=None)
@click.option("--frequency", default=None)
@click.option("--at", "send_time", default=None)
@click.option("--weekdays", default=None)
@click.option("--month-day", type=WHOLE, default=None)
@click.option("--timezone", default=None)
@click.option("--to", "recipients", default=None)
@click.option("--subject", default=None, help="An empty value goes back to the default subject.")
@click.option("--format", "fmt", default=None)
@click.option("--condition", default=None)
@click.option("--body", default=None)
@click.option("--no-calls", "no_calls", default=None)
@click.option("--message", default=None)
@click.option("--no-message", "no_message", is_flag=True, default=False, help="Remove the message.")
@click.option("--reply-to", "reply_to", default=None)
@click.option("--no-reply-to", "no_reply_to", is_flag=True, default=False, help="Remove the Reply-To.")
@_friendly
def schedules_edit(schedule_id: int, **options) -> None:
    """Change some fields (same options as add); a new rule is re-planned from now on."""
    from report_pipelines.services.scheduled_reports import edit_schedule

    removed = [name for name, flag in (("message", options.pop("no_message")), ("reply_to", options.pop("no_reply_to")))
               if flag]
    changes = {name: value for name, value in options.items() if value is not None}
    for name in removed:
        if name in changes:
            click.echo(f"error: {name}: give --{name.replace('_', '-')} or --no-{name.replace('_', '-')}, not both",
                       err=True)
            sys.exit(2)
        changes[name] = ""  # an empty value removes it
    if "weekdays" in changes:
        changes["weekdays"] = [w for w in changes["weekdays"].replace(" ", "").split(",") if w]
    if not changes:
        click.echo("error: schedule: nothing to change (give at least one option)", err=True)
        sys.exit(2)
    row = edit_schedule(_engine(), schedule_id, now=_app().now(), **changes)
    click.echo(f"schedule {row.id}: {_describe_rule(row)} -> {', '.join(row.recipients)}")
    click.echo(f"  next send: {_next_send_text(row)}")


@schedules.command("list")
@click.option("--client", default=None, help="Only this client's schedules.")
@_friendly
def schedules_list(client) -> None:
    """List schedules with their next send in local time and UTC."""
    from report_pipelines.adapters.db.schedules import ScheduleRepository
    from report_pipelines.services.clients import get_client

    engine = _engine()
    client_id = get_client(engine, client).id if client else None
    rows = ScheduleRepository(engine).list(client_id)
    if not rows:
        click.echo("no schedules (report-pipelines schedules add --client SLUG --report R --to ADDRESS)")
    for row in rows:
        click.echo(f"{row.id:>5}  {row.client_slug:<28} {_describe_rule(row)}")
        click.echo(f"       next: {_next_send_text(row)}")


@schedules.command("show")
@click.argument("schedule_id", type=WHOLE)
@_friendly
def schedules_show(schedule_id: int) -> None:
    """A schedule and its recent files (state, attempts, last error, each recipient's state)."""
    from report_pipelines.adapters.db.schedules import ReportFileRepository
    from report_pipelines.services.scheduled_reports import get_schedule

    engine = _engine()
    row = get_schedule(engine, schedule_id)
    click.echo(f"schedule {row.id} of {row.client_slug}: {_describe_rule(row)}")
    click.echo(f"  to: {', '.join(row.recipients)}")
    click.echo(f"  subject: {row.subject or '(default)'}")
    if row.kind == "report":
        click.echo(f"  body: {row.body}; when the period had no calls: {row.no_calls}")
    else:
        since = f" since {row.alert_since:%Y-%m-%d %H:%M} UTC" if row.alert_since else ""
        click.echo(f"  condition: {row.condition}; incident: {row.alert_state or 'clear'}{since}")
    if row.reply_to:
        click.echo(f"  reply-to: {row.reply_to}")
    if row.message:
        click.echo(f"  message: {row.message.splitlines()[0][:70]}" + (" ..." if len(row.message) > 70
                                                                      or "\n" in row.message else ""))
    click.echo(f"  next: {_next_send_text(row)}")
    repo = ReportFileRepository(engine)
    files = repo.list(schedule_id, limit=20)
    click.echo(f"  files ({len(files)} most recent):" if files else "  no files yet")
    recipients = repo.recipients(f.id for f in files)
    for f in files:
        click.echo(_file_line(f))
        for r in recipients[f.id]:
            reply = f"  {r.last_reply}" if r.last_reply else ""
            click.echo(f"           {r.address}: {r.state} (attempts {r.attempts}){reply}")


def _file_line(f) -> str:
    error = f"  last error: {f.last_error}" if f.last_error else ""
    attempts = f"attempts {f.attempts}" if f.path else f"build attempts {f.build_attempts}"
    return f"    {f.id:>6} {f.occurrence:%Y-%m-%d %H:%M}Z {f.state:<8} {attempts} {f.period_start}..{f.period_end}{error}"


@schedules.command("attempts")
@click.argument("file_id", type=WHOLE)
@_friendly
def schedules_attempts(file_id: int) -> None:
    """One report file's history: every build and send attempt, its outcome, error and replies."""
    from report_pipelines.services.scheduled_reports import file_detail

    detail = file_detail(_engine(), file_id)
    click.echo(_file_line(detail.file).strip())
    seen: dict[str, int] = {"build": 0, "send": 0}
    for a in detail.attempts:
        if a.outcome == "resend":
            seen["send"] = 0
        for missing in range(seen[a.kind] + 1, a.number):
            click.echo(f"  {a.kind} {missing}: no record: its process stopped before finishing (its lease expired)")
        seen[a.kind] = max(seen[a.kind], a.number)
        took = (a.finished_at - a.started_at).total_seconds()
        click.echo(f"  {a.kind} {a.number}: {a.outcome} at {a.finished_at:%Y-%m-%d %H:%M:%S}Z ({took:.1f} s, {a.owner})"
                   + (f": {a.error}" if a.error else ""))
        for address, reply in a.recipients.items():
            click.echo(f"      {address}: {reply}")


@schedules.command("pause")
@click.argument("schedule_id", type=WHOLE)
@click.option("--reason", default="paused by an operator", show_default=True)
@_friendly
def schedules_pause(schedule_id: int, reason: str) -> None:
    """Stop sending (the schedule is kept)."""
    from report_pipelines.adapters.db.schedules import ScheduleRepository
    from report_pipelines.services.scheduled_reports import get_schedule

    get_schedule(_engine(), schedule_id)
    ScheduleRepository(_engine()).set_active(schedule_id, False, reason, now=_app().now())
    click.echo(f"paused schedule {schedule_id}: {reason}")


@schedules.command("resume")
@click.argument("schedule_id", type=WHOLE)
@_friendly
def schedules_resume(schedule_id: int) -> None:
    """Send again, from the next occurrence after now (missed ones are not sent)."""
    from report_pipelines.adapters.db.schedules import ScheduleRepository
    from report_pipelines.services.scheduled_reports import get_schedule

    get_schedule(_engine(), schedule_id)
    ScheduleRepository(_engine()).set_active(schedule_id, True, now=_app().now())
    click.echo(f"resumed schedule {schedule_id}: {_next_send_text(get_schedule(_engine(), schedule_id))}")


@schedules.command("delete")
@click.argument("schedule_id", type=WHOLE)
@_friendly
def schedules_delete(schedule_id: int) -> None:
    """Delete a schedule, its files and their rows."""
    from report_pipelines.services.scheduled_reports import delete_schedule

    removed = delete_schedule(_engine(), _app().settings, schedule_id)
    click.echo(f"deleted schedule {schedule_id} ({removed} files removed)")


@schedules.command("send-now")
@click.argument("schedule_id", type=WHOLE)
@_friendly
def schedules_send_now(schedule_id: int) -> None:
    """Build this schedule's report for now and send it at once (its plan is unchanged)."""
    import uuid

    from report_pipelines.adapters.mailer import mailer_from_settings
    from report_pipelines.services.scheduled_reports import send_now

    settings = _app().settings
    file = send_now(_engine(), settings, mailer_from_settings(settings), schedule_id, owner=f"cli-{uuid.uuid4().hex[:8]}",
                    now=_app().now())
    click.echo(f"file {file.id}: {file.state} ({file.rows} rows, {file.period_start}..{file.period_end}) {file.path}")
    if file.state != "sent":
        click.echo(f"error: not sent: {file.last_error}", err=True)
        sys.exit(1)




@schedules.command("preview")
@click.argument("schedule_id", type=WHOLE)
@click.option("--out", default=None, help="Where to write the .eml [default: <outbox>/preview-schedule-ID.eml].")
@_friendly
def schedules_preview(schedule_id: int, out) -> None:
    """Write the message the next occurrence would send, without sending or recording anything."""
    from report_pipelines.services.scheduled_reports import preview_message

    preview = preview_message(_app(), schedule_id, out)
    when = f"{preview.occurrence:%Y-%m-%d %H:%M} UTC"
    if preview.path is None:
        click.echo(f"schedule {schedule_id} at {when}: {preview.note}")
        return
    click.echo(f"schedule {schedule_id} at {when}: wrote {preview.path} ({preview.note})")


@schedules.command("resend")
@click.argument("file_id", type=WHOLE)
@_friendly
def schedules_resend(file_id: int) -> None:
    """Send a failed file again (or one that some recipients did not get): every recipient that has
    not accepted it is tried again, with fresh attempts; a file whose build failed is built first.
    Its history is kept (schedules attempts FILE_ID)."""
    import uuid

    from report_pipelines.adapters.mailer import mailer_from_settings
    from report_pipelines.services.scheduled_reports import resend_file

    settings = _app().settings
    file = resend_file(_engine(), settings, mailer_from_settings(settings), file_id, owner=f"cli-{uuid.uuid4().hex[:8]}",
                       now=_app().now())
    click.echo(f"file {file.id}: {file.state} (attempts {file.attempts}, {file.rows} rows, "
               f"{file.period_start}..{file.period_end})")
    if file.state != "sent":
        click.echo(f"error: file: not sent: {file.last_error}", err=True)
        sys.exit(1)
