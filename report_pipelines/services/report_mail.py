"""The report e-mail a manager reads at a glance: KPIs with their change, charts, a small table.

Three steps, each usable alone:

1. :func:`mail_tables` reads what a report's e-mail needs for a period (``daily_summary`` for the
   KPIs and a week or month chart, ``hourly_volume`` for a day's chart and the busiest hours, the
   report's own tables for its table) through ``read_report_arrow``: cached days from the store,
   missing closed days computed and cached on the way.
2. :func:`build_report_body` turns them (and the previous period's) into the body of an
   ``EmailMessage``: ``multipart/alternative`` of a plain-text part and a ``multipart/related``
   HTML part whose charts are inline ``cid:`` PNG parts. No header is set; the caller sets From /
   To / Subject / Message-ID and adds the attachment with ``message.add_attachment(...)``, which
   turns the message into ``multipart/mixed`` around the alternative.
3. :func:`compose_report_message` does both for a client and a period, previous period included,
   and :func:`write_demo_message` writes the rendered message, its HTML and a Chromium screenshot
   next to the outbox (the demo's and the README's example).

Body options (``body``): ``summary`` (KPIs, charts, the top rows of the report's table), ``table``
(KPIs and up to 50 rows of the table, no chart), ``none`` (one line of plain text: the attachment
carries the report).
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, replace
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from pathlib import Path

import pyarrow as pa
from sqlalchemy import Engine

from report_pipelines.adapters.charts import service_level_chart, volume_chart
from report_pipelines.adapters.db.repositories import ClientRepository
from report_pipelines.adapters.exports import SheetChart, WrittenFile, write_bytes, write_readable_xlsx, write_table
from report_pipelines.adapters.report_html import render_html, render_text
from report_pipelines.adapters.report_pdf import render_pdf
from report_pipelines.app import App
from report_pipelines.domain.errors import InvalidInput, NotFound
from report_pipelines.domain.report_digest import (
    BODY_OPTIONS,
    DEFAULT_SERVICE_LEVEL_TARGET,
    ReportDigest,
    build_digest,
    describe_period,
    period_days,
    previous_period,
)
from report_pipelines.domain.reports import get_report
from report_pipelines.domain.timezones import UTC
from report_pipelines.services.reading import read_report_arrow

#: Reports whose own day tables make the e-mail's table (the others show the busiest hours).
_OWN_TABLE = ("queue_performance", "agent_performance", "wait_distribution", "abandonment_curve", "daily_summary",
              "hourly_volume", "agent_availability")


def mail_reports(report: str) -> tuple[str, ...]:
    """The reports an e-mail of ``report`` reads: ``daily_summary``, ``hourly_volume`` and the
    report itself when its table is shown (``call_detail`` is never read for the body)."""
    name = get_report(report).name
    return tuple(dict.fromkeys(["daily_summary", "hourly_volume", *([name] if name in _OWN_TABLE else [])]))


def mail_tables(report: str, client: str | int, start: dt.date, end: dt.date, *, app: App,
                now: dt.datetime) -> dict[str, pa.Table]:
    """The day tables an e-mail of ``report`` needs for the client's local days ``start..end``."""
    return {name: read_report_arrow(name, client, start, end, app=app, now=now) for name in mail_reports(report)}


def render_charts(digest: ReportDigest) -> dict[str, bytes]:
    """The digest's charts as PNG bytes by name: ``volume`` and ``service_level``."""
    return {"volume": volume_chart(digest.series), "service_level": service_level_chart(digest.series)}


def body_message(digest: ReportDigest, charts: Mapping[str, bytes]) -> EmailMessage:
    """The body of the e-mail for a digest (see the module docstring); no headers but the MIME ones.
    ``charts`` are embedded in a ``summary`` body only."""
    message = EmailMessage()
    charts = charts if digest.body == "summary" else {}
    if digest.body == "none":
        own = "".join(f"\n{line}" for line in digest.message.split("\n")) + "\n" if digest.message else ""
        message.set_content(f"{digest.report_title} for {digest.client_name}, {digest.period_text}: "
                            f"the report is attached.\n{own}")
        return message
    cids = {name: f"<{name}.{uuid.uuid4().hex[:16]}@report-pipelines>" for name in charts}  # short: never folded
    message.set_content(render_text(digest))
    message.add_alternative(render_html(digest, {name: cid.strip("<>") for name, cid in cids.items()}), subtype="html")
    html = message.get_payload()[1]
    for name, png in charts.items():
        html.add_related(png, maintype="image", subtype="png", cid=cids[name], filename=f"{name}.png",
                         disposition="inline")
    return message


