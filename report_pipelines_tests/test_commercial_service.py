"""Commercial use cases on real databases: proposal to licences, refusals that change nothing,
exactly once under concurrency (PostgreSQL), and what an ended licence switches off."""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path

import pytest
from sqlalchemy import Engine, delete, func, select

from report_pipelines.adapters.db.models import (
    CacheEntry,
    Client,
    ClientProductRow,
    PolicyUseRow,
    ProposalItemRow,
    ProposalRow,
    ProposalTransitionRow,
)
from report_pipelines.domain.commercial import REPORTS_PRODUCT, Licence, Money
from report_pipelines.domain.errors import Conflict, InvalidInput, NotFound, ReportPipelinesError
from report_pipelines.domain.timezones import parse_zone
from report_pipelines.services import commercial
from report_pipelines.services.clients import add_client, get_client
from report_pipelines.services.commercial import (
    add_policy,
    add_product,
    apply_proposal,
    approve_proposal,
    catalogue,
    create_proposal,
    expire_proposals,
    get_proposal,
    grant,
    licences_of,
    proposals_to_apply,
    reject_proposal,
    revise_proposal,
    start_trial,
    stop_unserved_work,
    submit_proposal,
)
from report_pipelines.services.reading import read_report
from report_pipelines.services.scheduled_reports import add_schedule, get_schedule
from report_pipelines.services.serving import served_today, served_zones, serving_of
from report_pipelines.services.zone_days import ZoneDay, plan_zone_days
from report_pipelines_tests.extract_support import UTC, seed

D = Decimal
NOW = dt.datetime(2024, 6, 3, 10, tzinfo=UTC)  # 11:00 in Lisbon, 22:00 in Auckland, on 2024-06-03


def later(minutes: int) -> dt.datetime:
    return NOW + dt.timedelta(minutes=minutes)


def add_catalogue(engine: Engine) -> None:
    add_product(engine, "REPORTS", "Call reports", "licence", "49.90", "EUR", now=NOW)
    add_product(engine, "SEATS", "Seats", "seat", "12.345", "EUR", now=NOW)
    add_product(engine, "US-SEATS", "Seats (US)", "seat", "10", "USD", now=NOW)


def policy(engine: Engine, code: str, **fields) -> None:
    fields.setdefault("kind", "percentage")
    fields.setdefault("value", "10")
    fields.setdefault("valid_from", dt.date(2024, 1, 1))
    add_policy(engine, code=code, name=f"policy {code}", created_by="sales@pbx.example", now=NOW, **fields)


def prospect(n: int | str, zone: str = "Europe/Lisbon") -> tuple[str, str, str, str]:
    return (f"Prospect {n}", f"ops@prospect-{n}.example", zone, f"prospect-{n}")


def propose(engine: Engine, *, items: tuple = (("REPORTS", 1),), valid_until: dt.date = dt.date(2024, 6, 30),
            submit: bool = True, **who) -> int:
    stored = create_proposal(engine, items=list(items), valid_until=valid_until, by="bob", now=NOW, **who)
    if submit:
        submit_proposal(engine, stored.id, "bob", now=later(1))
    return stored.id


def counts(engine: Engine) -> dict[str, int]:
    with engine.connect() as conn:
        return {model.__tablename__: conn.scalar(select(func.count()).select_from(model))
                for model in (ProposalRow, ProposalTransitionRow, PolicyUseRow, ClientProductRow, Client)}


def snapshot(engine: Engine, proposal_id: int) -> tuple:
    """What a refused action must leave as it was: the proposal's row and the commercial tables."""
    with engine.connect() as conn:
        row = conn.execute(select(ProposalRow.status, ProposalRow.applied_at, ProposalRow.client_id)
                           .where(ProposalRow.id == proposal_id)).one()
    return tuple(row), counts(engine)


def refused(call: Callable[[], object], error: type[ReportPipelinesError], field: str) -> str:
    with pytest.raises(error) as caught:
        call()
    assert caught.value.field == field, caught.value
    return caught.value.message


