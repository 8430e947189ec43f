"""Real PBX exports (issue 10): numbered trunks, queue ring attempts, IVR then agent, queue_log,
broken quoting, legacy code pages, ids repeated in a file, --replace and the late-data path, old
history, layouts and date formats, spreadsheets, refusals. Expected figures are worked out by hand
in each test from the lines of its file."""

from __future__ import annotations

import csv
import datetime as dt
import json
import zipfile
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from report_pipelines.adapters.db.models import CallEvent, QueueAgentPauseRow, QueueAgentSessionRow, QueueCallRow
from report_pipelines.adapters.db.repositories import CallEventRepository, ClientRepository
from report_pipelines.app import App
from report_pipelines.cli import main
from report_pipelines.domain.errors import InvalidInput
from report_pipelines.domain.pbx import pbx_config
from report_pipelines.domain.reports import get_report
from report_pipelines.domain.reports.base import DayContext
from report_pipelines.domain.reports.screening import screen_calls
from report_pipelines.domain.timezones import local_day_window, parse_zone
from report_pipelines.services.cdr_import import client_pbx_config, import_cdr
from report_pipelines.services.clients import add_client
from report_pipelines.services.extracts import ClientDay, Extractor
from report_pipelines.services.staleness import find_stale_client_days
from report_pipelines.settings import Settings
from report_pipelines_tests.test_cdr_import import call, rejects_of, stored, utc

UTC = dt.UTC
FIXTURES = Path(__file__).parent / "fixtures" / "cdr"
QUEUE_CDR, QUEUE_LOG = FIXTURES / "queue_Master.csv", FIXTURES / "queue_log"


def q(*values: object) -> str:
    """A cdr_csv line: strings quoted (inner quotes doubled), ints bare."""
    return ",".join(str(v) if isinstance(v, int) else '"' + str(v).replace('"', '""') + '"' for v in values)


def master_line(src: str, dst: str, ctx: str, chan: str, dstchan: str, app: str, start: str, answer: str, end: str,
                duration: int, billsec: int, disposition: str, uid: str, clid: str = "", seq: int = 1) -> str:
    return q("", src, dst, ctx, clid, chan, dstchan, app, "", start, answer, end, duration, billsec, disposition,
             "DOCUMENTATION", uid, "", "", uid, seq)


def queue_day(engine: Engine, client_id: int, day: dt.date, zone: str) -> dict:
    calls = CallEventRepository(engine).day_calls(client_id, *local_day_window(day, parse_zone(zone)))
    ctx = DayContext(client_id, zone, day)
    table = get_report("queue_performance").compute_day(screen_calls(calls, ctx).clean, ctx)
    return {row["queue"]: row for row in table.to_pylist()}


# --- 2, 3, 4: queue ring attempts, IVR then agent, queue_log -------------------------------------------
CDR_ONLY = {
    # A: IVR (answered by BackGround at 10:00:01), the queue rang 201 (NO ANSWER, billsec 15), 202 took it
    # at 10:00:42: answered when the agent picked up, not when the IVR answered.
    "1709978400.1": call("inbound", "support", "202", "+4930111", "s",
                         "2024-03-09 10:00:00", "2024-03-09 10:00:42", "2024-03-09 10:05:00", "ANSWERED"),
    # B: held by the IVR and the queue, 201 rang, the caller hung up: abandoned.
    "1709979000.5": call("inbound", "support", None, "+4930222", "s",
                         "2024-03-09 10:10:00", None, "2024-03-09 10:10:40", "ABANDONED"),
    # C: IVR then straight to 203, who answered at 10:20:26.
    "1709979600.9": call("inbound", None, "203", "+4930333", "s",
                         "2024-03-09 10:20:00", "2024-03-09 10:20:26", "2024-03-09 10:22:26", "ANSWERED"),
    # D: the queue sent it to voicemail: missed.
    "1709980200.12": call("inbound", "support", None, "+4930444", "5000",
                          "2024-03-09 10:30:00", None, "2024-03-09 10:31:30", "NO ANSWER"),
    # E: hung up after 5 s in the queue (the CDR alone cannot tell an empty queue).
    "1709980800.15": call("inbound", "support", None, "+4930555", "5000",
                          "2024-03-09 10:40:00", None, "2024-03-09 10:40:05", "ABANDONED"),
    # F: answered by 204 through Local/204@from-queue.
    "1709981400.18": call("inbound", "support", "204", "+4930666", "5000",
                          "2024-03-09 10:50:00", "2024-03-09 10:50:08", "2024-03-09 10:53:00", "ANSWERED"),
    "1709982000.21": call("inbound", "support", "201", "+4930777", "5000",
                          "2024-03-09 11:00:00", "2024-03-09 11:00:05", "2024-03-09 11:02:00", "ANSWERED"),
}


def test_queue_calls_from_the_cdr_alone(engine: Engine, tmp_path: Path) -> None:
    client = add_client(engine, "berlin-cc", "Berlin contact centre", "Europe/Berlin")
    summary = import_cdr(engine, "berlin-cc", "asterisk-csv", QUEUE_CDR, data_dir=tmp_path)
    # 14 legs, 7 calls, nothing rejected (ring attempts with billsec > 0 are part of their call).
    assert (summary.rows_read, summary.calls, summary.imported, summary.rejected) == (14, 7, 7, 0)
    assert stored(engine, client.id) == CDR_ONLY
    assert summary.by_disposition == {"ANSWERED": 4, "ABANDONED": 2, "NO ANSWER": 1}
    # By hand, SL 20 s: support offered 6 (A B D E F G); answered A (wait 42), F (8), G (5): 2 within;
    # abandoned B (40 s) and E (5 s: a short abandon); missed D. SL = 2 / (6 - 1).
    support = queue_day(engine, client.id, dt.date(2024, 3, 9), "Europe/Berlin")["support"]
    assert (support["offered"], support["answered"], support["abandoned"], support["missed"]) == (6, 3, 2, 1)
    assert (support["answered_within_sl"], support["abandoned_within_sl"]) == (2, 1)
    assert support["wait_seconds_sum"] == 42 + 8 + 5 and support["abandoned_wait_seconds_sum"] == 40 + 5


