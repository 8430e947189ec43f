"""The report assets: one per report definition, all computed together per client-day.

One multi-asset computes the selected reports for every client-day of the selected partitions (a
single-run backfill passes many), on a bounded process pool, reading each day's calls once.
"""


import datetime as dt
import time

import dagster as dg
from pydantic import Field

from report_pipelines.app import App
from report_pipelines.defs.common import WORKLOAD_TAG, refuse
from report_pipelines.defs.events.assets import call_events
from report_pipelines.defs.reports.partitions import REPORT_PARTITIONS
from report_pipelines.defs.resources import AppResource
from report_pipelines.domain.errors import ReportPipelinesError
from report_pipelines.domain.reports import REPORTS
from report_pipelines.domain.timezones import parse_zone
from report_pipelines.services.cache_checks import missing_client_days, source_mismatches
from report_pipelines.services.extracts import ANY_TIME, ClientDayResult, run_client_days
from report_pipelines.services.zone_days import ZoneDay, ZoneDaySummary, plan_zone_days, summarize

LAYOUT = "<store>/{report}/client=<client id>/date=<YYYY-MM-DD>/part-0.parquet"
MATCHES_SOURCE = "matches_source"
COMPLETE = "no_missing_client_days"


class ExtractConfig(dg.Config):
    """Per-run options of the report extracts."""

    client_ids: list[int] = Field(
        default_factory=list, description="Only these clients (ids) of the partitions' zones; empty = all of them.")
    workers: int = Field(default=0, description="Worker processes for client-days; 0 = REPORT_PIPELINES_WORKERS.")
    only_stale: bool = Field(
        default=False, description="Reuse client-days whose cache is still fresh instead of recomputing them.")
    timeout_seconds: float = Field(default=0, description="Fail the run past this many seconds; 0 = no limit.")


def _spec(name: str) -> dg.AssetSpec:
    report = REPORTS[name]
    return dg.AssetSpec(
        key=name,
        description=f"{report.title}: {report.description}\n\n{type(report).__doc__ or ''}",
        group_name="reports",
        kinds={"parquet"},
        owners=["team:reporting"],
        partitions_def=REPORT_PARTITIONS,
        deps=[call_events.key],
        metadata={
            "layout": LAYOUT.format(report=name),
            "dagster/column_schema": dg.TableSchema(
                columns=[dg.TableColumn(f.name, str(f.type)) for f in report.schema]),
        },
    )


CHECK_SPECS = [
    dg.AssetCheckSpec(MATCHES_SOURCE, asset="call_detail",
                      description="Each client-day's cached calls match the events table: count and call ids."),
    *[dg.AssetCheckSpec(COMPLETE, asset=name,
                        description="Every client-day of the partitions that the pipelines serve has this report cached.")
      for name in REPORTS],
]


@dg.multi_asset(
    specs=[_spec(name) for name in REPORTS],
    check_specs=CHECK_SPECS,
    can_subset=True,
    partitions_def=REPORT_PARTITIONS,
    backfill_policy=dg.BackfillPolicy.single_run(),
    pool="report_extracts",
    name="report_extracts",
)
def report_extracts(context: dg.AssetExecutionContext, config: ExtractConfig, app: AppResource):
    """Every selected report, for every client-day of the selected (date x zone) partitions."""
    # Runs launched by a sensor or the launchpad carry the job's tag; a UI backfill's runs do not (Dagster
    # gives them the backfill's tags only): tag every extract run here, for filtering. What bounds them all,
    # whatever launched them, is the pool "report_extracts" (run granularity, see dagster.yaml).
    if context.run.tags.get(WORKLOAD_TAG) != "extract":
        context.instance.add_run_tags(context.run.run_id, {WORKLOAD_TAG: "extract"})
    try:
        yield from _extract(context, config, app.app())
    except ReportPipelinesError as exc:  # an expected refusal: one clear line, not retried
        refuse(context, exc)


def _zone_days(context: dg.AssetExecutionContext) -> list[ZoneDay]:
    """The selected partitions as zone-days; a partition key that names no time zone is refused in one line."""
    zone_days = []
    for key in context.partition_keys:
        zone = key.keys_by_dimension["timezone"]
        parse_zone(zone, "timezone")
        zone_days.append(ZoneDay(dt.date.fromisoformat(key.keys_by_dimension["date"]), zone))
    return zone_days


