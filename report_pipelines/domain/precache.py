"""The D-1 pre-cache plan's rules: who gets yesterday first, by when, and when each zone's runs start.

Every zone's closed day is pre-cached for all its served clients after the zone's local midnight. At
the scale this is for (thousands of clients, one pool) the *order* matters more than the set: a
client who opens yesterday's report at 07:30 local must have it by then; a client who never asks can
wait. Pure Python and ``zoneinfo``; the usage log's figures come in as plain values.

**The study** (:class:`D1Usage`, per client over the last ``window_days`` local days before today):
how many requests asked for a period ending on the client's yesterday (a *D-1 request*), on how many
of those days there was one (the *share*, over the days the client could have asked: since its first
logged request, at most the window), and the local time of the first D-1 request of each such day.
The *typical first request* is a low percentile (nearest rank) of those times: most days, the client
asks no earlier than that.

**The decision** (:func:`decide`), with its reason:

* ``priority``: the client asks for D-1 often (at least ``min_requests`` D-1 requests and a share of
  at least ``min_share``), or one of its schedules sends a report whose period ends yesterday. Its
  *ready-by* local time is the earlier of the typical first request and that schedule's send time;
* ``normal``: everything else, a brand-new client (no log yet) included;
* an operator's choice (``precache set SLUG --priority|--normal|--skip``) wins over the study;
  ``skip`` is not pre-cached at all (its days are computed when asked for), ``auto`` gives the
  decision back to the study.

**The order** (:func:`precache_order`): a zone's priority clients are requested first, earliest
ready-by first (earliest deadline first; no ready-by last, then the larger day first); the normal
ones follow, largest day first, in a second run with a lower run priority or in the zone's quiet
hours (:func:`others_instant`).

**The instants**: a zone's closed day ``Y`` is pre-cached at its local midnight of ``Y+1`` plus the
grace period (late calls of the last minutes arrive); a wall time in a spring-forward gap means the
first instant after the gap (the rule of the scheduled reports, :func:`~report_pipelines.domain.
schedules.occurrence_on`).
"""

from __future__ import annotations

import datetime as dt
import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Literal

from report_pipelines.domain.errors import InvalidInput
from report_pipelines.domain.schedules import (
    Frequency,
    PeriodSpec,
    ScheduleRule,
    occurrence_on,
    occurrences,
    period_for,
)
from report_pipelines.domain.timezones import UTC, local_midnight_utc, parse_zone

Decision = Literal["priority", "normal", "skip"]
Override = Literal["priority", "normal", "skip", "auto"]
OVERRIDES: tuple[str, ...] = ("priority", "normal", "skip", "auto")
ONE_DAY = dt.timedelta(days=1)

_HOURS = re.compile(r"([0-9]{1,2}):([0-9]{2})-([0-9]{1,2}):([0-9]{2})")


# --- quiet hours ------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class QuietHours:
    """A local wall-clock window ``[start, end)``; ``end <= start`` wraps midnight (22:00-05:00)."""

    start: dt.time
    end: dt.time

    def contains(self, wall: dt.time) -> bool:
        if self.start < self.end:
            return self.start <= wall < self.end
        return wall >= self.start or wall < self.end

    def __str__(self) -> str:
        return f"{self.start:%H:%M}-{self.end:%H:%M}"


def parse_quiet_hours(text: str, field: str = "quiet_hours") -> QuietHours:
    """``"HH:MM-HH:MM"`` (24-hour local clock) as :class:`QuietHours`; a refusal names ``field``."""
    match = _HOURS.fullmatch(text.strip()) if isinstance(text, str) else None
    if not match or int(match[1]) > 23 or int(match[3]) > 23 or int(match[2]) > 59 or int(match[4]) > 59:
        raise InvalidInput(field, f"{str(text)[:40]!r} is not a local window HH:MM-HH:MM such as 01:00-05:00")
    quiet = QuietHours(dt.time(int(match[1]), int(match[2])), dt.time(int(match[3]), int(match[4])))
    if quiet.start == quiet.end:
        raise InvalidInput(field, f"{text!r} is an empty window (start equals end)")
    return quiet


# --- the study --------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Thresholds:
    """When a client's D-1 habit makes it ``priority`` (the settings' values)."""

    min_share: float = 0.25  # share of observed days with a D-1 request
    min_requests: int = 3  # D-1 requests in the window
    percentile: int = 10  # of the first D-1 request's local minute: the typical first request


