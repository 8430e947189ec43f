"""Checks of the cache against its source: what the Dagster asset checks report."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import Engine

from report_pipelines.adapters.db.repositories import CacheManifestRepository, CallEventRepository, ClientRepository
from report_pipelines.adapters.report_store import ParquetReportStore
from report_pipelines.domain.cache import call_ids_checksum
from report_pipelines.services.serving import Serving, servings
from report_pipelines.services.zone_days import ZoneDay


@dataclass(frozen=True)
class Finding:
    client_id: int
    day: str
    problem: str


def source_mismatches(engine: Engine, zone_days: list[ZoneDay], report: str = "call_detail") -> tuple[int, list[Finding]]:
    """For every cached client-day of these zone-days: does ``report`` still match the events?

    The events of the day are counted and their call ids fingerprinted again; both must equal what
    the manifest recorded, and the cached rows plus the rows screened out must add up to the events.
    Returns (client-days checked, findings). The zones' clients and the manifest rows are read once
    for all the zone-days, the call ids once per zone-day.
    """
    members = ClientRepository(engine).in_zones(z.timezone for z in zone_days)
    entries = CacheManifestRepository(engine).entries_for_days(
        ((c.id, z.day) for z in zone_days for c in members[z.timezone]), reports=[report])
    events = CallEventRepository(engine)
    checked = 0
    findings: list[Finding] = []
    for zone_day in zone_days:
        start, end = zone_day.window
        cached = [e for c in members[zone_day.timezone] for e in entries.get((c.id, zone_day.day), ())]
        # one query for the zone-day's call ids, not one per client-day
        source = events.zone_day_call_ids([e.client_id for e in cached], start, end,
                                          expected_rows=sum(e.source_rows for e in cached))
        for entry in cached:
            checked += 1
            ids = source.get(entry.client_id, [])
            day = zone_day.day.isoformat()
            if len(ids) != entry.source_rows:
                findings.append(Finding(entry.client_id, day, f"source has {len(ids)} calls, cache was built from {entry.source_rows}"))
            elif call_ids_checksum(ids) != entry.source_checksum:
                findings.append(Finding(entry.client_id, day, "same number of calls but different call ids"))
            if report == "call_detail" and entry.rows + entry.rejected_rows != entry.source_rows:
                findings.append(Finding(entry.client_id, day,
                                        f"{entry.rows} rows cached + {entry.rejected_rows} screened out != {entry.source_rows} calls"))
    return checked, findings


def missing_client_days(engine: Engine, store: ParquetReportStore, zone_days: list[ZoneDay],
                        report: str | Sequence[str], now: dt.datetime) -> tuple[int, list[Finding]]:
    """Client-days of these zone-days that should be cached for ``report`` (or for each of several
    reports) and are not (row or file). Expected are exactly the client-days the pipelines serve (the rule
    planning uses), as of ``now``; the zones' serving states and the manifest rows are read once for
    all the zone-days, whatever the number of reports. A finding's problem names the report when
    several are checked.
    """
    reports = [report] if isinstance(report, str) else list(report)
    by_zone: dict[str, list[Serving]] = {}
    for serving in servings(engine, now, zones={z.timezone for z in zone_days}).values():
        by_zone.setdefault(serving.client.timezone, []).append(serving)
    members = {z: [s.client.id for s in by_zone.get(z.timezone, ()) if s.serves(z.day)] for z in zone_days}
    entries = CacheManifestRepository(engine).entries_for_days(
        ((client_id, z.day) for z in zone_days for client_id in members[z]), reports=reports)
    expected = 0
    findings: list[Finding] = []
    for zone_day in zone_days:
        day = zone_day.day.isoformat()
        for name in reports:
            label = "" if isinstance(report, str) else f"{name}: "
            expected += len(members[zone_day])
            for client_id in members[zone_day]:
                if not any(e.report == name for e in entries.get((client_id, zone_day.day), ())):
                    findings.append(Finding(client_id, day, f"{label}no manifest entry"))
                elif not store.exists(name, client_id, zone_day.day):
                    findings.append(Finding(client_id, day, f"{label}manifest entry but no file"))
    return expected, findings
