"""Scheduled reports at scale: planner and processor sensor ticks over 100,000 schedules, send throughput.

Builds a scratch PostgreSQL database with ``--clients`` clients and ``--schedules`` schedules
(daily / weekly / monthly, random local send times, a dozen IANA zones), then measures, against
baselines measured in this same run (machines are noisy, so the figures worth quoting are ratios):

(a) **planner**: ``plan_schedules`` ticks (at most 5,000 schedules each) until every schedule is
    planned: ms per tick (median), ticks, ms per 1,000 schedules; the real Dagster sensor
    ``schedule_planner_sensor`` evaluated with ``build_sensor_context`` on a full batch and on an empty
    tick (with fresh statistics, and right after the mass planning with stale ones); one full batch
    split into its parts (read, rules, UPDATEs), and the same UPDATEs sent as one executemany.
    Ratios: tick / Dagster's default 60 s sensor timeout, tick / empty tick.
(b) **processor**: exactly ``--due`` schedules made due (``next_send_at`` in the past), the rest
    in the future; ``due_occurrences`` and the sensor ``report_file_processor_sensor`` (which returns
    one RunRequest per due schedule), median of ``--repeat`` ticks, against the same tick with 0 due
    and against the 60 s timeout.
(c) **send throughput** (messages/s): ``--messages`` report files in state ``ready`` (rows pointing at
    one small CSV), sent by ``send_files`` through ``SmtpMailer`` to an in-process aiosmtpd server
    (no TLS, no login), against, in the same run and on the same messages: ``send_files`` through
    ``OutboxMailer`` (same database work, local ``.eml`` files instead of SMTP), ``SmtpMailer.send``
    alone on prebuilt messages (one SMTP connection per message, as the library does, no database),
    and a bare ``smtplib`` loop over one connection (the ceiling); and send_files' steps called one
    by one, each timed. Rounds are interleaved, the median is kept. Also the
    ``report_file_sender_sensor`` tick with files waiting and with none.

The SMTP server runs in this process (a thread of aiosmtpd), so client and server share the GIL:
absolute rates are lower bounds; the ratios compare paths that all pay that cost.

    .venv/bin/python benchmarks/bench_schedules.py [--schedules 100000] [--due 1000] [--messages 300]
"""

from __future__ import annotations

import argparse
import datetime as dt
import email
import email.policy
import random
import smtplib
import socket
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import dagster as dg
from _common import Timer, scratch_postgres
from aiosmtpd.controller import Controller
from sqlalchemy import Engine, bindparam, delete, func, insert, select, text, update

from report_pipelines.adapters.db.engine import engine_for
from report_pipelines.adapters.db.migrate import upgrade
from report_pipelines.adapters.db.models import (
    Client,
    ReportFile,
    ReportFileAttempt,
    ReportFileRecipient,
    ReportSchedule,
)
from report_pipelines.adapters.db.schedules import ReportFileRepository, ScheduleRepository, SendOutcome
from report_pipelines.adapters.mailer import OutboxMailer, SmtpMailer
from report_pipelines.defs.resources import AppResource
from report_pipelines.defs.schedules.sensors import (
    report_file_processor_sensor,
    report_file_sender_sensor,
    schedule_planner_sensor,
)
from report_pipelines.domain.schedules import next_send_at
from report_pipelines.domain.timezones import UTC
from report_pipelines.services.commercial import grant
from report_pipelines.services.demo import demo_licence, ensure_reports_product
from report_pipelines.services.scheduled_reports import (
    SendPolicy,
    build_message,
    due_occurrences,
    message_id_for,
    plan_schedules,
    rule_of,
    send_files,
)
from report_pipelines.services.serving import served_today
from report_pipelines.settings import MailSettings, Settings

DAGSTER_SENSOR_TIMEOUT_S = 60.0  # DAGSTER_SENSOR_GRPC_TIMEOUT_SECONDS' default
PLANNER_LIMIT = 5000  # plan_schedules' default batch
ZONES = ("Europe/Lisbon", "Europe/Berlin", "Europe/London", "America/New_York", "America/Chicago",
         "America/Los_Angeles", "America/Sao_Paulo", "Asia/Kolkata", "Asia/Tokyo", "Australia/Sydney",
         "Australia/Lord_Howe", "Pacific/Auckland", "UTC")
