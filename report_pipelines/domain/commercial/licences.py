"""Licences: what a client holds (``client_products``), paid or on trial.

Dates are days, both ends **inclusive**: a licence is active on ``valid_from``, on ``valid_to`` and
every day between; ``valid_to=None`` never ends. A licence with ``valid_to = 2024-03-14`` is active
on the 14th and not on the 15th. An active licence of
:data:`~report_pipelines.domain.commercial.products.REPORTS_PRODUCT` is what puts a client (and its
time zone) into the report pipelines; :func:`served_on` is the one rule for which client-days they serve.

* **Approval** (:func:`licences_from_approved`): one licence per line of an approved proposal, from
  ``on`` for ``term_days`` days (``None``: until ended), at the line's unit price and discount.
* **Trials** (:func:`trial_licences`): a prospect gets the products free for a fixed number of days,
  from :data:`TRIAL_MIN_DAYS` to :data:`TRIAL_MAX_DAYS`; a trial of ``days`` days starting on
  ``start`` ends on ``start + days - 1`` (a 14-day trial from the 1st is active through the 14th).
* A trial ends by its own ``valid_to``; an approved proposal's licences carry the account on past it
  (nothing is torn down: :func:`served_on` looks at the latest licence).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from decimal import Decimal

from report_pipelines.domain.commercial.money import Money, round_cents
from report_pipelines.domain.commercial.products import REPORTS_PRODUCT, Product, check_items, validate_code
from report_pipelines.domain.commercial.proposals import Proposal, ProposalStatus
from report_pipelines.domain.errors import InvalidInput

TRIAL_MIN_DAYS = 1
TRIAL_MAX_DAYS = 90


def _is_date(value: object) -> bool:
    return isinstance(value, dt.date) and not isinstance(value, dt.datetime)


@dataclass(frozen=True, slots=True, kw_only=True)
class Licence:
    """``quantity`` units of a product held from ``valid_from`` to ``valid_to`` (inclusive).

    ``unit_price`` is the list price per unit and billing period; ``discount`` the whole line's
    discount (so the line total is ``round(unit_price x quantity) - discount``). Trial licences are free.
    """

    product_code: str
    quantity: int
    unit_price: Money
    discount: Money
    valid_from: dt.date
    valid_to: dt.date | None
    trial: bool
    source_proposal: int | None

    def __post_init__(self) -> None:
        validate_code(self.product_code, "product")
        if isinstance(self.quantity, bool) or not isinstance(self.quantity, int) or self.quantity < 1:
            raise InvalidInput("quantity", f"{self.product_code}: quantity must be a whole number of at least 1, not {self.quantity!r}")
        if self.unit_price.currency != self.discount.currency:
            raise InvalidInput("currency", f"{self.product_code}: price in {self.unit_price.currency}, "
                                           f"discount in {self.discount.currency}")
        if self.unit_price.amount < 0 or self.discount.amount < 0:
            raise InvalidInput("discount", f"{self.product_code}: prices and discounts cannot be negative")
        if self.discount.amount > round_cents(self.unit_price.amount * self.quantity, self.unit_price.currency):
            raise InvalidInput("discount", f"{self.product_code}: discount {self.discount} is larger than the price")
        if not _is_date(self.valid_from):
            raise InvalidInput("valid_from", f"{self.valid_from!r} is not a date")
        if self.valid_to is not None and (not _is_date(self.valid_to) or self.valid_to < self.valid_from):
            raise InvalidInput("valid_to", f"{self.valid_to!r} must be a date on or after {self.valid_from}")
        if self.trial and (self.unit_price.amount != 0 or self.discount.amount != 0):
            raise InvalidInput("trial", f"{self.product_code}: a trial licence is free")

    @property
    def line_total(self) -> Money:
        return Money(round_cents(self.unit_price.amount * self.quantity, self.unit_price.currency), self.unit_price.currency) \
            - self.discount


def _days(value: int | None, field: str, low: int, high: int | None = None) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < low or (high is not None and value > high):
        bounds = f"from {low} to {high}" if high is not None else f"at least {low}"
        raise InvalidInput(field, f"must be a whole number of days {bounds}, not {value!r}")
    return value


def licences_from_approved(proposal: Proposal, on: dt.date, term_days: int | None = None) -> list[Licence]:
    """The licences an approved proposal gives, starting on ``on`` (what approval writes as client products).

    ``term_days``: how many days they last (``on`` included), or None for no end date. ``on`` may not
    be before the approval's local date.
    """
    if proposal.status is not ProposalStatus.APPROVED:
        raise InvalidInput("status", f"only an approved proposal becomes licences; this one is {proposal.status.value}")
    if not _is_date(on):
        raise InvalidInput("on", f"{on!r} is not a date")
    approved_on = proposal.local_date(proposal.transitions[-1].at)
    if on < approved_on:
        raise InvalidInput("on", f"licences cannot start on {on}, before the approval ({approved_on})")
    term = _days(term_days, "term_days", 1)
    valid_to = on + dt.timedelta(days=term - 1) if term is not None else None
    return [
        Licence(product_code=line.product.code, quantity=line.quantity, unit_price=line.unit_price,
                discount=line.discount, valid_from=on, valid_to=valid_to, trial=False, source_proposal=proposal.id)
        for line in proposal.priced.lines
    ]


def trial_licences(products: Sequence[Product | tuple[Product, int]], start: dt.date, days: int) -> list[Licence]:
    """Free trial licences of ``products`` for ``days`` days from ``start`` (both inclusive).

    Each entry is a product (quantity 1) or ``(product, quantity)``; the products must be active,
    each at most once, all priced in one currency (the trial's zero prices are in it).
    """
    days = _days(days, "days", TRIAL_MIN_DAYS, TRIAL_MAX_DAYS)
    if not _is_date(start):
        raise InvalidInput("start", f"{start!r} is not a date")
    items, currency = check_items([entry if isinstance(entry, tuple) else (entry, 1) for entry in products])
    free = Money(Decimal(0), currency)
    end = start + dt.timedelta(days=days - 1)
    return [Licence(product_code=product.code, quantity=quantity, unit_price=free, discount=free, valid_from=start,
                    valid_to=end, trial=True, source_proposal=None) for product, quantity in items]


def is_active(licence: Licence, on: dt.date) -> bool:
    """True from ``valid_from`` through ``valid_to``, both inclusive (no end: for ever)."""
    return licence.valid_from <= on and (licence.valid_to is None or on <= licence.valid_to)


def reports_covered_through(licences: Iterable[Licence], today: dt.date) -> dt.date | None:
    """The last local day the reports product covers for a client, as of its local date ``today``.

    The latest end among its reports licences that have started (``valid_from <= today``);
    ``date.max`` when one of them has no end; ``None`` when none has started. A licence that starts
    later covers nothing yet.
    """
    ends = [licence.valid_to or dt.date.max for licence in licences
            if licence.product_code == REPORTS_PRODUCT and licence.valid_from <= today]
    return max(ends, default=None)


def served_on(licences: Iterable[Licence], *, active_from: dt.date, day: dt.date, today: dt.date) -> bool:
    """THE rule of who the pipelines serve: is the client-day ``day`` served, as of the client's ``today``?

    A client-day is served when the client existed that day (``active_from <= day``) and a reports
    licence that has started covers it: ``day`` is not after the end of the latest one
    (:func:`reports_covered_through`). So an active licence brings the client's whole history with
    it (imported calls from before the licence are served), and when the last licence ends, the days
    up to its end stay served (late calls for them are still recomputed, the last day is still built
    after it closes) while every later day is not: an ended licence stops new work, not old.
    """
    through = reports_covered_through(licences, today)
    return through is not None and active_from <= day <= through
