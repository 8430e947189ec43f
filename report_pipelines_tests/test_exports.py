"""The tabular writer: formula injection neutralised in CSV and XLSX, typed cells, atomic writes, Parquet as is."""

from __future__ import annotations

import csv
import datetime as dt
import decimal
import hashlib
import io
import os
import re
import tempfile
from pathlib import Path

import openpyxl
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from report_pipelines.adapters import exports
from report_pipelines.adapters.exports import FORMATS, WrittenFile, neutralise_cell, write_table
from report_pipelines.domain.errors import InvalidInput

UTC = dt.UTC
FORMULAS = ["=cmd|' /C calc'!A0", "+1+1", "-2+3", "@SUM(1)", "\t=1", "\r=1", "=HYPERLINK(\"http://x\",\"y\")", "-", "="]
NORMAL = ["Acme Sales", "João Gonçalves", "a-b", "1+1", "0123", "http://example.com", "'quoted", "", " =1", "x=1"]
#: Plain (phone) numbers: they cannot run as a formula, so CSV leaves them as the PBX logged them.
PHONES = ["+4930123456", "+49 30 1234567", "-5", "+351.5"]


def sample() -> pa.Table:
    """Strings (formula-like and normal), a negative number, nulls, a UTC instant, a date."""
    strings = FORMULAS + NORMAL + [None]
    n = len(strings)
    return pa.table({
        "agent": pa.array(strings, pa.string()),
        "calls": pa.array([-5, 0, 3] + [7] * (n - 4) + [None], pa.int64()),
        "talk_seconds": pa.array([-2.5, 0.1, 1e20] + [60.0] * (n - 4) + [None], pa.float64()),
        "started": pa.array([dt.datetime(2024, 3, 10, 7, 0, tzinfo=UTC)] * (n - 1) + [None], pa.timestamp("us", tz="UTC")),
        "date": pa.array([dt.date(2024, 2, 29)] * (n - 1) + [None], pa.date32()),
    })


def read_csv(path: Path) -> list[list[str]]:
    with open(path, encoding="utf-8-sig", newline="") as f:
        return list(csv.reader(f))


def xlsx_text(value: str | None) -> str:
    """A string cell as Excel shows it: OOXML writes control characters as ``_xHHHH_`` (CR is
    ``_x000D_``, a literal ``_x`` is ``_x005F_x``); Excel decodes them, openpyxl's reader does not."""
    return re.sub(r"_x([0-9A-Fa-f]{4})_", lambda m: chr(int(m[1], 16)), value or "")


def no_leftovers(folder: Path, *expected: str) -> None:
    assert sorted(p.name for p in folder.iterdir()) == sorted(expected)


# --- neutralise_cell ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("value", FORMULAS)
def test_formula_triggers_get_a_quote(value: str) -> None:
    assert neutralise_cell(value) == "'" + value


@pytest.mark.parametrize("value", NORMAL + PHONES)
def test_other_strings_are_unchanged(value: str) -> None:
    assert neutralise_cell(value) == value


def test_phone_numbers_are_not_mangled_but_formulas_are_neutralised(tmp_path: Path) -> None:
    values = PHONES + ["+49-30-1234", "+1 (212) 555-0100", "+cmd|' /C calc'!A0", "-2+3"]
    write_table(pa.table({"caller": values}), tmp_path / "r.csv", "csv")
    # By hand: the four plain numbers stay; hyphens, parentheses, pipes or a second operator could compute.
    assert [row[0] for row in read_csv(tmp_path / "r.csv")[1:]] == PHONES + ["'" + v for v in values[4:]]
    write_table(pa.table({"caller": values}), tmp_path / "r.xlsx", "xlsx")
    cells = [row[0] for row in openpyxl.load_workbook(tmp_path / "r.xlsx", read_only=True).active.iter_rows(min_row=2)]
    assert [c.value for c in cells] == values and {c.data_type for c in cells} == {"s"}  # verbatim string cells


