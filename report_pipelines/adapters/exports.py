"""The one tabular writer for report files people open: CSV, XLSX (Excel) and Parquet.

Scheduled report e-mails and on-demand period extractions both write through :func:`write_table`,
so the rules below hold for every file we hand out.

**Atomic.** The file is written under a hidden temporary name (``.<name>.<random>.tmp``) in the
target's own folder (created if missing), flushed to disk, hashed, then renamed over ``path`` with
``os.replace``. On any error the temporary file is removed and ``path`` is untouched: a new file
never appears half-written, an existing one is never replaced by a broken one.

**Formula injection (CSV and XLSX).** A spreadsheet opening a CSV treats a cell that starts with
``=``, ``+``, ``-``, ``@``, TAB or CR as a formula (``=cmd|' /C calc'!A0``, ``=HYPERLINK(...)``).
Following the OWASP "CSV Injection" guidance, every CSV *string* cell, column names included, that
could run as one gets a leading single quote (:func:`neutralise_cell`); the quote tells the
spreadsheet "text". A plain number or phone number (``+4930123456``, ``+49 30 1234567``, ``-5``:
a sign, then only digits, spaces and one decimal separator) cannot run anything and is left as it
is, so caller ids are not mangled. Numbers are never touched. In XLSX every string is written as a
typed string cell, which Excel never evaluates (not a formula, number or URL): no prefix is needed
there, and none is added, so a caller id reads as the PBX logged it.

**CSV:** UTF-8 *with* a byte-order mark (``utf-8-sig``), because Excel on Windows reads a BOM-less
CSV in the local ANSI code page and garbles names such as "João"; Python (``encoding="utf-8-sig"``),
pandas and DuckDB skip the BOM. Comma separated, CRLF line ends, minimal RFC 4180 quoting, one
header row. Null is an empty field. Timestamps are ISO 8601 with their offset
(``2024-03-10T07:00:00+00:00``; a naive timestamp column has none), dates ``YYYY-MM-DD``, booleans
``true``/``false``, decimals in plain notation, floats in Python's shortest round-trip form. A NaN
or infinite float is written as an empty field (a spreadsheet has neither, and ``-inf`` would start
with ``-``).

**XLSX:** XlsxWriter in constant-memory mode (rows stream to disk) with every automatic conversion
off. Bold, frozen header row with an autofilter. Numbers are number cells, booleans boolean cells,
dates real Excel dates (``yyyy-mm-dd``). Timestamps are written as ISO 8601 *text* with their
offset, exactly as in CSV: an Excel date-time has no time zone, so a number cell would either lose the
offset or silently show another zone's clock than the report's local columns. Integers of 15 or more
digits are written as text too (Excel keeps only 15 significant digits and would round them). NaN
and infinity are empty cells. A sheet holds at most 1,048,576 rows (header included) and 16,384
columns: a larger table is refused (``rows`` / ``columns``), not split over several sheets (an
analyst's filter or pivot would silently miss rows) — use CSV or Parquet for it. A string longer
than a cell holds (32,767 characters) is refused (``cell``) instead of being truncated.

**Parquet:** the table as it is (pyarrow, zstd), with no neutralisation: Parquet is typed data read
by programs (pandas, DuckDB, Spark), never evaluated as a spreadsheet, and a quote added to
``-5 min`` or ``+351...`` would corrupt values that analysts compare and join on. Whoever turns
Parquet into a spreadsheet must use this module.

CSV and XLSX hold flat values only: a list, struct, map, binary or duration column is refused
(``columns``) before anything is written.
"""

from __future__ import annotations

import csv
import hashlib
import io
import math
import os
import re
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pyarrow.types as pat

from report_pipelines.domain.errors import InvalidInput

FORMATS: tuple[str, ...] = ("csv", "xlsx", "parquet")
#: Every format :func:`write_table` writes: :data:`FORMATS` (what a schedule accepts today) plus
#: ``pdf`` (a table as a PDF; a report e-mail's PDF of its KPIs and charts is
#: ``report_pdf.render_pdf``).
EXPORT_FORMATS: tuple[str, ...] = (*FORMATS, "pdf")
#: The MIME type of each format's file, for the e-mail attachment.
MEDIA_TYPES: dict[str, tuple[str, str]] = {
    "csv": ("text", "csv"), "xlsx": ("application", "vnd.openxmlformats-officedocument.spreadsheetml.sheet"),
    "parquet": ("application", "vnd.apache.parquet"), "pdf": ("application", "pdf"), "zip": ("application", "zip"),
}
PDF_MAX_ROWS = 5_000  # a longer table is not a document a person reads: csv, xlsx or parquet

