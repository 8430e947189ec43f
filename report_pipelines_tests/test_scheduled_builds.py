"""Building scheduled report files under crashes: a claimed build is finished, or reclaimed after its
lease by anyone, counted, and failed (visibly) after the cap; the schedule only moves on past an
occurrence whose file is recorded. Periods are the client's closed days, whatever the schedule's zone."""

from __future__ import annotations

import datetime as dt
import threading
import time
from dataclasses import replace
from pathlib import Path

import pytest
from sqlalchemy import Engine

from report_pipelines import read_report
from report_pipelines.adapters.db.schedules import ReportFileRepository, ScheduleRepository
from report_pipelines.services.scheduled_reports import (
    BuildFailed,
    BuildPolicy,
    due_occurrences,
    plan_schedules,
    process_occurrence,
)
from report_pipelines_tests.extract_support import UTC, seed
from report_pipelines_tests.schedule_support import NOW, Clock, daily

LEASE = dt.timedelta(minutes=10)


def _due_one(engine: Engine, now: dt.datetime = NOW):
    plan_schedules(engine, now - dt.timedelta(days=1))
    [occurrence] = due_occurrences(engine, now)
    return occurrence


def test_the_loser_of_a_claim_does_not_advance_and_a_dead_builder_is_taken_over(engine: Engine, tmp_path: Path) -> None:
    seeded = seed(engine, tmp_path)
    row = daily(seeded)
    occurrence = _due_one(engine)
    files, schedules = ReportFileRepository(engine), ScheduleRepository(engine)
    # A builder claims the occurrence, then dies (SIGKILL: no release, no error recorded).
    dead = files.claim_build(row.id, occurrence.send, "csv", "dead-builder", NOW, LEASE, max_attempts=5)
    assert dead.status == "claimed" and dead.file.build_attempts == 1

    # Another run of the same occurrence finds it held: it does nothing, the schedule stays due.
    assert process_occurrence(engine, seeded.settings, occurrence, "run-2", NOW + dt.timedelta(minutes=1)) is None
    assert schedules.get(row.id).next_send_at == occurrence.due
    assert due_occurrences(engine, NOW + dt.timedelta(minutes=9)) == []  # the lease still runs

    # After the lease, the sensor asks again (a new run key) and that run builds it.
    [again] = due_occurrences(engine, NOW + dt.timedelta(minutes=11))
    assert (again.attempt, again.run_key) == (1, f"report-file:{row.id}:{occurrence.send.isoformat()}:retry-1")
    built = process_occurrence(engine, seeded.settings, again, "run-3", NOW + dt.timedelta(minutes=11))
    assert (built.state, built.build_attempts, built.lease_owner) == ("ready", 2, None)
    assert schedules.get(row.id).next_send_at == occurrence.following
    # The history has the second claim's success; the first claim, whose process died, left no row.
    assert [(a.kind, a.number, a.owner, a.outcome) for a in files.attempts_of(built.id)] == [
        ("build", 2, "run-3", "ready")]
    assert [r.address for r in files.recipients([built.id])[built.id]] == list(row.recipients)
    assert due_occurrences(engine, NOW + dt.timedelta(minutes=12)) == []


