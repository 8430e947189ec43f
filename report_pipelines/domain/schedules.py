"""Schedule rules of scheduled reports: when to send, and which local days a sending covers.

Pure Python and ``zoneinfo``: the planner stores ``next_send_at`` (UTC) from :func:`next_send_at`,
the processor asks :func:`period_for` which closed local days to put in the file, and a planner that
finds occurrences in the past (the daemon was down) asks :func:`plan_missed` what to do about them.

A rule says *on which local dates* (every day, some weekdays, one day of the month) and *at which
local wall-clock time* (minute precision) in the client's IANA zone. Each allowed local date has at
most one occurrence, found like this:

* **Ordinary days:** the instant at which the zone's clock shows ``send_time`` on that date.
* **Spring-forward gap** (the wall time does not exist, e.g. 02:30 on 2024-03-10 in
  America/New_York, where 02:00 EST jumps to 03:00 EDT): the occurrence is the *first valid instant
  after the gap*, i.e. the transition itself (03:00 EDT = 07:00 UTC). Reports are not silently skipped
  for a day, and they are not sent before the time asked (02:30 EST would be 03:30 EDT, an hour late;
  01:30 EST would be before the asked time). On Australia/Lord_Howe the gap is 30 minutes (02:00 →
  02:30), so 02:10 fires at 02:30 local.
* **Fall-back overlap** (the wall time happens twice, e.g. 01:30 on 2024-11-03 in America/New_York):
  the occurrence is the *first* of the two (``fold=0``, 01:30 EDT = 05:30 UTC), and there is no second
  one. A report is sent once per local date, never twice.
* **Short months:** a monthly ``month_day`` past the month's end means its last day (31 → 30 April,
  29/30/31 → 28 February, or 29 in a leap year).
* A local date that does not exist at all (Pacific/Apia skipped 2011-12-30) has no occurrence. No
  zone a client uses today does that.

An occurrence therefore always lies on the local date it belongs to, and occurrences are strictly
increasing in time. Every instant returned is an aware ``datetime`` in UTC.

**Periods** (:class:`PeriodSpec`) are made of the *client's* local days, the days its data are cut
in, that have closed at the send instant; the schedule's zone only decides when it is sent. So
:func:`period_for` reads the occurrence in the client's zone: a Tokyo schedule at 07:00 JST for a
Los Angeles client (14:00 PST the day before) sends LA's last closed day, never LA's unfinished
one; a schedule in a zone behind its client's sends the client's last closed day, never one before
it. Closed days only, never the client's current day: ``month_to_date`` is the 1st .. yesterday,
and on the 1st the whole month just ended. One consequence is stated plainly: where the offset
between the two zones changes (their DST dates differ) and the send time lies within that change
of the client's midnight, two successive daily sends can fall on the same client day (the same
period is sent twice) or skip one (``yesterday`` then misses a day that ``last_n_days`` would
cover).
**Missed occurrences** (:func:`plan_missed`): after an outage only the most recent due occurrence is
sent, once; the older ones are reported as skipped, never sent (no flood of stale reports).
"""

from __future__ import annotations

import calendar
import datetime as dt
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from enum import Enum
from zoneinfo import ZoneInfo

from report_pipelines.domain.errors import InvalidInput
from report_pipelines.domain.timezones import UTC, ensure_utc, parse_zone

ONE_DAY = dt.timedelta(days=1)


class Frequency(str, Enum):
    DAILY = "daily"
    WEEKLY = "weekly"
    MONTHLY = "monthly"


class PeriodRule(str, Enum):
    YESTERDAY = "yesterday"
    LAST_N_DAYS = "last_n_days"
    LAST_WEEK = "last_week"
    LAST_MONTH = "last_month"
    MONTH_TO_DATE = "month_to_date"


_WEEKDAY_NAMES: dict[str, int] = {}
for _number, _name in enumerate(("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")):
    _WEEKDAY_NAMES[_name] = _number
    _WEEKDAY_NAMES[_name[:3]] = _number
_WEEKDAY_NAMES.update({"tues": 1, "thur": 3, "thurs": 3})

_SEND_TIME = re.compile(r"([0-9]{1,2}):([0-9]{2})")
_ASCII_NUMBER = re.compile(r"[0-9]{1,3}")
_MAX_SHOWN = 40


def _show(value: object) -> str:
    text = repr(value)
    return text if len(text) <= _MAX_SHOWN else text[: _MAX_SHOWN - 3] + "..."


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