def test_the_queue_log_is_the_source_of_truth_for_queues(engine: Engine, tmp_path: Path) -> None:
    client = add_client(engine, "berlin-cc", "Berlin contact centre", "Europe/Berlin")
    summary = import_cdr(engine, "berlin-cc", "asterisk-csv", QUEUE_CDR, queue_log_path=QUEUE_LOG, data_dir=tmp_path)
    q_ = summary.queue_log
    assert q_ is not None
    # 25 lines: 1 unreadable; 7 attempts (A B D E F G and a sales call with no CDR call), 6 joined.
    assert (q_.rows, q_.rejected, q_.attempts, q_.joined_calls, q_.unmatched_attempts) == (25, 1, 7, 6, 1)
    assert (q_.sessions, q_.pauses) == (2, 1)
    assert q_.outcomes == {"answered": 3, "abandoned": 1, "timeout": 1, "empty": 1}
    for event in ("ENTERQUEUE", "CONNECT", "ABANDON", "EXITWITHTIMEOUT", "EXITEMPTY", "COMPLETEAGENT", "COMPLETECALLER",
                  "RINGNOANSWER", "TRANSFER", "ADDMEMBER", "REMOVEMEMBER", "PAUSE", "UNPAUSE"):
        assert q_.events[event] >= 1, event
    assert rejects_of(q_.rejects_path) == {24: "queue_log: 1 fields (a queue_log line has epoch|callid|queue|agent|EVENT|data...)"}
    expected = dict(CDR_ONLY)
    # E: the queue_log says EXITEMPTY (no member could take it): missed, not abandoned.
    expected["1709980800.15"] = call("inbound", "support", None, "+4930555", "5000",
                                     "2024-03-09 10:40:00", None, "2024-03-09 10:40:05", "NO ANSWER")
    assert stored(engine, client.id) == expected
    with Session(engine) as session:
        queued = {e.pbx_call_id: e.queued_at for e in session.scalars(select(CallEvent).where(CallEvent.client_id == client.id))}
        attempts = session.scalars(select(QueueCallRow).order_by(QueueCallRow.entered_at)).all()
        sessions = session.scalars(select(QueueAgentSessionRow).order_by(QueueAgentSessionRow.agent)).all()
        pauses = session.scalars(select(QueueAgentPauseRow)).all()
    assert queued == {"1709978400.1": utc("2024-03-09 10:00:15"), "1709979000.5": utc("2024-03-09 10:10:10"),
                      "1709979600.9": None, "1709980200.12": utc("2024-03-09 10:30:00"),
                      "1709980800.15": utc("2024-03-09 10:40:00"), "1709981400.18": utc("2024-03-09 10:50:00"),
                      "1709982000.21": utc("2024-03-09 11:00:00")}
    assert [(a.queue, a.outcome, a.agent, a.ring_attempts, a.pbx_call_id) for a in attempts] == [
        ("support", "answered", "202", 1, "1709978400.1"), ("support", "abandoned", None, 1, "1709979000.5"),
        ("support", "timeout", None, 0, "1709980200.12"), ("support", "empty", None, 0, "1709980800.15"),
        ("support", "answered", "204", 0, "1709981400.18"), ("support", "answered", "201", 0, "1709982000.21"),
        ("sales", "open", None, 0, None)]
    assert [(s.agent, s.started_at, s.ended_at) for s in sessions] == [
        ("201", utc("2024-03-09 09:55:00"), utc("2024-03-09 11:10:00")), ("202", utc("2024-03-09 09:55:00"), None)]
    assert [(p.agent, p.reason, p.started_at, p.ended_at) for p in pauses] == [
        ("202", "lunch", utc("2024-03-09 10:30:00"), utc("2024-03-09 10:35:00"))]
    # By hand, waits from the queue entry: A 10:00:15 -> 10:00:42 = 27 s, F 8 s, G 5 s: 2 within 20 s;
    # B abandoned after 30 s in the queue (not a short abandon); D and E missed. SL = 2 / (6 - 0).
    day = queue_day(engine, client.id, dt.date(2024, 3, 9), "Europe/Berlin")
    support = day["support"]
    assert (support["offered"], support["answered"], support["abandoned"], support["missed"]) == (6, 3, 1, 2)
    assert (support["answered_within_sl"], support["abandoned_within_sl"]) == (2, 0)
    assert (support["wait_seconds_sum"], support["wait_seconds_max"]) == (27 + 8 + 5, 27)
    assert support["abandoned_wait_seconds_sum"] == 30
    assert support["talk_seconds_sum"] == 258 + 172 + 115
    # C had no queue: the row with queue null, waited 26 s from its start (no queue entry to measure from).
    assert (day[None]["offered"], day[None]["wait_seconds_sum"]) == (1, 26)
    # Importing the same pair again adds nothing, to the calls or to the queue tables.
    again = import_cdr(engine, "berlin-cc", "asterisk-csv", QUEUE_CDR, queue_log_path=QUEUE_LOG, data_dir=tmp_path)
    assert (again.imported, again.duplicates) == (0, 7)
    with Session(engine) as session:
        assert len(session.scalars(select(QueueCallRow)).all()) == 7