# --- CSV ---------------------------------------------------------------------------------------------------
def test_csv_neutralises_strings_and_keeps_numbers(tmp_path: Path) -> None:
    path = tmp_path / "report.csv"
    written = write_table(sample(), path, "csv")
    assert written == WrittenFile(path, path.stat().st_size, hashlib.sha256(path.read_bytes()).hexdigest())
    raw = path.read_bytes()
    assert raw.startswith(b"\xef\xbb\xbfagent,calls,talk_seconds,started,date\r\n")  # BOM, header, CRLF
    header, *rows = read_csv(path)
    assert header == ["agent", "calls", "talk_seconds", "started", "date"]
    agents = [row[0] for row in rows]
    assert agents[: len(FORMULAS)] == ["'" + v for v in FORMULAS]
    assert agents[len(FORMULAS): -1] == NORMAL
    assert rows[0][1:] == ["-5", "-2.5", "2024-03-10T07:00:00+00:00", "2024-02-29"]  # numbers stay numbers
    assert rows[2][1:3] == ["3", "1e+20"]
    assert rows[-1] == ["", "", "", "", ""]  # nulls are empty fields


def test_csv_neutralises_column_names(tmp_path: Path) -> None:
    table = pa.table({"=evil()": ["x"], "-1": [1], "ok": ["@me"]})
    write_table(table, tmp_path / "r.csv", "csv")
    assert read_csv(tmp_path / "r.csv") == [["'=evil()", "-1", "ok"], ["x", "1", "'@me"]]


def test_csv_quotes_separators_and_line_breaks(tmp_path: Path) -> None:
    values = ['a,b', 'say "hi"', "two\nlines", "x\r\ny", "semi;colon"]
    write_table(pa.table({"v": values}), tmp_path / "r.csv", "csv")
    assert [row[0] for row in read_csv(tmp_path / "r.csv")[1:]] == values


def test_csv_types(tmp_path: Path) -> None:
    sao_paulo = pa.array([dt.datetime(2024, 6, 1, 15, 0, tzinfo=UTC)], pa.timestamp("ms", tz="America/Sao_Paulo"))
    table = pa.table({
        "local": sao_paulo,
        "naive": pa.array([dt.datetime(2024, 6, 1, 12, 30)], pa.timestamp("s")),
        "amount": pa.array([decimal.Decimal("-1234.50")], pa.decimal128(12, 2)),
        "big": pa.array([decimal.Decimal("1E+3")], pa.decimal128(12, 2)),
        "flag": [True],
        "nan": [float("nan")],
        "minus_inf": [float("-inf")],
        "at": pa.array([dt.time(9, 5)], pa.time32("s")),
        "queue": pa.array(["=sales"]).dictionary_encode(),
        "empty": pa.nulls(1),
    })
    write_table(table, tmp_path / "r.csv", "csv")
    assert read_csv(tmp_path / "r.csv")[1] == [
        "2024-06-01T12:00:00-03:00", "2024-06-01T12:30:00", "-1234.50", "1000.00", "true", "", "", "09:05:00",
        "'=sales", ""]


def test_csv_nanosecond_timestamps_from_pandas(tmp_path: Path) -> None:
    frame = pd.DataFrame({"at": pd.to_datetime(["2024-03-10 07:00:00.123456789"]).tz_localize("UTC")})
    write_table(pa.Table.from_pandas(frame, preserve_index=False), tmp_path / "r.csv", "csv")
    assert read_csv(tmp_path / "r.csv")[1] == ["2024-03-10T07:00:00.123456789+00:00"]


# --- XLSX --------------------------------------------------------------------------------------------------
def test_xlsx_writes_typed_string_cells_and_keeps_types(tmp_path: Path) -> None:
    path = tmp_path / "report.xlsx"
    written = write_table(sample(), path, "xlsx", sheet_name="March")
    assert written.bytes == path.stat().st_size and written.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    book = openpyxl.load_workbook(path, read_only=True)
    assert book.sheetnames == ["March"]
    rows = list(book["March"].iter_rows())
    assert len(rows) == sample().num_rows  # header + data rows; the last, all-null row has no cell at all
    assert [c.value for c in rows[0]] == ["agent", "calls", "talk_seconds", "started", "date"]
    for row, expected in zip(rows[1:], FORMULAS + NORMAL, strict=False):  # typed string cells: verbatim, no prefix
        cell = row[0]
        assert xlsx_text(cell.value) == expected  # (openpyxl reads an empty string cell as None)
        if expected:
            assert cell.data_type == "s"  # a string cell: never a formula, number or link
    first = rows[1]
    assert (first[1].value, first[1].data_type) == (-5, "n")  # a negative number stays a number
    assert (first[2].value, first[2].data_type) == (-2.5, "n")
    assert (first[3].value, first[3].data_type) == ("2024-03-10T07:00:00+00:00", "s")  # instants as ISO text
    assert first[4].value == dt.datetime(2024, 2, 29) and first[4].is_date  # dates as Excel dates
    assert rows[3][2].value == 1e20
    book.close()
    sheet = openpyxl.load_workbook(path).active
    assert [sheet.cell(len(rows) + 1, column).value for column in range(1, 6)] == [None] * 5  # nulls: empty cells


