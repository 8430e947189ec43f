"""Schedule rules: occurrences in the client's zone across every 2024/2025 DST change, periods, missed sends.

The expected instants below were worked out by hand from the published rules of each zone
(e.g. America/New_York: second Sunday of March 02:00 EST -> 03:00 EDT, first Sunday of November
02:00 EDT -> 01:00 EST), not produced by the code under test.
"""

from __future__ import annotations

import calendar
import datetime as dt
from functools import cache
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from report_pipelines.domain.errors import InvalidInput
from report_pipelines.domain.schedules import (
    Frequency,
    MissedPlan,
    PeriodRule,
    PeriodSpec,
    ScheduleRule,
    next_send_at,
    occurrence_on,
    occurrences,
    period_for,
    plan_missed,
)

UTC = dt.UTC
D = dt.date


def utc(*args: int) -> dt.datetime:
    return dt.datetime(*args, tzinfo=UTC)


def daily(send_time: str, zone: str) -> ScheduleRule:
    return ScheduleRule.parse("daily", send_time, zone)


# --- every DST transition of 2024 and 2025 in the demo zones -------------------------------------------
# (zone, local date, send time, expected UTC instant, what happens)
TRANSITIONS = [
    # America/New_York: -05:00 <-> -04:00, at 02:00 local
    ("America/New_York", D(2024, 3, 10), "02:30", utc(2024, 3, 10, 7, 0), "gap 02:00-03:00 -> 03:00 EDT"),
    ("America/New_York", D(2024, 11, 3), "01:30", utc(2024, 11, 3, 5, 30), "overlap: first 01:30 is EDT"),
    ("America/New_York", D(2025, 3, 9), "02:30", utc(2025, 3, 9, 7, 0), "gap"),
    ("America/New_York", D(2025, 11, 2), "01:30", utc(2025, 11, 2, 5, 30), "overlap"),
    # America/Los_Angeles: -08:00 <-> -07:00, at 02:00 local
    ("America/Los_Angeles", D(2024, 3, 10), "02:30", utc(2024, 3, 10, 10, 0), "gap -> 03:00 PDT"),
    ("America/Los_Angeles", D(2024, 11, 3), "01:30", utc(2024, 11, 3, 8, 30), "overlap: first is PDT"),
    ("America/Los_Angeles", D(2025, 3, 9), "02:30", utc(2025, 3, 9, 10, 0), "gap"),
    ("America/Los_Angeles", D(2025, 11, 2), "01:30", utc(2025, 11, 2, 8, 30), "overlap"),
    # Europe/Lisbon: +00:00 <-> +01:00 at 01:00 UTC (gap 01:00-02:00 local, overlap 01:00-02:00 local)
    ("Europe/Lisbon", D(2024, 3, 31), "01:30", utc(2024, 3, 31, 1, 0), "gap -> 02:00 WEST"),
    ("Europe/Lisbon", D(2024, 10, 27), "01:30", utc(2024, 10, 27, 0, 30), "overlap: first is WEST"),
    ("Europe/Lisbon", D(2025, 3, 30), "01:30", utc(2025, 3, 30, 1, 0), "gap"),
    ("Europe/Lisbon", D(2025, 10, 26), "01:30", utc(2025, 10, 26, 0, 30), "overlap"),
    # Europe/Berlin: +01:00 <-> +02:00 at 01:00 UTC (gap 02:00-03:00, overlap 02:00-03:00)
    ("Europe/Berlin", D(2024, 3, 31), "02:30", utc(2024, 3, 31, 1, 0), "gap -> 03:00 CEST"),
    ("Europe/Berlin", D(2024, 10, 27), "02:30", utc(2024, 10, 27, 0, 30), "overlap: first is CEST"),
    ("Europe/Berlin", D(2025, 3, 30), "02:30", utc(2025, 3, 30, 1, 0), "gap"),
    ("Europe/Berlin", D(2025, 10, 26), "02:30", utc(2025, 10, 26, 0, 30), "overlap"),
    # Australia/Sydney: +11:00 -> +10:00 first Sunday of April (03:00 -> 02:00),
    # +10:00 -> +11:00 first Sunday of October (02:00 -> 03:00); the UTC date is the day before
    ("Australia/Sydney", D(2024, 4, 7), "02:30", utc(2024, 4, 6, 15, 30), "overlap: first is AEDT"),
    ("Australia/Sydney", D(2024, 10, 6), "02:30", utc(2024, 10, 5, 16, 0), "gap -> 03:00 AEDT"),
    ("Australia/Sydney", D(2025, 4, 6), "02:30", utc(2025, 4, 5, 15, 30), "overlap"),
    ("Australia/Sydney", D(2025, 10, 5), "02:30", utc(2025, 10, 4, 16, 0), "gap"),
    # Australia/Lord_Howe: half-hour DST, +11:00 -> +10:30 (02:00 -> 01:30), +10:30 -> +11:00 (02:00 -> 02:30)
    ("Australia/Lord_Howe", D(2024, 4, 7), "01:45", utc(2024, 4, 6, 14, 45), "30-min overlap: first is +11"),
    ("Australia/Lord_Howe", D(2024, 10, 6), "02:10", utc(2024, 10, 5, 15, 30), "30-min gap -> 02:30 +11"),
    ("Australia/Lord_Howe", D(2025, 4, 6), "01:45", utc(2025, 4, 5, 14, 45), "overlap"),
    ("Australia/Lord_Howe", D(2025, 10, 5), "02:10", utc(2025, 10, 4, 15, 30), "gap"),
]


