"""The demo run (``make demo``): the code location's jobs, in-process, on the configured instance.

An entry point like the CLI (it is not Dagster glue: it drives the definitions the way the daemon
would): sensors are ticked with ``evaluate_tick`` and every run request they emit is executed with its
own run config and tags. Runs are recorded in ``DAGSTER_HOME``'s storage, so ``make dev`` shows them
in the UI afterwards. The steps:

1. observe the ``call_events`` source (per-client watermarks);
2. the time zones of served clients (every run computes its dates in each of them);
3. the main job, ``extract_reports_job``, over the last ``days`` closed local days, as one single-run
   backfill of that date range, every zone inside it, with its asset checks;
4. read a period back through the public API, the way a client's export or an analyst would;
5. the commercial side: a discount policy, a proposal to a prospect (priced, submitted, approved),
   ``approved_proposals_sensor`` and ``apply_proposal_job`` turning it into a licensed client, and a
   trial account;
6. a scheduled report: ``schedule_planner_sensor`` plans it, its send time is made to come now, then
   ``report_file_processor_sensor`` / ``process_report_file_job`` build the file and
   ``report_file_sender_sensor`` / ``send_report_files_job`` e-mail it (to the local outbox);
7. the report e-mail with its KPIs and chart, written next to the outbox with its Chromium screenshot;
8. a real PBX's own export (a cdr_csv ``Master.csv`` and its ``queue_log``) imported, with its summary
   and the queue report computed from it;
9. period requests (:mod:`report_pipelines.demo_periods`): an extract, a summary, the usage log, the D-1 plan;
10. the HTTP API (:mod:`report_pipelines.demo_api`) on a free loopback port in this process: a client key,
    yesterday's summary, a schedule created over HTTP, the client's licences, and another client's 404.
"""

from __future__ import annotations

import datetime as dt
import os
import warnings
from collections.abc import Callable

import dagster as dg

from report_pipelines.app import App

QUIET = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}


def _resources() -> dict:
    from report_pipelines.defs.resources import AppResource

    return {"app": AppResource()}


def tick(instance: dg.DagsterInstance, sensor: dg.SensorDefinition, cursor: str | None = None):
    """One evaluation of a sensor, as the daemon does it."""
    from report_pipelines.definitions import defs

    context = dg.build_sensor_context(instance=instance, instance_ref=instance.get_ref(), cursor=cursor,
                                      resources=_resources(), definitions=defs)
    return sensor.evaluate_tick(context)


def execute(echo: Callable[[str], None], instance: dg.DagsterInstance, defs: dg.Definitions,
            requests: list[dg.RunRequest], job_name: str) -> bool:
    """Execute each run request against its job, with its own run config and tags."""
    ok = True
    for request in requests:
        result = defs.resolve_job_def(job_name).execute_in_process(
            instance=instance, run_config={**QUIET, **(request.run_config or {})}, tags=request.tags,
            partition_key=request.partition_key, raise_on_error=False)
        ok = ok and result.success
        echo(f"   run {job_name} ({request.run_key}): {'succeeded' if result.success else 'FAILED'}")
    return ok