#: Leading characters that make a spreadsheet read a cell as a formula (OWASP CSV Injection).
FORMULA_TRIGGERS = ("=", "+", "-", "@", "\t", "\r")
EXCEL_MAX_ROWS = 1_048_576  # header included
EXCEL_MAX_COLUMNS = 16_384
EXCEL_MAX_CELL_CHARS = 32_767
EXCEL_MAX_EXACT_INT = 10**15  # Excel keeps 15 significant digits
_XLSX_OPTIONS = {
    "constant_memory": True,
    "strings_to_formulas": False,
    "strings_to_urls": False,
    "strings_to_numbers": False,
}
_SHEET_NAME_FORBIDDEN = set("[]:*?/\\")
_BATCH_ROWS = 8192


@dataclass(frozen=True, slots=True)
class WrittenFile:
    """A file written by :func:`write_table`: where, how many bytes, sha256 of its bytes (hex)."""

    path: Path
    bytes: int
    sha256: str


#: What follows a leading ``+``/``-`` in a value that cannot run as a formula: a plain (phone) number.
_PLAIN_NUMBER = re.compile(r"[+-]\d[\d ]*(?:[.,]\d+)?")


def could_run_as_formula(value: str) -> bool:
    """Starts with ``= + - @``, TAB or CR, and is not a plain number such as ``+4930123456`` or ``-5``."""
    return value.startswith(FORMULA_TRIGGERS) and _PLAIN_NUMBER.fullmatch(value) is None


def neutralise_cell(value: str) -> str:
    """``value`` with a leading ``'`` if it could run as a formula in a CSV; otherwise unchanged."""
    return "'" + value if could_run_as_formula(value) else value


def write_table(table: pa.Table, path: Path, fmt: str, *, sheet_name: str = "report") -> WrittenFile:
    """Write ``table`` to ``path`` as ``fmt`` (``csv``, ``xlsx``, ``parquet`` or ``pdf``), atomically.

    See the module docstring for each format's rules. Refusals (:class:`InvalidInput`) name
    ``format``, ``sheet_name``, ``rows``, ``columns`` or ``cell``; they happen before ``path`` changes.
    """
    fmt_name = fmt.strip().lower() if isinstance(fmt, str) else fmt
    if fmt_name not in EXPORT_FORMATS:
        raise InvalidInput("format", f"{fmt!r} is not one of {', '.join(EXPORT_FORMATS)}")
    if not isinstance(table, pa.Table):
        raise TypeError(f"a pyarrow Table is required, not {type(table).__name__}")
    path = Path(path)
    if not path.name or path.name in (".", ".."):
        raise InvalidInput("path", f"{str(path)!r} does not name a file")

    writer: Callable[[Path], None]
    if fmt_name == "csv":
        kinds = _flat_kinds(table)
        writer = lambda temporary: _write_csv(table, kinds, temporary)
    elif fmt_name == "xlsx":
        kinds = _flat_kinds(table)
        _check_excel_limits(table, sheet_name)
        writer = lambda temporary: _write_xlsx(table, kinds, temporary, sheet_name)
    elif fmt_name == "pdf":
        kinds = _flat_kinds(table)
        writer = lambda temporary: temporary.write_bytes(_table_pdf(table, kinds, sheet_name))
    else:
        writer = lambda temporary: pq.write_table(table, str(temporary), compression="zstd")
    return _write_atomically(path, writer)


# --- atomic write ----------------------------------------------------------------------------------------
def write_bytes(path: Path, data: bytes) -> WrittenFile:
    """``data`` written to ``path`` atomically (as every export is), e.g. a rendered PDF."""
    return _write_atomically(Path(path), lambda temporary: temporary.write_bytes(data))


def _write_atomically(path: Path, writer: Callable[[Path], None]) -> WrittenFile:
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    try:
        writer(temporary)
        digest, size = hashlib.sha256(), 0
        with open(temporary, "rb+") as written:
            for chunk in iter(lambda: written.read(1 << 20), b""):
                digest.update(chunk)
                size += len(chunk)
            os.fsync(written.fileno())
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    _fsync_folder(path.parent)
    return WrittenFile(path=path, bytes=size, sha256=digest.hexdigest())


