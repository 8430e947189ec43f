"""The HTTP API through a real uvicorn server on a loopback port, driven by httpx, on SQLite and PostgreSQL:
problem documents, keys and roles, revocation, the audit, period requests, extractions, limits."""

from __future__ import annotations

import datetime as dt
import io
import logging
import threading
import time
from pathlib import Path

import httpx
import pyarrow.parquet as pq
import pytest
from sqlalchemy import Engine, select

from report_pipelines.adapters.db.api import AuditRepository
from report_pipelines.adapters.db.models import ReportRequestRow
from report_pipelines.domain.api_access import Unauthorized, split_key
from report_pipelines.services.api_keys import create_key, list_keys, revoke_key
from report_pipelines_tests.api_support import running, tenants

FIRST, LAST = "2024-03-08", "2024-03-10"


def usage_rows(engine: Engine) -> list:
    with engine.connect() as conn:
        return list(conn.execute(select(ReportRequestRow.__table__).order_by(ReportRequestRow.id)))


def test_keys_roles_revocation_and_the_audit_over_http(engine: Engine, tmp_path: Path) -> None:
    t = tenants(engine, tmp_path)
    lisbon = t.seeded.clients["Europe/Lisbon"]
    with running(t.app) as url:
        anonymous = httpx.get(f"{url}/v1/me")
        assert anonymous.status_code == 401
        assert anonymous.headers["content-type"] == "application/problem+json"
        assert anonymous.headers["www-authenticate"] == "Bearer"
        problem = anonymous.json()
        assert set(problem) >= {"type", "title", "status", "detail", "field"} and problem["field"] == "authorization"
        # a key that looks right but is not: the same 401 (nothing says which part is wrong)
        prefix, _ = split_key(t.keys[lisbon.slug])
        forged = f"rp_{prefix}_{'A' * 43}"
        assert httpx.get(f"{url}/v1/me", headers={"Authorization": f"Bearer {forged}"}).json() == problem
        with t.client(url, lisbon.slug) as client:
            assert client.get("/v1/me").json() == {"prefix": prefix, "role": "client", "client": lisbon.slug}
            denied = client.get("/v1/policies")
            assert denied.status_code == 403
            assert denied.json()["detail"] == "a client key cannot read policies (allowed: sales, operator)"
            revoke_key(t.app, prefix)
            assert client.get("/v1/me").status_code == 401  # the very next request
        with t.client(url, "sales") as sales:
            assert sales.get("/v1/reports").status_code == 403  # sales: proposals, policies, trials
            assert sales.get("/v1/policies").status_code == 200
            created = sales.post("/v1/trials", json={"slug": "trial-http", "name": "Trial", "timezone": "Europe/Paris",
                                                     "days": 14})
            assert created.status_code == 201, created.text
        with t.client(url, "operator") as operator:
            assert len(operator.get("/v1/clients").json()) == 4
            refused = operator.post("/v1/trials", json={"slug": "trial-op", "name": "T", "timezone": "UTC"})
            assert refused.status_code == 403  # read-only on money
    audit = AuditRepository(engine).entries()
    actions = [(e.actor.split()[0], e.action, e.status) for e in audit]
    assert ("key", "POST /v1/trials", 201) in actions and ("key", "POST /v1/trials", 403) in actions
    assert [a for a in actions if a[1].startswith("api-keys")][-1] == ("cli", "api-keys revoke", 200)
    stored = {k.prefix: k for k in list_keys(t.app)}
    assert stored[prefix].revoked_at is not None
    assert all(t.keys[lisbon.slug] not in repr(k) for k in stored.values())  # only the hash is kept


def test_the_key_is_shown_once_stored_hashed_and_unknown_keys_are_refused(sqlite_engine: Engine, tmp_path: Path) -> None:
    t = tenants(sqlite_engine, tmp_path)
    created = create_key(t.app, role="operator", label="night shift")
    assert created.token.startswith(f"rp_{created.key.prefix}_") and len(created.token) == 3 + 8 + 1 + 43
    assert created.token.encode() not in created.key.digest and len(created.key.digest) == 32
    with pytest.raises(Unauthorized):
        from report_pipelines.services.api_keys import Authenticator

        Authenticator(t.app).scope("Bearer rp_nope")