@pytest.mark.parametrize(("zone", "day", "send_time", "expected", "what"), TRANSITIONS,
                         ids=[f"{t[0]}-{t[1]}-{t[2]}" for t in TRANSITIONS])
def test_every_dst_transition_of_2024_and_2025(zone: str, day: dt.date, send_time: str, expected: dt.datetime, what: str) -> None:
    rule = daily(send_time, zone)
    assert occurrence_on(rule, day) == expected
    # next_send_at from just before, and from the previous local day's occurrence, gives the same one
    assert next_send_at(rule, expected - dt.timedelta(seconds=1)) == expected
    assert next_send_at(rule, occurrence_on(rule, day - dt.timedelta(days=1))) == expected
    # ...and exactly one occurrence on that local date: the next one is on the following date
    following = next_send_at(rule, expected)
    assert following == occurrence_on(rule, day + dt.timedelta(days=1))
    assert following.astimezone(ZoneInfo(zone)).date() == day + dt.timedelta(days=1)
    assert following.astimezone(ZoneInfo(zone)).time() == rule.send_time
    assert following - expected < dt.timedelta(hours=26)


def test_gap_fires_at_the_first_instant_after_it_in_new_york() -> None:
    rule = daily("02:30", "America/New_York")
    got = list(occurrences(rule, utc(2024, 3, 8), utc(2024, 3, 12)))
    assert got == [utc(2024, 3, 8, 7, 30), utc(2024, 3, 9, 7, 30),  # 02:30 EST
                   utc(2024, 3, 10, 7, 0),  # 02:30 does not exist: 03:00 EDT
                   utc(2024, 3, 11, 6, 30)]  # 02:30 EDT
    assert got[2].astimezone(ZoneInfo("America/New_York")).isoformat() == "2024-03-10T03:00:00-04:00"
    assert next_send_at(rule, utc(2024, 3, 10, 6, 59, 59)) == utc(2024, 3, 10, 7, 0)
    assert next_send_at(rule, utc(2024, 3, 10, 7, 0)) == utc(2024, 3, 11, 6, 30)


def test_overlap_fires_once_at_the_first_occurrence() -> None:
    rule = daily("01:30", "America/New_York")
    got = list(occurrences(rule, utc(2024, 11, 2), utc(2024, 11, 5)))
    # 2024-11-03 01:30 happens at 05:30Z (EDT) and again at 06:30Z (EST): only the first
    assert got == [utc(2024, 11, 2, 5, 30), utc(2024, 11, 3, 5, 30), utc(2024, 11, 4, 6, 30)]
    assert next_send_at(rule, utc(2024, 11, 3, 5, 30)) == utc(2024, 11, 4, 6, 30)
    # asked between the two 01:30s, the next one is tomorrow's, not the repeated wall time
    assert next_send_at(rule, utc(2024, 11, 3, 6, 0)) == utc(2024, 11, 4, 6, 30)


def test_times_next_to_the_gap_are_untouched() -> None:
    for send_time, expected in [("01:59", utc(2024, 3, 10, 6, 59)), ("02:00", utc(2024, 3, 10, 7, 0)),
                                ("02:59", utc(2024, 3, 10, 7, 0)), ("03:00", utc(2024, 3, 10, 7, 0)),
                                ("03:01", utc(2024, 3, 10, 7, 1))]:
        assert occurrence_on(daily(send_time, "America/New_York"), D(2024, 3, 10)) == expected, send_time
    lord_howe = daily("01:59", "Australia/Lord_Howe")
    assert occurrence_on(lord_howe, D(2024, 10, 6)) == utc(2024, 10, 5, 15, 29)  # +10:30, before the gap
    assert occurrence_on(daily("02:30", "Australia/Lord_Howe"), D(2024, 10, 6)) == utc(2024, 10, 5, 15, 30)
    # the end of the 30-minute overlap: 02:00 happens once (+10:30)
    assert occurrence_on(daily("02:00", "Australia/Lord_Howe"), D(2024, 4, 7)) == utc(2024, 4, 6, 15, 30)


def test_sao_paulo_has_no_dst_since_2019() -> None:
    rule = daily("00:30", "America/Sao_Paulo")
    got = list(occurrences(rule, utc(2024, 1, 1), utc(2026, 1, 1)))
    assert len(got) == 731  # 366 + 365 days
    assert all(o.hour == 3 and o.minute == 30 for o in got)  # always 00:30 at -03:00
    zone = ZoneInfo("America/Sao_Paulo")
    assert {o.astimezone(zone).utcoffset() for o in got} == {dt.timedelta(hours=-3)}
    # the old DST dates (first Sunday of November, third Sunday of February) are ordinary days now
    assert occurrence_on(rule, D(2024, 11, 3)) == utc(2024, 11, 3, 3, 30)
    assert occurrence_on(daily("23:30", "America/Sao_Paulo"), D(2025, 2, 16)) == utc(2025, 2, 17, 2, 30)