def _fsync_folder(folder: Path) -> None:
    """Make the rename durable where the platform allows it (POSIX); best effort elsewhere."""
    try:
        descriptor = os.open(folder, os.O_RDONLY)
    except OSError:  # pragma: no cover - e.g. Windows
        return
    try:
        os.fsync(descriptor)
    except OSError:  # pragma: no cover
        pass
    finally:
        os.close(descriptor)


# --- column kinds ----------------------------------------------------------------------------------------
def _kind(data_type: pa.DataType) -> str | None:
    if pat.is_dictionary(data_type):
        return _kind(data_type.value_type)
    if pat.is_string(data_type) or pat.is_large_string(data_type) or getattr(pat, "is_string_view", lambda _: False)(data_type):
        return "string"
    if pat.is_boolean(data_type):
        return "bool"
    if pat.is_integer(data_type):
        return "int"
    if pat.is_floating(data_type):
        return "float"
    if pat.is_decimal(data_type):
        return "decimal"
    if pat.is_timestamp(data_type):
        return "timestamp"
    if pat.is_date(data_type):
        return "date"
    if pat.is_time(data_type):
        return "time"
    if pat.is_null(data_type):
        return "null"
    return None


def _flat_kinds(table: pa.Table) -> list[str]:
    kinds = []
    for table_field in table.schema:
        kind = _kind(table_field.type)
        if kind is None:
            raise InvalidInput("columns", f"column {table_field.name!r} has type {table_field.type}, "
                                          "which a CSV or spreadsheet cell cannot hold; use parquet")
        kinds.append(kind)
    return kinds


def _rows(table: pa.Table) -> Iterator[tuple]:
    for batch in table.to_batches(max_chunksize=_BATCH_ROWS):
        yield from zip(*(column.to_pylist() for column in batch.columns), strict=False)


def _finite(value: float) -> bool:
    return math.isfinite(value)


# --- CSV -------------------------------------------------------------------------------------------------
def _csv_text(value: object, kind: str) -> str:
    if value is None:
        return ""
    if kind == "string":
        return neutralise_cell(value)  # type: ignore[arg-type]
    if kind == "int":
        return str(value)
    if kind == "float":
        return repr(float(value)) if _finite(value) else ""  # type: ignore[arg-type]
    if kind == "decimal":
        return format(value, "f")
    if kind == "bool":
        return "true" if value else "false"
    if kind in ("timestamp", "date", "time"):
        return value.isoformat()  # type: ignore[attr-defined]
    return ""  # null


def _write_csv(table: pa.Table, kinds: list[str], temporary: Path) -> None:
    with open(temporary, "x", encoding="utf-8-sig", newline="") as out:
        writer = csv.writer(out, lineterminator="\r\n")
        writer.writerow([neutralise_cell(name) for name in table.column_names])
        for row in _rows(table):
            writer.writerow([_csv_text(value, kind) for value, kind in zip(row, kinds, strict=False)])


# --- XLSX ------------------------------------------------------------------------------------------------
def _check_excel_limits(table: pa.Table, sheet_name: str) -> None:
    if (not isinstance(sheet_name, str) or not 1 <= len(sheet_name) <= 31 or set(sheet_name) & _SHEET_NAME_FORBIDDEN
            or sheet_name.startswith("'") or sheet_name.endswith("'") or sheet_name.lower() == "history"
            or any(ord(ch) < 32 for ch in sheet_name)):
        raise InvalidInput("sheet_name", f"{sheet_name!r}: an Excel sheet name is 1-31 characters, without "
                                         "[ ] : * ? / \\, not quoted and not 'History'")
    if table.num_rows + 1 > EXCEL_MAX_ROWS:
        raise InvalidInput("rows", f"{table.num_rows:,} rows do not fit in an Excel sheet "
                                   f"(at most {EXCEL_MAX_ROWS - 1:,} below the header); use csv or parquet")
    if table.num_columns > EXCEL_MAX_COLUMNS:
        raise InvalidInput("columns", f"{table.num_columns:,} columns do not fit in an Excel sheet "
                                      f"(at most {EXCEL_MAX_COLUMNS:,}); use csv or parquet")


