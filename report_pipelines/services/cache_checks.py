"""Checks of the cache against its source: what the Dagster asset checks report."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Engine, select

from report_pipelines.adapters.db.models import CallEvent
from report_pipelines.adapters.db.repositories import CacheManifestRepository, ClientRepository
from report_pipelines.adapters.report_store import ParquetReportStore
from report_pipelines.domain.cache import call_ids_checksum
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
    Returns (client-days checked, findings).
    """
    manifest = CacheManifestRepository(engine)
    clients = ClientRepository(engine)
    checked = 0
    findings: list[Finding] = []
    for zone_day in zone_days:
        members = [c.id for c in clients.in_zone(zone_day.timezone)]
        start, end = zone_day.window
        for entry in manifest.entries_for_day(members, zone_day.day):
            if entry.report != report:
                continue
            checked += 1
            with engine.connect() as conn:
                ids = list(conn.scalars(select(CallEvent.pbx_call_id).where(
                    CallEvent.client_id == entry.client_id, CallEvent.started_at >= start, CallEvent.started_at < end)))
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
                        report: str) -> tuple[int, list[Finding]]:
    """Client-days of these zone-days that should be cached for ``report`` and are not (row or file)."""
    manifest = CacheManifestRepository(engine)
    clients = ClientRepository(engine)
    expected = 0
    findings: list[Finding] = []
    for zone_day in zone_days:
        members = [c.id for c in clients.in_zone(zone_day.timezone) if c.active_from <= zone_day.day]
        expected += len(members)
        cached = {e.client_id for e in manifest.entries_for_day(members, zone_day.day) if e.report == report}
        for client_id in members:
            if client_id not in cached:
                findings.append(Finding(client_id, zone_day.day.isoformat(), "no manifest entry"))
            elif not store.exists(report, client_id, zone_day.day):
                findings.append(Finding(client_id, zone_day.day.isoformat(), "manifest entry but no file"))
    return expected, findings
