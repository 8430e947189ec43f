"""``agent_availability`` (issue 13): logged-in time, paused time by reason, talk time and occupancy
per agent per local day, from a hand-written Asterisk queue_log and CDR imported through the real
import path. Every expected figure is worked out by hand in the comments, from the lines below.

Client zone Europe/Berlin: 2024-03-31 is a 23-hour day (02:00 CET -> 03:00 CEST, at 01:00 UTC),
2024-10-27 a 25-hour day (03:00 CEST -> 02:00 CET, at 01:00 UTC). queue_log epochs are UTC; the
CDR's times are Berlin wall clock.
"""

from __future__ import annotations

import datetime as dt
import random
from pathlib import Path

import pyarrow as pa
import pytest
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from report_pipelines.adapters.db.bulk import CALL_EVENT_SCHEMA
from report_pipelines.adapters.db.models import QueueAgentPauseRow, QueueAgentSessionRow
from report_pipelines.adapters.db.repositories import AgentIntervalRepository
from report_pipelines.app import App
from report_pipelines.domain.errors import InvalidInput
from report_pipelines.domain.queue_log import AGENT_INTERVAL_SCHEMA
from report_pipelines.domain.reports import REPORTS, get_report
from report_pipelines.domain.reports.base import DayContext
from report_pipelines.services.cdr_import import import_cdr
from report_pipelines.services.extracts import ANY_TIME, ClientDay, Extractor
from report_pipelines.services.periods import read_report_arrow, summarize_report
from report_pipelines.services.staleness import find_stale_client_days
from report_pipelines.settings import Settings
from report_pipelines_tests.test_cdr_pbx_exports import licensed_client, master_line

UTC = dt.UTC
ZONE = "Europe/Berlin"
NOW = dt.datetime(2024, 12, 1, tzinfo=UTC)
REPORT = get_report("agent_availability")

QUEUE_LOG = """\
1711825200|NONE|support|SIP/201|ADDMEMBER|
1711828800|NONE|sales|SIP/201|ADDMEMBER|
1711832400|NONE|support|SIP/201|PAUSE|break
1711833300|NONE|support|SIP/201|UNPAUSE|break
1711834190|1711834190.101|support|NONE|ENTERQUEUE||+4930101|1
1711834195|1711834190.101|support|SIP/201|RINGNOANSWER|0
1711834200|1711834190.101|support|SIP/201|CONNECT|10|1711834195.102|5
1711834800|1711834190.101|support|SIP/201|COMPLETECALLER|10|600|1
1711836000|NONE|sales|SIP/201|REMOVEMEMBER|
1711845000|NONE|NONE|SIP/201|PAUSEALL|meal
1711845000|NONE|support|SIP/201|PAUSE|meal
1711848600|NONE|NONE|SIP/201|UNPAUSEALL|
1711848600|NONE|support|SIP/201|UNPAUSE|
1711850400|NONE|support|SIP/201|REMOVEMEMBER|
1729985400|1729985399.7|NONE|Agent/203|AGENTLOGIN|SIP/203-00000007
1729989000|NONE|NONE|Agent/203|PAUSEALL|
1729991700|NONE|NONE|Agent/203|UNPAUSEALL|
1729993500|1729985399.7|NONE|Agent/203|AGENTLOGOFF|SIP/203-00000007|8100
1730055600|NONE|support|SIP/203|ADDMEMBER|
"""
# What the lines say (UTC -> Berlin):
#   201 ADDMEMBER support  03-30 19:00 UTC = 20:00 CET;  ADDMEMBER sales 20:00 UTC = 21:00 CET
#   201 PAUSE break        21:00 -> 21:15 UTC (22:00 -> 22:15 CET): 900 s
#   call X                 queued 21:29:50, CONNECT 21:30:00, COMPLETECALLER 21:40:00 UTC: talk 600 s
#   201 REMOVEMEMBER sales 22:00 UTC = 23:00 CET (inside the support session: no extra logged-in time)
#   201 PAUSEALL meal + PAUSE support meal (one global pause, as Asterisk writes it)
#                          03-31 00:30 -> 01:30 UTC = 01:30 CET -> 03:30 CEST: 3,600 s, across the DST gap
#   201 REMOVEMEMBER support 03-31 02:00 UTC = 04:00 CEST
#   203 AGENTLOGIN         10-26 23:30 UTC = 10-27 01:30 CEST; AGENTLOGOFF 10-27 01:45 UTC = 02:45 CET: 8,100 s
#   203 PAUSEALL (no reason) 00:30 -> 01:15 UTC = 02:30 CEST -> 02:15 CET (the repeated hour): 2,700 s
#   203 ADDMEMBER support  10-27 19:00 UTC = 20:00 CET, never removed: an open session