# --- month ends, leap days, weekly sets ----------------------------------------------------------------
def test_monthly_day_31_is_the_last_day_of_shorter_months() -> None:
    rule = ScheduleRule.parse("monthly", "09:00", "UTC", month_day=31)
    got = [o.date() for o in occurrences(rule, utc(2024, 1, 1), utc(2025, 12, 31, 23, 59))]
    assert got == [D(2024, m, calendar.monthrange(2024, m)[1]) for m in range(1, 13)] + \
                  [D(2025, m, calendar.monthrange(2025, m)[1]) for m in range(1, 13)]
    assert D(2024, 4, 30) in got and D(2024, 2, 29) in got and D(2025, 2, 28) in got and D(2024, 12, 31) in got


@pytest.mark.parametrize(("month_day", "feb_2024", "feb_2025"), [(29, 29, 28), (30, 29, 28), (31, 29, 28), (28, 28, 28)])
def test_monthly_in_february(month_day: int, feb_2024: int, feb_2025: int) -> None:
    rule = ScheduleRule.parse("monthly", "08:15", "Europe/Berlin", month_day=month_day)
    assert next_send_at(rule, utc(2024, 2, 1)) == utc(2024, 2, feb_2024, 7, 15)  # CET
    assert next_send_at(rule, utc(2025, 2, 1)) == utc(2025, 2, feb_2025, 7, 15)
    assert next_send_at(rule, utc(2024, 1, 1)) == utc(2024, 1, month_day, 7, 15)  # January has them all


def test_monthly_on_the_dst_day_and_across_the_year_end() -> None:
    rule = ScheduleRule.parse("monthly", "02:30", "Europe/Berlin", month_day=31)
    # 2024-03-31 is the spring-forward day in Berlin: 02:30 does not exist -> 03:00 CEST
    assert next_send_at(rule, utc(2024, 3, 1)) == utc(2024, 3, 31, 1, 0)
    assert next_send_at(rule, utc(2024, 12, 1)) == utc(2024, 12, 31, 1, 30)
    assert next_send_at(rule, utc(2024, 12, 31, 1, 30)) == utc(2025, 1, 31, 1, 30)


def test_daily_over_the_leap_day() -> None:
    rule = daily("23:45", "Australia/Sydney")
    got = list(occurrences(rule, utc(2024, 2, 27, 13), utc(2024, 3, 1, 13)))  # 23:45 AEDT is 12:45Z
    assert [o.astimezone(ZoneInfo("Australia/Sydney")).date() for o in got] == [
        D(2024, 2, 28), D(2024, 2, 29), D(2024, 3, 1)]
    assert got[1] == utc(2024, 2, 29, 12, 45)  # AEDT +11


def test_weekly_on_several_weekdays() -> None:
    rule = ScheduleRule.parse("weekly", "07:00", "America/Los_Angeles", weekdays=["mon", "Wednesday", 4, "4"])
    assert rule.weekdays == frozenset({0, 2, 4})
    got = list(occurrences(rule, utc(2024, 3, 3), utc(2024, 3, 17)))  # across the 2024-03-10 change
    assert got == [utc(2024, 3, 4, 15), utc(2024, 3, 6, 15), utc(2024, 3, 8, 15),  # PST
                   utc(2024, 3, 11, 14), utc(2024, 3, 13, 14), utc(2024, 3, 15, 14)]  # PDT


def test_weekly_sunday_in_sydney_crosses_the_utc_date() -> None:
    rule = ScheduleRule.parse("weekly", "06:00", "Australia/Sydney", weekdays="sun")
    assert next_send_at(rule, utc(2024, 12, 25)) == utc(2024, 12, 28, 19, 0)  # Sun 29 Dec 06:00 AEDT


def test_after_may_be_in_any_zone_but_not_naive() -> None:
    rule = daily("09:00", "Europe/Lisbon")
    tokyo = dt.datetime(2024, 6, 1, 17, 0, tzinfo=ZoneInfo("Asia/Tokyo"))  # 08:00Z = 09:00 WEST
    assert next_send_at(rule, tokyo) == utc(2024, 6, 2, 8, 0)
    assert next_send_at(rule, tokyo - dt.timedelta(seconds=1)) == utc(2024, 6, 1, 8, 0)
    assert next_send_at(rule, tokyo).tzinfo is UTC
    with pytest.raises(InvalidInput) as error:
        next_send_at(rule, dt.datetime(2024, 6, 1))
    assert error.value.field == "after"


def test_occurrences_is_half_open() -> None:
    rule = daily("09:00", "UTC")
    assert list(occurrences(rule, utc(2024, 1, 1, 9), utc(2024, 1, 3, 9))) == [utc(2024, 1, 2, 9), utc(2024, 1, 3, 9)]
    assert list(occurrences(rule, utc(2024, 1, 1, 9), utc(2024, 1, 1, 9))) == []


