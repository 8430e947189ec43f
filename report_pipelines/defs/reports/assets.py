"""The report cache as one Dagster asset: every report's day tables of the client-days of a local date.

``report_days`` is partitioned by local date (see :mod:`report_pipelines.defs.reports.partitions`);
a run covers its dates for the zones it is given, every served client of them, each report of the
registry (or those in ``reports``), on the bounded worker pool in zone-day batches. The report
registry decides what is computed: a new report module is a new set of day files, a new column
schema in this asset's metadata and a new line in its checks, nothing else.

Dagster sees one materialization per date (with that run's figures), one evaluation per check, and a
handful of run events: a day of every zone is about fifteen event-log records, however many zones,
clients and reports it covers (the per-client-day truth lives in the cache manifest).
"""

import datetime as dt
import time

import dagster as dg
from pydantic import Field

from report_pipelines.app import App
from report_pipelines.defs.common import WORKLOAD_TAG, refuse
from report_pipelines.defs.events.assets import call_events
from report_pipelines.defs.resources import AppResource
from report_pipelines.domain.errors import InvalidInput, ReportPipelinesError
from report_pipelines.domain.reports import REPORTS, get_report
from report_pipelines.domain.timezones import local_day_window, parse_zone
from report_pipelines.services.cache_checks import missing_client_days, source_mismatches
from report_pipelines.services.extracts import ANY_TIME, ClientDayResult, run_client_days
from report_pipelines.services.serving import clients_lookup, served_zones
from report_pipelines.services.zone_days import ZoneDay, plan_zone_days, summarize

ASSET = "report_days"
LAYOUT = "<store>/<report>/client=<client id>/date=<YYYY-MM-DD>/part-0.parquet"
MATCHES_SOURCE = "matches_source"
COMPLETE = "no_missing_client_days"
#: How often a long run says how far it got (at INFO: one event-log record each).
PROGRESS_EVERY_S = 30.0


class ExtractConfig(dg.Config):
    """Per-run options of the report cache."""

    zones: list[str] = Field(
        default_factory=list,
        description="Only these time zones (IANA names); empty = every zone of a served client whose date has ended.")
    client_ids: list[int] = Field(
        default_factory=list, description="Only these clients (ids) of those zones; empty = all of them.")
    reports: list[str] = Field(default_factory=list, description="Only these reports; empty = every report.")
    workers: int = Field(default=0, description="Worker processes for client-days; 0 = REPORT_PIPELINES_WORKERS.")
    only_stale: bool = Field(
        default=False, description="Reuse client-days whose cache is still fresh instead of recomputing them.")
    timeout_seconds: float = Field(default=0, description="Fail the run past this many seconds; 0 = no limit.")


def _description() -> str:
    lines = ["Every report's day tables for the client-days of a client-local date, cached as Parquet "
             f"(`{LAYOUT}`); one partition per local date, every served zone inside the run.", "", "Reports:"]
    lines += [f"* `{name}`: {report.title}: {report.description}" for name, report in REPORTS.items()]
    return "\n".join(lines)


def report_days_asset(partitions: dg.PartitionsDefinition) -> dg.AssetsDefinition:
    """The asset over ``partitions`` (its first date is a setting, so the definitions build it)."""

    @dg.asset(
        name=ASSET,
        description=_description(),
        group_name="reports",
        kinds={"parquet"},
        owners=["team:reporting"],
        partitions_def=partitions,
        backfill_policy=dg.BackfillPolicy.single_run(),
        pool="report_extracts",
        deps=[call_events.key],
        metadata={
            "layout": LAYOUT,
            "reports": dg.MetadataValue.json({name: [f"{f.name}: {f.type}" for f in r.schema]
                                              for name, r in REPORTS.items()}),
        },
        check_specs=[
            dg.AssetCheckSpec(MATCHES_SOURCE, asset=ASSET, description=(
                "Each cached client-day's call_detail matches the events table: count and call ids.")),
            dg.AssetCheckSpec(COMPLETE, asset=ASSET, description=(
                "Every client-day of the run's zones that the pipelines serve has every selected report cached.")),
        ],
    )
    def report_days(context: dg.AssetExecutionContext, config: ExtractConfig, app: AppResource):
        """Every selected report, for every served client-day of the run's dates and zones."""
        # A sensor's or the launchpad's run carries the job's tag; a UI backfill's does not (Dagster gives
        # it the backfill's tags only): tag every run here, for filtering. What bounds them all, whatever
        # launched them, is the pool "report_extracts" (run granularity, see dagster.yaml).
        if context.run.tags.get(WORKLOAD_TAG) != "extract":
            context.instance.add_run_tags(context.run.run_id, {WORKLOAD_TAG: "extract"})
        try:
            yield from _extract(context, config, app.app())
        except ReportPipelinesError as exc:  # an expected refusal: one clear line, not retried
            refuse(context, exc)

    return report_days


def _zone_days(context: dg.AssetExecutionContext, config: ExtractConfig, app: App,
               now: dt.datetime) -> tuple[list[ZoneDay], list[str]]:
    """The run's zone-days, and the zones left out because their date has not ended yet."""
    dates = sorted(dt.date.fromisoformat(key) for key in context.partition_keys)
    if config.zones:
        zones = sorted({parse_zone(zone, "zones").key for zone in config.zones})
        return [ZoneDay(day, zone) for day in dates for zone in zones], []  # a zone asked for must have ended
    zones = served_zones(app.engine, now)
    chosen, open_zones = [], set()
    for day in dates:
        for zone in zones:
            if local_day_window(day, parse_zone(zone))[1] <= now:
                chosen.append(ZoneDay(day, zone))
            else:
                open_zones.add(zone)
    return chosen, sorted(open_zones)


