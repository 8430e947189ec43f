"""Jobs of period requests: an operator's extraction from the UI, and the D-1 pre-cache runs."""


import datetime as dt

import dagster as dg
from pydantic import Field

from report_pipelines.defs.common import WORKLOAD_TAG, refuse
from report_pipelines.defs.reports.assets import ASSET, check_evaluations
from report_pipelines.defs.resources import AppResource
from report_pipelines.domain.errors import ReportPipelinesError
from report_pipelines.domain.reports import REPORTS
from report_pipelines.services.extracts import ClientDayResult
from report_pipelines.services.periods import extract_period
from report_pipelines.services.precache import precache_client_days, zone_day_complete
from report_pipelines.services.reading import PeriodTimeout
from report_pipelines.services.zone_days import ZoneDay


class ExtractPeriodConfig(dg.Config):
    """The options of ``report-pipelines extract``, for an operator in the launchpad."""

    client: str = Field(description="Client slug (or id).")
    report: str = Field(description=f"One of {', '.join(REPORTS)}.")
    from_date: str = Field(description="First local day, YYYY-MM-DD.")
    to_date: str = Field(description="Last local day, YYYY-MM-DD (today is computed live).")
    summary: bool = Field(default=False, description="The period re-aggregated and presented, not the day rows.")
    format: str = Field(default="csv", description="csv, xlsx, parquet or json (JSON lines).")
    out: str = Field(default="", description="Output file; empty = <data dir>/extracts/<client>_<report>_<from>_<to>.<ext>.")
    deadline_seconds: float = Field(default=0, description="Fail past this many seconds; 0 = REPORT_PIPELINES_EXTRACT_DEADLINE_S.")
    force: bool = Field(default=False, description="Replace the output file if it exists.")


@dg.op(name="extract_period", tags={WORKLOAD_TAG: "period"})
def extract_period_op(context: dg.OpExecutionContext, config: ExtractPeriodConfig, app: AppResource) -> None:
    """One period request: the days from the cache (missing ones computed on the pool), streamed to a file."""
    application = app.app()
    try:
        result = extract_period(
            config.client, config.report, config.from_date, config.to_date,
            shape="summary" if config.summary else "days", format=config.format,
            out=config.out or None, folder=application.settings.data_dir / "extracts",
            deadline_s=config.deadline_seconds or None, channel="dagster", force=config.force, app=application,
            progress=lambda p: context.log.info("%s of %s days ready", p.done, p.total))
    except PeriodTimeout as exc:  # may well succeed when retried: the finished days stay cached
        raise dg.Failure(description=str(exc)) from None
    except ReportPipelinesError as exc:
        refuse(context, exc)
    context.add_output_metadata({
        "path": dg.MetadataValue.path(str(result.path)), "rows": result.rows, "bytes": result.bytes,
        "days_cached": result.days_cached, "days_computed": result.days_computed, "days_live": result.days_live,
        "period": f"{result.start}..{result.end}", "duration_s": round(result.duration_s, 3),
    })


@dg.job(description="Extract one client's period of one report to a file (the CLI's `extract`, from the UI).",
        tags={WORKLOAD_TAG: "period"})
def extract_period_job() -> None:
    extract_period_op()


class PrecacheConfig(dg.Config):
    """One tier of one zone's closed day, as the D-1 planning sensor decided it."""

    timezone: str
    day: str = Field(description="The zone's closed local date, YYYY-MM-DD.")
    client_ids: list[int] = Field(description="Clients in the order they are computed (earliest ready-by first).")
    ready_by: list[str] = Field(default_factory=list, description="Per client: ready-by instant (UTC ISO) or empty.")
    tier: str = Field(default="others", description="priority or others")


@dg.op(pool="report_extracts", tags={WORKLOAD_TAG: "extract"})
def precache_client_days_op(context: dg.OpExecutionContext, config: PrecacheConfig, app: AppResource) -> None:
    """Cache yesterday for these clients, in this order; say who was ready by their ready-by time."""
    application = app.app()
    day = dt.date.fromisoformat(config.day)
    started = application.now()
    clock_start = dt.datetime.now(dt.UTC)
    ready_by = dict(zip(config.client_ids, config.ready_by, strict=False))
    finished: dict[int, dt.datetime] = {}

    def progress(result: ClientDayResult) -> None:
        # finish instants on the application's clock (a pinned test clock advances with the real one here)
        finished[result.client_id] = started + (dt.datetime.now(dt.UTC) - clock_start)
        context.log.debug("client %s %s: %s in %.2f s", result.client_id, result.day, result.status, result.seconds)

    try:
        results = precache_client_days(application, config.timezone, day, list(config.client_ids), now=started,
                                       run_id=context.run.run_id, on_result=progress)
    except ReportPipelinesError as exc:
        refuse(context, exc)
    met = [i for i, at in finished.items() if ready_by.get(i) and at <= dt.datetime.fromisoformat(ready_by[i])]
    late = [i for i, at in finished.items() if ready_by.get(i) and at > dt.datetime.fromisoformat(ready_by[i])]
    context.add_output_metadata({
        "zone": config.timezone, "day": config.day, "tier": config.tier, "clients": len(config.client_ids),
        "computed": sum(r.status == "computed" for r in results), "reused": sum(r.status == "reused" for r in results),
        "ready_by_met": len(met), "ready_by_missed": len(late), "order": dg.MetadataValue.json(list(config.client_ids)),
    })
    # When the whole zone-day is cached, the report cache's date partition shows it, with this zone named
    # (what a run of report_days for this zone records).
    if day >= application.settings.history_start and zone_day_complete(application, config.timezone, day, REPORTS,
                                                                         started):
        context.log_event(dg.AssetMaterialization(
            asset_key=ASSET, partition=day.isoformat(),
            metadata={"via": "precache_client_days_job", "tier": config.tier,
                      "zones": dg.MetadataValue.json([config.timezone]), "client_days": len(results)}))
        # ... and that materialization's checks, on this zone-day (else the UI would show them not run)
        for evaluation in check_evaluations(application, [ZoneDay(day, config.timezone)], REPORTS, started):
            context.log_event(evaluation)


@dg.job(description="Pre-cache one zone's closed day for the given clients, in the given order (D-1 plan).",
        tags={WORKLOAD_TAG: "extract"})
def precache_client_days_job() -> None:
    precache_client_days_op()
