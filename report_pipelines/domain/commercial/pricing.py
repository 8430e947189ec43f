"""Pricing a proposal: list prices, the policy (or policies) that apply, rounded line totals.

Rules (each one tested in ``report_pipelines_tests/test_commercial_pricing.py``):

* **Rounding once.** A line's exact amount is ``unit price x quantity`` minus the exact discounts;
  only the **line total** is rounded, half-up to the currency's minor unit (JPY 0, BHD 3, most 2).
  The line's ``list_total`` is the exact list amount rounded the same way, and its ``discount`` is
  ``list_total - line_total``, so every line adds up to the cent. The proposal's ``subtotal``,
  ``discount`` and ``total`` are the sums of the lines' (``total`` = sum of line totals).
* **Best single policy.** Of the eligible non-stackable policies, at most one is used: the one that
  leaves the client the lowest total (largest proposal discount, counted after rounding and
  together with the stackable policies). **Ties**: using no non-stackable policy beats using one that
  adds nothing after rounding (its use is not consumed); between policies, the first code in
  alphabetical order wins.
* **Stacking.** Every eligible stackable policy applies, on top of the chosen non-stackable one:
  first the chosen one, then the stackable percentages (by code), each on what remains of the line,
  then the stackable amounts (by code). A stackable amount larger than what remains of a line it
  covers at that point, or a stackable policy that takes nothing off, is left out and explained.
* **Requested policy.** ``requested_policy`` names a policy that must be used. A non-stackable one
  replaces the automatic choice (stackable ones still apply on top); a stackable one is applied with
  the other stackable ones. If it cannot be used, pricing is refused: ``InvalidInput("policy", ...)``
  with every reason, or naming ``currency`` (an amount in another currency) or ``discount`` (an amount
  larger than the price of a line). An unknown code is ``NotFound("policy", ...)``.
* **Automatic choice never refuses** for a policy: an ineligible policy is skipped and the
  ``explanation`` says why (each candidate with its discount or its reasons).
* **Items** are checked by :func:`~report_pipelines.domain.commercial.products.check_items`:
  quantities (``quantity``), inactive products (``product``), one currency (``currency``).
"""

from __future__ import annotations

import datetime as dt
import decimal
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal

from report_pipelines.domain.commercial.money import Money, round_cents, total
from report_pipelines.domain.commercial.policies import (
    Assessment,
    CommercialPolicy,
    PolicyKind,
    PolicyUsage,
    assess,
    index_policies,
    line_reason,
)
from report_pipelines.domain.commercial.products import Product, check_items
from report_pipelines.domain.errors import InvalidInput, NotFound

#: Working precision of the exact (unrounded) arithmetic: far more than any price needs, so
#: sequential percentages never lose a digit that could move a half-cent.
_PRECISION = 60


@dataclass(frozen=True, slots=True)
class PricedLine:
    """One line of a priced proposal. ``list_total - discount == line_total``, all rounded."""

    product: Product
    quantity: int
    unit_price: Money  # the product's list price, unrounded (it may have more decimals than the currency)
    list_total: Money
    discount: Money
    line_total: Money
    applied: tuple[str, ...]  # policy codes, in the order they were applied to this line
    explanation: str


@dataclass(frozen=True, slots=True)
class PolicyOutcome:
    """What became of one candidate policy.

    ``discount``: for an applied policy, the part of the discount it took off (exact, shown
    rounded). ``alternative_discount``: for an eligible non-stackable policy that was not chosen, the
    proposal's whole discount had it been chosen instead. ``reasons``: why it was not applied.
    """

    code: str
    description: str
    stackable: bool
    applied: bool
    discount: Money | None
    alternative_discount: Money | None
    reasons: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class PricedProposal:
    on: dt.date
    client_key: str
    currency: str
    lines: tuple[PricedLine, ...]
    applied: tuple[str, ...]  # every policy used, in application order
    requested_policy: str | None
    outcomes: tuple[PolicyOutcome, ...]  # one per candidate policy, by code
    subtotal: Money
    discount: Money
    total: Money
    explanation: str

    @property
    def items(self) -> tuple[tuple[Product, int], ...]:
        return tuple((line.product, line.quantity) for line in self.lines)