def test_xlsx_header_is_bold_and_frozen_and_names_are_typed_strings(tmp_path: Path) -> None:
    write_table(pa.table({"=evil()": ["x"], "ok": [1]}), tmp_path / "r.xlsx", "xlsx")
    sheet = openpyxl.load_workbook(tmp_path / "r.xlsx").active
    assert sheet["A1"].value == "=evil()" and sheet["A1"].data_type == "s" and sheet["A1"].font.b
    assert sheet.freeze_panes == "A2"
    assert sheet.auto_filter.ref == "A1:B2"


def test_xlsx_never_interprets_strings(tmp_path: Path) -> None:
    values = ["0123", "1e5", "http://example.com", "mailto:a@b.com", "TRUE", "2024-03-01", "=1", "1,5"]
    write_table(pa.table({"v": values}), tmp_path / "r.xlsx", "xlsx")
    cells = [row[0] for row in openpyxl.load_workbook(tmp_path / "r.xlsx", read_only=True).active.iter_rows(min_row=2)]
    assert [c.value for c in cells] == values
    assert {c.data_type for c in cells} == {"s"}


def test_xlsx_big_integers_and_non_finite_floats(tmp_path: Path) -> None:
    table = pa.table({"id": pa.array([10**15, -(10**15) + 1], pa.int64()), "x": [float("inf"), float("nan")],
                      "flag": [False, True], "amount": pa.array([decimal.Decimal("2.50"), None], pa.decimal128(5, 2))})
    write_table(table, tmp_path / "r.xlsx", "xlsx")
    rows = list(openpyxl.load_workbook(tmp_path / "r.xlsx", read_only=True).active.iter_rows(min_row=2))
    assert (rows[0][0].value, rows[0][0].data_type) == ("1000000000000000", "s")  # 16 digits: kept exact as text
    assert (rows[1][0].value, rows[1][0].data_type) == (-(10**15) + 1, "n")
    assert [rows[0][1].value, rows[1][1].value] == [None, None]
    assert [rows[0][2].value, rows[1][2].value] == [False, True]
    assert rows[0][3].value == 2.5


def test_xlsx_refuses_more_rows_than_a_sheet_holds(tmp_path: Path) -> None:
    table = pa.table({"n": pa.array(range(exports.EXCEL_MAX_ROWS), pa.int32())})  # + header = one too many
    with pytest.raises(InvalidInput) as error:
        write_table(table, tmp_path / "r.xlsx", "xlsx")
    assert error.value.field == "rows" and "1,048,575" in error.value.message
    no_leftovers(tmp_path)


@pytest.mark.parametrize("name", ["", "x" * 32, "a/b", "a[1]", "what?", "'quoted'", "History", "a\nb"])
def test_xlsx_sheet_name_is_checked(tmp_path: Path, name: str) -> None:
    with pytest.raises(InvalidInput) as error:
        write_table(pa.table({"v": [1]}), tmp_path / "r.xlsx", "xlsx", sheet_name=name)
    assert error.value.field == "sheet_name"
    no_leftovers(tmp_path)


# --- what a cell cannot hold -------------------------------------------------------------------------------
@pytest.mark.parametrize("fmt", ["csv", "xlsx"])
@pytest.mark.parametrize("array", [
    pa.array([[1, 2]]), pa.array([{"a": 1}]), pa.array([b"\x00"], pa.binary()),
    pa.array([dt.timedelta(seconds=5)], pa.duration("s")),
])
def test_nested_or_binary_columns_are_refused_for_spreadsheets(tmp_path: Path, fmt: str, array: pa.Array) -> None:
    with pytest.raises(InvalidInput) as error:
        write_table(pa.table({"bad": array}), tmp_path / f"r.{fmt}", fmt)
    assert error.value.field == "columns" and "'bad'" in error.value.message
    no_leftovers(tmp_path)


# --- atomicity ---------------------------------------------------------------------------------------------
def many_rows(last: str) -> pa.Table:
    return pa.table({"v": ["row"] * 20_000 + [last]})