# --- 1: trunks named like extensions -------------------------------------------------------------------
NUMBERED = [
    # Inbound over trunk SIP/4055501 (7 digits) into a queue context that says nothing about direction.
    master_line("+4930999", "5000", "ext-queues", "SIP/4055501-00000001", "SIP/201-00000002", "Queue",
                "2024-05-06 09:00:00", "2024-05-06 09:00:10", "2024-05-06 09:02:00", 120, 110, "ANSWERED", "1714978800.1"),
    # The same trunk, 6 digits this time (SIP/405550): an extension to a 2-6 digit rule.
    master_line("+4930998", "5001", "ext-queues", "SIP/405550-00000003", "SIP/202-00000004", "Queue",
                "2024-05-06 09:10:00", "2024-05-06 09:10:05", "2024-05-06 09:11:00", 60, 55, "ANSWERED", "1714979400.3"),
    # Extension 201 dials out over the numbered trunk.
    master_line("201", "004930111", "macro-dialout-trunk", "SIP/201-00000005", "SIP/4055501-00000006", "Dial",
                "2024-05-06 09:20:00", "2024-05-06 09:20:08", "2024-05-06 09:21:00", 60, 52, "ANSWERED", "1714980000.5"),
    # 201 calls 202.
    master_line("201", "202", "from-internal", "SIP/201-00000007", "SIP/202-00000008", "Dial",
                "2024-05-06 09:30:00", "2024-05-06 09:30:04", "2024-05-06 09:31:00", 60, 56, "ANSWERED", "1714980600.7"),
]


def test_numbered_trunks_are_unknown_until_configured_then_inbound(sqlite_engine: Engine, tmp_path: Path) -> None:
    file = tmp_path / "Master.csv"
    file.write_text("\n".join(NUMBERED) + "\n")
    plain = add_client(sqlite_engine, "plain", "Plain", "UTC")
    summary = import_cdr(sqlite_engine, "plain", "asterisk-csv", file, data_dir=tmp_path)
    got = {k: v[0] for k, v in stored(sqlite_engine, plain.id).items()}
    # Not guessed: the 6- and 7-digit trunks say nothing; 201's calls are placed by a phone (2-5 digits);
    # the outbound one dialled 004930111 (external). Nothing came in as far as the records say.
    assert got == {"1714978800.1": "unknown", "1714979400.3": "unknown", "1714980000.5": "outbound",
                   "1714980600.7": "internal"}
    assert summary.by_direction == {"unknown": 2, "outbound": 1, "internal": 1}
    assert any(w.startswith("2 call(s) of unknown direction") and "'SIP/4055501' (1)" in w for w in summary.warnings)
    [no_inbound] = [w for w in summary.warnings if w.startswith("the client has no inbound call")]
    assert "--trunk" in no_inbound and "'SIP/4055501'" in no_inbound

    # With the PBX's configuration, the same lines: trunks by pattern, or everything outside 100-399.
    for slug, config in (("trunks", pbx_config(trunks=["SIP/405550*"])), ("ranges", pbx_config(extensions=["100-399"]))):
        client = add_client(sqlite_engine, slug, slug, "UTC")
        result = import_cdr(sqlite_engine, slug, "asterisk-csv", file, data_dir=tmp_path, pbx=config)
        assert {k: v[0] for k, v in stored(sqlite_engine, client.id).items()} == {
            "1714978800.1": "inbound", "1714979400.3": "inbound", "1714980000.5": "outbound", "1714980600.7": "internal"}
        assert not [w for w in result.warnings if "inbound" in w or "unknown" in w]
        assert result.by_basis["configured-trunk"] == 2


def test_the_pbx_configuration_is_stored_on_the_client(sqlite_engine: Engine, tmp_path: Path) -> None:
    file = tmp_path / "Master.csv"
    file.write_text("\n".join(NUMBERED) + "\n")
    env = {"REPORT_PIPELINES_DATABASE_URL": sqlite_engine.url.render_as_string(hide_password=False),
           "REPORT_PIPELINES_DATA_DIR": str(tmp_path / "data")}
    client = add_client(sqlite_engine, "acme", "Acme", "UTC")
    runner = CliRunner()
    shown = runner.invoke(main, ["clients", "pbx-config", "acme"], env=env)
    assert (shown.exit_code, shown.stdout) == (0, "acme: nothing configured\n")
    done = runner.invoke(main, ["import-cdr", "--client", "acme", "--format", "asterisk-csv", "--no-progress",
                                "--trunk", "SIP/405550*", "--did", "+49 30 1234567", "--save", str(file)], env=env)
    assert done.exit_code == 0, done.output
    assert "  by direction: inbound 2, internal 1, outbound 1" in done.stdout.splitlines()
    assert client_pbx_config(sqlite_engine, "acme") == pbx_config(trunks=["SIP/405550*"], dids=["493012345 67"])
    ranges = runner.invoke(main, ["clients", "pbx-config", "acme", "--extensions", "100-399,500"], env=env)
    assert ranges.stdout == "acme: trunks SIP/405550*; extensions 100-399, 500; DIDs 49301234567\n"
    bad = runner.invoke(main, ["clients", "pbx-config", "acme", "--extensions", "399-100"], env=env)
    assert (bad.exit_code, bad.stderr) == (2, "error: --extensions: '399-100': the range ends before it starts\n")
    # A later import without options uses the stored configuration.
    other = tmp_path / "again.csv"
    other.write_text(NUMBERED[0].replace("1714978800.1", "1714978800.9") + "\n")
    import_cdr(sqlite_engine, "acme", "asterisk-csv", other, data_dir=tmp_path)
    assert stored(sqlite_engine, client.id)["1714978800.9"][0] == "inbound"


