"""The D-1 pre-cache: the usage study, the plan it gives, and the runs that carry it out.

The rules live in :mod:`report_pipelines.domain.precache`; this module reads what they need (the
served clients, the usage log, the operators' choices, the schedules, the expected size of each
client's day) and hands the decisions to whoever asks:

* the daily asset ``d1_precache_plan`` (and ``report-pipelines precache plan``): every served client's
  decision for its *next* pre-cache, the one that closes its current local day (:func:`precache_plan`);
* the planning sensor, at each zone's local midnight plus the grace period: which runs to request, in
  which order, with which run keys (:func:`due_precache_runs`), decided from the same rules for that
  zone's closed day (:func:`zone_day_plan`);
* the run itself: the given client-days, in the given order, on the bounded pool
  (:func:`precache_client_days`).
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from report_pipelines.adapters.db.repositories import CallEventRepository
from report_pipelines.adapters.db.usage import PrecacheChoiceRepository, StoredSchedule, UsageRepository
from report_pipelines.app import App
from report_pipelines.domain.clients import ClientRecord
from report_pipelines.domain.errors import InvalidInput
from report_pipelines.domain.precache import (
    OVERRIDES,
    Candidate,
    ClientDecision,
    D1Usage,
    OperatorChoice,
    ScheduleNeed,
    Thresholds,
    decide,
    nearest_rank,
    others_instant,
    parse_quiet_hours,
    precache_instant,
    precache_order,
    ready_by_instant,
    schedule_need,
    schedule_rule,
    study,
)
from report_pipelines.domain.schedules import PeriodSpec
from report_pipelines.domain.timezones import local_date_of, local_day_window, parse_zone
from report_pipelines.services.cache_checks import missing_client_days
from report_pipelines.services.clients import get_client
from report_pipelines.services.extracts import ANY_TIME, ClientDay, ClientDayResult, run_client_days
from report_pipelines.services.serving import servings
from report_pipelines.services.zone_days import ZoneDay

ONE_DAY = dt.timedelta(days=1)
#: Dagster run priorities (the run queue launches higher first): priority clients before the rest.
PRIORITY_RUN, OTHERS_RUN = 10, -10
#: Missed closed days per zone that a paused sensor catches up on.
CATCH_UP_DAYS = 7
TIERS = ("priority", "others")


@dataclass(frozen=True)
class ClientPlan:
    """One client's decision for the pre-cache of ``closed_day`` (its local date), with the study behind it."""

    client: ClientRecord
    closed_day: dt.date
    usage: D1Usage
    typical_minute: int | None
    need: ScheduleNeed | None
    choice: OperatorChoice | None
    decided: ClientDecision
    ready_by: dt.datetime | None  # UTC
    weight: int  # calls of the closed day (so far), the expected size of the work

    @property
    def decision(self) -> str:
        return self.decided.decision

    def candidate(self) -> Candidate:
        return Candidate(self.client.id, self.decided.decision, self.ready_by, self.weight)

    def record(self) -> dict:
        """The plan's row as the UI table and the CLI show it."""
        local = self.ready_by.astimezone(parse_zone(self.client.timezone)) if self.ready_by else None
        return {
            "client": self.client.slug, "timezone": self.client.timezone, "closed_day": self.closed_day.isoformat(),
            "d1_requests": self.usage.requests, "days_asked": self.usage.days_asked,
            "days_observed": self.usage.days_observed, "d1_share": round(self.usage.share, 3),
            "typical_first_request": _clock(self.typical_minute),
            "schedule": f"#{self.need.schedule_id} at {_clock(self.need.local_minute)}" if self.need else "",
            "decision": self.decided.decision, "ready_by": f"{local:%H:%M}" if local else "",
            "reason": self.decided.reason,
            "set_by": f"{self.choice.decision} by {self.choice.by} at {self.choice.at:%Y-%m-%d %H:%M} UTC"
            if self.choice else "",
        }


def _clock(minute: int | None) -> str:
    return "" if minute is None else f"{minute // 60:02d}:{minute % 60:02d}"


