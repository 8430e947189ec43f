"""The usage log (``report_requests``), the operators' D-1 pre-cache choices, and what the D-1 plan reads
of the report schedules. The only place that speaks SQL about them."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from sqlalchemy import Engine, delete, func, select

from report_pipelines.adapters.db.models import Client, PrecacheChoiceRow, ReportRequestRow, ReportSchedule
from report_pipelines.domain.precache import OperatorChoice

#: Requests that count as "asking" in the D-1 study: answered, or given up at the deadline.
ASKING_STATUSES = ("ok", "timeout")


@dataclass(frozen=True, slots=True)
class LoggedRequest:
    """One usage-log row, as ``usage`` summarises it."""

    client_id: int | None
    slug: str
    channel: str
    status: str
    asks_yesterday: bool
    duration_s: float
    days_cached: int
    days_computed: int
    days_live: int
    requested_at: dt.datetime


@dataclass(frozen=True, slots=True)
class StoredSchedule:
    """The fields of an active report schedule that say when it reads which days."""

    id: int
    client_id: int
    report: str
    period: str
    period_days: int | None
    frequency: str
    weekdays: str | None
    month_day: int | None
    send_time: str
    timezone: str


class UsageRepository:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def record(self, values: Mapping[str, object]) -> int:
        """Insert one request row; returns its id.

        On PostgreSQL the commit does not wait for the WAL flush (``synchronous_commit = off`` for this
        transaction only): the row is durable a fraction of a second later, and a server crash in that
        window loses at most the last requests' log rows, never data (the log serves planning). It
        saves the flush from every read's latency.
        """
        with self.engine.begin() as conn:
            if conn.dialect.name == "postgresql":
                conn.exec_driver_sql("SET LOCAL synchronous_commit TO OFF")
            return conn.execute(ReportRequestRow.__table__.insert().values(**values)
                                .returning(ReportRequestRow.id)).scalar_one()

    def requests(self, since: dt.datetime, client_id: int | None = None) -> list[LoggedRequest]:
        """Every logged request since ``since`` (of one client, or all), oldest first."""
        query = (select(ReportRequestRow.__table__, Client.slug).outerjoin(Client, Client.id == ReportRequestRow.client_id)
                 .where(ReportRequestRow.requested_at >= since).order_by(ReportRequestRow.requested_at))
        if client_id is not None:
            query = query.where(ReportRequestRow.client_id == client_id)
        with self.engine.connect() as conn:
            rows = conn.execute(query).all()
        found = []
        for r in rows:
            found.append(LoggedRequest(r.client_id, r.slug or f"({r.client_ref})", r.channel, r.status,
                                       bool(r.asks_yesterday), float(r.duration_s), r.days_cached, r.days_computed,
                                       r.days_live, r.requested_at))
        return found

    def d1_requests(self, client_ids: Iterable[int], first: dt.date, last: dt.date,
                    since: dt.datetime) -> dict[int, list[tuple[dt.date, int, int]]]:
        """Per client: (local date, local minute of the first D-1 request, D-1 requests) for local dates
        ``first..last``. Scheduled builds are left out (the plan reads the schedules themselves);
        ``since`` (a UTC instant no later than ``first`` began anywhere) lets the index do the work."""
        ids = list(client_ids)
        if not ids:
            return {}
        r = ReportRequestRow
        query = (select(r.client_id, r.local_date, func.min(r.local_minute), func.count())
                 .where(r.client_id.in_(ids), r.requested_at >= since, r.asks_yesterday.is_(True),
                        r.status.in_(ASKING_STATUSES), r.channel != "schedule",
                        r.local_date >= first, r.local_date <= last)
                 .group_by(r.client_id, r.local_date))
        found: dict[int, list[tuple[dt.date, int, int]]] = {}
        with self.engine.connect() as conn:
            for client_id, day, minute, count in conn.execute(query):
                found.setdefault(client_id, []).append((day, int(minute), int(count)))
        return found

    def first_logged(self, client_ids: Iterable[int]) -> dict[int, dt.date]:
        """Per client, the local date of its first logged request (any kind, any status)."""
        ids = list(client_ids)
        if not ids:
            return {}
        query = (select(ReportRequestRow.client_id, func.min(ReportRequestRow.local_date))
                 .where(ReportRequestRow.client_id.in_(ids)).group_by(ReportRequestRow.client_id))
        with self.engine.connect() as conn:
            return {client_id: day for client_id, day in conn.execute(query) if day is not None}

    def active_schedules(self, client_ids: Iterable[int]) -> list[StoredSchedule]:
        """The active report schedules of these clients (read only: the schedules have their own module)."""
        ids = list(client_ids)
        if not ids:
            return []
        s = ReportSchedule
        query = (select(s.id, s.client_id, s.report, s.period, s.period_days, s.frequency, s.weekdays, s.month_day,
                        s.send_time, s.timezone)
                 .where(s.client_id.in_(ids), s.active.is_(True)).order_by(s.id))
        with self.engine.connect() as conn:
            return [StoredSchedule(*row) for row in conn.execute(query)]


class PrecacheChoiceRepository:
    """The operators' choices (``precache set``); ``auto`` rows are kept, to show who gave it back and when."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def set(self, client_id: int, decision: str, by: str, at: dt.datetime, note: str | None = None) -> None:
        with self.engine.begin() as conn:
            conn.execute(delete(PrecacheChoiceRow).where(PrecacheChoiceRow.client_id == client_id))
            conn.execute(PrecacheChoiceRow.__table__.insert().values(
                client_id=client_id, decision=decision, set_by=by, set_at=at, note=note))

    def choices(self, client_ids: Iterable[int] | None = None) -> dict[int, OperatorChoice]:
        query = select(PrecacheChoiceRow)
        if client_ids is not None:
            query = query.where(PrecacheChoiceRow.client_id.in_(list(client_ids)))
        with self.engine.connect() as conn:
            return {row.client_id: OperatorChoice(row.decision, row.set_by, row.set_at, row.note)
                    for row in conn.execute(query)}
