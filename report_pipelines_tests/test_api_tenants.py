"""Tenant isolation, proved over HTTP: every operation of the OpenAPI document, with every key, against the
ids of every tenant. Each tenant's data carries a unique marker string (its name, a schedule's subject and
recipient, a proposal's author, a call's queue); no response to a client key ever holds another tenant's
marker, and another tenant's ids answer 404 exactly like ids that do not exist."""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path

import httpx
from sqlalchemy import Engine, update

from report_pipelines.adapters.db.bulk import load_call_events
from report_pipelines.adapters.db.models import Client
from report_pipelines.domain.api_access import Scope
from report_pipelines.services import api as svc
from report_pipelines.services.commercial import create_proposal, submit_proposal
from report_pipelines.services.scheduled_reports import add_schedule
from report_pipelines_tests.api_support import NOW, Tenants, running, tenants
from report_pipelines_tests.extract_support import UTC, late_call

FIRST, LAST = "2024-03-08", "2024-03-10"


def marker(slug: str) -> str:
    return f"zqx{abs(hash(slug)) % 10**8:08d}mark"


def plant(t: Tenants) -> dict[str, dict]:
    """Markers and ids of each tenant: schedule, proposal, extraction."""
    engine = t.seeded.engine
    planted: dict[str, dict] = {}
    for index, client in enumerate(t.seeded.all_clients):
        mark = marker(client.slug)
        with engine.begin() as conn:
            conn.execute(update(Client).where(Client.id == client.id).values(name=f"Tenant {mark}"))
        call = late_call(client.id, f"{mark}-call", dt.datetime(2024, 3, 9, 12, tzinfo=UTC),
                         dt.datetime(2024, 3, 9, 13, tzinfo=UTC))
        load_call_events(engine, call.set_column(call.schema.get_field_index("queue"), "queue", [[mark]]))
        schedule = add_schedule(engine, client.slug, report="daily_summary", recipients=[f"{mark}@example.com"],
                                subject=f"Daily {mark}")
        proposal = create_proposal(engine, items=[("REPORTS", 2)], valid_until=dt.date(2024, 4, 30), by=f"sales {mark}",
                                   client=client.slug, now=NOW)
        submit_proposal(engine, proposal.id, f"sales {mark}", NOW)
        scope = Scope(key_id=None, prefix=f"test{index}", role="client", client_id=client.id)
        extraction = svc.start_extraction(t.app, scope, lambda work: work(), report="call_detail", client=None,
                                          start=dt.date(2024, 3, 8), end=dt.date(2024, 3, 10), shape="days", fmt="csv")
        planted[client.slug] = {"mark": mark, "client_id": client.id, "schedule_id": schedule.id,
                                "proposal_id": proposal.id, "extraction_id": extraction.id}
    return planted


BODIES = {
    ("post", "/v1/schedules"): lambda ref: {"client": ref, "report": "daily_summary", "recipients": ["x@example.com"]},
    ("post", "/v1/extractions"): lambda ref: {"client": ref, "report": "call_detail", "from": FIRST, "to": LAST},
    ("post", "/v1/proposals"): lambda ref: {"client": ref, "items": [{"product": "REPORTS", "quantity": 1}],
                                            "valid_until": "2024-04-30"},
    ("patch", "/v1/schedules/{schedule_id}"): lambda ref: {"subject": "taken over"},
    ("post", "/v1/proposals/{proposal_id}/reject"): lambda ref: {"reason": "taken over"},
}


