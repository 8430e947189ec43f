"""What a client's developer, the front end and a sales tool do over HTTP: scheduled reports (the CLI's rules
and messages), licences, the catalogue, proposals (drafted by the client, decided by sales, applied once),
trials (public sign-up when enabled, rate-limited), identical concurrent period requests (each client-day
computed once) and a month of call_detail streamed with flat memory."""

from __future__ import annotations

import datetime as dt
import threading
import tracemalloc
from dataclasses import replace
from pathlib import Path

import pytest
from sqlalchemy import Engine, select

from report_pipelines.adapters.db.models import ReportRequestRow
from report_pipelines.adapters.sources.synthetic import GeneratorConfig
from report_pipelines.domain.errors import InvalidInput
from report_pipelines.services.commercial import add_policy
from report_pipelines.services.scheduled_reports import add_schedule
from report_pipelines_tests.api_support import NOW, running, tenants

FIRST, LAST = "2024-03-08", "2024-03-10"


def test_scheduled_reports_over_http_follow_the_clis_rules(engine: Engine, tmp_path: Path) -> None:
    t = tenants(engine, tmp_path)
    lisbon = t.seeded.clients["Europe/Lisbon"]
    with pytest.raises(InvalidInput) as refused:  # what the CLI would print after "error: "
        add_schedule(engine, lisbon.slug, report="daily_summary", frequency="hourly", recipients=["a@example.com"])
    with running(t.app) as url, t.client(url, lisbon.slug) as client:
        bad = client.post("/v1/schedules", json={"report": "daily_summary", "frequency": "hourly",
                                                 "recipients": ["a@example.com"]})
        assert bad.status_code == 422
        assert (bad.json()["field"], bad.json()["detail"]) == (refused.value.field, refused.value.message)
        created = client.post("/v1/schedules", json={
            "report": "queue_performance", "period": "last_week", "frequency": "weekly", "weekdays": ["mon"],
            "send_time": "07:00", "recipients": ["manager@example.com"], "format": "xlsx"})
        assert created.status_code == 201, created.text
        row = created.json()
        assert created.headers["location"] == f"/v1/schedules/{row['id']}"
        assert (row["client"], row["weekdays"], row["timezone"], row["active"]) == (lisbon.slug, [0], "Europe/Lisbon", True)
        changed = client.patch(f"/v1/schedules/{row['id']}", json={"send_time": "08:30", "subject": "Weekly queues"})
        assert (changed.json()["send_time"], changed.json()["subject"]) == ("08:30", "Weekly queues")
        assert client.patch(f"/v1/schedules/{row['id']}", json={}).json()["detail"] == (
            "nothing to change (give at least one field)")
        paused = client.post(f"/v1/schedules/{row['id']}/pause", json={"reason": "holidays"})
        assert (paused.json()["active"], paused.json()["paused_reason"]) == (False, "holidays")
        assert client.post(f"/v1/schedules/{row['id']}/resume").json()["active"] is True
        sent = client.post(f"/v1/schedules/{row['id']}/send-now")
        assert sent.status_code == 200, sent.text
        file = sent.json()
        assert (file["state"], file["recipients"][0]["address"], file["recipients"][0]["state"]) == (
            "sent", "manager@example.com", "accepted")
        files = client.get(f"/v1/schedules/{row['id']}/files").json()
        assert [(f["id"], f["state"], f["attempts"], f["last_error"]) for f in files] == [(file["id"], "sent", 1, None)]
        listed = client.get("/v1/schedules").json()
        assert [s["id"] for s in listed] == [row["id"]]
        deleted = client.delete(f"/v1/schedules/{row['id']}")
        assert deleted.json() == {"deleted": row["id"], "files_removed": 1}
        assert client.get(f"/v1/schedules/{row['id']}").status_code == 404
    assert list((tmp_path / "outbox").glob("*.eml"))
    from report_pipelines.adapters.db.api import AuditRepository

    writes = [(e.action.replace(f"/{row['id']}", "/ID"), e.status) for e in AuditRepository(engine).entries()
              if e.actor.startswith("key ")]
    # Every write audited once with its status. Each row is written after its answer has gone out, so the
    # next request may be audited first (CI saw the two PATCHes swapped): the same entries, in any order.
    assert sorted(writes) == sorted([
        ("POST /v1/schedules", 422), ("POST /v1/schedules", 201), ("PATCH /v1/schedules/ID", 200),
        ("PATCH /v1/schedules/ID", 422), ("POST /v1/schedules/ID/pause", 200), ("POST /v1/schedules/ID/resume", 200),
        ("POST /v1/schedules/ID/send-now", 200), ("DELETE /v1/schedules/ID", 200)])


