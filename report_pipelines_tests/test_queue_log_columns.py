"""The queue_log in columns (issue 14) gives what the event-by-event reference gives: the same events,
attempts, sessions, pauses, orphan ends and rejects from the reader, and the same joined calls, join
figures and attempt owners from the join, on generated files with every shape the reference knows
(member interfaces SIP/, PJSIP/, Local/...@from-queue/n, ring attempts, abandons, exits, transfers,
CONNECTs and ends whose ENTERQUEUE was before the file, re-entries, calls with no queue_log line and
attempts with no call, skewed clocks, instants next to both of Berlin's DST changes, malformed and
oddly spaced lines, a legacy code page, CRLF and blank lines)."""

from __future__ import annotations

import datetime as dt
import io
import random
from pathlib import Path

import pyarrow as pa
import pytest
from sqlalchemy import Engine

from report_pipelines.adapters.sources.cdr import queue_log as reader
from report_pipelines.adapters.sources.cdr.queue_log import (
    PY_WHITESPACE,
    QueueLogFile,
    read_queue_log,
    read_queue_log_by_line,
)
from report_pipelines.domain.queue_log import AttemptIndex, JoinStats, attempts_by_call, join_calls
from report_pipelines.domain.queue_log_columns import AttemptJoin
from report_pipelines.services import cdr_import
from report_pipelines.services.cdr_import import import_cdr
from report_pipelines.services.clients import add_client
from report_pipelines_tests.test_cdr_import import stored
from report_pipelines_tests.test_cdr_pbx_exports import q

FMT = "%Y-%m-%d %H:%M:%S"


def _local(instant: dt.datetime) -> str:
    from zoneinfo import ZoneInfo

    return instant.astimezone(ZoneInfo("Europe/Berlin")).strftime(FMT)


def _leg(src: str, dst: str, ctx: str, chan: str, dstchan: str, app: str, start: dt.datetime, answer: dt.datetime | None,
         end: dt.datetime, disposition: str, uniqueid: str, linkedid: str, seq: int) -> str:
    duration = int((end - start).total_seconds())
    billsec = int((end - answer).total_seconds()) if answer else 0
    return q("", src, dst, ctx, f'"Caller" <{src}>', chan, dstchan, app, "support,t,,,300", _local(start),
             _local(answer) if answer else "", _local(end), duration, billsec, disposition, "DOCUMENTATION", uniqueid,
             "", "", linkedid, seq)


