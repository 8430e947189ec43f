"""Zone-days: what one Dagster partition of the report assets covers.

A partition is (local date x client time zone): every client of that zone that exists on that date,
each as one client-day work item. This module turns partitions into work items (largest first) and
the work's results back into per-partition figures for the UI.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field

from sqlalchemy import Engine

from report_pipelines.adapters.db.repositories import CallEventRepository
from report_pipelines.domain.errors import InvalidInput
from report_pipelines.domain.timezones import local_day_window, parse_zone
from report_pipelines.services.extracts import ClientDay, ClientDayResult, DayNotClosed
from report_pipelines.services.serving import served_clients


@dataclass(frozen=True, order=True)
class ZoneDay:
    day: dt.date
    timezone: str

    @property
    def window(self) -> tuple[dt.datetime, dt.datetime]:
        return local_day_window(self.day, parse_zone(self.timezone))


@dataclass
class ZoneDayPlan:
    zone_day: ZoneDay
    tasks: list[ClientDay] = field(default_factory=list)


def plan_zone_days(engine: Engine, zone_days: Iterable[ZoneDay], *, now: dt.datetime,
                   client_ids: Iterable[int] | None = None) -> list[ZoneDayPlan]:
    """The client-days of each zone-day, weighted by their number of calls.

    The clients are those whose day is served (:mod:`report_pipelines.services.serving`, the same rule
    the checks, the staleness scan and the readers use); existing caches of others stay readable.

    Refuses (naming ``date``) a zone-day that has not ended yet: the current local day is computed
    live by readers and never cached. ``client_ids`` restricts the work to those clients; an id that
    is not a client of any requested zone is refused (naming ``client_ids``), so a typo never turns
    into a silent no-op.
    """
    events = CallEventRepository(engine)
    wanted = None if client_ids is None else set(client_ids)
    seen: set[int] = set()
    plans = []
    for zone_day in sorted(set(zone_days)):
        start, end = zone_day.window
        if end > now:
            raise DayNotClosed(
                "date", f"{zone_day.day} has not ended in {zone_day.timezone} yet (it ends at {end.isoformat()}); "
                        "the current local day is computed live, never cached")
        members = served_clients(engine, zone_day.timezone, zone_day.day, now)
        if wanted is not None:
            members = [c for c in members if c.id in wanted]
        seen.update(c.id for c in members)
        counts = events.window_counts([c.id for c in members], start, end)
        plans.append(ZoneDayPlan(zone_day, [
            ClientDay(c.id, c.timezone, zone_day.day, weight=counts.get(c.id, 0)) for c in members
        ]))
    if wanted is not None and wanted - seen:
        raise InvalidInput("client_ids", f"not served clients of the requested zones and dates: {sorted(wanted - seen)}")
    return plans


@dataclass(frozen=True)
class ZoneDaySummary:
    """What a partition's run did, as shown in the Dagster UI."""

    zone_day: ZoneDay
    clients: int
    computed: int
    reused: int
    rows: dict[str, int]
    bytes: dict[str, int]
    source_rows: int
    rejected: dict[str, int]
    seconds: float
    slowest: ClientDayResult | None


def summarize(plans: list[ZoneDayPlan], results: Iterable[ClientDayResult]) -> list[ZoneDaySummary]:
    by_zone_day: dict[ZoneDay, list[ClientDayResult]] = defaultdict(list)
    for result in results:
        by_zone_day[ZoneDay(result.day, result.timezone)].append(result)
    summaries = []
    for plan in plans:
        done = by_zone_day.get(plan.zone_day, [])
        rows: dict[str, int] = defaultdict(int)
        size: dict[str, int] = defaultdict(int)
        rejected: dict[str, int] = defaultdict(int)
        for result in done:
            for name, n in result.rows.items():
                rows[name] += n
            for name, n in result.bytes.items():
                size[name] += n
            for reason, n in result.rejected.items():
                rejected[reason] += n
        summaries.append(ZoneDaySummary(
            zone_day=plan.zone_day, clients=len(plan.tasks),
            computed=sum(r.status == "computed" for r in done), reused=sum(r.status == "reused" for r in done),
            rows=dict(rows), bytes=dict(size), source_rows=sum(r.source_rows for r in done),
            rejected=dict(rejected), seconds=sum(r.seconds for r in done),
            slowest=max(done, key=lambda r: r.seconds, default=None),
        ))
    return summaries