def test_a_client_drafts_and_submits_a_proposal_sales_approves_it_once(engine: Engine, tmp_path: Path) -> None:
    t = tenants(engine, tmp_path)
    ny = t.seeded.clients["America/New_York"]
    add_policy(engine, code="SPRING10", name="Spring", kind="percentage", value="10", products=["REPORTS"],
               valid_from=dt.date(2024, 3, 1), valid_to=dt.date(2024, 3, 31), max_uses_per_client=1,
               created_by="sales", now=NOW)
    add_policy(engine, code="OLD", name="Old", kind="percentage", value="50", valid_from=dt.date(2023, 1, 1),
               valid_to=dt.date(2023, 12, 31), created_by="sales", now=NOW)
    with running(t.app) as url, t.client(url, ny.slug) as client, t.client(url, "sales") as sales:
        held = client.get(f"/v1/clients/{ny.slug}/licences").json()["licences"]
        assert [(h["product"], h["quantity"], h["trial"], h["active_today"]) for h in held] == [("REPORTS", 1, False, True)]
        catalogue = client.get("/v1/catalogue").json()
        assert [p["code"] for p in catalogue["products"]] == ["REPORTS"]
        assert [p["code"] for p in catalogue["policies"]] == ["SPRING10"]  # OLD has ended: not offered
        draft = client.post("/v1/proposals", json={"items": [{"product": "REPORTS", "quantity": 3}],
                                                   "valid_until": "2024-03-31", "policy": "SPRING10"})
        assert draft.status_code == 201, draft.text
        proposal = draft.json()
        assert (proposal["status"], proposal["client"], proposal["total"]) == (
            "draft", ny.slug, {"amount": "132.30", "currency": "EUR"})
        prospect = client.post("/v1/proposals", json={
            "prospect": {"name": "P", "email": "p@example.com", "timezone": "UTC", "slug": "p-co"},
            "items": [{"product": "REPORTS", "quantity": 1}], "valid_until": "2024-03-31"})
        assert prospect.status_code == 403  # a client proposes for itself only
        assert client.post(f"/v1/proposals/{proposal['id']}/approve").status_code == 403
        assert client.post(f"/v1/proposals/{proposal['id']}/submit").json()["status"] == "submitted"
        approved = sales.post(f"/v1/proposals/{proposal['id']}/approve")
        assert approved.status_code == 200, approved.text
        assert (approved.json()["status"], approved.json()["applied"]) == ("approved", True)
        again = sales.post(f"/v1/proposals/{proposal['id']}/approve")
        assert (again.status_code, again.json()["field"]) == (422, "status")
        held = client.get(f"/v1/clients/{ny.slug}/licences").json()["licences"]
        assert sorted(h["quantity"] for h in held) == [1, 3]
        assert [p["code"] for p in client.get("/v1/catalogue").json()["policies"]] == []  # used up for this client
        second = client.post("/v1/proposals", json={"items": [{"product": "REPORTS", "quantity": 1}],
                                                    "valid_until": "2024-03-31"}).json()
        client.post(f"/v1/proposals/{second['id']}/submit")
        rejected = sales.post(f"/v1/proposals/{second['id']}/reject", json={"reason": "duplicate"})
        assert rejected.json()["status"] == "rejected"
    from report_pipelines.services.commercial import apply_proposal

    assert apply_proposal(engine, proposal["id"], NOW) is None  # the sensor's path finds it applied already


def test_public_trial_sign_up_only_when_enabled_and_rate_limited(sqlite_engine: Engine, tmp_path: Path) -> None:
    t = tenants(sqlite_engine, tmp_path)
    body = {"name": "Porto Dental", "timezone": "Europe/Lisbon", "days": 14}
    with running(t.app) as url, t.client(url, "sales") as sales:
        import httpx

        assert httpx.post(f"{url}/v1/trials", json={**body, "slug": "porto-1"}).status_code == 401  # disabled
        assert sales.post("/v1/trials", json={**body, "slug": "porto-1"}).status_code == 201
        assert sales.post("/v1/trials", json={**body, "slug": "porto-1"}).json()["field"] == "slug"  # 409 conflict
    public = replace(t.app.settings, api=replace(t.app.settings.api, public_trials=True, public_trials_per_hour=2))
    from report_pipelines.app import App

    with running(App(public, clock=t.app.clock)) as url:
        import httpx

        answers = [httpx.post(f"{url}/v1/trials", json={**body, "slug": f"porto-public-{i}"}) for i in range(3)]
    assert [a.status_code for a in answers] == [201, 201, 429]
    assert int(answers[2].headers["retry-after"]) > 60