@dataclass(frozen=True, slots=True)
class _Combination:
    base: CommercialPolicy | None
    applied: tuple[CommercialPolicy, ...]
    remaining: tuple[Decimal, ...]  # exact amount left on each line
    per_line: tuple[tuple[str, ...], ...]
    contributions: Mapping[str, Decimal]
    dropped: Mapping[str, tuple[str, str]]  # code -> (field, reason)
    line_totals: tuple[Decimal, ...]  # rounded
    discount: Decimal  # sum of rounded list totals - sum of rounded line totals

    def sort_key(self) -> tuple[Decimal, int, str]:
        return (-self.discount, 0 if self.base is None else 1, self.base.code if self.base else "")


def _combine(base: CommercialPolicy | None, stackables: Sequence[CommercialPolicy], assessments: Mapping[str, Assessment],
             items: Sequence[tuple[Product, int]], list_exact: Sequence[Decimal], list_rounded: Sequence[Decimal],
             currency: str) -> _Combination:
    remaining = list(list_exact)
    per_line: list[list[str]] = [[] for _ in items]
    contributions: dict[str, Decimal] = {}
    dropped: dict[str, tuple[str, str]] = {}
    applied: list[CommercialPolicy] = []
    steps = ([base] if base is not None else []) + \
        sorted((p for p in stackables if p.kind is PolicyKind.PERCENTAGE), key=lambda p: p.code) + \
        sorted((p for p in stackables if p.kind is PolicyKind.AMOUNT), key=lambda p: p.code)
    for policy in steps:
        lines = assessments[policy.code].lines
        if policy.kind is PolicyKind.PERCENTAGE:
            factor = 1 - policy.value / 100
            after = {i: remaining[i] * factor for i in lines}
        else:
            short = [i for i in lines if policy.value.amount > remaining[i]]
            if short:
                before = ", ".join(p.code for p in applied)
                what = "; ".join(f"only {Money(round_cents(remaining[i], currency), currency)} remains of the "
                                 f"{items[i][0].code} line" for i in short)
                dropped[policy.code] = ("discount", f"discount larger than the price: after {before}, {what}, "
                                                    f"less than its {policy.value} off")
                continue
            after = {i: remaining[i] - policy.value.amount for i in lines}
        taken = sum((remaining[i] - after[i] for i in lines), Decimal(0))
        if taken == 0:
            dropped[policy.code] = ("policy", "takes nothing off: nothing remains of the lines it covers")
            continue
        for i in lines:
            remaining[i] = after[i]
            per_line[i].append(policy.code)
        contributions[policy.code] = taken
        applied.append(policy)
    line_totals = tuple(round_cents(amount, currency) for amount in remaining)
    return _Combination(base, tuple(applied), tuple(remaining), tuple(tuple(codes) for codes in per_line),
                        contributions, dropped, line_totals, sum(list_rounded) - sum(line_totals))


def _refuse(policy: CommercialPolicy, reasons: Sequence[tuple[str, str]]) -> InvalidInput:
    fields = {field for field, _ in reasons}
    field = "currency" if "currency" in fields else "discount" if "discount" in fields else "policy"
    return InvalidInput(field, f"policy {policy.code} cannot be used: " + "; ".join(message for _, message in reasons))