# --- the whole flow -------------------------------------------------------------------------------
def test_prospect_to_served_client_through_proposal_approval_and_application(engine: Engine) -> None:
    add_catalogue(engine)
    policy(engine, "WELCOME10", max_uses=5)
    policy(engine, "FIVE", kind="amount", value="5", currency="EUR", products=["SEATS"], stackable=True)
    proposal_id = propose(engine, items=(("REPORTS", 1), ("SEATS", 25)), prospect=("Acme Ltd", "Ops@Acme.example",
                          "Europe/Lisbon", "acme"), term_days=365, submit=False)
    draft = get_proposal(engine, proposal_id).proposal
    # REPORTS 49.90 - 10% = 44.91; SEATS 25 x 12.345 = 308.625 -> 308.63 listed; -10% then -5.00 = 272.7625 -> 272.76
    assert [(line.product.code, line.quantity, line.list_total.amount, line.discount.amount, line.line_total.amount)
            for line in draft.priced.lines] == [("REPORTS", 1, D("49.90"), D("4.99"), D("44.91")),
                                                ("SEATS", 25, D("308.63"), D("35.87"), D("272.76"))]
    assert (draft.priced.subtotal, draft.priced.discount, draft.priced.total) == (
        Money.of("358.53", "EUR"), Money.of("40.86", "EUR"), Money.of("317.67", "EUR"))
    assert draft.priced.applied == ("WELCOME10", "FIVE")
    assert "WELCOME10 (10% off) applied" in draft.priced.explanation
    assert draft.client_key == "prospect:ops@acme.example"

    submit_proposal(engine, proposal_id, "bob", now=later(1))
    assert proposals_to_apply(engine) == []
    approved = approve_proposal(engine, proposal_id, "carol", now=later(2))
    assert approved.proposal.status.value == "approved" and approved.applied_at is None
    assert counts(engine)["policy_uses"] == 2 and counts(engine)["clients"] == 0  # approval writes no licence
    assert proposals_to_apply(engine) == [proposal_id]

    applied = apply_proposal(engine, proposal_id, now=later(3))
    assert applied is not None and applied.client_created
    client = get_client(engine, "acme")
    assert (client.id, client.name, client.timezone, client.active_from) == (
        applied.client_id, "Acme Ltd", "Europe/Lisbon", dt.date(2024, 6, 3))
    assert licences_of(engine, client.id) == [
        Licence(product_code="REPORTS", quantity=1, unit_price=Money.of("49.90", "EUR"),
                discount=Money.of("4.99", "EUR"), valid_from=dt.date(2024, 6, 3), valid_to=dt.date(2025, 6, 2),
                trial=False, source_proposal=proposal_id),
        Licence(product_code="SEATS", quantity=25, unit_price=Money.of("12.345", "EUR"),
                discount=Money.of("35.87", "EUR"), valid_from=dt.date(2024, 6, 3), valid_to=dt.date(2025, 6, 2),
                trial=False, source_proposal=proposal_id),
    ]
    with engine.connect() as conn:  # stored exactly, as text: no float on the way
        stored = conn.execute(select(ClientProductRow.unit_price, ClientProductRow.discount, ClientProductRow.currency)
                              .order_by(ClientProductRow.product_code)).all()
    assert [(str(price), str(discount), currency) for price, discount, currency in stored] == [
        ("49.90", "4.99", "EUR"), ("12.345", "35.87", "EUR")]
    assert get_proposal(engine, proposal_id).client_id == client.id
    assert proposals_to_apply(engine) == []

    assert served_today(engine, later(4)) == {client.id}
    assert serving_of(engine, client.id, later(4)).state == "served"
    assert served_zones(engine, later(4)) == ["Europe/Lisbon"]
    day_before = dt.datetime(2024, 6, 2, 22, 59, tzinfo=UTC)  # 23:59 on 2024-06-02 in Lisbon
    assert served_today(engine, day_before) == set() and served_zones(engine, day_before) == []
    last_minute = dt.datetime(2025, 6, 2, 22, 59, tzinfo=UTC)  # 23:59 on the licence's last day
    assert served_today(engine, last_minute) == {client.id}
    assert served_today(engine, last_minute + dt.timedelta(minutes=1)) == set()
    assert serving_of(engine, client.id, last_minute + dt.timedelta(minutes=1)).state == "ended"

    before = counts(engine)
    assert apply_proposal(engine, proposal_id, now=later(5)) is None  # once only
    assert counts(engine) == before


