"""Step 10 of the demo: the HTTP API, served on a free loopback port in this process (no other server).

A client key is created (shown once), then used over HTTP for three things a client's developer does:
a day's summary (the last day of the demo's calls, or yesterday), a scheduled report created over HTTP, the client's licences; and the same key
asking for another client's licences and schedule gets 404, like things that do not exist.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

from report_pipelines.app import App


def run_api_demo(echo: Callable[[str], None], app: App, client_slug: str, other_slug: str) -> bool:
    import httpx

    from report_pipelines.adapters.db.repositories import CallEventRepository
    from report_pipelines.api.server import serving_in_thread
    from report_pipelines.domain.timezones import local_date_of, parse_zone
    from report_pipelines.services.api_keys import create_key
    from report_pipelines.services.clients import get_client
    from report_pipelines.services.scheduled_reports import add_schedule

    client = get_client(app.engine, client_slug)
    created = create_key(app, client=client_slug, label="demo", by="demo")
    other_schedule = add_schedule(app.engine, other_slug, report="daily_summary", recipients=["ops@example.com"])
    # the last local day of the demo's calls (the seed ends two days ago), so that the summary has queues
    newest = next((w.latest_started_at for w in CallEventRepository(app.engine).watermarks()
                   if w.client_id == client.id), None)
    zone = parse_zone(client.timezone)
    yesterday = local_date_of(app.now(), zone) - dt.timedelta(days=1)
    day = min(yesterday, local_date_of(newest, zone)) if newest else yesterday
    ok = True
    with serving_in_thread(app) as url, httpx.Client(
            base_url=url, headers={"Authorization": f"Bearer {created.token}"}, timeout=120) as http:
        echo(f"10. the HTTP API on {url}/v1 (docs {url}/v1/docs); client key {created.key.prefix} for {client_slug} "
             "(`report-pipelines api-keys create --client SLUG`, shown once, stored as a salted scrypt hash)")
        summary = http.get(f"/v1/reports/queue_performance?from={day}&to={day}&shape=summary&format=json")
        ok &= summary.status_code == 200
        lines = summary.text.splitlines()
        echo(f"   GET /v1/reports/queue_performance?from={day}&to={day}&shape=summary -> "
             f"{summary.status_code}, {len(lines)} queues ({summary.headers.get('content-disposition')})")
        for line in lines[:3]:
            echo(f"     {line[:150]}")
        schedule = http.post("/v1/schedules", json={"report": "daily_summary", "period": "yesterday",
                                                   "send_time": "07:30", "recipients": ["manager@example.com"],
                                                   "format": "csv"})
        ok &= schedule.status_code == 201
        row = schedule.json()
        echo(f"   POST /v1/schedules -> {schedule.status_code} {schedule.headers.get('location')}: {row.get('report')} "
             f"daily at {row.get('send_time')} {row.get('timezone')}, next send {row.get('next_send_at') or 'planned soon'}")
        licences = http.get(f"/v1/clients/{client_slug}/licences")
        ok &= licences.status_code == 200
        for held in licences.json().get("licences", []):
            echo(f"   GET /v1/clients/{client_slug}/licences -> {held['product']} x{held['quantity']} at "
                 f"{held['unit_price']['amount']} {held['unit_price']['currency']}, from {held['valid_from']}, "
                 f"{'trial' if held['trial'] else 'paid'}, {'active today' if held['active_today'] else 'not active today'}")
        for path in (f"/v1/clients/{other_slug}/licences", f"/v1/schedules/{other_schedule.id}"):
            other = http.get(path)
            ok &= other.status_code == 404
            echo(f"   GET {path} (another client's) -> {other.status_code} {other.json()['detail']!r}")
    return ok
