"""Products the platform sells, at a list price per billing period.

A product is sold by the seat (one per user), by the licence (one per PBX, site, ...) or flat (once
per account: a flat product's quantity is always 1). :data:`REPORTS_PRODUCT` is the reports
product: an active licence of it is what puts a client into the report pipelines.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType

from report_pipelines.domain.clients import validate_name
from report_pipelines.domain.commercial.money import Money
from report_pipelines.domain.errors import InvalidInput, NotFound

#: The code of the reports product.
REPORTS_PRODUCT = "REPORTS"

_CODE = re.compile(r"^[A-Z0-9_-]{2,32}$")

#: Largest quantity on one line (a typo guard: no tenant has a million seats).
MAX_QUANTITY = 1_000_000


class Unit(str, enum.Enum):
    SEAT = "seat"
    LICENCE = "licence"
    FLAT = "flat"


def validate_code(code: str, field: str = "code") -> str:
    """Upper-case letters, digits, ``_`` and ``-``, 2 to 32 characters (``REPORTS``, ``SEAT-PRO``)."""
    if type(code) is str and code in _CODES_SEEN:  # every licence read back checks its product's code again
        return code
    if not isinstance(code, str) or not _CODE.fullmatch(code):
        raise InvalidInput(field, f"{code!r} is not a valid code (2-32 upper-case letters, digits, '_' or '-', e.g. 'REPORTS')")
    if len(_CODES_SEEN) < 10_000:  # a catalogue has tens of codes; a flood of new ones is not kept
        _CODES_SEEN.add(code)
    return code


#: Codes :func:`validate_code` has accepted (a few per catalogue).
_CODES_SEEN: set[str] = set()


@dataclass(frozen=True, slots=True)
class Product:
    """A product of the catalogue; ``list_price`` is per unit and per billing period."""

    code: str
    name: str
    unit: Unit
    list_price: Money
    active: bool = True

    def __post_init__(self) -> None:
        validate_code(self.code, "code")
        object.__setattr__(self, "name", validate_name(self.name, "name"))
        try:
            object.__setattr__(self, "unit", Unit(self.unit))
        except ValueError:
            raise InvalidInput("unit", f"{self.unit!r} is not a unit (one of: {', '.join(u.value for u in Unit)})") from None
        if not isinstance(self.list_price, Money):
            raise InvalidInput("list_price", f"{self.list_price!r} is not Money (give Money(Decimal('19.99'), 'EUR'))")
        if self.list_price.amount <= 0:
            raise InvalidInput("list_price", f"must be more than zero, not {self.list_price}")
        if not isinstance(self.active, bool):
            raise InvalidInput("active", f"{self.active!r} is not a boolean")


def check_quantity(product: Product, quantity: int, field: str = "quantity") -> int:
    """A whole number from 1 to :data:`MAX_QUANTITY`; exactly 1 for a flat product."""
    if isinstance(quantity, bool) or not isinstance(quantity, int):
        raise InvalidInput(field, f"{product.code}: {quantity!r} is not a whole number of {product.unit.value}s")
    if quantity <= 0:
        raise InvalidInput(field, f"{product.code}: quantity must be at least 1, not {quantity}")
    if quantity > MAX_QUANTITY:
        raise InvalidInput(field, f"{product.code}: quantity {quantity:,} is more than {MAX_QUANTITY:,}")
    if product.unit is Unit.FLAT and quantity != 1:
        raise InvalidInput(field, f"{product.code} is a flat product: its quantity is 1, not {quantity}")
    return quantity


def check_items(items: Sequence[tuple[Product, int]]) -> tuple[tuple[tuple[Product, int], ...], str]:
    """The items of a proposal, checked, and their one currency.

    At least one item; each a ``(Product, quantity)`` of an active product with a valid quantity
    (:func:`check_quantity`); a product at most once (put the whole quantity on one line); every list
    price in the same currency.
    """
    items = tuple(items)
    if not items:
        raise InvalidInput("items", "a proposal needs at least one item (product and quantity)")
    seen: set[str] = set()
    for item in items:
        if not (isinstance(item, tuple) and len(item) == 2 and isinstance(item[0], Product)):
            raise InvalidInput("product", f"{item!r} is not a (Product, quantity) pair")
        product, quantity = item
        if not product.active:
            raise InvalidInput("product", f"{product.code} ({product.name}) is no longer sold (inactive)")
        if product.code in seen:
            raise InvalidInput("product", f"{product.code} appears on two lines; put the whole quantity on one line")
        seen.add(product.code)
        check_quantity(product, quantity)
    currencies = sorted({product.list_price.currency for product, _ in items})
    if len(currencies) > 1:
        by = ", ".join(f"{p.code} in {p.list_price.currency}" for p, _ in items)
        raise InvalidInput("currency", f"one proposal is priced in one currency; these items mix {' and '.join(currencies)} ({by})")
    return items, currencies[0]


class Catalogue:
    """The products by code, to turn what a user typed (codes and quantities) into priced items."""

    def __init__(self, products: Iterable[Product]) -> None:
        found: dict[str, Product] = {}
        for product in products:
            if product.code in found:
                raise InvalidInput("product", f"two products have the code {product.code!r}")
            found[product.code] = product
        self.products: Mapping[str, Product] = MappingProxyType(found)

    def get(self, code: str) -> Product:
        """The product called ``code``, or ``NotFound("product", ...)`` listing the known codes."""
        try:
            return self.products[code]
        except (KeyError, TypeError):
            raise NotFound("product", f"unknown product {code!r}; known: {', '.join(sorted(self.products)) or 'none'}") from None

    def items(self, requested: Sequence[tuple[str, int]]) -> tuple[tuple[Product, int], ...]:
        """``[(code, quantity), ...]`` as ``[(Product, quantity), ...]``; quantities are checked by pricing."""
        return tuple((self.get(code), quantity) for code, quantity in requested)