# --- 5: broken quoting ---------------------------------------------------------------------------------
def test_broken_quoting_is_repaired_or_its_whole_call_rejected(sqlite_engine: Engine, tmp_path: Path) -> None:
    good = master_line("+4930111", "201", "from-pstn", "SIP/provider-00000001", "SIP/201-00000002", "Dial",
                       "2024-05-06 09:00:00", "2024-05-06 09:00:05", "2024-05-06 09:01:00", 60, 55, "ANSWERED",
                       "1714978800.1")
    # The caller name's quotes are not doubled (""Dr. "Bob"" <+4930111>"): one broken field between good ones.
    broken_name = ('"","+4930222","201","from-pstn",""Dr. "Bob" <+4930222>","SIP/provider-00000003","SIP/201-00000004",'
                   '"Dial","","2024-05-06 09:10:00","2024-05-06 09:10:05","2024-05-06 09:11:00",60,55,"ANSWERED",'
                   '"DOCUMENTATION","1714979400.3","","","1714979400.3",1')
    # Two legs of one call; the second has two broken fields: the call goes whole to the rejects.
    first_leg = master_line("+4930333", "5000", "from-pstn", "SIP/provider-00000005", "SIP/201-00000006", "Queue",
                            "2024-05-06 09:20:00", "", "2024-05-06 09:20:20", 20, 0, "NO ANSWER", "1714980000.5")
    second_leg = ('"","+4930333","5000","from-pstn",""Ann" <x>","SIP/provider-00000005",""SIP/202"-7","Queue","",'
                  '"2024-05-06 09:20:00","2024-05-06 09:20:20","2024-05-06 09:25:00",300,280,"ANSWERED","DOCUMENTATION",'
                  '"1714980000.5","","","1714980000.5",2')
    file = tmp_path / "Master.csv"
    file.write_text("\n".join([good, broken_name, first_leg, second_leg]) + "\n")
    client = add_client(sqlite_engine, "q", "Q", "UTC")
    summary = import_cdr(sqlite_engine, "q", "asterisk-csv", file, data_dir=tmp_path)
    assert (summary.rows_read, summary.imported, summary.rejected, summary.repaired_quoting) == (4, 2, 2, 1)
    assert stored(sqlite_engine, client.id) == {
        "1714978800.1": call("inbound", None, "201", "+4930111", "201", "2024-05-06 09:00:00", "2024-05-06 09:00:05",
                             "2024-05-06 09:01:00", "ANSWERED"),
        "1714979400.3": call("inbound", None, "201", "+4930222", "201", "2024-05-06 09:10:00", "2024-05-06 09:10:05",
                             "2024-05-06 09:11:00", "ANSWERED"),
    }
    assert rejects_of(summary.rejects_path) == {
        4: "malformed CSV: the quoting cannot be repaired (more than one broken field)",
        3: "call '1714980000.5': not imported because line(s) 4 of the same call were rejected",
    }


# --- 6: legacy code pages -------------------------------------------------------------------------------
NAMES = {"cp1251": ["Иванов Пётр", "Смирнова Ольга", "Кузнецов Дмитрий"],
         "cp866": ["Иванов Пётр", "Смирнова Ольга", "Кузнецов Дмитрий"],
         "latin-1": ["José Núñez", "Françoise Müller", "Jürgen Weiß"]}


@pytest.mark.parametrize("encoding", list(NAMES))
def test_names_in_legacy_code_pages_cost_no_call(sqlite_engine: Engine, tmp_path: Path, encoding: str) -> None:
    lines = [master_line("+7495000000" + str(i), "201", "from-pstn", f"SIP/provider-0000000{i}", f"SIP/201-0000001{i}",
                         "Dial", f"2024-05-06 09:0{i}:00", f"2024-05-06 09:0{i}:05", f"2024-05-06 09:0{i}:30", 30, 25,
                         "ANSWERED", f"17149788{i}0.{i}", clid=f'"{name}" <+7495000000{i}>')
             for i, name in enumerate(NAMES[encoding])]
    lines.insert(1, master_line("201", "202", "from-internal", "SIP/201-00000099", "SIP/202-00000098", "Dial",
                                "2024-05-06 09:00:10", "2024-05-06 09:00:12", "2024-05-06 09:00:20", 10, 8, "ANSWERED",
                                "1714978810.9", clid='"Reception" <201>'))
    file = tmp_path / "Master.csv"
    file.write_bytes(("\n".join(lines) + "\n").encode(encoding))
    add_client(sqlite_engine, "legacy", "Legacy", "UTC")
    summary = import_cdr(sqlite_engine, "legacy", "asterisk-csv", file, data_dir=tmp_path)
    assert (summary.imported, summary.rejected) == (4, 0)
    detected = {"cp1251": "cp1251", "cp866": "cp866", "latin-1": "cp1252"}[encoding]
    assert summary.decoded == f"1 lines UTF-8, 3 lines {detected} (detected)"
    # Forced: every line in the given encoding.
    add_client(sqlite_engine, "forced", "Forced", "UTC")
    forced = import_cdr(sqlite_engine, "forced", "asterisk-csv", file, data_dir=tmp_path, encoding=encoding)
    assert (forced.imported, forced.decoded) == (4, f"4 lines {'iso8859-1' if encoding == 'latin-1' else encoding} (--encoding)")


# --- 7: --replace and the late-data path ---------------------------------------------------------------
def day_file(path: Path, calls: list[tuple[str, str]]) -> Path:
    path.write_text("\n".join(
        master_line("+4930111", "201", "from-pstn", "SIP/provider-00000001", "SIP/201-00000002", "Dial", start,
                    "", start[:-2] + "30", 30, 0, "NO ANSWER", uid) for uid, start in calls) + "\n")
    return path


def licensed_client(engine: Engine, slug: str, name: str, zone: str):
    """A client holding a reports licence since 2020 (only served client-days are recomputed)."""
    from report_pipelines.services.commercial import grant
    from report_pipelines.services.demo import demo_licence, ensure_reports_product

    now = dt.datetime(2024, 1, 1, tzinfo=UTC)
    client = add_client(engine, slug, name, zone, active_from=dt.date(2020, 1, 1))
    grant(engine, client.id, [demo_licence(ensure_reports_product(engine, now), dt.date(2020, 1, 1))], note="test",
          now=now)
    return client


def extractor_for(engine: Engine, tmp_path: Path) -> Extractor:
    settings = Settings(data_dir=tmp_path, database_url=engine.url.render_as_string(hide_password=False),
                        store_root=str(tmp_path / "store"))
    return Extractor(App(settings))