@dataclass(frozen=True, slots=True)
class ScheduleRule:
    """When a scheduled report is sent: local dates, local wall-clock time, IANA zone.

    ``weekdays`` (0 = Monday .. 6 = Sunday) is required for weekly rules and empty otherwise;
    ``month_day`` (1..31, past the month's end = its last day) is required for monthly rules and
    ``None`` otherwise. Constructing one directly validates it too; :meth:`parse` accepts the text a
    user or an API gives.
    """

    frequency: Frequency
    send_time: dt.time
    timezone: str
    weekdays: frozenset[int] = field(default_factory=frozenset)
    month_day: int | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.frequency, Frequency):
            raise InvalidInput("frequency", f"{_show(self.frequency)} is not a Frequency")
        t = self.send_time
        if not isinstance(t, dt.time) or t.tzinfo is not None or t.second or t.microsecond or t.fold:
            raise InvalidInput("send_time", f"{_show(t)} must be a local wall-clock time to the minute, without zone")
        zone = parse_zone(self.timezone, field="timezone")
        if zone.key != self.timezone:
            raise InvalidInput("timezone", f"{_show(self.timezone)} is not a canonical IANA name (did you mean {zone.key!r}?)")
        if not isinstance(self.weekdays, frozenset) or not all(_is_int(d) and 0 <= d <= 6 for d in self.weekdays):
            raise InvalidInput("weekdays", f"{_show(self.weekdays)} must be a frozenset of 0 (Monday) .. 6 (Sunday)")
        if self.frequency is Frequency.WEEKLY and not self.weekdays:
            raise InvalidInput("weekdays", "a weekly schedule needs at least one weekday")
        if self.frequency is not Frequency.WEEKLY and self.weekdays:
            raise InvalidInput("weekdays", f"weekdays are only for weekly schedules, not {self.frequency.value}")
        if self.frequency is Frequency.MONTHLY:
            if not _is_int(self.month_day) or not 1 <= self.month_day <= 31:
                raise InvalidInput("month_day", f"a monthly schedule needs a day of the month 1..31, got {_show(self.month_day)}")
        elif self.month_day is not None:
            raise InvalidInput("month_day", f"a day of the month is only for monthly schedules, not {self.frequency.value}")

    @classmethod
    def parse(
        cls,
        frequency: str,
        send_time: str,
        timezone: str,
        weekdays: Iterable[str | int] | str = (),
        month_day: int | str | None = None,
    ) -> ScheduleRule:
        """Validate user text into a rule; every refusal names its field.

        ``send_time`` is ``"HH:MM"`` on a 24-hour clock (``"7:05"`` is accepted, ``"24:00"``,
        ``"12:60"``, ``"7pm"`` and seconds are not). ``weekdays`` are names (``mon``, ``Monday``...),
        numbers 0-6 (0 = Monday) or their text, in a list or one comma/space separated string;
        duplicates collapse. ``month_day`` is 1..31 (an int or its text); empty text means none.
        """
        return cls(
            frequency=_parse_frequency(frequency),
            send_time=_parse_send_time(send_time),
            timezone=parse_zone(timezone, field="timezone").key,
            weekdays=_parse_weekdays(weekdays),
            month_day=_parse_month_day(month_day),
        )

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    def allows(self, day: dt.date) -> bool:
        """Whether the local date ``day`` is one the rule sends on."""
        if self.frequency is Frequency.DAILY:
            return True
        if self.frequency is Frequency.WEEKLY:
            return day.weekday() in self.weekdays
        assert self.month_day is not None
        return day.day == min(self.month_day, calendar.monthrange(day.year, day.month)[1])


def _parse_frequency(value: object) -> Frequency:
    if isinstance(value, Frequency):
        return value
    text = value.strip().lower() if isinstance(value, str) else value
    try:
        return Frequency(text)
    except ValueError:
        raise InvalidInput("frequency", f"{_show(value)} is not one of {', '.join(f.value for f in Frequency)}") from None


def _parse_send_time(value: object) -> dt.time:
    if isinstance(value, dt.time):
        return value  # checked by the constructor
    match = _SEND_TIME.fullmatch(value.strip()) if isinstance(value, str) else None
    if not match or int(match[1]) > 23 or int(match[2]) > 59:
        raise InvalidInput("send_time", f"{_show(value)} is not a time HH:MM on a 24-hour clock (00:00 to 23:59)")
    return dt.time(int(match[1]), int(match[2]))


