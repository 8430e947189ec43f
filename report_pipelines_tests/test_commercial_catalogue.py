"""Commercial domain, building blocks: money, products, policies and their eligibility. No database."""

from __future__ import annotations

import datetime as dt
import pickle
from decimal import Decimal

import pytest

from report_pipelines.domain.commercial.money import Money, minor_units, round_cents, total
from report_pipelines.domain.commercial.policies import CommercialPolicy, PolicyKind, PolicyUsage, eligibility
from report_pipelines.domain.commercial.products import REPORTS_PRODUCT, Catalogue, Product, Unit, check_quantity
from report_pipelines.domain.errors import InvalidInput, NotFound

D = Decimal
DAY = dt.date(2024, 3, 10)


def eur(amount: str) -> Money:
    return Money.of(amount, "EUR")


def product(code: str = REPORTS_PRODUCT, price: str = "10", currency: str = "EUR", unit: Unit = Unit.SEAT,
            active: bool = True) -> Product:
    return Product(code, code.title(), unit, Money.of(price, currency), active)


def policy(code: str = "P10", *, value: Decimal | Money = D(10), **fields) -> CommercialPolicy:
    kind = PolicyKind.AMOUNT if isinstance(value, Money) else PolicyKind.PERCENTAGE
    fields.setdefault("valid_from", dt.date(2024, 1, 1))
    return CommercialPolicy(code=code, name=f"policy {code}", kind=kind, value=value, created_by="sales@pbx.example",
                            **fields)


# --- money ----------------------------------------------------------------------------------------
@pytest.mark.parametrize(("amount", "currency", "expected"), [
    ("0.005", None, "0.01"),       # half-up, not banker's rounding (which gives 0.00)
    ("0.015", None, "0.02"),
    ("0.025", None, "0.03"),       # banker's rounding would give 0.02
    ("0.0049999", None, "0.00"),
    ("-0.005", None, "-0.01"),     # half away from zero
    ("2.5", "JPY", "3"),
    ("3.5", "JPY", "4"),
    ("1.0005", "BHD", "1.001"),
    ("1.0004", "KWD", "1.000"),
    ("1.005", "EUR", "1.01"),
    ("1.005", "USD", "1.01"),
])
def test_round_cents_is_half_up_to_the_currency_minor_unit(amount: str, currency: str | None, expected: str) -> None:
    rounded = round_cents(D(amount), currency)
    assert rounded == D(expected)
    assert rounded.as_tuple().exponent == D(expected).as_tuple().exponent


def test_minor_units_table() -> None:
    assert (minor_units("EUR"), minor_units("JPY"), minor_units("KRW"), minor_units("BHD"), minor_units("KWD")) == (2, 0, 0, 3, 3)


def test_money_refuses_floats_and_bad_currencies() -> None:
    with pytest.raises(InvalidInput) as caught:
        Money(0.1, "EUR")  # type: ignore[arg-type]
    assert caught.value.field == "amount"
    assert "float" in caught.value.message
    for bad in ("EURO", "E1R", "", None):
        with pytest.raises(InvalidInput) as caught:
            Money(D(1), bad)  # type: ignore[arg-type]
        assert caught.value.field == "currency"
    for bad in ("NaN", "Infinity", "abc", True):
        with pytest.raises(InvalidInput) as caught:
            Money.of(bad, "EUR")  # type: ignore[arg-type]
        assert caught.value.field == "amount"
    assert Money.of(" 3 ", " eur ") == Money(D(3), "EUR")


def test_money_arithmetic_only_within_one_currency() -> None:
    assert eur("1.10") + eur("2.205") == eur("3.305")
    assert eur("5") - eur("7.5") == eur("-2.5")
    assert eur("33.335") * 3 == eur("100.005")
    assert 3 * eur("1.5") == eur("4.5")
    assert eur("1") < eur("1.01") and eur("2") >= eur("2.00")
    usd = Money.of("1", "USD")
    for operation in (lambda: eur("1") + usd, lambda: eur("1") - usd, lambda: eur("1") < usd):
        with pytest.raises(InvalidInput) as caught:
            operation()
        assert caught.value.field == "currency"
        assert "EUR and USD" in caught.value.message
    with pytest.raises(InvalidInput):
        eur("1") * 1.5  # type: ignore[operator]
    assert eur("1") != usd  # equality across currencies is simply False


def test_money_rounding_and_display() -> None:
    assert eur("100.005").rounded() == eur("100.01")
    assert Money.of("2.5", "JPY").rounded() == Money.of("3", "JPY")
    assert not eur("33.335").is_rounded() and eur("33.30").is_rounded()
    assert str(eur("10")) == "10.00 EUR"
    assert str(eur("1234.5")) == "1,234.50 EUR"
    assert str(eur("33.335")) == "33.335 EUR"
    assert str(Money.of("1500", "JPY")) == "1,500 JPY"
    assert str(Money.of("1.5", "BHD")) == "1.500 BHD"
    assert total([eur("1"), eur("2.5")], "EUR") == eur("3.5")
    assert total([], "JPY") == Money.zero("JPY")