def test_replace_makes_the_cached_days_it_touched_stale(engine: Engine, tmp_path: Path) -> None:
    client = licensed_client(engine, "fix", "Fix", "UTC")
    first = day_file(tmp_path / "first.csv", [("1714978800.1", "2024-05-06 07:00:00"), ("1714982400.2", "2024-05-06 08:00:00"),
                                              ("1715065200.3", "2024-05-07 07:00:00")])
    import_cdr(engine, "fix", "asterisk-csv", first, data_dir=tmp_path)
    extractor = extractor_for(engine, tmp_path)
    after_import = dt.datetime.now(UTC)
    for day in (dt.date(2024, 5, 6), dt.date(2024, 5, 7)):
        extractor.compute(ClientDay(client.id, "UTC", day), ["call_detail"], now=after_import)
    assert find_stale_client_days(engine, after_import, dt.datetime.now(UTC))[0] == []

    # The repaired file covers 2024-05-06 07:00 .. 2024-05-07 07:00: its 3 stored calls are replaced by
    # its 2 (6 May now has one call, 7 May the same call ingested anew).
    repaired = day_file(tmp_path / "repaired.csv", [("1714978800.8", "2024-05-06 07:00:00"),
                                                     ("1715065200.3", "2024-05-07 07:00:00")])
    before_replace = dt.datetime.now(UTC)
    summary = import_cdr(engine, "fix", "asterisk-csv", repaired, data_dir=tmp_path, replace=True)
    assert (summary.replaced, summary.imported, summary.replaced_days) == (3, 2, (dt.date(2024, 5, 6), dt.date(2024, 5, 7)))
    assert set(stored(engine, client.id)) == {"1714978800.8", "1715065200.3"}
    stale, seen = find_stale_client_days(engine, before_replace, dt.datetime.now(UTC))
    assert {(s.client_id, s.day) for s in stale} == {(client.id, dt.date(2024, 5, 6)), (client.id, dt.date(2024, 5, 7))}
    assert seen is not None and seen >= before_replace
    # Recomputed (what the late sensor's run does), nothing is stale any more.
    for day in (dt.date(2024, 5, 6), dt.date(2024, 5, 7)):
        extractor.compute(ClientDay(client.id, "UTC", day), ["call_detail"], now=dt.datetime.now(UTC))
    assert find_stale_client_days(engine, before_replace, dt.datetime.now(UTC))[0] == []


def test_a_day_emptied_by_replace_is_still_found_stale(sqlite_engine: Engine, tmp_path: Path) -> None:
    client = licensed_client(sqlite_engine, "empty", "Empty", "UTC")
    original = day_file(tmp_path / "a.csv", [("1714978800.1", "2024-05-06 07:00:00"), ("1715065200.3", "2024-05-07 07:00:00"),
                                             ("1715151600.4", "2024-05-08 07:00:00")])
    import_cdr(sqlite_engine, "empty", "asterisk-csv", original, data_dir=tmp_path)
    extractor_for(sqlite_engine, tmp_path).compute(ClientDay(client.id, "UTC", dt.date(2024, 5, 7)), ["call_detail"],
                                               now=dt.datetime.now(UTC))
    # The corrected export spans 6..8 May with no call on the 7th: the 7th's only call is deleted.
    corrected = day_file(tmp_path / "b.csv", [("1714978800.1", "2024-05-06 07:00:00"), ("1715151600.4", "2024-05-08 07:00:00")])
    mark = dt.datetime.now(UTC)
    import_cdr(sqlite_engine, "empty", "asterisk-csv", corrected, data_dir=tmp_path, replace=True)
    day_calls = CallEventRepository(sqlite_engine).day_calls(client.id, *local_day_window(dt.date(2024, 5, 7), parse_zone("UTC")))
    assert day_calls.num_rows == 0
    stale, _ = find_stale_client_days(sqlite_engine, mark, dt.datetime.now(UTC))
    assert [(s.client_id, s.day) for s in stale] == [(client.id, dt.date(2024, 5, 7))]


# --- 8: ids repeated inside one file -------------------------------------------------------------------
def test_ids_repeated_in_a_file_are_counted_apart_and_refused_above_the_share(sqlite_engine: Engine, tmp_path: Path) -> None:
    mapping = tmp_path / "m.yaml"
    mapping.write_text("call_id: Ticket\nstart: Start\nend: End\noutcome: {column: Result, values: {ok: ANSWERED, "
                       "lost: ABANDONED}}\nanswer: Answered\n")
    rows = ["Ticket,Start,Answered,End,Result"]
    # A help-desk export whose ticket number restarts every day: ids 1..6 on 6 May and again on 7 May.
    for day in (6, 7):
        for i in range(1, 7):
            rows.append(f"{i},2024-05-0{day} 09:0{i}:00,,2024-05-0{day} 09:0{i}:40,lost")
    file = tmp_path / "export.csv"
    file.write_text("\n".join(rows) + "\n")
    client = add_client(sqlite_engine, "desk", "Desk", "UTC")
    with pytest.raises(InvalidInput) as err:
        import_cdr(sqlite_engine, "desk", "mapped-csv", file, mapping_path=mapping, data_dir=tmp_path)
    assert err.value.field == "FILE"
    assert err.value.message.startswith("6 of 12 calls repeat an id already used by another call of the file")
    assert "'1' x2 (lines 2 and 8)" in err.value.message and "map a column that is unique per call as call_id" in err.value.message
    assert CallEventRepository(sqlite_engine).count(client.id) == 0  # refused: nothing stored
    # With the share raised, the first copy of each id is kept and the others counted apart.
    summary = import_cdr(sqlite_engine, "desk", "mapped-csv", file, mapping_path=mapping, data_dir=tmp_path,
                         max_repeated_share=0.6)
    assert (summary.calls, summary.imported, summary.duplicates, summary.repeated_in_file) == (12, 6, 0, 6)
    assert summary.repeated_examples[0] == ("1", 2, 8, 2)
    assert {k: v[5] for k, v in stored(sqlite_engine, client.id).items()}["1"] == utc("2024-05-06 09:01:00")
    # Imported again: 6 already imported, still 6 repeated in the file, reported apart.
    again = import_cdr(sqlite_engine, "desk", "mapped-csv", file, mapping_path=mapping, data_dir=tmp_path,
                       max_repeated_share=0.6)
    assert (again.imported, again.duplicates, again.repeated_in_file) == (0, 6, 6)


