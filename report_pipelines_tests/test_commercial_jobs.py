"""The commercial side through Dagster: approved proposals applied once, whatever the ticks; daily expiry."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from sqlalchemy import Engine, func, select

from report_pipelines.adapters.db.models import ClientProductRow, ReportSchedule
from report_pipelines.defs.commercial.sensors import approved_proposals_sensor, expire_commercial_schedule
from report_pipelines.services import commercial
from report_pipelines.services.clients import add_client
from report_pipelines.services.scheduled_reports import add_schedule
from report_pipelines.services.serving import served_today, served_zones
from report_pipelines.settings import Settings
from report_pipelines_tests.dagster_support import evaluate_schedule, execute, persistent_instance, tick
from report_pipelines_tests.extract_support import UTC, seed


def _approved_prospect_proposal(engine: Engine, slug: str = "acme") -> int:
    now = dt.datetime.now(UTC)
    commercial.add_product(engine, "SEATS", "PBX seats", "seat", "12.50", "EUR", now=now)
    try:
        commercial.catalogue(engine).get("REPORTS")
    except Exception:
        commercial.add_product(engine, "REPORTS", "Call reports", "licence", "49.00", "EUR", now=now)
    stored = commercial.create_proposal(
        engine, items=[("REPORTS", 1), ("SEATS", 10)], valid_until=now.date() + dt.timedelta(days=30), by="ana",
        prospect=("Acme Ltd", "it@acme.example", "Europe/Lisbon", slug), now=now)
    commercial.submit_proposal(engine, stored.id, "ana", now)
    commercial.approve_proposal(engine, stored.id, "boss", now)
    return stored.id


def test_repeated_ticks_and_runs_apply_an_approved_proposal_once(pg_engine: Engine, tmp_path: Path) -> None:
    proposal_id = _approved_prospect_proposal(pg_engine)
    settings = Settings(data_dir=tmp_path, database_url=pg_engine.url.render_as_string(hide_password=False),
                        store_root=str(tmp_path / "reports"))
    instance = persistent_instance(tmp_path / "home")
    now = dt.datetime.now(UTC)
    ticks = [tick(approved_proposals_sensor, instance, settings, now) for _ in range(3)]
    requests = [r for t in ticks for r in t.run_requests]
    assert {r.run_key for r in requests} == {f"apply-proposal:{proposal_id}"}  # the daemon launches one of them

    # Even if every request were launched: the first run applies, the others find it done. (Racing
    # runs are the service's test: test_commercial_service; Dagster runs in threads are avoided here,
    # CPython 3.11's parser state is not thread-safe under Dagster's source inspection.)
    results = [execute(request, "apply_proposal_job", instance, settings, now) for request in requests]
    assert len(results) == 3 and all(r.success for r in results)
    outputs = [e.event_specific_data.metadata for r in results for e in r.all_events if e.is_successful_output]
    assert sorted("client_created" in m for m in outputs) == [False, False, True]  # one wrote, two found it done
    with pg_engine.connect() as conn:
        rows = conn.execute(select(ClientProductRow.product_code, func.count()).where(
            ClientProductRow.source_proposal == proposal_id).group_by(ClientProductRow.product_code)).all()
    assert sorted(rows) == [("REPORTS", 1), ("SEATS", 1)]
    assert commercial.proposals_to_apply(pg_engine) == []
    assert "Europe/Lisbon" in served_zones(pg_engine, now)
    assert not tick(approved_proposals_sensor, instance, settings, now).run_requests


def test_a_refused_application_is_one_failed_run_not_retried(sqlite_engine: Engine, tmp_path: Path) -> None:
    proposal_id = _approved_prospect_proposal(sqlite_engine, slug="taken")
    add_client(sqlite_engine, "taken", "Someone else", "Europe/Lisbon")  # the slug is taken meanwhile
    settings = Settings(data_dir=tmp_path, database_url=sqlite_engine.url.render_as_string(hide_password=False),
                        store_root=str(tmp_path / "reports"))
    instance = persistent_instance(tmp_path / "home", {"run_retries": {"enabled": True, "max_retries": 2}})
    [request] = tick(approved_proposals_sensor, instance, settings, dt.datetime.now(UTC)).run_requests
    result = execute(request, "apply_proposal_job", instance, settings, raise_on_error=False)
    assert not result.success
    [failure] = [e for e in result.all_events if e.is_step_failure]
    assert failure.step_failure_data.user_failure_data.description.startswith(
        f"slug: a client 'taken' already exists: proposal {proposal_id} cannot create it")
    assert instance.get_run_by_id(result.run_id).tags["dagster/will_retry"] == "false"


def test_the_daily_expiry_schedule_pauses_schedules_of_clients_whose_licence_ended(sqlite_engine: Engine,
                                                                                   tmp_path: Path) -> None:
    seeded = seed(sqlite_engine, tmp_path)  # licences from 2024-03-08, open-ended
    ny = seeded.clients["America/New_York"]
    row = add_schedule(sqlite_engine, ny.slug, report="call_detail", recipients=["ops@example.com"])
    with sqlite_engine.begin() as conn:  # New York's licence now ends on 2024-05-30
        conn.execute(ClientProductRow.__table__.update().where(ClientProductRow.client_id == ny.id).values(
            valid_to=dt.date(2024, 5, 30)))
    instance = persistent_instance(tmp_path / "home")
    at = dt.datetime(2024, 6, 1, 0, 10, tzinfo=UTC)  # the schedule's 00:10 UTC tick
    evaluated = evaluate_schedule(expire_commercial_schedule, instance, at)
    [request] = evaluated.run_requests
    # At 00:10 UTC on 1 June it is 20:10 on 31 May in New York: today (31 May) is not served, yesterday
    # (30 May, the last licensed day) is, and its report is still to be sent: the schedule stays active.
    assert execute(request, "expire_commercial_job", instance, seeded.settings, now=at).success
    assert _schedule_active(sqlite_engine, row.id)
    next_day = at + dt.timedelta(days=1)
    request = evaluate_schedule(expire_commercial_schedule, instance, next_day).run_requests[0]
    assert execute(request, "expire_commercial_job", instance, seeded.settings, now=next_day).success
    assert not _schedule_active(sqlite_engine, row.id)
    with sqlite_engine.connect() as conn:
        reason = conn.execute(select(ReportSchedule.paused_reason).where(ReportSchedule.id == row.id)).scalar_one()
    assert "licence ended" in reason
    assert ny.id not in served_today(sqlite_engine, next_day)


def _schedule_active(engine: Engine, schedule_id: int) -> bool:
    with engine.connect() as conn:
        return conn.execute(select(ReportSchedule.active).where(ReportSchedule.id == schedule_id)).scalar_one()