def _write_xlsx(table: pa.Table, kinds: list[str], temporary: Path, sheet_name: str) -> None:
    import xlsxwriter  # imported here: only spreadsheet exports need it

    workbook = xlsxwriter.Workbook(str(temporary), _XLSX_OPTIONS)
    try:
        sheet = workbook.add_worksheet(sheet_name)
        bold = workbook.add_format({"bold": True})
        date_format = workbook.add_format({"num_format": "yyyy-mm-dd"})
        names = table.column_names
        for column, (name, kind) in enumerate(zip(names, kinds, strict=False)):  # before any row (constant memory)
            width = 12 if kind in ("date", "int", "float", "decimal", "bool") else 22 if kind == "timestamp" else 16
            sheet.set_column(column, column, max(width, min(len(name) + 2, 40)))
        sheet.freeze_panes(1, 0)
        for column, name in enumerate(names):
            _xlsx_string(sheet, 0, column, name, name, bold)  # a typed string cell: never evaluated
        for row_number, row in enumerate(_rows(table), start=1):
            for column, (value, kind) in enumerate(zip(row, kinds, strict=False)):
                if value is None:
                    continue
                if kind == "string":
                    _xlsx_string(sheet, row_number, column, value, names[column])
                elif kind == "bool":
                    sheet.write_boolean(row_number, column, value)
                elif kind == "int":
                    if abs(value) < EXCEL_MAX_EXACT_INT:
                        sheet.write_number(row_number, column, value)
                    else:
                        sheet.write_string(row_number, column, str(value))
                elif kind in ("float", "decimal"):
                    number = float(value)
                    if _finite(number):
                        sheet.write_number(row_number, column, number)
                elif kind == "date":
                    sheet.write_datetime(row_number, column, value, date_format)
                elif kind in ("timestamp", "time"):
                    sheet.write_string(row_number, column, value.isoformat())
        if table.num_columns:
            sheet.autofilter(0, 0, table.num_rows, table.num_columns - 1)
    except BaseException:
        _discard(workbook)
        raise
    workbook.close()


def _xlsx_string(sheet, row: int, column: int, text: str, name: str, cell_format=None) -> None:
    if len(text) > EXCEL_MAX_CELL_CHARS:
        raise InvalidInput("cell", f"column {name!r}, row {row}: {len(text):,} characters; an Excel cell "
                                   f"holds at most {EXCEL_MAX_CELL_CHARS:,} (use csv or parquet)")
    sheet.write_string(row, column, text, cell_format)


def _discard(workbook) -> None:
    """Release an unfinished workbook's streamed row files without writing the workbook."""
    for sheet in workbook.worksheets():
        handle = getattr(sheet, "row_data_fh", None)
        if handle is not None and not handle.closed:
            handle.close()
        filename = getattr(sheet, "row_data_filename", None)
        if filename:
            try:
                os.unlink(filename)
            except OSError:
                pass
    workbook.fileclosed = True  # nothing to write: keep XlsxWriter's destructor from warning


# --- PDF of a table ---------------------------------------------------------------------------------
def _table_pdf(table: pa.Table, kinds: list[str], title: str) -> bytes:
    """A table as a PDF document (text cells as CSV writes them; no formula neutralisation: a PDF
    is never evaluated)."""
    from report_pipelines.adapters.report_pdf import render_table_pdf

    if table.num_rows > PDF_MAX_ROWS:
        raise InvalidInput("rows", f"{table.num_rows:,} rows are too many for a PDF (at most {PDF_MAX_ROWS:,}); "
                                   "use csv, xlsx or parquet")
    rows = [tuple(value if kind == "string" and value is not None else _csv_text(value, kind)
                  for value, kind in zip(row, kinds, strict=False)) for row in _rows(table)]
    numeric = tuple(k in ("int", "float", "decimal") for k in kinds)
    return render_table_pdf(title, tuple(table.column_names), rows, numeric)


# --- XLSX for people --------------------------------------------------------------------------------
DURATION_FORMAT = "[h]:mm:ss"
PERCENT_FORMAT = "0.0%"
#: Columns that hold seconds but are labels, not durations (thresholds, bin bounds): plain numbers.
_SECONDS_LABELS = ("service_level_seconds", "wait_from_seconds", "wait_to_seconds", "waited_from_seconds",
                   "waited_to_seconds")
_SAMPLE_ROWS = 1000  # rows looked at to fit column widths


def readable_kind(name: str, kind: str) -> str:
    """How a person reads a column: ``duration`` (seconds shown as ``[h]:mm:ss``), ``rate`` (a
    share shown as a percentage), or the column's own kind."""
    if kind not in ("int", "float", "decimal"):
        return kind
    if name in ("service_level", "service_level_of_offered", "occupancy") or name.endswith(("_rate", "_share")):
        return "rate"
    if name not in _SECONDS_LABELS and (name.endswith(("_seconds", "_seconds_sum", "_seconds_max"))
                                        or name == "average_speed_of_answer"):
        return "duration"
    return kind