def test_a_proposal_for_an_existing_client_adds_licences_to_it(engine: Engine) -> None:
    add_catalogue(engine)
    client = add_client(engine, "beta", "Beta", "America/New_York", active_from=dt.date(2024, 1, 1))
    assert serving_of(engine, client.id, NOW).state == "never"
    proposal_id = propose(engine, items=(("SEATS", 3),), client="beta")
    approve_proposal(engine, proposal_id, "carol", now=later(2))
    applied = apply_proposal(engine, proposal_id, now=later(3))
    assert applied is not None and (applied.client_id, applied.client_created) == (client.id, False)
    assert [(lic.product_code, lic.quantity, lic.valid_from, lic.valid_to) for lic in licences_of(engine, client.id)] == [
        ("SEATS", 3, dt.date(2024, 6, 3), None)]
    assert serving_of(engine, client.id, NOW).state == "never"  # seats alone do not put it into the pipelines
    assert served_today(engine, NOW) == set()


# --- refusals change nothing ----------------------------------------------------------------------
def test_refused_approvals_change_nothing(engine: Engine) -> None:
    add_catalogue(engine)
    policy(engine, "ONCE", max_uses=1)

    draft = propose(engine, prospect=prospect("draft"), submit=False)
    before = snapshot(engine, draft)
    assert "submit it first" in refused(lambda: approve_proposal(engine, draft, "carol", now=later(2)),
                                        InvalidInput, "status")
    assert snapshot(engine, draft) == before

    rejected = propose(engine, prospect=prospect("rejected"))
    reject_proposal(engine, rejected, "carol", "too expensive for them", now=later(2))
    before = snapshot(engine, rejected)
    assert "final" in refused(lambda: approve_proposal(engine, rejected, "carol", now=later(3)), InvalidInput, "status")
    assert snapshot(engine, rejected) == before

    # valid through 2024-06-03 in Auckland: at 12:30 UTC it is already 00:30 on the 4th there
    expired = propose(engine, prospect=prospect("kiwi", "Pacific/Auckland"), valid_until=dt.date(2024, 6, 3))
    before = snapshot(engine, expired)
    message = refused(lambda: approve_proposal(engine, expired, "carol", now=dt.datetime(2024, 6, 3, 12, 30, tzinfo=UTC)),
                      InvalidInput, "status")
    assert "expired" in message and "2024-06-04 in Pacific/Auckland" in message
    assert snapshot(engine, expired) == before

    # both priced with ONCE while it was unused; the first approval uses it up
    first = propose(engine, prospect=prospect("first"))
    second = propose(engine, prospect=prospect("second"))
    assert get_proposal(engine, second).proposal.priced.applied == ("ONCE",)
    approve_proposal(engine, first, "carol", now=later(2))
    before = snapshot(engine, first)
    assert "twice" in refused(lambda: approve_proposal(engine, first, "dave", now=later(3)), InvalidInput, "status")
    assert snapshot(engine, first) == before
    before = snapshot(engine, second)
    assert "limit is 1" in refused(lambda: approve_proposal(engine, second, "carol", now=later(3)), InvalidInput, "policy")
    assert snapshot(engine, second) == before
    assert get_proposal(engine, second).proposal.status.value == "submitted"
    with engine.connect() as conn:
        assert conn.execute(select(PolicyUseRow.proposal_id, PolicyUseRow.client_key)).all() == [
            (first, "prospect:ops@prospect-first.example")]

    refused(lambda: apply_proposal(engine, second, now=later(4)), InvalidInput, "status")  # not approved: nothing written
    assert counts(engine)["client_products"] == 0