def thresholds_of(app: App) -> Thresholds:
    p = app.settings.periods
    return Thresholds(min_share=p.min_share_percent / 100, min_requests=p.min_requests, percentile=p.percentile)


def _plans(app: App, clients: list[tuple[ClientRecord, dt.date]]) -> list[ClientPlan]:
    """Decide for each (client, closed day): one query per kind of fact, whatever the number of clients."""
    if not clients:
        return []
    engine = app.engine
    ids = [c.id for c, _ in clients]
    window = app.settings.periods.window_days
    earliest = min(day for _, day in clients) - dt.timedelta(days=window)
    since = dt.datetime.combine(earliest - ONE_DAY, dt.time(), dt.UTC)
    usage_log = UsageRepository(engine)
    asked = usage_log.d1_requests(ids, earliest, max(day for _, day in clients) + ONE_DAY, since)
    first_logged = usage_log.first_logged(ids)
    choices = PrecacheChoiceRepository(engine).choices(ids)
    schedules: dict[int, list] = {}
    for row in usage_log.active_schedules(ids):
        schedules.setdefault(row.client_id, []).append(row)
    weights = _weights(app, clients)
    thresholds = thresholds_of(app)
    plans = []
    for client, closed_day in clients:
        usage = study(asked.get(client.id, []), first_logged.get(client.id), closed_day + ONE_DAY, window)
        needs = [need for row in schedules.get(client.id, []) if (need := _need(row, closed_day, client.timezone))]
        need = min(needs, key=lambda n: n.at, default=None)
        choice = choices.get(client.id)
        decided = decide(usage, thresholds, need, choice)
        ready_by = ready_by_instant(closed_day, decided.ready_by_minute, client.timezone)
        if need is not None and decided.ready_by_minute == need.local_minute:
            ready_by = need.at  # exact, even for a schedule in another zone
        typical = nearest_rank(usage.first_minutes, thresholds.percentile)
        plans.append(ClientPlan(client, closed_day, usage, None if typical is None else int(typical), need, choice,
                                decided, ready_by, weights.get((client.id, closed_day), 0)))
    return plans


def _need(row: StoredSchedule, closed_day: dt.date, client_zone: str) -> ScheduleNeed | None:
    try:
        rule = schedule_rule(row.frequency, row.send_time, row.timezone, row.weekdays, row.month_day)
        period = PeriodSpec.parse(row.period, row.period_days)
    except InvalidInput:  # a schedule the schedules' own checks would refuse: not this plan's business
        return None
    return schedule_need(row.id, rule, period, closed_day, client_zone)


def _weights(app: App, clients: list[tuple[ClientRecord, dt.date]]) -> dict[tuple[int, dt.date], int]:
    """Calls of each client's closed day, one count query per (zone, day)."""
    events = CallEventRepository(app.engine)
    groups: dict[tuple[str, dt.date], list[int]] = {}
    for client, day in clients:
        groups.setdefault((client.timezone, day), []).append(client.id)
    weights = {}
    for (zone, day), ids in groups.items():
        for client_id, n in events.window_counts(ids, *local_day_window(day, parse_zone(zone))).items():
            weights[(client_id, day)] = n
    return weights


def precache_plan(app: App, now: dt.datetime, *, zone: str | None = None) -> list[ClientPlan]:
    """Every served client's decision for its next pre-cache (of its current local date, at its next
    local midnight plus the grace period), by zone then by the order it will be requested in."""
    served = [(s.client, s.today) for s in servings(app.engine, now, zone=zone).values() if s.serves(s.today)]
    plans = _plans(app, served)
    ordered = []
    for zone_name in sorted({p.client.timezone for p in plans}):
        members = {p.client.id: p for p in plans if p.client.timezone == zone_name}
        first, then = precache_order(p.candidate() for p in members.values())
        skipped = [p for p in members.values() if p.decision == "skip"]
        ordered += [members[c.client_id] for c in (*first, *then)] + sorted(skipped, key=lambda p: p.client.slug)
    return ordered