# --- 9: history before 2023 ----------------------------------------------------------------------------
def test_a_pre_2023_history_moves_the_client_back(sqlite_engine: Engine, tmp_path: Path) -> None:
    client = add_client(sqlite_engine, "old", "Old", "Europe/Lisbon")
    file = day_file(tmp_path / "history.csv", [("1609491600.1", "2021-01-01 09:00:00"), ("1640995200.2", "2022-01-01 00:00:00"),
                                                 ("1672531140.3", "2022-12-31 23:59:00")])
    summary = import_cdr(sqlite_engine, "old", "asterisk-csv", file, data_dir=tmp_path)
    assert summary.imported == 3
    # Lisbon is UTC+0 in winter: the first call's local date is 2021-01-01.
    assert ClientRepository(sqlite_engine).get(client.id).active_from == dt.date(2021, 1, 1)
    assert (summary.first_call.date(), summary.last_call.date()) == (dt.date(2021, 1, 1), dt.date(2022, 12, 31))


# --- 10: layouts, date formats, a wrong guess ----------------------------------------------------------
BASE16 = ['""', '"+4930111"', '"201"', '"from-pstn"', '""', '"SIP/provider-00000001"', '"SIP/201-00000002"', '"Dial"',
          '"SIP/201"', '"2024-05-06 09:00:00"', '"2024-05-06 09:00:05"', '"2024-05-06 09:01:00"', "60", "55",
          '"ANSWERED"', '"DOCUMENTATION"']


@pytest.mark.parametrize(("extra", "how"), [
    ([], "16 columns (no uniqueid: every row is its own call)"),
    (['"1714978800.1"'], "17 columns (+ uniqueid)"),
    (['"1714978800.1"', '"vip"'], "18 columns (+ uniqueid, userfield)"),
    (['""', '"1714978800.1"', "7"], "19 columns (+ peeraccount, linkedid, sequence)"),
    (['"1714978800.1"', '""', '"1714978800.1"', "7"], "20 columns (+ uniqueid, peeraccount, linkedid, sequence)"),
    (['"1714978800.1"', '""', '""', '"1714978800.1"', "7"], "21 columns (+ uniqueid, userfield, peeraccount, linkedid, sequence)"),
    (['"1714978800.1"', '""', '""', '"1714978800.1"', "7", '"a"', '"b"', '"c"', '"d"'],
     "25 columns (the 21 standard + 4 site-specific, ignored)"),
])
def test_the_cdr_csv_layouts(sqlite_engine: Engine, tmp_path: Path, extra: list[str], how: str) -> None:
    file = tmp_path / "Master.csv"
    file.write_text(",".join(BASE16 + extra) + "\n")
    client = add_client(sqlite_engine, "l", "L", "UTC")
    summary = import_cdr(sqlite_engine, "l", "asterisk-csv", file, data_dir=tmp_path)
    assert (summary.imported, summary.layout) == (1, how)
    [(call_id, row)] = stored(sqlite_engine, client.id).items()
    assert call_id == ("SIP/provider-00000001@2024-05-06 09:00:00" if len(extra) == 0 else "1714978800.1")
    assert row == call("inbound", None, "201", "+4930111", "201", "2024-05-06 09:00:00", "2024-05-06 09:00:05",
                       "2024-05-06 09:01:00", "ANSWERED")


def test_a_wrong_layout_or_date_guess_is_one_error(sqlite_engine: Engine, tmp_path: Path) -> None:
    add_client(sqlite_engine, "w", "W", "UTC")
    rows = [",".join(BASE16 + [f'"17149788{i:02d}.{i}"', '""', '""', f'"17149788{i:02d}.{i}"', "1"])
            .replace("2024-05-06", "06/05/2024") for i in range(8)]
    file = tmp_path / "Master.csv"
    file.write_text("\n".join(rows) + "\n")
    with pytest.raises(InvalidInput) as err:
        import_cdr(sqlite_engine, "w", "asterisk-csv", file, data_dir=tmp_path)
    assert (err.value.field, err.value.message.split(" (")[0]) == ("FILE", "8 of the first 8 rows fail with the layout 21 columns")
    assert "on 'start'" in err.value.message and "--date-format" in err.value.message
    assert not (tmp_path / "rejects").exists()
    summary = import_cdr(sqlite_engine, "w", "asterisk-csv", file, data_dir=tmp_path, date_format="d/m/Y H:M:S")
    assert (summary.imported, summary.rejected) == (8, 0)
    # 23 columns whose standard ones are not at the start: one error naming the count and --columns.
    shifted = tmp_path / "shifted.csv"
    shifted.write_text("\n".join('"site","x",' + ",".join(BASE16 + ['"17149788.1"', '""', '""', '"1"', "1"])
                                 for _ in range(3)) + "\n")
    with pytest.raises(InvalidInput) as err:
        import_cdr(sqlite_engine, "w", "asterisk-csv", shifted, data_dir=tmp_path)
    assert err.value.message.startswith("rows have 23 columns and the 21 standard ones are not at the start")
    assert "--columns" in err.value.message
    named = "-,-," + "accountcode,src,dst,dcontext,clid,channel,dstchannel,lastapp,lastdata,start,answer,end," \
                     "duration,billsec,disposition,amaflags,uniqueid,-,-,-,-"
    assert import_cdr(sqlite_engine, "w", "asterisk-csv", shifted, data_dir=tmp_path, columns=named).imported == 1


def test_a_database_dump_without_a_header(sqlite_engine: Engine, tmp_path: Path) -> None:
    file = tmp_path / "dump.csv"
    file.write_text('2024-05-06 09:00:00,"+4930111",201,from-pstn,PJSIP/provider-00000001,PJSIP/201-00000002,Dial,'
                    '"PJSIP/201,20",60,55,ANSWERED,1714978800.1\n')
    client = add_client(sqlite_engine, "dump", "Dump", "UTC")
    with pytest.raises(InvalidInput) as err:
        import_cdr(sqlite_engine, "dump", "asterisk-db", file, data_dir=tmp_path)
    assert "--columns" in err.value.message
    summary = import_cdr(sqlite_engine, "dump", "asterisk-db", file, data_dir=tmp_path,
                         columns="calldate,src,dst,dcontext,channel,dstchannel,lastapp,lastdata,duration,billsec,"
                                 "disposition,uniqueid")
    assert summary.imported == 1
    assert stored(sqlite_engine, client.id)["1714978800.1"] == call(
        "inbound", None, "201", "+4930111", "201", "2024-05-06 09:00:00", "2024-05-06 09:00:05", "2024-05-06 09:01:00",
        "ANSWERED")


