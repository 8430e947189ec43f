"""The commercial side through Dagster: approved proposals applied once, whatever the ticks; daily expiry."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import dagster as dg
from sqlalchemy import Engine, func, select

from report_pipelines.adapters.db.models import ClientProductRow, ReportSchedule
from report_pipelines.definitions import defs
from report_pipelines.defs.commercial.sensors import approved_proposals_sensor
from report_pipelines.defs.resources import AppDatabase
from report_pipelines.services import commercial
from report_pipelines.services.scheduled_reports import add_schedule
from report_pipelines_tests.extract_support import UTC, seed

QUIET = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}


def _approved_prospect_proposal(engine: Engine, slug: str = "acme") -> int:
    commercial.add_product(engine, "SEATS", "PBX seats", "seat", "12.50", "EUR")
    try:
        commercial.catalogue(engine).get("REPORTS")
    except Exception:  # noqa: BLE001 - seeded databases already have it
        commercial.add_product(engine, "REPORTS", "Call reports", "licence", "49.00", "EUR")
    now = dt.datetime.now(UTC)
    stored = commercial.create_proposal(
        engine, items=[("REPORTS", 1), ("SEATS", 10)], valid_until=now.date() + dt.timedelta(days=30), by="ana",
        prospect=("Acme Ltd", "it@acme.example", "Europe/Lisbon", slug), now=now)
    commercial.submit_proposal(engine, stored.id, "ana", now)
    commercial.approve_proposal(engine, stored.id, "boss", now)
    return stored.id


def test_repeated_ticks_and_runs_apply_an_approved_proposal_once(pg_engine: Engine) -> None:
    proposal_id = _approved_prospect_proposal(pg_engine)
    url = pg_engine.url.render_as_string(hide_password=False)
    resources = {"app_db": AppDatabase(url=url)}
    instance = dg.DagsterInstance.ephemeral()
    ticks = [approved_proposals_sensor(dg.build_sensor_context(instance=instance, resources=resources))
             for _ in range(3)]
    requests = [r for tick in ticks for r in tick]
    assert {r.run_key for r in requests} == {f"apply-proposal:{proposal_id}"}  # the daemon launches one of them

    # Even if every request were launched: the first run applies, the others find it done. (Racing
    # runs are the service's test: test_commercial_service; Dagster runs in threads are avoided here,
    # CPython 3.11's parser state is not thread-safe under Dagster's source inspection.)
    job = defs.resolve_job_def("apply_proposal_job")
    results = [job.execute_in_process(instance=dg.DagsterInstance.ephemeral(), resources=resources,
                                      run_config={**QUIET, **request.run_config}) for request in requests]
    assert len(results) == 3 and all(r.success for r in results)
    outputs = [e.event_specific_data.metadata for r in results for e in r.all_events if e.is_successful_output]
    assert sorted("client_created" in m for m in outputs) == [False, False, True]  # one wrote, two found it done
    with pg_engine.connect() as conn:
        rows = conn.execute(select(ClientProductRow.product_code, func.count()).where(
            ClientProductRow.source_proposal == proposal_id).group_by(ClientProductRow.product_code)).all()
    assert sorted(rows) == [("REPORTS", 1), ("SEATS", 1)]
    assert commercial.proposals_to_apply(pg_engine) == []
    assert "Europe/Lisbon" in commercial.licensed_zones(pg_engine)
    assert isinstance(approved_proposals_sensor(dg.build_sensor_context(instance=instance, resources=resources)),
                      dg.SkipReason)


def test_daily_expiry_pauses_schedules_of_clients_whose_licence_ended(sqlite_engine: Engine, tmp_path: Path) -> None:
    seeded = seed(sqlite_engine, tmp_path)
    ny = seeded.clients["America/New_York"]
    row = add_schedule(sqlite_engine, ny.slug, report="call_detail", recipients=["ops@example.com"])
    with sqlite_engine.begin() as conn:  # the demo licence ends yesterday
        conn.execute(ClientProductRow.__table__.update().where(ClientProductRow.client_id == ny.id).values(
            valid_to=dt.date.today() - dt.timedelta(days=2)))
    url = sqlite_engine.url.render_as_string(hide_password=False)
    result = defs.resolve_job_def("expire_commercial_job").execute_in_process(
        instance=dg.DagsterInstance.ephemeral(), resources={"app_db": AppDatabase(url=url)}, run_config=QUIET)
    assert result.success
    with sqlite_engine.connect() as conn:
        schedule = conn.execute(select(ReportSchedule).where(ReportSchedule.id == row.id)).first()
    assert schedule.active is False and "licence ended" in schedule.paused_reason
    assert ny.id not in commercial.served_client_ids(sqlite_engine)