def requests_for(operations: dict, tenant: dict, slug: str) -> list[tuple[str, str, dict, dict | None, bool]]:
    """(method, url, query, body, names the tenant) of every operation filled with ``tenant``'s ids (its slug
    and its numeric id)."""
    out = []
    for path, methods in operations.items():
        for method, operation in methods.items():
            params = {p["name"]: p for p in operation.get("parameters", [])}
            for ref in (slug, str(tenant["client_id"])):
                url = path.format(client=ref, schedule_id=tenant["schedule_id"], proposal_id=tenant["proposal_id"],
                                  extraction_id=tenant["extraction_id"], report="call_detail")
                query = {}
                if "client" in params and params["client"]["in"] == "query":
                    query["client"] = ref
                if "from" in params:
                    query.update({"from": FIRST, "to": LAST, "format": "csv"})
                body = BODIES.get((method, path), lambda _: None)(ref)
                if body is None and method in ("post", "patch") and "requestBody" in operation:
                    body = {}
                names = bool(re.search(r"\{(client|schedule_id|proposal_id|extraction_id)\}", path)
                             or "client" in query or "client" in (body or {}))
                out.append((method, url, query, body, names))
    return out


def test_no_response_to_a_client_key_holds_another_tenants_byte(engine: Engine, tmp_path: Path) -> None:
    t = tenants(engine, tmp_path, rate_per_minute=100_000)
    planted = plant(t)
    marks = {slug: p["mark"] for slug, p in planted.items()}
    with running(t.app) as url:
        operations = httpx.get(f"{url}/v1/openapi.json").json()["paths"]
        assert len(operations) >= 20
        checked = 0
        for who, mine in planted.items():
            foreign = [m for slug, m in marks.items() if slug != who]
            with t.client(url, who) as client:
                # the lists and the tenant's own things: its markers, never another's
                own = [client.get(p).text for p in ("/v1/me", "/v1/clients", "/v1/schedules", "/v1/proposals",
                                                    f"/v1/schedules/{mine['schedule_id']}",
                                                    f"/v1/reports/call_detail?from={FIRST}&to={LAST}&format=csv")]
                assert all(mine["mark"] in text for text in own[1:]), own
                for other, theirs in planted.items():
                    for method, path, query, body, names in requests_for(operations, theirs, other):
                        if other == who and method != "get":
                            continue  # the tenant's own writes are the other tests' business
                        answer = client.request(method.upper(), path, params=query, json=body)
                        checked += 1
                        assert answer.status_code < 500, (method, path, answer.text)
                        assert not any(m.encode() in answer.content for m in foreign), (who, method, path,
                                                                                        answer.text[:500])
                        if other != who and names:  # naming another tenant: not found (or not allowed at all)
                            assert answer.status_code in (403, 404), (who, method, path, query, body,
                                                                      answer.status_code, answer.text)
        assert checked > 300
        # staff keys see every tenant (and the writes above changed nothing of any tenant)
        with t.client(url, "operator") as operator:
            schedules = operator.get("/v1/schedules").json()
            assert {s["subject"] for s in schedules} == {f"Daily {m}" for m in marks.values()}
            for p in planted.values():
                assert operator.get(f"/v1/proposals/{p['proposal_id']}").json()["status"] == "submitted"


def test_another_tenants_id_answers_exactly_like_an_id_that_does_not_exist(sqlite_engine: Engine,
                                                                          tmp_path: Path) -> None:
    t = tenants(sqlite_engine, tmp_path)
    planted = plant(t)
    (mine, theirs) = list(planted)[:2]
    with running(t.app) as url, t.client(url, mine) as client:
        pairs = [
            (f"/v1/schedules/{planted[theirs]['schedule_id']}", "/v1/schedules/999999"),
            (f"/v1/proposals/{planted[theirs]['proposal_id']}", "/v1/proposals/999999"),
            (f"/v1/extractions/{planted[theirs]['extraction_id']}", "/v1/extractions/0123456789abcdef"),
        ]
        for other, missing in pairs:
            a, b = client.get(other), client.get(missing)
            assert (a.status_code, b.status_code) == (404, 404)
            strip = lambda text: re.sub(r"\d+|'[0-9a-f]+'", "N", text)  # the id itself differs
            assert strip(a.text) == strip(b.text)
        a = client.get(f"/v1/clients/{theirs}/licences").json()
        b = client.get("/v1/clients/no-such-client/licences").json()
        assert (a["status"], a["field"]) == (b["status"], b["field"]) == (404, "client")