# --- property: agrees with a brute-force, day-by-day enumeration ---------------------------------------
DEMO_ZONES = ["America/New_York", "Europe/Lisbon", "Europe/Berlin", "America/Los_Angeles", "Australia/Sydney",
              "Australia/Lord_Howe", "America/Sao_Paulo"]


@cache
def zone_offsets(name: str) -> tuple[dt.timedelta, ...]:
    zone, seen, t = ZoneInfo(name), set(), utc(2022, 1, 1)
    while t < utc(2028, 1, 1):
        seen.add(t.astimezone(zone).utcoffset())
        t += dt.timedelta(hours=6)
    return tuple(sorted(seen))


def wall(instant: dt.datetime, zone: ZoneInfo) -> dt.datetime:
    return instant.astimezone(zone).replace(tzinfo=None)


def expected_on(rule: ScheduleRule, day: dt.date) -> dt.datetime | None:
    """Brute force: the first instant at which the clock reads the send time on ``day`` or later."""
    if rule.frequency is Frequency.WEEKLY and day.weekday() not in rule.weekdays:
        return None
    if rule.frequency is Frequency.MONTHLY and day.day != min(rule.month_day, calendar.monthrange(day.year, day.month)[1]):
        return None
    zone, target = ZoneInfo(rule.timezone), dt.datetime.combine(day, rule.send_time)
    candidates = [(target - offset).replace(tzinfo=UTC) for offset in zone_offsets(rule.timezone)]
    exact = [c for c in candidates if wall(c, zone) == target]
    if exact:
        return min(exact)
    # in a gap: walk minute by minute (transitions are on the minute) to the first clock reading past it
    t = min(candidates)
    while wall(t, zone) < target:
        t += dt.timedelta(minutes=1)
    return t


#: Local clock minutes that fall in a gap or an overlap of each zone (its transitions are on Sundays).
TRANSITION_MINUTES = {
    "America/New_York": (60, 180), "America/Los_Angeles": (60, 180),  # overlap 01-02, gap 02-03
    "Europe/Lisbon": (60, 120), "Europe/Berlin": (120, 180), "Australia/Sydney": (120, 180),
    "Australia/Lord_Howe": (90, 150),  # overlap 01:30-02:00, gap 02:00-02:30
    "America/Sao_Paulo": (0, 1440),
}


@st.composite
def rules(draw: st.DrawFn) -> ScheduleRule:
    zone = draw(st.sampled_from(DEMO_ZONES))
    low, high = TRANSITION_MINUTES[zone]
    minute = draw(st.one_of(st.integers(low, high), st.integers(low - 1, low + 1), st.integers(0, 1439)))
    send_time = dt.time(*divmod(minute % 1440, 60))
    frequency = draw(st.sampled_from([Frequency.DAILY, Frequency.DAILY, Frequency.WEEKLY, Frequency.MONTHLY]))
    weekdays = frozenset()
    if frequency is Frequency.WEEKLY:  # Sunday half of the time, so DST days are among the dates
        weekdays = draw(st.frozensets(st.integers(0, 6), min_size=1)) | draw(st.sampled_from([frozenset(), frozenset({6})]))
    month_day = draw(st.one_of(st.integers(1, 31), st.sampled_from([28, 29, 30, 31]))) if frequency is Frequency.MONTHLY else None
    return ScheduleRule(frequency, send_time, zone, weekdays, month_day)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rule=rules(), start=st.integers(0, 3 * 366 * 86400), span_days=st.integers(60, 400))
def test_occurrences_match_a_day_by_day_enumeration(rule: ScheduleRule, start: int, span_days: int) -> None:
    after = utc(2023, 6, 1) + dt.timedelta(seconds=start)
    until = after + dt.timedelta(days=span_days)
    zone = ZoneInfo(rule.timezone)
    got = list(occurrences(rule, after, until))

    expected = []
    day = after.astimezone(zone).date() - dt.timedelta(days=1)
    while day <= until.astimezone(zone).date() + dt.timedelta(days=1):
        instant = expected_on(rule, day)
        if instant is not None and after < instant <= until:
            expected.append(instant)
        day += dt.timedelta(days=1)
    assert got == expected  # nothing skipped, nothing extra

    assert all(a < b for a, b in zip(got, got[1:], strict=False))  # strictly increasing
    local_dates = [o.astimezone(zone).date() for o in got]
    assert len(set(local_dates)) == len(local_dates)  # never twice on one local date
    for instant, local_date in zip(got, local_dates, strict=False):
        assert instant.tzinfo is UTC
        assert rule.allows(local_date)
        clock = instant.astimezone(zone).time()
        if clock != rule.send_time:  # only in a gap: the instant is the transition, just past the asked time
            before = instant - dt.timedelta(seconds=1)
            assert before.astimezone(zone).utcoffset() < instant.astimezone(zone).utcoffset()
            assert wall(before, zone) < dt.datetime.combine(local_date, rule.send_time) < wall(instant, zone)
    if got:  # and next_send_at chains through them
        assert next_send_at(rule, after) == got[0]


