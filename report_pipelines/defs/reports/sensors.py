"""Sensors of the report assets: they decide, runs act (every request has a stable run key)."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections import defaultdict

import dagster as dg

from report_pipelines.adapters.db.repositories import CallEventRepository
from report_pipelines.defs.reports.jobs import extract_reports_job
from report_pipelines.defs.reports.partitions import PARTITIONS_START, TIMEZONE_PARTITIONS, partition_key
from report_pipelines.defs.resources import AppResource
from report_pipelines.domain.errors import InvalidInput
from report_pipelines.domain.timezones import local_date_of, parse_zone
from report_pipelines.services.serving import served_zones
from report_pipelines.services.staleness import find_stale_client_days

#: How far back the late-data sensor re-reads ingests on every tick (commits that land late).
LATE_OVERLAP = dt.timedelta(hours=1)
#: How many missed closed days per zone the closed-days sensor catches up after a pause.
CATCH_UP_DAYS = 7


def usable_zones(context: dg.SensorEvaluationContext) -> list[str]:
    """The zone partitions a sensor can request. A key that is no IANA zone (an operator's typo in the UI's
    "Add a partition": ``America/Sao_Paolo``) is skipped and reported; the good zones go on."""
    usable = []
    for zone in context.instance.get_dynamic_partitions(TIMEZONE_PARTITIONS.name):
        try:
            parse_zone(zone, "timezone")
        except InvalidInput as exc:
            context.log.warning("skipping time-zone partition %r: %s (delete it in the UI: Assets, partitions)",
                                zone[:80], exc)
            continue
        usable.append(zone)
    return usable


@dg.sensor(minimum_interval_seconds=60, default_status=dg.DefaultSensorStatus.RUNNING)
def client_timezones_sensor(context: dg.SensorEvaluationContext, app: AppResource) -> dg.SensorResult | dg.SkipReason:
    """Add a time-zone partition for every zone a served client uses (a licensed client with a new zone)."""
    application = app.app()
    zones = served_zones(application.engine, application.now())
    known = set(context.instance.get_dynamic_partitions(TIMEZONE_PARTITIONS.name))
    new = [zone for zone in zones if zone not in known]
    if not new:
        return dg.SkipReason(f"all {len(zones)} time zones of served clients have partitions")
    return dg.SensorResult(dynamic_partitions_requests=[TIMEZONE_PARTITIONS.build_add_request(new)])


# Stopped by default: d1_precache_sensor (defs/periods) requests every zone's closed day for all its served
# clients too, in the planned order (priority clients first). Start this one instead for one unordered run.
@dg.sensor(job=extract_reports_job, minimum_interval_seconds=300, default_status=dg.DefaultSensorStatus.STOPPED)
def closed_days_sensor(context: dg.SensorEvaluationContext, app: AppResource) -> dg.SensorResult | dg.SkipReason:
    """When a zone's local day ends, request its partition (every client of the zone, that day).

    Cursor: the last day requested per zone. After a pause, at most ``CATCH_UP_DAYS`` missed days per
    zone are requested (older gaps are a backfill's job); a brand-new zone starts with its last day.
    A partition key that is no time zone is skipped (and reported), never a reason to fail every zone.
    """
    done: dict[str, str] = json.loads(context.cursor) if context.cursor else {}
    now = app.app().now()
    requests = []
    for zone in usable_zones(context):
        last_closed = local_date_of(now, parse_zone(zone)) - dt.timedelta(days=1)
        first = last_closed if zone not in done else dt.date.fromisoformat(done[zone]) + dt.timedelta(days=1)
        first = max(first, last_closed - dt.timedelta(days=CATCH_UP_DAYS - 1), dt.date.fromisoformat(PARTITIONS_START))
        day = first
        while day <= last_closed:
            requests.append(dg.RunRequest(
                run_key=f"closed-day:{zone}:{day}",
                partition_key=partition_key(day.isoformat(), zone),
                run_config={"ops": {"report_extracts": {"config": {"only_stale": True}}}},
                tags={"report_pipelines/trigger": "closed_day"},
            ))
            day += dt.timedelta(days=1)
        done[zone] = max(last_closed, dt.date.fromisoformat(done.get(zone, last_closed.isoformat()))).isoformat()
    if not requests:
        return dg.SkipReason("no zone has finished a new day")
    return dg.SensorResult(run_requests=requests, cursor=json.dumps(done, sort_keys=True))


@dg.sensor(job=extract_reports_job, minimum_interval_seconds=120, default_status=dg.DefaultSensorStatus.RUNNING)
def late_events_sensor(context: dg.SensorEvaluationContext, app: AppResource) -> dg.SensorResult | dg.SkipReason:
    """Recompute cached client-days that late calls made stale, one run per (date, zone).

    Cursor: the newest ingest instant seen. Each tick re-reads ``LATE_OVERLAP`` before it, since an
    import's commits can land after their stamps; the manifest comparison makes that idempotent.
    A stale day whose partition does not exist (a zone without a partition, a date before the
    partitions start) is reported in the tick's log and never requested (a run for it would fail).
    """
    application = app.app()
    engine, now = application.engine, application.now()
    state = json.loads(context.cursor) if context.cursor else {}
    if "seen" not in state:
        newest = CallEventRepository(engine).newest_ingest()
        cursor = json.dumps({"seen": (newest or now).isoformat()})
        return dg.SensorResult(skip_reason=dg.SkipReason("started watching ingests from now"), cursor=cursor)
    seen = dt.datetime.fromisoformat(state["seen"])
    stale, newest = find_stale_client_days(engine, seen - LATE_OVERLAP, now)
    zones, first_day = set(usable_zones(context)), dt.date.fromisoformat(PARTITIONS_START)
    unrequestable = [s for s in stale if s.timezone not in zones or s.day < first_day]
    for item in unrequestable[:20]:
        context.log.warning("stale client-day %s %s of zone %s has no partition; not requested",
                            item.client_id, item.day, item.timezone)
    stale = [s for s in stale if s.timezone in zones and s.day >= first_day]
    cursor = json.dumps({"seen": max(seen, newest).isoformat() if newest else seen.isoformat()})
    if not stale:
        return dg.SensorResult(skip_reason=dg.SkipReason("no cached client-day went stale"), cursor=cursor)
    by_partition: dict[tuple[str, dt.date], list] = defaultdict(list)
    for item in stale:
        by_partition[(item.timezone, item.day)].append(item)
    requests = []
    for (zone, day), items in sorted(by_partition.items()):
        ids = sorted({i.client_id for i in items})
        newest_ingest = max(i.newest_ingest for i in items).isoformat()
        fingerprint = hashlib.sha256(f"{ids}{newest_ingest}".encode()).hexdigest()[:12]
        requests.append(dg.RunRequest(
            run_key=f"late:{zone}:{day}:{fingerprint}",
            partition_key=partition_key(day.isoformat(), zone),
            run_config={"ops": {"report_extracts": {"config": {"client_ids": ids}}}},
            tags={"report_pipelines/trigger": "late_events"},
        ))
    context.log.info("%s stale client-days in %s partitions", len(stale), len(requests))
    return dg.SensorResult(run_requests=requests, cursor=cursor)