@dataclass(frozen=True)
class ZoneDayPlan:
    """What a zone's closed day's pre-cache requests: the priority run, then the others."""

    zone: str
    closed_day: dt.date
    priority: list[ClientPlan]
    others: list[ClientPlan]
    skipped: list[ClientPlan]
    at: dt.datetime  # the priority run (UTC)
    others_at: dt.datetime  # the others' run (UTC)


def zone_day_plan(app: App, zone: str, closed_day: dt.date, now: dt.datetime) -> ZoneDayPlan:
    """The zone's served clients of ``closed_day``, decided and ordered (see the domain module)."""
    served = [(s.client, closed_day) for s in servings(app.engine, now, zone=zone).values() if s.serves(closed_day)]
    plans = {p.client.id: p for p in _plans(app, served)}
    first, then = precache_order(p.candidate() for p in plans.values())
    periods = app.settings.periods
    quiet = parse_quiet_hours(periods.quiet_hours) if periods.quiet_hours else None
    return ZoneDayPlan(
        zone=zone, closed_day=closed_day, priority=[plans[c.client_id] for c in first],
        others=[plans[c.client_id] for c in then],
        skipped=sorted((p for p in plans.values() if p.decision == "skip"), key=lambda p: p.client.id),
        at=precache_instant(closed_day, zone, periods.grace_minutes),
        others_at=others_instant(closed_day, zone, periods.grace_minutes, quiet))


# --- the planning sensor's decisions --------------------------------------------------------------------
@dataclass(frozen=True)
class PlannedRun:
    """One run to request: one tier of one zone's closed day, its clients in order."""

    zone: str
    day: dt.date
    tier: str  # priority / others
    client_ids: tuple[int, ...]
    ready_by: tuple[str, ...]  # per client: ISO instant (UTC) or ""
    first_ready_by: dt.datetime | None
    late: bool = False  # requested after its time (the sensor was paused)

    @property
    def run_key(self) -> str:
        return f"d1:{self.zone}:{self.day.isoformat()}:{self.tier}"

    @property
    def run_priority(self) -> int:
        return PRIORITY_RUN if self.tier == "priority" else OTHERS_RUN


@dataclass
class SensorDecision:
    runs: list[PlannedRun] = field(default_factory=list)
    cursor: dict[str, dict[str, str]] = field(default_factory=dict)
    waiting: list[str] = field(default_factory=list)  # zone: when its next run is due (for the skip reason)


def _run(plan: ZoneDayPlan, tier: str, late: bool) -> PlannedRun | None:
    members = plan.priority if tier == "priority" else plan.others
    if not members:
        return None
    return PlannedRun(plan.zone, plan.closed_day, tier, tuple(p.client.id for p in members),
                      tuple(p.ready_by.isoformat() if p.ready_by else "" for p in members),
                      next((p.ready_by for p in members if p.ready_by), None), late)


def due_precache_runs(app: App, zones: Iterable[str], cursor: dict[str, dict[str, str]],
                      now: dt.datetime) -> SensorDecision:
    """The runs due at ``now`` and the new cursor (per zone and tier: the last closed day requested).

    For each zone, the latest day due is its last closed day once ``now`` is past that day's pre-cache
    instant (local midnight + grace), else the day before. A zone seen for the first time starts there;
    after a pause, at most :data:`CATCH_UP_DAYS` missed days are requested (late). The priority run of a
    day is due at its pre-cache instant, the others' at :func:`~report_pipelines.domain.precache.
    others_instant` (the same instant, or the quiet hours). Runs come priority tier first, earliest
    ready-by first.
    """
    periods = app.settings.periods
    decision = SensorDecision(cursor={zone: dict(tiers) for zone, tiers in cursor.items()})
    for zone in zones:
        tz = parse_zone(zone)
        last_closed = local_date_of(now, tz) - ONE_DAY
        latest = last_closed if now >= precache_instant(last_closed, zone, periods.grace_minutes) else last_closed - ONE_DAY
        done = decision.cursor.setdefault(zone, {})
        plans: dict[dt.date, ZoneDayPlan] = {}
        for tier in TIERS:
            previous = dt.date.fromisoformat(done[tier]) if tier in done else latest - ONE_DAY
            day = max(previous + ONE_DAY, latest - dt.timedelta(days=CATCH_UP_DAYS - 1))
            while day <= latest:
                if day not in plans:
                    plans[day] = zone_day_plan(app, zone, day, now)
                plan = plans[day]
                due = plan.at if tier == "priority" else plan.others_at
                if due > now:
                    decision.waiting.append(f"{zone} {tier} of {day} at {due:%Y-%m-%d %H:%M} UTC")
                    break
                run = _run(plan, tier, late=day < latest)
                if run:
                    decision.runs.append(run)
                done[tier] = day.isoformat()
                day += ONE_DAY
    far = dt.datetime.max.replace(tzinfo=dt.UTC)
    decision.runs.sort(key=lambda r: (r.tier != "priority", r.first_ready_by or far, r.day, r.zone))
    return decision