@pytest.mark.parametrize("zone", DEMO_ZONES)
def test_every_send_time_near_the_transitions_matches_brute_force_over_2024_and_2025(zone: str) -> None:
    """Deterministic complement of the property: every 10 minutes across the zone's gap/overlap hours."""
    low, high = TRANSITION_MINUTES[zone] if zone != "America/Sao_Paulo" else (0, 1440)
    step = 10 if zone != "America/Sao_Paulo" else 90
    for minute in range(low - 10, high + 10, step):
        rule = ScheduleRule(Frequency.DAILY, dt.time(*divmod(minute % 1440, 60)), zone)
        expected = [expected_on(rule, D(2024, 1, 1) + dt.timedelta(days=n)) for n in range(731)]
        got = list(occurrences(rule, utc(2023, 12, 31), utc(2026, 1, 2)))
        got = [o for o in got if D(2024, 1, 1) <= o.astimezone(ZoneInfo(zone)).date() <= D(2025, 12, 31)]
        assert got == expected, rule.send_time


# --- parsing ----------------------------------------------------------------------------------------------
def test_parse_accepts_what_people_type() -> None:
    rule = ScheduleRule.parse(" Weekly ", "7:05", " Europe/Lisbon ", "mon, fri sun")
    assert rule == ScheduleRule(Frequency.WEEKLY, dt.time(7, 5), "Europe/Lisbon", frozenset({0, 4, 6}))
    assert ScheduleRule.parse("monthly", "23:59", "UTC", month_day="31").month_day == 31
    assert ScheduleRule.parse("daily", "00:00", "UTC", weekdays=[], month_day="").month_day is None
    assert ScheduleRule.parse("weekly", "12:00", "UTC", ["0", "6", "MONDAY", "tue"]).weekdays == frozenset({0, 1, 6})


@pytest.mark.parametrize(("kwargs", "field"), [
    (dict(frequency="hourly"), "frequency"),
    (dict(frequency=""), "frequency"),
    (dict(frequency=None), "frequency"),
    (dict(send_time="25:00"), "send_time"),
    (dict(send_time="24:00"), "send_time"),
    (dict(send_time="12:60"), "send_time"),
    (dict(send_time="7pm"), "send_time"),
    (dict(send_time="07:00:30"), "send_time"),
    (dict(send_time="-1:00"), "send_time"),
    (dict(send_time=""), "send_time"),
    (dict(send_time=None), "send_time"),
    (dict(send_time="０７:００"), "send_time"),  # full-width digits
    (dict(timezone="Mars/Olympus"), "timezone"),
    (dict(timezone="EST5EDT4"), "timezone"),
    (dict(timezone="../../etc/passwd"), "timezone"),
    (dict(timezone=""), "timezone"),
    (dict(frequency="weekly"), "weekdays"),  # weekly without weekdays
    (dict(frequency="weekly", weekdays=["funday"]), "weekdays"),
    (dict(frequency="weekly", weekdays=[7]), "weekdays"),
    (dict(frequency="weekly", weekdays=[-1]), "weekdays"),
    (dict(frequency="weekly", weekdays=[True]), "weekdays"),
    (dict(frequency="weekly", weekdays=5), "weekdays"),
    (dict(weekdays=["mon"]), "weekdays"),  # daily with weekdays
    (dict(frequency="monthly"), "month_day"),
    (dict(frequency="monthly", month_day=0), "month_day"),
    (dict(frequency="monthly", month_day=32), "month_day"),
    (dict(frequency="monthly", month_day="last"), "month_day"),
    (dict(frequency="monthly", month_day=15.0), "month_day"),
    (dict(frequency="monthly", month_day=True), "month_day"),
    (dict(month_day=5), "month_day"),  # daily with a month day
])
def test_parse_refuses_naming_the_field(kwargs: dict, field: str) -> None:
    arguments = dict(frequency="daily", send_time="08:00", timezone="Europe/Lisbon") | kwargs
    with pytest.raises(InvalidInput) as error:
        ScheduleRule.parse(**arguments)
    assert error.value.field == field


def test_constructor_validates_too() -> None:
    with pytest.raises(InvalidInput) as error:
        ScheduleRule(Frequency.DAILY, dt.time(8, 0, 30), "UTC")
    assert error.value.field == "send_time"
    with pytest.raises(InvalidInput) as error:
        ScheduleRule(Frequency.DAILY, dt.time(8, 0, tzinfo=UTC), "UTC")
    assert error.value.field == "send_time"
    with pytest.raises(InvalidInput) as error:
        ScheduleRule(Frequency.DAILY, dt.time(8), " UTC")
    assert error.value.field == "timezone"
    with pytest.raises(InvalidInput) as error:
        ScheduleRule("daily", dt.time(8), "UTC")  # type: ignore[arg-type]
    assert error.value.field == "frequency"


# --- periods ------------------------------------------------------------------------------------------------
def period(rule: str, occurrence: dt.datetime, zone: str = "UTC", days: int | None = None) -> tuple[dt.date, dt.date]:
    return period_for(PeriodSpec.parse(rule, days), occurrence, zone)


