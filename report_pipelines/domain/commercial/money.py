"""Money: a ``Decimal`` amount in one currency. Never a float.

Amounts keep whatever precision they are given (a unit price may be ``33.335``); rounding happens
once, where the pricing rules say so (the line total), with :func:`round_cents`: half-up to the
currency's minor unit. Arithmetic and comparisons only combine amounts of the same currency; mixing
currencies is refused with ``InvalidInput("currency", ...)``, never converted.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation

from report_pipelines.domain.errors import InvalidInput

_CURRENCY = re.compile(r"^[A-Z]{3}$")

#: Decimals of the currencies that do not have two (ISO 4217 minor units). Every other currency: 2.
MINOR_UNITS: dict[str, int] = {"JPY": 0, "KRW": 0, "BHD": 3, "KWD": 3}
DEFAULT_MINOR_UNITS = 2

#: Largest absolute amount accepted (far above any price; keeps every product of prices and
#: quantities well inside ``Decimal``'s default 28 significant digits).
MAX_AMOUNT = Decimal(10) ** 15


def validate_currency(currency: str, field: str = "currency") -> str:
    """An ISO 4217 alphabetic code, returned upper-case (``" eur "`` becomes ``"EUR"``).

    Only the shape is checked (three letters); which codes exist is the catalogue's business.
    """
    if type(currency) is str and currency in _CODES_SEEN:  # every amount read back checks its code again
        return currency
    code = currency.strip().upper() if isinstance(currency, str) else currency
    if not isinstance(code, str) or not _CURRENCY.fullmatch(code):
        raise InvalidInput(field, f"{currency!r} is not a currency code (three letters, ISO 4217, e.g. 'EUR')")
    _CODES_SEEN.add(code)
    return code


#: The codes :func:`validate_currency` has accepted, as given (three upper-case letters: at most 26 ** 3).
_CODES_SEEN: set[str] = set()


def minor_units(currency: str) -> int:
    """How many decimals amounts in ``currency`` are rounded to (JPY 0, BHD 3, most 2)."""
    return MINOR_UNITS.get(validate_currency(currency), DEFAULT_MINOR_UNITS)


def to_decimal(value: Decimal | int | str, field: str = "amount") -> Decimal:
    """``value`` as a finite ``Decimal``; floats (already inexact) and booleans are refused."""
    if isinstance(value, bool) or isinstance(value, float):
        raise InvalidInput(field, f"{value!r} is a {type(value).__name__}; give a Decimal, an int or a string such as '19.99'")
    if isinstance(value, Decimal):
        number = value
    elif isinstance(value, int):
        number = Decimal(value)
    elif isinstance(value, str):
        try:
            number = Decimal(value.strip())
        except InvalidOperation:
            raise InvalidInput(field, f"{value!r} is not a number") from None
    else:
        raise InvalidInput(field, f"{value!r} is not a number (expected a Decimal, an int or a string)")
    if not number.is_finite():
        raise InvalidInput(field, f"{value!r} is not a finite number")
    return number


def round_cents(amount: Decimal, currency: str | None = None) -> Decimal:
    """``amount`` rounded half-up to the currency's minor unit (two decimals when no currency).

    ``round_cents(Decimal("0.005")) == Decimal("0.01")``, ``round_cents(Decimal("2.5"), "JPY") == 3``.
    """
    amount = to_decimal(amount)
    places = DEFAULT_MINOR_UNITS if currency is None else minor_units(currency)
    return amount.quantize(_QUANTUM[places], rounding=ROUND_HALF_UP)


#: ``Decimal("1E-<places>")`` for each minor unit (1, 0.01, 0.001): built once, not per rounding.
_QUANTUM: dict[int, Decimal] = {places: Decimal(1).scaleb(-places)
                                for places in {DEFAULT_MINOR_UNITS, *MINOR_UNITS.values()}}


@dataclass(frozen=True, slots=True)
class Money:
    """An amount of one currency. ``Money(Decimal("19.99"), "EUR")`` or ``Money.of("19.99", "EUR")``."""

    amount: Decimal
    currency: str

    def __post_init__(self) -> None:
        amount = self.amount
        if type(amount) is not Decimal or not amount.is_finite():  # a finite Decimal (every amount read back) stays
            amount = to_decimal(amount, "amount")
            object.__setattr__(self, "amount", amount)
        if abs(amount) >= MAX_AMOUNT:
            raise InvalidInput("amount", f"{amount} is too large (limit {MAX_AMOUNT:,})")
        currency = validate_currency(self.currency)
        if currency is not self.currency:  # normalised (" eur " -> "EUR")
            object.__setattr__(self, "currency", currency)

    @classmethod
    def of(cls, amount: Decimal | int | str, currency: str) -> Money:
        return cls(to_decimal(amount), currency)

    @classmethod
    def zero(cls, currency: str) -> Money:
        return cls(Decimal(0), currency)

    # --- same-currency arithmetic ------------------------------------------------------------------
    def _same(self, other: object, action: str) -> Money:
        if not isinstance(other, Money):
            raise TypeError(f"cannot {action} Money and {type(other).__name__}")
        if other.currency != self.currency:
            raise InvalidInput("currency", f"cannot {action} {self.currency} and {other.currency} amounts (no conversion is made)")
        return other

    def __add__(self, other: Money) -> Money:
        return Money(self.amount + self._same(other, "add").amount, self.currency)

    def __sub__(self, other: Money) -> Money:
        return Money(self.amount - self._same(other, "subtract").amount, self.currency)

    def __neg__(self) -> Money:
        return Money(-self.amount, self.currency)

    def __mul__(self, factor: Decimal | int) -> Money:
        if isinstance(factor, Money):
            raise TypeError("cannot multiply Money by Money")
        return Money(self.amount * to_decimal(factor, "factor"), self.currency)

    __rmul__ = __mul__

    def __lt__(self, other: Money) -> bool:
        return self.amount < self._same(other, "compare").amount

    def __le__(self, other: Money) -> bool:
        return self.amount <= self._same(other, "compare").amount

    def __gt__(self, other: Money) -> bool:
        return self.amount > self._same(other, "compare").amount

    def __ge__(self, other: Money) -> bool:
        return self.amount >= self._same(other, "compare").amount

    # --- rounding and display ----------------------------------------------------------------------
    def rounded(self) -> Money:
        """Half-up to the currency's minor unit."""
        return Money(round_cents(self.amount, self.currency), self.currency)

    def is_rounded(self) -> bool:
        """True when the amount has no more decimals than the currency has."""
        return self.amount == round_cents(self.amount, self.currency)

    def __str__(self) -> str:
        places = minor_units(self.currency)
        amount = self.amount
        if self.is_rounded():
            amount = round_cents(amount, self.currency)  # pads 10 -> 10.00, never changes the value
        return f"{amount:,.{max(places, -amount.as_tuple().exponent)}f} {self.currency}"


def total(amounts: Iterable[Money], currency: str) -> Money:
    """The sum of ``amounts`` (all in ``currency``); zero in ``currency`` when there are none."""
    result = Money.zero(currency)
    for amount in amounts:
        result = result + amount
    return result