REPORT_NAMES = ("call_detail", "hourly_volume", "agent_performance", "queue_performance")


# --- data --------------------------------------------------------------------------------------------
def insert_clients(engine: Engine, n: int, rng: random.Random) -> list[tuple[int, str]]:
    now = dt.datetime.now(UTC)
    rows = [{"slug": f"bench-client-{i:04d}", "name": f"Bench client {i}", "timezone": rng.choice(ZONES),
             "active_from": dt.date(2024, 1, 1), "created_at": now, "updated_at": now} for i in range(n)]
    with engine.begin() as conn:
        conn.execute(insert(Client), rows)
        return [(cid, zone) for cid, zone in conn.execute(select(Client.id, Client.timezone).order_by(Client.id))]


def insert_reports_licences(engine: Engine, client_ids: list[int]) -> str:
    """An active, open-ended licence of the reports product for every client: only served clients'
    schedules are processed (``due_occurrences`` skips the others). Done the way the demo does it."""
    now = dt.datetime.now(UTC)
    product = ensure_reports_product(engine, now)
    for client_id in client_ids:
        grant(engine, client_id, [demo_licence(product, dt.date(2024, 1, 1))], note="benchmark", now=now)
    return f"an active {product.code} licence for each of {len(client_ids)} clients"


def schedule_rows(clients: list[tuple[int, str]], n: int, rng: random.Random) -> list[dict]:
    now = dt.datetime.now(UTC)
    rows = []
    for _ in range(n):
        client_id, client_zone = rng.choice(clients)
        roll = rng.random()
        weekdays = month_day = period_days = None
        if roll < 0.5:
            frequency, period = "daily", rng.choice(("yesterday", "yesterday", "month_to_date"))
        elif roll < 0.85:
            frequency, period = "weekly", rng.choice(("last_week", "last_n_days"))
            weekdays = ",".join(str(d) for d in sorted(rng.sample(range(7), rng.choice((1, 1, 2, 5)))))
        else:
            frequency, period, month_day = "monthly", "last_month", rng.randint(1, 31)
        if period == "last_n_days":
            period_days = 7
        rows.append({
            "client_id": client_id, "report": rng.choice(REPORT_NAMES), "period": period, "period_days": period_days,
            "frequency": frequency, "weekdays": weekdays, "month_day": month_day,
            "send_time": f"{rng.randrange(24):02d}:{rng.randrange(60):02d}",
            "timezone": client_zone if rng.random() < 0.7 else rng.choice(ZONES),
            "recipients": "a@example.com", "subject": None, "format": "csv", "active": True, "paused_reason": None,
            "next_send_at": None, "revision": 1, "created_at": now, "updated_at": now,
        })
    return rows


# --- timing helpers ----------------------------------------------------------------------------------
def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    t0 = time.perf_counter()
    result = fn()
    return time.perf_counter() - t0, result


def median_of(fn: Callable[[], Any], repeat: int, check: Callable[[Any], None] | None = None) -> float:
    fn()  # warm-up (connection pool, caches)
    seconds = []
    for _ in range(repeat):
        s, result = timed(fn)
        if check:
            check(result)
        seconds.append(s)
    return statistics.median(seconds)


def ms(seconds: float) -> str:
    return f"{seconds * 1000:9.1f} ms"


def of_timeout(seconds: float) -> str:
    return f"{seconds / DAGSTER_SENSOR_TIMEOUT_S * 100:6.2f} % of the 60 s timeout ({DAGSTER_SENSOR_TIMEOUT_S / seconds:,.0f}x headroom)"


_INSTANCE: list[dg.DagsterInstance] = []


def tick(sensor: dg.SensorDefinition, url: str) -> dg.SensorExecutionData:
    """One evaluation of a sensor, as the daemon's code server does it (fresh context, our resource).

    The context gets one long-lived instance, as the daemon has: without one, Dagster builds an
    ephemeral instance (and stamps its storage with Alembic) twice per evaluation, ~80 ms that no
    deployed tick pays.
    """
    if not _INSTANCE:
        _INSTANCE.append(dg.DagsterInstance.ephemeral())
    context = dg.build_sensor_context(instance=_INSTANCE[0], resources={"app": AppResource(database_url=url)},
                                      sensor_name=sensor.name)
    return sensor.evaluate_tick(context)


