"""Threshold alerts: a condition on a recent window, checked at every occurrence, and the incident
it opens and closes. Pure Python (no database, no Dagster).

**The condition** is one line a user types::

    service_level<80 queue=support window=1h
    abandoned_rate>10 window=today
    offered=0 window=1h hours=08:00-18:00 days=mon-fri
    average_speed_of_answer>=60 window=30m every=5m grace=1h

``METRIC OP NUMBER`` then ``key=value`` options. Rates (``service_level``, ``abandoned_rate``,
``answer_rate``) are percentages; ``offered``, ``answered`` and ``abandoned`` are counts;
``average_speed_of_answer`` is seconds. Options: ``queue`` (only that queue's calls; default every
call), ``window`` (``Nm``/``Nh`` back from the check, or ``today``: since the client's local
midnight; default ``1h``), ``every`` (how often it is checked, default ``15m``), ``grace`` (how long
the condition must stay false before the incident is closed, default ``30m``), ``hours`` and
``days`` (checked only then, in the client's zone: outside them nothing changes). Every refusal
names the part of the condition it is about (``condition.window: ...``).

**Figures** are the same ones the reports compute (the ``daily_summary`` maths over the window's
calls): a rate over a window without offered calls has no value, and a check without a value (or
outside business hours) changes nothing.

**The incident** (:func:`step`): ``clear`` → the condition holds → ``firing`` (the *alert* is
sent). While it holds nothing more is sent. When it stops holding the incident is ``clearing``;
if it holds again within ``grace`` it is the same incident (``firing`` again, nothing sent); once
it has stayed false for ``grace`` the incident is ``clear`` again and the *recovered* message is
sent. So one incident sends one alert and one recovery, however much the figure flaps.
"""

from __future__ import annotations

import datetime as dt
import math
import re
from dataclasses import dataclass, field
from zoneinfo import ZoneInfo

from report_pipelines.domain.errors import InvalidInput

RATE_METRICS = ("service_level", "abandoned_rate", "answer_rate")
COUNT_METRICS = ("offered", "answered", "abandoned")
SECOND_METRICS = ("average_speed_of_answer",)
METRICS = (*RATE_METRICS, *COUNT_METRICS, *SECOND_METRICS)
_ALIASES = {"abandon_rate": "abandoned_rate", "sl": "service_level", "asa": "average_speed_of_answer"}
OPERATORS = ("<=", ">=", "<", ">", "=")
OPTIONS = ("queue", "window", "every", "grace", "hours", "days")
MAX_CONDITION = 300
DEFAULT_WINDOW = dt.timedelta(hours=1)
DEFAULT_EVERY = dt.timedelta(minutes=15)
DEFAULT_GRACE = dt.timedelta(minutes=30)
MIN_EVERY = dt.timedelta(minutes=1)
MAX_SPAN = dt.timedelta(days=1)

_HEAD = re.compile(r"\s*([A-Za-z_]+)\s*(<=|>=|==|<|>|=)\s*([0-9]+(?:\.[0-9]+)?)\s*(.*)", re.S)
_SPAN = re.compile(r"([0-9]{1,4})(m|h)")
_HOURS = re.compile(r"([0-9]{1,2}):([0-9]{2})-([0-9]{1,2}):([0-9]{2})")
_QUEUE = re.compile(r"[A-Za-z0-9_.@+-]{1,64}")
_DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
CLEAR, FIRING, CLEARING = "clear", "firing", "clearing"
ALERT, RECOVERED = "alert", "recovered"


def _err(part: str, message: str) -> InvalidInput:
    return InvalidInput(f"condition.{part}" if part else "condition", message)


def _span(text: str, part: str) -> dt.timedelta:
    match = _SPAN.fullmatch(text)
    if not match:
        raise _err(part, f"{text[:20]!r} is not a duration like 15m or 2h")
    value = dt.timedelta(minutes=int(match[1])) if match[2] == "m" else dt.timedelta(hours=int(match[1]))
    if not MIN_EVERY <= value <= MAX_SPAN:
        raise _err(part, f"{text!r}: between 1m and 24h")
    return value


