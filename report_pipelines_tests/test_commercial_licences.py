"""Licences: from approved proposals, trials (fixed days, inclusive ends), and the one rule of which
client-days the reports pipelines serve, on the boundary days. Pure domain, no database."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest

from report_pipelines.domain.commercial.licences import (
    TRIAL_MAX_DAYS,
    Licence,
    is_active,
    licences_from_approved,
    reports_covered_through,
    served_on,
    trial_licences,
)
from report_pipelines.domain.commercial.money import Money
from report_pipelines.domain.commercial.policies import CommercialPolicy, PolicyKind
from report_pipelines.domain.commercial.pricing import price_proposal
from report_pipelines.domain.commercial.products import REPORTS_PRODUCT, Product, Unit
from report_pipelines.domain.commercial.proposals import (
    ClientRef,
    Proposal,
    ProposalStatus,
    Prospect,
    approve,
    expire,
    new_proposal,
    reject,
    submit,
)
from report_pipelines.domain.errors import InvalidInput

UTC = dt.UTC
REPORTS = Product(REPORTS_PRODUCT, "Reports", Unit.LICENCE, Money.of("33.335", "EUR"))
SEAT = Product("SEAT", "Seat", Unit.SEAT, Money.of("10", "EUR"))
TEN = CommercialPolicy(code="P10", name="ten", kind=PolicyKind.PERCENTAGE, value=Decimal(10), valid_from=dt.date(2024, 1, 1),
                       created_by="sales", products=frozenset({REPORTS_PRODUCT}))
MARCH_1 = dt.date(2024, 3, 1)
AT = dt.datetime(2024, 3, 10, 12, 0, tzinfo=UTC)


def day(n: int) -> dt.date:
    """The n-th of March 2024 (0 is 29 February)."""
    return MARCH_1 + dt.timedelta(days=n - 1)


def proposal(customer: ClientRef | Prospect = ClientRef("acme", "Europe/Lisbon")) -> Proposal:
    priced = price_proposal([(REPORTS, 3), (SEAT, 4)], [TEN], AT.date(), customer.key)
    return new_proposal(customer, priced, valid_until=dt.date(2024, 3, 31), by="ana", at=AT, id=42)


def approved(customer: ClientRef | Prospect = ClientRef("acme", "Europe/Lisbon")) -> Proposal:
    return approve(submit(proposal(customer), "client", AT), "carol", AT)


def test_an_approved_proposal_becomes_licences() -> None:
    reports, seats = licences_from_approved(approved(), dt.date(2024, 3, 10), term_days=365)
    assert reports == Licence(product_code=REPORTS_PRODUCT, quantity=3, unit_price=Money.of("33.335", "EUR"),
                              discount=Money.of("10.01", "EUR"), valid_from=dt.date(2024, 3, 10),
                              valid_to=dt.date(2025, 3, 9), trial=False, source_proposal=42)
    assert reports.line_total == Money.of("90.00", "EUR")  # the priced line total, to the cent
    assert (seats.product_code, seats.quantity, seats.discount, seats.line_total) == (
        "SEAT", 4, Money.of("0.00", "EUR"), Money.of("40.00", "EUR"))
    open_ended = licences_from_approved(approved(), dt.date(2024, 4, 1))
    assert {licence.valid_to for licence in open_ended} == {None}
    one_day = licences_from_approved(approved(), dt.date(2024, 3, 10), term_days=1)
    assert one_day[0].valid_to == dt.date(2024, 3, 10)


@pytest.mark.parametrize("status", [s for s in ProposalStatus if s is not ProposalStatus.APPROVED])
def test_only_approved_proposals_become_licences(status: ProposalStatus) -> None:
    draft = proposal()
    made = {
        ProposalStatus.DRAFT: lambda: draft,
        ProposalStatus.SUBMITTED: lambda: submit(draft, "client", AT),
        ProposalStatus.REJECTED: lambda: reject(submit(draft, "client", AT), "carol", AT, "no"),
        ProposalStatus.EXPIRED: lambda: expire(draft, dt.datetime(2024, 4, 1, 12, tzinfo=UTC)),
    }[status]()
    with pytest.raises(InvalidInput) as caught:
        licences_from_approved(made, dt.date(2024, 4, 2))
    assert caught.value.field == "status"
    assert status.value in caught.value.message


@pytest.mark.parametrize(("kwargs", "field"), [
    (dict(on=dt.date(2024, 3, 9)), "on"),  # before the approval day
    (dict(on=dt.date(2024, 3, 10), term_days=0), "term_days"),
    (dict(on=dt.date(2024, 3, 10), term_days=-30), "term_days"),
    (dict(on=dt.date(2024, 3, 10), term_days=True), "term_days"),
    (dict(on=AT), "on"),  # a datetime is not a date
])
def test_approval_licence_arguments(kwargs: dict, field: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        licences_from_approved(approved(), **kwargs)
    assert caught.value.field == field


@pytest.mark.parametrize(("days", "last_day"), [(1, day(1)), (14, day(14)), (31, day(31)), (TRIAL_MAX_DAYS, dt.date(2024, 5, 29))])
def test_trials_last_a_fixed_number_of_days_both_ends_inclusive(days: int, last_day: dt.date) -> None:
    (licence,) = trial_licences([REPORTS], MARCH_1, days)
    assert (licence.valid_from, licence.valid_to, licence.trial, licence.quantity) == (MARCH_1, last_day, True, 1)
    assert (last_day - licence.valid_from).days + 1 == days
    assert licence.unit_price == Money.of("0", "EUR") and licence.line_total == Money.of("0", "EUR")
    assert licence.source_proposal is None


@pytest.mark.parametrize(("products", "days", "field"), [
    ([REPORTS], 0, "days"), ([REPORTS], 91, "days"), ([REPORTS], -1, "days"), ([REPORTS], 14.0, "days"),
    ([Product("OLD", "Old", Unit.SEAT, Money.of("1", "EUR"), active=False)], 14, "product"),
    ([REPORTS, REPORTS], 14, "product"),
    ([(SEAT, 0)], 14, "quantity"),
    ([REPORTS, Product("US", "Us", Unit.SEAT, Money.of("1", "USD"))], 14, "currency"),
    ([], 14, "items"),
])
def test_trial_refusals(products: list, days: int, field: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        trial_licences(products, MARCH_1, days)
    assert caught.value.field == field


def test_trial_of_several_products_and_seats() -> None:
    reports, seats = trial_licences([REPORTS, (SEAT, 5)], MARCH_1, 14)
    assert (reports.product_code, reports.quantity, seats.product_code, seats.quantity) == (REPORTS_PRODUCT, 1, "SEAT", 5)


LONG_AGO = dt.date(2020, 1, 1)  # a client whose imported history starts long before its licence


def served(licences: list[Licence], day: dt.date, today: dt.date, active_from: dt.date = LONG_AGO) -> bool:
    return served_on(licences, active_from=active_from, day=day, today=today)


@pytest.mark.parametrize(("on", "expected"), [
    (day(0), False),   # the day before it starts
    (day(1), True),    # valid_from, inclusive
    (day(14), True),   # valid_to, inclusive
    (day(15), False),  # the day after
])
def test_a_trial_serves_its_days_on_the_boundary_days(on: dt.date, expected: bool) -> None:
    licences = trial_licences([REPORTS], MARCH_1, 14)
    assert is_active(licences[0], on) is expected
    assert served(licences, on, today=on, active_from=MARCH_1) is expected


def test_an_active_licence_brings_the_clients_history_with_it() -> None:
    paid = licences_from_approved(approved(), dt.date(2024, 3, 10))  # open-ended from 10 March
    assert served(paid, dt.date(2021, 6, 1), today=dt.date(2024, 3, 10))  # imported history, once licensed
    assert not served(paid, dt.date(2021, 6, 1), today=dt.date(2024, 3, 9))  # not before the licence starts
    assert not served(paid, dt.date(2019, 12, 31), today=dt.date(2024, 3, 10))  # before the client existed
    assert served(paid, dt.date(2034, 1, 1), today=dt.date(2034, 1, 1))  # no end date
    assert reports_covered_through(paid, dt.date(2024, 3, 10)) == dt.date.max


def test_an_ended_licence_keeps_its_days_and_serves_no_later_one() -> None:
    trial = trial_licences([REPORTS], MARCH_1, 14)  # 1..14 March
    today = dt.date(2024, 4, 20)
    assert served(trial, day(14), today=today)  # late calls for the last licensed day are still work
    assert served(trial, day(2), today=today, active_from=MARCH_1)
    assert not served(trial, day(15), today=today)  # the first day after the end is not
    assert reports_covered_through(trial, today) == day(14)


def test_only_started_reports_licences_count() -> None:
    seats_only = trial_licences([SEAT], MARCH_1, 14)
    assert not served(seats_only, day(5), today=day(5)) and reports_covered_through(seats_only, day(5)) is None
    assert not served([], day(5), today=day(5))
    later = licences_from_approved(approved(), dt.date(2024, 3, 10))
    assert not served(later, day(5), today=day(5))  # it starts on the 10th: nothing is served yet
    expired_reports_and_active_seats = trial_licences([REPORTS], MARCH_1, 5) + trial_licences([SEAT], MARCH_1, 30)
    assert not served(expired_reports_and_active_seats, day(6), today=day(6))


def test_a_prospect_from_trial_to_client() -> None:
    prospect = Prospect("Ana Lima", "ana@example.com", "America/Sao_Paulo")
    trial = trial_licences([REPORTS], MARCH_1, 14)
    assert served(trial, day(14), today=day(14)) and not served(trial, day(15), today=day(15))
    deal = approved(prospect)
    assert deal.client_key == "prospect:ana@example.com"
    held = trial + licences_from_approved(deal, day(10))
    assert served(held, day(15), today=day(15))  # the approved licence carries the reports on past the trial


@pytest.mark.parametrize(("fields", "field"), [
    (dict(quantity=0), "quantity"),
    (dict(product_code="reports"), "product"),
    (dict(discount=Money.of("100.02", "EUR")), "discount"),  # more than round(33.335 x 3) = 100.01
    (dict(discount=Money.of("-1", "EUR")), "discount"),
    (dict(discount=Money.of("1", "USD")), "currency"),
    (dict(valid_to=dt.date(2024, 2, 29)), "valid_to"),
    (dict(trial=True), "trial"),
])
def test_licence_validation(fields: dict, field: str) -> None:
    values = dict(product_code=REPORTS_PRODUCT, quantity=3, unit_price=Money.of("33.335", "EUR"),
                  discount=Money.of("100.01", "EUR"), valid_from=MARCH_1, valid_to=None, trial=False, source_proposal=None)
    assert Licence(**values).line_total == Money.of("0", "EUR")
    with pytest.raises(InvalidInput) as caught:
        Licence(**(values | fields))
    assert caught.value.field == field