def test_errors_name_their_field_and_survive_pickling() -> None:
    with pytest.raises(InvalidInput) as caught:
        Money(D(1), "EU")
    again = pickle.loads(pickle.dumps(caught.value))
    assert (again.field, again.message) == ("currency", caught.value.message)


# --- products -------------------------------------------------------------------------------------
def test_product_validation() -> None:
    good = product()
    assert good.unit is Unit.SEAT and good.active
    assert Product("SEAT-PRO_2", "  Seat pro ", "licence", eur("1")).unit is Unit.LICENCE  # type: ignore[arg-type]
    cases = [
        (dict(code="reports"), "code"), (dict(code="R"), "code"), (dict(code="A" * 33), "code"),
        (dict(code="REP ORTS"), "code"), (dict(name=" "), "name"), (dict(unit="hour"), "unit"),
        (dict(list_price=eur("0")), "list_price"), (dict(list_price=eur("-1")), "list_price"),
        (dict(list_price=D(10)), "list_price"),
    ]
    for change, field in cases:
        fields = dict(code="REPORTS", name="Reports", unit=Unit.SEAT, list_price=eur("10"))
        fields.update(change)
        with pytest.raises(InvalidInput) as caught:
            Product(**fields)
        assert caught.value.field == field, change


@pytest.mark.parametrize(("unit", "quantity", "ok"), [
    (Unit.SEAT, 1, True), (Unit.SEAT, 1_000_000, True), (Unit.SEAT, 1_000_001, False),
    (Unit.SEAT, 0, False), (Unit.SEAT, -3, False), (Unit.LICENCE, 2, True),
    (Unit.SEAT, 2.0, False), (Unit.SEAT, True, False), (Unit.SEAT, "2", False),
    (Unit.FLAT, 1, True), (Unit.FLAT, 2, False),
])
def test_quantities(unit: Unit, quantity: object, ok: bool) -> None:
    item = product(unit=unit)
    if ok:
        assert check_quantity(item, quantity) == quantity  # type: ignore[arg-type]
    else:
        with pytest.raises(InvalidInput) as caught:
            check_quantity(item, quantity)  # type: ignore[arg-type]
        assert caught.value.field == "quantity"


def test_catalogue_resolves_codes_and_names_unknown_products() -> None:
    catalogue = Catalogue([product("REPORTS"), product("SEAT")])
    assert catalogue.items([("SEAT", 3)]) == ((catalogue.get("SEAT"), 3),)
    with pytest.raises(NotFound) as caught:
        catalogue.get("FAX")
    assert caught.value.field == "product"
    assert "'FAX'" in caught.value.message and "REPORTS, SEAT" in caught.value.message
    with pytest.raises(InvalidInput) as caught:
        Catalogue([product("SEAT"), product("SEAT", price="2")])
    assert caught.value.field == "product"


# --- policies -------------------------------------------------------------------------------------
@pytest.mark.parametrize(("fields", "field"), [
    (dict(value=D(0)), "value"), (dict(value=D("100.01")), "value"), (dict(value=D(-5)), "value"),
    (dict(value=10.0), "value"), (dict(value=Money.of(0, "EUR")), "value"),
    (dict(kind=PolicyKind.AMOUNT, value=D(5)), "value"), (dict(kind="bogus"), "kind"),
    (dict(valid_to=dt.date(2023, 12, 31)), "valid_to"), (dict(valid_from=dt.datetime(2024, 1, 1)), "valid_from"),
    (dict(min_quantity=0), "min_quantity"), (dict(max_uses=0), "max_uses"),
    (dict(max_uses_per_client=-1), "max_uses_per_client"), (dict(products="REPORTS"), "products"),
    (dict(products={"reports"}), "products"), (dict(code="p10"), "code"), (dict(created_by=""), "created_by"),
    (dict(stackable="yes"), "stackable"),
])
def test_policy_validation(fields: dict, field: str) -> None:
    base = dict(code="P10", name="ten", kind=PolicyKind.PERCENTAGE, value=D(10), valid_from=dt.date(2024, 1, 1),
                created_by="ana")
    base.update(fields)
    with pytest.raises(InvalidInput) as caught:
        CommercialPolicy(**base)
    assert caught.value.field == field