def _extract(context: dg.AssetExecutionContext, config: ExtractConfig, app: App):
    started = time.monotonic()
    run_started = app.now()
    reports = [key.to_user_string() for key in context.selected_asset_keys]
    zone_days = _zone_days(context)
    engine = app.engine
    plans = plan_zone_days(engine, zone_days, now=run_started, client_ids=config.client_ids or None)
    tasks = [task for plan in plans for task in plan.tasks]
    workers = config.workers or app.settings.workers
    context.log.info("%s client-days over %s partitions, %s reports, %s workers", len(tasks), len(plans),
                     len(reports), workers)

    def progress(result: ClientDayResult) -> None:
        context.log.debug("client %s %s: %s in %.2fs (%s calls)", result.client_id, result.day, result.status,
                          result.seconds, result.source_rows)

    results = run_client_days(
        app, tasks, reports=reports, workers=workers, now=run_started, run_id=context.run.run_id,
        # A concurrent run may have computed a client-day while this one waited for its lock: reuse
        # that; anything older is recomputed unless only_stale.
        reuse_since=ANY_TIME if config.only_stale else run_started,
        timeout_s=config.timeout_seconds or None, on_result=progress,
    )
    elapsed = time.monotonic() - started
    summaries = summarize(plans, results)
    logged = time.monotonic()
    for summary in summaries:
        for name in reports:  # per-partition figures, also inside a single-run backfill
            context.log_event(dg.AssetObservation(
                asset_key=name, partition=_key(summary), metadata=_partition_metadata(summary, name)))
    context.log.info("computed in %.1f s; per-partition metadata logged in %.1f s", elapsed, time.monotonic() - logged)
    for name in reports:
        yield dg.MaterializeResult(asset_key=name, metadata=_run_metadata(summaries, name, elapsed))
    for check in context.selected_asset_check_keys:
        yield _check(check, app, [p.zone_day for p in plans], run_started)


def _key(summary: ZoneDaySummary) -> str:
    return str(dg.MultiPartitionKey({"date": summary.zone_day.day.isoformat(), "timezone": summary.zone_day.timezone}))


def _partition_metadata(summary: ZoneDaySummary, report: str) -> dict:
    slowest = summary.slowest
    return {
        "clients": summary.clients,
        "computed": summary.computed,
        "reused": summary.reused,
        "rows": summary.rows.get(report, 0),
        "bytes": summary.bytes.get(report, 0),
        "source_calls": summary.source_rows,
        "rejected_calls": sum(summary.rejected.values()),
        "duration_s": round(summary.seconds, 3),
        "slowest_client_day": f"client {slowest.client_id}: {slowest.seconds:.2f} s, {slowest.source_rows} calls"
        if slowest else "",
    }


def _run_metadata(summaries: list[ZoneDaySummary], report: str, elapsed: float) -> dict:
    slowest = max((s.slowest for s in summaries if s.slowest), key=lambda r: r.seconds, default=None)
    rejected: dict[str, int] = {}
    for s in summaries:
        for reason, n in s.rejected.items():
            rejected[reason] = rejected.get(reason, 0) + n
    return {
        "partitions": len(summaries),
        "clients_covered": sum(s.clients for s in summaries),
        "rows": sum(s.rows.get(report, 0) for s in summaries),
        "bytes": sum(s.bytes.get(report, 0) for s in summaries),
        "duration_s": round(elapsed, 3),
        "slowest_client_day": f"client {slowest.client_id} {slowest.day}: {slowest.seconds:.2f} s, "
                              f"{slowest.source_rows} calls" if slowest else "",
        "rejected_calls": dg.MetadataValue.json(rejected),
        "per_partition": dg.MetadataValue.table(
            records=[dg.TableRecord({
                "partition": _key(s), "clients": s.clients, "rows": s.rows.get(report, 0),
                "bytes": s.bytes.get(report, 0), "duration_s": round(s.seconds, 3),
                "slowest_client": s.slowest.client_id if s.slowest else -1,
                "slowest_s": round(s.slowest.seconds, 3) if s.slowest else 0.0,
            }) for s in summaries],
            schema=dg.TableSchema(columns=[
                dg.TableColumn("partition", "string"), dg.TableColumn("clients", "int"),
                dg.TableColumn("rows", "int"), dg.TableColumn("bytes", "int"),
                dg.TableColumn("duration_s", "float"), dg.TableColumn("slowest_client", "int"),
                dg.TableColumn("slowest_s", "float"),
            ]),
        ),
    }


def _check(check: dg.AssetCheckKey, app: App, zone_days: list[ZoneDay], now: dt.datetime) -> dg.AssetCheckResult:
    report = check.asset_key.to_user_string()
    if check.name == MATCHES_SOURCE:
        checked, findings = source_mismatches(app.engine, zone_days, report)
        label = "client_days_checked"
    else:
        checked, findings = missing_client_days(app.engine, app.store, zone_days, report, now)
        label = "client_days_expected"
    return dg.AssetCheckResult(
        asset_key=check.asset_key, check_name=check.name, passed=not findings,
        metadata={label: checked, "problems": len(findings),
                  "first_problems": dg.MetadataValue.json([f.__dict__ for f in findings[:20]])},
    )
