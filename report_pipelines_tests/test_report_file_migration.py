"""Migration 0005 on a database that already has report files: their recipients come from their
schedules (accepted if sent, failed if failed, pending otherwise), build attempts start at 0."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import Engine, text

from report_pipelines.adapters.db.migrate import downgrade, upgrade
from report_pipelines.adapters.db.schedules import ReportFileRepository


def test_existing_files_get_their_recipients_from_their_schedule(engine: Engine) -> None:
    downgrade(engine, "0004")
    created = dt.datetime(2024, 3, 12, 13, 0)
    with engine.begin() as conn:
        conn.execute(text("INSERT INTO clients (id, slug, name, timezone, active_from) "
                          "VALUES (1, 'acme', 'Acme', 'Europe/Lisbon', '2024-01-01')"))
        conn.execute(text(
            "INSERT INTO report_schedules (id, client_id, report, period, frequency, send_time, timezone, recipients, "
            "format, active, revision) VALUES (1, 1, 'call_detail', 'yesterday', 'daily', '07:00', 'Europe/Lisbon', "
            "'ops@example.com,boss@example.com', 'csv', TRUE, 1)"))
        for file_id, state in enumerate(("sent", "failed", "ready", "retry", "skipped"), start=1):
            conn.execute(text("INSERT INTO report_files (id, schedule_id, occurrence, format, state, attempts, "
                              "created_at) VALUES (:id, 1, :occurrence, 'csv', :state, 1, :created)"),
                         {"id": file_id, "occurrence": created - dt.timedelta(days=file_id), "state": state,
                          "created": created})
    upgrade(engine)
    files = ReportFileRepository(engine)
    found = files.recipients(range(1, 6))
    assert {i: [(r.address, r.state) for r in rows] for i, rows in found.items()} == {
        1: [("ops@example.com", "accepted"), ("boss@example.com", "accepted")],
        2: [("ops@example.com", "failed"), ("boss@example.com", "failed")],
        3: [("ops@example.com", "pending"), ("boss@example.com", "pending")],
        4: [("ops@example.com", "pending"), ("boss@example.com", "pending")],
        5: [],  # a skipped occurrence was never sent to anyone
    }
    assert {files.get(i).build_attempts for i in range(1, 6)} == {0}
    assert files.attempts_of(1) == []  # no history is invented
    downgrade(engine, "0004")  # and back
    upgrade(engine)
    assert len(ReportFileRepository(engine).recipients([1])[1]) == 2
