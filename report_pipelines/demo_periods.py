"""The demo's period-requests step (``make demo``, step 8): an extract, a summary, the usage log, the D-1 plan.

1. ``extract`` of the largest client's last week as CSV (progress printed as the days come);
2. the same week summarised (``queue_performance``) to the terminal;
3. a few requests that fill the usage log: several clients ask for their yesterday (D-1) the way their
   people would, one client three times, so the study has something to say; ``usage`` prints it;
4. a daily e-mail of yesterday for one client (a schedule: its client becomes a priority), an operator's
   choice (``precache set ... --skip``) and the ``d1_precache_plan`` asset materialized:
   every served client's decision with its reason, and the order of tomorrow's pre-cache per zone.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

import dagster as dg

from report_pipelines.app import App

QUIET = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}


def run_periods_demo(echo: Callable[[str], None], instance: dg.DagsterInstance, app: App, defs: dg.Definitions,
                     client_slug: str, first: dt.date, last: dt.date) -> bool:
    from report_pipelines.cli.periods import plan_lines
    from report_pipelines.domain.timezones import local_date_of, parse_zone
    from report_pipelines.services.periods import extract_period, summarize_report, usage_summary
    from report_pipelines.services.precache import precache_plan, set_precache_choice
    from report_pipelines.services.scheduled_reports import add_schedule
    from report_pipelines.services.serving import servings

    out = app.settings.data_dir / "extracts"
    seen: list[int] = []

    def progress(p) -> None:
        if p.done not in seen:
            seen.append(p.done)
            echo(f"   {p.done}/{p.total} days ready ({p.computed} computed)")

    result = extract_period(client_slug, "call_detail", first, last, format="csv", folder=out, force=True,
                            channel="cli", app=app, progress=progress)
    echo(f"9. extract {client_slug} call_detail {first}..{last} as CSV: {result.rows:,} rows, "
         f"{result.bytes / 1e6:.1f} MB -> {result.path} ({result.days_cached} days from the cache, "
         f"{result.days_computed} computed, {result.days_live} live)")
    summary = summarize_report("queue_performance", client_slug, first, last, app=app)
    for line in (summary[["queue", "offered", "answered", "service_level"]].fillna({"queue": "(no queue)"}).round(3)
                 .to_string(index=False).splitlines()):
        echo(f"   {line}")

    now = app.now()
    clients = sorted((s.client for s in servings(app.engine, now).values()
                      if s.serves(s.today - dt.timedelta(days=1))), key=lambda c: c.id)  # yesterday is theirs
    for client in clients[:5]:  # their people open yesterday's report; the first client three times
        yesterday = local_date_of(now, parse_zone(client.timezone)) - dt.timedelta(days=1)
        for _ in range(3 if client == clients[0] else 1):
            extract_period(client.slug, "queue_performance", yesterday, yesterday, shape="summary", format="json",
                           folder=out, force=True, channel="cli", app=app)
    echo("   the usage log (`report-pipelines usage`):")
    for line in usage_summary(app, now=now)[:6]:
        echo(f"   {line.client:<30} {line.requests:>3} requests, D-1 {line.d1_share:>4.0%}, p50 {line.p50_s:.2f} s, "
             f"p95 {line.p95_s:.2f} s, {line.cached_share:>4.0%} of days from the cache")
    if len(clients) > 2:  # a manager's daily e-mail of yesterday at 07:30 makes its client a priority
        row = add_schedule(app.engine, clients[1].slug, report="daily_summary", period="yesterday", frequency="daily",
                           send_time="07:30", recipients=["manager@example.com"], fmt="csv", now=now)
        echo(f"   schedule {row.id}: daily_summary of yesterday for {clients[1].slug}, daily at 07:30 {row.timezone}")
        set_precache_choice(app, clients[-1].slug, "skip", by="demo-operator", note="never opens reports", now=now)
        echo(f"   `report-pipelines precache set {clients[-1].slug} --skip --by demo-operator`")
    plan_run = defs.resolve_job_def("d1_precache_plan_job").execute_in_process(
        instance=instance, run_config=QUIET, raise_on_error=False)
    echo(f"   job d1_precache_plan_job: {'succeeded' if plan_run.success else 'FAILED'} "
         "(Assets -> periods -> d1_precache_plan in the UI)")
    for line in plan_lines(precache_plan(app, now)):
        echo(f"   {line}")
    return plan_run.success