def test_a_build_that_always_fails_is_tried_up_to_the_cap_then_failed(sqlite_engine: Engine, tmp_path: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    import report_pipelines.services.scheduled_reports as scheduled

    seeded = seed(sqlite_engine, tmp_path)
    seeded.settings = replace(seeded.settings, max_build_attempts=3)
    row = daily(seeded)
    calls: list[str] = []

    def broken(*args, **kwargs):
        calls.append("build")
        raise RuntimeError("report store unreachable")

    monkeypatch.setattr(scheduled, "build_file", broken)
    now, errors, keys = NOW, [], []
    plan_schedules(sqlite_engine, NOW - dt.timedelta(days=1))
    for _ in range(10):  # the sensor ticking: never more than the cap, however long it goes on
        due = due_occurrences(sqlite_engine, now)
        if due:
            [occurrence] = due
            keys.append(occurrence.run_key)
            with pytest.raises((RuntimeError, BuildFailed)) as err:
                process_occurrence(sqlite_engine, seeded.settings, occurrence, f"run-{len(keys)}", now)
            errors.append(type(err.value).__name__)
        now += dt.timedelta(hours=2)  # past any backoff (at most one hour)
    assert len(calls) == 3 and errors == ["RuntimeError", "RuntimeError", "BuildFailed"]
    assert [k.split(":")[-2] for k in keys[1:]] == ["retry-1", "retry-2"]  # then ":w<window>": 2 hours late
    [file] = ReportFileRepository(sqlite_engine).list(row.id)
    assert (file.state, file.build_attempts, file.path) == ("failed", 3, None)
    assert "report store unreachable" in file.last_error
    assert ScheduleRepository(sqlite_engine).get(row.id).next_send_at > NOW  # moved on, past the failed one
    history = ReportFileRepository(sqlite_engine).attempts_of(file.id)
    assert [(a.number, a.outcome) for a in history] == [(1, "retry"), (2, "retry"), (3, "failed")]
    assert all("RuntimeError: report store unreachable" == a.error for a in history)


def test_a_builder_dying_at_the_last_attempt_is_recorded_failed_by_the_next_run(sqlite_engine: Engine,
                                                                                tmp_path: Path) -> None:
    seeded = seed(sqlite_engine, tmp_path)
    seeded.settings = replace(seeded.settings, max_build_attempts=2)
    row = daily(seeded)
    occurrence = _due_one(sqlite_engine)
    files = ReportFileRepository(sqlite_engine)
    assert files.claim_build(row.id, occurrence.send, "csv", "dead-1", NOW, LEASE, 2).status == "claimed"
    later = NOW + dt.timedelta(minutes=11)
    assert files.claim_build(row.id, occurrence.send, "csv", "dead-2", later, LEASE, 2).status == "claimed"
    [last] = due_occurrences(sqlite_engine, later + dt.timedelta(minutes=11))
    with pytest.raises(BuildFailed) as err:
        process_occurrence(sqlite_engine, seeded.settings, last, "run-3", later + dt.timedelta(minutes=11))
    assert "dead-2" in str(err.value) and f"schedules resend {err.value.file_id}" in str(err.value)
    failed = files.get(err.value.file_id)
    assert failed.state == "failed" and "stopped without finishing" in failed.last_error
    assert ScheduleRepository(sqlite_engine).get(row.id).next_send_at == occurrence.following
    assert due_occurrences(sqlite_engine, later + dt.timedelta(minutes=12)) == []


def test_a_live_builder_keeps_its_claim_past_the_lease_by_its_heartbeat(sqlite_engine: Engine, tmp_path: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    import report_pipelines.services.scheduled_reports as scheduled

    seeded = seed(sqlite_engine, tmp_path)
    row = daily(seeded)
    occurrence = _due_one(sqlite_engine)
    files = ReportFileRepository(sqlite_engine)
    clock = Clock(NOW)
    policy = BuildPolicy(lease=dt.timedelta(seconds=0.3))  # a heartbeat every 0.1 s (real time)
    real_build = scheduled.build_file
    seen: list[str] = []

    def slow(engine, settings, schedule, file, now):
        clock.now = NOW + dt.timedelta(minutes=30)  # far past the lease the claim was given
        deadline = time.monotonic() + 10
        while files.get(file.id).lease_expires_at < clock.now and time.monotonic() < deadline:
            time.sleep(0.05)  # until the heartbeat has renewed the lease from the new time
        contender = files.claim_build(row.id, occurrence.send, "csv", "contender", clock.now, LEASE, 5)
        seen.append(contender.status)
        return real_build(engine, settings, schedule, file, now)

    monkeypatch.setattr(scheduled, "build_file", slow)
    built = process_occurrence(sqlite_engine, seeded.settings, occurrence, "slow-builder", policy=policy, clock=clock)
    assert seen == ["held"]
    assert (built.state, built.build_attempts) == ("ready", 1)
    assert not [t for t in threading.enumerate() if t.name == f"lease-{built.id}"]


# --- periods: the client's days, whatever the schedule's zone -----------------------------------------
def test_a_schedule_in_a_zone_ahead_sends_the_clients_last_closed_day(sqlite_engine: Engine, tmp_path: Path) -> None:
    """New York client, Tokyo schedule at 07:00 JST on 2024-03-12 = 2024-03-11 22:00 UTC = 18:00 EDT
    on the 11th: New York's 11th is still going on, so "yesterday" is New York's 10th (the bug sent the
    11th, Tokyo's yesterday, computed live from half a day)."""
    seeded = seed(sqlite_engine, tmp_path)
    row = daily(seeded, report="call_detail", timezone="Asia/Tokyo")
    send = dt.datetime(2024, 3, 11, 22, 0, tzinfo=UTC)
    plan_schedules(sqlite_engine, send - dt.timedelta(hours=1))
    assert ScheduleRepository(sqlite_engine).get(row.id).next_send_at == send
    [occurrence] = due_occurrences(sqlite_engine, send + dt.timedelta(minutes=1))
    file = process_occurrence(sqlite_engine, seeded.settings, occurrence, "run", send + dt.timedelta(minutes=1))
    assert (file.period_start, file.period_end) == (dt.date(2024, 3, 10), dt.date(2024, 3, 10))
    day = read_report("call_detail", row.client_slug, "2024-03-10", "2024-03-10", app=seeded.app,
                      now=send)
    assert file.rows == len(day) > 0


def test_a_schedule_in_a_zone_behind_sends_the_clients_last_closed_day(sqlite_engine: Engine, tmp_path: Path) -> None:
    """Sydney client, Los Angeles schedule at 20:00 PDT on 2024-03-10 = 2024-03-11 03:00 UTC = 14:00
    AEDT on the 11th: Sydney's 10th has closed, so "yesterday" is the 10th (the bug sent LA's
    yesterday, the 9th, and the closed 10th was never the newest day sent)."""
    seeded = seed(sqlite_engine, tmp_path)
    sydney = seeded.clients["Australia/Sydney"]
    from report_pipelines.services.scheduled_reports import add_schedule

    row = add_schedule(sqlite_engine, sydney.slug, report="queue_performance", send_time="20:00",
                       timezone="America/Los_Angeles", recipients=["ops@example.com"])
    send = dt.datetime(2024, 3, 11, 3, 0, tzinfo=UTC)
    plan_schedules(sqlite_engine, send - dt.timedelta(hours=1))
    assert ScheduleRepository(sqlite_engine).get(row.id).next_send_at == send
    [occurrence] = due_occurrences(sqlite_engine, send)
    file = process_occurrence(sqlite_engine, seeded.settings, occurrence, "run", send)
    assert (file.period_start, file.period_end) == (dt.date(2024, 3, 10), dt.date(2024, 3, 10))


def test_an_occurrence_no_run_has_claimed_is_asked_for_again_each_window(sqlite_engine: Engine, tmp_path: Path) -> None:
    """The daemon launches a run key once: a run that died before claiming anything must not leave
    its occurrence waiting for ever."""
    seeded = seed(sqlite_engine, tmp_path)
    row = daily(seeded)
    plan_schedules(sqlite_engine, NOW - dt.timedelta(days=1))
    due = ScheduleRepository(sqlite_engine).get(row.id).next_send_at  # 07:00 EDT = 11:00Z on the 12th
    base = f"report-file:{row.id}:{due.isoformat()}"
    [on_time] = due_occurrences(sqlite_engine, due + dt.timedelta(minutes=1))
    assert on_time.run_key == base
    assert [o.run_key for o in due_occurrences(sqlite_engine, due + dt.timedelta(minutes=9))] == [base]
    [late, still] = [due_occurrences(sqlite_engine, due + dt.timedelta(minutes=m))[0].run_key for m in (11, 19)]
    [later] = [o.run_key for o in due_occurrences(sqlite_engine, due + dt.timedelta(minutes=21))]
    # 11:11 and 11:19 lie in the window 11:10-11:20, 11:21 in the next one
    assert late == still == f"{base}:w{int((due + dt.timedelta(minutes=11)).timestamp()) // 600}"
    assert later != late and later.startswith(base + ":w")