def test_bad_input_is_refused_naming_the_field_and_writes_nothing(engine: Engine) -> None:
    add_catalogue(engine)
    policy(engine, "SPRING", valid_to=dt.date(2024, 5, 31))
    policy(engine, "AUTUMN", valid_from=dt.date(2024, 9, 1))
    policy(engine, "SIXTY", kind="amount", value="60", currency="EUR", products=["REPORTS"])
    policy(engine, "DOLLARS", kind="amount", value="1", currency="USD")
    client = add_client(engine, "gamma", "Gamma", "Europe/Lisbon")
    assert client.id
    bad = [
        (dict(items=(("REPORTS", 0),)), InvalidInput, "quantity"),
        (dict(items=(("SEATS", -3),)), InvalidInput, "quantity"),
        (dict(items=(("NOPE", 1),)), NotFound, "product"),
        (dict(items=(("REPORTS", 1), ("REPORTS", 2))), InvalidInput, "product"),
        (dict(items=(("REPORTS", 1), ("US-SEATS", 2))), InvalidInput, "currency"),
        (dict(policy="SPRING"), InvalidInput, "policy"),  # ended on 2024-05-31
        (dict(policy="AUTUMN"), InvalidInput, "policy"),  # not valid yet
        (dict(policy="SIXTY"), InvalidInput, "discount"),  # 60.00 off a 49.90 line
        (dict(policy="DOLLARS"), InvalidInput, "currency"),
        (dict(policy="NO-SUCH"), NotFound, "policy"),
        (dict(valid_until=dt.date(2024, 6, 2)), InvalidInput, "valid_until"),
        (dict(term_days=0), InvalidInput, "term_days"),
        (dict(client="nobody"), NotFound, "client"),
        (dict(prospect=("Acme", "not-an-address", "Europe/Lisbon", "acme")), InvalidInput, "email"),
        (dict(prospect=("Acme", "ops@acme.example", "Europe/Lisbn", "acme")), InvalidInput, "timezone"),
        (dict(prospect=("Acme", "ops@acme.example", "Europe/Lisbon", "Acme Ltd")), InvalidInput, "slug"),
        (dict(client="gamma", prospect=prospect(1)), InvalidInput, "client"),
    ]
    for options, error, field in bad:
        options = {"client": "gamma", **options} if "prospect" not in options else options
        refused(lambda o=options: propose(engine, **o), error, field)
    assert counts(engine)["proposals"] == 0

    refused(lambda: add_product(engine, "REPORTS", "Again", "seat", "1", "EUR", now=NOW), Conflict, "code")
    refused(lambda: add_product(engine, "CHEAP", "Cheap", "seat", "0", "EUR", now=NOW), InvalidInput, "list_price")
    refused(lambda: add_product(engine, "ODD", "Odd", "box", "1", "EUR", now=NOW), InvalidInput, "unit")
    refused(lambda: add_product(engine, "NAN", "Not a number", "seat", "abc", "EUR", now=NOW), InvalidInput, "price")
    refused(lambda: policy(engine, "SPRING"), Conflict, "code")
    refused(lambda: policy(engine, "HALF", kind="amount", value="5"), InvalidInput, "currency")
    refused(lambda: policy(engine, "TOO-MUCH", value="120"), InvalidInput, "value")
    refused(lambda: policy(engine, "GHOST", products=["NOPE"]), NotFound, "product")
    refused(lambda: policy(engine, "BACKWARDS", valid_to=dt.date(2023, 1, 1)), InvalidInput, "valid_to")
    assert len(catalogue(engine).products) == 3