@dataclass(frozen=True, slots=True)
class SheetChart:
    """A native Excel chart of the data sheet: ``category`` column on the x axis, ``values``
    columns as series (``stacked`` columns, or a ``line``)."""

    title: str
    category: str
    values: tuple[str, ...]
    kind: str = "stacked"  # "stacked" column chart, or "line"
    y_title: str = "calls"


def write_readable_xlsx(table: pa.Table, path: Path, *, title: str, subtitle: str, totals: pa.Table | None = None,
                        chart: SheetChart | None = None, sheet_name: str = "report") -> WrittenFile:
    """A workbook a person reads, atomically: a title row (``title``) and a subtitle row (the
    period and zone), then a bold, frozen header row with an autofilter, the rows, and a bold
    ``Total`` row (``totals``: one row of the same columns) when given. Column widths are fitted to
    the header and the first values; durations are real Excel durations (``[h]:mm:ss``), rates
    percentages (``0.0%``), dates Excel dates. ``chart`` adds a second sheet ``chart`` with a native
    Excel chart of the data sheet's rows. String cells are neutralised as in :func:`write_table`.
    Refusals name ``sheet_name``, ``rows``, ``columns``, ``cell`` or ``chart``."""
    kinds = [readable_kind(name, kind) for name, kind in zip(table.column_names, _flat_kinds(table), strict=False)]
    if table.num_rows + 4 > EXCEL_MAX_ROWS:
        raise InvalidInput("rows", f"{table.num_rows:,} rows do not fit in an Excel sheet with its title and totals; "
                                   "use csv or parquet")
    _check_excel_limits(table, sheet_name)
    if totals is not None and totals.column_names != table.column_names:
        raise InvalidInput("totals", "the totals row must have the table's columns")
    if chart is not None and not {chart.category, *chart.values} <= set(table.column_names):
        missing = sorted({chart.category, *chart.values} - set(table.column_names))
        raise InvalidInput("chart", f"columns {', '.join(missing)} are not in the table")
    return _write_atomically(Path(path), lambda temporary: _write_readable(table, kinds, temporary, title, subtitle,
                                                                             totals, chart, sheet_name))


def _shown_width(value: object, kind: str) -> int:
    if value is None:
        return 0
    if kind == "duration":
        return 10
    if kind == "rate":
        return 8
    if kind == "float":
        return len(f"{value:,.2f}")
    if kind in ("timestamp", "time", "date"):
        return len(value.isoformat())  # type: ignore[attr-defined]
    return len(str(value))


def _write_readable(table: pa.Table, kinds: list[str], temporary: Path, title: str, subtitle: str,
                    totals: pa.Table | None, chart: SheetChart | None, sheet_name: str) -> None:
    import xlsxwriter

    workbook = xlsxwriter.Workbook(str(temporary), _XLSX_OPTIONS)
    try:
        sheet = workbook.add_worksheet(sheet_name)
        formats = {
            "title": workbook.add_format({"bold": True, "font_size": 14}),
            "subtitle": workbook.add_format({"italic": True, "font_color": "#555555"}),
            "header": workbook.add_format({"bold": True, "bottom": 1, "text_wrap": True, "valign": "top"}),
            "duration": workbook.add_format({"num_format": DURATION_FORMAT}),
            "rate": workbook.add_format({"num_format": PERCENT_FORMAT}),
            "date": workbook.add_format({"num_format": "yyyy-mm-dd"}),
            "float": workbook.add_format({"num_format": "#,##0.00"}),
            "int": workbook.add_format({"num_format": "#,##0"}),
        }
        total_formats = {name: workbook.add_format({**props, "bold": True, "top": 1}) for name, props in (
            ("duration", {"num_format": DURATION_FORMAT}), ("rate", {"num_format": PERCENT_FORMAT}),
            ("float", {"num_format": "#,##0.00"}), ("int", {"num_format": "#,##0"}), ("string", {}),
            ("date", {"num_format": "yyyy-mm-dd"}))}
        names = table.column_names
        sample = table.slice(0, _SAMPLE_ROWS).to_pylist()
        for column, (name, kind) in enumerate(zip(names, kinds, strict=False)):  # before any row (constant memory)
            widest = max([_shown_width(row[name], kind) for row in sample] + [min(len(name), 24)])
            sheet.set_column(column, column, min(max(widest + 2, 8), 50))
        header_row = 3
        sheet.freeze_panes(header_row + 1, 0)
        _xlsx_string(sheet, 0, 0, neutralise_cell(title), "title", formats["title"])
        _xlsx_string(sheet, 1, 0, neutralise_cell(subtitle), "subtitle", formats["subtitle"])
        for column, name in enumerate(names):
            _xlsx_string(sheet, header_row, column, neutralise_cell(name), name, formats["header"])
        last = header_row
        for last, row in enumerate(_rows(table), start=header_row + 1):
            _readable_row(sheet, last, row, kinds, names, formats)
        if totals is not None and totals.num_rows:
            last += 1
            row = next(_rows(totals))
            _readable_row(sheet, last, row, kinds, names, total_formats)
            _xlsx_string(sheet, last, 0, "Total", names[0], total_formats["string"])
        if table.num_columns:
            sheet.autofilter(header_row, 0, header_row + table.num_rows, table.num_columns - 1)
        if chart is not None and table.num_rows:
            _add_chart(workbook, sheet_name, names, header_row, table.num_rows, chart)
    except BaseException:
        _discard(workbook)
        raise
    workbook.close()


