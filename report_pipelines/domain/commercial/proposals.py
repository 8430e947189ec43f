"""Proposals and their life: draft -> submitted -> approved / rejected / expired.

Every function here takes a proposal and returns a **new** one (proposals are frozen); a refused
action raises ``InvalidInput`` and returns nothing, so the proposal the caller holds is untouched.
Each accepted action appends a :class:`Transition` saying who did it and when (an aware instant,
stored in UTC); creation is the first transition (from ``None`` to draft).

========  =============================================  ==================================
action    allowed from                                   to
========  =============================================  ==================================
submit    draft                                          submitted
revise    draft (new pricing, new validity date)         draft
approve   submitted                                      approved
reject    submitted (a reason is required)               rejected
expire    draft or submitted, once past ``valid_until``  expired
========  =============================================  ==================================

Approved, rejected and expired are final. **Validity**: ``valid_until`` is the last day the proposal
can be acted on, inclusive, as a local date in the customer's time zone: on the next local day it
has expired even if nobody marked it yet, so submit, revise, approve and reject are refused and only
``expire`` is allowed. ``expire`` is refused until then. A transition's instant may not be earlier
than the last one recorded.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
from dataclasses import dataclass

from email_validator import EmailNotValidError, validate_email

from report_pipelines.domain.clients import validate_name, validate_slug
from report_pipelines.domain.commercial.pricing import PricedProposal
from report_pipelines.domain.commercial.products import Product
from report_pipelines.domain.errors import InvalidInput
from report_pipelines.domain.timezones import ensure_utc, local_date_of, parse_zone

#: Who records the automatic transitions (expiry).
SYSTEM = "system"


class ProposalStatus(str, enum.Enum):
    DRAFT = "draft"
    SUBMITTED = "submitted"
    APPROVED = "approved"
    REJECTED = "rejected"
    EXPIRED = "expired"

    @property
    def final(self) -> bool:
        return self in (ProposalStatus.APPROVED, ProposalStatus.REJECTED, ProposalStatus.EXPIRED)


#: action -> (statuses it is allowed from, status it leads to)
ACTIONS: dict[str, tuple[frozenset[ProposalStatus], ProposalStatus]] = {
    "submit": (frozenset({ProposalStatus.DRAFT}), ProposalStatus.SUBMITTED),
    "revise": (frozenset({ProposalStatus.DRAFT}), ProposalStatus.DRAFT),
    "approve": (frozenset({ProposalStatus.SUBMITTED}), ProposalStatus.APPROVED),
    "reject": (frozenset({ProposalStatus.SUBMITTED}), ProposalStatus.REJECTED),
    "expire": (frozenset({ProposalStatus.DRAFT, ProposalStatus.SUBMITTED}), ProposalStatus.EXPIRED),
}


@dataclass(frozen=True, slots=True)
class ClientRef:
    """An existing client (tenant), by slug, with its time zone (validity dates are its local days)."""

    slug: str
    timezone: str

    def __post_init__(self) -> None:
        validate_slug(self.slug, "client")
        object.__setattr__(self, "timezone", parse_zone(self.timezone, "timezone").key)

    @property
    def key(self) -> str:
        return self.slug


@dataclass(frozen=True, slots=True)
class Prospect:
    """Someone who is not a client yet (maybe on a trial account)."""

    name: str
    email: str
    timezone: str

    def __post_init__(self) -> None:
        object.__setattr__(self, "name", validate_name(self.name, "name"))
        if not isinstance(self.email, str):
            raise InvalidInput("email", f"{self.email!r} is not an e-mail address")
        try:
            email = validate_email(self.email.strip(), check_deliverability=False).normalized
        except EmailNotValidError as exc:
            raise InvalidInput("email", f"{self.email!r} is not a valid e-mail address: {exc}") from None
        object.__setattr__(self, "email", email)
        object.__setattr__(self, "timezone", parse_zone(self.timezone, "timezone").key)

    @property
    def key(self) -> str:
        """The key use limits are counted under (``prospect:<e-mail>``; slugs never contain ':')."""
        return f"prospect:{self.email.lower()}"


Customer = ClientRef | Prospect


@dataclass(frozen=True, slots=True)
class Transition:
    """One step of a proposal's life: who moved it from which status to which, when, and why."""

    action: str
    from_status: ProposalStatus | None  # None: creation
    to_status: ProposalStatus
    by: str
    at: dt.datetime  # aware, UTC
    note: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Proposal:
    id: int | None
    customer: Customer
    priced: PricedProposal
    status: ProposalStatus
    valid_until: dt.date  # inclusive, a local date in the customer's time zone
    transitions: tuple[Transition, ...]

    def __post_init__(self) -> None:
        if not isinstance(self.customer, (ClientRef, Prospect)):
            raise InvalidInput("customer", f"{self.customer!r} is neither a ClientRef nor a Prospect")
        if self.priced.client_key != self.customer.key:
            raise InvalidInput("client_key", f"the pricing was made for {self.priced.client_key!r}, "
                                             f"not for {self.customer.key!r} (use limits are per client)")
        if not self.transitions or self.transitions[-1].to_status is not self.status:
            raise InvalidInput("transitions", "the last transition must lead to the proposal's status")

    @property
    def client_key(self) -> str:
        return self.customer.key

    @property
    def client_slug(self) -> str | None:
        return self.customer.slug if isinstance(self.customer, ClientRef) else None

    @property
    def prospect(self) -> Prospect | None:
        return self.customer if isinstance(self.customer, Prospect) else None

    @property
    def items(self) -> tuple[tuple[Product, int], ...]:
        return self.priced.items

    def local_date(self, at: dt.datetime) -> dt.date:
        """The date ``at`` falls on in the customer's time zone."""
        return local_date_of(ensure_utc(at, "at"), parse_zone(self.customer.timezone))

    def is_past_validity(self, at: dt.datetime) -> bool:
        """True once the customer's local date at ``at`` is after ``valid_until``."""
        return self.local_date(at) > self.valid_until

    def last(self, action: str) -> Transition | None:
        return next((t for t in reversed(self.transitions) if t.action == action), None)


