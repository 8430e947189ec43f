"""Late data: events that arrive for a client-day already cached make that client-day stale."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from sqlalchemy import Engine

from report_pipelines.adapters.db.cdr_imports import CallEventChanges
from report_pipelines.adapters.db.repositories import CacheManifestRepository, CallEventRepository
from report_pipelines.domain.timezones import local_date_of, local_day_window, parse_zone
from report_pipelines.services.serving import servings


@dataclass(frozen=True, order=True)
class StaleClientDay:
    timezone: str
    day: dt.date
    client_id: int
    newest_ingest: dt.datetime


def find_stale_client_days(engine: Engine, since: dt.datetime, now: dt.datetime) -> tuple[list[StaleClientDay], dt.datetime | None]:
    """Cached client-days that calls ingested after ``since`` have made stale; and the newest ingest seen.

    A client-day is stale when its manifest says it was built from older data than what arrived
    (watermark) or from a different number of calls (an import that stamped several commits with one
    instant). Days not cached yet are not stale (nothing to correct), the current local day is
    never cached, and a day the pipelines no longer serve (:mod:`~report_pipelines.services.serving`) is
    not work: its cache stays as it was, readable. Days an ``import-cdr --replace`` touched after
    ``since`` are looked at too (``call_event_changes``): a day whose calls were all deleted has no new
    ingest to be found by; so are days a queue_log import changed the agent sessions or pauses of
    (their calls may not have changed): such a day is stale when it was computed before the change.
    """
    events = CallEventRepository(engine)
    manifest = CacheManifestRepository(engine)
    serving = servings(engine, now)
    clients = {client_id: s.client for client_id, s in serving.items()}
    newest: dict[tuple[int, dt.date], dt.datetime] = {}
    seen: dt.datetime | None = None
    for client_id, bucket, ingested in events.ingested_since(since):
        seen = ingested if seen is None else max(seen, ingested)
        client = clients.get(client_id)
        if client is None:
            continue
        day = local_date_of(bucket, parse_zone(client.timezone))
        key = (client_id, day)
        newest[key] = max(newest.get(key, ingested), ingested)
    changed_at: dict[tuple[int, dt.date], dt.datetime] = {}
    for client_id, day, changed in CallEventChanges(engine).since(since):
        seen = changed if seen is None else max(seen, changed)
        if client_id in clients:
            newest[(client_id, day)] = max(newest.get((client_id, day), changed), changed)
            changed_at[(client_id, day)] = max(changed_at.get((client_id, day), changed), changed)
    stale = []
    for (client_id, day), ingested in sorted(newest.items()):
        client = clients[client_id]
        window = local_day_window(day, parse_zone(client.timezone))
        if window[1] > now or not serving[client_id].serves(day):
            continue
        entries = manifest.entries(client_id, day, day)
        if not entries:
            continue
        source = events.day_source(client_id, *window)
        change = changed_at.get((client_id, day))
        if any(not e.is_fresh(source, change) for e in entries):
            stale.append(StaleClientDay(client.timezone, day, client_id, ingested))
    return stale, seen