def _parse_weekdays(value: Iterable[str | int] | str | None) -> frozenset[int]:
    if value is None:
        return frozenset()
    items: Iterable[object] = re.split(r"[\s,;]+", value.strip()) if isinstance(value, str) else value
    try:
        items = list(items)
    except TypeError:
        raise InvalidInput("weekdays", f"{_show(value)} is not a list of weekdays") from None
    days: set[int] = set()
    for item in items:
        if isinstance(item, str):
            text = item.strip().lower()
            if not text:
                continue
            number = int(text) if text in "0123456" else _WEEKDAY_NAMES.get(text)
        else:
            number = item if _is_int(item) else None
        if number is None or not 0 <= number <= 6:
            raise InvalidInput("weekdays", f"{_show(item)} is not a weekday (mon..sun, monday..sunday, or 0 = Monday .. 6 = Sunday)")
        days.add(number)
    return frozenset(days)


def _parse_month_day(value: int | str | None) -> int | None:
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if isinstance(value, str) and _ASCII_NUMBER.fullmatch(value.strip()):
        number: object = int(value.strip())
    else:
        number = value
    if not _is_int(number) or not 1 <= number <= 31:
        raise InvalidInput("month_day", f"{_show(value)} is not a day of the month 1..31")
    return number


# --- occurrences -------------------------------------------------------------------------------------
def occurrence_on(rule: ScheduleRule, day: dt.date) -> dt.datetime | None:
    """The rule's occurrence on local date ``day`` (UTC), or ``None`` if the rule skips that date.

    Applies the gap and overlap rules of the module docstring.
    """
    if not rule.allows(day):
        return None
    return _wall_to_utc(dt.datetime.combine(day, rule.send_time), rule.zone)


def _wall_to_utc(wall: dt.datetime, zone: ZoneInfo) -> dt.datetime | None:
    """The first instant at which ``zone``'s clock reads ``wall`` or later, if that is still ``wall``'s date."""
    first = wall.replace(tzinfo=zone, fold=0).astimezone(UTC)
    if first.astimezone(zone).replace(tzinfo=None) == wall:
        return first  # exists; in an overlap fold=0 is the earlier of the two
    # A gap: fold=0 read the wall time with the offset before the transition (too late), fold=1
    # with the offset after it (too early). The transition lies between; find it to the second.
    low = wall.replace(tzinfo=zone, fold=1).astimezone(UTC)  # clock still before the gap here
    high = first  # clock already past the gap here
    while high - low > dt.timedelta(seconds=1):
        middle = low + dt.timedelta(seconds=(high - low).total_seconds() // 2)
        if middle.astimezone(zone).replace(tzinfo=None) >= wall:
            high = middle
        else:
            low = middle
    if high.astimezone(zone).date() != wall.date():
        return None  # the whole rest of the local date does not exist
    return high


def _candidate_dates(rule: ScheduleRule, start: dt.date) -> Iterator[dt.date]:
    """The local dates the rule allows, from ``start`` on, in order (endless)."""
    if rule.frequency is Frequency.MONTHLY:
        assert rule.month_day is not None
        year, month = start.year, start.month
        while True:
            last = calendar.monthrange(year, month)[1]
            day = dt.date(year, month, min(rule.month_day, last))
            if day >= start:
                yield day
            year, month = (year + 1, 1) if month == 12 else (year, month + 1)
    else:
        day = start
        while True:
            if rule.allows(day):
                yield day
            day += ONE_DAY


def next_send_at(rule: ScheduleRule, after: dt.datetime) -> dt.datetime:
    """The first occurrence strictly after ``after`` (an aware instant in any zone), in UTC."""
    after = ensure_utc(after, field="after")
    # Occurrences lie on their own local date and increase with it, so start one local date early
    # (a fall-back across midnight can put ``after`` on a local date "ahead" of the clock).
    start = after.astimezone(rule.zone).date() - ONE_DAY
    for day in _candidate_dates(rule, start):
        instant = _wall_to_utc(dt.datetime.combine(day, rule.send_time), rule.zone)
        if instant is not None and instant > after:
            return instant
    raise AssertionError("unreachable: the candidate dates never end")  # pragma: no cover


def occurrences(rule: ScheduleRule, after: dt.datetime, until: dt.datetime) -> Iterator[dt.datetime]:
    """Every occurrence in ``(after, until]``, in order, in UTC."""
    until = ensure_utc(until, field="until")
    instant = next_send_at(rule, after)
    while instant <= until:
        yield instant
        instant = next_send_at(rule, instant)


# --- periods -----------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class PeriodSpec:
    """Which closed local days a scheduled report covers, relative to the client's local date D at
    the occurrence (the client's day still going on when it is sent).

    * ``yesterday``: D-1 .. D-1.
    * ``last_n_days``: the ``days`` (1..366) full days before D: D-n .. D-1.
    * ``last_week``: the previous full ISO week (Monday .. Sunday) before D's week.
    * ``last_month``: the previous calendar month.
    * ``month_to_date``: the first of D's month .. D-1, i.e. the *closed* days of the month so far;
      sent on the 1st it covers the whole previous month (the month just finished), never an empty
      or an unfinished day. The occurrence's own day D is never included: it is still going on when
      the report is sent, and the cache holds closed days only.
    """

    rule: PeriodRule
    days: int | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.rule, PeriodRule):
            raise InvalidInput("period", f"{_show(self.rule)} is not a PeriodRule")
        if self.rule is PeriodRule.LAST_N_DAYS:
            if not _is_int(self.days) or not 1 <= self.days <= 366:
                raise InvalidInput("period_days", f"last_n_days needs a number of days 1..366, got {_show(self.days)}")
        elif self.days is not None:
            raise InvalidInput("period_days", f"a number of days is only for last_n_days, not {self.rule.value}")

    @classmethod
    def parse(cls, rule: str, days: int | str | None = None) -> PeriodSpec:
        if isinstance(rule, PeriodRule):
            parsed = rule
        else:
            try:
                parsed = PeriodRule(rule.strip().lower() if isinstance(rule, str) else rule)
            except ValueError:
                raise InvalidInput("period", f"{_show(rule)} is not one of {', '.join(p.value for p in PeriodRule)}") from None
        if isinstance(days, str):
            text = days.strip()
            if not text:
                days = None
            elif _ASCII_NUMBER.fullmatch(text):
                days = int(text)
            else:
                raise InvalidInput("period_days", f"{_show(days)} is not a number of days 1..366")
        return cls(parsed, days)