def _readable_row(sheet, row_number: int, row: tuple, kinds: list[str], names: list[str], formats: dict) -> None:
    for column, (value, kind) in enumerate(zip(row, kinds, strict=False)):
        if value is None:
            continue
        if kind == "string":
            _xlsx_string(sheet, row_number, column, neutralise_cell(value), names[column], formats.get("string"))
        elif kind == "bool":
            sheet.write_boolean(row_number, column, value)
        elif kind in ("duration", "rate", "float", "decimal", "int"):
            number = float(value)
            if not _finite(number):
                continue
            if kind == "int" and abs(value) >= EXCEL_MAX_EXACT_INT:
                sheet.write_string(row_number, column, str(value))
                continue
            if kind == "duration":
                number /= 86_400  # Excel durations are fractions of a day
            sheet.write_number(row_number, column, number, formats["float" if kind == "decimal" else kind])
        elif kind == "date":
            sheet.write_datetime(row_number, column, value, formats["date"])
        elif kind in ("timestamp", "time"):
            sheet.write_string(row_number, column, value.isoformat())


def _add_chart(workbook, sheet_name: str, names: list[str], header_row: int, rows: int, spec: SheetChart) -> None:
    if spec.kind == "line":
        chart = workbook.add_chart({"type": "line"})
    else:
        chart = workbook.add_chart({"type": "column", "subtype": "stacked"})
    palette = ["#0072B2", "#D55E00", "#E69F00", "#009E73", "#56B4E9", "#CC79A7"]  # Okabe-Ito
    category = names.index(spec.category)
    first, last = header_row + 1, header_row + rows
    for i, value in enumerate(spec.values):
        column = names.index(value)
        colour = {"color": palette[i % len(palette)]}
        chart.add_series({
            "name": [sheet_name, header_row, column],
            "categories": [sheet_name, first, category, last, category],
            "values": [sheet_name, first, column, last, column],
            **({"line": colour} if spec.kind == "line" else {"fill": colour}),
        })
    chart.set_title({"name": spec.title})
    chart.set_x_axis({"name": spec.category})
    chart.set_y_axis({"name": spec.y_title})
    chart.set_legend({"position": "bottom"})
    chart.set_size({"width": 760, "height": 400})
    workbook.add_worksheet("chart").insert_chart("B2", chart)


# --- streaming: a period written batch by batch ------------------------------------------------------
#: What :func:`write_batches` writes (``json`` is JSON lines: one object per row).
STREAM_FORMATS: tuple[str, ...] = ("csv", "json", "parquet", "xlsx")
#: What :func:`stream_batches` writes to a pipe (standard output).
PIPE_FORMATS: tuple[str, ...] = ("csv", "json")


