"""A report digest as an e-mail's HTML part and its plain-text part.

The HTML is what common mail clients render: layout with nested ``<table role="presentation">``
and inline ``style`` attributes only (no ``<style>`` block, which some clients drop), no JavaScript,
no remote resource; images are ``cid:`` references to parts of the same message. One column,
at most 600 px wide, so it reads on a phone; KPI cards two to a row. Every value that came from
outside (client, queue and agent names) is HTML-escaped.

The change of each KPI is shown by its arrow (▲/▼) and the difference, and judged by a word and a
colour (Okabe-Ito bluish green "better", vermillion "worse"), so colour is never the only cue.
"""

from __future__ import annotations

from collections.abc import Mapping
from html import escape

from report_pipelines.domain.report_digest import DigestTable, KpiLine, ReportDigest

FONT = "font-family:Arial,Helvetica,sans-serif"
INK, MUTED, RULE, CARD = "#1a1a1a", "#555555", "#d9d9d9", "#f4f6f8"
BETTER, WORSE = "#007a5a", "#b84700"  # Okabe-Ito bluish green / vermillion, darkened for text contrast
CHART_ALT = {"volume": "Bar chart of calls offered, answered, abandoned and missed",
             "service_level": "Line chart of the service level against its target"}


def _judgement(line: KpiLine) -> tuple[str, str]:
    if line.better is True:
        return BETTER, " · better"
    if line.better is False:
        return WORSE, " · worse"
    return MUTED, ""


def _kpi_cell(line: KpiLine) -> str:
    colour, word = _judgement(line)
    change = ""
    if line.change is not None:
        change = (f'<div style="{FONT};font-size:13px;color:{colour};padding-top:2px">'
                  f'{escape(line.change)}{escape(word)}</div>')
    previous = ""
    if line.previous_shown is not None:
        previous = f'<div style="{FONT};font-size:12px;color:{MUTED}">before: {escape(line.previous_shown)}</div>'
    return (f'<td width="50%" valign="top" style="padding:6px">'
            f'<table role="presentation" width="100%" cellpadding="0" cellspacing="0" '
            f'style="background:{CARD};border-radius:6px"><tr><td style="padding:10px 12px">'
            f'<div style="{FONT};font-size:12px;color:{MUTED}">{escape(line.label)}</div>'
            f'<div style="{FONT};font-size:22px;font-weight:bold;color:{INK}">{escape(line.shown)}</div>'
            f'{change}{previous}</td></tr></table></td>')


def _kpi_grid(lines: tuple[KpiLine, ...]) -> str:
    rows = []
    for i in range(0, len(lines), 2):
        cells = [_kpi_cell(line) for line in lines[i:i + 2]]
        if len(cells) == 1:
            cells.append('<td width="50%" style="padding:6px"></td>')
        rows.append(f"<tr>{''.join(cells)}</tr>")
    return f'<table role="presentation" width="100%" cellpadding="0" cellspacing="0">{"".join(rows)}</table>'


def _table(table: DigestTable) -> str:
    def cell(text: str, numeric: bool, header: bool = False) -> str:
        tag = "th" if header else "td"
        weight = "bold" if header else "normal"
        return (f'<{tag} align="{"right" if numeric else "left"}" style="{FONT};font-size:13px;font-weight:{weight};'
                f'color:{INK};padding:6px 4px;border-bottom:1px solid {RULE}">{escape(text)}</{tag}>')

    head = "".join(cell(c, n, header=True) for c, n in zip(table.columns, table.numeric, strict=True))
    body = "".join("<tr>" + "".join(cell(v, n) for v, n in zip(row, table.numeric, strict=True)) + "</tr>" for row in table.rows)
    if not table.rows:
        body = f'<tr><td colspan="{len(table.columns)}" style="{FONT};font-size:13px;color:{MUTED};padding:6px 4px">' \
               f"no rows in this period</td></tr>"
    return (f'<div style="{FONT};font-size:15px;font-weight:bold;color:{INK};padding:14px 6px 4px">{escape(table.title)}</div>'
            f'<table role="presentation" width="100%" cellpadding="0" cellspacing="0" style="border-collapse:collapse">'
            f"<tr>{head}</tr>{body}</table>")