def test_yesterday_and_last_n_days() -> None:
    assert period("yesterday", utc(2024, 3, 1, 8)) == (D(2024, 2, 29), D(2024, 2, 29))
    assert period("yesterday", utc(2025, 1, 1, 8)) == (D(2024, 12, 31), D(2024, 12, 31))
    assert period("last_n_days", utc(2025, 1, 3, 8), days=7) == (D(2024, 12, 27), D(2025, 1, 2))
    assert period("last_n_days", utc(2024, 3, 1, 8), days=1) == (D(2024, 2, 29), D(2024, 2, 29))
    assert period("last_n_days", utc(2025, 1, 1, 8), days=366) == (D(2024, 1, 1), D(2024, 12, 31))


def test_the_local_date_of_the_occurrence_decides() -> None:
    # 2024-03-31 22:30Z is already 1 April 09:30 in Sydney (AEDT +11) but still 31 March in Lisbon
    assert period("yesterday", utc(2024, 3, 31, 22, 30), "Australia/Sydney") == (D(2024, 3, 31), D(2024, 3, 31))
    assert period("yesterday", utc(2024, 3, 31, 22, 30), "Europe/Lisbon") == (D(2024, 3, 30), D(2024, 3, 30))
    assert period("last_month", utc(2024, 3, 31, 22, 30), "Australia/Sydney") == (D(2024, 3, 1), D(2024, 3, 31))
    assert period("last_month", utc(2024, 3, 31, 22, 30), "Europe/Lisbon") == (D(2024, 2, 1), D(2024, 2, 29))


def test_last_week_is_the_previous_iso_week() -> None:
    # Wed 2024-03-13 -> Mon 4 .. Sun 10 March; Monday and Sunday of a week give the same answer
    assert period("last_week", utc(2024, 3, 13, 8)) == (D(2024, 3, 4), D(2024, 3, 10))
    assert period("last_week", utc(2024, 3, 11, 8)) == (D(2024, 3, 4), D(2024, 3, 10))
    assert period("last_week", utc(2024, 3, 17, 8)) == (D(2024, 3, 4), D(2024, 3, 10))
    # across the year end: ISO week 2025-W01 starts Mon 2024-12-30, so on Mon 2025-01-06 the last
    # week is 30 Dec 2024 .. 5 Jan 2025; on Thu 2025-01-02 it is 2024-W52 (23 .. 29 Dec)
    assert period("last_week", utc(2025, 1, 6, 8)) == (D(2024, 12, 30), D(2025, 1, 5))
    assert period("last_week", utc(2025, 1, 2, 8)) == (D(2024, 12, 23), D(2024, 12, 29))
    first, last = period("last_week", utc(2021, 1, 4, 8))  # 2020 had 53 ISO weeks
    assert (first.isocalendar()[:2], last.isocalendar()[:2]) == ((2020, 53), (2020, 53))


def test_last_month() -> None:
    assert period("last_month", utc(2024, 3, 1, 8)) == (D(2024, 2, 1), D(2024, 2, 29))
    assert period("last_month", utc(2025, 3, 31, 8)) == (D(2025, 2, 1), D(2025, 2, 28))
    assert period("last_month", utc(2025, 1, 15, 8)) == (D(2024, 12, 1), D(2024, 12, 31))


def test_month_to_date_covers_closed_days_only() -> None:
    assert period("month_to_date", utc(2024, 3, 15, 8)) == (D(2024, 3, 1), D(2024, 3, 14))
    assert period("month_to_date", utc(2024, 3, 2, 8)) == (D(2024, 3, 1), D(2024, 3, 1))
    # on the 1st: the whole month that just ended (never an empty or unfinished period)
    assert period("month_to_date", utc(2024, 3, 1, 8)) == (D(2024, 2, 1), D(2024, 2, 29))
    assert period("month_to_date", utc(2025, 1, 1, 8)) == (D(2024, 12, 1), D(2024, 12, 31))


@pytest.mark.parametrize(("rule", "days", "field"), [
    ("last_year", None, "period"), ("", None, "period"), (None, None, "period"),
    ("last_n_days", None, "period_days"), ("last_n_days", 0, "period_days"), ("last_n_days", 367, "period_days"),
    ("last_n_days", "x", "period_days"), ("last_n_days", True, "period_days"), ("last_n_days", 3.5, "period_days"),
    ("yesterday", 3, "period_days"), ("last_month", "1", "period_days"),
])
def test_period_spec_refuses_naming_the_field(rule: object, days: object, field: str) -> None:
    with pytest.raises(InvalidInput) as error:
        PeriodSpec.parse(rule, days)  # type: ignore[arg-type]
    assert error.value.field == field


def test_period_spec_parse() -> None:
    assert PeriodSpec.parse(" Last_N_Days ", "30") == PeriodSpec(PeriodRule.LAST_N_DAYS, 30)
    assert PeriodSpec.parse("month_to_date", "") == PeriodSpec(PeriodRule.MONTH_TO_DATE)


