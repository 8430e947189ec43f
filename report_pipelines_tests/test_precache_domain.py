"""The D-1 plan's rules in the domain: the study, the decision, schedules that need yesterday, the instants."""

from __future__ import annotations

import datetime as dt

import pytest

from report_pipelines.domain.errors import InvalidInput
from report_pipelines.domain.precache import (
    Candidate,
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

UTC = dt.UTC
D = dt.date


def at(*args: int) -> dt.datetime:
    return dt.datetime(*args, tzinfo=UTC)


def test_the_study_counts_d1_days_in_the_window_since_the_first_logged_request() -> None:
    today = D(2024, 3, 29)  # the window is the 28 dates 1..28 March
    asked = [(D(2024, 3, 1), 480, 2), (D(2024, 3, 5), 450, 1), (D(2024, 3, 28), 500, 3),
             (D(2024, 2, 29), 400, 9),  # before the window
             (D(2024, 3, 29), 300, 1)]  # today: not a full day yet
    usage = study(asked, first_logged=D(2024, 2, 1), today=today, window_days=28)
    assert (usage.requests, usage.days_asked, usage.days_observed) == (6, 3, 28)
    assert usage.first_minutes == (480, 450, 500)
    assert usage.share == pytest.approx(3 / 28)
    # a client logged for the first time on the 25th: 4 observed days (25..28)
    assert study(asked, first_logged=D(2024, 3, 25), today=today, window_days=28).days_observed == 4
    assert study([], first_logged=None, today=today, window_days=28) == D1Usage()


def test_nearest_rank_percentile() -> None:
    values = [450, 480, 500, 510, 520, 530, 540, 550, 560, 570]  # 10 values: p10 is the 1st, p50 the 5th
    assert nearest_rank(values, 10) == 450
    assert nearest_rank(values, 50) == 520
    assert nearest_rank(values, 95) == 570  # ceil(9.5) = 10th
    assert nearest_rank(values, 0) == 450 and nearest_rank([], 10) is None


THRESHOLDS = Thresholds(min_share=0.25, min_requests=3, percentile=10)


def test_decisions_and_their_reasons() -> None:
    often = D1Usage(requests=12, days_asked=10, days_observed=20, first_minutes=(455, 460, 470, 480, 490, 500, 510,
                                                                                   520, 530, 540))
    decided = decide(often, THRESHOLDS, None)
    # 10 of 20 days (50 %) >= 25 % and 12 requests >= 3: priority, ready by the p10 first request, 07:35
    assert (decided.decision, decided.ready_by_minute) == ("priority", 455)
    assert "10 of 20 days (50%)" in decided.reason and "07:35" in decided.reason

    rare = D1Usage(requests=4, days_asked=4, days_observed=28, first_minutes=(600,) * 4)  # 14 % < 25 %
    assert decide(rare, THRESHOLDS, None).decision == "normal"
    assert "under 25% of days" in decide(rare, THRESHOLDS, None).reason
    few = D1Usage(requests=2, days_asked=2, days_observed=2, first_minutes=(600, 610))  # 100 % but 2 < 3 requests
    assert decide(few, THRESHOLDS, None).decision == "normal"
    new = decide(D1Usage(), THRESHOLDS, None)
    assert (new.decision, new.ready_by_minute, new.reason) == ("normal", None, "no request in the log yet")

    schedule = ScheduleNeed(7, at(2024, 3, 29, 11), 7 * 60)
    by_schedule = decide(D1Usage(), THRESHOLDS, schedule)
    assert (by_schedule.decision, by_schedule.ready_by_minute) == ("priority", 420)
    assert "schedule 7 sends it at 07:00" in by_schedule.reason
    # both: the earlier of the typical first request (07:35) and the send time (07:00)
    assert decide(often, THRESHOLDS, schedule).ready_by_minute == 420


def test_an_operator_choice_wins_and_auto_gives_the_decision_back() -> None:
    often = D1Usage(requests=30, days_asked=28, days_observed=28, first_minutes=(480,) * 28)
    when = at(2024, 3, 20, 9)
    assert decide(often, THRESHOLDS, None, OperatorChoice("normal", "ana", when)).decision == "normal"
    skipped = decide(often, THRESHOLDS, ScheduleNeed(3, when, 420), OperatorChoice("skip", "ana", when))
    assert skipped.decision == "skip" and "computed when that report is built" in skipped.reason
    forced = decide(D1Usage(), THRESHOLDS, None, OperatorChoice("priority", "rui", when))
    assert (forced.decision, forced.ready_by_minute) == ("priority", None)
    assert forced.reason.startswith("set to priority by rui on 2024-03-20")
    assert decide(often, THRESHOLDS, None, OperatorChoice("auto", "rui", when)) == decide(often, THRESHOLDS, None)


def test_priority_clients_go_earliest_ready_by_first_then_the_others_largest_first() -> None:
    candidates = [
        Candidate(1, "normal", None, weight=50), Candidate(2, "priority", at(2024, 3, 2, 14), weight=10),
        Candidate(3, "priority", at(2024, 3, 2, 12), weight=1), Candidate(4, "priority", None, weight=900),
        Candidate(5, "skip", None, weight=10_000), Candidate(6, "normal", None, weight=500),
        Candidate(7, "priority", at(2024, 3, 2, 12), weight=5),
    ]
    first, then = precache_order(candidates)
    assert [c.client_id for c in first] == [7, 3, 2, 4]  # same ready-by: the larger first; none: last
    assert [c.client_id for c in then] == [6, 1]  # skip is in neither


@pytest.mark.parametrize("text, start, end", [("01:00-05:00", (1, 0), (5, 0)), ("22:30-4:15", (22, 30), (4, 15))])
def test_quiet_hours_parse(text: str, start: tuple, end: tuple) -> None:
    quiet = parse_quiet_hours(text)
    assert (quiet.start, quiet.end) == (dt.time(*start), dt.time(*end))


@pytest.mark.parametrize("text", ["1-5", "25:00-05:00", "01:00-01:00", "01:00 to 05:00", ""])
def test_bad_quiet_hours_are_refused_naming_the_field(text: str) -> None:
    with pytest.raises(InvalidInput) as err:
        parse_quiet_hours(text, "REPORT_PIPELINES_PRECACHE_QUIET_HOURS")
    assert err.value.field == "REPORT_PIPELINES_PRECACHE_QUIET_HOURS"


def test_precache_instants_follow_each_zone_and_its_dst() -> None:
    # Sydney's 2024-04-06 ends at its midnight (AEDT, +11: 13:00 UTC on the 6th); + 15 min grace
    assert precache_instant(D(2024, 4, 6), "Australia/Sydney", 15) == at(2024, 4, 6, 13, 15)
    # on 7 April clocks go back (AEDT -> AEST): the day is 25 hours, the next midnight is +10
    assert precache_instant(D(2024, 4, 7), "Australia/Sydney", 15) == at(2024, 4, 7, 14, 15)
    # Los Angeles on its spring-forward day (2024-03-10 is 23 hours): midnight of the 11th is PDT (-7)
    assert precache_instant(D(2024, 3, 10), "America/Los_Angeles", 0) == at(2024, 3, 11, 7)
    assert precache_instant(D(2024, 3, 9), "America/Los_Angeles", 0) == at(2024, 3, 10, 8)
    # Lord Howe: +10:30 in winter
    assert precache_instant(D(2024, 6, 1), "Australia/Lord_Howe", 30) == at(2024, 6, 1, 14)


def test_the_others_run_starts_in_the_quiet_hours() -> None:
    zone = "America/New_York"  # 2024-03-10 is its spring-forward day: 02:00-03:00 does not exist
    grace = 15
    assert others_instant(D(2024, 3, 1), zone, grace, None) == precache_instant(D(2024, 3, 1), zone, grace)
    # 01:00-05:00: at 01:00 EST of 2 March (06:00 UTC)
    assert others_instant(D(2024, 3, 1), zone, grace, parse_quiet_hours("01:00-05:00")) == at(2024, 3, 2, 6)
    # a window wrapping midnight that holds 00:15: at once
    assert others_instant(D(2024, 3, 1), zone, grace, parse_quiet_hours("22:00-05:00")) == at(2024, 3, 2, 5, 15)
    # 02:30 on 10 March does not exist: the first instant after the gap, 03:00 EDT (07:00 UTC)
    assert others_instant(D(2024, 3, 9), zone, grace, parse_quiet_hours("02:30-05:00")) == at(2024, 3, 10, 7)


def test_ready_by_instants_are_on_the_morning_after_the_closed_day() -> None:
    assert ready_by_instant(D(2024, 3, 9), 7 * 60 + 30, "America/Los_Angeles") == at(2024, 3, 10, 14, 30)  # PDT
    assert ready_by_instant(D(2024, 3, 9), None, "America/Los_Angeles") is None


def _need(frequency: str, period: str, closed: dt.date, *, weekdays: str | None = None, month_day: int | None = None,
          send: str = "07:00", zone: str = "Europe/Lisbon", client_zone: str = "Europe/Lisbon", days: int | None = None):
    rule = schedule_rule(frequency, send, zone, weekdays, month_day)
    return schedule_need(9, rule, PeriodSpec.parse(period, days), closed, client_zone)


def test_schedules_that_read_yesterday() -> None:
    # daily "yesterday" at 07:00: every day, ready by 07:00 local (WET: 07:00 UTC)
    need = _need("daily", "yesterday", D(2024, 3, 4))
    assert need == ScheduleNeed(9, at(2024, 3, 5, 7), 420)
    assert _need("daily", "last_n_days", D(2024, 3, 4), days=7).at == at(2024, 3, 5, 7)
    assert _need("daily", "month_to_date", D(2024, 3, 4)).at == at(2024, 3, 5, 7)
    # last_week sent on Mondays (weekday 0) needs Sunday, not Saturday; 2024-03-10 is a Sunday
    assert _need("weekly", "last_week", D(2024, 3, 10), weekdays="0").at == at(2024, 3, 11, 7)
    assert _need("weekly", "last_week", D(2024, 3, 9), weekdays="0") is None
    # last_month on the 1st needs the month's last day, a leap day here
    assert _need("monthly", "last_month", D(2024, 2, 29), month_day=1).at == at(2024, 3, 1, 7)
    assert _need("monthly", "last_month", D(2024, 2, 28), month_day=1) is None


def test_a_schedule_in_another_zone_needs_the_day_its_period_names() -> None:
    # A Sydney client's schedule kept in New York time, daily "yesterday" at 07:00 New York: on 5 March
    # (New York) it reads 4 March, which for the Sydney client ended at 13:00 UTC on 4 March; the send is
    # at 12:00 UTC on 5 March, 23:00 in Sydney on the 5th.
    need = _need("daily", "yesterday", D(2024, 3, 4), zone="America/New_York", client_zone="Australia/Sydney")
    assert need is not None and need.at == at(2024, 3, 5, 12)
    assert need.local_minute == 23 * 60
