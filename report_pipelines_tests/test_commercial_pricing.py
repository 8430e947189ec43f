"""Pricing a proposal: tables of cases (rounding, amounts, limits, stacking, ties, currencies) and a
property over random proposals. Pure domain, no database."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from report_pipelines.domain.commercial.money import Money, minor_units
from report_pipelines.domain.commercial.policies import CommercialPolicy, PolicyKind, PolicyUsage
from report_pipelines.domain.commercial.pricing import PricedProposal, price_proposal
from report_pipelines.domain.commercial.products import REPORTS_PRODUCT, Product, Unit
from report_pipelines.domain.errors import InvalidInput, NotFound

D = Decimal
ON = dt.date(2024, 3, 10)


def product(code: str, price: str, currency: str = "EUR", unit: Unit = Unit.SEAT, active: bool = True) -> Product:
    return Product(code, code.title(), unit, Money.of(price, currency), active)


def pct(code: str, value: str, **fields) -> CommercialPolicy:
    fields.setdefault("valid_from", dt.date(2024, 1, 1))
    return CommercialPolicy(code=code, name=code, kind=PolicyKind.PERCENTAGE, value=D(value), created_by="sales", **fields)


def off(code: str, amount: str, currency: str = "EUR", **fields) -> CommercialPolicy:
    fields.setdefault("valid_from", dt.date(2024, 1, 1))
    return CommercialPolicy(code=code, name=code, kind=PolicyKind.AMOUNT, value=Money.of(amount, currency),
                            created_by="sales", **fields)


REPORTS = product(REPORTS_PRODUCT, "33.335")
SEAT = product("SEAT", "10")
HUNDRED = product("PBX", "100")
SETUP = product("SETUP", "250", unit=Unit.FLAT)


@dataclass
class Case:
    id: str
    items: list[tuple[Product, int]]
    policies: list[CommercialPolicy] = field(default_factory=list)
    line_totals: list[str] | None = None  # expected, in item order
    applied: tuple[str, ...] = ()
    usage: dict[str, PolicyUsage] = field(default_factory=dict)
    requested: str | None = None
    client: str = "acme"
    error: tuple[type[Exception], str, str] | None = None  # (type, field, fragment of the message)
    explains: tuple[str, ...] = ()  # fragments the explanation must contain
    discounts: list[str] | None = None  # expected line discounts


CASES = [
    # --- rounding: once, at the line total, half-up ------------------------------------------------
    Case("list price rounded at the line, not the unit", [(product("X1", "0.333"), 3)], line_totals=["1.00"]),
    Case("half a cent rounds up", [(REPORTS, 1)], line_totals=["33.34"]),
    Case("exact line needs no rounding", [(product("X1", "0.125"), 2)], line_totals=["0.25"]),
    Case("3 x 33.335 at 10% rounds once: 90.0045 -> 90.00", [(REPORTS, 3)], [pct("P10", "10")],
         line_totals=["90.00"], applied=("P10",), discounts=["10.01"]),
    Case("half-up, not half-even, after a discount: 5.025 -> 5.03", [(product("X1", "10.05"), 1)], [pct("P50", "50")],
         line_totals=["5.03"], applied=("P50",)),
    Case("just under half a cent rounds down", [(product("X1", "10.0499"), 1)], [pct("P50", "50")],
         line_totals=["5.02"], applied=("P50",)),
    Case("100% makes the line free", [(SEAT, 2)], [pct("FREE", "100")], line_totals=["0.00"], applied=("FREE",)),
    # --- amounts: off each line's total, once --------------------------------------------------------
    Case("amount off the line total, not per unit", [(SEAT, 3)], [off("A5", "5")], line_totals=["25.00"], applied=("A5",)),
    Case("amount off every line it covers", [(SEAT, 3), (HUNDRED, 1)], [off("A5", "5")],
         line_totals=["25.00", "95.00"], applied=("A5",)),
    Case("amount only on the covered products", [(SEAT, 3), (HUNDRED, 1)], [off("A5", "5", products={"PBX"})],
         line_totals=["30.00", "95.00"], applied=("A5",)),
    Case("amount equal to the price makes the line free", [(SEAT, 1)], [off("A10", "10")], line_totals=["0.00"], applied=("A10",)),
    Case("amount larger than the price is not chosen", [(SEAT, 1)], [off("A11", "10.01")], line_totals=["10.00"],
         explains=("A11", "discount larger than the price: 10.01 EUR off the SEAT line of 10.00 EUR")),
    Case("amount larger than one covered line is not chosen at all", [(SEAT, 1), (HUNDRED, 1)], [off("A20", "20")],
         line_totals=["10.00", "100.00"]),
    Case("amount larger than the price refused when requested", [(SEAT, 1)], [off("A11", "10.01")], requested="A11",
         error=(InvalidInput, "discount", "discount larger than the price")),
    # --- minimum quantity --------------------------------------------------------------------------
    Case("below the minimum quantity", [(SEAT, 4)], [pct("BULK", "20", min_quantity=5)], line_totals=["40.00"],
         explains=("quantity 4 is below its minimum of 5",)),
    Case("at the minimum quantity", [(SEAT, 5)], [pct("BULK", "20", min_quantity=5)], line_totals=["40.00"], applied=("BULK",)),
    Case("minimum is per line", [(SEAT, 5), (HUNDRED, 1)], [pct("BULK", "20", min_quantity=5)],
         line_totals=["40.00", "100.00"], applied=("BULK",)),
    # --- validity window, inclusive both ends ------------------------------------------------------
    Case("window starts on the day", [(SEAT, 1)], [pct("P10", "10", valid_from=ON)], line_totals=["9.00"], applied=("P10",)),
    Case("window starts the next day", [(SEAT, 1)], [pct("P10", "10", valid_from=ON + dt.timedelta(days=1))],
         line_totals=["10.00"], explains=("not valid yet on 2024-03-10",)),
    Case("window ends on the day", [(SEAT, 1)], [pct("P10", "10", valid_to=ON)], line_totals=["9.00"], applied=("P10",)),
    Case("window ended the day before", [(SEAT, 1)], [pct("P10", "10", valid_to=ON - dt.timedelta(days=1))],
         line_totals=["10.00"], explains=("no longer valid on 2024-03-10 (valid until 2024-03-09 inclusive)",)),
    Case("outside its window refused when requested", [(SEAT, 1)], [pct("P10", "10", valid_to=dt.date(2024, 2, 1))],
         requested="P10", error=(InvalidInput, "policy", "no longer valid")),
    Case("inactive policy refused when requested", [(SEAT, 1)], [pct("P10", "10", active=False)], requested="P10",
         error=(InvalidInput, "policy", "inactive")),
    # --- use limits: the best eligible one takes over ----------------------------------------------
    Case("overall limit not reached", [(SEAT, 1)], [pct("P20", "20", max_uses=5), pct("P10", "10")],
         usage={"P20": PolicyUsage(4)}, line_totals=["8.00"], applied=("P20",)),
    Case("overall limit reached: next best", [(SEAT, 1)], [pct("P20", "20", max_uses=5), pct("P10", "10")],
         usage={"P20": PolicyUsage(5)}, line_totals=["9.00"], applied=("P10",), explains=("used 5 times, at most 5 overall",)),
    Case("client limit reached for this client", [(SEAT, 1)], [pct("P20", "20", max_uses_per_client=1)],
         usage={"P20": PolicyUsage(3, {"acme": 1})}, line_totals=["10.00"], explains=("for acme: used 1 times",)),
    Case("client limit counts only this client", [(SEAT, 1)], [pct("P20", "20", max_uses_per_client=1)],
         usage={"P20": PolicyUsage(3, {"globex": 3})}, line_totals=["8.00"], applied=("P20",)),
    Case("use limit refused when requested", [(SEAT, 1)], [pct("P20", "20", max_uses=1)], usage={"P20": PolicyUsage(1)},
         requested="P20", error=(InvalidInput, "policy", "use limit reached")),
    # --- best single non-stackable policy, ties -----------------------------------------------------
    Case("best single policy wins", [(SEAT, 3)], [pct("P10", "10"), pct("P15", "15"), off("A4", "4")],
         line_totals=["25.50"], applied=("P15",),
         explains=("P15 (15% off) applied, 4.50 EUR off: the largest discount for the client among 3",
                   "P10 (10% off): the proposal discount would be 3.00 EUR with it, less than 4.50 EUR with P15",
                   "A4 (4.00 EUR off each line): the proposal discount would be 4.00 EUR")),
    Case("an amount can beat a percentage", [(SEAT, 3)], [pct("P10", "10"), off("A4", "4")], line_totals=["26.00"], applied=("A4",)),
    Case("tie: first code in alphabetical order", [(SEAT, 2)], [pct("ZED", "10"), off("ALPHA", "2")],
         line_totals=["18.00"], applied=("ALPHA",), explains=("ZED (10% off): the proposal discount would also be 2.00 EUR",
                                                               "on a tie the first code in alphabetical order wins (ALPHA)")),
    Case("tie decided on the rounded total", [(product("X1", "1.00"), 1)], [pct("B1", "0.5"), pct("A1", "0.4")],
         line_totals=["1.00"], applied=(), explains=("less than a cent once line totals are rounded",)),
    Case("a policy that rounds to nothing is not used", [(product("X1", "1.00"), 1)], [pct("TINY", "0.01")],
         line_totals=["1.00"], applied=(), explains=("TINY", "less than a cent")),
    Case("requested policy beats the best one", [(SEAT, 3)], [pct("P10", "10"), pct("P15", "15")], requested="P10",
         line_totals=["27.00"], applied=("P10",), explains=("P10 (10% off) applied, 3.00 EUR off: it was requested",
                                                              "P15 (15% off): P10 was requested instead")),
    Case("unknown requested policy", [(SEAT, 1)], [pct("P10", "10")], requested="P99", error=(NotFound, "policy", "'P99'")),
    # --- stacking -------------------------------------------------------------------------------------
    Case("stackables apply on top of the best single one: percentages, then amounts", [(HUNDRED, 1)],
         [pct("P10", "10"), pct("S5", "5", stackable=True), off("SA1", "1", stackable=True), pct("P8", "8")],
         line_totals=["84.50"], applied=("P10", "S5", "SA1"),
         explains=("S5 (5% off, stackable) applied on top, 4.50 EUR off", "SA1 (1.00 EUR off each line, stackable) applied on top, 1.00 EUR off")),
    Case("a single amount goes first, stackable percentages on what remains", [(HUNDRED, 1)],
         [off("A10", "10"), pct("S10", "10", stackable=True)], line_totals=["81.00"], applied=("A10", "S10")),
    Case("stackable percentages compound", [(HUNDRED, 1)], [pct("S10", "10", stackable=True), pct("S5", "5", stackable=True)],
         line_totals=["85.50"], applied=("S10", "S5")),
    Case("non-stackable policies never combine", [(HUNDRED, 1)], [pct("P10", "10"), pct("P5", "5")],
         line_totals=["90.00"], applied=("P10",)),
    Case("stackable amount larger than what remains is left out", [(HUNDRED, 1)], [pct("P50", "50"), off("SA60", "60", stackable=True)],
         requested="P50", line_totals=["50.00"], applied=("P50",),
         explains=("SA60 (60.00 EUR off each line, stackable): discount larger than the price: after P50, only 50.00 EUR remains",)),
    Case("the best single policy is the best with the stackables", [(HUNDRED, 1)],
         [pct("P50", "50"), off("A40", "40"), off("SA55", "55", stackable=True)],
         line_totals=["5.00"], applied=("A40", "SA55"), explains=("P50 (50% off): the proposal discount would be 50.00 EUR with it, less than 95.00 EUR with A40",)),
    Case("no single policy beats a single one that leaves the stackables room", [(HUNDRED, 1)],
         [pct("P50", "50"), off("SA60", "60", stackable=True)], line_totals=["40.00"], applied=("SA60",),
         explains=("P50 (50% off): the proposal discount would be 50.00 EUR with it, less than 60.00 EUR without a non-stackable policy",)),
    Case("a requested stackable keeps out the single policies it cannot follow", [(HUNDRED, 1)],
         [pct("P70", "70"), off("SA60", "60", stackable=True)], requested="SA60", line_totals=["40.00"], applied=("SA60",),
         explains=("SA60 (60.00 EUR off each line, stackable) applied on top (requested)",
                   "P70 (70% off): with it the requested SA60 would not apply: discount larger than the price")),
    Case("a requested stackable the others leave no room for is refused", [(HUNDRED, 1)],
         [off("SA60", "60", stackable=True), off("SB50", "50", stackable=True)], requested="SB50",
         error=(InvalidInput, "discount", "policy SB50 cannot be used: discount larger than the price: after SA60, only 40.00 EUR")),
    Case("stacked only on the lines each covers", [(SEAT, 1), (HUNDRED, 1)],
         [pct("P10", "10", products={"SEAT"}), pct("S50", "50", stackable=True, products={"PBX"})],
         line_totals=["9.00", "50.00"], applied=("P10", "S50")),
    # --- currencies -----------------------------------------------------------------------------------
    Case("JPY has no decimals", [(product("JP", "333", "JPY"), 1)], [pct("P10", "10")], line_totals=["300"], applied=("P10",)),
    Case("JPY rounds half-up to the yen", [(product("JP", "125", "JPY"), 1)], [pct("P10", "10")], line_totals=["113"], applied=("P10",)),
    Case("BHD has three decimals", [(product("BH", "1.2345", "BHD"), 1)], line_totals=["1.235"]),
    Case("items in two currencies are refused", [(SEAT, 1), (product("US", "10", "USD"), 1)],
         error=(InvalidInput, "currency", "mix EUR and USD")),
    Case("an amount in another currency is not chosen", [(SEAT, 2)], [off("USD5", "5", "USD")], line_totals=["20.00"],
         explains=("its amount is in USD, the proposal is in EUR",)),
    Case("an amount in another currency is refused when requested", [(SEAT, 2)], [off("USD5", "5", "USD")], requested="USD5",
         error=(InvalidInput, "currency", "its amount is in USD")),
    # --- bad items ----------------------------------------------------------------------------------
    Case("zero quantity", [(SEAT, 0)], error=(InvalidInput, "quantity", "at least 1")),
    Case("negative quantity", [(SEAT, -2)], error=(InvalidInput, "quantity", "at least 1")),
    Case("fractional quantity", [(SEAT, 1.5)], error=(InvalidInput, "quantity", "whole number")),
    Case("flat product twice", [(SETUP, 2)], error=(InvalidInput, "quantity", "flat product")),
    Case("inactive product", [(product("OLD", "5", active=False), 1)], error=(InvalidInput, "product", "no longer sold")),
    Case("same product on two lines", [(SEAT, 1), (SEAT, 2)], error=(InvalidInput, "product", "two lines")),
    Case("no items", [], error=(InvalidInput, "items", "at least one item")),
    Case("two policies with one code", [(SEAT, 1)], [pct("P10", "10"), pct("P10", "20")], error=(InvalidInput, "policies", "P10")),
    Case("no client key", [(SEAT, 1)], client=" ", error=(InvalidInput, "client_key", "required")),
]


def _check_invariants(priced: PricedProposal) -> None:
    assert priced.total == sum((line.line_total for line in priced.lines), Money.zero(priced.currency))
    assert priced.subtotal - priced.discount == priced.total
    for line in priced.lines:
        assert line.list_total - line.discount == line.line_total
        assert Money.zero(priced.currency) <= line.discount <= line.list_total
        assert line.line_total.is_rounded() and line.list_total.is_rounded()


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_pricing_table(case: Case) -> None:
    def run() -> PricedProposal:
        return price_proposal(case.items, case.policies, ON, case.client, case.usage, requested_policy=case.requested)

    if case.error is not None:
        kind, field_name, fragment = case.error
        with pytest.raises(kind) as caught:
            run()
        assert type(caught.value) is kind
        assert caught.value.field == field_name
        assert fragment in caught.value.message
        return
    priced = run()
    assert [str(line.line_total.amount) for line in priced.lines] == case.line_totals
    assert priced.applied == case.applied
    if case.discounts is not None:
        assert [str(line.discount.amount) for line in priced.lines] == case.discounts
    for fragment in case.explains:
        assert fragment in priced.explanation, priced.explanation
    _check_invariants(priced)
    # every candidate is accounted for: applied with its discount, or not with its reasons
    assert [o.code for o in priced.outcomes] == sorted(p.code for p in case.policies)
    for outcome in priced.outcomes:
        assert outcome.applied == (outcome.code in priced.applied)
        assert (outcome.discount is not None) == outcome.applied
        assert bool(outcome.reasons) != outcome.applied


def test_totals_and_lines_of_a_full_proposal() -> None:
    priced = price_proposal([(REPORTS, 3), (SEAT, 4), (SETUP, 1)],
                            [pct("P10", "10", products={REPORTS_PRODUCT}), off("S5", "5", stackable=True, products={"SETUP"})],
                            ON, "acme")
    reports, seats, setup = priced.lines
    assert (reports.list_total, reports.discount, reports.line_total) == (Money.of("100.01", "EUR"), Money.of("10.01", "EUR"),
                                                                          Money.of("90.00", "EUR"))
    assert (seats.line_total, seats.applied) == (Money.of("40.00", "EUR"), ())
    assert (setup.line_total, setup.applied) == (Money.of("245.00", "EUR"), ("S5",))
    assert reports.unit_price == Money.of("33.335", "EUR")
    assert (priced.subtotal, priced.discount, priced.total) == (Money.of("390.01", "EUR"), Money.of("15.01", "EUR"),
                                                                 Money.of("375.00", "EUR"))
    assert priced.items == ((REPORTS, 3), (SEAT, 4), (SETUP, 1))
    assert seats.explanation == ("4 x 10.00 EUR; list price; P10 does not apply here: SEAT is not among its products (REPORTS); "
                                 "S5 does not apply here: SEAT is not among its products (SETUP)")
    assert reports.explanation == "3 x 33.335 EUR; P10 (10% off); S5 does not apply here: REPORTS is not among its products (SETUP)"
    assert setup.explanation == ("1 x 250.00 EUR; S5 (5.00 EUR off each line, stackable); "
                                 "P10 does not apply here: SETUP is not among its products (REPORTS)")
    assert priced.explanation.splitlines()[0] == (
        "Priced on 2024-03-10 for acme in EUR: subtotal 390.01 EUR, discount 15.01 EUR, total 375.00 EUR.")


def test_explanation_lists_every_candidate_with_its_discount_or_reasons() -> None:
    priced = price_proposal([(HUNDRED, 2)], [pct("P10", "10"), pct("P20", "20", max_uses=1), off("A5", "5"),
                                             pct("OLD", "50", valid_from=dt.date(2023, 1, 1), valid_to=dt.date(2023, 12, 31))],
                            ON, "acme", {"P20": PolicyUsage(1)})
    assert priced.explanation.splitlines() == [
        "Priced on 2024-03-10 for acme in EUR: subtotal 200.00 EUR, discount 20.00 EUR, total 180.00 EUR.",
        "P10 (10% off) applied, 20.00 EUR off: the largest discount for the client among 2 eligible non-stackable policies.",
        "Not used:",
        "- A5 (5.00 EUR off each line): the proposal discount would be 5.00 EUR with it, less than 20.00 EUR with P10.",
        "- OLD (50% off): no longer valid on 2024-03-10 (valid until 2023-12-31 inclusive).",
        "- P20 (20% off): use limit reached: used 1 times, at most 1 overall.",
    ]
    by_code = {o.code: o for o in priced.outcomes}
    assert by_code["A5"].alternative_discount == Money.of("5", "EUR")
    assert by_code["P10"].discount == Money.of("20", "EUR") and by_code["P10"].alternative_discount is None


def test_no_policy_at_all_is_list_price() -> None:
    priced = price_proposal([(SEAT, 2)], [], ON, "acme")
    assert priced.total == Money.of("20", "EUR") and priced.applied == () and priced.outcomes == ()
    assert "No commercial policy was offered: list prices." in priced.explanation


def test_pricing_does_not_depend_on_the_order_of_policies() -> None:
    policies = [pct("ZED", "10"), off("ALPHA", "2"), pct("S5", "5", stackable=True), off("SA1", "1", stackable=True)]
    first = price_proposal([(SEAT, 2), (HUNDRED, 1)], policies, ON, "acme")
    second = price_proposal([(SEAT, 2), (HUNDRED, 1)], list(reversed(policies)), ON, "acme")
    assert first == second


# --- property -------------------------------------------------------------------------------------
CURRENCIES = ["EUR", "JPY", "BHD"]


@st.composite
def proposals(draw: st.DrawFn) -> tuple[list, list, dict, str]:
    currency = draw(st.sampled_from(CURRENCIES))
    count = draw(st.integers(1, 4))
    items = []
    for index in range(count):
        places = draw(st.integers(0, 4))
        price = D(draw(st.integers(1, 10**7))).scaleb(-places)
        items.append((product(f"P{index}", str(price), currency), draw(st.integers(1, 50))))
    codes = [p.code for p, _ in items]
    policies = []
    usage = {}
    for index in range(draw(st.integers(0, 6))):
        code = f"POL{index}"
        fields = dict(
            stackable=draw(st.booleans()),
            products=draw(st.sets(st.sampled_from(codes))),
            min_quantity=draw(st.none() | st.integers(1, 30)),
            valid_from=ON - dt.timedelta(days=draw(st.integers(-2, 5))),
            max_uses=draw(st.none() | st.integers(1, 3)),
        )
        if draw(st.booleans()):
            policies.append(pct(code, str(D(draw(st.integers(1, 10000))).scaleb(-2)), **fields))
        else:
            amount = D(draw(st.integers(1, 10**6))).scaleb(-draw(st.integers(0, 3)))
            policies.append(off(code, str(amount), draw(st.sampled_from([currency] * 4 + ["USD"])), **fields))
        usage[code] = PolicyUsage(draw(st.integers(0, 3)))
    return items, policies, usage, currency


@settings(max_examples=150, deadline=None)
@given(proposals())
def test_property_totals_add_up_and_discounts_stay_within_the_price(case: tuple[list, list, dict, str]) -> None:
    items, policies, usage, currency = case
    priced = price_proposal(items, policies, ON, "acme", usage)  # choosing automatically never refuses
    places = minor_units(currency)
    assert priced.total == sum((line.line_total for line in priced.lines), Money.zero(currency))
    assert priced.subtotal - priced.discount == priced.total
    for line, (item, quantity) in zip(priced.lines, items, strict=True):
        assert D(0) <= line.discount.amount <= line.list_total.amount
        assert -line.line_total.amount.as_tuple().exponent <= places
        assert line.list_total.amount == (item.list_price.amount * quantity).quantize(D(1).scaleb(-places), rounding="ROUND_HALF_UP")
        assert line.line_total.currency == currency
    assert len(priced.outcomes) == len(policies)
    assert sum(1 for code in priced.applied if not next(p for p in policies if p.code == code).stackable) <= 1
