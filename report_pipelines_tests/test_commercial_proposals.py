"""The proposal state machine: every (status, action) pair, inside and after the validity date; a
refused action changes nothing; who and when are recorded. Pure domain, no database."""

from __future__ import annotations

import copy
import datetime as dt
from collections.abc import Callable

import pytest

from report_pipelines.domain.commercial.money import Money
from report_pipelines.domain.commercial.pricing import PricedProposal, price_proposal
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
    revise,
    submit,
)
from report_pipelines.domain.errors import InvalidInput

UTC = dt.UTC
S = ProposalStatus
REPORTS = Product(REPORTS_PRODUCT, "Reports", Unit.LICENCE, Money.of("49.90", "EUR"))
ACME = ClientRef("acme", "Pacific/Auckland")  # UTC+13 in March: its dates run ahead of UTC
VALID_UNTIL = dt.date(2024, 3, 31)
CREATED = dt.datetime(2024, 3, 10, 9, 0, tzinfo=UTC)
MOVED = CREATED + dt.timedelta(hours=1)  # when the proposals of the table reached their status
WITHIN = CREATED + dt.timedelta(hours=2)
LAST_LOCAL_MINUTE = dt.datetime(2024, 3, 31, 10, 59, tzinfo=UTC)  # 23:59 on 31 March in Auckland
NEXT_LOCAL_DAY = dt.datetime(2024, 3, 31, 11, 0, tzinfo=UTC)  # 00:00 on 1 April in Auckland
AFTER = dt.datetime(2024, 4, 2, 12, 0, tzinfo=UTC)


def priced_for(key: str = "acme", quantity: int = 1) -> PricedProposal:
    return price_proposal([(REPORTS, quantity)], [], dt.date(2024, 3, 10), key)


def draft(customer: ClientRef | Prospect = ACME) -> Proposal:
    return new_proposal(customer, priced_for(customer.key), valid_until=VALID_UNTIL, by="ana@sales", at=CREATED, id=7)


def in_status(status: ProposalStatus) -> Proposal:
    proposal = draft()
    if status is S.DRAFT:
        return proposal
    if status is S.EXPIRED:
        return expire(proposal, MOVED.replace(month=4, day=1))
    proposal = submit(proposal, "client@acme", MOVED)
    if status is S.APPROVED:
        return approve(proposal, "carol@sales", MOVED)
    if status is S.REJECTED:
        return reject(proposal, "carol@sales", MOVED, "prices too high")
    return proposal


ACTIONS: dict[str, Callable[[Proposal, dt.datetime], Proposal]] = {
    "submit": lambda p, at: submit(p, "client@acme", at),
    "revise": lambda p, at: revise(p, priced_for(quantity=3), "ana@sales", at),
    "approve": lambda p, at: approve(p, "carol@sales", at),
    "reject": lambda p, at: reject(p, "carol@sales", at, "no budget"),
    "expire": lambda p, at: expire(p, at),
}

# (status, action) -> status it leads to, inside the validity period; missing pairs are illegal.
LEGAL_WITHIN = {
    (S.DRAFT, "submit"): S.SUBMITTED,
    (S.DRAFT, "revise"): S.DRAFT,
    (S.SUBMITTED, "approve"): S.APPROVED,
    (S.SUBMITTED, "reject"): S.REJECTED,
}
# After valid_until only marking it expired is legal.
LEGAL_AFTER = {
    (S.DRAFT, "expire"): S.EXPIRED,
    (S.SUBMITTED, "expire"): S.EXPIRED,
}
PAIRS = [(status, action) for status in S for action in ACTIONS]