CDR = [
    # X: 201 takes a queue call on 03-30 (CDR wall clock CET): answered 22:30:00, ended 22:40:00.
    master_line("+4930101", "5000", "ext-queues", "SIP/provider-00000101", "SIP/201-00000102", "Queue",
                "2024-03-30 22:29:50", "2024-03-30 22:30:00", "2024-03-30 22:40:00", 610, 600, "ANSWERED",
                "1711834190.101", '"Xaver" <+4930101>', 101),
    # Y: a direct call to 202 on 03-31 at 10:00:10 CEST, 300 s of talk; 202 has no session at all.
    master_line("+4930202", "202", "from-did-direct", "SIP/provider-00000201", "SIP/202-00000202", "Dial",
                "2024-03-31 10:00:00", "2024-03-31 10:00:10", "2024-03-31 10:05:10", 310, 300, "ANSWERED",
                "1711872000.201", '"Yvonne" <+4930202>', 201),
]

ZERO = {"logged_in_seconds": 0.0, "paused_seconds": 0.0, "paused_in_session_seconds": 0.0, "reason_paused_seconds": 0.0,
        "talk_seconds_sum": 0.0, "sessions": 0, "pauses": 0, "reason_pauses": 0, "open_intervals": 0,
        "answered_calls": 0}


def row(agent: str, reason: str | None = None, **figures) -> dict:
    return {"agent": agent, "pause_reason": reason, **ZERO, **figures}


EXPECTED = {
    # 201: logged in 20:00 -> 24:00 CET = 14,400 s (sales 21:00-23:00 lies inside); one session begun;
    # the 900 s break, inside the session; X's 600 s of talk.
    dt.date(2024, 3, 30): [
        row("201", logged_in_seconds=14_400.0, sessions=1, paused_seconds=900.0, pauses=1,
            paused_in_session_seconds=900.0, talk_seconds_sum=600.0, answered_calls=1),
        row("201", "break", reason_paused_seconds=900.0, reason_pauses=1),
    ],
    # The 23-hour day: 201 logged in 00:00 CET -> 04:00 CEST = 3 h (not 4: the clock skipped 02:00-03:00),
    # begun the day before (0 sessions); the meal pause 3,600 s, counted once; 202: Y only.
    dt.date(2024, 3, 31): [
        row("201", logged_in_seconds=10_800.0, paused_seconds=3_600.0, pauses=1, paused_in_session_seconds=3_600.0),
        row("201", "meal", reason_paused_seconds=3_600.0, reason_pauses=1),
        row("202", talk_seconds_sum=300.0, answered_calls=1),
    ],
    dt.date(2024, 4, 1): [],
    # The 25-hour day: 203 logged in 8,100 s, paused 2,700 s without a reason, one open session.
    dt.date(2024, 10, 27): [
        row("203", logged_in_seconds=8_100.0, sessions=1, paused_seconds=2_700.0, pauses=1,
            paused_in_session_seconds=2_700.0, open_intervals=1),
        row("203", "(no reason)", reason_paused_seconds=2_700.0, reason_pauses=1),
    ],
}


def settings_for(engine: Engine, tmp_path: Path) -> Settings:
    return Settings(data_dir=tmp_path, database_url=engine.url.render_as_string(hide_password=False),
                    store_root=str(tmp_path / "store"))


def import_fixture(engine: Engine, tmp_path: Path):
    """The client, and the summary of importing :data:`CDR` with :data:`QUEUE_LOG`."""
    client = licensed_client(engine, "berlin-agents", "Berlin agents", ZONE)
    (tmp_path / "Master.csv").write_text("\n".join(CDR) + "\n")
    (tmp_path / "queue_log").write_text(QUEUE_LOG)
    summary = import_cdr(engine, client.slug, "asterisk-csv", tmp_path / "Master.csv",
                         queue_log_path=tmp_path / "queue_log", data_dir=tmp_path)
    return client, summary


@pytest.fixture
def imported(engine: Engine, tmp_path: Path):
    return import_fixture(engine, tmp_path)