def build_report_body(client_name: str, timezone: str, report: str, start: dt.date, end: dt.date,
                      tables: Mapping[str, pa.Table], previous_tables: Mapping[str, pa.Table] | None, *,
                      body: str = "summary", previous: tuple[dt.date, dt.date] | None = None,
                      service_level_target: float = DEFAULT_SERVICE_LEVEL_TARGET) -> EmailMessage:
    """The body of ``report``'s e-mail for a client's local days ``start..end`` in ``timezone``.

    ``tables`` / ``previous_tables``: day tables by report name as :func:`mail_tables` (or
    ``read_report_arrow``) return them, for the period and for the previous period of the same
    length (``None``: no comparison; ``previous`` names its days for the text).
    """
    digest = build_digest(client_name, timezone, report, start, end, tables, previous_tables, body=body,
                          previous=previous, service_level_target=service_level_target)
    return body_message(digest, render_charts(digest) if body == "summary" else {})


@dataclass(frozen=True)
class ComposedMessage:
    """A complete message, and the digest and charts it was made of (for a PDF of the same content)."""

    message: EmailMessage
    digest: ReportDigest
    charts: dict[str, bytes]

    def pdf(self) -> bytes:
        """The PDF of the same content (charts drawn even for a ``table`` or ``none`` body)."""
        return render_pdf(self.digest, self.charts)


def _client(engine: Engine, client: str | int):
    repo = ClientRepository(engine)
    try:
        return repo.get(client) if isinstance(client, int) and not isinstance(client, bool) else repo.get_by_slug(str(client))
    except NotFound:
        raise NotFound("client", f"no client {client!r} (see: report-pipelines clients list)") from None


def compose_report_message(app: App, client: str | int, report: str, start: dt.date,
                           end: dt.date, *, now: dt.datetime, body: str = "summary",
                           recipients: tuple[str, ...] = (), subject: str | None = None,
                           message_id: str | None = None, note: str | None = None,
                           service_level_target: float = DEFAULT_SERVICE_LEVEL_TARGET) -> ComposedMessage:
    """The e-mail of ``report`` for ``client`` (slug or id) over its local days ``start..end``,
    compared with the previous period of the same length when the client existed then; headers set
    (From from the settings, To, Subject, Message-ID, Date), no attachment yet. ``note``: the
    subscriber's own paragraph (a schedule's ``--message``), shown first, escaped in the HTML."""
    if body not in BODY_OPTIONS:
        raise InvalidInput("body", f"{body!r} is not one of {', '.join(BODY_OPTIONS)}")
    record = _client(app.engine, client)
    period_days(start, end)
    tables = mail_tables(report, record.id, start, end, app=app, now=now)
    previous = previous_period(start, end, record.active_from)
    previous_tables = None
    if previous is not None:
        previous_tables = {"daily_summary": read_report_arrow("daily_summary", record.id, *previous, app=app, now=now)}
    digest = build_digest(record.name, record.timezone, report, start, end, tables, previous_tables, body=body,
                          previous=previous, service_level_target=service_level_target)
    if note:
        digest = replace(digest, message=note)
    charts = render_charts(digest)
    message = body_message(digest, charts)
    period = str(start) if start == end else f"{start} to {end}"
    message["From"] = app.settings.mail.mail_from
    if recipients:
        message["To"] = ", ".join(recipients)
    message["Subject"] = subject or f"{digest.report_title} for {record.name}: {period}"
    message["Message-ID"] = message_id or make_msgid(domain="report-pipelines")
    message["Date"] = format_datetime(now.astimezone(UTC))
    return ComposedMessage(message=message, digest=digest, charts=charts)


# --- the attachment ----------------------------------------------------------------------------------
_STACKED = ("answered", "abandoned", "missed")
#: The native Excel chart of each report's readable workbook (category column, stacked series).
XLSX_CHARTS: dict[str, tuple[str, str, tuple[str, ...]]] = {
    "hourly_volume": ("Calls offered per local hour", "local_hour", _STACKED),
    "daily_summary": ("Calls offered per local day", "date", _STACKED),
    "queue_performance": ("Calls offered per queue", "queue", _STACKED),
    "agent_performance": ("Calls handled per agent", "agent", ("inbound_answered", "outbound_calls", "internal_calls")),
    "wait_distribution": ("Calls by wait (per queue)", "wait_bucket", ("answered", "abandoned")),
    "abandonment_curve": ("Abandoned calls by time waited (per queue)", "wait_bucket", ("abandoned",)),
}