def cursor_json(cursor: dict[str, dict[str, str]]) -> str:
    return json.dumps(cursor, sort_keys=True)


# --- the run ---------------------------------------------------------------------------------------------
def precache_client_days(app: App, zone: str, day: dt.date, client_ids: list[int], *, now: dt.datetime,
                         run_id: str | None = None, workers: int | None = None,
                         on_result: Callable[[ClientDayResult], None] | None = None) -> list[ClientDayResult]:
    """Cache every report of these clients' ``day`` in the order given (earliest ready-by first); a client-day
    still fresh in the cache is reused, one another run is computing is waited for and reused."""
    parse_zone(zone, "timezone")
    found = servings(app.engine, now, client_ids=client_ids)
    unknown = [i for i in client_ids if i not in found or found[i].client.timezone != zone]
    if unknown:
        raise InvalidInput("client_ids", f"not clients of {zone}: {unknown[:10]}")
    served = [i for i in client_ids if found[i].serves(day)]  # a licence may have ended since the plan
    window = local_day_window(day, parse_zone(zone))
    counts = CallEventRepository(app.engine).window_counts(served, *window)
    tasks = [ClientDay(i, zone, day, weight=counts.get(i, 0)) for i in served]
    return run_client_days(app, tasks, workers=workers or app.settings.workers, now=now, run_id=run_id,
                           reuse_since=ANY_TIME, on_result=on_result, order="given")


def zone_day_complete(app: App, zone: str, day: dt.date, reports: Iterable[str], now: dt.datetime) -> bool:
    """Every served client's ``day`` is cached for every report, the clients set to ``skip`` aside."""
    skipped = {i for i, c in PrecacheChoiceRepository(app.engine).choices().items() if c.decision == "skip"}
    _, findings = missing_client_days(app.engine, app.store, [ZoneDay(day, zone)], list(reports), now)
    return all(f.client_id in skipped for f in findings)


# --- operators' choices -------------------------------------------------------------------------------
def set_precache_choice(app: App, slug: str, decision: str, *, by: str, note: str | None = None,
                        now: dt.datetime | None = None) -> OperatorChoice:
    """Force a client in (``priority``), to ``normal``, out (``skip``), or give it back to the study (``auto``)."""
    if decision not in OVERRIDES:
        raise InvalidInput("decision", f"{decision!r} is not one of {', '.join(OVERRIDES)}")
    if not by or not by.strip() or len(by) > 200:
        raise InvalidInput("by", "say who sets it (1-200 characters)")
    client = get_client(app.engine, slug)
    at = (now or app.now()).replace(microsecond=0)
    PrecacheChoiceRepository(app.engine).set(client.id, decision, by.strip(), at, note)
    return OperatorChoice(decision, by.strip(), at, note)  # type: ignore[arg-type]


__all__ = ["CATCH_UP_DAYS", "ClientPlan", "PlannedRun", "SensorDecision", "ZoneDayPlan", "cursor_json",
           "due_precache_runs", "precache_client_days", "precache_plan", "set_precache_choice", "zone_day_complete",
           "zone_day_plan"]