def test_the_import_keeps_sessions_pauses_and_agent_logins(imported, engine: Engine) -> None:
    client, summary = imported
    assert (summary.imported, summary.rejected) == (2, 0)
    q = summary.queue_log
    # Sessions: 201 support, 201 sales, 203 AGENTLOGIN (queue NONE), 203 support (open);
    # pauses: 201 break, 201 meal PAUSEALL (NONE) and PAUSE (support), 203 PAUSEALL.
    assert (q.sessions, q.pauses, q.joined_calls) == (4, 4, 1)
    with Session(engine) as session:
        sessions = [(s.queue, s.agent, s.ended_at is None) for s in session.scalars(
            select(QueueAgentSessionRow).order_by(QueueAgentSessionRow.started_at))]
        pauses = [(p.queue, p.agent, p.reason) for p in session.scalars(
            select(QueueAgentPauseRow).order_by(QueueAgentPauseRow.started_at, QueueAgentPauseRow.queue))]
    assert sessions == [("support", "201", False), ("sales", "201", False), ("NONE", "203", False),
                        ("support", "203", True)]
    assert pauses == [("support", "201", "break"), ("NONE", "201", "meal"), ("support", "201", "meal"),
                      ("NONE", "203", None)]


@pytest.mark.parametrize("day", list(EXPECTED))
def test_each_local_day_by_hand(imported, engine: Engine, tmp_path: Path, day: dt.date) -> None:
    client, _ = imported
    extractor = Extractor(App(settings_for(engine, tmp_path)))
    result = extractor.compute(ClientDay(client.id, ZONE, day), ["agent_availability", "daily_summary"], now=NOW)
    assert result.rows["agent_availability"] == len(EXPECTED[day])
    stored = extractor.store.read_days("agent_availability", client.id, [day], REPORT.schema)
    assert stored.drop_columns([c for c in stored.column_names if c not in REPORT.schema.names]).to_pylist() == EXPECTED[day]


def test_the_period_reads_through_summarize_report(imported, engine: Engine, tmp_path: Path) -> None:
    client, _ = imported
    app = App(settings_for(engine, tmp_path))
    frame = summarize_report("agent_availability", client.slug, "2024-03-30", "2024-04-01", app=app, now=NOW)
    own = frame[frame["pause_reason"].isna()].set_index("agent")
    # 201 over the three days: logged in 14,400 + 10,800 = 25,200 s; paused 900 + 3,600 = 4,500 s, all in
    # session: available 20,700 s; talk 600 s -> occupancy 600 / 20,700; paused share 4,500 / 25,200.
    a = own.loc["201"]
    assert (a["logged_in_seconds"], a["paused_seconds"], a["talk_seconds_sum"], a["sessions"], a["pauses"]) == (
        25_200.0, 4_500.0, 600.0, 1, 2)
    assert a["available_seconds"] == 20_700.0 and a["days"] == 2
    assert a["occupancy"] == pytest.approx(600 / 20_700) and a["paused_share"] == pytest.approx(4_500 / 25_200)
    # 202: talk without any session: no available time, so no occupancy (NaN), but the row is there.
    b = own.loc["202"]
    assert (b["logged_in_seconds"], b["talk_seconds_sum"], b["answered_calls"]) == (0.0, 300.0, 1)
    assert b["occupancy"] != b["occupancy"]
    reasons = frame[frame["pause_reason"].notna()].set_index(["agent", "pause_reason"])
    assert reasons["reason_paused_seconds"].to_dict() == {("201", "break"): 900.0, ("201", "meal"): 3_600.0}
    assert reasons.loc[("201", "meal"), "reason_share"] == pytest.approx(3_600 / 4_500)
    # Rows: each agent's own row first, then its reasons.
    assert list(zip(frame["agent"], frame["pause_reason"].fillna("-"), strict=True)) == [
        ("201", "-"), ("201", "break"), ("201", "meal"), ("202", "-")]
    total = REPORT.totals(REPORT.combine(read_report_arrow(
        "agent_availability", client.slug, "2024-03-30", "2024-04-01", app=app, now=NOW).drop_columns(["client"]))).iloc[0]
    assert (total["logged_in_seconds"], total["talk_seconds_sum"]) == (25_200.0, 900.0)
    assert total["occupancy"] == pytest.approx(900 / 20_700)


