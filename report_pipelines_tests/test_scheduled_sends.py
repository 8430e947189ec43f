"""Sending scheduled report files: per-recipient outcomes, leases checked right before DATA and
renewed while a batch runs, a hung relay and a deadline that bound a batch, outcomes recorded in
batches, and an operator's resend with the history kept. A real SMTP server (aiosmtpd) throughout."""

from __future__ import annotations

import contextlib
import datetime as dt
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from sqlalchemy import Engine, update

from report_pipelines.adapters.db.models import ReportFile, ReportFileRecipient
from report_pipelines.adapters.db.schedules import ReportFileRepository, SendOutcome
from report_pipelines.adapters.mailer import Mailer, OutboxMailer, SmtpMailer
from report_pipelines.domain.errors import InvalidInput, NotFound
from report_pipelines.services.scheduled_reports import (
    BuildFailed,
    SendPolicy,
    due_occurrences,
    message_id_for,
    plan_schedules,
    process_occurrence,
    resend_file,
    send_files,
)
from report_pipelines_tests.extract_support import seed
from report_pipelines_tests.schedule_support import NOW, TO, Clock, build_due, daily, smtp_mailer, with_mail
from report_pipelines_tests.smtp_support import SmtpServer

OPS, BOSS = TO


@pytest.fixture
def smtp(tmp_path_factory: pytest.TempPathFactory):
    server = SmtpServer(tmp_path_factory.mktemp("smtp")).start()
    yield server
    server.stop()


def states(engine: Engine, file_id: int) -> dict[str, str]:
    return {r.address: r.state for r in ReportFileRepository(engine).recipients([file_id])[file_id]}


def received(smtp: SmtpServer, file_id: int) -> list[list[str]]:
    """The envelope recipients of every copy of a file's message the server took."""
    return [rcpts for rcpts, message in smtp.inbox.messages if message["Message-ID"] == message_id_for(file_id)]


class Stepping(Mailer):
    """A mailer around another one that runs ``after(n)`` once the n-th message of a session is sent."""

    def __init__(self, inner: Mailer, after) -> None:
        self.inner, self.after, self.timeout_s = inner, after, inner.timeout_s

    @contextlib.contextmanager
    def session(self) -> Iterator:
        with self.inner.session() as send:
            count = [0]

            def stepping(message, recipients=None, **options):
                delivery = send(message, recipients, **options)
                count[0] += 1
                self.after(count[0])
                return delivery

            yield stepping


# --- per recipient ------------------------------------------------------------------------------------
def test_a_greylisted_recipient_is_retried_alone_then_the_file_is_sent(engine: Engine, tmp_path: Path,
                                                                        smtp: SmtpServer) -> None:
    seeded = with_mail(seed(engine, tmp_path))
    daily(seeded)
    [file] = build_due(seeded)
    smtp.behaviour.busy.add(BOSS)  # 450 at RCPT: greylisting
    first = send_files(engine, seeded.settings, smtp_mailer(smtp), "s", now=NOW)
    assert [i for i, _ in first.retried] == [file.id] and first.sent == []
    waiting = ReportFileRepository(engine).get(file.id)
    assert (waiting.state, waiting.attempts) == ("retry", 1) and waiting.next_attempt_at > NOW
    assert states(engine, file.id) == {OPS: "accepted", BOSS: "deferred"}
    assert received(smtp, file.id) == [[OPS]]

    smtp.behaviour.busy.clear()
    assert send_files(engine, seeded.settings, smtp_mailer(smtp), "s", now=NOW).sent == []  # not before its backoff
    second = send_files(engine, seeded.settings, smtp_mailer(smtp), "s", now=waiting.next_attempt_at)
    assert second.sent == [file.id]
    assert received(smtp, file.id) == [[OPS], [BOSS]]  # the boss alone the second time, same Message-ID
    assert states(engine, file.id) == {OPS: "accepted", BOSS: "accepted"}
    sent = ReportFileRepository(engine).get(file.id)
    assert (sent.state, sent.attempts, sent.last_error) == ("sent", 2, None)
    history = ReportFileRepository(engine).attempts_of(file.id)
    assert [(a.kind, a.number, a.outcome) for a in history] == [("build", 1, "ready"), ("send", 1, "retry"),
                                                                 ("send", 2, "sent")]
    assert history[1].recipients[BOSS].startswith("450") and history[1].recipients[OPS].startswith("250")
    assert list(history[2].recipients) == [BOSS]