def test_a_period_streams_through_extract_period_with_channel_api(engine: Engine, tmp_path: Path) -> None:
    t = tenants(engine, tmp_path)
    ny = t.seeded.clients["America/New_York"]
    with running(t.app) as url, t.client(url, ny.slug) as client:
        csv = client.get(f"/v1/reports/call_detail?from={FIRST}&to={LAST}&format=csv")
        assert csv.status_code == 200, csv.text
        assert csv.headers["content-disposition"] == (
            f'attachment; filename="{ny.slug}_call_detail_{FIRST}_{LAST}.csv"')
        assert csv.headers.get("transfer-encoding") == "chunked"
        assert csv.headers["x-content-type-options"] == "nosniff"
        assert csv.text.splitlines()[0].startswith("pbx_call_id,")
        parquet = client.get(f"/v1/reports/call_detail?from={FIRST}&to={LAST}&format=parquet")
        table = pq.read_table(io.BytesIO(parquet.content))
        assert table.num_rows == len(csv.text.splitlines()) - 1
        summary = client.get(f"/v1/reports/daily_summary?from={FIRST}&to={LAST}&shape=summary")
        assert summary.headers["content-type"] == "application/x-ndjson"
        xlsx = client.get(f"/v1/reports/hourly_volume?from={FIRST}&to={LAST}&format=xlsx")
        assert xlsx.content[:2] == b"PK"
        future = client.get("/v1/reports/call_detail?from=2024-03-08&to=2030-01-01")
        assert future.status_code == 422 and future.json()["field"] == "end"
        unknown = client.get(f"/v1/reports/nope?from={FIRST}&to={LAST}")
        assert unknown.status_code == 404 and unknown.json()["field"] == "report"
        bad_date = client.get("/v1/reports/call_detail?from=yesterday&to=2024-03-10")
        assert bad_date.status_code == 422 and bad_date.json()["field"] == "from"
    rows = usage_rows(engine)
    assert {r.channel for r in rows} == {"api"}
    assert [r.status for r in rows] == ["ok", "ok", "ok", "ok", "refused", "refused"]  # a bad date never reaches it
    assert rows[0].days_computed == 3 and rows[1].days_cached == 3


def test_a_deadline_says_how_far_it_got_and_an_extraction_finishes_the_work(sqlite_engine: Engine,
                                                                          tmp_path: Path) -> None:
    t = tenants(sqlite_engine, tmp_path, deadline_s=1.0)
    sydney = t.seeded.clients["Australia/Sydney"]
    from report_pipelines.adapters.db.repositories import ClientRepository

    held = threading.Event()
    release = threading.Event()

    def another_run() -> None:  # another run is computing the 10th and does not finish in time
        from report_pipelines.app import App

        with App(t.app.settings).locks.hold(sydney.id, dt.date(2024, 3, 10), 5):
            held.set()
            release.wait(30)

    thread = threading.Thread(target=another_run)
    thread.start()
    held.wait(10)
    try:
        with running(t.app) as url, t.client(url, sydney.slug) as client:
            late = client.get(f"/v1/reports/call_detail?from={FIRST}&to={LAST}&format=csv")
            assert late.status_code == 504
            assert late.json()["detail"].startswith("deadline: 1 s passed with ")
            assert "POST /v1/extractions" in late.json()["detail"]
            release.set()
            thread.join()
            started = client.post("/v1/extractions", json={"report": "call_detail", "from": FIRST, "to": LAST,
                                                           "format": "parquet"})
            assert started.status_code == 202, started.text
            location = started.headers["location"]
            for _ in range(200):
                state = client.get(location).json()
                if state["state"] != "running":
                    break
                time.sleep(0.05)
            assert (state["state"], state["days_done"], state["days_total"]) == ("done", 3, 3), state
            result = client.get(state["result"])
            assert pq.read_table(io.BytesIO(result.content)).num_rows == state["rows"]
            assert 'filename="' in result.headers["content-disposition"]
    finally:
        release.set()
        thread.join()
    assert ClientRepository(sqlite_engine).get(sydney.id).slug == sydney.slug


def test_limits_body_size_rate_cors_and_no_key_in_the_logs(sqlite_engine: Engine, tmp_path: Path,
                                                           caplog: pytest.LogCaptureFixture) -> None:
    t = tenants(sqlite_engine, tmp_path, rate_per_minute=5, max_body_bytes=1024)
    lisbon = t.seeded.clients["Europe/Lisbon"]
    caplog.set_level(logging.INFO)
    with running(t.app, log_level="info") as url, t.client(url, lisbon.slug) as client:
        # a key pasted into a URL never reaches a server log line (uvicorn's access log included)
        client.get(f"/v1/reports/call_detail?from={FIRST}&to={LAST}&client={t.keys['sales']}")
        big = client.post("/v1/schedules", content=b"{" + b" " * 4096 + b"}",
                          headers={"Content-Type": "application/json"})
        assert big.status_code == 413 and big.json()["field"] == "body"
        preflight = client.options("/v1/reports", headers={"Origin": "https://evil.example",
                                                            "Access-Control-Request-Method": "GET"})
        assert "access-control-allow-origin" not in preflight.headers  # CORS closed by default
        answers = [client.get("/v1/me") for _ in range(8)]
        limited = [a for a in answers if a.status_code == 429]
        assert limited and int(limited[0].headers["retry-after"]) >= 1
        assert limited[0].json()["field"] == "rate"
    server = [r for r in caplog.records if r.name.startswith(("uvicorn", "report_pipelines"))]
    assert any("/v1/reports/call_detail" in r.getMessage() for r in server)  # the access log is on
    assert all(token not in r.getMessage() for r in server for token in t.keys.values())