def _note(note: str | None, field: str = "note") -> str | None:
    if note is None:
        return None
    if not isinstance(note, str):
        raise InvalidInput(field, f"{note!r} is not text")
    return note.strip() or None


def _check_valid_until(valid_until: dt.date, today: dt.date) -> dt.date:
    if not isinstance(valid_until, dt.date) or isinstance(valid_until, dt.datetime):
        raise InvalidInput("valid_until", f"{valid_until!r} is not a date")
    if valid_until < today:
        raise InvalidInput("valid_until", f"{valid_until} is already past (today is {today} for the customer)")
    return valid_until


def new_proposal(customer: Customer, priced: PricedProposal, *, valid_until: dt.date, by: str, at: dt.datetime,
                 id: int | None = None, note: str | None = None) -> Proposal:
    """A draft proposal for ``customer``, created by ``by`` at ``at``, valid through ``valid_until``."""
    at = ensure_utc(at, "at")
    by = validate_name(by, "by")
    today = local_date_of(at, parse_zone(customer.timezone))
    first = Transition("create", None, ProposalStatus.DRAFT, by, at, _note(note))
    return Proposal(id=id, customer=customer, priced=priced, status=ProposalStatus.DRAFT,
                    valid_until=_check_valid_until(valid_until, today), transitions=(first,))


def _article(word: str) -> str:
    return f"an {word}" if word[0] in "aeiou" else f"a {word}"


def _illegal(action: str, proposal: Proposal) -> str:
    status = proposal.status
    allowed, target = ACTIONS[action]
    if target is status and status.final:
        done = proposal.last(action)
        when = f": it was {status.value} by {done.by} at {done.at.isoformat()}" if done else ""
        return f"cannot {action} a proposal twice{when}"
    message = f"cannot {action} {_article(status.value)} proposal"
    if status.final:
        return f"{message} ({status.value} is final)"
    if action in ("approve", "reject") and status is ProposalStatus.DRAFT:
        return f"{message}: submit it first"
    if action == "revise" and status is ProposalStatus.SUBMITTED:
        return f"{message}: only a draft can be revised"
    if action == "submit":
        return f"cannot submit a proposal twice: it is already {status.value}"
    return f"{message} (allowed from: {', '.join(sorted(s.value for s in allowed))})"  # pragma: no cover