# --- exactly once, under concurrency (PostgreSQL) -------------------------------------------------
def race(workers: int, call: Callable[[int], object]) -> list[object]:
    """Run ``call(i)`` on ``workers`` threads released together; each result or exception, by thread."""
    barrier = threading.Barrier(workers)
    results: list[object] = [None] * workers

    def run(i: int) -> None:
        barrier.wait()
        try:
            results[i] = call(i)
        except Exception as exc:
            results[i] = exc

    threads = [threading.Thread(target=run, args=(i,)) for i in range(workers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    return results


def test_eight_appliers_write_an_approved_proposal_once(pg_engine: Engine) -> None:
    add_catalogue(pg_engine)
    for round_ in range(3):
        proposal_id = propose(pg_engine, items=(("REPORTS", 1), ("SEATS", 10)), prospect=prospect(round_))
        approve_proposal(pg_engine, proposal_id, "carol", now=later(2))
        results = race(8, lambda _, pid=proposal_id: apply_proposal(pg_engine, pid, now=later(3)))
        won = [r for r in results if r is not None]
        assert len(won) == 1 and results.count(None) == 7, results
        assert won[0].client_created
        with pg_engine.connect() as conn:
            assert conn.scalar(select(func.count()).select_from(Client).where(Client.slug == f"prospect-{round_}")) == 1
            assert sorted(conn.scalars(select(ClientProductRow.product_code)
                                       .where(ClientProductRow.source_proposal == proposal_id))) == ["REPORTS", "SEATS"]
    assert counts(pg_engine)["client_products"] == 6 and counts(pg_engine)["clients"] == 3


def test_concurrent_approvals_sharing_a_policy_with_one_use_approve_exactly_one(pg_engine: Engine) -> None:
    add_catalogue(pg_engine)
    for round_ in range(3):
        policy(pg_engine, f"ONCE-{round_}", max_uses=1)
        ids = [propose(pg_engine, prospect=prospect(f"{round_}-{i}"), policy=f"ONCE-{round_}") for i in range(4)]
        results = race(4, lambda i, ids=ids: approve_proposal(pg_engine, ids[i], "carol", now=later(2)))
        approved = [ids[i] for i, r in enumerate(results) if not isinstance(r, Exception)]
        assert len(approved) == 1, results
        for i, result in enumerate(results):
            if ids[i] in approved:
                continue
            assert isinstance(result, InvalidInput) and result.field == "policy", result
            assert get_proposal(pg_engine, ids[i]).proposal.status.value == "submitted"
            assert len(get_proposal(pg_engine, ids[i]).proposal.transitions) == 2
        with pg_engine.connect() as conn:
            assert list(conn.scalars(select(PolicyUseRow.proposal_id).where(PolicyUseRow.policy_code == f"ONCE-{round_}"))) \
                == approved


def test_approving_one_proposal_twice_at_once_is_a_clean_refusal(engine: Engine) -> None:
    """A double click or two operators: one approval, the others refused naming a field (no IntegrityError
    from the policy-use key, no half-read proposal); one set of policy uses."""
    add_catalogue(engine)
    policy(engine, "OPEN")
    for round_ in range(4):
        proposal_id = propose(engine, prospect=prospect(round_))
        results = race(4, lambda _, pid=proposal_id: approve_proposal(engine, pid, "carol", now=later(2)))
        losers = [r for r in results if isinstance(r, Exception)]
        assert len(losers) == 3, results
        assert all(isinstance(r, ReportPipelinesError) for r in losers), losers
        if engine.dialect.name == "postgresql":  # the proposal row is locked: the others see it approved
            assert all(r.field == "status" for r in losers), losers
        assert len(get_proposal(engine, proposal_id).proposal.transitions) == 3
    assert counts(engine)["policy_uses"] == 4


# --- what an ended licence switches off -----------------------------------------------------------
def test_an_ended_reports_licence_stops_new_work_but_keeps_cached_days_readable(engine: Engine, tmp_path: Path) -> None:
    seeded = seed(engine, tmp_path)  # three demo clients holding open-ended reports licences from 2024-03-08
    ny, lisbon = seeded.clients["America/New_York"], seeded.clients["Europe/Lisbon"]
    read_at = dt.datetime(2024, 6, 1, tzinfo=UTC)
    cached = read_report("hourly_volume", ny.slug, "2024-03-08", "2024-03-09", app=seeded.app, now=read_at)
    assert len(cached) == 48
    schedule = add_schedule(engine, ny.slug, report="call_detail", recipients="ops@ny.example")
    kept = add_schedule(engine, lisbon.slug, report="call_detail", recipients="ops@lisbon.example")

    # the demo licence is replaced by one that ended on 2024-03-09 (New York's local day)
    with engine.begin() as conn:
        conn.execute(delete(ClientProductRow).where(ClientProductRow.client_id == ny.id))
    price = catalogue(engine).get(REPORTS_PRODUCT).list_price
    grant(engine, ny.id, [Licence(product_code=REPORTS_PRODUCT, quantity=1, unit_price=price,
                                  discount=Money.zero(price.currency), valid_from=dt.date(2024, 3, 8),
                                  valid_to=dt.date(2024, 3, 9), trial=False, source_proposal=None)], note="ended",
          now=read_at)

    last_minute = dt.datetime(2024, 3, 9, 23, 59, tzinfo=parse_zone("America/New_York")).astimezone(UTC)
    assert ny.id in served_today(engine, last_minute)
    assert ny.id not in served_today(engine, last_minute + dt.timedelta(minutes=1))
    assert served_today(engine, read_at) == {c.id for c in seeded.all_clients} - {ny.id}
    assert serving_of(engine, ny.id, read_at).state == "ended"
    assert "America/New_York" not in served_zones(engine, read_at)

    plans = plan_zone_days(engine, [ZoneDay(dt.date(2024, 3, 10), "America/New_York"),
                                    ZoneDay(dt.date(2024, 3, 10), "Europe/Lisbon")], now=read_at)
    assert [(p.zone_day.timezone, [t.client_id for t in p.tasks]) for p in plans] == [
        ("America/New_York", []), ("Europe/Lisbon", [lisbon.id])]
    refused(lambda: plan_zone_days(engine, [ZoneDay(dt.date(2024, 3, 10), "America/New_York")], now=read_at,
                                   client_ids=[ny.id]), InvalidInput, "client_ids")

    refused(lambda: add_schedule(engine, ny.slug, report="call_detail", recipients="ops@ny.example"),
            InvalidInput, "client")
    assert stop_unserved_work(engine, read_at) == [schedule.id]
    paused = get_schedule(engine, schedule.id)
    assert not paused.active and "licence ended" in paused.paused_reason
    assert get_schedule(engine, kept.id).active
    assert stop_unserved_work(engine, read_at) == []  # already paused

    again = read_report("hourly_volume", ny.slug, "2024-03-08", "2024-03-09", app=seeded.app, now=read_at)
    assert again.equals(cached)
    message = refused(lambda: read_report("hourly_volume", ny.slug, "2024-03-08", "2024-03-10",
                                          app=seeded.app, now=read_at), InvalidInput, "client")
    assert "holds no reports licence for those days" in message and "2024-03-10" in message
    with engine.connect() as conn:  # nothing computed for the refused day
        assert conn.scalar(select(func.count()).select_from(CacheEntry).where(
            CacheEntry.client_id == ny.id, CacheEntry.local_date == dt.date(2024, 3, 10))) == 0


def test_a_trial_serves_the_client_for_its_days_only(engine: Engine) -> None:
    add_catalogue(engine)
    record = start_trial(engine, "trial-co", "Trial Co", "Asia/Tokyo", 14, products=["REPORTS", "SEATS"], now=NOW)
    held = licences_of(engine, record.id)
    assert [(lic.product_code, lic.valid_from, lic.valid_to, lic.trial, lic.unit_price, lic.source_proposal)
            for lic in held] == [("REPORTS", dt.date(2024, 6, 3), dt.date(2024, 6, 16), True, Money.zero("EUR"), None),
                                 ("SEATS", dt.date(2024, 6, 3), dt.date(2024, 6, 16), True, Money.zero("EUR"), None)]
    tokyo = parse_zone("Asia/Tokyo")
    last_minute = dt.datetime(2024, 6, 16, 23, 59, tzinfo=tokyo).astimezone(UTC)
    assert served_today(engine, NOW) == {record.id} and served_zones(engine, NOW) == ["Asia/Tokyo"]
    assert served_today(engine, last_minute) == {record.id}
    assert served_today(engine, last_minute + dt.timedelta(minutes=1)) == set()
    assert serving_of(engine, record.id, last_minute + dt.timedelta(minutes=1)).state == "ended"

    before = counts(engine)
    refused(lambda: start_trial(engine, "too-long", "Too Long", "UTC", 91, now=NOW), InvalidInput, "days")
    refused(lambda: start_trial(engine, "zero", "Zero", "UTC", 0, now=NOW), InvalidInput, "days")
    refused(lambda: start_trial(engine, "ghost", "Ghost", "UTC", 7, products=["NOPE"], now=NOW), NotFound, "product")
    refused(lambda: start_trial(engine, "trial-co", "Again", "UTC", 7, now=NOW), Conflict, "slug")
    assert counts(engine) == before


def test_expire_proposals_expires_only_past_validity_drafts_and_submitted_ones(engine: Engine) -> None:
    add_catalogue(engine)
    june5 = dt.date(2024, 6, 5)
    draft = propose(engine, prospect=prospect("draft"), valid_until=june5, submit=False)
    submitted = propose(engine, prospect=prospect("submitted"), valid_until=june5)
    kiwi = propose(engine, prospect=prospect("kiwi", "Pacific/Auckland"), valid_until=june5)
    still_valid = propose(engine, prospect=prospect("later"), valid_until=dt.date(2024, 6, 30), submit=False)
    approved = propose(engine, prospect=prospect("approved"), valid_until=june5)
    approve_proposal(engine, approved, "carol", now=later(2))
    rejected = propose(engine, prospect=prospect("rejected"), valid_until=june5)
    reject_proposal(engine, rejected, "carol", "no budget", now=later(2))

    # 12:30 UTC on the 5th is already the 6th in Auckland, still the 5th in Lisbon
    assert expire_proposals(engine, dt.datetime(2024, 6, 5, 12, 30, tzinfo=UTC)) == [kiwi]
    assert sorted(expire_proposals(engine, dt.datetime(2024, 6, 6, 0, 30, tzinfo=UTC))) == [draft, submitted]
    assert expire_proposals(engine, dt.datetime(2024, 6, 7, tzinfo=UTC)) == []
    status = {pid: get_proposal(engine, pid).proposal for pid in (draft, submitted, kiwi, still_valid, approved, rejected)}
    assert {pid: p.status.value for pid, p in status.items()} == {
        draft: "expired", submitted: "expired", kiwi: "expired", still_valid: "draft", approved: "approved",
        rejected: "rejected"}
    assert status[draft].transitions[-1].by == "system"
    assert status[submitted].transitions[-1].from_status.value == "submitted"


def test_a_prospect_can_never_take_over_an_existing_client(engine: Engine) -> None:
    now = dt.datetime(2026, 11, 29, 10, tzinfo=dt.UTC)
    commercial.add_product(engine, "REPORTS", "Call reports", "licence", "49.00", "EUR", now=NOW)
    victim = add_client(engine, "acme", "Acme (a real tenant)", "Europe/Lisbon")
    with pytest.raises(Conflict) as err:
        commercial.create_proposal(engine, items=[("REPORTS", 1)], valid_until=dt.date(2026, 12, 31), by="ana",
                                   prospect=("Evil Corp", "x@evil.example", "UTC", "acme"), now=now)
    assert err.value.field == "slug"
    # The slug was free at creation and taken before the application: the application is refused whole.
    stored = commercial.create_proposal(engine, items=[("REPORTS", 1)], valid_until=dt.date(2026, 12, 31), by="ana",
                                        prospect=("Beta Ltd", "it@beta.example", "UTC", "beta"), now=now)
    commercial.submit_proposal(engine, stored.id, "ana", now)
    commercial.approve_proposal(engine, stored.id, "boss", now)
    squatter = add_client(engine, "beta", "Someone else", "UTC")
    with pytest.raises(Conflict) as err:
        commercial.apply_proposal(engine, stored.id, now)
    assert err.value.field == "slug"
    assert commercial.licences_of(engine, squatter.id) == [] and commercial.licences_of(engine, victim.id) == []
    assert commercial.proposals_to_apply(engine) == [stored.id]  # still waiting, nothing half-written


def test_a_draft_is_revised_with_new_lines_priced_again_and_a_submitted_one_is_not(engine: Engine) -> None:
    add_catalogue(engine)
    policy(engine, "TEN", value="10")
    draft = propose(engine, prospect=prospect("rev"), submit=False)  # REPORTS x1: 49.90 - 10% = 44.91
    assert str(get_proposal(engine, draft).proposal.priced.total) == "44.91 EUR"
    revised = revise_proposal(engine, draft, by="ana", items=[("REPORTS", 1), ("SEATS", 4)], note="4 seats",
                              valid_until=dt.date(2024, 6, 20), term_days=365, now=later(5))
    # SEATS: 4 x 12.345 = 49.38, 10% off = 4.938 -> 4.94 (half-up); line 44.44. REPORTS line 44.91.
    assert [(line.product.code, str(line.line_total)) for line in revised.proposal.priced.lines] == [
        ("REPORTS", "44.91 EUR"), ("SEATS", "44.44 EUR")]
    assert str(revised.proposal.priced.total) == "89.35 EUR"
    assert (revised.proposal.valid_until, revised.term_days, revised.proposal.status.value) == (
        dt.date(2024, 6, 20), 365, "draft")
    assert [(t.action, t.note) for t in revised.proposal.transitions] == [("create", None), ("revise", "4 seats")]
    with engine.connect() as conn:  # the old line is replaced, not kept beside the new ones
        assert conn.scalar(select(func.count()).select_from(ProposalItemRow)
                           .where(ProposalItemRow.proposal_id == draft)) == 2
    submitted = propose(engine, prospect=prospect("sub"))
    before = snapshot(engine, submitted)
    refused(lambda: revise_proposal(engine, submitted, by="ana", items=[("SEATS", 1)], now=later(5)),
            InvalidInput, "status")
    assert snapshot(engine, submitted) == before
