"""The report e-mail end to end on real databases: the MIME structure read back with ``email``, the
``cid:`` images, KPI values equal to ``summarize_report``, charts decoded (size, DST bars), the
readable XLSX read back with openpyxl, the PDF read back with pypdf, and the HTML rendered in
headless Chromium (Debian's; ``make ensure-chromium`` installs it: a missing browser FAILS here)."""

from __future__ import annotations

import datetime as dt
import email
import email.policy
import io
import re
import zipfile
from email.message import EmailMessage
from pathlib import Path

import openpyxl
import pyarrow as pa
import pytest
from PIL import Image
from pypdf import PdfReader
from sqlalchemy import Engine

from report_pipelines import read_report_arrow, summarize_report
from report_pipelines.adapters.charts import CHART_SIZE_PX, OKABE_ITO, volume_chart
from report_pipelines.adapters.exports import write_table
from report_pipelines.adapters.screenshots import inline_images, screenshot_html
from report_pipelines.domain.errors import InvalidInput
from report_pipelines.domain.report_digest import (
    DEFAULT_SERVICE_LEVEL_TARGET,
    format_duration,
    format_rate,
    hourly_series,
)
from report_pipelines.domain.reports import DayContext, get_report, report_names
from report_pipelines.services.report_mail import (
    build_report_body,
    compose_report_message,
    mail_tables,
    write_demo_message,
    write_report_attachment,
)
from report_pipelines_tests.extract_support import UTC, seed
from report_pipelines_tests.reports_support import call, table, with_date

NOW = dt.datetime(2024, 6, 1, tzinfo=UTC)
WEEK = (dt.date(2024, 3, 10), dt.date(2024, 3, 11))  # previous period of the same length: 03-08..03-09


def reread(message: EmailMessage) -> EmailMessage:
    return email.message_from_bytes(message.as_bytes(), policy=email.policy.default)  # type: ignore[return-value]


def structure(message: EmailMessage) -> list[str]:
    return [part.get_content_type() for part in message.walk()]


def decoded(png: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(png))
    image.load()
    return image


def summed(report: str, slug: str, start: dt.date, end: dt.date, app) -> dict:
    frame = summarize_report(report, slug, start, end, app=app, now=NOW)
    return {c: frame[c].sum() for c in ("offered", "answered", "abandoned", "answered_within_sl", "abandoned_within_sl",
                                          "wait_seconds_sum", "talk_seconds_sum")}