def unplan(engine: Engine, n: int) -> None:
    """Empty ``next_send_at`` of the first ``n`` schedules, as an edit or a resume would."""
    with engine.begin() as conn:
        ids = select(ReportSchedule.id).order_by(ReportSchedule.id).limit(n).scalar_subquery()
        conn.execute(update(ReportSchedule).where(ReportSchedule.id.in_(ids)).values(next_send_at=None))


def unplanned_count(engine: Engine) -> int:
    with engine.connect() as conn:
        return conn.execute(select(func.count()).select_from(ReportSchedule).where(
            ReportSchedule.active.is_(True), ReportSchedule.next_send_at.is_(None))).scalar_one()


# --- SMTP ----------------------------------------------------------------------------------------------
class CountingHandler:
    def __init__(self) -> None:
        self.count = 0
        self.lock = threading.Lock()

    async def handle_DATA(self, server, session, envelope):
        with self.lock:
            self.count += 1
        return "250 Message accepted"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# --- phases --------------------------------------------------------------------------------------------
def bench_planner(engine: Engine, url: str, n: int, repeat: int) -> dict[str, float]:
    now = dt.datetime.now(UTC)
    ticks, planned = [], 0
    while True:
        s, done = timed(lambda: plan_schedules(engine, now))
        if not done:
            break
        ticks.append(s)
        planned += done
    assert planned == n, (planned, n)
    total = sum(ticks)
    tick_ms = statistics.median(ticks)
    nothing = lambda r: r == 0 or sys.exit("not empty")
    # Right after a mass planning the statistics still say "every next_send_at is NULL" until
    # autovacuum analyses the table; measure that, then the steady state (VACUUM ANALYZE).
    stale_s = median_of(lambda: plan_schedules(engine, now), repeat, nothing)
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.exec_driver_sql("VACUUM ANALYZE report_schedules")
    empty_fn_s = median_of(lambda: plan_schedules(engine, now), repeat, nothing)
    print(f"plan_schedules: {planned:,} schedules in {len(ticks)} ticks of <= {PLANNER_LIMIT:,}, {total:.2f} s in all")
    print(f"  full tick (median)            {ms(tick_ms)}  = {of_timeout(tick_ms)}")
    print(f"  per 1,000 schedules           {ms(total / planned * 1000)}")
    print(f"  empty tick (nothing to plan)  {ms(empty_fn_s)}  -> full / empty = {tick_ms / empty_fn_s:,.0f}x")
    print(f"  empty tick, statistics stale  {ms(stale_s)}  ({stale_s / empty_fn_s:,.0f}x: a scan of the primary key "
          f"until autovacuum analyses the table; after VACUUM ANALYZE, the (active, next_send_at) index)")

    # The Dagster sensor on a full batch: re-open PLANNER_LIMIT schedules before each tick.
    sensor_full = []
    for _ in range(repeat):
        unplan(engine, PLANNER_LIMIT)
        s, data = timed(lambda: tick(schedule_planner_sensor, url))
        assert data.skip_message == f"planned {PLANNER_LIMIT} schedule(s)", data.skip_message
        sensor_full.append(s)
    sensor_full_s = statistics.median(sensor_full)
    sensor_empty_s = median_of(lambda: tick(schedule_planner_sensor, url), repeat,
                               lambda d: d.skip_message == "every active schedule is planned" or sys.exit(d.skip_message))
    print(f"schedule_planner_sensor (Dagster evaluate_tick), median of {repeat}:")
    print(f"  tick planning {PLANNER_LIMIT:,}           {ms(sensor_full_s)}  = {of_timeout(sensor_full_s)}")
    print(f"  empty tick                    {ms(sensor_empty_s)}  -> full / empty = {sensor_full_s / sensor_empty_s:,.0f}x")
    print(f"  sensor / plan_schedules       {sensor_full_s / tick_ms:6.2f}x  (Dagster's evaluation overhead)")

    # Where a full batch's time goes (the same three steps plan_schedules takes), and the same
    # UPDATEs sent as one executemany (psycopg2 batches them) as a baseline for the write.
    repo = ScheduleRepository(engine)
    batched = update(ReportSchedule).where(
        ReportSchedule.id == bindparam("b_id"), ReportSchedule.revision == bindparam("b_revision"),
        ReportSchedule.next_send_at.is_(None),
    ).values(next_send_at=bindparam("b_at", type_=ReportSchedule.next_send_at.type))
    parts: dict[str, list[float]] = {"read": [], "rules": [], "write": [], "batched": []}
    for _ in range(repeat):
        unplan(engine, PLANNER_LIMIT)
        read_s, rows = timed(lambda: repo.unplanned(PLANNER_LIMIT))
        rules_s, plans = timed(lambda rows=rows: [(r.id, r.revision, next_send_at(rule_of(r), now)) for r in rows])
        write_s, done = timed(lambda plans=plans: repo.plan(plans))
        assert done == PLANNER_LIMIT
        unplan(engine, PLANNER_LIMIT)
        params = [{"b_id": i, "b_revision": rev, "b_at": at} for i, rev, at in plans]
        t0 = time.perf_counter()
        with engine.begin() as conn:
            conn.execute(batched, params)
        parts["batched"].append(time.perf_counter() - t0)
        assert unplanned_count(engine) == 0
        for name, seconds in (("read", read_s), ("rules", rules_s), ("write", write_s)):
            parts[name].append(seconds)
    read_s, rules_s, write_s, batched_s = (statistics.median(parts[k]) for k in ("read", "rules", "write", "batched"))
    whole = read_s + rules_s + write_s
    print(f"  one batch of {PLANNER_LIMIT:,} by step (median of {repeat}): "
          f"read (ScheduleRepository.unplanned) {read_s * 1000:.0f} ms ({read_s / whole:.0%}), "
          f"rules (rule_of + next_send_at) {rules_s * 1000:.0f} ms ({rules_s / whole:.0%}), "
          f"write (ScheduleRepository.plan: one executemany) {write_s * 1000:.0f} ms ({write_s / whole:.0%})")
    print(f"  the same {PLANNER_LIMIT:,} UPDATEs as one executemany: {batched_s * 1000:.0f} ms "
          f"-> plan's write / executemany = {write_s / batched_s:.1f}x; a tick would take "
          f"~{(read_s + rules_s + batched_s) * 1000:.0f} ms ({whole / (read_s + rules_s + batched_s):.1f}x less)")
    return {"tick": tick_ms, "empty": empty_fn_s, "stale": stale_s, "per_1000": total / planned * 1000, "ticks": len(ticks),
            "sensor": sensor_full_s, "sensor_empty": sensor_empty_s, "read": read_s, "rules": rules_s, "write": write_s,
            "batched": batched_s}