def run_demo(app: App, echo: Callable[[str], None] = print, days: int = 7, last_day: dt.date | None = None) -> bool:
    warnings.filterwarnings("ignore", category=dg.BetaWarning)
    warnings.filterwarnings("ignore", category=dg.PreviewWarning)
    from report_pipelines.adapters.db.repositories import CallEventRepository
    from report_pipelines.definitions import MAIN_JOB_NAME, defs
    from report_pipelines.defs.events.jobs import observe_call_events_job
    from report_pipelines.demo_periods import run_periods_demo
    from report_pipelines.services.reading import summarize_report
    from report_pipelines.services.serving import served_zones

    engine, settings = app.engine, app.settings
    last = last_day or app.now().date() - dt.timedelta(days=2)
    first = last - dt.timedelta(days=days - 1)
    with dg.DagsterInstance.get() as instance:
        observed = defs.resolve_job_def(observe_call_events_job.name).execute_in_process(
            instance=instance, run_config=QUIET, raise_on_error=False)
        echo(f"1. job {observe_call_events_job.name}: {'succeeded' if observed.success else 'FAILED'}")
        for event in observed.get_asset_observation_events():
            meta = event.asset_observation_data.asset_observation.metadata
            echo(f"   observed call_events: {meta['calls'].value:,} calls, {meta['clients'].value} clients")

        zones = served_zones(engine, app.now())
        echo(f"2. served time zones (each run computes its dates in every one of them): {', '.join(zones)}")

        tags = {"dagster/asset_partition_range_start": first.isoformat(),
                "dagster/asset_partition_range_end": last.isoformat()}
        result = defs.resolve_job_def(MAIN_JOB_NAME).execute_in_process(
            instance=instance, tags=tags, run_config=QUIET, raise_on_error=False)
        echo(f"3. job {MAIN_JOB_NAME} over {first}..{last}, one run, {len(zones)} zones: "
             f"{'succeeded' if result.success else 'FAILED'} (run {result.run_id})")
        for event in result.get_asset_materialization_events()[:1]:  # every date carries the run's figures
            meta = event.materialization.metadata
            echo(f"   {event.asset_key.to_user_string()}: {meta['zone_days'].value} zone-days, "
                 f"{meta['client_days'].value} client-days ({meta['computed'].value} computed), "
                 f"{meta['source_calls'].value:,} calls, {meta['bytes'].value / 1e6:.1f} MB in "
                 f"{meta['duration_s'].value:.1f} s; slowest {meta['slowest_client_day'].value}")
            for name, rows in meta["rows"].value.items():
                echo(f"     {name:<18} {rows:>9,} rows")
        records = instance.get_records_for_run(result.run_id, limit=10_000).records
        echo(f"   Dagster recorded {len(records)} events for the run")
        for check in result.get_asset_check_evaluations():
            echo(f"   check {check.asset_key.to_user_string()}.{check.check_name}: {'passed' if check.passed else 'FAILED'}")
        if not result.success:
            return False

    marks = [m for m in CallEventRepository(engine).watermarks() if m.events]
    biggest = max(marks, key=lambda m: m.events)
    summary = summarize_report("queue_performance", biggest.slug, first, last, app=app)
    columns = ["queue", "offered", "answered", "abandoned", "answer_rate", "service_level", "average_speed_of_answer"]
    echo(f"4. summarize_report('queue_performance', '{biggest.slug}', '{first}', '{last}'):")
    for line in summary[columns].fillna({"queue": "(no queue)"}).round(3).to_string(index=False).splitlines():
        echo(f"   {line}")
    with dg.DagsterInstance.get() as instance:
        _commercial(echo, instance, app, defs)
        outbox = _scheduled_report(echo, instance, app, defs, biggest.slug)
    _report_email(echo, app, biggest.slug, first, last)
    from report_pipelines.services.demo_import import import_demo_pbx

    import_demo_pbx(engine, settings.data_dir, echo, step="8")
    with dg.DagsterInstance.get() as instance:  # 9. period requests, the usage log, the D-1 plan
        run_periods_demo(echo, instance, app, defs, biggest.slug, first, last)
    from report_pipelines.demo_api import run_api_demo
    from report_pipelines.services.serving import served_today

    served = served_today(engine, app.now())
    other = next(m.slug for m in marks if m.slug != biggest.slug and m.client_id in served)
    if not run_api_demo(echo, app, biggest.slug, other):
        echo("   the HTTP API step FAILED")
        return False
    echo("results:")
    echo(f"  app database      {settings.database_url}")
    echo(f"  outbox            {outbox}")
    echo(f"  report store      {settings.store_root}/<report>/client=<id>/date=<YYYY-MM-DD>/part-0.parquet")
    echo(f"  Dagster instance  {os.environ.get('DAGSTER_HOME')} (runs, materializations, checks: `make dev`)")
    return True


def _commercial(echo: Callable[[str], None], instance: dg.DagsterInstance, app: App, defs: dg.Definitions) -> None:
    from report_pipelines.adapters.db.repositories import ClientRepository
    from report_pipelines.defs.commercial.sensors import approved_proposals_sensor
    from report_pipelines.domain.errors import Conflict
    from report_pipelines.services import commercial
    from report_pipelines.services.serving import serving_of

    engine, now = app.engine, app.now()
    try:
        commercial.add_product(engine, "SEATS", "PBX seats", "seat", "12.50", "EUR", now=now)
    except Conflict:
        pass
    try:
        commercial.add_policy(engine, code="LAUNCH15", name="Launch offer", kind="percentage", value="15",
                              valid_from=now.date() - dt.timedelta(days=30), max_uses_per_client=1, created_by="sales",
                              now=now)
    except Conflict:
        pass
    proposal = commercial.create_proposal(
        engine, items=[("REPORTS", 1), ("SEATS", 25)], valid_until=now.date() + dt.timedelta(days=30), by="ana@sales",
        prospect=("Porto Dental Clinic", "it@porto-dental.example", "Europe/Lisbon", "porto-dental"), now=now)
    priced = proposal.proposal.priced
    echo(f"5. proposal {proposal.id} to a prospect: subtotal {priced.subtotal}, discount {priced.discount}, "
         f"total {priced.total}")
    echo(f"   {priced.explanation.splitlines()[-1]}")
    commercial.submit_proposal(engine, proposal.id, "ana@sales", now)
    commercial.approve_proposal(engine, proposal.id, "boss@sales", now)
    execute(echo, instance, defs, list(tick(instance, approved_proposals_sensor).run_requests or []),
            "apply_proposal_job")
    client = ClientRepository(engine).get_by_slug("porto-dental")
    state = serving_of(engine, client.id, app.now()).state
    held = ", ".join(f"{lic.product_code} x{lic.quantity}" for lic in commercial.licences_of(engine, client.id))
    echo(f"   client porto-dental now holds {held}: {state} by the pipelines (`clients licences porto-dental`)")
    trial = commercial.start_trial(engine, "braga-hotel-trial", "Braga Hotel (trial)", "Europe/Lisbon", 14, now=now)
    echo(f"   trial account {trial.slug}: reports for 14 days, then its work stops unless a proposal is approved")