def write_report_attachment(report: str, days: pa.Table, path: Path, fmt: str, *, client_name: str, timezone: str,
                            start: dt.date, end: dt.date, composed: ComposedMessage | None = None) -> WrittenFile:
    """The period's report as the file attached to its e-mail, atomically at ``path``.

    ``days``: the report's day tables (``read_report_arrow``). ``xlsx`` is the workbook for people
    (:func:`~report_pipelines.adapters.exports.write_readable_xlsx`: title row with the client, the
    period and its zone, formats, a Total row for summaries, a native chart on a second sheet);
    ``pdf`` is the PDF of the e-mail's content (``composed``, required); ``csv`` and ``parquet`` are
    the presented period as :func:`~report_pipelines.adapters.exports.write_table` writes it.
    """
    definition = get_report(report)
    if fmt == "pdf":
        if composed is None:
            raise InvalidInput("format", "a pdf attachment is the e-mail's content: compose the message first")
        return write_bytes(path, composed.pdf())
    combined = definition.combine(days.drop_columns([c for c in ("client",) if c in days.column_names]))
    presented = pa.Table.from_pandas(definition.present(combined), preserve_index=False)
    if fmt != "xlsx":
        return write_table(presented, path, fmt)
    totals = definition.totals(combined)
    chart = None
    if report in XLSX_CHARTS and presented.num_rows:
        title, category, values = XLSX_CHARTS[report]
        chart = SheetChart(title=title, category=category, values=values)
    return write_readable_xlsx(
        presented, path, title=f"{definition.title}: {client_name}", subtitle=describe_period(start, end, timezone),
        totals=None if totals is None else pa.Table.from_pandas(totals, schema=presented.schema, preserve_index=False),
        chart=chart)


@dataclass(frozen=True)
class DemoMessage:
    eml: Path
    html: Path
    screenshot: Path | None
    pdf: Path


def write_demo_message(app: App, client: str | int, report: str, start: dt.date,
                       end: dt.date, *, now: dt.datetime | None = None, folder: Path | None = None,
                       screenshot: bool = True, recipients: tuple[str, ...] = ("supervisor@example.com",)) -> DemoMessage:
    """Write the rendered e-mail of ``report`` for a client's period next to the outbox: the
    ``.eml`` (with the PDF of the same content attached), its HTML with the images inlined, and a
    headless-Chromium screenshot at a phone's width (``screenshot=False`` skips it; with it, a
    missing Chromium raises ``ChromiumMissing``). Files are named
    ``<folder>/<client id>-<report>-<start>_<end>.{eml,html,png,pdf}``; ``folder`` defaults to
    the outbox folder."""
    from report_pipelines.adapters.screenshots import inline_images, screenshot_html

    now = now or app.now()
    composed = compose_report_message(app, client, report, start, end, now=now, recipients=recipients)
    folder = Path(folder or app.settings.outbox_dir)
    folder.mkdir(parents=True, exist_ok=True)
    stem = folder / f"{_client(app.engine, client).id}-{report}-{start}_{end}"
    pdf = composed.pdf()
    message = composed.message
    message.add_attachment(pdf, maintype="application", subtype="pdf", filename=f"{report}_{start}_{end}.pdf")
    eml, html, png, pdf_path = (stem.with_suffix(s) for s in (".eml", ".html", ".png", ".pdf"))
    eml.write_bytes(message.as_bytes())
    pdf_path.write_bytes(pdf)
    page = inline_images(message)
    html.write_text(page, encoding="utf-8")
    shot = screenshot_html(page, png) if screenshot else None
    return DemoMessage(eml=eml, html=html, screenshot=shot, pdf=pdf_path)


__all__ = ["BODY_OPTIONS", "XLSX_CHARTS", "ComposedMessage", "DemoMessage", "body_message", "build_report_body",
           "compose_report_message", "mail_reports", "mail_tables", "render_charts", "write_demo_message",
           "write_report_attachment"]
