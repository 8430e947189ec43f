"""Commercial policies: the discounts sales grants, and when one may be used.

A policy takes either a **percentage** off (``0 < value <= 100``) or a fixed **amount** off
(``Money``, more than zero). Decisions, so that every price can be explained:

* **An amount is taken off each line the policy applies to, once per line** (off the line total,
  whatever the quantity; not per unit, not once per proposal). ``5.00 EUR`` off a policy covering
  REPORTS and SEAT takes 5.00 off each of the two lines.
* **A discount is never larger than the price.** An amount larger than a line it would apply to is
  not capped: the policy does not apply to the proposal (``eligibility`` gives that reason; pricing
  refuses it naming ``discount`` when it was asked for explicitly). Equal is allowed (the line is free).
* **Products**: an empty set covers every product; otherwise only the lines of those products.
* **Validity window**: ``valid_from`` and ``valid_to`` are both *inclusive* days; ``valid_to=None``
  never ends.
* **Minimum quantity** is per line: a line of fewer units does not get the policy; a policy that
  applies to no line of the proposal is not eligible.
* **Uses**: one use is one *approved* proposal that applied the policy. The caller counts them (the
  database) and passes :class:`PolicyUsage`; pricing never consumes a use. A policy is used up when
  ``total >= max_uses`` or, for the client at hand, ``by_client[client] >= max_uses_per_client``.
* **Amount policies are in one currency**: they do not apply to proposals priced in another one.
* **Stacking** (``stackable``) is decided by pricing (see :mod:`.pricing`).
"""

from __future__ import annotations

import datetime as dt
import enum
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from types import MappingProxyType

from report_pipelines.domain.clients import validate_name
from report_pipelines.domain.commercial.money import Money, to_decimal
from report_pipelines.domain.commercial.products import Product, check_items, validate_code
from report_pipelines.domain.errors import InvalidInput


class PolicyKind(str, enum.Enum):
    PERCENTAGE = "percentage"
    AMOUNT = "amount"


