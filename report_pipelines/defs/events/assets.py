"""The source of every report: the PBX's call events, as the app database holds them."""

from __future__ import annotations

import dagster as dg

from report_pipelines.defs.resources import AppResource
from report_pipelines.services.observation import observe_events


@dg.observable_source_asset(
    group_name="sources",
    description=(
        "One row per call (CDR legs collapsed), per client, instants in UTC; loaded by the demo seed "
        "or `report-pipelines import-cdr`. Each observation records, per client, the number of calls, "
        "the latest call start and the ingest watermark (newest `ingested_at`): reports cached before "
        "the watermark moved may be stale."
    ),
    metadata={"table": "call_events", "owner": "platform data team"},
)
def call_events(context: dg.AssetExecutionContext, app: AppResource) -> dg.ObserveResult:
    observation = observe_events(app.app().engine)
    context.log.info(
        "%s calls over %s clients; ingest watermark %s", observation.events, len(observation.clients),
        observation.ingest_watermark,
    )
    per_client = dg.MetadataValue.table(
        records=[
            dg.TableRecord(
                {
                    "client": c.slug,
                    "timezone": c.timezone,
                    "calls": c.events,
                    "latest_call_utc": c.latest_started_at.isoformat() if c.latest_started_at else "",
                    "ingest_watermark_utc": c.ingest_watermark.isoformat() if c.ingest_watermark else "",
                }
            )
            for c in observation.clients
        ],
        schema=dg.TableSchema(
            columns=[
                dg.TableColumn("client", "string"),
                dg.TableColumn("timezone", "string"),
                dg.TableColumn("calls", "int"),
                dg.TableColumn("latest_call_utc", "string"),
                dg.TableColumn("ingest_watermark_utc", "string"),
            ]
        ),
    )
    metadata: dict[str, dg.RawMetadataValue] = {
        "clients": len(observation.clients),
        "calls": observation.events,
        "per_client": per_client,
    }
    if observation.ingest_watermark:
        metadata["ingest_watermark"] = dg.MetadataValue.timestamp(observation.ingest_watermark)
    if observation.latest_started_at:
        metadata["latest_call"] = dg.MetadataValue.timestamp(observation.latest_started_at)
    return dg.ObserveResult(data_version=dg.DataVersion(observation.data_version), metadata=metadata)