def bench_processor(engine: Engine, url: str, n_due: int, repeat: int) -> dict[str, float]:
    # Nothing may fall due by itself while we measure: push the occurrences of the next hour a day on.
    with engine.begin() as conn:
        pushed = conn.execute(text("UPDATE report_schedules SET next_send_at = next_send_at + interval '1 day' "
                                   "WHERE next_send_at < now() + interval '1 hour'")).rowcount
    print(f"({pushed:,} schedules planned within the next hour were moved a day on, so that exactly "
          f"{n_due:,} are due while measuring)")

    def expect(k: int) -> Callable[[Any], None]:
        def check(found: Any) -> None:
            if len(found) != k:
                sys.exit(f"expected {k} due, found {len(found)}")
        return check

    def sensor_expect(k: int) -> Callable[[Any], None]:
        def check(data: Any) -> None:
            if len(data.run_requests or []) != k:
                sys.exit(f"expected {k} run requests, got {len(data.run_requests or [])}: {data.skip_message}")
        return check

    empty_fn = median_of(lambda: due_occurrences(engine, dt.datetime.now(UTC)), repeat, expect(0))
    empty_sensor = median_of(lambda: tick(report_file_processor_sensor, url), repeat, sensor_expect(0))

    with engine.begin() as conn:
        total = conn.execute(select(func.count()).select_from(ReportSchedule)).scalar_one()
        step = max(1, total // n_due)
        ids = select(ReportSchedule.id).where(ReportSchedule.id % step == 0).order_by(ReportSchedule.id).limit(n_due)
        made = conn.execute(update(ReportSchedule).where(ReportSchedule.id.in_(ids.scalar_subquery())).values(
            next_send_at=text("now() - interval '5 minutes'"))).rowcount
    assert made == n_due, made

    full_fn = median_of(lambda: due_occurrences(engine, dt.datetime.now(UTC)), repeat, expect(n_due))
    full_sensor = median_of(lambda: tick(report_file_processor_sensor, url), repeat, sensor_expect(n_due))
    repo = ScheduleRepository(engine)
    read_s = median_of(lambda: repo.due(dt.datetime.now(UTC)), repeat, expect(n_due))
    served_s = median_of(lambda: served_today(engine, dt.datetime.now(UTC)), repeat)

    print(f"due_occurrences with {n_due:,} of {total:,} due, median of {repeat}:")
    print(f"  tick                          {ms(full_fn)}  = {of_timeout(full_fn)}")
    print(f"  tick with 0 due               {ms(empty_fn)}  -> {n_due:,} due / 0 due = {full_fn / empty_fn:,.0f}x")
    rest = full_fn - read_s - served_s
    print(f"  of which: the read (ScheduleRepository.due) {read_s * 1000:.0f} ms ({read_s / full_fn:.0%}), "
          f"the licence check (served_today) {served_s * 1000:.0f} ms ({served_s / full_fn:.0%}), "
          f"rules + plan_missed + next_send_at {rest * 1000:.0f} ms ({rest / full_fn:.0%})")
    print(f"report_file_processor_sensor (Dagster evaluate_tick, {n_due:,} RunRequests), median of {repeat}:")
    print(f"  tick                          {ms(full_sensor)}  = {of_timeout(full_sensor)}")
    print(f"  tick with 0 due               {ms(empty_sensor)}  -> {n_due:,} due / 0 due = {full_sensor / empty_sensor:,.0f}x")
    print(f"  per due schedule              {full_sensor / n_due * 1000:9.2f} ms;  sensor / due_occurrences "
          f"{full_sensor / full_fn:.2f}x (building the RunRequests)")
    return {"fn": full_fn, "fn_empty": empty_fn, "sensor": full_sensor, "sensor_empty": empty_sensor}


def bench_send(engine: Engine, url: str, workdir: Path, n: int, rounds: int, repeat: int) -> dict[str, float]:
    files_dir = workdir / "files"
    settings = Settings(data_dir=workdir, database_url=url, store_root=str(workdir / "reports"), files_root=files_dir,
                        mail=MailSettings(outbox_dir=workdir / "outbox"))
    # One small CSV (a day of queue_performance-like rows), which every file row points at.
    csv_path = files_dir / "client=0" / "1-bench_queue_performance_2024-09-01_2024-09-01.csv"
    csv_path.parent.mkdir(parents=True)
    lines = ["queue,offered,answered,abandoned,service_level,avg_wait_s"]
    lines += [f"queue-{q:02d},{100 + q},{90 + q},{10},{0.8 + q / 1000:.3f},{12.5 + q:.1f}" for q in range(40)]
    csv_path.write_text("\n".join(lines) + "\n")
    size = csv_path.stat().st_size

    occurrence = dt.datetime(2024, 9, 2, 7, 0, tzinfo=UTC)
    now = dt.datetime.now(UTC)
    with engine.begin() as conn:
        schedule_ids = list(conn.scalars(select(ReportSchedule.id).order_by(ReportSchedule.id).limit(n)))
        conn.execute(insert(ReportFile), [{
            "schedule_id": sid, "occurrence": occurrence, "period_start": dt.date(2024, 9, 1),
            "period_end": dt.date(2024, 9, 1), "format": "csv", "path": str(csv_path), "bytes": size,
            "checksum": "0" * 64, "rows": 40, "state": "ready", "attempts": 0, "build_attempts": 1, "created_at": now,
        } for sid in schedule_ids])
        file_ids = list(conn.scalars(select(ReportFile.id).order_by(ReportFile.id)))
        for fid in file_ids:
            conn.execute(update(ReportFile).where(ReportFile.id == fid).values(message_id=message_id_for(fid)))
        conn.execute(insert(ReportFileRecipient), [{  # what finish_build records for each file
            "file_id": fid, "address": "a@example.com", "position": 0, "state": "pending", "attempts": 0,
            "updated_at": now} for fid in file_ids])
    assert len(file_ids) == n

    def reset() -> None:
        with engine.begin() as conn:
            conn.execute(update(ReportFile).values(state="ready", attempts=0, sent_at=None, last_error=None,
                                                   lease_owner=None, lease_expires_at=None, next_attempt_at=None))
            conn.execute(update(ReportFileRecipient).values(state="pending", attempts=0, last_reply=None))
            conn.execute(delete(ReportFileAttempt))

    # Prebuilt messages for the baselines that have no database work (built as send_files builds them).
    files, schedules = ReportFileRepository(engine), ScheduleRepository(engine)
    pairs = [(schedules.get(f.schedule_id), f) for f in (files.get(i) for i in file_ids)]
    build_s, messages = timed(lambda: [build_message(settings, row, f, now) for row, f in pairs])
    # The same messages as EmailMessage objects, for smtplib's send_message (it serialises each one).
    objects = [email.message_from_bytes(m.data, policy=email.policy.default) for m in messages]
    print(f"send: {n} files of {size:,} bytes (CSV attachment), {build_s / n * 1000:.2f} ms per build_message")

    # The sender sensor with every file waiting (before any send).
    waiting_sensor = median_of(lambda: tick(report_file_sender_sensor, url), repeat,
                               lambda d: len(d.run_requests or []) == 1 or sys.exit(d.skip_message))

    handler = CountingHandler()
    port = free_port()
    controller = Controller(handler, hostname="127.0.0.1", port=port, ready_timeout=10)
    controller.start()
    try:
        smtp_mailer = SmtpMailer("127.0.0.1", port, starttls=False, timeout_s=30)
        outbox = OutboxMailer(settings.outbox_dir)

        def via_send_files(mailer: Any) -> Callable[[], float]:
            def run() -> float:
                reset()
                t0 = time.perf_counter()
                summary = send_files(engine, settings, mailer, "bench")
                seconds = time.perf_counter() - t0
                if len(summary.sent) != n:
                    sys.exit(f"send_files sent {len(summary.sent)} of {n}: {summary.failed[:3]} {summary.retried[:3]}")
                return seconds
            return run

        def mailer_only() -> float:
            t0 = time.perf_counter()
            for message in messages:
                smtp_mailer.send(message)
            return time.perf_counter() - t0

        def one_connection_bytes() -> float:
            t0 = time.perf_counter()
            with smtplib.SMTP("127.0.0.1", port, timeout=30) as smtp:
                smtp.ehlo()
                for message in messages:
                    smtp.sendmail(message.sender, ["a@example.com"], message.data)
            return time.perf_counter() - t0

        def one_connection_objects() -> float:
            t0 = time.perf_counter()
            with smtplib.SMTP("127.0.0.1", port, timeout=30) as smtp:
                smtp.ehlo()
                for message in objects:
                    smtp.send_message(message, to_addrs=["a@example.com"])
            return time.perf_counter() - t0

        step_names = ("claims (claim_sendable + recipients + schedules)", "build_message", "SMTP (one connection)",
                      "record_sends")
        step_runs: list[dict[str, float]] = []
        policy = SendPolicy()

        def by_steps() -> float:
            """send_files' steps, called one by one as it calls them (batches of claim_batch, outcomes
            recorded per batch), each timed."""
            reset()
            steps = dict.fromkeys(step_names, 0.0)
            start = time.perf_counter()
            with smtp_mailer.session() as send:
                while True:
                    when = dt.datetime.now(UTC)
                    t0 = time.perf_counter()
                    batch = files.claim_sendable("bench", when, policy.lease, policy.claim_batch)
                    if not batch:
                        break
                    recipients = files.recipients(f.id for f in batch)
                    rows = schedules.get_many(f.schedule_id for f in batch)
                    steps[step_names[0]] += time.perf_counter() - t0
                    outcomes = []
                    for file in batch:
                        t0 = time.perf_counter()
                        to = tuple(r.address for r in recipients[file.id])
                        message = build_message(settings, rows[file.schedule_id], file, when, to=to)
                        t1 = time.perf_counter()
                        delivery = send(message, list(to))
                        t2 = time.perf_counter()
                        steps["build_message"] += t1 - t0
                        steps["SMTP (one connection)"] += t2 - t1
                        outcomes.append(SendOutcome(file.id, file.attempts, "sent",
                                                    {a: ("accepted", delivery.reply) for a in delivery.accepted}, when))
                    t0 = time.perf_counter()
                    files.record_sends("bench", outcomes, dt.datetime.now(UTC))
                    steps["record_sends"] += time.perf_counter() - t0
            step_runs.append(steps)
            return time.perf_counter() - start

        methods = {
            "send_files + SmtpMailer": (via_send_files(smtp_mailer), True),
            "send_files + OutboxMailer": (via_send_files(outbox), False),
            "SmtpMailer.send only": (mailer_only, True),
            "smtplib, one connection": (one_connection_objects, True),
            "smtplib sendmail, bytes": (one_connection_bytes, True),
            "send_files' steps one by one": (by_steps, True),
        }
        for run, _ in methods.values():  # warm-up
            run()
        step_runs.clear()
        times: dict[str, list[float]] = {name: [] for name in methods}
        for _ in range(rounds):
            for name, (run, _) in methods.items():
                before = handler.count
                times[name].append(run())
                expected = n if methods[name][1] else 0
                if handler.count - before != expected:
                    sys.exit(f"{name}: the server received {handler.count - before} messages, expected {expected}")
    finally:
        controller.stop()
    outbox_count = len(list(settings.outbox_dir.glob("*.eml")))
    assert outbox_count == n, outbox_count

    empty_sensor = median_of(lambda: tick(report_file_sender_sensor, url), repeat,
                             lambda d: not d.run_requests or sys.exit("files still waiting"))
    rate = {name: n / statistics.median(t) for name, t in times.items() if name != "send_files' steps one by one"}
    ours = rate["send_files + SmtpMailer"]
    print(f"messages/s (median of {rounds} interleaved rounds of {n}; server aiosmtpd in-process, no TLS, no login):")
    for name, r in rate.items():
        print(f"  {name:<28}{r:9,.0f} msg/s  {1000 / r:7.2f} ms/msg")
    print("  note: send_files and smtplib keep one SMTP connection for the batch; SmtpMailer.send alone opens one per "
          "message; 'smtplib, one connection' sends the EmailMessage objects (send_message serialises each), "
          "'smtplib sendmail, bytes' sends the finished bytes (the SMTP exchange alone)")
    print(f"ratio send_files+SMTP / send_files+outbox:         {ours / rate['send_files + OutboxMailer']:6.2f}x")
    print(f"ratio send_files+SMTP / smtplib one connection:    {ours / rate['smtplib, one connection']:6.2f}x  "
          "(the baseline of earlier runs: send_message on prebuilt EmailMessage objects)")
    print(f"ratio send_files+SMTP / smtplib sendmail, bytes:   {ours / rate['smtplib sendmail, bytes']:6.2f}x  "
          "(the ceiling: the SMTP exchange alone, messages already serialised)")
    print(f"ratio SmtpMailer.send / smtplib sendmail, bytes:   "
          f"{rate['SmtpMailer.send only'] / rate['smtplib sendmail, bytes']:6.2f}x  (SmtpMailer.send alone: a connection per message)")
    per = {name: 1000 / r for name, r in rate.items()}
    db_ms = per["send_files + SmtpMailer"] - per["smtplib sendmail, bytes"]
    print(f"per message: {per['send_files + SmtpMailer']:.2f} ms = the SMTP exchange {per['smtplib sendmail, bytes']:.2f} ms "
          f"+ send_files' claims, records and build_message {db_ms:.2f} ms")
    steps = {name: statistics.median(run[name] for run in step_runs) for name in step_names}
    whole = sum(steps.values())
    by_steps_ms = statistics.median(times["send_files' steps one by one"]) / n * 1000
    print(f"send_files' steps, per message (median of the rounds; {by_steps_ms:.2f} ms/msg timed this way): " + ", ".join(
        f"{name} {seconds / n * 1000:.3f} ms ({seconds / whole:.0%})" for name, seconds in steps.items()))
    db = steps[step_names[0]] + steps["record_sends"]
    print(f"  database steps {db / whole:.0%} (per batch of {policy.claim_batch}: one claiming UPDATE ... RETURNING, two "
          f"reads, one transaction of outcomes), SMTP {steps['SMTP (one connection)'] / whole:.0%}, "
          f"build_message {steps['build_message'] / whole:.0%}")
    print(f"report_file_sender_sensor tick: {n} waiting {waiting_sensor * 1000:.1f} ms, none waiting "
          f"{empty_sensor * 1000:.1f} ms ({waiting_sensor / empty_sensor:.1f}x) = {of_timeout(waiting_sensor)}")
    return {"rate": rate, "db_ms": db_ms, "sender": waiting_sensor, "sender_empty": empty_sensor}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=200)
    parser.add_argument("--schedules", type=int, default=100_000)
    parser.add_argument("--due", type=int, default=1000)
    parser.add_argument("--messages", type=int, default=300)
    parser.add_argument("--repeat", type=int, default=5, help="ticks timed per figure (median)")
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds of each send path (median)")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--smoke", action="store_true",
                        help="a size that finishes in seconds: 5,000 schedules, 100 due, 100 messages, 2 repeats")
    args = parser.parse_args()
    if args.smoke:
        args.schedules, args.due, args.messages, args.repeat, args.rounds = 5000, 100, 100, 2, 2
    if min(args.due, args.messages, args.clients, args.repeat, args.rounds) < 1:
        parser.error("--due, --messages, --clients, --repeat and --rounds must be at least 1")
    if args.schedules < max(args.due, args.messages, PLANNER_LIMIT):
        parser.error("--schedules must be at least --due, --messages and 5000")
    rng = random.Random(args.seed)

    with scratch_postgres("rp_bench_sched") as url, tempfile.TemporaryDirectory(prefix="rp_bench_sched_") as tmp:
        engine = AppResource(database_url=url).app().engine  # the very engine the sensors get
        try:
            upgrade(engine)
            with Timer() as setup_t:
                clients = insert_clients(engine, args.clients, rng)
                licences = insert_reports_licences(engine, [cid for cid, _ in clients])
                rows = schedule_rows(clients, args.schedules, rng)
                with engine.begin() as conn:
                    for i in range(0, len(rows), 10_000):
                        conn.execute(insert(ReportSchedule), rows[i:i + 10_000])
                with engine.begin() as conn:
                    conn.exec_driver_sql("ANALYZE")
            assert unplanned_count(engine) == args.schedules
            mix = {f: sum(r["frequency"] == f for r in rows) for f in ("daily", "weekly", "monthly")}
            print(f"setup: {args.clients} clients, {args.schedules:,} schedules "
                  f"({', '.join(f'{v:,} {k}' for k, v in mix.items())}) in {setup_t.seconds:.1f} s; {licences}")
            with engine.connect() as conn:
                pg = {k: conn.exec_driver_sql(f"SHOW {k}").scalar() for k in ("server_version", "synchronous_commit", "fsync")}
            print("PostgreSQL " + ", ".join(f"{k}={v}" for k, v in pg.items()) + " (each commit waits for its WAL flush when "
                  "synchronous_commit is on)")
            print(f"Dagster sensor timeout (default): {DAGSTER_SENSOR_TIMEOUT_S:.0f} s; sensors tick every 30 s")
            print()
            planner = bench_planner(engine, url, args.schedules, args.repeat)
            print()
            processor = bench_processor(engine, url, args.due, args.repeat)
            print()
            send = bench_send(engine, url, Path(tmp), args.messages, args.rounds, args.repeat)
        finally:
            engine.dispose()
            engine_for.cache_clear()
            for instance in _INSTANCE:
                instance.dispose()

    rate = send["rate"]
    print()
    print("summary (ratios; absolute times are this machine's):")
    print(f"  planner tick ({PLANNER_LIMIT:,} schedules): {planner['tick'] / DAGSTER_SENSOR_TIMEOUT_S:.3f} of the 60 s "
          f"sensor timeout, {planner['tick'] / planner['empty']:,.0f}x an empty tick; "
          f"{-(-args.schedules // PLANNER_LIMIT)} ticks for {args.schedules:,} new schedules")
    print(f"  processor sensor tick ({args.due:,} due of {args.schedules:,}): "
          f"{processor['sensor'] / DAGSTER_SENSOR_TIMEOUT_S:.4f} of the 60 s timeout, "
          f"{processor['sensor'] / processor['sensor_empty']:,.0f}x the tick with 0 due")
    print(f"  send: send_files over SMTP at {rate['send_files + SmtpMailer'] / rate['smtplib, one connection']:.2f}x "
          f"the rate of a bare smtplib send_message loop on one connection "
          f"({rate['send_files + SmtpMailer'] / rate['smtplib sendmail, bytes']:.2f}x its sendmail of finished bytes), "
          f"{rate['send_files + SmtpMailer'] / rate['send_files + OutboxMailer']:.2f}x the rate of the local outbox")


if __name__ == "__main__":
    main()
