"""The streaming writers: the same files as write_table, one batch at a time, formula-safe, all or nothing."""

from __future__ import annotations

import datetime as dt
import io
import json
import tempfile
from pathlib import Path

import openpyxl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from report_pipelines.adapters.exports import stream_batches, write_batches, write_table
from report_pipelines.domain.errors import InvalidInput

UTC = dt.UTC


def table() -> pa.Table:
    return pa.table({
        "caller": ["=HYPERLINK(\"x\")", "+351 912", "João", None, "@sum", "-5 min"],
        "wait": [1.5, float("nan"), -2.0, None, 0.0, 12.25],
        "calls": [1, -5, 0, None, 2**60, 7],
        "day": [dt.date(2024, 3, 10)] * 6,
        "at": pa.array([dt.datetime(2024, 3, 10, 7, tzinfo=UTC)] * 5 + [None], pa.timestamp("us", "UTC")),
        # sub-second parts, an instant before 1970, another zone, seconds and milliseconds
        "odd": pa.array([dt.datetime(2024, 3, 10, 7, 0, 0, 120, tzinfo=UTC), dt.datetime(1969, 12, 31, 23, 59, 59, 500000,
                         tzinfo=UTC), None, dt.datetime(2024, 3, 10, 7, 0, 0, 999999, tzinfo=UTC),
                         dt.datetime(2000, 1, 1, tzinfo=UTC), dt.datetime(2024, 2, 29, 12, tzinfo=UTC)],
                        pa.timestamp("us", "UTC")),
        "ms": pa.array([1_700_000_000_123, -1, 0, None, 5, 1_000], pa.timestamp("ms", "UTC")),
        "ny": pa.array([dt.datetime(2024, 3, 10, 7, tzinfo=UTC)] * 6, pa.timestamp("us", "America/New_York")),
        "naive": pa.array([dt.datetime(2024, 3, 10, 7, 30)] * 6, pa.timestamp("s")),
        "flag": [True, False, None, True, True, False],
        "code": pa.array(["=a", "b", "=a", None, "b", "c"]).dictionary_encode(),
    })


def parts(whole: pa.Table) -> list[pa.Table]:
    return [whole.slice(0, 2), whole.slice(2, 0), whole.slice(2, 3), whole.slice(5)]  # an empty one too


def test_csv_in_batches_is_byte_for_byte_write_table(tmp_path: Path) -> None:
    whole = table()
    written, rows = write_batches(parts(whole), whole.schema, tmp_path / "b.csv", "csv")
    reference = write_table(whole, tmp_path / "a.csv", "csv")
    assert (tmp_path / "b.csv").read_bytes() == reference.path.read_bytes()
    assert (rows, written.bytes, written.sha256) == (6, reference.bytes, reference.sha256)
    text = (tmp_path / "b.csv").read_text(encoding="utf-8-sig")
    assert "'=HYPERLINK" in text and "'@sum" in text and "'-5 min" in text
    assert "\n+351 912," in text and "'+351" not in text  # a phone number is no formula: left as it is
    assert ",-5," in text  # a negative number stays a number


def test_xlsx_in_batches_holds_what_write_table_holds(tmp_path: Path) -> None:
    whole = table()
    write_batches(parts(whole), whole.schema, tmp_path / "b.xlsx", "xlsx", sheet_name="calls")
    write_table(whole, tmp_path / "a.xlsx", "xlsx", sheet_name="calls")

    def cells(path: Path) -> list[tuple]:
        return list(openpyxl.load_workbook(path, read_only=True)["calls"].iter_rows(values_only=True))

    assert cells(tmp_path / "b.xlsx") == cells(tmp_path / "a.xlsx")
    # a typed string cell: Excel shows the text and never runs it (no quote needed there)
    first = next(openpyxl.load_workbook(tmp_path / "b.xlsx", read_only=True)["calls"].iter_rows(min_row=2))[0]
    assert (first.value, first.data_type) == ("=HYPERLINK(\"x\")", "s")


def test_parquet_gets_one_row_group_per_batch_and_json_lines_typed_values(tmp_path: Path) -> None:
    whole = table()
    write_batches(parts(whole), whole.schema, tmp_path / "b.parquet", "parquet")
    stored = pq.ParquetFile(tmp_path / "b.parquet")
    assert stored.metadata.num_row_groups == 3  # the empty batch adds none
    reference = pq.read_table(write_table(whole, tmp_path / "a.parquet", "parquet").path)
    assert stored.read().to_pandas().equals(reference.to_pandas())  # (NaN equals NaN there)
    write_batches(parts(whole), whole.schema, tmp_path / "b.jsonl", "json")
    rows = [json.loads(line) for line in (tmp_path / "b.jsonl").read_text(encoding="utf-8").splitlines()]
    assert {k: rows[0][k] for k in ("caller", "wait", "calls", "day", "at")} == {
        "caller": "=HYPERLINK(\"x\")", "wait": 1.5, "calls": 1, "day": "2024-03-10", "at": "2024-03-10T07:00:00+00:00"}  # typed data for programs: not neutralised
    assert rows[1]["wait"] is None and rows[4]["calls"] == 2**60 and rows[3]["caller"] is None


def test_a_pipe_gets_the_csv_without_a_bom_and_refuses_binary_formats() -> None:
    whole = table()
    out = io.BytesIO()
    assert stream_batches(parts(whole), whole.schema, out, "csv") == (6, len(out.getvalue()))
    assert out.getvalue() == write_table(whole, Path(tempfile.mkdtemp()) / "a.csv", "csv").path.read_bytes()[3:]
    assert out.getvalue().startswith(b"caller,wait,calls,day,at,odd,ms,ny,naive,flag,code\r\n\"'=HYPERLINK(\"\"x\"\")\",1.5,")
    for fmt in ("xlsx", "parquet"):
        with pytest.raises(InvalidInput) as err:
            stream_batches(parts(whole), whole.schema, io.BytesIO(), fmt)
        assert err.value.field == "format"


def test_a_stream_that_fails_half_way_leaves_no_file_and_the_old_one_untouched(tmp_path: Path) -> None:
    whole = table()

    def failing():
        yield whole.slice(0, 3)
        raise OSError("the store went away")

    target = tmp_path / "out.csv"
    target.write_text("the previous extract")
    for fmt in ("csv", "xlsx", "parquet", "json"):
        with pytest.raises(OSError):
            write_batches(failing(), whole.schema, target, fmt)
        assert target.read_text() == "the previous extract"
        assert sorted(p.name for p in tmp_path.iterdir()) == ["out.csv"]
    with pytest.raises(ValueError, match="a batch with columns"):
        write_batches([whole.select(["caller"])], whole.schema, tmp_path / "other.csv", "csv")
    assert not (tmp_path / "other.csv").exists()