# --- 11: spreadsheets, split date and time, queue entry ------------------------------------------------
SHEET_MAPPING = """\
call_id: Call
start: {date: Date, time: Time}
queued: {date: Date, time: Queued}
answer: {date: Date, time: Answered}
end: {date: Date, time: Ended}
queue: Queue
agent: Agent
caller: From
direction: {column: Way, values: {in: inbound, out: outbound}}
outcome: {column: Result, values: {Taken: ANSWERED, Hung up: ABANDONED, No agent: NO ANSWER}}
date_format: "%d.%m.%Y %H:%M:%S"
timezone: Europe/Berlin
"""
SHEET_ROWS = [
    ["Call", "Date", "Time", "Queued", "Answered", "Ended", "Queue", "Agent", "From", "Way", "Result"],
    ["K-1", "09.03.2024", "11:00:00", "11:00:15", "11:00:42", "11:05:00", "support", "202", "+4930111", "in", "Taken"],
    ["K-2", "09.03.2024", "11:10:00", "11:10:10", "", "11:10:40", "support", "", "+4930222", "in", "Hung up"],
    ["K-3", "09.03.2024", "11:20:00", "", "", "11:20:30", "", "", "201", "out", "No agent"],
]
SHEET_CALLS = {
    "K-1": call("inbound", "support", "202", "+4930111", None, "2024-03-09 10:00:00", "2024-03-09 10:00:42",
                "2024-03-09 10:05:00", "ANSWERED"),
    "K-2": call("inbound", "support", None, "+4930222", None, "2024-03-09 10:10:00", None, "2024-03-09 10:10:40",
                "ABANDONED"),
    "K-3": call("outbound", None, None, "201", None, "2024-03-09 10:20:00", None, "2024-03-09 10:20:30", "NO ANSWER"),
}


def write_ods(path: Path, rows: list[list[str]]) -> None:
    """A minimal OpenDocument spreadsheet (what LibreOffice writes, reduced to text cells)."""
    cells = "".join("<table:table-row>" + "".join(
        f'<table:table-cell office:value-type="string"><text:p>{v}</text:p></table:table-cell>' if v else
        "<table:table-cell/>" for v in row) + "</table:table-row>" for row in rows)
    content = ('<?xml version="1.0" encoding="UTF-8"?><office:document-content '
               'xmlns:office="urn:oasis:names:tc:opendocument:xmlns:office:1.0" '
               'xmlns:table="urn:oasis:names:tc:opendocument:xmlns:table:1.0" '
               'xmlns:text="urn:oasis:names:tc:opendocument:xmlns:text:1.0" office:version="1.2"><office:body>'
               f'<office:spreadsheet><table:table table:name="Calls">{cells}</table:table></office:spreadsheet>'
               "</office:body></office:document-content>")
    manifest = ('<?xml version="1.0" encoding="UTF-8"?><manifest:manifest '
                'xmlns:manifest="urn:oasis:names:tc:opendocument:xmlns:manifest:1.0" manifest:version="1.2">'
                '<manifest:file-entry manifest:full-path="/" manifest:media-type="application/vnd.oasis.opendocument.spreadsheet"/>'
                '<manifest:file-entry manifest:full-path="content.xml" manifest:media-type="text/xml"/></manifest:manifest>')
    with zipfile.ZipFile(path, "w") as z:
        z.writestr(zipfile.ZipInfo("mimetype"), "application/vnd.oasis.opendocument.spreadsheet")
        z.writestr("content.xml", content)
        z.writestr("META-INF/manifest.xml", manifest)


@pytest.mark.parametrize("kind", ["csv", "xlsx", "ods", "xlsx-typed"])
def test_spreadsheets_with_split_date_and_time_and_a_queue_entry(sqlite_engine: Engine, tmp_path: Path, kind: str) -> None:
    mapping = tmp_path / "m.yaml"
    mapping.write_text(SHEET_MAPPING)
    if kind == "csv":
        file = tmp_path / "export.csv"
        with file.open("w", newline="") as fh:
            csv.writer(fh).writerows(SHEET_ROWS)
    elif kind == "ods":
        file = tmp_path / "export.ods"
        write_ods(file, SHEET_ROWS)
    else:
        import openpyxl

        file = tmp_path / "export.xlsx"
        book = openpyxl.Workbook()
        sheet = book.active
        for row in SHEET_ROWS:
            if kind == "xlsx-typed" and row[0] != "Call":  # real date and time cells, as Excel stores them
                row = [row[0], dt.datetime.strptime(row[1], "%d.%m.%Y"),
                       *[dt.time.fromisoformat(v) if v else None for v in row[2:6]], *row[6:]]
            sheet.append(row)
        book.save(file)
    client = add_client(sqlite_engine, "sheet", "Sheet", "UTC")
    summary = import_cdr(sqlite_engine, "sheet", "mapped-csv", file, mapping_path=mapping, data_dir=tmp_path)
    assert (summary.imported, summary.rejected) == (3, 0), rejects_of(summary.rejects_path) if summary.rejects_path else None
    assert stored(sqlite_engine, client.id) == SHEET_CALLS
    # The queue entry is kept: K-1 waited 27 s in the queue (the report measures from it).
    support = queue_day(sqlite_engine, client.id, dt.date(2024, 3, 9), "Europe/Berlin")["support"]
    assert (support["offered"], support["wait_seconds_sum"], support["abandoned_wait_seconds_sum"]) == (2, 27, 30)