def _positive_or_none(value: int | None, field_name: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise InvalidInput(field_name, f"must be a whole number of at least 1 (or none), not {value!r}")
    return value


@dataclass(frozen=True, slots=True, kw_only=True)
class CommercialPolicy:
    """A discount created by sales. See the module docstring for what each field means."""

    code: str
    name: str
    kind: PolicyKind
    value: Decimal | Money  # percentage: Decimal in (0, 100]; amount: Money off each line it applies to
    valid_from: dt.date
    created_by: str
    valid_to: dt.date | None = None
    products: frozenset[str] = frozenset()  # empty: every product
    min_quantity: int | None = None
    max_uses: int | None = None
    max_uses_per_client: int | None = None
    stackable: bool = False
    active: bool = True

    def __post_init__(self) -> None:
        validate_code(self.code, "code")
        object.__setattr__(self, "name", validate_name(self.name, "name"))
        object.__setattr__(self, "created_by", validate_name(self.created_by, "created_by"))
        try:
            kind = PolicyKind(self.kind)
        except ValueError:
            raise InvalidInput("kind", f"{self.kind!r} is not a policy kind (percentage or amount)") from None
        object.__setattr__(self, "kind", kind)
        if kind is PolicyKind.PERCENTAGE:
            if isinstance(self.value, Money):
                raise InvalidInput("value", "a percentage policy takes a number such as Decimal('10'), not Money")
            value = to_decimal(self.value, "value")
            if not Decimal(0) < value <= Decimal(100):
                raise InvalidInput("value", f"a percentage must be more than 0 and at most 100, not {value}")
            object.__setattr__(self, "value", value)
        else:
            if not isinstance(self.value, Money):
                raise InvalidInput("value", "an amount policy takes Money (amount and currency), e.g. Money.of('5', 'EUR')")
            if self.value.amount <= 0:
                raise InvalidInput("value", f"an amount off must be more than zero, not {self.value}")
        for name in ("valid_from", "valid_to"):
            day = getattr(self, name)
            if (day is not None or name == "valid_from") and (not isinstance(day, dt.date) or isinstance(day, dt.datetime)):
                raise InvalidInput(name, f"{day!r} is not a date")
        if self.valid_to is not None and self.valid_to < self.valid_from:
            raise InvalidInput("valid_to", f"ends ({self.valid_to}) before it starts ({self.valid_from})")
        if isinstance(self.products, str):
            raise InvalidInput("products", "give a set of product codes, not one string")
        object.__setattr__(self, "products", frozenset(validate_code(code, "products") for code in self.products))
        _positive_or_none(self.min_quantity, "min_quantity")
        _positive_or_none(self.max_uses, "max_uses")
        _positive_or_none(self.max_uses_per_client, "max_uses_per_client")
        for name in ("stackable", "active"):
            if not isinstance(getattr(self, name), bool):
                raise InvalidInput(name, f"{getattr(self, name)!r} is not a boolean")

    def describe(self) -> str:
        """``"10% off"``, ``"5.00 EUR off each line"``, with ``", stackable"`` when it stacks."""
        if self.kind is PolicyKind.PERCENTAGE:
            text = f"{self.value.normalize():f}% off"
        else:
            text = f"{self.value} off each line"
        return text + (", stackable" if self.stackable else "")

    def covers(self, product_code: str) -> bool:
        return not self.products or product_code in self.products


@dataclass(frozen=True, slots=True)
class PolicyUsage:
    """How many approved proposals have used a policy: overall, and per client key."""

    total: int = 0
    by_client: Mapping[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if isinstance(self.total, bool) or not isinstance(self.total, int) or self.total < 0:
            raise InvalidInput("usage", f"the total use count must be a whole number >= 0, not {self.total!r}")
        counts = dict(self.by_client)
        for client, count in counts.items():
            if isinstance(count, bool) or not isinstance(count, int) or count < 0:
                raise InvalidInput("usage", f"the use count of {client!r} must be a whole number >= 0, not {count!r}")
            if count > self.total:
                raise InvalidInput("usage", f"{client!r} used it {count} times, more than the total of {self.total}")
        object.__setattr__(self, "by_client", MappingProxyType(counts))

    def of(self, client_key: str) -> int:
        return self.by_client.get(client_key, 0)


NO_USE = PolicyUsage()


@dataclass(frozen=True, slots=True)
class Reason:
    """Why a policy does not apply, and the field a refusal of it names."""

    field: str
    message: str

    def __str__(self) -> str:
        return self.message


@dataclass(frozen=True, slots=True)
class Assessment:
    """A policy against one proposal: the reasons it does not apply (none: eligible) and the
    indexes of the lines it applies to."""

    policy: CommercialPolicy
    reasons: tuple[Reason, ...]
    lines: tuple[int, ...]

    @property
    def eligible(self) -> bool:
        return not self.reasons


def proposal_reasons(policy: CommercialPolicy, *, on: dt.date, client_key: str, usage: PolicyUsage | None,
                     currency: str) -> list[Reason]:
    """The reasons, independent of the lines, that ``policy`` cannot be used on ``on`` for ``client_key``."""
    usage = usage or NO_USE
    reasons: list[Reason] = []
    if not policy.active:
        reasons.append(Reason("policy", "the policy is inactive (withdrawn by sales)"))
    if on < policy.valid_from:
        reasons.append(Reason("policy", f"not valid yet on {on} (valid from {policy.valid_from})"))
    if policy.valid_to is not None and on > policy.valid_to:
        reasons.append(Reason("policy", f"no longer valid on {on} (valid until {policy.valid_to} inclusive)"))
    if isinstance(policy.value, Money) and policy.value.currency != currency:
        reasons.append(Reason("currency", f"its amount is in {policy.value.currency}, the proposal is in {currency}"))
    if policy.max_uses is not None and usage.total >= policy.max_uses:
        reasons.append(Reason("policy", f"use limit reached: used {usage.total} times, at most {policy.max_uses} overall"))
    if policy.max_uses_per_client is not None and usage.of(client_key) >= policy.max_uses_per_client:
        reasons.append(Reason("policy", f"use limit reached for {client_key}: used {usage.of(client_key)} times, "
                                        f"at most {policy.max_uses_per_client} per client"))
    return reasons


def line_reason(policy: CommercialPolicy, product: Product, quantity: int) -> str | None:
    """Why ``policy`` does not apply to the line ``(product, quantity)``, or None when it does."""
    if not policy.covers(product.code):
        return f"{product.code} is not among its products ({', '.join(sorted(policy.products))})"
    if policy.min_quantity is not None and quantity < policy.min_quantity:
        return f"{product.code}: quantity {quantity} is below its minimum of {policy.min_quantity}"
    return None


def assess(policy: CommercialPolicy, items: Sequence[tuple[Product, int]], *, on: dt.date, client_key: str,
           usage: PolicyUsage | None = None) -> Assessment:
    """``policy`` against the (already checked) ``items`` of a proposal, used on its own."""
    currency = items[0][0].list_price.currency
    reasons = proposal_reasons(policy, on=on, client_key=client_key, usage=usage, currency=currency)
    lines: list[int] = []
    misses: list[str] = []
    for index, (product, quantity) in enumerate(items):
        miss = line_reason(policy, product, quantity)
        if miss is None:
            lines.append(index)
        elif policy.covers(product.code):
            misses.append(miss)
    if not lines:
        if misses:
            reasons.extend(Reason("quantity", miss) for miss in misses)
        else:
            reasons.append(Reason("product", f"covers none of the proposal's products (it covers {', '.join(sorted(policy.products))})"))
    if isinstance(policy.value, Money) and policy.value.currency == currency:
        for index in lines:
            product, quantity = items[index]
            price = product.list_price * quantity
            if policy.value > price:
                reasons.append(Reason("discount", f"discount larger than the price: {policy.value} off the "
                                                  f"{product.code} line of {price}"))
    return Assessment(policy, tuple(reasons), tuple(lines))


def eligibility(policy: CommercialPolicy, items: Sequence[tuple[Product, int]] | tuple[Product, int], on: dt.date,
                client_key: str, usage: PolicyUsage | None = None) -> list[str]:
    """The reasons ``policy`` cannot be used for these items on ``on`` for ``client_key`` (none: it can).

    ``items`` is the proposal's ``[(Product, quantity), ...]`` or one ``(Product, quantity)``;
    they are checked first (quantities, active products, one currency: refused as by pricing).
    """
    if isinstance(items, tuple) and len(items) == 2 and isinstance(items[0], Product):
        items = [items]
    checked, _ = check_items(items)
    return [str(reason) for reason in assess(policy, checked, on=on, client_key=client_key, usage=usage).reasons]


def index_policies(policies: Iterable[CommercialPolicy]) -> dict[str, CommercialPolicy]:
    """The policies by code; a code given twice is refused."""
    found: dict[str, CommercialPolicy] = {}
    for policy in policies:
        if not isinstance(policy, CommercialPolicy):
            raise InvalidInput("policies", f"{policy!r} is not a CommercialPolicy")
        if policy.code in found:
            raise InvalidInput("policies", f"two policies have the code {policy.code!r}")
        found[policy.code] = policy
    return found