def test_policy_accepts_its_limits() -> None:
    assert policy(value=D(100)).value == 100
    assert policy(value=D("0.01")).describe() == "0.01% off"
    assert policy(value=eur("5"), stackable=True).describe() == "5.00 EUR off each line, stackable"
    assert policy(products=["SEAT", "REPORTS"]).products == frozenset({"SEAT", "REPORTS"})


def test_usage_validation() -> None:
    assert PolicyUsage(3, {"acme": 2}).of("acme") == 2 and PolicyUsage().of("acme") == 0
    for bad in (dict(total=-1), dict(total=1, by_client={"acme": 2}), dict(total=1, by_client={"acme": -1})):
        with pytest.raises(InvalidInput) as caught:
            PolicyUsage(**bad)
        assert caught.value.field == "usage"


# Eligibility table: (policy fields, items, usage, expected reason fragments; [] = eligible).
SEAT = product("SEAT", "10")
REPORTS = product("REPORTS", "30")
ELIGIBILITY = [
    ("eligible", {}, [(SEAT, 1)], None, []),
    ("first day of the window (inclusive)", dict(valid_from=DAY), [(SEAT, 1)], None, []),
    ("day before the window", dict(valid_from=DAY + dt.timedelta(days=1)), [(SEAT, 1)], None, ["not valid yet on 2024-03-10"]),
    ("last day of the window (inclusive)", dict(valid_to=DAY), [(SEAT, 1)], None, []),
    ("day after the window", dict(valid_to=DAY - dt.timedelta(days=1)), [(SEAT, 1)], None, ["no longer valid on 2024-03-10"]),
    ("inactive", dict(active=False), [(SEAT, 1)], None, ["inactive"]),
    ("product not covered", dict(products={"REPORTS"}), [(SEAT, 1)], None, ["covers none of the proposal's products"]),
    ("one covered product is enough", dict(products={"REPORTS"}), [(SEAT, 1), (REPORTS, 1)], None, []),
    ("minimum quantity met exactly", dict(min_quantity=5), [(SEAT, 5)], None, []),
    ("below the minimum quantity", dict(min_quantity=5), [(SEAT, 4)], None, ["SEAT: quantity 4 is below its minimum of 5"]),
    ("one line meets the minimum", dict(min_quantity=5), [(SEAT, 4), (REPORTS, 5)], None, []),
    ("uses below the overall limit", dict(max_uses=3), [(SEAT, 1)], PolicyUsage(2), []),
    ("overall limit reached", dict(max_uses=3), [(SEAT, 1)], PolicyUsage(3), ["used 3 times, at most 3 overall"]),
    ("client below its limit", dict(max_uses_per_client=2), [(SEAT, 1)], PolicyUsage(9, {"acme": 1, "other": 5}), []),
    ("client limit reached", dict(max_uses_per_client=2), [(SEAT, 1)], PolicyUsage(9, {"acme": 2}), ["for acme: used 2 times"]),
    ("other clients do not count", dict(max_uses_per_client=1), [(SEAT, 1)], PolicyUsage(5, {"other": 5}), []),
    ("amount equal to the line", dict(value=eur("10")), [(SEAT, 1)], None, []),
    ("amount larger than the line", dict(value=eur("10.01")), [(SEAT, 1)], None, ["discount larger than the price"]),
    ("amount in another currency", dict(value=Money.of("1", "USD")), [(SEAT, 1)], None, ["its amount is in USD, the proposal is in EUR"]),
    ("several reasons at once", dict(active=False, max_uses=1, valid_to=dt.date(2024, 2, 1)), [(SEAT, 1)], PolicyUsage(1),
     ["inactive", "no longer valid", "at most 1 overall"]),
]


@pytest.mark.parametrize(("label", "fields", "items", "usage", "expected"), ELIGIBILITY, ids=[case[0] for case in ELIGIBILITY])
def test_eligibility(label: str, fields: dict, items: list, usage: PolicyUsage | None, expected: list[str]) -> None:
    reasons = eligibility(policy(**fields), items, DAY, "acme", usage)
    assert len(reasons) == len(expected), reasons
    for fragment in expected:
        assert any(fragment in reason for reason in reasons), (fragment, reasons)


def test_eligibility_takes_one_item_and_checks_it() -> None:
    assert eligibility(policy(), (SEAT, 2), DAY, "acme") == []
    with pytest.raises(InvalidInput) as caught:
        eligibility(policy(), (SEAT, 0), DAY, "acme")
    assert caught.value.field == "quantity"


def test_whole_values_are_validated_whole_a_trailing_newline_is_refused() -> None:
    from report_pipelines.domain.clients import validate_slug
    from report_pipelines.domain.commercial.products import validate_code

    for call, field in ((lambda: validate_slug("acme\n"), "slug"), (lambda: validate_code("REPORTS\n"), "code")):
        with pytest.raises(InvalidInput) as err:
            call()
        assert err.value.field == field
