"""The D-1 pre-cache plan as an asset: the usage study and every served client's decision, a table in the UI."""


import dagster as dg

from report_pipelines.defs.resources import AppResource
from report_pipelines.services.precache import precache_plan

PLAN_COLUMNS = [
    ("client", "string"), ("timezone", "string"), ("closed_day", "string"), ("d1_requests", "int"),
    ("days_asked", "int"), ("days_observed", "int"), ("d1_share", "float"), ("typical_first_request", "string"),
    ("schedule", "string"), ("decision", "string"), ("ready_by", "string"), ("reason", "string"),
    ("set_by", "string"),
]


@dg.asset(group_name="periods", kinds={"table"}, owners=["team:reporting"],
          description="Who gets yesterday first: per served client, its D-1 requests over the window (count, "
                      "share of days, typical first-request local time), its schedules that send yesterday, "
                      "and the decision (priority with a ready-by time, normal, or an operator's choice) with "
                      "its reason; rows in the order each zone's next pre-cache requests them.")
def d1_precache_plan(context: dg.AssetExecutionContext, app: AppResource) -> dg.MaterializeResult:
    application = app.app()
    plans = precache_plan(application, application.now())
    records = [p.record() for p in plans]
    counts = {d: sum(p.decision == d for p in plans) for d in ("priority", "normal", "skip")}
    order = []
    for zone in sorted({p.client.timezone for p in plans}):
        names = [f"{p.client.slug} ({p.record()['ready_by'] or p.decision})" for p in plans
                 if p.client.timezone == zone and p.decision != "skip"]
        order.append(f"* **{zone}**: " + " -> ".join(names))
    context.log.info("%s clients: %s", len(plans), counts)
    return dg.MaterializeResult(metadata={
        "clients": len(plans), **counts,
        "plan": dg.MetadataValue.table(records=[dg.TableRecord(r) for r in records],
                                       schema=dg.TableSchema(columns=[dg.TableColumn(n, t) for n, t in PLAN_COLUMNS])),
        "next_order": dg.MetadataValue.md("\n".join(order) or "no served client"),
    })


d1_precache_plan_job = dg.define_asset_job("d1_precache_plan_job", selection=[d1_precache_plan],
                                           description="Refresh the D-1 pre-cache plan (the usage study).")

#: Daily; the planning sensor decides from the same rules at each zone's midnight, so this is the view.
d1_precache_plan_schedule = dg.ScheduleDefinition(job=d1_precache_plan_job, cron_schedule="30 11 * * *",
                                                  execution_timezone="UTC",
                                                  default_status=dg.DefaultScheduleStatus.RUNNING)