@pytest.mark.parametrize(("when", "legal"), [("within", LEGAL_WITHIN), ("after", LEGAL_AFTER)])
@pytest.mark.parametrize(("status", "action"), PAIRS, ids=[f"{s.value}-{a}" for s, a in PAIRS])
def test_every_status_and_action(status: ProposalStatus, action: str, when: str, legal: dict) -> None:
    proposal = in_status(status)
    assert proposal.status is status
    at = WITHIN if when == "within" else AFTER
    if status is S.EXPIRED:
        at = max(at, proposal.transitions[-1].at)
    before = copy.deepcopy(proposal)
    if (status, action) in legal:
        moved = ACTIONS[action](proposal, at)
        assert moved.status is legal[(status, action)]
        assert moved.transitions[:-1] == proposal.transitions
        step = moved.transitions[-1]
        assert (step.action, step.from_status, step.to_status, step.at) == (action, status, moved.status, at)
        assert moved is not proposal
    else:
        with pytest.raises(InvalidInput) as caught:
            ACTIONS[action](proposal, at)
        assert caught.value.field == "status"
        assert caught.value.message.startswith(f"cannot {action}")
    assert proposal == before  # the proposal the caller holds never changes


@pytest.mark.parametrize(("status", "action", "message"), [
    (S.REJECTED, "approve", "cannot approve a rejected proposal (rejected is final)"),
    (S.EXPIRED, "approve", "cannot approve an expired proposal (expired is final)"),
    (S.DRAFT, "approve", "cannot approve a draft proposal: submit it first"),
    (S.DRAFT, "reject", "cannot reject a draft proposal: submit it first"),
    (S.SUBMITTED, "submit", "cannot submit a proposal twice: it is already submitted"),
    (S.SUBMITTED, "revise", "cannot revise a submitted proposal: only a draft can be revised"),
    (S.APPROVED, "approve", "cannot approve a proposal twice: it was approved by carol@sales at 2024-03-10T10:00:00+00:00"),
    (S.REJECTED, "reject", "cannot reject a proposal twice: it was rejected by carol@sales"),
    (S.APPROVED, "reject", "cannot reject an approved proposal (approved is final)"),
    (S.DRAFT, "expire", "cannot expire a draft proposal before its validity ends: valid until 2024-03-31 inclusive, "
                        "it is 2024-03-11 in Pacific/Auckland"),  # 11:00 UTC is midnight in Auckland
])
def test_refusals_say_what_is_wrong(status: ProposalStatus, action: str, message: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        ACTIONS[action](in_status(status), WITHIN)
    assert caught.value.field == "status"
    assert caught.value.message.startswith(message)


def test_validity_is_the_last_local_day_inclusive() -> None:
    submitted = submit(draft(), "client@acme", WITHIN)
    assert approve(submitted, "carol@sales", LAST_LOCAL_MINUTE).status is S.APPROVED
    with pytest.raises(InvalidInput) as caught:
        approve(submitted, "carol@sales", NEXT_LOCAL_DAY)  # still 31 March in UTC, 1 April in Auckland
    assert caught.value.field == "status"
    assert "expired (valid until 2024-03-31 inclusive, it is 2024-04-01 in Pacific/Auckland)" in caught.value.message
    with pytest.raises(InvalidInput):
        expire(submitted, LAST_LOCAL_MINUTE)
    expired = expire(submitted, NEXT_LOCAL_DAY)
    assert (expired.status, expired.transitions[-1].by) == (S.EXPIRED, "system")


def test_who_and_when_are_recorded_in_utc() -> None:
    lisbon_noon = dt.datetime(2024, 3, 12, 12, 0, tzinfo=dt.timezone(dt.timedelta(hours=-3)))
    approved = approve(submit(draft(), "client@acme", WITHIN, note=" please "), " carol@sales ", lisbon_noon, note="ok")
    assert [(t.action, t.from_status, t.to_status, t.by, t.note) for t in approved.transitions] == [
        ("create", None, S.DRAFT, "ana@sales", None),
        ("submit", S.DRAFT, S.SUBMITTED, "client@acme", "please"),
        ("approve", S.SUBMITTED, S.APPROVED, "carol@sales", "ok"),
    ]
    assert approved.transitions[-1].at == dt.datetime(2024, 3, 12, 15, 0, tzinfo=UTC)
    assert approved.transitions[-1].at.tzinfo is UTC
    rejected = reject(submit(draft(), "client@acme", WITHIN), "carol@sales", WITHIN, "  prices too high ")
    assert rejected.transitions[-1].note == "prices too high"


@pytest.mark.parametrize(("call", "field"), [
    (lambda p: submit(p, "client@acme", dt.datetime(2024, 3, 11, 9, 0)), "at"),  # naive
    (lambda p: submit(p, " ", WITHIN), "by"),
    (lambda p: submit(p, "client@acme", CREATED - dt.timedelta(seconds=1)), "at"),  # before the creation
    (lambda p: reject(submit(p, "client@acme", WITHIN), "carol@sales", WITHIN, "  "), "reason"),
    (lambda p: revise(p, priced_for("globex"), "ana@sales", WITHIN), "client_key"),
    (lambda p: revise(p, priced_for(), "ana@sales", WITHIN, valid_until=dt.date(2024, 3, 9)), "valid_until"),
])
def test_bad_arguments_are_refused_and_change_nothing(call: Callable[[Proposal], Proposal], field: str) -> None:
    proposal = draft()
    before = copy.deepcopy(proposal)
    with pytest.raises(InvalidInput) as caught:
        call(proposal)
    assert caught.value.field == field
    assert proposal == before


def test_revise_replaces_items_and_validity_of_a_draft() -> None:
    revised = revise(draft(), priced_for(quantity=3), "ana@sales", WITHIN, valid_until=dt.date(2024, 4, 30), note="3 sites")
    assert revised.items == ((REPORTS, 3),)
    assert revised.priced.total == Money.of("149.70", "EUR")
    assert revised.valid_until == dt.date(2024, 4, 30)
    assert (revised.status, revised.transitions[-1].action, revised.transitions[-1].note) == (S.DRAFT, "revise", "3 sites")
    # the new validity counts: on 1 April it can still be submitted and approved
    approved = approve(submit(revised, "client@acme", AFTER), "carol@sales", AFTER)
    assert approved.status is S.APPROVED


def test_a_new_proposal_is_a_draft_for_one_customer() -> None:
    proposal = draft()
    assert (proposal.status, proposal.id, proposal.client_key, proposal.client_slug, proposal.prospect) == (
        S.DRAFT, 7, "acme", "acme", None)
    assert proposal.transitions[0].from_status is None
    with pytest.raises(InvalidInput) as caught:
        new_proposal(ACME, priced_for("globex"), valid_until=VALID_UNTIL, by="ana", at=CREATED)
    assert caught.value.field == "client_key"
    with pytest.raises(InvalidInput) as caught:  # 10 March 09:00 UTC is 10 March 22:00 in Auckland: 9 March is past
        new_proposal(ACME, priced_for(), valid_until=dt.date(2024, 3, 9), by="ana", at=CREATED)
    assert caught.value.field == "valid_until"
    assert new_proposal(ACME, priced_for(), valid_until=dt.date(2024, 3, 10), by="ana", at=CREATED).valid_until == dt.date(2024, 3, 10)


def test_prospects() -> None:
    prospect = Prospect(" Ana Lima ", "Ana.Lima@Example.COM", "America/Sao_Paulo")
    assert (prospect.name, prospect.email, prospect.key) == ("Ana Lima", "Ana.Lima@example.com", "prospect:ana.lima@example.com")
    proposal = draft(prospect)
    assert (proposal.prospect, proposal.client_slug, proposal.client_key) == (prospect, None, prospect.key)
    for fields, field in [(dict(email="not-an-address"), "email"), (dict(timezone="Mars/Olympus"), "timezone"),
                          (dict(name=""), "name")]:
        values = dict(name="Ana", email="ana@example.com", timezone="Europe/Lisbon") | fields
        with pytest.raises(InvalidInput) as caught:
            Prospect(**values)
        assert caught.value.field == field
    with pytest.raises(InvalidInput) as caught:
        ClientRef("Acme Corp", "Europe/Lisbon")
    assert caught.value.field == "client"
