"""The two asset checks over several zone-days at once (what one run of every zone checks): each
planted problem found on its own client-day, and the same problems planted on client-days outside
the checked zone-days never reported (the zones' clients and manifest rows are read once for all
the zone-days, so a row of another zone-day must not leak in)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from sqlalchemy import Engine, delete, func, select, update

from report_pipelines.adapters.db.bulk import load_call_events
from report_pipelines.adapters.db.models import CacheEntry, CallEvent
from report_pipelines.adapters.db.repositories import CacheManifestRepository
from report_pipelines.domain.reports import REPORTS
from report_pipelines.domain.timezones import local_day_window, parse_zone
from report_pipelines.services.cache_checks import Finding, missing_client_days, source_mismatches
from report_pipelines.services.extracts import ClientDay, run_client_days
from report_pipelines.services.zone_days import ZoneDay
from report_pipelines_tests.extract_support import UTC, late_call, seed

NOW = dt.datetime(2024, 3, 15, tzinfo=UTC)
NINTH, TENTH = dt.date(2024, 3, 9), dt.date(2024, 3, 10)  # the 10th: New York springs forward


def test_both_checks_over_several_zone_days_find_each_planted_problem_and_nothing_outside(engine: Engine,
                                                                                          tmp_path: Path) -> None:
    seeded = seed(engine, tmp_path)  # one client in each of New York, Lisbon and Sydney
    app = seeded.app
    ny, lisbon, sydney = (seeded.clients[z] for z in ("America/New_York", "Europe/Lisbon", "Australia/Sydney"))
    every = [ClientDay(c.id, c.timezone, day) for c in (ny, lisbon, sydney) for day in (NINTH, TENTH)]
    assert all(r.status == "computed" for r in run_client_days(app, every, workers=1, now=NOW))
    checked = [ZoneDay(NINTH, ny.timezone), ZoneDay(TENTH, ny.timezone), ZoneDay(TENTH, lisbon.timezone),
               ZoneDay(NINTH, sydney.timezone)]
    # Lisbon's 9th and Sydney's 10th are not checked: the same kinds of damage there must stay unseen.

    def window(client, day):
        return local_day_window(day, parse_zone(client.timezone))

    def calls(client, day) -> int:
        start, end = window(client, day)
        with engine.connect() as conn:
            return conn.execute(select(func.count()).where(CallEvent.client_id == client.id,
                                                           CallEvent.started_at >= start,
                                                           CallEvent.started_at < end)).scalar_one()

    def rename_one_call(client, day) -> None:
        start, end = window(client, day)
        with engine.begin() as conn:
            victim = conn.execute(select(CallEvent.id).where(CallEvent.client_id == client.id,
                                                             CallEvent.started_at >= start,
                                                             CallEvent.started_at < end).limit(1)).scalar_one()
            conn.execute(update(CallEvent).where(CallEvent.id == victim).values(pbx_call_id="renamed-by-the-test"))

    def drop_row(client, day, report) -> None:
        with engine.begin() as conn:
            gone = conn.execute(delete(CacheEntry).where(CacheEntry.client_id == client.id,
                                                         CacheEntry.local_date == day, CacheEntry.report == report))
            assert gone.rowcount == 1

    def drop_file(client, day, report) -> None:
        Path(app.store.day_path(report, client.id, day)).unlink()

    ny_ninth_calls = calls(ny, NINTH)
    late = window(ny, NINTH)[0] + dt.timedelta(hours=10)
    load_call_events(engine, late_call(ny.id, "late-ny-9", late, NOW))                    # checked
    load_call_events(engine, late_call(sydney.id, "late-syd-10", window(sydney, TENTH)[0] + dt.timedelta(hours=10),
                                       NOW))                                                 # not checked
    rename_one_call(sydney, NINTH)                                                           # checked
    rename_one_call(lisbon, NINTH)                                                           # not checked
    drop_file(ny, TENTH, "hourly_volume")                                                    # checked
    drop_file(lisbon, NINTH, "call_detail")                                                  # not checked
    drop_row(lisbon, TENTH, "agent_performance")                                             # checked
    drop_row(sydney, TENTH, "queue_performance")                                             # not checked

    count, findings = source_mismatches(engine, checked, "call_detail")
    assert count == 4  # one call_detail row for each checked zone-day's one client
    assert len(findings) == 2 and set(findings) == {
        Finding(ny.id, "2024-03-09", f"source has {ny_ninth_calls + 1} calls, cache was built from {ny_ninth_calls}"),
        Finding(sydney.id, "2024-03-09", "same number of calls but different call ids"),
    }

    expected, findings = missing_client_days(engine, app.store, checked, list(REPORTS), NOW)
    assert expected == 4 * len(REPORTS)
    assert len(findings) == 2 and set(findings) == {
        Finding(lisbon.id, "2024-03-10", "agent_performance: no manifest entry"),
        Finding(ny.id, "2024-03-10", "hourly_volume: manifest entry but no file"),
    }

    # One report by name: the problem is not prefixed, and the other report's damage is not its business.
    expected, findings = missing_client_days(engine, app.store, checked, "hourly_volume", NOW)
    assert expected == 4 and findings == [Finding(ny.id, "2024-03-10", "manifest entry but no file")]
    # The manifest's read behind both: only the pairs asked for, though their clients and days cross.
    rows = CacheManifestRepository(engine).entries_for_days([(ny.id, NINTH), (lisbon.id, TENTH)])
    assert set(rows) == {(ny.id, NINTH), (lisbon.id, TENTH)}
    assert sorted(e.report for e in rows[(lisbon.id, TENTH)]) == sorted(set(REPORTS) - {"agent_performance"})
    assert [e.report for e in CacheManifestRepository(engine).entries_for_days(
        [(sydney.id, TENTH)], reports=["queue_performance", "call_detail"])[(sydney.id, TENTH)]] == ["call_detail"]
    # No zone-days: nothing checked, nothing found.
    assert source_mismatches(engine, [], "call_detail") == (0, [])
    assert missing_client_days(engine, app.store, [], list(REPORTS), NOW) == (0, [])