def render_html(digest: ReportDigest, chart_cids: Mapping[str, str]) -> str:
    """The HTML part; ``chart_cids`` maps a chart name (``volume``, ``service_level``) to the
    Content-ID (without angle brackets) of its image part."""
    charts = "".join(
        f'<tr><td style="padding:8px 6px"><img src="cid:{escape(cid)}" width="600" '
        f'style="display:block;width:100%;max-width:600px;height:auto;border:0" alt="{escape(CHART_ALT.get(name, name))}">'
        f"</td></tr>" for name, cid in chart_cids.items())
    notes = "".join(f'<div style="{FONT};font-size:13px;color:{INK};padding:4px 6px">{escape(n)}</div>' for n in digest.notes)
    if digest.message:
        own = "<br>".join(escape(line) for line in digest.message.split("\n"))
        notes = (f'<div style="{FONT};font-size:14px;color:{INK};padding:6px 6px 8px;border-left:3px solid {MUTED}">'
                 f"{own}</div>{notes}")
    table = _table(digest.table) if digest.table is not None else ""
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>{escape(digest.report_title)}: {escape(digest.client_name)}</title></head>
<body style="margin:0;padding:0;background:#ffffff">
<table role="presentation" width="100%" cellpadding="0" cellspacing="0" style="background:#ffffff"><tr><td align="center">
<table role="presentation" width="100%" cellpadding="0" cellspacing="0" style="max-width:600px"><tr><td style="padding:12px 8px">
<div style="{FONT};font-size:13px;color:{MUTED};padding:0 6px">{escape(digest.report_title)}</div>
<div style="{FONT};font-size:22px;font-weight:bold;color:{INK};padding:2px 6px">{escape(digest.client_name)}</div>
<div style="{FONT};font-size:14px;color:{INK};padding:2px 6px">{escape(digest.period_text)}</div>
<div style="{FONT};font-size:12px;color:{MUTED};padding:2px 6px 8px">{escape(digest.previous_text)}</div>
{notes}
{_kpi_grid(digest.kpi_lines)}
<table role="presentation" width="100%" cellpadding="0" cellspacing="0">{charts}</table>
{table}
<div style="{FONT};font-size:12px;color:{MUTED};padding:14px 6px 0">Days and hours are local to {escape(digest.timezone)}.
Every figure is re-aggregated from the period's calls (rates are sums over sums).</div>
</td></tr></table></td></tr></table>
</body></html>
"""


def render_text(digest: ReportDigest) -> str:
    """The plain-text part: the same figures, for clients that show no HTML."""
    lines = [f"{digest.report_title}: {digest.client_name}", digest.period_text, digest.previous_text, ""]
    if digest.message:
        lines += [*digest.message.split("\n"), ""]
    lines += list(digest.notes)
    width = max((len(line.label) for line in digest.kpi_lines), default=0)
    for line in digest.kpi_lines:
        change = ""
        if line.change is not None:
            word = {True: ", better", False: ", worse"}.get(line.better, "")
            change = f"  {line.change}{word} (before: {line.previous_shown})"
        lines.append(f"{line.label:<{width}}  {line.shown}{change}")
    if digest.table is not None:
        lines += ["", digest.table.title]
        rows = [digest.table.columns, *digest.table.rows]
        widths = [max(len(r[i]) for r in rows) for i in range(len(digest.table.columns))]
        for row in rows:
            lines.append("  ".join(v.rjust(w) if n else v.ljust(w) for v, w, n in zip(row, widths, digest.table.numeric, strict=True)).rstrip())
        if not digest.table.rows:
            lines.append("no rows in this period")
    lines += ["", f"Days and hours are local to {digest.timezone}."]
    return "\n".join(lines) + "\n"


__all__ = ["render_html", "render_text"]
