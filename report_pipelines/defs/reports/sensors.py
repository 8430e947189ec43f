"""Sensors of the report cache: they decide, runs act (every request has a stable run key)."""

import datetime as dt
import hashlib
import json
from collections import defaultdict

import dagster as dg

from report_pipelines.adapters.db.repositories import CallEventRepository
from report_pipelines.defs.reports.jobs import extract_reports_job
from report_pipelines.defs.resources import AppResource
from report_pipelines.domain.timezones import local_date_of, parse_zone
from report_pipelines.services.serving import served_zones
from report_pipelines.services.staleness import find_stale_client_days

#: How far back the late-data sensor re-reads ingests on every tick (commits that land late).
LATE_OVERLAP = dt.timedelta(hours=1)
#: How many missed closed days per zone the closed-days sensor catches up after a pause.
CATCH_UP_DAYS = 7


def extract_request(day: dt.date, zones: list[str], run_key: str, trigger: str, **config) -> dg.RunRequest:
    """A run of the report cache for ``day`` in ``zones`` (the partition is the date)."""
    return dg.RunRequest(
        run_key=run_key, partition_key=day.isoformat(),
        run_config={"ops": {"report_days": {"config": {"zones": zones, **config}}}},
        tags={"report_pipelines/trigger": trigger, "report_pipelines/zones": ",".join(zones)[:200]},
    )


# Stopped by default: d1_precache_sensor (defs/periods) requests every zone's closed day for all its served
# clients too, in the planned order (priority clients first). Start this one instead for one unordered run.
@dg.sensor(job=extract_reports_job, minimum_interval_seconds=300, default_status=dg.DefaultSensorStatus.STOPPED)
def closed_days_sensor(context: dg.SensorEvaluationContext, app: AppResource) -> dg.SensorResult | dg.SkipReason:
    """When a zone's local day ends, request that date for that zone (every served client of it).

    The zones are those of served clients, asked at each tick (no zone registry to keep). Cursor: the
    last day requested per zone. After a pause, at most ``CATCH_UP_DAYS`` missed days per zone are
    requested (older gaps are a backfill's job); a zone seen for the first time starts with its last
    day; no date before the partitions start (``REPORT_PIPELINES_HISTORY_START``) is ever requested.
    """
    application = app.app()
    done: dict[str, str] = json.loads(context.cursor) if context.cursor else {}
    now, first_day = application.now(), application.settings.history_start
    requests = []
    for zone in served_zones(application.engine, now):
        last_closed = local_date_of(now, parse_zone(zone)) - dt.timedelta(days=1)
        first = last_closed if zone not in done else dt.date.fromisoformat(done[zone]) + dt.timedelta(days=1)
        day = max(first, last_closed - dt.timedelta(days=CATCH_UP_DAYS - 1), first_day)
        while day <= last_closed:
            requests.append(extract_request(day, [zone], f"closed-day:{zone}:{day}", "closed_day", only_stale=True))
            day += dt.timedelta(days=1)
        done[zone] = max(last_closed, dt.date.fromisoformat(done.get(zone, last_closed.isoformat()))).isoformat()
    if not requests:
        return dg.SkipReason("no zone has finished a new day")
    return dg.SensorResult(run_requests=requests, cursor=json.dumps(done, sort_keys=True))


@dg.sensor(job=extract_reports_job, minimum_interval_seconds=120, default_status=dg.DefaultSensorStatus.RUNNING)
def late_events_sensor(context: dg.SensorEvaluationContext, app: AppResource) -> dg.SensorResult | dg.SkipReason:
    """Recompute cached client-days that late calls made stale, one run per (date, zone), those clients only.

    Cursor: the newest ingest instant seen. Each tick re-reads ``LATE_OVERLAP`` before it, since an
    import's commits can land after their stamps; the manifest comparison makes that idempotent. A
    stale day before the partitions start is reported in the tick's log and never requested.
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
    first_day = application.settings.history_start
    for item in [s for s in stale if s.day < first_day][:20]:
        context.log.warning("stale client-day %s %s is before the partitions start (%s); not requested",
                            item.client_id, item.day, first_day)
    stale = [s for s in stale if s.day >= first_day]
    cursor = json.dumps({"seen": max(seen, newest).isoformat() if newest else seen.isoformat()})
    if not stale:
        return dg.SensorResult(skip_reason=dg.SkipReason("no cached client-day went stale"), cursor=cursor)
    by_zone_day: dict[tuple[str, dt.date], list] = defaultdict(list)
    for item in stale:
        by_zone_day[(item.timezone, item.day)].append(item)
    requests = []
    for (zone, day), items in sorted(by_zone_day.items()):
        ids = sorted({i.client_id for i in items})
        newest_ingest = max(i.newest_ingest for i in items).isoformat()
        fingerprint = hashlib.sha256(f"{ids}{newest_ingest}".encode()).hexdigest()[:12]
        requests.append(extract_request(day, [zone], f"late:{zone}:{day}:{fingerprint}", "late_events",
                                        client_ids=ids))
    context.log.info("%s stale client-days in %s zone-days", len(stale), len(requests))
    return dg.SensorResult(run_requests=requests, cursor=cursor)