def test_an_unexpected_error_is_a_500_problem_without_internals(sqlite_engine: Engine, tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    from report_pipelines.services import api as svc

    t = tenants(sqlite_engine, tmp_path)

    def broken(*args, **kwargs):
        raise RuntimeError("secret internals: /etc/passwd")

    monkeypatch.setattr(svc, "clients", broken)
    with running(t.app) as url, t.client(url, "operator") as client:
        answer = client.get("/v1/clients")
    assert answer.status_code == 500
    assert answer.json()["type"] == "urn:report-pipelines:problem:internal"
    assert "secret" not in answer.text and "Traceback" not in answer.text


def test_the_api_settings_are_read_and_refused_naming_their_variable(tmp_path: Path) -> None:
    from report_pipelines.domain.errors import InvalidInput
    from report_pipelines.settings import Settings

    base = {"REPORT_PIPELINES_DATA_DIR": str(tmp_path)}
    default = Settings.from_env(base).api
    assert (default.deadline_s, default.max_body_bytes, default.rate_per_minute, default.cors_origins,
            default.public_trials) == (30.0, 64 * 1024, 600, (), False)
    chosen = Settings.from_env({**base, "REPORT_PIPELINES_API_CORS_ORIGINS": "https://app.example.com, http://localhost:5173",
                                "REPORT_PIPELINES_API_PUBLIC_TRIALS": "yes", "REPORT_PIPELINES_API_MAX_BODY_KB": "8"}).api
    assert chosen.cors_origins == ("https://app.example.com", "http://localhost:5173")
    assert (chosen.public_trials, chosen.max_body_bytes) == (True, 8192)
    for name, value in [("API_RATE_PER_MINUTE", "lots"), ("API_CORS_ORIGINS", "app.example.com"),
                        ("API_DEADLINE_S", "0"), ("API_PUBLIC_TRIALS", "maybe")]:
        with pytest.raises(InvalidInput) as refused:
            Settings.from_env({**base, f"REPORT_PIPELINES_{name}": value})
        assert refused.value.field == f"REPORT_PIPELINES_{name}"


def test_cors_answers_only_the_configured_origins(sqlite_engine: Engine, tmp_path: Path) -> None:
    t = tenants(sqlite_engine, tmp_path, cors_origins=("https://app.example.com",))
    with running(t.app) as url:
        ask = {"Access-Control-Request-Method": "GET", "Access-Control-Request-Headers": "authorization"}
        allowed = httpx.options(f"{url}/v1/me", headers={"Origin": "https://app.example.com", **ask})
        other = httpx.options(f"{url}/v1/me", headers={"Origin": "https://evil.example", **ask})
    assert allowed.headers["access-control-allow-origin"] == "https://app.example.com"
    assert "access-control-allow-origin" not in other.headers


def test_an_extraction_whose_process_stopped_says_so_instead_of_running_forever(sqlite_engine: Engine,
                                                                              tmp_path: Path) -> None:
    from report_pipelines.services import api as svc

    t = tenants(sqlite_engine, tmp_path)
    lisbon = t.seeded.clients["Europe/Lisbon"]
    with running(t.app) as url, t.client(url, lisbon.slug) as client:
        never_run = []
        found = svc.start_extraction(t.app, svc_scope(t, lisbon.slug), never_run.append, report="call_detail",
                                     client=None, start=dt.date(2024, 3, 8), end=dt.date(2024, 3, 10), shape="days",
                                     fmt="csv")
        assert client.get(f"/v1/extractions/{found.id}").json()["state"] == "running"
        assert client.get(f"/v1/extractions/{found.id}/result").json()["detail"] == (
            f"extraction {found.id} has no file yet (0 of 3 days ready)")
        t.app.clock.advance(svc.stale_after(t.app) + dt.timedelta(seconds=1))
        stopped = client.get(f"/v1/extractions/{found.id}").json()
    assert stopped["state"] == "failed" and stopped["error"].startswith("the extraction stopped at 0 of 3 days")


def svc_scope(t, slug: str):
    from report_pipelines.domain.api_access import Scope

    key = next(k for k in list_keys(t.app) if k.client_slug == slug)
    return Scope(key_id=key.id, prefix=key.prefix, role="client", client_id=key.client_id)


def test_the_log_filter_masks_keys_in_messages_arguments_and_tracebacks() -> None:
    from report_pipelines.api.limits import RedactKeys

    key = "rp_AbCdEfGh_" + "s" * 43
    try:
        raise ValueError(f"no client {key!r}")
    except ValueError:
        import sys

        record = logging.LogRecord("uvicorn.access", logging.INFO, __file__, 1, '%s - "%s %s HTTP/%s" %d',
                                   ("127.0.0.1:1", "GET", f"/v1/x?client={key}", "1.1", 404), sys.exc_info())
    assert RedactKeys().filter(record)
    text = logging.Formatter().format(record)
    assert key not in text and "rp_AbCdEfGh_***" in text and '"GET /v1/x?client=rp_AbCdEfGh_*** HTTP/1.1" 404' in text