def test_message_parts_cids_and_kpis_equal_summarize_report(engine: Engine, tmp_path: Path) -> None:
    seeded = seed(engine, tmp_path)
    ny = seeded.clients["America/New_York"]
    composed = compose_report_message(seeded.app, ny.slug, "queue_performance", *WEEK, now=NOW,
                                      recipients=("boss@example.com",))
    message = reread(composed.message)
    assert structure(message) == ["multipart/alternative", "text/plain", "multipart/related", "text/html",
                                  "image/png", "image/png"]
    assert message["To"] == "boss@example.com" and "Newyork Contact Centre 1" in message["Subject"]
    html = next(p for p in message.walk() if p.get_content_type() == "text/html").get_content()
    text = next(p for p in message.walk() if p.get_content_type() == "text/plain").get_content()
    # every cid: reference resolves to an image part of the message, and every image is referenced
    images = {p["Content-ID"].strip().strip("<>"): p for p in message.walk() if p.get_content_maintype() == "image"}
    referenced = re.findall(r'src="cid:([^"]+)"', html)
    assert sorted(referenced) == sorted(images) and len(images) == 2
    for part in images.values():
        assert decoded(part.get_content()).size == CHART_SIZE_PX
    # no script, no remote resource
    assert "<script" not in html.lower() and not re.search(r'(src|href)="(https?:)?//', html)

    # the KPIs are summarize_report's figures for the period: the queues' sums, sums over sums
    q = summed("queue_performance", ny.slug, *WEEK, seeded.app)
    assert q["offered"] > 0
    k = composed.digest.kpis
    assert (k.offered, k.answered, k.abandoned) == (q["offered"], q["answered"], q["abandoned"])
    assert k.answer_rate == pytest.approx(q["answered"] / q["offered"])
    assert k.service_level == pytest.approx(q["answered_within_sl"] / (q["offered"] - q["abandoned_within_sl"]))
    assert k.average_speed_of_answer == pytest.approx(q["wait_seconds_sum"] / q["answered"])
    assert k.abandon_rate == pytest.approx(q["abandoned"] / q["offered"])
    assert k.average_handle_seconds == pytest.approx(q["talk_seconds_sum"] / q["answered"])
    days = summarize_report("daily_summary", ny.slug, *WEEK, app=seeded.app, now=NOW)
    assert k.offered == days["offered"].sum()  # the daily trend adds up to the same
    for shown in (f"{q['offered']:,}", format_rate(q["answered"] / q["offered"]),
                  format_duration(q["wait_seconds_sum"] / q["answered"]), "within 20 s", "America/New_York",
                  "2024-03-10 to 2024-03-11", "Newyork Contact Centre 1"):
        assert shown in html and shown in text, shown

    # against the previous two days, 03-08..03-09: the change is the difference of the two periods
    before = summed("queue_performance", ny.slug, dt.date(2024, 3, 8), dt.date(2024, 3, 9), seeded.app)
    difference = q["offered"] - before["offered"]
    offered = composed.digest.kpi_lines[0]
    assert offered.change.startswith(f"{'▲' if difference > 0 else '▼'} {abs(difference):,} (")
    assert offered.change in html and "compared with 2024-03-08 to 2024-03-09" in html
    # the table: the top queues by offered calls, the busiest first
    queues = summarize_report("queue_performance", ny.slug, *WEEK, app=seeded.app, now=NOW)
    top = queues.sort_values("offered", ascending=False).iloc[0]
    assert composed.digest.table.rows[0][:2] == (top["queue"], f"{top['offered']:,}")

    # the caller adds the attachment: the message becomes multipart/mixed around the alternative
    composed.message.add_attachment(b"a,b\r\n", maintype="text", subtype="csv", filename="x.csv")
    assert structure(reread(composed.message))[:2] == ["multipart/mixed", "multipart/alternative"]
    assert structure(reread(composed.message))[-1] == "text/csv"


def test_body_options(sqlite_engine: Engine, tmp_path: Path) -> None:
    seeded = seed(sqlite_engine, tmp_path)
    ny = seeded.clients["America/New_York"]
    composed = compose_report_message(seeded.app, ny.slug, "queue_performance", *WEEK, now=NOW,
                                      body="table")
    as_table = reread(composed.message)
    assert structure(as_table) == ["multipart/alternative", "text/plain", "text/html"]  # no chart
    queues = summarize_report("queue_performance", ny.slug, *WEEK, app=seeded.app, now=NOW)
    assert len(queues) == 7  # 6 queues and the queue-less calls
    html = as_table.get_payload()[1].get_content()
    assert len(composed.digest.table.rows) == 7  # every queue (at most 50), not the top 5
    assert all(f">{name}</td>" in html for name in (*queues["queue"].dropna(), "(no queue)"))
    summary = compose_report_message(seeded.app, ny.slug, "queue_performance", *WEEK, now=NOW)
    assert [row[0] for row in summary.digest.table.rows] == list(
        queues.sort_values(["offered", "queue"], ascending=[False, True])["queue"].fillna("(no queue)")[:5])
    none = reread(compose_report_message(seeded.app, ny.slug, "queue_performance", *WEEK, now=NOW,
                                         body="none").message)
    assert structure(none) == ["text/plain"] and "attached" in none.get_content()
    with pytest.raises(InvalidInput, match="body"):
        compose_report_message(seeded.app, ny.slug, "queue_performance", *WEEK, now=NOW, body="full")


def hand_tables(rows: list[dict], zone: str, day: dt.date) -> dict[str, pa.Table]:
    ctx = DayContext(7, zone, day)
    return {name: with_date(get_report(name).compute_day(table(rows), ctx), day)
            for name in ("daily_summary", "hourly_volume", "queue_performance")}


