"""A report digest as a PDF: the same content as the e-mail's HTML (title, period and zone, KPIs with
their change, the charts, the table), rendered by fpdf2 (pure Python, no browser).

Text is set in DejaVu Sans, the TrueType font matplotlib ships (``mpl-data/fonts/ttf``), embedded
as a subset, so any client or queue name prints (accents, ▲/▼) and the text can be searched and
copied. A4 portrait, one column.
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from pathlib import Path

from report_pipelines.domain.report_digest import ReportDigest

_INK, _MUTED, _CARD = (26, 26, 26), (85, 85, 85), (244, 246, 248)
_BETTER, _WORSE = (0, 122, 90), (184, 71, 0)


def _font_folder() -> Path:
    import matplotlib

    return Path(matplotlib.get_data_path()) / "fonts" / "ttf"


def _document(landscape: bool = False):
    from fpdf import FPDF

    pdf = FPDF(orientation="landscape" if landscape else "portrait", unit="mm", format="A4")
    pdf.set_creator("report_pipelines")
    fonts = _font_folder()
    pdf.add_font("DejaVu", "", str(fonts / "DejaVuSans.ttf"))
    pdf.add_font("DejaVu", "B", str(fonts / "DejaVuSans-Bold.ttf"))
    pdf.set_auto_page_break(auto=True, margin=15)
    pdf.set_margins(15, 15, 15)
    pdf.add_page()
    return pdf


def render_pdf(digest: ReportDigest, charts: Mapping[str, bytes]) -> bytes:
    """The PDF bytes of ``digest`` with ``charts`` (name -> PNG bytes), each 80 % of the text width."""
    pdf = _document()
    pdf.set_title(f"{digest.report_title}: {digest.client_name}")
    width = pdf.epw
    pdf.set_text_color(*_MUTED)
    pdf.set_font("DejaVu", "", 10)
    pdf.cell(width, 6, digest.report_title, new_x="LMARGIN", new_y="NEXT")
    pdf.set_text_color(*_INK)
    pdf.set_font("DejaVu", "B", 18)
    pdf.multi_cell(width, 9, digest.client_name, new_x="LMARGIN", new_y="NEXT")
    pdf.set_font("DejaVu", "", 11)
    pdf.cell(width, 6, digest.period_text, new_x="LMARGIN", new_y="NEXT")
    pdf.set_text_color(*_MUTED)
    pdf.set_font("DejaVu", "", 9)
    pdf.cell(width, 6, digest.previous_text, new_x="LMARGIN", new_y="NEXT")
    pdf.set_text_color(*_INK)
    for note in digest.notes:
        pdf.multi_cell(width, 5, note, new_x="LMARGIN", new_y="NEXT")
    pdf.ln(2)
    _kpis(pdf, digest, width)
    for png in charts.values():
        pdf.ln(3)
        pdf.image(io.BytesIO(png), x=pdf.l_margin + width * 0.1, w=width * 0.8)
    if digest.table is not None:
        _table(pdf, digest, width)
    pdf.ln(4)
    pdf.set_text_color(*_MUTED)
    pdf.set_font("DejaVu", "", 8)
    pdf.multi_cell(width, 4, f"Days and hours are local to {digest.timezone}. Every figure is re-aggregated from the "
                             "period's calls (rates are sums over sums).", new_x="LMARGIN", new_y="NEXT")
    return bytes(pdf.output())


def _kpis(pdf, digest: ReportDigest, width: float) -> None:
    column = (width - 4) / 2
    for i, line in enumerate(digest.kpi_lines):
        x = pdf.l_margin + (column + 4) * (i % 2)
        if i % 2 == 0:
            y = pdf.get_y()
            if y + 22 > pdf.page_break_trigger:
                pdf.add_page()
                y = pdf.get_y()
        pdf.set_fill_color(*_CARD)
        pdf.rect(x, y, column, 20, style="F")
        pdf.set_xy(x + 3, y + 2)
        pdf.set_font("DejaVu", "", 8)
        pdf.set_text_color(*_MUTED)
        pdf.cell(column - 6, 4, line.label)
        pdf.set_xy(x + 3, y + 6.5)
        pdf.set_font("DejaVu", "B", 14)
        pdf.set_text_color(*_INK)
        pdf.cell(column - 6, 7, line.shown)
        if line.change is not None:
            word = {True: " · better", False: " · worse"}.get(line.better, "")
            pdf.set_text_color(*({True: _BETTER, False: _WORSE}.get(line.better, _MUTED)))
            pdf.set_font("DejaVu", "", 8)
            pdf.set_xy(x + 3, y + 14)
            pdf.cell(column - 6, 4, f"{line.change}{word} (before: {line.previous_shown})")
        if i % 2 == 1 or i == len(digest.kpi_lines) - 1:
            pdf.set_xy(pdf.l_margin, y + 22)
    pdf.set_text_color(*_INK)


def _table(pdf, digest: ReportDigest, width: float) -> None:
    table = digest.table
    pdf.ln(4)
    pdf.set_font("DejaVu", "B", 11)
    pdf.multi_cell(width, 6, table.title, new_x="LMARGIN", new_y="NEXT")
    _grid(pdf, table.columns, table.rows, table.numeric, 9)


def _grid(pdf, columns: Sequence[str], rows: Sequence[Sequence[str]], numeric: Sequence[bool], size: float) -> None:
    pdf.set_font("DejaVu", "", size)
    align = tuple("RIGHT" if n else "LEFT" for n in numeric)
    with pdf.table(text_align=align, line_height=size * 0.6, first_row_as_headings=True,
                   headings_style=_headings(), borders_layout="HORIZONTAL_LINES") as grid:
        grid.row(list(columns))
        for row in rows:
            grid.row(list(row))
        if not rows:
            grid.row(["no rows", *[""] * (len(columns) - 1)])


def render_table_pdf(title: str, columns: Sequence[str], rows: Sequence[Sequence[str]], numeric: Sequence[bool]) -> bytes:
    """A plain table as a PDF (landscape when it has many columns), its title on top."""
    pdf = _document(landscape=len(columns) > 8)
    pdf.set_title(title)
    pdf.set_font("DejaVu", "B", 14)
    pdf.multi_cell(pdf.epw, 8, title, new_x="LMARGIN", new_y="NEXT")
    pdf.ln(2)
    _grid(pdf, columns, rows, numeric, 7 if len(columns) > 8 else 9)
    return bytes(pdf.output())


def _headings():
    from fpdf.fonts import FontFace

    return FontFace(family="DejaVu", emphasis="BOLD")


__all__ = ["render_pdf", "render_table_pdf"]