def test_identical_concurrent_period_requests_compute_each_client_day_once(engine: Engine, tmp_path: Path) -> None:
    t = tenants(engine, tmp_path)
    sydney = t.seeded.clients["Australia/Sydney"]
    bodies, errors = [], []
    with running(t.app) as url:
        start = threading.Barrier(4)

        def ask() -> None:
            try:
                with t.client(url, sydney.slug) as client:
                    start.wait(10)
                    answer = client.get(f"/v1/reports/call_detail?from={FIRST}&to={LAST}&format=csv")
                    assert answer.status_code == 200, answer.text
                    bodies.append(answer.content)
            except Exception as exc:  # pragma: no cover - reported below
                errors.append(exc)

        threads = [threading.Thread(target=ask) for _ in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert not errors and len(set(bodies)) == 1
    with engine.connect() as conn:
        rows = list(conn.execute(select(ReportRequestRow.__table__).where(ReportRequestRow.channel == "api")))
    assert len(rows) == 4
    assert sum(r.days_computed for r in rows) == 3  # 8, 9 and 10 March, once each: the others waited and reused
    assert sum(r.days_cached for r in rows) == 9


def test_a_month_of_call_detail_streams_with_flat_memory(sqlite_engine: Engine, tmp_path: Path) -> None:
    month = GeneratorConfig(start=dt.date(2024, 2, 1), days=29, clients=1, largest_daily_calls=1500,
                            smallest_daily_calls=1500, seed=5, zones=("Europe/Lisbon",))
    from report_pipelines.app import App, FixedClock
    from report_pipelines.services.api_keys import create_key
    from report_pipelines_tests.extract_support import seed

    seeded = seed(sqlite_engine, tmp_path, month)
    app = App(seeded.settings, clock=FixedClock(NOW))
    [client] = seeded.all_clients
    token = create_key(app, client=client.slug).token
    week = "/v1/reports/call_detail?from=2024-02-01&to=2024-02-07&format=csv"
    month = "/v1/reports/call_detail?from=2024-02-01&to=2024-02-29&format=csv"
    import httpx

    def streamed(http: httpx.Client, path: str) -> tuple[int, int]:
        """Bytes streamed and the traced memory peak (server and client share this process)."""
        tracemalloc.start()
        try:
            total = 0
            with http.stream("GET", path) as answer:
                assert answer.status_code == 200
                for chunk in answer.iter_raw(64 * 1024):
                    total += len(chunk)
            return total, tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()

    with running(app) as url, httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"},
                                           timeout=120) as http:
        assert http.get(month).status_code == 200  # the month computed and cached (and every import made)
        week_bytes, week_peak = streamed(http, week)
        month_bytes, month_peak = streamed(http, month)
    print(f"week: {week_bytes:,} bytes, peak {week_peak:,}; month: {month_bytes:,} bytes, peak {month_peak:,}")
    assert month_bytes > 3.5 * week_bytes and month_bytes > 4 * 1024 * 1024
    # memory is a day's worth whatever the period: four times the bytes, not four times the memory
    assert month_peak < 1.3 * week_peak


def test_schedule_options_and_alerts_over_http_are_the_clis(sqlite_engine: Engine, tmp_path: Path) -> None:
    t = tenants(sqlite_engine, tmp_path)
    lisbon = t.seeded.clients["Europe/Lisbon"]
    with running(t.app) as url, t.client(url, lisbon.slug) as client:
        created = client.post("/v1/schedules", json={
            "report": "queue_performance", "recipients": ["manager@example.com"], "format": "pdf", "body": "table",
            "no_calls": "skip", "message": "Figures for the morning meeting.", "reply_to": "ops@example.com"})
        assert created.status_code == 201, created.text
        row = created.json()
        assert (row["kind"], row["format"], row["body"], row["no_calls"], row["message"], row["reply_to"]) == (
            "report", "pdf", "table", "skip", "Figures for the morning meeting.", "ops@example.com")
        hostile = client.patch(f"/v1/schedules/{row['id']}", json={"reply_to": "a@example.com, b@example.com"})
        assert (hostile.status_code, hostile.json()["field"]) == (422, "reply_to"), hostile.text
        assert client.get(f"/v1/schedules/{row['id']}").json()["reply_to"] == "ops@example.com"  # unchanged
        alert = client.post("/v1/schedules", json={
            "kind": "alert", "report": "daily_summary", "recipients": ["ops@example.com"],
            "condition": "service_level<80 queue=support window=1h"})
        assert alert.status_code == 201, alert.text
        assert (alert.json()["kind"], alert.json()["frequency"]) == ("alert", "interval")
        assert alert.json()["condition"].startswith("service_level<80 queue=support window=1h")
        no_condition = client.post("/v1/schedules", json={"kind": "alert", "report": "daily_summary",
                                                          "recipients": ["ops@example.com"]})
        assert (no_condition.status_code, no_condition.json()["field"]) == (422, "condition"), no_condition.text