# --- missed occurrences -------------------------------------------------------------------------------------
def test_down_for_three_days_sends_the_last_one_and_skips_the_others() -> None:
    rule = daily("08:00", "Europe/Lisbon")  # WET in January: 08:00Z
    due = utc(2024, 1, 10, 8)
    plan = plan_missed(rule, due, now=utc(2024, 1, 12, 15))
    assert plan == MissedPlan(send=utc(2024, 1, 12, 8), skipped=(utc(2024, 1, 10, 8), utc(2024, 1, 11, 8)),
                              next_after=utc(2024, 1, 12, 8))
    assert next_send_at(rule, plan.next_after) == utc(2024, 1, 13, 8)  # the next one is in the future


def test_on_time_nothing_is_skipped() -> None:
    rule = daily("08:00", "UTC")
    assert plan_missed(rule, utc(2024, 1, 10, 8), utc(2024, 1, 10, 8)) == MissedPlan(
        utc(2024, 1, 10, 8), (), utc(2024, 1, 10, 8))
    assert plan_missed(rule, utc(2024, 1, 10, 8), utc(2024, 1, 11, 7, 59)) == MissedPlan(
        utc(2024, 1, 10, 8), (), utc(2024, 1, 10, 8))


def test_not_due_yet_sends_nothing() -> None:
    rule = daily("08:00", "UTC")
    plan = plan_missed(rule, utc(2024, 1, 10, 8), utc(2024, 1, 10, 7))
    assert plan == MissedPlan(None, (), utc(2024, 1, 10, 7))
    assert next_send_at(rule, plan.next_after) == utc(2024, 1, 10, 8)


def test_a_long_outage_never_floods() -> None:
    rule = ScheduleRule.parse("weekly", "06:00", "America/New_York", ["mon", "thu"])
    due = next_send_at(rule, utc(2024, 1, 1))
    plan = plan_missed(rule, due, utc(2024, 7, 1))
    assert plan.send == utc(2024, 6, 27, 10, 0)  # Thu 27 June 06:00 EDT
    assert len(plan.skipped) == 51 and plan.skipped[0] == due and plan.send not in plan.skipped
    assert list(plan.skipped) == sorted(plan.skipped)
    assert next_send_at(rule, plan.next_after) == utc(2024, 7, 1, 10, 0)  # Mon 1 July, after now


def test_a_stored_due_instant_from_an_older_rule_is_still_sent_once() -> None:
    rule = daily("08:00", "UTC")  # the rule was changed after 07:00 was planned
    plan = plan_missed(rule, utc(2024, 1, 10, 7), utc(2024, 1, 10, 9))
    assert plan == MissedPlan(utc(2024, 1, 10, 8), (utc(2024, 1, 10, 7),), utc(2024, 1, 10, 8))


def test_plan_missed_needs_aware_instants() -> None:
    rule = daily("08:00", "UTC")
    with pytest.raises(InvalidInput) as error:
        plan_missed(rule, dt.datetime(2024, 1, 10, 8), utc(2024, 1, 10, 9))
    assert error.value.field == "due"
    with pytest.raises(InvalidInput) as error:
        plan_missed(rule, utc(2024, 1, 10, 8), dt.datetime(2024, 1, 10, 9))
    assert error.value.field == "now"


