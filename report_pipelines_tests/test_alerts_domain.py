"""Alert conditions and the incident state machine: pure domain rules, no database."""

from __future__ import annotations

import datetime as dt

import pytest

from report_pipelines.domain.alerts import (
    ALERT,
    CLEAR,
    CLEARING,
    FIRING,
    RECOVERED,
    AlertCondition,
    Incident,
    WindowFigures,
    evaluate,
    in_business_hours,
    last_check_at,
    next_check_at,
    step,
    window_of,
)
from report_pipelines.domain.errors import InvalidInput

UTC = dt.UTC
T0 = dt.datetime(2024, 3, 20, 10, 0, tzinfo=UTC)


def figures(offered=10, answered=8, abandoned=2, service_level=0.7, abandoned_rate=0.2, answer_rate=0.8, asa=12.0):
    return WindowFigures(offered, answered, abandoned, service_level, abandoned_rate, answer_rate, asa)


def test_a_condition_parses_to_its_canonical_text_and_back() -> None:
    c = AlertCondition.parse("service_level < 80 queue=support window=1h")
    assert (c.metric, c.operator, c.threshold, c.queue, c.window) == ("service_level", "<", 80, "support",
                                                                       dt.timedelta(hours=1))
    assert c.text == "service_level<80 queue=support window=1h every=15m grace=30m"
    assert AlertCondition.parse(c.text) == c
    today = AlertCondition.parse("abandon_rate>10 window=today every=5m grace=0m".replace("grace=0m", "grace=1m"))
    assert today.metric == "abandoned_rate" and today.window is None and "today so far" in today.describe
    hours = AlertCondition.parse("offered=0 hours=08:00-18:00 days=mon-fri")
    assert hours.days == frozenset(range(5)) and AlertCondition.parse(hours.text) == hours


@pytest.mark.parametrize(("text", "field"), [
    ("", "condition"),
    ("service_level", "condition"),
    ("salary<80", "condition.metric"),
    ("service_level<180", "condition.threshold"),
    ("service_level<80 window=3d", "condition.window"),
    ("service_level<80 window=0m", "condition.window"),
    ("service_level<80 every=2days", "condition.every"),
    ("service_level<80 colour=red", "condition.colour"),
    ("service_level<80 queue=a;b", "condition.queue"),
    ("service_level<80 hours=18:00-08:00", "condition.hours"),
    ("service_level<80 days=funday", "condition.days"),
    ("service_level<80 queue=a queue=b", "condition.queue"),
    ("service_level<80\r\nBcc: x@evil.example", "condition"),
])
def test_bad_conditions_are_refused_naming_the_part(text: str, field: str) -> None:
    with pytest.raises(InvalidInput) as err:
        AlertCondition.parse(text)
    assert err.value.field == field and "\n" not in str(err.value)


def test_evaluation_uses_percentages_and_leaves_missing_values_alone() -> None:
    c = AlertCondition.parse("service_level<80")
    assert evaluate(c, figures(service_level=0.7)).holds is True
    assert evaluate(c, figures(service_level=0.85)).holds is False
    assert evaluate(c, figures(offered=0, service_level=None)).holds is None  # no calls: no service level
    assert evaluate(c, None).holds is None  # outside business hours
    zero = AlertCondition.parse("offered=0 window=1h")
    assert evaluate(zero, figures(offered=0, answered=0, abandoned=0)).holds is True
    assert "70.0%" in evaluate(c, figures()).text


def test_check_instants_windows_and_business_hours() -> None:
    c = AlertCondition.parse("offered=0 every=15m window=today hours=08:00-18:00 days=mon-fri")
    assert next_check_at(c, T0) == T0 + dt.timedelta(minutes=15)
    assert next_check_at(c, T0 + dt.timedelta(minutes=1)) == T0 + dt.timedelta(minutes=15)
    assert last_check_at(c, T0 + dt.timedelta(minutes=14)) == T0
    start, end = window_of(c, T0, "America/New_York")  # 06:00 EDT: today began at 04:00 UTC
    assert (start, end) == (dt.datetime(2024, 3, 20, 4, 0, tzinfo=UTC), T0)
    assert not in_business_hours(c, T0, "America/New_York")  # 06:00 local
    assert in_business_hours(c, T0 + dt.timedelta(hours=4), "America/New_York")  # 10:00 local, a Wednesday
    assert not in_business_hours(c, T0 + dt.timedelta(days=3, hours=4), "America/New_York")  # Saturday


def test_one_incident_sends_one_alert_and_one_recovery_however_it_flaps() -> None:
    grace = dt.timedelta(minutes=30)
    minute = dt.timedelta(minutes=1)
    timeline = [(0, True), (15, True), (30, False), (45, True), (60, False), (75, None), (80, False), (95, False),
                (110, True)]
    incident, events = Incident(), []
    for at, holds in timeline:
        moved = step(incident, holds, T0 + at * minute, grace)
        incident = moved.incident
        events.append((at, moved.event, incident.state))
    assert events == [(0, ALERT, FIRING), (15, None, FIRING), (30, None, CLEARING), (45, None, FIRING),
                      (60, None, CLEARING), (75, None, CLEARING), (80, None, CLEARING), (95, RECOVERED, CLEAR),
                      (110, ALERT, FIRING)]


def test_without_grace_it_recovers_at_the_first_clear_check() -> None:
    moved = step(Incident(FIRING, T0), False, T0, dt.timedelta(0))
    assert moved.event == RECOVERED and moved.incident.state == CLEAR
    assert step(Incident(CLEAR), False, T0, dt.timedelta(0)).event is None