def _report_email(echo: Callable[[str], None], app: App, client_slug: str, first: dt.date, last: dt.date) -> None:
    from report_pipelines.services.report_mail import write_demo_message

    written = write_demo_message(app, client_slug, "queue_performance", first, last)
    echo(f"7. the report e-mail a manager reads (KPIs against the week before, a chart, the queues): {written.eml}")
    echo(f"   rendered in headless Chromium at a phone's width: {written.screenshot}")


def _scheduled_report(echo: Callable[[str], None], instance: dg.DagsterInstance, app: App, defs: dg.Definitions,
                      client_slug: str) -> str:
    import email
    import email.policy

    from report_pipelines.adapters.db.schedules import ReportFileRepository, ScheduleRepository
    from report_pipelines.adapters.screenshots import ChromiumMissing, inline_images, screenshot_html
    from report_pipelines.defs.schedules.sensors import (
        report_file_processor_sensor,
        report_file_sender_sensor,
        schedule_planner_sensor,
    )
    from report_pipelines.services.scheduled_reports import add_schedule, get_schedule, preview_message

    engine = app.engine
    row = add_schedule(engine, client_slug, report="queue_performance", period="last_week", frequency="weekly",
                       weekdays=["mon"], send_time="07:00", recipients=["supervisor@example.com"], fmt="xlsx",
                       body="summary", reply_to="team-lead@example.com",
                       message="Good morning: last week's queues at a glance. Reply to this e-mail with questions.",
                       now=app.now())
    tick(instance, schedule_planner_sensor)
    planned = get_schedule(engine, row.id).next_send_at
    echo(f"6. schedule {row.id}: queue_performance, last week, Mondays 07:00 {row.timezone}, xlsx, body summary "
         f"(KPIs, chart, table), reply-to team-lead@example.com; planned for {planned:%Y-%m-%d %H:%M} UTC")
    preview = preview_message(app, row.id, app.settings.outbox_dir / f"preview-schedule-{row.id}.eml")
    echo(f"   `schedules preview {row.id}` (nothing sent or recorded): {preview.path}")
    # The demo cannot wait for Monday: its send time comes now.
    ScheduleRepository(engine).advance(row.id, planned, app.now().replace(microsecond=0) - dt.timedelta(seconds=1))
    execute(echo, instance, defs, list(tick(instance, report_file_processor_sensor).run_requests or []),
            "process_report_file_job")
    execute(echo, instance, defs, list(tick(instance, report_file_sender_sensor).run_requests or []),
            "send_report_files_job")
    for file in ReportFileRepository(engine).list(row.id, limit=1):
        echo(f"   file {file.id}: {file.state}, {file.rows} rows, local days {file.period_start}..{file.period_end}, "
             f"{file.path}")
        eml = _outbox_file(app, file.message_id)
        if eml is None:
            continue
        message = email.message_from_bytes(eml.read_bytes(), policy=email.policy.default)
        parts = ", ".join(p.get_content_type() for p in message.walk() if not p.is_multipart())
        echo(f"   sent to the outbox: {eml} ({parts})")
        page = eml.with_suffix(".html")
        page.write_text(inline_images(message), encoding="utf-8")
        try:
            shot = screenshot_html(page.read_text(encoding="utf-8"), eml.with_suffix(".png"))
            echo(f"   rendered in headless Chromium next to it: {shot}")
        except ChromiumMissing as exc:
            echo(f"   no screenshot: {exc}")
    echo(f"   next send: {get_schedule(engine, row.id).next_send_at:%Y-%m-%d %H:%M} UTC")
    return str(app.settings.outbox_dir)


def _outbox_file(app: App, message_id: str | None):
    """The ``.eml`` the outbox mailer wrote for a Message-ID (it names files after it)."""
    import re
    from pathlib import Path

    if not message_id:
        return None
    path = Path(app.settings.outbox_dir) / (re.sub(r"[^A-Za-z0-9._-]", "_", message_id.strip("<>"))[:150] + ".eml")
    return path if path.is_file() else None