def test_a_refused_recipient_is_recorded_and_never_retried(sqlite_engine: Engine, tmp_path: Path,
                                                           smtp: SmtpServer) -> None:
    seeded = with_mail(seed(sqlite_engine, tmp_path))
    daily(seeded)
    [file] = build_due(seeded)
    smtp.behaviour.refuse.add(BOSS)
    assert send_files(sqlite_engine, seeded.settings, smtp_mailer(smtp), "s", now=NOW).sent == [file.id]
    assert states(sqlite_engine, file.id) == {OPS: "accepted", BOSS: "refused"}
    [boss] = [r for r in ReportFileRepository(sqlite_engine).recipients([file.id])[file.id] if r.address == BOSS]
    assert boss.last_reply.startswith("550") and boss.attempts == 1
    smtp.behaviour.refuse.clear()
    later = NOW + dt.timedelta(days=1)
    assert send_files(sqlite_engine, seeded.settings, smtp_mailer(smtp), "s", now=later).sent == []
    assert received(smtp, file.id) == [[OPS]]


def test_deferred_to_the_last_attempt_fails_then_a_resend_reaches_only_the_missing(sqlite_engine: Engine,
                                                                                   tmp_path: Path,
                                                                                   smtp: SmtpServer) -> None:
    seeded = with_mail(seed(sqlite_engine, tmp_path), max_attempts=2)
    daily(seeded)
    [file] = build_due(seeded)
    files = ReportFileRepository(sqlite_engine)
    smtp.behaviour.busy.add(BOSS)
    send_files(sqlite_engine, seeded.settings, smtp_mailer(smtp), "s", now=NOW)
    last = send_files(sqlite_engine, seeded.settings, smtp_mailer(smtp), "s", now=files.get(file.id).next_attempt_at)
    assert [i for i, _ in last.failed] == [file.id] and "gave up after 2 attempts" in last.failed[0][1]
    assert states(sqlite_engine, file.id) == {OPS: "accepted", BOSS: "failed"}
    assert files.get(file.id).state == "failed"

    smtp.behaviour.busy.clear()
    resent = resend_file(sqlite_engine, seeded.settings, smtp_mailer(smtp), file.id, "operator", now=NOW)
    assert (resent.state, resent.attempts) == ("sent", 1)  # attempts counted afresh
    assert received(smtp, file.id) == [[OPS], [BOSS]]  # the first send's [OPS, BOSS] attempt reached ops only
    assert states(sqlite_engine, file.id) == {OPS: "accepted", BOSS: "accepted"}
    outcomes = [(a.kind, a.number, a.outcome) for a in files.attempts_of(file.id)]
    assert outcomes == [("build", 1, "ready"), ("send", 1, "retry"), ("send", 2, "failed"), ("send", 0, "resend"),
                        ("send", 1, "sent")]

    with pytest.raises(InvalidInput) as err:  # every recipient has it now
        resend_file(sqlite_engine, seeded.settings, smtp_mailer(smtp), file.id, "operator", now=NOW)
    assert err.value.field == "file" and "every recipient has it" in str(err.value)
    with pytest.raises(NotFound):
        resend_file(sqlite_engine, seeded.settings, smtp_mailer(smtp), 999_999, "operator", now=NOW)