def generate(calls: int, seed: int) -> tuple[list[str], list[bytes]]:
    """Master.csv lines (Europe/Berlin wall clock) and queue_log lines (bytes) for ``calls`` calls
    around both DST changes of 2024."""
    rng = random.Random(seed)
    cdr: list[str] = []
    log: list[tuple[float, bytes]] = []
    members = ["SIP/201", "PJSIP/202", "Local/203@from-queue/n", "Alice Smith", "SIP/204"]

    def ql(at: dt.datetime, callid: str, queue: str, agent: str, event: str, *data: object) -> None:
        log.append((at.timestamp(), "|".join([str(int(at.timestamp())), callid, queue, agent, event,
                                              *map(str, data)]).encode()))

    for n in range(calls):  # in time order (as a PBX writes them): half across each DST change
        base = dt.datetime(2024, 3, 31, 0, 30, tzinfo=dt.UTC) if n < calls // 2 else dt.datetime(2024, 10, 27, 0, 20, tzinfo=dt.UTC)
        t = base + dt.timedelta(seconds=(n % (calls // 2)) * 7200 // (calls // 2) + rng.randint(0, 3))
        uid = f"{int(t.timestamp())}.{n}"
        kind = rng.choice(["answered", "answered", "transfer", "abandon", "exit", "no_log", "outbound", "mid_file",
                           "end_only", "leg_uid", "reenter", "skewed"])
        queue = rng.choice(["support", "sales"])
        wait, talk = rng.randint(3, 50), rng.randint(10, 300)
        ring, agent = members[n % len(members)], members[(n + 1) % len(members)]
        answer, end = t + dt.timedelta(seconds=wait), t + dt.timedelta(seconds=wait + talk)
        trunk = f"SIP/provider-{n:08x}"
        if kind == "outbound":
            cdr.append(_leg("201", "004930123456", "from-internal", f"SIP/201-{n:08x}", trunk, "Dial", t,
                            t + dt.timedelta(seconds=4), end, "ANSWERED", uid, uid, 1))
            continue
        ring_leg = _leg(f"+4930{n}", "5000", "ext-queues", trunk, f"SIP/201-{n:08x}", "Queue", t, None,
                        t + dt.timedelta(seconds=min(wait, 15)), "NO ANSWER", uid, uid, 1)
        cdr.append(ring_leg)
        if kind in ("abandon", "exit"):
            cdr.append(_leg(f"+4930{n}", "5000", "ext-queues", trunk, "", "Queue", t, t, answer, "ANSWERED", uid, uid, 2))
        else:
            second = f"{int(t.timestamp())}.{n}9" if kind == "leg_uid" else uid
            cdr.append(_leg(f"+4930{n}", "5000", "ext-queues", trunk, f"SIP/202-{n:08x}", "Queue", t, answer, end,
                            "ANSWERED", second, uid, 2))
        if kind == "no_log":
            continue
        callid = f"{int(t.timestamp())}.{n}9" if kind == "leg_uid" else uid
        skew = dt.timedelta(seconds=rng.choice([30, -40])) if kind == "skewed" else dt.timedelta(0)
        if kind not in ("mid_file", "end_only"):
            ql(t + skew, callid, queue, "NONE", "ENTERQUEUE", "", f"+4930{n}", 1)
            ql(t + skew + dt.timedelta(seconds=min(wait, 15)), callid, queue, ring, "RINGNOANSWER", 15000)
        if kind == "abandon":
            ql(answer, callid, queue, "NONE", "ABANDON", 1, 1, wait)
        elif kind == "exit":
            event = rng.choice(["EXITWITHTIMEOUT", "EXITEMPTY", "EXITWITHKEY"])
            data = (5, 1, 1, wait) if event == "EXITWITHKEY" else (1, 1, wait)
            ql(answer, callid, queue, "NONE", event, *data)
        elif kind == "end_only":
            ql(end, callid, queue, agent, "COMPLETEAGENT", wait, talk, 1)
        else:
            ql(answer + skew, callid, queue, agent, "CONNECT", wait, f"{uid}9", 3)
            if kind == "reenter":
                ql(answer + dt.timedelta(seconds=2), callid, queue, "NONE", "ENTERQUEUE", "", f"+4930{n}", 1)
                ql(answer + dt.timedelta(seconds=5), callid, queue, agent, "CONNECT", 3, f"{uid}9", 2)
            last = rng.choice(["COMPLETECALLER", "COMPLETEAGENT", "TRANSFER", "BLINDTRANSFER", "ATTENDEDTRANSFER"])
            data = ("200", "from-internal", wait, talk) if "TRANSFER" in last else (wait, talk, 1)
            if rng.random() < 0.9:  # else the file ends with the call still open
                ql(end, callid, queue, agent, last, *data)
    # An attempt no CDR call has, member sessions and pauses, and lines the reader must reject or skip.
    at = dt.datetime(2024, 3, 31, 0, 10, tzinfo=dt.UTC)
    ql(at, "1711843800.999", "sales", "NONE", "ENTERQUEUE", "", "+4930999", 1)
    for i, member in enumerate(members):
        ql(at + dt.timedelta(seconds=i), "NONE", "support", member, "ADDMEMBER", "")
        ql(at + dt.timedelta(seconds=i + 1), "NONE", "support", member, "ADDMEMBER", "")  # already in: ignored
        ql(at + dt.timedelta(minutes=20 + i), "NONE", "support", member, "PAUSE", "lunch" if i % 2 else "")
        ql(at + dt.timedelta(minutes=25 + i), "NONE", "support", member, "UNPAUSE", "")
        ql(at + dt.timedelta(minutes=30 + i), "NONE", "", member, "PAUSEALL", "break")
        ql(at + dt.timedelta(minutes=31 + i), "NONE", "", member, "UNPAUSEALL", "")
        if i % 2:
            ql(at + dt.timedelta(hours=3), "NONE", "support", member, "REMOVEMEMBER", "")
    ql(at, "NONE", "sales", "SIP/209", "REMOVEMEMBER", "")  # its ADDMEMBER was in an earlier file
    ql(at, "NONE", "sales", "SIP/209", "UNPAUSE", "")
    ql(at, "NONE", "NONE", "Agent/301", "AGENTLOGIN", "SIP/301")
    ql(at + dt.timedelta(hours=1), "NONE", "NONE", "Agent/301", "AGENTLOGOFF", "SIP/301", 3600)
    ql(at, "NONE", "support", "NONE", "ADDMEMBER", "")  # no member: skipped
    ql(at, "NONE", "NONE", "NONE", "QUEUESTART", "")
    lines = [line for _, line in sorted(log, key=lambda item: item[0])]
    odd = [b"garbage", b"12:00|x|q|a|CONNECT", b"1711843800|x|q|a|c o", b"1711843800|" + b"x" * 300 + b"|q|a|CONNECT",
           b" 1711843800 |1711843800.7| support |SIP/201| CONNECT |12", "1711843800\u00a0|y|q|a|ENTERQUEUE".encode(),
           b"1711843800.250000|z|support|SIP/201|ENTERQUEUE||x|1", b"1711843801.5|z|support|SIP/201|CONNECT|0.5|u|1",
           "١٧١١٨٤٣٨٠٠|w|support|SIP/201|ENTERQUEUE".encode(), b"01711843800|v|support|SIP/201|ENTERQUEUE",
           b"99999999999|v|support|SIP/201|ENTERQUEUE", b"1711843800|caf\xe9|support|SIP/201|ENTERQUEUE||Jos\xe9|1",
           b"", b"   ", b"1711843800|nul\x00|q|a|ENTERQUEUE", b"1711843802|z|support|SIP/201|COMPLETECALLER|1|2|3\r",
           b"1711843803|y2|support|SIP/201|CONNECT| 7 ", b"1711843804|y3|support|SIP/201|ABANDON|1|1|nan",
           b"1711843805|y4|support|SIP/201|EXITWITHKEY|1|1|1|-4", b"1711843806|y5|support|SIP/201|CONNECT|1e1"]
    for i, line in enumerate(odd):
        lines.insert(rng.randint(0, len(lines)), line)
        if i == 0:
            lines.insert(0, line)
    return cdr, lines


def _same(new: QueueLogFile, old: QueueLogFile) -> None:
    assert (new.rows, new.rejects) == (old.rows, old.rejects)
    assert new.log.attempts.equals(old.log.attempts)
    assert (new.log.sessions, new.log.pauses, new.log.orphan_ends) == (old.log.sessions, old.log.pauses, old.log.orphan_ends)
    assert list(new.log.events.items()) == list(old.log.events.items())
    assert list(new.log.skipped.items()) == list(old.log.skipped.items())


def test_python_whitespace_is_str_strip() -> None:
    assert sorted(PY_WHITESPACE) == [chr(c) for c in range(0x110000) if chr(c).isspace()]


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_the_columns_read_what_the_line_reader_reads(seed: int) -> None:
    _, lines = generate(400, seed)
    data = b"\n".join(lines) + (b"\n" if seed % 2 else b"")
    old = read_queue_log_by_line(io.BytesIO(data))
    assert old.rejects and old.log.attempts.num_rows > 300 and old.log.orphan_ends and old.log.skipped
    for block in (97, 4096, reader.BLOCK_BYTES):  # blocks cut anywhere, and the whole file at once
        _same(read_queue_log(io.BytesIO(data), block_bytes=block), old)
    crlf = data.replace(b"\n", b"\r\n")
    _same(read_queue_log(io.BytesIO(crlf), block_bytes=500), read_queue_log_by_line(io.BytesIO(crlf)))
    bom = b"\xef\xbb\xbf" + data
    _same(read_queue_log(io.BytesIO(bom), block_bytes=300), read_queue_log_by_line(io.BytesIO(bom)))
    from report_pipelines.adapters.sources.cdr.rows import Decoder

    for decoder in (lambda: Decoder(None, "cp1252", detected=True), lambda: Decoder("cp1252")):
        new_decoder, old_decoder = decoder(), decoder()
        _same(read_queue_log(io.BytesIO(data), new_decoder, block_bytes=2000), read_queue_log_by_line(io.BytesIO(data), old_decoder))
        assert new_decoder.counts == old_decoder.counts


def test_a_line_longer_than_the_limit_is_rejected_as_the_line_reader_does(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(reader, "MAX_LINE_BYTES", 1000)
    monkeypatch.setattr("report_pipelines.adapters.sources.cdr.rows.MAX_LINE_BYTES", 1000)
    _, lines = generate(50, 4)
    lines[10:10] = [b"1711843800|long|support|SIP/201|ENTERQUEUE||" + b"x" * 5000, b"1711843800|q|s|a|" + b"y" * 999]
    data = b"\n".join(lines) + b"\n"
    old = read_queue_log_by_line(io.BytesIO(data))
    assert any("longer than 1000 bytes" in r.reason for r in old.rejects)
    for block in (600, 3000, 100_000):
        _same(read_queue_log(io.BytesIO(data), block_bytes=block), old)


class _Reference:
    """The import's join done by the reference (AttemptIndex, attempts_by_call, join_calls) beside
    the columns, block by block; every joined table and figure is compared."""

    reference = None

    def __init__(self, attempts: pa.Table) -> None:
        self.new = AttemptJoin(attempts)
        self.index = AttemptIndex(self.reference)
        self.stats = JoinStats()
        self.blocks = 0

    def __bool__(self) -> bool:
        assert bool(self.new) == bool(self.index)
        return bool(self.new)

    def join(self, calls: pa.Table, call_ids: pa.Array, uniqueids: pa.Array, stats: JoinStats) -> pa.Table:
        joined = self.new.join(calls, call_ids, uniqueids, stats)
        expected = join_calls(calls, attempts_by_call(call_ids, uniqueids, self.index), self.stats)
        assert joined.equals(expected)
        assert (stats.joined, stats.clamped, list(stats.outcomes.items())) == (
            self.stats.joined, self.stats.clamped, list(self.stats.outcomes.items()))
        self.blocks += 1
        return joined

    def attempts(self) -> pa.Table:
        found = self.new.attempts()
        assert found.equals(self.reference.tables().attempts)
        return found


@pytest.mark.parametrize("seed", [5, 6])
def test_an_import_joins_the_calls_as_the_reference_does(engine: Engine, tmp_path: Path, seed: int,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    cdr, lines = generate(1500, seed)
    master, qlog = tmp_path / "Master.csv", tmp_path / "queue_log"
    master.write_text("\n".join(cdr) + "\n")
    qlog.write_bytes(b"\n".join(lines) + b"\n")

    def both(stream, decoder=None) -> QueueLogFile:
        data = stream.read()
        old = read_queue_log_by_line(io.BytesIO(data), decoder)
        new = read_queue_log(io.BytesIO(data), decoder, block_bytes=5000)
        _same(new, old)
        _Reference.reference = old.reference
        return new

    joins: list[_Reference] = []
    monkeypatch.setattr(cdr_import, "read_queue_log", both)
    monkeypatch.setattr(cdr_import, "AttemptJoin", lambda attempts: joins.append(_Reference(attempts)) or joins[-1])
    client = add_client(engine, "berlin", "Berlin", "Europe/Berlin")
    summary = import_cdr(engine, "berlin", "asterisk-csv", master, queue_log_path=qlog, data_dir=tmp_path,
                         horizon=dt.timedelta(minutes=20))
    [join] = joins
    assert join.blocks > 1 and summary.queue_log is not None
    assert summary.queue_log.joined_calls > 1000 and summary.queue_log.clamped > 0 and summary.queue_log.unmatched_attempts
    assert summary.imported > 1300 and {"answered", "abandoned", "timeout", "empty", "key"} <= set(summary.queue_log.outcomes)
    assert stored(engine, client.id)  # stored through the new path


def test_hold_and_talk_times_that_are_not_finite_or_absurd_read_as_unknown_on_both_paths() -> None:
    """``inf`` used to stop the import with an OverflowError; ``nan``, ``inf`` and 1e300 now read as an
    unknown hold time (like a negative one), and the columns agree with the line reader."""
    lines = [b"1711843800|c1|support|NONE|ENTERQUEUE||0711111111|1",
             b"1711843805|c1|support|SIP/201|CONNECT|inf|c1.1|2",
             b"1711843900|c1|support|SIP/201|COMPLETECALLER|nan|95|1",
             b"1711843800|c2|support|NONE|ENTERQUEUE||0722222222|1",
             b"1711843809|c2|support|SIP/202|CONNECT|1e300|c2.1|3",
             b"1711843999|c2|support|SIP/202|COMPLETEAGENT|9|190|1",
             b"1711843800|c3|support|NONE|ENTERQUEUE||0733333333|1",
             b"1711843812|c3|support|SIP/203|CONNECT|12|c3.1|2",
             b"1711843900|c3|support|SIP/203|COMPLETECALLER|12|88|1"]
    data = b"\n".join(lines) + b"\n"
    old = read_queue_log_by_line(io.BytesIO(data))
    _same(read_queue_log(io.BytesIO(data)), old)
    assert old.log.attempts.num_rows == 3 and not old.rejects