def price_proposal(items: Sequence[tuple[Product, int]], policies: Sequence[CommercialPolicy], on: dt.date,
                   client_key: str, usage: Mapping[str, PolicyUsage] | None = None,
                   requested_policy: str | None = None) -> PricedProposal:
    """Price ``items`` with the best of ``policies`` for ``client_key`` on ``on`` (see the module rules).

    ``usage`` maps policy codes to how often approved proposals used them (missing: never).
    """
    checked, currency = check_items(items)
    if not isinstance(on, dt.date) or isinstance(on, dt.datetime):
        raise InvalidInput("on", f"{on!r} is not a date")
    if not isinstance(client_key, str) or not client_key.strip():
        raise InvalidInput("client_key", "the client (or prospect) key is required: use limits are counted per client")
    by_code = index_policies(policies)
    usage = dict(usage or {})
    for code, counted in usage.items():
        if not isinstance(counted, PolicyUsage):
            raise InvalidInput("usage", f"the usage of {code!r} is not a PolicyUsage")

    with decimal.localcontext() as context:
        context.prec = _PRECISION
        assessments = {code: assess(policy, checked, on=on, client_key=client_key, usage=usage.get(code))
                       for code, policy in sorted(by_code.items())}
        requested: CommercialPolicy | None = None
        if requested_policy is not None:
            if requested_policy not in by_code:
                known = ", ".join(sorted(by_code)) or "none"
                raise NotFound("policy", f"unknown policy {requested_policy!r}; the candidates are: {known}")
            requested = by_code[requested_policy]
            reasons = assessments[requested.code].reasons
            if reasons:
                raise _refuse(requested, [(r.field, r.message) for r in reasons])

        eligible = [assessments[code].policy for code in sorted(assessments) if assessments[code].eligible]
        stackables = [p for p in eligible if p.stackable]
        singles = [p for p in eligible if not p.stackable]
        if requested is not None and not requested.stackable:
            bases: list[CommercialPolicy | None] = [requested]
        else:
            bases = [None, *singles]

        list_exact = [product.list_price.amount * quantity for product, quantity in checked]
        list_rounded = [round_cents(amount, currency) for amount in list_exact]
        combinations = [_combine(base, stackables, assessments, checked, list_exact, list_rounded, currency) for base in bases]
        usable = combinations
        if requested is not None and requested.stackable:
            usable = [c for c in combinations if requested in c.applied]
            if not usable:
                best_try = min(combinations, key=_Combination.sort_key)
                raise _refuse(requested, [best_try.dropped[requested.code]])
        chosen = min(usable, key=_Combination.sort_key)

    lines = []
    for index, ((product, quantity), codes) in enumerate(zip(checked, chosen.per_line, strict=True)):
        list_total = Money(list_rounded[index], currency)
        line_total = Money(chosen.line_totals[index], currency)
        lines.append(PricedLine(
            product=product, quantity=quantity, unit_price=product.list_price, list_total=list_total,
            discount=list_total - line_total, line_total=line_total, applied=codes,
            explanation=_line_explanation(product, quantity, codes, chosen, by_code),
        ))
    outcomes = _outcomes(assessments, chosen, combinations, requested, currency)
    subtotal = total((line.list_total for line in lines), currency)
    grand_total = total((line.line_total for line in lines), currency)
    discount = total((line.discount for line in lines), currency)
    priced = dict(on=on, client_key=client_key, currency=currency, lines=tuple(lines),
                  applied=tuple(p.code for p in chosen.applied), requested_policy=requested_policy,
                  outcomes=outcomes, subtotal=subtotal, discount=discount, total=grand_total)
    return PricedProposal(**priced, explanation=_explanation(priced, chosen, outcomes, requested, by_code))


def _line_explanation(product: Product, quantity: int, codes: tuple[str, ...], chosen: _Combination,
                      by_code: Mapping[str, CommercialPolicy]) -> str:
    parts = [f"{quantity} x {product.list_price}"]
    if codes:
        parts.append(" then ".join(f"{code} ({by_code[code].describe()})" for code in codes))
    else:
        parts.append("list price")
    skipped = [line_reason(policy, product, quantity) for policy in chosen.applied if policy.code not in codes]
    notes = [f"{policy.code} does not apply here: {reason}" for policy, reason in
             zip([p for p in chosen.applied if p.code not in codes], skipped, strict=True) if reason]
    return "; ".join(parts + notes)