def _extract(context: dg.AssetExecutionContext, config: ExtractConfig, app: App):
    started = time.monotonic()
    run_started = app.now()
    reports = [get_report(name).name for name in config.reports] if config.reports else list(REPORTS)
    if config.workers < 0 or config.timeout_seconds < 0:
        raise InvalidInput("workers" if config.workers < 0 else "timeout_seconds", "must not be negative")
    zone_days, still_open = _zone_days(context, config, app, run_started)
    plans = plan_zone_days(app.engine, zone_days, now=run_started, client_ids=config.client_ids or None)
    tasks = [task for plan in plans for task in plan.tasks]
    workers = config.workers or app.settings.workers
    context.log.info("%s client-days of %s zone-days, %s reports, %s workers%s", len(tasks), len(plans),
                     len(reports), workers, f"; not ended yet in {', '.join(still_open)}" if still_open else "")
    last_said = [time.monotonic()]

    def progress(result: ClientDayResult) -> None:
        done.append(result)
        if time.monotonic() - last_said[0] >= PROGRESS_EVERY_S:
            last_said[0] = time.monotonic()
            context.log.info("%s of %s client-days done", len(done), len(tasks))

    done: list[ClientDayResult] = []
    results = run_client_days(
        app, tasks, reports=reports, workers=workers, now=run_started, run_id=context.run.run_id,
        # A concurrent run may have computed a client-day while this one waited for its lock: reuse
        # that; anything older is recomputed unless only_stale.
        reuse_since=ANY_TIME if config.only_stale else run_started,
        timeout_s=config.timeout_seconds or None, on_result=progress,
    )
    elapsed = time.monotonic() - started
    summaries = summarize(plans, results)
    app.store.write_lookup("clients", clients_lookup(app.engine, run_started))  # analysts need no app database
    yield dg.MaterializeResult(asset_key=ASSET, metadata=_metadata(summaries, results, reports, still_open, elapsed))
    zone_days_done = [p.zone_day for p in plans]
    for check in context.selected_asset_check_keys:
        yield _check(check.name, app, zone_days_done, reports, run_started)


def _metadata(summaries, results: list[ClientDayResult], reports: list[str], still_open: list[str],
              elapsed: float) -> dict:
    slowest = max(results, key=lambda r: r.seconds, default=None)
    rejected: dict[str, int] = {}
    for summary in summaries:
        for reason, n in summary.rejected.items():
            rejected[reason] = rejected.get(reason, 0) + n
    return {
        "zone_days": len(summaries),
        "zones": dg.MetadataValue.json(sorted({s.zone_day.timezone for s in summaries})),
        "zones_not_ended": dg.MetadataValue.json(still_open),
        "client_days": sum(s.clients for s in summaries),
        "computed": sum(s.computed for s in summaries),
        "reused": sum(s.reused for s in summaries),
        "source_calls": sum(s.source_rows for s in summaries),
        "rejected_calls": dg.MetadataValue.json(rejected),
        "rows": dg.MetadataValue.json({name: sum(s.rows.get(name, 0) for s in summaries) for name in reports}),
        "bytes": sum(sum(s.bytes.values()) for s in summaries),
        "duration_s": round(elapsed, 3),
        "worker_processes": len({(r.host, r.worker) for r in results}),
        "client_days_by_worker": dg.MetadataValue.json(_by_worker(results)),
        "slowest_client_day": f"client {slowest.client_id} {slowest.day}: {slowest.seconds:.2f} s, "
                              f"{slowest.source_rows} calls" if slowest else "",
    }


def _by_worker(results: list[ClientDayResult]) -> dict[str, int]:
    """Computed client-days per Celery worker (its --hostname), or per local process ("pid 123")."""
    counts: dict[str, int] = {}
    for r in results:
        if r.status == "computed":
            key = r.host or f"pid {r.worker}"
            counts[key] = counts.get(key, 0) + 1
    return dict(sorted(counts.items()))


def _check(name: str, app: App, zone_days: list[ZoneDay], reports: list[str], now: dt.datetime) -> dg.AssetCheckResult:
    passed, metadata = _verdict(name, app, zone_days, reports, now)
    return dg.AssetCheckResult(asset_key=ASSET, check_name=name, passed=passed, metadata=metadata)


def check_evaluations(app: App, zone_days: list[ZoneDay], reports: list[str],
                      now: dt.datetime) -> list[dg.AssetCheckEvaluation]:
    """Both checks' verdicts on these zone-days, for a job outside the asset that records a
    materialization of it (the D-1 pre-cache): the UI shows the checks of the latest materialization,
    whoever made it."""
    return [dg.AssetCheckEvaluation(asset_key=dg.AssetKey(ASSET), check_name=name, passed=passed, metadata=metadata)
            for name in (MATCHES_SOURCE, COMPLETE)
            for passed, metadata in [_verdict(name, app, zone_days, reports, now)]]


def _verdict(name: str, app: App, zone_days: list[ZoneDay], reports: list[str], now: dt.datetime) -> tuple[bool, dict]:
    if name == MATCHES_SOURCE:
        checked, findings = source_mismatches(app.engine, zone_days, "call_detail")
        label = "client_days_checked"
    else:
        checked, findings = missing_client_days(app.engine, app.store, zone_days, reports, now)
        label = "client_day_reports_expected"
    return not findings, {label: checked, "problems": len(findings),
                          "first_problems": dg.MetadataValue.json([f.__dict__ for f in findings[:20]])}