def test_an_end_in_a_later_file_closes_the_stored_interval(engine: Engine, tmp_path: Path) -> None:
    """logrotate cut the queue_log while 301 was logged in and paused: the next file's REMOVEMEMBER and
    UNPAUSE close what the first file left open (else the session would never end), and the days cached
    meanwhile go stale although none of their calls changed."""
    client = licensed_client(engine, "rotated", "Rotated", "UTC")
    cdr = tmp_path / "Master.csv"
    cdr.write_text(master_line("+4930303", "301", "from-did-direct", "SIP/provider-00000301", "SIP/301-00000302", "Dial",
                               "2024-05-06 23:00:00", "2024-05-06 23:00:10", "2024-05-06 23:01:10", 70, 60, "ANSWERED",
                               "1715036400.301") + "\n")
    first, second = tmp_path / "queue_log.1", tmp_path / "queue_log"
    # 2024-05-06 22:00 UTC ADDMEMBER, 23:30 PAUSE; 2024-05-07 00:30 UNPAUSE, 01:00 REMOVEMEMBER.
    first.write_text("1715032800|NONE|support|SIP/301|ADDMEMBER|\n1715038200|NONE|support|SIP/301|PAUSE|coffee\n")
    second.write_text("1715041800|NONE|support|SIP/301|UNPAUSE|coffee\n1715043600|NONE|support|SIP/301|REMOVEMEMBER|\n")
    days = [dt.date(2024, 5, 6), dt.date(2024, 5, 7)]

    def figures(extractor: Extractor) -> list[tuple]:
        table = extractor.store.read_days("agent_availability", client.id, days, REPORT.schema).to_pylist()
        return [(r["logged_in_seconds"], r["paused_seconds"], r["talk_seconds_sum"], r["sessions"], r["pauses"],
                 r["open_intervals"]) for r in table if r["pause_reason"] is None]

    import_cdr(engine, client.slug, "asterisk-csv", cdr, queue_log_path=first, data_dir=tmp_path,
               now=dt.datetime(2024, 5, 7, 0, 5, tzinfo=UTC))
    extractor = Extractor(App(settings_for(engine, tmp_path)))
    for day in days:
        extractor.compute(ClientDay(client.id, "UTC", day), ["agent_availability"], now=NOW)
    # Both open: in no figure but open_intervals (2, on 05-06, with the 60 s of talk); nothing on 05-07.
    assert figures(extractor) == [(0.0, 0.0, 60.0, 0, 0, 2)]
    before = App(settings_for(engine, tmp_path)).now()
    import_cdr(engine, client.slug, "asterisk-csv", cdr, queue_log_path=second, data_dir=tmp_path, now=before)
    intervals = AgentIntervalRepository(engine).zone_day_intervals(
        [client.id], dt.datetime(2024, 5, 7, tzinfo=UTC), dt.datetime(2024, 5, 8, tzinfo=UTC))[client.id]
    assert [(r["kind"], r["ended_at"]) for r in intervals.to_pylist()] == [
        ("pause", dt.datetime(2024, 5, 7, 0, 30, tzinfo=UTC)), ("session", dt.datetime(2024, 5, 7, 1, tzinfo=UTC))]
    stale, _ = find_stale_client_days(engine, before - dt.timedelta(seconds=1), NOW)
    assert [(s.client_id, s.day) for s in stale] == [(client.id, days[0]), (client.id, days[1])]
    # A run that reuses what is fresh (the closed-day sensor's, a period read's) recomputes them too.
    again = [extractor.compute(ClientDay(client.id, "UTC", day), ["agent_availability"], now=NOW, reuse_since=ANY_TIME)
             for day in days]
    assert [r.status for r in again] == ["computed", "computed"]
    # 05-06: logged in 22:00-24:00 = 7,200 s, paused 23:30-24:00 = 1,800 s, talk 60 s; 05-07: 3,600 / 1,800 s.
    assert figures(extractor) == [(7_200.0, 1_800.0, 60.0, 1, 1, 0), (3_600.0, 1_800.0, 0.0, 0, 0, 0)]
    assert find_stale_client_days(engine, before - dt.timedelta(seconds=1), NOW)[0] == []
    assert extractor.compute(ClientDay(client.id, "UTC", days[0]), ["agent_availability"], now=NOW,
                             reuse_since=ANY_TIME).status == "reused"