def _span_text(value: dt.timedelta) -> str:
    minutes = int(value.total_seconds() // 60)
    return f"{minutes // 60}h" if minutes % 60 == 0 else f"{minutes}m"


def _days(text: str) -> frozenset[int]:
    found: set[int] = set()
    for item in text.lower().split(","):
        first, _, last = item.partition("-")
        if first not in _DAYS or (last and last not in _DAYS):
            raise _err("days", f"{item[:20]!r}: days are mon..sun, as mon-fri or mon,wed,fri")
        a, b = _DAYS.index(first), _DAYS.index(last or first)
        found.update(range(a, b + 1) if a <= b else [*range(a, 7), *range(0, b + 1)])
    return frozenset(found)


@dataclass(frozen=True)
class AlertCondition:
    metric: str
    operator: str
    threshold: float
    queue: str | None = None
    window: dt.timedelta | None = DEFAULT_WINDOW  # None: today (since the client's local midnight)
    every: dt.timedelta = DEFAULT_EVERY
    grace: dt.timedelta = DEFAULT_GRACE
    hours: tuple[dt.time, dt.time] | None = None
    days: frozenset[int] = field(default_factory=frozenset)

    @classmethod
    def parse(cls, text: str) -> AlertCondition:
        if not isinstance(text, str) or not text.strip():
            raise _err("", "give a condition like 'service_level<80 queue=support window=1h'")
        if len(text) > MAX_CONDITION or any(ord(c) < 32 or ord(c) == 127 for c in text):
            raise _err("", f"at most {MAX_CONDITION} printable characters, on one line")
        head = _HEAD.fullmatch(text)
        if not head:
            raise _err("", f"{text[:40]!r} does not start with METRIC<NUMBER (metrics: {', '.join(METRICS)})")
        metric = _ALIASES.get(head[1].lower(), head[1].lower())
        if metric not in METRICS:
            raise _err("metric", f"{head[1]!r} is not one of {', '.join(METRICS)}")
        threshold = float(head[3])
        if metric in RATE_METRICS and threshold > 100:
            raise _err("threshold", f"{head[3]}: a rate is a percentage, 0..100")
        values: dict = {}
        for item in head[4].split():
            key, sep, value = item.partition("=")
            key = key.lower()
            if not sep or key not in OPTIONS:
                raise _err(key or "option", f"{item[:30]!r}: options are {', '.join(k + '=...' for k in OPTIONS)}")
            if key in values:
                raise _err(key, "given twice")
            if key == "queue":
                if not _QUEUE.fullmatch(value):
                    raise _err("queue", f"{value[:30]!r} is not a queue name")
                values[key] = value
            elif key == "window":
                values[key] = None if value.lower() == "today" else _span(value.lower(), "window")
            elif key in ("every", "grace"):
                values[key] = _span(value.lower(), key)
            elif key == "hours":
                match = _HOURS.fullmatch(value)
                if not match or int(match[1]) > 23 or int(match[3]) > 24 or int(match[2]) > 59 or int(match[4]) > 59:
                    raise _err("hours", f"{value[:20]!r} is not a range like 08:00-18:00")
                start = dt.time(int(match[1]), int(match[2]))
                end = dt.time(23, 59, 59) if int(match[3]) == 24 else dt.time(int(match[3]), int(match[4]))
                if end <= start:
                    raise _err("hours", f"{value!r}: the end must come after the start")
                values[key] = (start, end)
            else:
                values[key] = _days(value)
        return cls(metric=metric, operator="=" if head[2] == "==" else head[2], threshold=threshold, **values)

    @property
    def text(self) -> str:
        """The canonical form, as stored (``parse(c.text) == c``)."""
        number = f"{self.threshold:g}"
        parts = [f"{self.metric}{self.operator}{number}"]
        if self.queue:
            parts.append(f"queue={self.queue}")
        parts.append(f"window={'today' if self.window is None else _span_text(self.window)}")
        parts.append(f"every={_span_text(self.every)}")
        parts.append(f"grace={_span_text(self.grace)}")
        if self.hours:
            end = "24:00" if self.hours[1] == dt.time(23, 59, 59) else f"{self.hours[1]:%H:%M}"
            parts.append(f"hours={self.hours[0]:%H:%M}-{end}")
        if self.days:
            parts.append("days=" + ",".join(_DAYS[d] for d in sorted(self.days)))
        return " ".join(parts)

    @property
    def describe(self) -> str:
        unit = "%" if self.metric in RATE_METRICS else (" s" if self.metric in SECOND_METRICS else "")
        scope = f" of queue {self.queue}" if self.queue else ""
        span = "today so far" if self.window is None else f"over the last {_span_text(self.window)}"
        return f"{self.metric.replace('_', ' ')}{scope} {self.operator} {self.threshold:g}{unit} {span}"


# --- when it is checked ----------------------------------------------------------------------------------
def next_check_at(condition: AlertCondition, after: dt.datetime) -> dt.datetime:
    """The first check instant strictly after ``after``: multiples of ``every`` since the Unix epoch (UTC)."""
    step = condition.every.total_seconds()
    return dt.datetime.fromtimestamp((math.floor(after.timestamp() / step) + 1) * step, dt.UTC)


def last_check_at(condition: AlertCondition, now: dt.datetime) -> dt.datetime:
    """The most recent check instant at or before ``now``."""
    step = condition.every.total_seconds()
    return dt.datetime.fromtimestamp(math.floor(now.timestamp() / step) * step, dt.UTC)


def window_of(condition: AlertCondition, at: dt.datetime, timezone: str) -> tuple[dt.datetime, dt.datetime]:
    """The ``[start, end)`` instants (UTC) a check at ``at`` looks at."""
    if condition.window is not None:
        return at - condition.window, at
    local = at.astimezone(ZoneInfo(timezone))
    midnight = dt.datetime.combine(local.date(), dt.time(), ZoneInfo(timezone))
    return midnight.astimezone(dt.UTC), at


def in_business_hours(condition: AlertCondition, at: dt.datetime, timezone: str) -> bool:
    local = at.astimezone(ZoneInfo(timezone))
    if condition.days and local.weekday() not in condition.days:
        return False
    if condition.hours and not condition.hours[0] <= local.time().replace(tzinfo=None) < condition.hours[1]:
        return False
    return True


# --- evaluation --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class WindowFigures:
    """A window's figures, as the reports compute them (rates as fractions 0..1, or None)."""

    offered: int
    answered: int
    abandoned: int
    service_level: float | None
    abandoned_rate: float | None
    answer_rate: float | None
    average_speed_of_answer: float | None


@dataclass(frozen=True)
class Evaluation:
    holds: bool | None  # None: not evaluated (outside business hours, or no value)
    value: float | None
    text: str


def _shown(metric: str, value: float | None) -> str:
    if value is None:
        return "no value"
    if metric in RATE_METRICS:
        return f"{value:.1f}%"
    if metric in SECOND_METRICS:
        return f"{value:.0f} s"
    return f"{value:g}"


def evaluate(condition: AlertCondition, figures: WindowFigures | None) -> Evaluation:
    """Does the condition hold for these figures? ``figures=None``: outside business hours."""
    if figures is None:
        return Evaluation(None, None, f"not checked outside business hours ({condition.text})")
    raw = getattr(figures, condition.metric)
    value = None if raw is None else float(raw) * (100 if condition.metric in RATE_METRICS else 1)
    calls = f"{figures.offered} offered, {figures.answered} answered, {figures.abandoned} abandoned"
    if value is None:
        return Evaluation(None, None, f"{condition.metric} has no value ({calls})")
    holds = {"<": value < condition.threshold, "<=": value <= condition.threshold, ">": value > condition.threshold,
             ">=": value >= condition.threshold, "=": math.isclose(value, condition.threshold)}[condition.operator]
    verdict = "holds" if holds else "does not hold"
    return Evaluation(holds, value, f"{condition.describe}: {verdict}, {_shown(condition.metric, value)} ({calls})")


# --- the incident ------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Incident:
    state: str = CLEAR
    since: dt.datetime | None = None  # when ``state`` began


@dataclass(frozen=True)
class Step:
    incident: Incident
    event: str | None  # ALERT, RECOVERED or None (nothing to send)


def step(incident: Incident, holds: bool | None, now: dt.datetime, grace: dt.timedelta) -> Step:
    """The incident after a check (see the module docstring)."""
    if holds is None:
        return Step(incident, None)
    if incident.state == CLEAR:
        return Step(Incident(FIRING, now), ALERT) if holds else Step(incident, None)
    if incident.state == FIRING:
        if holds:
            return Step(incident, None)
        if grace <= dt.timedelta(0):
            return Step(Incident(CLEAR, now), RECOVERED)
        return Step(Incident(CLEARING, now), None)
    # clearing
    if holds:
        return Step(Incident(FIRING, now), None)  # the same incident: no second alert
    if incident.since is None or now - incident.since >= grace:
        return Step(Incident(CLEAR, now), RECOVERED)
    return Step(incident, None)


__all__ = ["ALERT", "CLEAR", "CLEARING", "FIRING", "METRICS", "RECOVERED", "AlertCondition", "Evaluation",
           "Incident", "Step", "WindowFigures", "evaluate", "in_business_hours", "last_check_at", "next_check_at",
           "step", "window_of"]