@dataclass(frozen=True, slots=True)
class D1Usage:
    """What the usage log says about one client's D-1 requests over the window."""

    requests: int = 0  # D-1 requests in the window
    days_asked: int = 0  # local dates in the window with at least one D-1 request
    days_observed: int = 0  # dates of the window the client could have asked (since its first logged request)
    first_minutes: tuple[int, ...] = ()  # per asked date: local minute (0..1439) of the first D-1 request

    @property
    def share(self) -> float:
        return self.days_asked / self.days_observed if self.days_observed else 0.0


def nearest_rank(values: Sequence[float], percentile: float) -> float | None:
    """The nearest-rank percentile: the r-th smallest value, r = ceil(p x n / 100) (at least 1)."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(percentile * len(ordered) / 100))
    return ordered[min(rank, len(ordered)) - 1]


def study(asked: Iterable[tuple[dt.date, int, int]], first_logged: dt.date | None, today: dt.date,
          window_days: int) -> D1Usage:
    """A client's :class:`D1Usage` from its D-1 requests grouped by local date.

    ``asked``: ``(local date of the request, local minute of its first D-1 request, D-1 requests that
    date)``; dates outside the window (the ``window_days`` dates before ``today``) are ignored.
    ``first_logged``: the local date of the client's first logged request of any kind (``None``: none).
    """
    first = today - dt.timedelta(days=window_days)
    last = today - ONE_DAY
    inside = sorted((day, minute, n) for day, minute, n in asked if first <= day <= last)
    observed = 0 if first_logged is None or first_logged > last else (last - max(first, first_logged)).days + 1
    return D1Usage(requests=sum(n for _, _, n in inside), days_asked=len({day for day, _, _ in inside}),
                   days_observed=observed, first_minutes=tuple(minute for _, minute, _ in inside))


def clock(minute: int | None) -> str:
    return "-" if minute is None else f"{minute // 60:02d}:{minute % 60:02d}"


# --- schedules that need yesterday ------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class ScheduleNeed:
    """A schedule whose next occurrence reads the closed day: it must be cached by ``at`` (UTC)."""

    schedule_id: int
    at: dt.datetime
    local_minute: int  # ``at`` on the client's local clock


def schedule_rule(frequency: str, send_time: str, timezone: str, weekdays: str | None,
                  month_day: int | None) -> ScheduleRule:
    """A stored schedule's rule (weekdays stored as ``"0,2"``)."""
    return ScheduleRule.parse(frequency, send_time, timezone, weekdays or (), month_day)


def schedule_need(schedule_id: int, rule: ScheduleRule, period: PeriodSpec, closed_day: dt.date,
                  client_zone: str) -> ScheduleNeed | None:
    """When a schedule next needs the client's local ``closed_day``, if it does within two days.

    A schedule's periods are local dates of *its own* zone, read as the client's days; so look at its
    occurrences from the client's midnight that closes the day for 48 hours (a schedule in a zone far
    behind the client's sends later on the client's clock) and take the first whose period ends on
    ``closed_day``.
    """
    zone = parse_zone(client_zone)
    opened = local_midnight_utc(closed_day + ONE_DAY, zone)
    for instant in occurrences(rule, opened - dt.timedelta(microseconds=1), opened + 2 * ONE_DAY):
        if period_for(period, instant, rule.timezone)[1] == closed_day:
            local = instant.astimezone(zone)
            minute = local.hour * 60 + local.minute if local.date() == closed_day + ONE_DAY else 24 * 60 - 1
            return ScheduleNeed(schedule_id, instant, minute)
    return None


# --- the decision -----------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class OperatorChoice:
    decision: Override
    by: str
    at: dt.datetime
    note: str | None = None


@dataclass(frozen=True, slots=True)
class ClientDecision:
    decision: Decision
    reason: str
    ready_by_minute: int | None  # local wall minute of the day after the closed day