# --- re-aggregation equals recomputing from raw (brute force, second by second) -------------------------
def brute_force(intervals: list[dict], low: dt.datetime, high: dt.datetime) -> dict:
    """Per agent, from the raw intervals over ``[low, high)``: the set of covered seconds (so overlaps
    count once), their sizes, and how many merged runs of seconds begin inside the window."""
    epoch = lambda t: int(t.timestamp())
    lo, hi = epoch(low), epoch(high)
    out: dict[tuple, int] = {}
    covered: dict[tuple, set[int]] = {}
    everything: dict[tuple, set[int]] = {}
    for i in intervals:
        if i["ended_at"] is None:
            continue
        keys = [(i["agent"], i["kind"])] + ([(i["agent"], "reason", i["reason"] or "(no reason)")] if i["kind"] == "pause" else [])
        for key in keys:
            seconds = set(range(epoch(i["started_at"]), epoch(i["ended_at"])))
            everything.setdefault(key, set()).update(seconds)
            covered.setdefault(key, set()).update(s for s in seconds if lo <= s < hi)
    for key, seconds in covered.items():
        out[key] = len(seconds)
    for key, seconds in everything.items():  # a run begins at s when s-1 is not covered
        out[(*key, "begun")] = sum(1 for s in seconds if lo <= s < hi and s - 1 not in seconds)
    for agent in {k[0] for k in covered}:
        both = covered.get((agent, "session"), set()) & covered.get((agent, "pause"), set())
        out[(agent, "pause_in_session")] = len(both)
    return out


def random_intervals(seed: int, start: dt.datetime, hours: int) -> pa.Table:
    rng = random.Random(seed)
    rows = []
    for _ in range(40):
        agent = rng.choice(["a", "b", "c"])
        begin = start + dt.timedelta(seconds=rng.randrange(hours * 3600))
        length = dt.timedelta(seconds=rng.choice([1, 59, 600, 3_600, 5 * 3_600, 20 * 3_600]))
        kind = rng.choice(["session", "pause"])
        rows.append({"kind": kind, "queue": rng.choice(["q1", "q2", "NONE"]), "agent": agent, "started_at": begin,
                     "ended_at": begin + length, "reason": rng.choice([None, "lunch", "meeting"]) if kind == "pause" else None})
    return pa.Table.from_pylist(rows, schema=AGENT_INTERVAL_SCHEMA)


@pytest.mark.parametrize(("zone", "first", "seed"), [
    ("Europe/Berlin", dt.date(2024, 3, 30), 1), ("Europe/Berlin", dt.date(2024, 10, 26), 2),
    ("America/New_York", dt.date(2024, 3, 9), 3), ("Australia/Lord_Howe", dt.date(2024, 4, 6), 4)])
def test_days_recombined_equal_the_period_from_raw(zone: str, first: dt.date, seed: int) -> None:
    days = [first + dt.timedelta(days=i) for i in range(3)]
    contexts = [DayContext(1, zone, d) for d in days]
    low, high = contexts[0].window_utc[0], contexts[-1].window_utc[1]
    intervals = random_intervals(seed, low - dt.timedelta(hours=6), 84)
    calls = CALL_EVENT_SCHEMA.empty_table()  # no calls: the intervals are under test
    tables = [REPORT.compute_day(calls, ctx, agent_intervals=intervals) for ctx in contexts]
    stacked = pa.concat_tables([t.append_column("date", pa.array([d] * t.num_rows, type=pa.date32()))
                                for t, d in zip(tables, days, strict=True)])
    period = {(r["agent"], r["pause_reason"]): r for r in REPORT.combine(stacked).to_pylist()}
    raw = brute_force(intervals.to_pylist(), low, high)
    for agent in "abc":
        own = period.get((agent, None), {**ZERO})
        assert own["logged_in_seconds"] == raw.get((agent, "session"), 0), agent
        assert own["paused_seconds"] == raw.get((agent, "pause"), 0), agent
        assert own["paused_in_session_seconds"] == raw.get((agent, "pause_in_session"), 0), agent
        assert own["sessions"] == raw.get((agent, "session", "begun"), 0), agent
        assert own["pauses"] == raw.get((agent, "pause", "begun"), 0), agent
        for reason in ("(no reason)", "lunch", "meeting"):
            mine = period.get((agent, reason), {**ZERO})
            assert mine["reason_paused_seconds"] == raw.get((agent, "reason", reason), 0), (agent, reason)
            assert mine["reason_pauses"] == raw.get((agent, "reason", reason, "begun"), 0), (agent, reason)
    # Every column adds up over every row: the paused time by reason adds up to at least the paused time.
    for agent in "abc":
        if (agent, None) in period:
            by_reason = sum(r["reason_paused_seconds"] for (a, reason), r in period.items() if a == agent and reason is not None)
            assert by_reason >= period[(agent, None)]["paused_seconds"]