class _BatchStream:
    """Tables arriving one at a time, looking enough like one ``pa.Table`` for the writers above: its
    batches are read once, in order, and ``num_rows`` counts the rows seen so far (the XLSX writer reads it
    after the last row, for the autofilter). Past ``max_rows`` it refuses, naming ``rows``."""

    def __init__(self, batches: Iterable[pa.Table | pa.RecordBatch], schema: pa.Schema, max_rows: int | None,
                 limit_text: str = "") -> None:
        self._batches = iter(batches)
        self.schema = schema
        self.column_names = schema.names
        self.num_columns = len(schema.names)
        self.num_rows = 0
        self._max_rows = max_rows
        self._limit_text = limit_text

    def to_batches(self, max_chunksize: int = _BATCH_ROWS) -> Iterator[pa.RecordBatch]:
        for item in self._batches:
            table = item if isinstance(item, pa.Table) else pa.Table.from_batches([item])
            if table.schema.names != self.schema.names:
                raise ValueError(f"a batch with columns {table.schema.names} in a stream of {self.schema.names}")
            for batch in table.to_batches(max_chunksize=max_chunksize):
                self.num_rows += batch.num_rows
                if self._max_rows is not None and self.num_rows > self._max_rows:
                    raise InvalidInput("rows", f"more than {self._max_rows:,} rows{self._limit_text}; use csv or parquet")
                yield batch


def _json_value(value: object, kind: str) -> object:
    if value is None:
        return None
    if kind == "float":
        return value if _finite(value) else None  # type: ignore[arg-type]
    if kind == "decimal":
        return format(value, "f")
    if kind in ("timestamp", "date", "time"):
        return value.isoformat()  # type: ignore[attr-defined]
    return value


def _write_json_lines(stream: _BatchStream, kinds: list[str], out: BinaryIO) -> None:
    import json

    names = stream.column_names
    for row in _rows(stream):  # type: ignore[arg-type]
        record = {name: _json_value(value, kind) for name, value, kind in zip(names, row, kinds, strict=True)}
        out.write(json.dumps(record, ensure_ascii=False, separators=(",", ":")).encode() + b"\n")


def _write_parquet_batches(stream: _BatchStream, target: Path) -> None:
    with pq.ParquetWriter(str(target), stream.schema, compression="zstd") as writer:
        for batch in stream.to_batches(max_chunksize=1 << 20):  # one row group per day (at most 1M rows)
            writer.write_table(pa.Table.from_batches([batch], schema=stream.schema))


def _csv_column(column: pa.ChunkedArray | pa.Array, kind: str) -> list[str]:
    """One column's CSV texts, exactly as :func:`_csv_text` gives them cell by cell, but formatted by Arrow
    where it can be (integers, dates, booleans, UTC timestamps); text cells still go through
    :func:`neutralise_cell` one by one."""
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks()
    if pat.is_dictionary(column.type):
        column = column.dictionary_decode()
    if kind == "string":
        return ["" if value is None else neutralise_cell(value) for value in column.to_pylist()]
    if kind == "int" or kind == "date":
        return pc.cast(column, pa.string()).fill_null("").to_pylist()
    if kind == "bool":
        return pc.if_else(column, "true", "false").fill_null("").to_pylist()
    if kind == "timestamp" and column.type.tz in ("UTC", "+00:00", "Etc/UTC") and column.type.unit in ("s", "ms", "us"):
        import numpy as np

        micros = pc.cast(pc.cast(column, pa.timestamp("us", column.type.tz)), pa.int64())
        valid = np.asarray(micros.is_valid())
        values = np.asarray(micros.fill_null(0))
        seconds, parts = np.divmod(values, 1_000_000)  # floor: 1969-12-31T23:59:59.5 is -500,000 us
        texts = np.datetime_as_string(seconds.astype("datetime64[s]"), unit="s").tolist()
        return ["" if not ok else f"{text}.{part:06d}+00:00" if part else f"{text}+00:00"
                for text, part, ok in zip(texts, parts.tolist(), valid.tolist(), strict=True)]
    return [_csv_text(value, kind) for value in column.to_pylist()]


def _csv_rows(batch: pa.RecordBatch, kinds: list[str]) -> Iterator[tuple[str, ...]]:
    return zip(*(_csv_column(column, kind) for column, kind in zip(batch.columns, kinds, strict=True)), strict=True)


def _write_csv_columns(stream: _BatchStream, kinds: list[str], out: BinaryIO | _Counting, bom: bool) -> None:
    """CSV as :func:`_write_csv` writes it (same header, quoting, line ends and cell texts), a batch at a time,
    each batch's columns formatted by :func:`_csv_column`."""
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\r\n")
    writer.writerow([neutralise_cell(name) for name in stream.column_names])
    out.write(("\ufeff" if bom else "").encode() + text.getvalue().encode())
    for batch in stream.to_batches(max_chunksize=_BATCH_ROWS):
        text.seek(0)
        text.truncate()
        writer.writerows(_csv_rows(batch, kinds))
        out.write(text.getvalue().encode())