# --- 12: refusals and exit codes -----------------------------------------------------------------------
def test_too_many_rejects_refuse_the_import_with_the_reasons(sqlite_engine: Engine, tmp_path: Path) -> None:
    rows = [master_line("+4930111", "201", "from-pstn", "SIP/p-1", "SIP/201-2", "Dial", "2024-05-06 09:00:00",
                        "", "2024-05-06 09:00:30", 30, 0, "NO ANSWER", "1714978800.1")]
    rows += [master_line("+4930111", "201", "from-pstn", "SIP/p-1", "SIP/201-2", "Dial", "2024-05-06 09:00:00",
                         "", "2024-05-06 08:00:30", 30, 0, "NO ANSWER", f"17149788{i}0.{i}") for i in range(1, 6)]
    file = tmp_path / "Master.csv"
    file.write_text("\n".join(rows) + "\n")
    client = add_client(sqlite_engine, "r", "R", "UTC")
    env = {"REPORT_PIPELINES_DATABASE_URL": sqlite_engine.url.render_as_string(hide_password=False),
           "REPORT_PIPELINES_DATA_DIR": str(tmp_path / "data")}
    result = CliRunner().invoke(main, ["import-cdr", "--client", "r", "--format", "asterisk-csv", "--no-progress",
                                       str(file)], env=env)
    assert result.exit_code == 2 and result.stdout == ""
    [line] = result.stderr.splitlines()
    assert line.startswith("error: FILE: 5 of 6 rows rejected (more than the --max-reject-share of 50%): nothing was "
                           "imported; reasons: end: 5; the rows are in ")
    assert CallEventRepository(sqlite_engine).count(client.id) == 0
    allowed = CliRunner().invoke(main, ["import-cdr", "--client", "r", "--format", "asterisk-csv", "--no-progress",
                                        "--max-reject-share", "0.9", str(file)], env=env)
    assert allowed.exit_code == 0
    lines = allowed.stdout.splitlines()
    assert lines[1:4] == ["  time span: 2024-05-06 09:00:00 .. 2024-05-06 09:00:00 UTC", "  by direction: inbound 1",
                          "  by disposition: NO ANSWER 1"]
    assert "  rejects by reason: end: 5" in lines


def test_a_deeply_nested_mapping_is_one_line(sqlite_engine: Engine, tmp_path: Path) -> None:
    add_client(sqlite_engine, "n", "N", "UTC")
    env = {"REPORT_PIPELINES_DATABASE_URL": sqlite_engine.url.render_as_string(hide_password=False),
           "REPORT_PIPELINES_DATA_DIR": str(tmp_path / "data")}
    file = tmp_path / "x.csv"
    file.write_text("a\n1\n")
    for name, text in (("deep.json", "[" * 100_000 + "]" * 100_000), ("deep.yaml", "a:\n" + "".join(
            " " * (i + 1) + f"k{i}:\n" for i in range(3000)) + " " * 3001 + "v")):
        (tmp_path / name).write_text(text)
        result = CliRunner().invoke(main, ["import-cdr", "--client", "n", "--format", "mapped-csv", "--mapping",
                                           str(tmp_path / name), str(file)], env=env)
        assert result.exit_code == 2, result.output
        assert result.stderr == f"error: --mapping: {name} is nested more than 8 levels deep (a mapping is keys, " \
                                "values and one level of tables)\n"
    assert json.loads("[]") == []


# --- the demo's step -----------------------------------------------------------------------------------
def test_the_demo_imports_the_sample_pair_and_shows_the_queue_report(sqlite_engine: Engine, tmp_path: Path) -> None:
    from report_pipelines.services.demo_import import import_demo_pbx

    printed = import_demo_pbx(sqlite_engine, tmp_path, echo=lambda line: None)
    assert printed[1] == "   imported 7 calls (0 already imported, 0 repeated in the file, 0 rejected rows) from 14 rows"
    assert "   by direction: inbound 7" in printed
    assert any(line.startswith("   queue_log: 24 rows, 7 queue calls, 6 joined to CDR calls") for line in printed)
    # By hand (the fixture's queue test): support 6 offered, 3 answered (waits 27 + 8 + 5 s), 1 abandoned,
    # 2 missed; service level 2 / 6; average speed of answer 40 / 3 s.
    [support] = [line.split() for line in printed if line.split()[:1] == ["support"]]
    assert support == ["support", "6", "3", "1", "2", "0.333", "13.333"]
    # Agent availability by hand: 201 in support 09:55-11:10 UTC = 4,500 s, G's 115 s of talk (CONNECT 11:00:05,
    # TRANSFER 11:02:00): occupancy 115 / 4,500; 202 never removed (open), paused 300 s for lunch, A's 258 s.
    agents = {tuple(line.split()[:2]): line.split()[2:] for line in printed if line.split()[:1] in (["201"], ["202"])}
    assert agents == {("201", "(agent)"): ["4500.0", "0.0", "0.0", "115.0", "0", "0.026"],
                      ("202", "(agent)"): ["0.0", "300.0", "0.0", "258.0", "1", "NaN"],
                      ("202", "lunch"): ["0.0", "0.0", "300.0", "0.0", "0", "NaN"]}
    # Run again (make demo on a kept database): nothing new.
    assert import_demo_pbx(sqlite_engine, tmp_path, echo=lambda line: None)[1].startswith("   imported 0 calls (7 already")


@pytest.mark.parametrize("name", ["queue_Master.csv", "Master.csv"])
def test_the_fast_path_and_the_careful_reader_agree(sqlite_engine: Engine, tmp_path: Path, name: str) -> None:
    """The same file through Arrow blocks and through the line reader: same calls, same rejects."""
    results = []
    for fast in (True, False):
        client = add_client(sqlite_engine, f"c{int(fast)}", "C", "America/New_York")
        summary = import_cdr(sqlite_engine, client.slug, "asterisk-csv", FIXTURES / name, data_dir=tmp_path / str(fast),
                             fast=fast)
        results.append((stored(sqlite_engine, client.id), rejects_of(summary.rejects_path) if summary.rejects_path else {},
                        summary.by_basis, summary.warnings))
    assert results[0] == results[1]