# --- the schedule's zone says when, the client's zone says which days ------------------------------------
# Each row: the schedule's zone and local send date/time, the client's zone, the period rule; the
# occurrence in UTC and the client's local date at that instant worked out by hand from the zones'
# offsets on that date; the period is then counted back from the client's date, never the schedule's.
ZONE_PAIRS = [
    # schedule ahead of the client: Tokyo (+9) 07:00 on 11 June = 10 June 22:00Z = 15:00 PDT on the 10th.
    # The bug sent Tokyo's "yesterday", the 10th, still going on in Los Angeles.
    ("Asia/Tokyo", D(2024, 6, 11), "07:00", "America/Los_Angeles", "yesterday", None,
     utc(2024, 6, 10, 22, 0), (D(2024, 6, 9), D(2024, 6, 9))),
    ("Asia/Tokyo", D(2024, 6, 11), "07:00", "America/Los_Angeles", "last_week", None,  # LA's Monday 10th
     utc(2024, 6, 10, 22, 0), (D(2024, 6, 3), D(2024, 6, 9))),
    ("Asia/Tokyo", D(2024, 7, 1), "07:00", "America/Los_Angeles", "last_month", None,  # LA is still on 30 June
     utc(2024, 6, 30, 22, 0), (D(2024, 5, 1), D(2024, 5, 31))),
    ("Asia/Tokyo", D(2024, 7, 1), "07:00", "America/Los_Angeles", "month_to_date", None,
     utc(2024, 6, 30, 22, 0), (D(2024, 6, 1), D(2024, 6, 29))),
    # schedule behind the client: Los Angeles (-7) 20:00 on 10 June = 11 June 03:00Z = 12:00 JST on the
    # 11th. The bug sent LA's yesterday, the 9th, though Tokyo's 10th had closed.
    ("America/Los_Angeles", D(2024, 6, 10), "20:00", "Asia/Tokyo", "yesterday", None,
     utc(2024, 6, 11, 3, 0), (D(2024, 6, 10), D(2024, 6, 10))),
    ("America/Los_Angeles", D(2024, 6, 10), "20:00", "Asia/Tokyo", "last_n_days", 3,
     utc(2024, 6, 11, 3, 0), (D(2024, 6, 8), D(2024, 6, 10))),
    # New York (-5) 23:30 on 31 January = 1 February 04:30Z = 04:30 WET in Lisbon: January has closed.
    ("America/New_York", D(2024, 1, 31), "23:30", "Europe/Lisbon", "last_month", None,
     utc(2024, 2, 1, 4, 30), (D(2024, 1, 1), D(2024, 1, 31))),
    ("America/New_York", D(2024, 1, 31), "23:30", "Europe/Lisbon", "yesterday", None,
     utc(2024, 2, 1, 4, 30), (D(2024, 1, 31), D(2024, 1, 31))),
    # UTC noon and 14:00 on 15 January for Sydney (AEDT, +11): 23:00 on the 15th, then 01:00 on the 16th.
    ("UTC", D(2024, 1, 15), "12:00", "Australia/Sydney", "yesterday", None,
     utc(2024, 1, 15, 12, 0), (D(2024, 1, 14), D(2024, 1, 14))),
    ("UTC", D(2024, 1, 15), "14:00", "Australia/Sydney", "yesterday", None,
     utc(2024, 1, 15, 14, 0), (D(2024, 1, 15), D(2024, 1, 15))),
    # 25 hours apart: Pago Pago (-11) 08:00 on 5 March = 19:00Z = 09:00 on 6 March in Kiritimati (+14),
    # and the other way round, Kiritimati 08:00 on 6 March = 18:00Z on the 5th = 07:00 on 5 March in Pago Pago.
    ("Pacific/Pago_Pago", D(2024, 3, 5), "08:00", "Pacific/Kiritimati", "yesterday", None,
     utc(2024, 3, 5, 19, 0), (D(2024, 3, 5), D(2024, 3, 5))),
    ("Pacific/Kiritimati", D(2024, 3, 6), "08:00", "Pacific/Pago_Pago", "yesterday", None,
     utc(2024, 3, 5, 18, 0), (D(2024, 3, 4), D(2024, 3, 4))),
    # the same zone: nothing changes (Lisbon 07:00 WET on 15 March = 07:00Z)
    ("Europe/Lisbon", D(2024, 3, 15), "07:00", "Europe/Lisbon", "month_to_date", None,
     utc(2024, 3, 15, 7, 0), (D(2024, 3, 1), D(2024, 3, 14))),
]


@pytest.mark.parametrize(("schedule_zone", "send_date", "send_time", "client_zone", "rule", "days", "instant",
                          "expected"), ZONE_PAIRS)
def test_the_period_is_the_clients_closed_days_at_the_send_instant(
        schedule_zone: str, send_date: dt.date, send_time: str, client_zone: str, rule: str, days: int | None,
        instant: dt.datetime, expected: tuple[dt.date, dt.date]) -> None:
    occurrence = occurrence_on(ScheduleRule.parse("daily", send_time, schedule_zone), send_date)
    assert occurrence == instant
    first, last = period_for(PeriodSpec.parse(rule, days), occurrence, client_zone)
    assert (first, last) == expected
    # every day of it has closed in the client's zone when the report is sent
    assert dt.datetime.combine(last + dt.timedelta(days=1), dt.time(), ZoneInfo(client_zone)) <= occurrence


def test_where_the_two_zones_change_clocks_on_different_dates_a_day_can_repeat_or_be_skipped() -> None:
    """The stated consequence (module docstring): a Lisbon schedule at 00:30 for a UTC client.
    Lisbon is UTC+1 in summer, UTC in winter; 00:30 WEST is still the previous day in UTC."""
    rule = ScheduleRule.parse("daily", "00:30", "Europe/Lisbon")
    yesterday = PeriodSpec.parse("yesterday")
    autumn = [period_for(yesterday, occurrence_on(rule, D(2024, 10, d)), "UTC")[0] for d in (26, 27, 28)]
    # 26 Oct 00:30 WEST = 25 Oct 23:30Z; 27 Oct 00:30 WEST (before the 02:00 change) = 26 Oct 23:30Z;
    # 28 Oct 00:30 WET = 28 Oct 00:30Z: the UTC client's 26 October is no "yesterday" at all
    assert autumn == [D(2024, 10, 24), D(2024, 10, 25), D(2024, 10, 27)]
    spring = [period_for(yesterday, occurrence_on(rule, D(2024, d // 100, d % 100)), "UTC")[0]
              for d in (330, 331, 401)]
    # 30 and 31 March 00:30 WET = 00:30Z (the change is at 01:00); 1 April 00:30 WEST = 31 March 23:30Z
    assert spring == [D(2024, 3, 29), D(2024, 3, 30), D(2024, 3, 30)]
    # last_n_days covers the skipped day: on 28 October the last two closed UTC days are the 26th and 27th
    assert period_for(PeriodSpec.parse("last_n_days", 2), occurrence_on(rule, D(2024, 10, 28)), "UTC") == (
        D(2024, 10, 26), D(2024, 10, 27))