def test_bad_agent_intervals_are_refused_naming_the_input() -> None:
    ctx = DayContext(1, ZONE, dt.date(2024, 3, 31))
    with pytest.raises(InvalidInput, match="agent_intervals"):
        REPORT.compute_day(CALL_EVENT_SCHEMA.empty_table(), ctx, agent_intervals=pa.table({"agent": ["x"]}))
    bad = pa.Table.from_pylist([{"kind": "break", "queue": "q", "agent": "a", "started_at": dt.datetime(2024, 3, 31, tzinfo=UTC),
                                 "ended_at": None, "reason": None}], schema=AGENT_INTERVAL_SCHEMA)
    with pytest.raises(InvalidInput, match="kind"):
        REPORT.compute_day(CALL_EVENT_SCHEMA.empty_table(), ctx, agent_intervals=bad)


# --- through Dagster, and the other reports' path -----------------------------------------------------------
def test_the_report_days_asset_materializes_it_on_the_dst_gap_day(sqlite_engine: Engine, tmp_path: Path) -> None:
    import pyarrow.dataset as ds

    from report_pipelines.definitions import defs
    from report_pipelines.defs.resources import AppResource
    from report_pipelines_tests.dagster_support import QUIET, persistent_instance

    client, _ = import_fixture(sqlite_engine, tmp_path)  # the Dagster path is the same on PostgreSQL (test_report_assets)
    settings = settings_for(sqlite_engine, tmp_path)
    result = defs.resolve_job_def("extract_reports_job").execute_in_process(
        instance=persistent_instance(tmp_path / "dagster_home"), partition_key="2024-03-31",
        run_config={**QUIET, "ops": {"report_days": {"config": {"zones": [ZONE]}}}},
        resources={"app": AppResource.for_settings(settings, now=NOW)})
    assert result.success
    [event] = result.get_asset_materialization_events()
    meta = {k: v.value for k, v in event.materialization.metadata.items()}
    assert meta["rows"]["agent_availability"] == len(EXPECTED[dt.date(2024, 3, 31)])
    assert all(c.passed for c in result.get_asset_check_evaluations())
    # The Parquet layout: <root>/agent_availability/client=<id>/date=<day>/part-0.parquet, readable without our code.
    keys = ds.partitioning(pa.schema([("client", pa.int64()), ("date", pa.date32())]), flavor="hive")
    table = ds.dataset(tmp_path / "store" / "agent_availability", format="parquet", partitioning=keys).to_table(
        filter=(ds.field("client") == client.id) & (ds.field("date") == dt.date(2024, 3, 31)))
    assert table.select(REPORT.schema.names).to_pylist() == EXPECTED[dt.date(2024, 3, 31)]