def period_for(spec: PeriodSpec, occurrence_utc: dt.datetime, timezone: str) -> tuple[dt.date, dt.date]:
    """The local dates (first, last; inclusive) an occurrence covers; see :class:`PeriodSpec`.

    ``timezone`` is the *client's* zone (the days of its data), not the schedule's: D is the
    client's local date at the send instant, still going on, and every day returned has closed.
    """
    zone = parse_zone(timezone, field="timezone")
    today = ensure_utc(occurrence_utc, field="occurrence").astimezone(zone).date()
    yesterday = today - ONE_DAY
    if spec.rule is PeriodRule.YESTERDAY:
        return yesterday, yesterday
    if spec.rule is PeriodRule.LAST_N_DAYS:
        assert spec.days is not None
        return today - dt.timedelta(days=spec.days), yesterday
    if spec.rule is PeriodRule.LAST_WEEK:
        monday = today - dt.timedelta(days=today.weekday() + 7)
        return monday, monday + dt.timedelta(days=6)
    if spec.rule is PeriodRule.LAST_MONTH:
        last = today.replace(day=1) - ONE_DAY
        return last.replace(day=1), last
    # MONTH_TO_DATE: the closed days of the month of yesterday (the previous month on the 1st)
    return yesterday.replace(day=1), yesterday


# --- missed occurrences ------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class MissedPlan:
    """What to do with the occurrences due by ``now``.

    ``send``: the one occurrence to process now (``None`` when nothing is due yet);
    ``skipped``: the older due occurrences, to record as skipped and never send;
    ``next_after``: plan the next occurrence with ``next_send_at(rule, next_after)``.
    """

    send: dt.datetime | None
    skipped: tuple[dt.datetime, ...]
    next_after: dt.datetime


def plan_missed(rule: ScheduleRule, due: dt.datetime, now: dt.datetime) -> MissedPlan:
    """Decide what to send when the stored ``due`` occurrence is reached, however late.

    Policy (no flood after an outage): of the occurrences due by ``now`` (the stored ``due`` and
    every later occurrence of ``rule`` up to ``now``), only the most recent is sent, once; the older
    ones are returned as skipped, so they can be recorded (and shown) but are never sent. On time,
    that is simply ``send=due, skipped=()``. When ``due`` is still in the future nothing is sent and
    ``next_after`` is ``now``, so re-planning gives the next occurrence after ``now`` (``due`` itself
    when it is still an occurrence of the rule). Otherwise ``next_after`` is the occurrence sent, and
    the next occurrence after it is in the future.
    """
    due = ensure_utc(due, field="due")
    now = ensure_utc(now, field="now")
    if due > now:
        return MissedPlan(send=None, skipped=(), next_after=now)
    due_ones = [due, *occurrences(rule, due, now)]
    return MissedPlan(send=due_ones[-1], skipped=tuple(due_ones[:-1]), next_after=due_ones[-1])


__all__ = [
    "Frequency",
    "MissedPlan",
    "PeriodRule",
    "PeriodSpec",
    "ScheduleRule",
    "next_send_at",
    "occurrence_on",
    "occurrences",
    "period_for",
    "plan_missed",
]