def test_a_file_whose_build_failed_is_built_and_sent_by_a_resend(sqlite_engine: Engine, tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    import report_pipelines.services.scheduled_reports as scheduled

    seeded = seed(sqlite_engine, tmp_path)
    seeded.settings = replace(seeded.settings, max_build_attempts=1)
    row = daily(seeded)
    real = scheduled.build_file

    def disk_full(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(scheduled, "build_file", disk_full)
    plan_schedules(sqlite_engine, NOW - dt.timedelta(days=1))
    [occurrence] = due_occurrences(sqlite_engine, NOW)
    with pytest.raises(BuildFailed) as err:
        process_occurrence(sqlite_engine, seeded.settings, occurrence, "run", NOW)
    file_id = err.value.file_id
    assert ReportFileRepository(sqlite_engine).get(file_id).state == "failed"

    monkeypatch.setattr(scheduled, "build_file", real)
    outbox = OutboxMailer(tmp_path / "outbox")
    resent = resend_file(sqlite_engine, seeded.settings, outbox, file_id, "operator", now=NOW)
    assert (resent.state, resent.build_attempts, resent.schedule_id) == ("sent", 1, row.id)
    assert resent.path and Path(resent.path).is_file() and len(list((tmp_path / "outbox").glob("*.eml"))) == 1
    outcomes = [(a.kind, a.outcome) for a in ReportFileRepository(sqlite_engine).attempts_of(file_id)]
    assert outcomes == [("build", "failed"), ("send", "resend"), ("build", "ready"), ("send", "sent")]


def test_a_connection_dropped_after_data_is_sent_again_with_the_same_message_id(sqlite_engine: Engine,
                                                                                tmp_path: Path,
                                                                                smtp: SmtpServer) -> None:
    """The one case SMTP cannot tell apart: the server took the message and the reply was lost. The
    retry duplicates it, recognisably (same Message-ID), and the history says why."""
    seeded = with_mail(seed(sqlite_engine, tmp_path))
    daily(seeded)
    [file] = build_due(seeded)
    smtp.behaviour.drop_after_data = 1
    first = send_files(sqlite_engine, seeded.settings, smtp_mailer(smtp), "s", now=NOW)
    assert [i for i, _ in first.retried] == [file.id]
    again = ReportFileRepository(sqlite_engine).get(file.id).next_attempt_at
    assert send_files(sqlite_engine, seeded.settings, smtp_mailer(smtp), "s", now=again).sent == [file.id]
    assert received(smtp, file.id) == [sorted(TO, key=TO.index)] * 2
    [_, lost, _] = ReportFileRepository(sqlite_engine).attempts_of(file.id)
    assert lost.outcome == "retry" and "after the message" in lost.error


# --- leases -------------------------------------------------------------------------------------------
def test_a_sender_whose_lease_is_taken_over_right_before_data_sends_nothing(pg_engine: Engine, tmp_path: Path,
                                                                            smtp: SmtpServer) -> None:
    seeded = with_mail(seed(pg_engine, tmp_path))
    daily(seeded)
    [file] = build_due(seeded, now=NOW)
    slow_clock = Clock(NOW)
    later = NOW + dt.timedelta(minutes=11)
    takeover: list = []

    class Late(SmtpMailer):
        """Stalls between RCPT and DATA (as a process descheduled there would), long enough for its
        lease to expire and another sender to take the file over and send it."""

        def _deliver(self, smtp_conn, wire, targets, before_data, finish_by):
            def late_check() -> None:
                takeover.append(send_files(pg_engine, seeded.settings, smtp_mailer(smtp), "other", now=later))
                slow_clock.now = later + dt.timedelta(seconds=1)
                before_data()

            return super()._deliver(smtp_conn, wire, targets, late_check, finish_by)

    slow = Late("127.0.0.1", smtp.port, username=smtp_mailer(smtp).username, password=smtp_mailer(smtp).password,
                cafile=str(smtp.cert), timeout_s=5)
    summary = send_files(pg_engine, seeded.settings, slow, "slow", clock=slow_clock)
    assert summary.sent == [] and summary.lost == [file.id]
    assert takeover[0].sent == [file.id]
    assert len(received(smtp, file.id)) == 1  # the slow sender never sent its copy
    sent = ReportFileRepository(pg_engine).get(file.id)
    assert (sent.state, sent.attempts) == ("sent", 2)


def test_a_batch_renews_the_leases_of_the_files_it_has_not_reached(engine: Engine, tmp_path: Path) -> None:
    seeded = seed(engine, tmp_path)
    for report in ("call_detail", "hourly_volume", "agent_performance", "queue_performance", "call_detail",
                   "hourly_volume"):
        daily(seeded, report=report)
    built = build_due(seeded)
    clock = Clock(NOW)
    outbox = OutboxMailer(tmp_path / "outbox")
    outbox.timeout_s = 60  # a message may take up to 2 min: the lease must cover that
    contenders: list[list] = []

    def one_message_later(n: int) -> None:
        clock.now += dt.timedelta(minutes=1, seconds=30)  # as long as a message may take
        # The batch's writer thread records each outcome within ~100 ms (of this clock) of the relay's
        # answer, long before a minutes-long message ends: let the records of the messages sent before
        # this one land before another sender looks (under load the thread may lag in real time).
        waited_until = time.monotonic() + 10
        while sum(f.state == "sent" for f in ReportFileRepository(engine).list()) < n - 1:
            assert time.monotonic() < waited_until, "the batch's records never landed"
            time.sleep(0.02)
        contenders.append(ReportFileRepository(engine).claim_sendable("contender", clock.now,
                                                                      dt.timedelta(minutes=5), 10))

    policy = SendPolicy(lease=dt.timedelta(minutes=5), deadline=dt.timedelta(hours=1))
    summary = send_files(engine, seeded.settings, Stepping(outbox, one_message_later), "batch", clock=clock,
                         policy=policy)
    # 9 minutes for 6 files claimed together on 5-minute leases: the 5th and 6th are reached after
    # their first lease has run out, and no other sender could take any of them meanwhile.
    assert sorted(summary.sent) == sorted(f.id for f in built)
    assert contenders == [[]] * 6
    assert {f.attempts for f in ReportFileRepository(engine).list()} == {1}


def test_claims_are_bounded_and_disjoint(engine: Engine, tmp_path: Path) -> None:
    seeded = seed(engine, tmp_path)
    for report in ("call_detail", "hourly_volume", "agent_performance"):
        daily(seeded, report=report)
    built = build_due(seeded)
    files = ReportFileRepository(engine)
    first = files.claim_sendable("a", NOW, dt.timedelta(minutes=10), limit=2)
    second = files.claim_sendable("b", NOW, dt.timedelta(minutes=10), limit=10)
    assert len(first) == 2 and len(second) == 1
    assert sorted(f.id for f in first + second) == sorted(f.id for f in built)
    assert files.claim_sendable("c", NOW, dt.timedelta(minutes=10), limit=10) == []
    assert files.release("a", [first[0].id]) == 1  # untried: back to ready, its attempt not counted
    back = files.get(first[0].id)
    assert (back.state, back.attempts, back.lease_owner) == ("ready", 0, None)


# --- a relay that hangs, a deadline, batched records --------------------------------------------------
@contextlib.contextmanager
def hung_relay() -> Iterator[tuple[int, list]]:
    """A TCP server that accepts connections and never says a word."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    accepted: list = []
    stop = threading.Event()

    def accept() -> None:
        server.settimeout(0.1)
        while not stop.is_set():
            with contextlib.suppress(TimeoutError, OSError):
                accepted.append(server.accept()[0])

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield server.getsockname()[1], accepted
    finally:
        stop.set()
        thread.join()
        for conn in accepted:
            conn.close()
        server.close()


def test_a_hung_relay_costs_one_timeout_per_batch_not_one_per_file(sqlite_engine: Engine, tmp_path: Path) -> None:
    seeded = seed(sqlite_engine, tmp_path)
    for report in ("call_detail", "hourly_volume", "agent_performance", "queue_performance"):
        daily(seeded, report=report)
    built = build_due(seeded)
    with hung_relay() as (port, connections):
        mailer = SmtpMailer("127.0.0.1", port, starttls=False, timeout_s=0.3)
        summary = send_files(sqlite_engine, seeded.settings, mailer, "s", now=NOW)
    assert len(connections) == 1  # one connection tried, then the batch stopped
    [(tried, error)] = summary.retried
    assert "unreachable or failed" in error
    assert sorted(summary.released) == sorted(f.id for f in built if f.id != tried)
    files = ReportFileRepository(sqlite_engine)
    retry_at = files.get(tried).next_attempt_at
    for file_id in summary.released:  # given back untried: no attempt counted, retried with the first
        back = files.get(file_id)
        assert (back.state, back.attempts, back.next_attempt_at) == ("ready", 0, retry_at)
    assert files.sendable(retry_at - dt.timedelta(seconds=1)) == []


def test_the_batch_deadline_stops_starting_messages(sqlite_engine: Engine, tmp_path: Path) -> None:
    seeded = seed(sqlite_engine, tmp_path)
    for report in ("call_detail", "hourly_volume", "agent_performance", "queue_performance"):
        daily(seeded, report=report)
    build_due(seeded)
    clock = Clock(NOW)
    outbox = OutboxMailer(tmp_path / "outbox")  # timeout 10 s: a message may take 20 s

    def a_minute_later(n: int) -> None:
        clock.now += dt.timedelta(minutes=1)

    policy = SendPolicy(deadline=dt.timedelta(minutes=2, seconds=30))
    summary = send_files(sqlite_engine, seeded.settings, Stepping(outbox, a_minute_later), "s", clock=clock,
                         policy=policy)
    # Messages start at 0, 1 and 2 minutes; at 3 minutes the deadline (2:30) has passed.
    assert len(summary.sent) == 3 and len(summary.released) == 1
    [left] = summary.released
    assert ReportFileRepository(sqlite_engine).get(left).attempts == 0


def test_outcomes_are_recorded_in_batches_and_while_the_relay_is_slow(sqlite_engine: Engine, tmp_path: Path,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    seeded = seed(sqlite_engine, tmp_path)
    for report in ("call_detail", "hourly_volume", "agent_performance", "queue_performance"):
        daily(seeded, report=report)
    built = build_due(seeded)
    files = ReportFileRepository(sqlite_engine)
    writes: list[int] = []
    real = ReportFileRepository.record_sends

    def counted(self, owner, outcomes, now):
        writes.append(len(outcomes))
        return real(self, owner, outcomes, now)

    monkeypatch.setattr(ReportFileRepository, "record_sends", counted)
    outbox = OutboxMailer(tmp_path / "outbox")
    fast = send_files(sqlite_engine, seeded.settings, outbox, "s", clock=Clock(NOW), policy=SendPolicy(mark_batch=3))
    assert len(fast.sent) == 4 and writes == [3, 1]  # a clock that stands still: batches of mark_batch, the rest

    with sqlite_engine.begin() as conn:  # send them all again, now with a relay that takes its time
        conn.execute(update(ReportFile).values(state="ready", attempts=0))
        conn.execute(update(ReportFileRecipient).values(state="pending"))
    writes.clear()
    order = sorted(built, key=lambda f: (f.occurrence, f.id))
    seen_recorded: list[bool] = []

    def slow_until_the_previous_is_recorded(n: int) -> None:
        """The relay keeps the sender waiting in message n (up to 10 s) until message n-1's outcome
        is in the database, as the writer thread must do within mark_interval of its queueing."""
        if n == 1:
            return
        deadline = time.monotonic() + 10
        while files.get(order[n - 2].id).state != "sent" and time.monotonic() < deadline:
            time.sleep(0.02)
        seen_recorded.append(files.get(order[n - 2].id).state == "sent")

    slow = send_files(sqlite_engine, seeded.settings, Stepping(outbox, slow_until_the_previous_is_recorded), "s",
                      policy=SendPolicy(mark_batch=50))
    assert len(slow.sent) == 4 and seen_recorded == [True] * 3 and writes == [1, 1, 1, 1]


def test_the_sender_asks_once_per_window_for_the_same_waiting_set(sqlite_engine: Engine, tmp_path: Path) -> None:
    from report_pipelines.services.scheduled_reports import send_request

    seeded = seed(sqlite_engine, tmp_path)
    daily(seeded)
    [file] = build_due(seeded)
    window_start = dt.datetime(2024, 3, 12, 13, 0, tzinfo=dt.UTC)  # 13:00 is a multiple of 5 minutes
    first = send_request(sqlite_engine, window_start)
    assert first.run_key and first.waiting == 1
    assert send_request(sqlite_engine, window_start + dt.timedelta(minutes=4, seconds=59)).run_key == first.run_key
    next_window = send_request(sqlite_engine, window_start + dt.timedelta(minutes=5))
    assert next_window.run_key not in (None, first.run_key)  # a set a crashed run left is asked for again

    files = ReportFileRepository(sqlite_engine)
    [claimed] = files.claim_sendable("s", window_start, dt.timedelta(minutes=10), 10)
    retry_at = window_start + dt.timedelta(minutes=2)
    files.record_sends("s", [_deferred(claimed, retry_at)], window_start)
    nothing = send_request(sqlite_engine, window_start + dt.timedelta(minutes=1))
    assert (nothing.run_key, nothing.next_retry_at) == (None, retry_at)
    due = send_request(sqlite_engine, retry_at)
    assert due.run_key not in (None, first.run_key)  # attempts changed: a new set


def _deferred(file, retry_at: dt.datetime) -> SendOutcome:
    return SendOutcome(file.id, file.attempts, "retry", {a: ("deferred", "451 later") for a in TO}, retry_at,
                       "deferred", retry_at)


def test_a_refusal_heard_before_the_connection_dropped_is_kept(sqlite_engine: Engine, tmp_path: Path,
                                                               smtp: SmtpServer) -> None:
    seeded = with_mail(seed(sqlite_engine, tmp_path))
    daily(seeded)
    [file] = build_due(seeded)
    smtp.behaviour.refuse.add(BOSS)
    smtp.behaviour.drop_after_data = 1  # ops: taken, reply lost; boss: 550 at RCPT, before that
    first = send_files(sqlite_engine, seeded.settings, smtp_mailer(smtp), "s", now=NOW)
    assert [i for i, _ in first.retried] == [file.id]
    assert states(sqlite_engine, file.id) == {OPS: "deferred", BOSS: "refused"}
    again = ReportFileRepository(sqlite_engine).get(file.id).next_attempt_at
    assert send_files(sqlite_engine, seeded.settings, smtp_mailer(smtp), "s", now=again).sent == [file.id]
    assert received(smtp, file.id) == [[OPS], [OPS]]  # the boss was not asked again