def test_names_from_outside_are_escaped_and_a_dst_day_is_drawn_by_hour() -> None:
    day = dt.date(2024, 11, 3)  # New York falls back: 25 local hours
    rows = [call("a", "inbound", "ANSWERED", "2024-11-03 05:30:00", "2024-11-03 05:32:00", "2024-11-03 05:30:10",
                 queue="<b>sales</b>"),
            call("b", "inbound", "ABANDONED", "2024-11-03 06:30:00", "2024-11-03 06:31:00", queue="<b>sales</b>")]
    message = reread(build_report_body('Acme <script>alert("x")</script> & Co', "America/New_York", "queue_performance",
                                       day, day, hand_tables(rows, "America/New_York", day), None))
    html = next(p for p in message.walk() if p.get_content_type() == "text/html").get_content()
    assert "<script" not in html and "&lt;script&gt;" in html and "&amp; Co" in html
    assert "<b>sales</b>" not in html and "&lt;b&gt;sales&lt;/b&gt;" in html
    assert "no previous period to compare with" in html and "▲" not in html and "▼" not in html


def blue_bars(png: bytes) -> int:
    """The most separate runs of the 'answered' blue along any pixel row: the bars a person counts."""
    image = decoded(png).convert("RGB")
    blue = tuple(int(OKABE_ITO["blue"][i:i + 2], 16) for i in (1, 3, 5))
    width, height = image.size
    pixels = image.load()
    best = 0
    for y in range(height // 3, height - 40, 4):
        runs, inside = 0, False
        for x in range(width):
            close = sum(abs(a - b) for a, b in zip(pixels[x, y], blue, strict=True)) < 30
            runs += close and not inside
            inside = close
        best = max(best, runs)
    return best


@pytest.mark.parametrize(("day", "hours"), [(dt.date(2024, 3, 10), 23), (dt.date(2024, 11, 3), 25), (dt.date(2024, 6, 12), 24)])
def test_an_hourly_chart_has_one_bar_per_local_hour_of_the_day(day: dt.date, hours: int) -> None:
    start = dt.datetime.combine(day, dt.time(0), tzinfo=dt.UTC) + dt.timedelta(hours=4)
    ctx = DayContext(7, "America/New_York", day)
    start = ctx.window_utc[0]
    rows = [call(f"c{i}", "inbound", "ANSWERED", str(start + dt.timedelta(minutes=30 + 60 * i))[:19],
                 str(start + dt.timedelta(minutes=35 + 60 * i))[:19], str(start + dt.timedelta(minutes=31 + 60 * i))[:19],
                 queue="q") for i in range(hours)]
    hourly = with_date(get_report("hourly_volume").compute_day(table(rows), ctx), day)
    series = hourly_series(hourly, "America/New_York", DEFAULT_SERVICE_LEVEL_TARGET)
    assert series.offered == (1,) * hours
    png = volume_chart(series)
    assert decoded(png).size == CHART_SIZE_PX
    assert blue_bars(png) == hours


def test_readable_xlsx_attachment(sqlite_engine: Engine, tmp_path: Path) -> None:
    seeded = seed(sqlite_engine, tmp_path)
    ny = seeded.clients["America/New_York"]
    days = read_report_arrow("queue_performance", ny.slug, *WEEK, app=seeded.app, now=NOW)
    path = tmp_path / "out" / "queues.xlsx"
    write_report_attachment("queue_performance", days, path, "xlsx", client_name=ny.name, timezone=ny.timezone,
                            start=WEEK[0], end=WEEK[1])
    queues = summarize_report("queue_performance", ny.slug, *WEEK, app=seeded.app, now=NOW)
    book = openpyxl.load_workbook(path)
    assert book.sheetnames == ["report", "chart"]
    sheet = book["report"]
    assert sheet["A1"].value == "Queue performance: Newyork Contact Centre 1" and sheet["A1"].font.b
    assert sheet["A2"].value == "2024-03-10 to 2024-03-11 (2 local days, America/New_York)"
    header = [c.value for c in sheet[4]]
    assert header[:3] == ["queue", "service_level_seconds", "days"] and all(c.font.b for c in sheet[4])
    assert sheet.freeze_panes == "A5"
    column = {name: openpyxl.utils.get_column_letter(i + 1) for i, name in enumerate(header)}
    first = queues.iloc[0]
    assert sheet["A5"].value == first["queue"]
    sl = sheet[f"{column['service_level']}5"]
    assert sl.number_format == "0.0%" and sl.value == pytest.approx(first["service_level"])
    asa = sheet[f"{column['average_speed_of_answer']}5"]
    assert asa.number_format == "[h]:mm:ss"
    assert asa.value.total_seconds() == pytest.approx(first["average_speed_of_answer"], abs=1e-3)
    # fitted widths: no column narrower than its values (nor a 40-character default)
    width = sheet.column_dimensions["A"].width
    assert max(len(q) for q in queues["queue"].dropna()) + 2 <= width <= 50
    # the Total row: sums, and rates over the sums
    total_row = 5 + len(queues)
    assert sheet[f"A{total_row}"].value == "Total" and sheet[f"A{total_row}"].font.b
    assert sheet[f"{column['offered']}{total_row}"].value == queues["offered"].sum()
    assert sheet[f"{column['answer_rate']}{total_row}"].value == pytest.approx(queues["answered"].sum() / queues["offered"].sum())
    # a native Excel chart (stacked columns of answered, abandoned, missed) on the second sheet
    with zipfile.ZipFile(path) as archive:
        chart = archive.read("xl/charts/chart1.xml").decode()
        assert "xl/drawings/drawing1.xml" in archive.namelist()
    assert "<c:barChart>" in chart and '<c:grouping val="stacked"/>' in chart and chart.count("<c:ser>") == 3
    assert "report!$A$5:$A$" in chart  # categories: the queues of the data sheet


def test_pdf_attachment_holds_the_kpis_as_text(sqlite_engine: Engine, tmp_path: Path) -> None:
    seeded = seed(sqlite_engine, tmp_path)
    ny = seeded.clients["America/New_York"]
    composed = compose_report_message(seeded.app, ny.slug, "queue_performance", *WEEK, now=NOW)
    days = read_report_arrow("queue_performance", ny.slug, *WEEK, app=seeded.app, now=NOW)
    written = write_report_attachment("queue_performance", days, tmp_path / "q.pdf", "pdf", client_name=ny.name,
                                      timezone=ny.timezone, start=WEEK[0], end=WEEK[1], composed=composed)
    data = written.path.read_bytes()
    assert data.startswith(b"%PDF-") and data.rstrip().endswith(b"%%EOF")
    reader = PdfReader(io.BytesIO(data))
    text = " ".join(page.extract_text() for page in reader.pages)
    for line in composed.digest.kpi_lines:
        assert line.label in text and line.shown in text, line.label
    assert "Newyork Contact Centre 1" in text and "America/New_York" in text
    assert composed.digest.kpi_lines[0].change in text  # ▲/▼ and the difference
    assert len(reader.pages[0].images) >= 1  # the charts
    with pytest.raises(InvalidInput, match="format"):
        write_report_attachment("queue_performance", days, tmp_path / "r.pdf", "pdf", client_name=ny.name,
                                timezone=ny.timezone, start=WEEK[0], end=WEEK[1])


def test_pdf_is_an_export_format_for_tables(tmp_path: Path) -> None:
    t = pa.table({"queue": ["sales", "=cmd", None], "offered": [10, 20, None], "rate": [0.5, None, 0.25]})
    written = write_table(t, tmp_path / "t.pdf", "pdf", sheet_name="Queues of Acme")
    text = PdfReader(written.path).pages[0].extract_text()
    assert "Queues of Acme" in text and "sales" in text and "=cmd" in text and "0.25" in text
    with pytest.raises(InvalidInput, match="rows"):
        write_table(pa.table({"x": list(range(5001))}), tmp_path / "big.pdf", "pdf")
    assert not (tmp_path / "big.pdf").exists()


def test_html_renders_in_headless_chromium_and_the_demo_writes_it(sqlite_engine: Engine, tmp_path: Path) -> None:
    seeded = seed(sqlite_engine, tmp_path)
    ny = seeded.clients["America/New_York"]
    written = write_demo_message(seeded.app, ny.slug, "queue_performance", *WEEK, now=NOW,
                                 folder=tmp_path / "outbox")
    assert written.eml.parent == tmp_path / "outbox" and written.eml.name == f"{ny.id}-queue_performance-2024-03-10_2024-03-11.eml"
    message = email.message_from_bytes(written.eml.read_bytes(), policy=email.policy.default)
    assert structure(message)[:2] == ["multipart/mixed", "multipart/alternative"]
    assert structure(message)[-1] == "application/pdf"
    page = written.html.read_text()
    assert "cid:" not in page and page.count("data:image/png;base64,") == 2 and page == inline_images(message)
    shot = decoded(written.screenshot.read_bytes()).convert("RGB")
    assert shot.size == (420, 1800)
    colours = shot.getcolors(maxcolors=1 << 20)
    assert colours is not None and len(colours) > 50  # text, cards, bars: not a blank page
    white = sum(n for n, rgb in colours if min(rgb) >= 250)
    assert white / (420 * 1800) < 0.9
    blue = tuple(int(OKABE_ITO["blue"][i:i + 2], 16) for i in (1, 3, 5))
    assert sum(n for n, rgb in colours if sum(abs(a - b) for a, b in zip(rgb, blue, strict=True)) < 30) > 500  # the chart's bars
    # the same renderer on a page of our own: a blank page is told apart
    blank = decoded(screenshot_html("<html><body></body></html>", tmp_path / "blank.png").read_bytes()).convert("RGB")
    assert len(blank.getcolors(maxcolors=1 << 20)) <= 2


def test_mail_tables_read_what_the_body_needs(sqlite_engine: Engine, tmp_path: Path) -> None:
    seeded = seed(sqlite_engine, tmp_path)
    ny = seeded.clients["America/New_York"]
    assert set(mail_tables("call_detail", ny.slug, *WEEK, app=seeded.app, now=NOW)) == {
        "daily_summary", "hourly_volume"}  # call_detail's rows are never read for a body
    got = mail_tables("wait_distribution", ny.slug, *WEEK, app=seeded.app, now=NOW)
    assert set(got) == {"daily_summary", "hourly_volume", "wait_distribution"}
    assert got["daily_summary"].num_rows == 2 and got["hourly_volume"].num_rows == 23 + 24


def test_every_report_composes_with_its_own_table(sqlite_engine: Engine, tmp_path: Path) -> None:
    seeded = seed(sqlite_engine, tmp_path)
    ny = seeded.clients["America/New_York"]
    titles = {}
    for report in report_names():
        composed = compose_report_message(seeded.app, ny.slug, report, *WEEK, now=NOW)
        assert composed.digest.kpis.offered > 0
        titles[report] = composed.digest.table.title
        if report == "wait_distribution":
            rows = composed.digest.table.rows
            found = summarize_report("queue_performance", ny.slug, *WEEK, app=seeded.app, now=NOW)
            busiest = found.sort_values(["answered", "queue"], ascending=[False, True])["queue"].fillna("(no queue)").iloc[0]
            assert rows[0][0] == "All queues" and rows[0][1] == f"{found['answered'].sum():,}"
            assert rows[1][0] == busiest and rows[1][2].startswith("≈ ") and rows[1][2].endswith(" s)")
        if report == "agent_availability":  # no queue_log here: talk from the calls, as agent_performance's
            agents = summarize_report("agent_performance", ny.slug, *WEEK, app=seeded.app, now=NOW)
            busiest = agents.sort_values(["talk_seconds_sum", "agent"], ascending=[False, True]).iloc[0]
            assert composed.digest.table.rows[0][0] == busiest["agent"]
            assert composed.digest.table.rows[0][1:3] == ("0 s", "0 s")
        if report == "abandonment_curve":
            total = summarize_report("queue_performance", ny.slug, *WEEK, app=seeded.app, now=NOW)
            assert sum(int(row[1].replace(",", "")) for row in composed.digest.table.rows) <= total["abandoned"].sum()
    assert titles == {
        "call_detail": "Busiest local hours of the period", "hourly_volume": "Busiest local hours of the period",
        "agent_performance": "Top agents by calls handled", "queue_performance": "Top queues by offered calls",
        "daily_summary": "Busiest days", "wait_distribution": "Speed of answer per queue (p50, p90)",
        "abandonment_curve": "When callers hang up (share of each queue's abandoned calls)",
        "agent_availability": "Agents by logged-in time"}