def test_the_other_reports_never_read_agent_intervals_and_are_unchanged(imported, engine: Engine, tmp_path: Path,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """The fast path: without agent_availability in the run no interval is read; with it, the other
    reports' day files are byte for byte the same."""
    client, _ = imported
    day = dt.date(2024, 3, 30)
    others = [name for name in REPORTS if name != "agent_availability"]
    with_it = Extractor(App(settings_for(engine, tmp_path / "with")))
    with_it.compute(ClientDay(client.id, ZONE, day), [*others, "agent_availability"], now=NOW)
    expected = {name: Path(with_it.store.day_path(name, client.id, day)).read_bytes() for name in others}

    def refuse(*args, **kwargs):
        raise AssertionError("agent intervals read for reports that do not need them")

    monkeypatch.setattr(AgentIntervalRepository, "zone_day_intervals", refuse)
    without = Extractor(App(settings_for(engine, tmp_path / "without")))
    without.compute(ClientDay(client.id, ZONE, day), others, now=NOW)
    assert {name: Path(without.store.day_path(name, client.id, day)).read_bytes() for name in others} == expected


def test_talk_is_agent_performances_talk() -> None:
    """Talk comes from the calls, counted as agent_performance counts it: answered inbound calls the agent
    took and answered outbound / internal calls it placed; unanswered ones and calls without an agent not."""
    from report_pipelines.domain.reports.screening import screen_calls
    from report_pipelines_tests.reports_support import call, table

    ctx = DayContext(7, "UTC", dt.date(2024, 6, 12))
    calls = screen_calls(table([
        call("1", "inbound", "ANSWERED", "2024-06-12 09:00:00", "2024-06-12 09:05:00", "2024-06-12 09:00:20", "q", "a"),
        call("2", "outbound", "ANSWERED", "2024-06-12 10:00:00", "2024-06-12 10:01:00", "2024-06-12 10:00:15", None, "a"),
        call("3", "outbound", "NO ANSWER", "2024-06-12 10:10:00", "2024-06-12 10:10:30", None, None, "a"),
        call("4", "internal", "ANSWERED", "2024-06-12 11:00:00", "2024-06-12 11:00:40", "2024-06-12 11:00:10", None, "b"),
        call("5", "inbound", "ABANDONED", "2024-06-12 12:00:00", "2024-06-12 12:00:30", None, "q", None),
        call("6", "inbound", "ANSWERED", "2024-06-12 23:59:00", "2024-06-13 00:09:00", "2024-06-12 23:59:30", "q", "b"),
    ]), ctx).clean
    mine = {r["agent"]: (r["answered_calls"], r["talk_seconds_sum"]) for r in REPORT.compute_day(calls, ctx).to_pylist()}
    theirs = {r["agent"]: (r["answered_calls"], r["talk_seconds_sum"])
              for r in get_report("agent_performance").compute_day(calls, ctx).to_pylist()}
    # By hand: a = 280 + 45 s (2 calls); b = 30 + 570 s (the call across midnight counts on its start day).
    assert mine == theirs == {"a": (2, 325.0), "b": (2, 600.0)}


def test_the_e_mail_and_its_attachments_carry_it(sqlite_engine: Engine, tmp_path: Path) -> None:
    import openpyxl
    import pyarrow.csv as pacsv

    from report_pipelines.services.report_mail import compose_report_message, write_report_attachment

    client, _ = import_fixture(sqlite_engine, tmp_path)
    app = App(settings_for(sqlite_engine, tmp_path))
    start, end = dt.date(2024, 3, 30), dt.date(2024, 3, 31)
    composed = compose_report_message(app, client.slug, "agent_availability", start, end, now=NOW)
    table = composed.digest.table
    # 201 first (most logged-in time): 7 h logged in, 1 h 15 min paused, 10 min of talk, 600 / 20,700 occupied.
    assert table.title == "Agents by logged-in time" and table.columns[0] == "Agent"
    assert [row[0] for row in table.rows] == ["201", "202"]
    assert table.rows[0][1:4] == ("7 h 00 min", "1 h 15 min", "10 min 00 s")
    assert table.rows[0][4] == "2.9 %" and table.rows[1][4] == "–"  # 600 / 20,700; 202 has no available time
    assert composed.pdf().startswith(b"%PDF")
    days = read_report_arrow("agent_availability", client.slug, start, end, app=app, now=NOW)
    written = write_report_attachment("agent_availability", days, tmp_path / "out" / "agents.xlsx", "xlsx",
                                      client_name=client.name, timezone=ZONE, start=start, end=end)
    assert written.bytes > 0
    sheet = openpyxl.load_workbook(tmp_path / "out" / "agents.xlsx")["report"]
    header = [c.value for c in sheet[4]]
    column = {name: openpyxl.utils.get_column_letter(i + 1) for i, name in enumerate(header)}
    assert sheet[f"{column['occupancy']}5"].number_format == "0.0%"
    assert sheet[f"{column['logged_in_seconds']}5"].value.total_seconds() == 25_200
    write_report_attachment("agent_availability", days, tmp_path / "out" / "agents.csv", "csv", client_name=client.name,
                            timezone=ZONE, start=start, end=end)
    rows = pacsv.read_csv(tmp_path / "out" / "agents.csv", convert_options=pacsv.ConvertOptions(
        column_types={"agent": pa.string(), "pause_reason": pa.string()})).to_pylist()
    # The agent rows' null reason is an empty field; a pause without a reason would say "(no reason)".
    assert [(r["agent"], r["pause_reason"]) for r in rows] == [("201", ""), ("201", "break"), ("201", "meal"),
                                                               ("202", "")]