def _check(proposal: Proposal, action: str, by: str, at: dt.datetime) -> tuple[str, dt.datetime]:
    """Refuse ``action`` unless it is legal now; return the validated ``by`` and UTC ``at``."""
    at = ensure_utc(at, "at")
    by = validate_name(by, "by")
    allowed, _ = ACTIONS[action]
    if proposal.status not in allowed:
        raise InvalidInput("status", _illegal(action, proposal))
    today = proposal.local_date(at)
    overdue = today > proposal.valid_until
    zone = proposal.customer.timezone
    if action == "expire" and not overdue:
        raise InvalidInput("status", f"cannot expire {_article(proposal.status.value)} proposal before its validity ends: "
                                     f"valid until {proposal.valid_until} inclusive, it is {today} in {zone}")
    if action != "expire" and overdue:
        raise InvalidInput("status", f"cannot {action}: the proposal expired (valid until {proposal.valid_until} "
                                     f"inclusive, it is {today} in {zone}); it can only be marked expired")
    last = proposal.transitions[-1]
    if at < last.at:
        raise InvalidInput("at", f"{at.isoformat()} is before the last recorded transition ({last.action} at {last.at.isoformat()})")
    return by, at


def _move(proposal: Proposal, action: str, *, by: str, at: dt.datetime, note: str | None = None,
          **changes: object) -> Proposal:
    by, at = _check(proposal, action, by, at)
    target = ACTIONS[action][1]
    step = Transition(action, proposal.status, target, by, at, note)
    return dataclasses.replace(proposal, status=target, transitions=(*proposal.transitions, step), **changes)


def submit(proposal: Proposal, by: str, at: dt.datetime, note: str | None = None) -> Proposal:
    """The customer (or sales on its behalf) submits a draft for approval."""
    return _move(proposal, "submit", by=by, at=at, note=_note(note))


def approve(proposal: Proposal, by: str, at: dt.datetime, note: str | None = None) -> Proposal:
    """Sales approves a submitted proposal that has not expired; it then becomes licences."""
    return _move(proposal, "approve", by=by, at=at, note=_note(note))


def reject(proposal: Proposal, by: str, at: dt.datetime, reason: str) -> Proposal:
    """Sales rejects a submitted proposal; the reason is required and recorded as the note."""
    reason = _note(reason, "reason")
    if not reason:
        raise InvalidInput("reason", "a rejection needs a reason the customer can read")
    return _move(proposal, "reject", by=by, at=at, note=reason)


def expire(proposal: Proposal, at: dt.datetime, by: str = SYSTEM) -> Proposal:
    """Mark a draft or submitted proposal expired, once the customer's date is after ``valid_until``."""
    return _move(proposal, "expire", by=by, at=at)


def revise(proposal: Proposal, priced: PricedProposal, by: str, at: dt.datetime, *, valid_until: dt.date | None = None,
           note: str | None = None) -> Proposal:
    """Replace a draft's items and prices (priced again by the caller), and optionally its validity."""
    _check(proposal, "revise", by, at)
    if not isinstance(priced, PricedProposal):
        raise InvalidInput("priced", f"{priced!r} is not a PricedProposal")
    if priced.client_key != proposal.client_key:
        raise InvalidInput("client_key", f"the new pricing was made for {priced.client_key!r}, not {proposal.client_key!r}")
    changes: dict[str, object] = {"priced": priced}
    if valid_until is not None:
        changes["valid_until"] = _check_valid_until(valid_until, proposal.local_date(at))
    return _move(proposal, "revise", by=by, at=at, note=_note(note), **changes)