def decide(usage: D1Usage, thresholds: Thresholds, need: ScheduleNeed | None,
           choice: OperatorChoice | None = None) -> ClientDecision:
    """The client's decision and its reason (see the module docstring)."""
    typical = nearest_rank(usage.first_minutes, thresholds.percentile)
    typical_minute = None if typical is None else int(typical)
    often = usage.requests >= thresholds.min_requests and usage.share >= thresholds.min_share
    habit = (f"asked for D-1 on {usage.days_asked} of {usage.days_observed} days ({usage.share:.0%}), "
             f"{usage.requests} requests" if usage.days_observed else "no request in the log yet")
    if often:
        habit += f", first around {clock(typical_minute)}"
    schedule = f"schedule {need.schedule_id} sends it at {clock(need.local_minute)}" if need else ""
    candidates = [m for m in ((typical_minute if often else None), need.local_minute if need else None) if m is not None]
    ready_by = min(candidates) if candidates else None
    if choice is not None and choice.decision != "auto":
        forced = f"set to {choice.decision} by {choice.by} on {choice.at:%Y-%m-%d}"
        if choice.decision == "priority":
            return ClientDecision("priority", f"{forced}; {schedule or habit}", ready_by)
        if choice.decision == "skip" and need:
            return ClientDecision("skip", f"{forced}; {schedule}: it will be computed when that report is built", None)
        return ClientDecision(choice.decision, f"{forced}; {habit}", None)
    if need and often:
        return ClientDecision("priority", f"{schedule}; {habit}", ready_by)
    if need:
        return ClientDecision("priority", schedule, ready_by)
    if often:
        return ClientDecision("priority", habit, ready_by)
    if usage.days_observed and usage.requests < thresholds.min_requests:
        return ClientDecision("normal", f"{habit}: fewer than {thresholds.min_requests} D-1 requests", None)
    if usage.days_observed:
        return ClientDecision("normal", f"{habit}: under {thresholds.min_share:.0%} of days", None)
    return ClientDecision("normal", habit, None)


# --- the order and the instants ---------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Candidate:
    """One client of a zone-day's pre-cache: its decision, ready-by instant (UTC) and expected size."""

    client_id: int
    decision: Decision
    ready_by: dt.datetime | None
    weight: int = 0


def ready_by_instant(closed_day: dt.date, minute: int | None, zone: str) -> dt.datetime | None:
    """The ready-by local minute of the day after ``closed_day`` as a UTC instant (gap rule applied)."""
    if minute is None:
        return None
    rule = ScheduleRule(Frequency.DAILY, dt.time(minute // 60, minute % 60), parse_zone(zone).key)
    return occurrence_on(rule, closed_day + ONE_DAY)


def precache_order(candidates: Iterable[Candidate]) -> tuple[list[Candidate], list[Candidate]]:
    """(priority clients, earliest ready-by first; normal clients, largest first); ``skip`` in neither."""
    far = dt.datetime.max.replace(tzinfo=UTC)
    chosen = list(candidates)
    first = sorted((c for c in chosen if c.decision == "priority"),
                   key=lambda c: (c.ready_by or far, -c.weight, c.client_id))
    then = sorted((c for c in chosen if c.decision == "normal"), key=lambda c: (-c.weight, c.client_id))
    return first, then


def precache_instant(closed_day: dt.date, zone: str, grace_minutes: int) -> dt.datetime:
    """When a zone's closed day is pre-cached: the local midnight that ends it, plus the grace period."""
    return local_midnight_utc(closed_day + ONE_DAY, parse_zone(zone)) + dt.timedelta(minutes=grace_minutes)


def others_instant(closed_day: dt.date, zone: str, grace_minutes: int, quiet: QuietHours | None) -> dt.datetime:
    """When the non-priority clients' run is requested: with the priority one, or at the first instant
    after it that lies in the zone's quiet hours."""
    start = precache_instant(closed_day, zone, grace_minutes)
    if quiet is None:
        return start
    tz = parse_zone(zone)
    if quiet.contains(start.astimezone(tz).time()):
        return start
    rule = ScheduleRule(Frequency.DAILY, quiet.start, tz.key)
    for day in (closed_day + ONE_DAY, closed_day + 2 * ONE_DAY):
        instant = occurrence_on(rule, day)
        if instant is not None and instant > start:
            return instant
    raise AssertionError("unreachable: a daily window starts within two days")  # pragma: no cover


__all__ = ["OVERRIDES", "Candidate", "ClientDecision", "D1Usage", "Decision", "OperatorChoice", "Override",
           "QuietHours", "ScheduleNeed", "Thresholds", "decide", "nearest_rank", "others_instant", "parse_quiet_hours",
           "precache_instant", "precache_order", "ready_by_instant", "schedule_need", "schedule_rule", "study"]