def test_xlsx_failure_mid_write_leaves_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    system_tmp = tmp_path / "system-tmp"
    system_tmp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(system_tmp))  # where XlsxWriter streams its rows
    out = tmp_path / "out"
    with pytest.raises(InvalidInput) as error:
        write_table(many_rows("x" * 40_000), out / "r.xlsx", "xlsx")  # too long for a cell, at the end
    assert error.value.field == "cell" and "row 20001" in error.value.message
    no_leftovers(out)
    no_leftovers(system_tmp)


def test_csv_failure_mid_write_leaves_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real = exports.neutralise_cell

    def failing(value: str) -> str:
        if value == "boom":
            raise OSError("disk full")  # what a full disk would raise, 20,000 rows in
        return real(value)

    monkeypatch.setattr(exports, "neutralise_cell", failing)
    with pytest.raises(OSError, match="disk full"):
        write_table(many_rows("boom"), tmp_path / "r.csv", "csv")
    no_leftovers(tmp_path)


def test_parquet_failure_mid_write_leaves_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def half_written(table: pa.Table, where: str, **kwargs: object) -> None:
        Path(where).write_bytes(b"PAR1 half a file")
        raise OSError("disk full")

    monkeypatch.setattr(exports.pq, "write_table", half_written)
    with pytest.raises(OSError, match="disk full"):
        write_table(sample(), tmp_path / "r.parquet", "parquet")
    no_leftovers(tmp_path)


def test_a_failed_rewrite_keeps_the_previous_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "r.csv"
    first = write_table(pa.table({"v": ["old"]}), path, "csv")

    def failing_replace(source: object, target: object) -> None:
        raise OSError("rename failed")

    monkeypatch.setattr(exports.os, "replace", failing_replace)
    with pytest.raises(OSError, match="rename failed"):
        write_table(pa.table({"v": ["new"]}), path, "csv")
    no_leftovers(tmp_path, "r.csv")
    assert hashlib.sha256(path.read_bytes()).hexdigest() == first.sha256


def test_rewrite_replaces_and_creates_folders(tmp_path: Path) -> None:
    path = tmp_path / "client=7" / "schedule=3" / "12-acme.csv"
    write_table(pa.table({"v": ["old"]}), path, "csv")
    write_table(pa.table({"v": ["new"]}), path, "csv")
    assert read_csv(path) == [["v"], ["new"]]
    no_leftovers(path.parent, "12-acme.csv")


# --- Parquet -----------------------------------------------------------------------------------------------
def test_parquet_round_trip_without_neutralisation(tmp_path: Path) -> None:
    table = sample()
    written = write_table(table, tmp_path / "r.parquet", "parquet")
    back = pq.read_table(written.path)
    assert back.equals(table)  # "=cmd|..." and "-2+3" come back exactly: data, not a spreadsheet
    assert pq.ParquetFile(written.path).metadata.row_group(0).column(0).compression == "ZSTD"
    assert written.sha256 == hashlib.sha256(written.path.read_bytes()).hexdigest()


def test_empty_tables(tmp_path: Path) -> None:
    table = pa.table({"agent": pa.array([], pa.string()), "calls": pa.array([], pa.int64())})
    for fmt in FORMATS:
        write_table(table, tmp_path / f"r.{fmt}", fmt)
    assert read_csv(tmp_path / "r.csv") == [["agent", "calls"]]
    rows = list(openpyxl.load_workbook(tmp_path / "r.xlsx", read_only=True).active.iter_rows(values_only=True))
    assert rows == [("agent", "calls")]
    assert pq.read_table(tmp_path / "r.parquet").num_rows == 0


# --- arguments ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("fmt", ["xls", "json", "", "../csv", None])
def test_unknown_format(tmp_path: Path, fmt: object) -> None:
    with pytest.raises(InvalidInput) as error:
        write_table(sample(), tmp_path / "r.out", fmt)  # type: ignore[arg-type]
    assert error.value.field == "format"
    no_leftovers(tmp_path)


def test_format_names_are_forgiving_about_case(tmp_path: Path) -> None:
    assert write_table(pa.table({"v": [1]}), tmp_path / "r.csv", " CSV ").path == tmp_path / "r.csv"
    assert os.path.exists(tmp_path / "r.csv")
    assert io.BytesIO((tmp_path / "r.csv").read_bytes()).read(3) == b"\xef\xbb\xbf"
