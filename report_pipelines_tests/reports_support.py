"""Building call tables and running a report over days, for the report tests."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence

import pyarrow as pa

from report_pipelines.adapters.db.bulk import CALL_EVENT_SCHEMA
from report_pipelines.domain.reports import DayContext, ReportDefinition
from report_pipelines.domain.reports.screening import screen_calls

UTC = dt.UTC


def utc(text: str) -> dt.datetime:
    """``"2024-06-12 13:00:00"`` as an aware UTC datetime."""
    return dt.datetime.fromisoformat(text).replace(tzinfo=UTC)


def call(pbx_call_id: str, direction: str, disposition: str, started: str, ended: str,
         answered: str | None = None, queue: str | None = None, agent: str | None = None,
         client_id: int = 7, ingested: str | None = None) -> dict:
    """One call-event row; instants are UTC text."""
    return {
        "client_id": client_id,
        "pbx_call_id": pbx_call_id,
        "direction": direction,
        "queue": queue,
        "agent": agent,
        "caller": "+12125550100" if direction == "inbound" else agent,
        "callee": "+12125550199" if direction != "internal" else "1999",
        "started_at": utc(started),
        "answered_at": utc(answered) if answered else None,
        "ended_at": utc(ended),
        "disposition": disposition,
        "ingested_at": utc(ingested or ended),
    }


def table(rows: Iterable[dict]) -> pa.Table:
    """Rows as an Arrow table of the call-event schema (the shape the database hands over)."""
    return pa.Table.from_pylist(list(rows), schema=CALL_EVENT_SCHEMA)


def with_date(day_table: pa.Table, day: dt.date) -> pa.Table:
    """A stored day table as the store reads it back: plus its ``date`` partition column."""
    return day_table.append_column("date", pa.array([day] * day_table.num_rows, type=pa.date32()))


def period(report: ReportDefinition, calls: pa.Table, timezone: str, days: Sequence[dt.date],
           client_id: int = 7, service_level_seconds: int = 20) -> pa.Table:
    """Screen and compute every day, concatenate them with their dates, and combine."""
    stored = []
    for day in days:
        ctx = DayContext(client_id, timezone, day, service_level_seconds)
        day_table = report.compute_day(screen_calls(calls, ctx).clean, ctx)
        assert day_table.schema.equals(report.schema), report.name
        stored.append(with_date(day_table, day))
    return report.combine(pa.concat_tables(stored))