def write_batches(batches: Iterable[pa.Table | pa.RecordBatch], schema: pa.Schema, path: Path, fmt: str, *,
                  sheet_name: str = "report") -> tuple[WrittenFile, int]:
    """Write tables of ``schema`` arriving one by one (a period's days) to ``path`` as ``fmt``, atomically,
    holding one batch at a time; returns the file and its rows.

    Every rule of :func:`write_table` holds, byte for byte (XLSX is the very same writer; CSV formats each
    batch's columns with Arrow and NumPy where it can, about 3x faster, and gives the same bytes, which tests compare):
    formula-safe text cells, CSV with a BOM, XLSX in constant-memory mode, refused past Excel's row limit
    (``rows``: nothing is written, the temporary file is removed). Parquet gets one row group per batch;
    ``json`` is JSON lines (typed values, no neutralisation: it is read by programs, like Parquet).
    """
    fmt_name = fmt.strip().lower() if isinstance(fmt, str) else fmt
    if fmt_name not in STREAM_FORMATS:
        raise InvalidInput("format", f"{fmt!r} is not one of {', '.join(STREAM_FORMATS)}")
    kinds = _flat_kinds(schema.empty_table()) if fmt_name != "parquet" else []
    path = Path(path)
    if not path.name or path.name in (".", ".."):
        raise InvalidInput("path", f"{str(path)!r} does not name a file")
    limit = (EXCEL_MAX_ROWS - 1, f" do not fit in an Excel sheet (at most {EXCEL_MAX_ROWS - 1:,} below the header)")
    stream = _BatchStream(batches, schema, *(limit if fmt_name == "xlsx" else (None, "")))
    if fmt_name == "xlsx":
        _check_excel_limits(schema.empty_table(), sheet_name)
        writer: Callable[[Path], None] = lambda temporary: _write_xlsx(stream, kinds, temporary, sheet_name)  # type: ignore[arg-type]
    elif fmt_name == "csv":
        def writer(temporary: Path) -> None:
            with open(temporary, "xb") as out:
                _write_csv_columns(stream, kinds, out, bom=True)
    elif fmt_name == "json":
        def writer(temporary: Path) -> None:
            with open(temporary, "xb") as out:
                _write_json_lines(stream, kinds, out)
    else:
        writer = lambda temporary: _write_parquet_batches(stream, temporary)
    return _write_atomically(path, writer), stream.num_rows


class _Counting:
    """A binary stream that counts what goes through it."""

    def __init__(self, out: BinaryIO) -> None:
        self.out = out
        self.bytes = 0

    def write(self, data: bytes) -> int:
        self.out.write(data)
        self.bytes += len(data)
        return len(data)


def stream_batches(batches: Iterable[pa.Table | pa.RecordBatch], schema: pa.Schema, out: BinaryIO,
                   fmt: str) -> tuple[int, int]:
    """Tables of ``schema`` written to a pipe as they arrive, as CSV (formula-safe like the files, UTF-8
    without a BOM: a pipe is read by programs, and a BOM would stick to the first column's name) or JSON
    lines; returns (rows, bytes). Nothing is written before the first row's batch is formatted."""
    fmt_name = fmt.strip().lower() if isinstance(fmt, str) else fmt
    if fmt_name not in PIPE_FORMATS:
        raise InvalidInput("format", f"{fmt!r} cannot be written to standard output (only {', '.join(PIPE_FORMATS)}); "
                                     "give --out PATH")
    kinds = _flat_kinds(schema.empty_table())
    stream = _BatchStream(batches, schema, None)
    counted = _Counting(out)
    if fmt_name == "json":
        _write_json_lines(stream, kinds, counted)  # type: ignore[arg-type]
    else:
        _write_csv_columns(stream, kinds, counted, bom=False)
    out.flush()
    return stream.num_rows, counted.bytes


__all__ = ["EXPORT_FORMATS", "FORMATS", "write_bytes", "FORMULA_TRIGGERS", "could_run_as_formula", "MEDIA_TYPES", "SheetChart", "WrittenFile", "neutralise_cell",
           "readable_kind", "write_readable_xlsx", "write_table", "PIPE_FORMATS", "STREAM_FORMATS", "stream_batches",
           "write_batches"]