def _outcomes(assessments: Mapping[str, Assessment], chosen: _Combination, combinations: Sequence[_Combination],
              requested: CommercialPolicy | None, currency: str) -> tuple[PolicyOutcome, ...]:
    by_base = {c.base.code: c for c in combinations if c.base is not None}
    chosen_codes = {p.code for p in chosen.applied}
    outcomes = []
    for code, assessment in sorted(assessments.items()):
        policy = assessment.policy
        discount = alternative = None
        reasons: tuple[str, ...] = tuple(str(reason) for reason in assessment.reasons)
        if code in chosen_codes:
            discount = Money(round_cents(chosen.contributions[code], currency), currency)
        elif not reasons:
            if code in chosen.dropped:
                reasons = (chosen.dropped[code][1],)
            elif requested is not None and not requested.stackable:
                reasons = (f"{requested.code} was requested instead (only one non-stackable policy is used)",)
            elif requested is not None and requested.code in by_base[code].dropped:
                reasons = (f"with it the requested {requested.code} would not apply: {by_base[code].dropped[requested.code][1]}",)
            elif code in by_base:
                mine = by_base[code].discount
                alternative = Money(mine, currency)
                best = chosen.discount
                winner = chosen.base.code if chosen.base else None
                if mine < best:
                    reasons = (f"the proposal discount would be {alternative} with it, "
                               f"less than {Money(best, currency)}"
                               + (f" with {winner}" if winner else " without a non-stackable policy"),)
                elif winner is not None:
                    reasons = (f"the proposal discount would also be {alternative} with it; "
                               f"on a tie the first code in alphabetical order wins ({winner})",)
                else:
                    reasons = (f"it takes off less than a cent once line totals are rounded "
                               f"(proposal discount {alternative} with or without it), so it is not used",)
        outcomes.append(PolicyOutcome(code=code, description=policy.describe(), stackable=policy.stackable,
                                      applied=code in chosen_codes, discount=discount,
                                      alternative_discount=alternative, reasons=reasons))
    return tuple(outcomes)


def _explanation(priced: Mapping[str, object], chosen: _Combination, outcomes: Sequence[PolicyOutcome],
                 requested: CommercialPolicy | None, by_code: Mapping[str, CommercialPolicy]) -> str:
    text = [f"Priced on {priced['on']} for {priced['client_key']} in {priced['currency']}: "
            f"subtotal {priced['subtotal']}, discount {priced['discount']}, total {priced['total']}."]
    by_outcome = {o.code: o for o in outcomes}
    if not by_code:
        text.append("No commercial policy was offered: list prices.")
    elif not chosen.applied:
        text.append("No policy applied: list prices.")
    if chosen.base is not None:
        base = chosen.base
        singles = [o for o in outcomes if not o.stackable and (o.applied or o.alternative_discount is not None)]
        if requested is base:
            why = "it was requested"
        elif len(singles) == 1:
            why = "the only eligible non-stackable policy"
        else:
            why = f"the largest discount for the client among {len(singles)} eligible non-stackable policies"
        # Alone, it took off exactly the proposal's (rounded) discount; its exact share could show a
        # cent more or less than the total printed above.
        share = priced["discount"] if len(chosen.applied) == 1 else by_outcome[base.code].discount
        text.append(f"{base.code} ({base.describe()}) applied, {share} off: {why}.")
    for policy in chosen.applied:
        if policy is not chosen.base:
            why = " (requested)" if requested is policy else ""
            text.append(f"{policy.code} ({policy.describe()}) applied on top{why}, {by_outcome[policy.code].discount} off.")
    unused = [o for o in outcomes if not o.applied]
    if unused:
        text.append("Not used:")
        text.extend(f"- {o.code} ({o.description}): {'; '.join(o.reasons)}." for o in unused)
    return "\n".join(text)
