"""Scheduled reports in the database: schedules, and the state machine of their files.

Every state change is one conditional ``UPDATE ... WHERE <expected state>`` (or an ``INSERT`` that a
unique key guards) and reports whether it happened, so any number of sensors, runs and workers can
race for the same row and exactly one wins. On PostgreSQL a competing ``UPDATE`` waits for the
winner's row lock and then re-checks its ``WHERE`` against the new row (and finds it no longer
matches); SQLite serialises writers.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from sqlalchemy import Engine, and_, bindparam, delete, insert, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from report_pipelines.adapters.db.models import Client, ReportFile, ReportSchedule

UTC = dt.timezone.utc

#: Columns whose change alters when or what is sent: editing one re-plans the schedule.
RULE_FIELDS = frozenset({"report", "period", "period_days", "frequency", "weekdays", "month_day", "send_time",
                         "timezone"})


@dataclass(frozen=True)
class ScheduleRow:
    id: int
    client_id: int
    client_slug: str
    client_name: str
    report: str
    period: str
    period_days: int | None
    frequency: str
    weekdays: tuple[int, ...]
    month_day: int | None
    send_time: str
    timezone: str
    recipients: tuple[str, ...]
    subject: str | None
    format: str
    active: bool
    paused_reason: str | None
    next_send_at: dt.datetime | None
    revision: int


@dataclass(frozen=True)
class FileRow:
    id: int
    schedule_id: int
    occurrence: dt.datetime
    period_start: dt.date | None
    period_end: dt.date | None
    format: str
    path: str | None
    bytes: int | None
    checksum: str | None
    rows: int | None
    state: str
    attempts: int
    last_error: str | None
    next_attempt_at: dt.datetime | None
    lease_owner: str | None
    lease_expires_at: dt.datetime | None
    message_id: str | None
    created_at: dt.datetime
    sent_at: dt.datetime | None


def _schedule(row) -> ScheduleRow:  # noqa: ANN001
    s = row.ReportSchedule
    return ScheduleRow(
        id=s.id, client_id=s.client_id, client_slug=row.slug, client_name=row.name, report=s.report, period=s.period,
        period_days=s.period_days, frequency=s.frequency,
        weekdays=tuple(int(d) for d in s.weekdays.split(",")) if s.weekdays else (),
        month_day=s.month_day, send_time=s.send_time, timezone=s.timezone,
        recipients=tuple(r for r in s.recipients.split(",") if r), subject=s.subject, format=s.format,
        active=s.active, paused_reason=s.paused_reason, next_send_at=s.next_send_at, revision=s.revision,
    )


def _file(f: ReportFile) -> FileRow:
    return FileRow(**{name: getattr(f, name) for name in FileRow.__dataclass_fields__})


class ScheduleRepository:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def _select(self):  # noqa: ANN202
        return select(ReportSchedule, Client.slug, Client.name).join(Client, Client.id == ReportSchedule.client_id)

    def add(self, values: dict) -> int:
        now = dt.datetime.now(UTC)
        with self.engine.begin() as conn:
            return conn.execute(insert(ReportSchedule).values(
                **values, active=True, revision=1, next_send_at=None, created_at=now, updated_at=now,
            ).returning(ReportSchedule.id)).scalar_one()

    def get(self, schedule_id: int) -> ScheduleRow | None:
        with Session(self.engine) as conn:
            row = conn.execute(self._select().where(ReportSchedule.id == schedule_id)).first()
        return _schedule(row) if row else None

    def list(self, client_id: int | None = None) -> list[ScheduleRow]:
        query = self._select().order_by(ReportSchedule.id)
        if client_id is not None:
            query = query.where(ReportSchedule.client_id == client_id)
        with Session(self.engine) as conn:
            return [_schedule(r) for r in conn.execute(query)]

    def edit(self, schedule_id: int, changes: dict) -> bool:
        """Change fields; a change of the rule empties ``next_send_at`` so the planner re-plans it."""
        values = dict(changes, updated_at=dt.datetime.now(UTC), revision=ReportSchedule.revision + 1)
        if RULE_FIELDS & set(changes):
            values["next_send_at"] = None
        with self.engine.begin() as conn:
            return conn.execute(update(ReportSchedule).where(ReportSchedule.id == schedule_id).values(**values)).rowcount == 1

    def set_active(self, schedule_id: int, active: bool, reason: str | None = None) -> bool:
        """Pause (with a reason) or resume; resuming re-plans from now (no burst of missed sends)."""
        values: dict = {"active": active, "paused_reason": None if active else reason,
                        "updated_at": dt.datetime.now(UTC), "revision": ReportSchedule.revision + 1}
        if active:
            values["next_send_at"] = None
        with self.engine.begin() as conn:
            return conn.execute(update(ReportSchedule).where(ReportSchedule.id == schedule_id)
                                .values(**values)).rowcount == 1

    def delete(self, schedule_id: int) -> list[str]:
        """Delete the schedule and its file rows; return the files' paths for the caller to remove."""
        with self.engine.begin() as conn:
            paths = [p for p in conn.scalars(select(ReportFile.path).where(ReportFile.schedule_id == schedule_id)) if p]
            conn.execute(delete(ReportFile).where(ReportFile.schedule_id == schedule_id))
            conn.execute(delete(ReportSchedule).where(ReportSchedule.id == schedule_id))
        return paths

    # --- planner -------------------------------------------------------------------------------
    def unplanned(self, limit: int = 10_000) -> list[ScheduleRow]:
        query = self._select().where(ReportSchedule.active.is_(True), ReportSchedule.next_send_at.is_(None))
        with Session(self.engine) as conn:
            return [_schedule(r) for r in conn.execute(query.order_by(ReportSchedule.id).limit(limit))]

    def plan(self, plans: list[tuple[int, int, dt.datetime]]) -> int:
        """Set ``next_send_at`` for (id, revision, instant) if the schedule is still unplanned at that revision.

        One statement executed for the whole batch (a round trip per schedule was three quarters of a
        planner tick); returns how many of them hold exactly that plan afterwards.
        """
        if not plans:
            return 0
        statement = update(ReportSchedule.__table__).where(
            ReportSchedule.__table__.c.id == bindparam("sid"),
            ReportSchedule.__table__.c.revision == bindparam("rev"),
            ReportSchedule.__table__.c.next_send_at.is_(None),
        ).values(next_send_at=bindparam("at"))
        wanted = {schedule_id: (revision, instant) for schedule_id, revision, instant in plans}
        with self.engine.begin() as conn:
            conn.execute(statement, [{"sid": i, "rev": r, "at": at} for i, (r, at) in wanted.items()])
            rows = conn.execute(select(ReportSchedule.id, ReportSchedule.revision, ReportSchedule.next_send_at)
                                .where(ReportSchedule.id.in_(list(wanted)))).all()
        return sum(1 for i, revision, at in rows if wanted[i] == (revision, at))

    def due(self, now: dt.datetime, limit: int = 10_000) -> list[ScheduleRow]:
        query = self._select().where(ReportSchedule.active.is_(True), ReportSchedule.next_send_at <= now)
        with Session(self.engine) as conn:
            return [_schedule(r) for r in conn.execute(query.order_by(ReportSchedule.next_send_at).limit(limit))]

    def advance(self, schedule_id: int, due: dt.datetime, following: dt.datetime) -> bool:
        """Move ``next_send_at`` from ``due`` to ``following`` (no-op if it was edited or advanced meanwhile)."""
        with self.engine.begin() as conn:
            return conn.execute(update(ReportSchedule).where(
                ReportSchedule.id == schedule_id, ReportSchedule.next_send_at == due,
            ).values(next_send_at=following)).rowcount == 1


class ReportFileRepository:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def get(self, file_id: int) -> FileRow | None:
        with Session(self.engine) as conn:
            row = conn.execute(select(ReportFile).where(ReportFile.id == file_id)).scalar_one_or_none()
        return _file(row) if row else None

    def for_occurrence(self, schedule_id: int, occurrence: dt.datetime) -> FileRow | None:
        with Session(self.engine) as conn:
            row = conn.execute(select(ReportFile).where(
                ReportFile.schedule_id == schedule_id, ReportFile.occurrence == occurrence)).scalar_one_or_none()
        return _file(row) if row else None

    def list(self, schedule_id: int | None = None, states: tuple[str, ...] | None = None,
             limit: int = 1000) -> list[FileRow]:
        query = select(ReportFile).order_by(ReportFile.occurrence.desc()).limit(limit)
        if schedule_id is not None:
            query = query.where(ReportFile.schedule_id == schedule_id)
        if states:
            query = query.where(ReportFile.state.in_(states))
        with Session(self.engine) as conn:
            return [_file(r) for r in conn.execute(query).scalars()]

    # --- processor -----------------------------------------------------------------------------
    def claim_occurrence(self, schedule_id: int, occurrence: dt.datetime, fmt: str, owner: str,
                         now: dt.datetime, lease: dt.timedelta) -> FileRow | None:
        """Claim the building of one occurrence: the first caller inserts it; a crashed builder's
        claim is taken over once its lease has expired. ``None``: someone else has it or it is done."""
        try:
            with self.engine.begin() as conn:
                conn.execute(insert(ReportFile).values(
                    schedule_id=schedule_id, occurrence=occurrence, format=fmt, state="building", attempts=0,
                    lease_owner=owner, lease_expires_at=now + lease, created_at=now))
        except IntegrityError:
            with self.engine.begin() as conn:
                taken = conn.execute(update(ReportFile).where(
                    ReportFile.schedule_id == schedule_id, ReportFile.occurrence == occurrence,
                    ReportFile.state == "building", ReportFile.lease_expires_at < now,
                ).values(lease_owner=owner, lease_expires_at=now + lease, attempts=ReportFile.attempts + 1)).rowcount
            if not taken:
                return None
        return self.for_occurrence(schedule_id, occurrence)

    def mark_ready(self, file_id: int, owner: str, *, path: str, size: int, checksum: str, rows: int,
                   period: tuple[dt.date, dt.date], message_id: str) -> bool:
        with self.engine.begin() as conn:
            return conn.execute(update(ReportFile).where(
                ReportFile.id == file_id, ReportFile.state == "building", ReportFile.lease_owner == owner,
            ).values(state="ready", path=path, bytes=size, checksum=checksum, rows=rows, period_start=period[0],
                     period_end=period[1], message_id=message_id, lease_owner=None, lease_expires_at=None,
                     next_attempt_at=None, attempts=0, last_error=None)).rowcount == 1

    def release_build(self, file_id: int, owner: str, error: str, retry_at: dt.datetime) -> None:
        """Give a failed build back: another processor run may take it over from ``retry_at``."""
        with self.engine.begin() as conn:
            conn.execute(update(ReportFile).where(
                ReportFile.id == file_id, ReportFile.state == "building", ReportFile.lease_owner == owner,
            ).values(last_error=error[:2000], lease_owner=None, lease_expires_at=retry_at))

    def builds_in_progress(self, schedule_ids: list[int]) -> dict[tuple[int, dt.datetime], tuple[int, dt.datetime]]:
        """``(schedule, occurrence) -> (failed builds so far, lease end)`` of unfinished builds."""
        if not schedule_ids:
            return {}
        with Session(self.engine) as conn:
            rows = conn.execute(select(ReportFile.schedule_id, ReportFile.occurrence, ReportFile.attempts,
                                       ReportFile.lease_expires_at)
                                .where(ReportFile.schedule_id.in_(schedule_ids), ReportFile.state == "building"))
            return {(r[0], r[1]): (r[2], r[3]) for r in rows}

    def record_skipped(self, schedule_id: int, occurrences: list[dt.datetime], fmt: str, now: dt.datetime,
                       reason: str) -> int:
        recorded = 0
        for occurrence in occurrences:
            try:
                with self.engine.begin() as conn:
                    conn.execute(insert(ReportFile).values(
                        schedule_id=schedule_id, occurrence=occurrence, format=fmt, state="skipped", attempts=0,
                        last_error=reason, created_at=now))
                recorded += 1
            except IntegrityError:
                continue  # already recorded (or sent) by an earlier run
        return recorded

    # --- sender --------------------------------------------------------------------------------
    def _sendable(self, now: dt.datetime):  # noqa: ANN202
        return or_(
            and_(ReportFile.state.in_(("ready", "retry")),
                 or_(ReportFile.next_attempt_at.is_(None), ReportFile.next_attempt_at <= now)),
            and_(ReportFile.state == "sending", ReportFile.lease_expires_at < now),
        )

    def sendable_ids(self, now: dt.datetime, limit: int = 1000) -> list[int]:
        with Session(self.engine) as conn:
            return list(conn.scalars(select(ReportFile.id).where(self._sendable(now))
                                     .order_by(ReportFile.occurrence).limit(limit)))

    def next_retry_at(self) -> dt.datetime | None:
        from sqlalchemy import func

        with Session(self.engine) as conn:
            return conn.execute(select(func.min(ReportFile.next_attempt_at)).where(ReportFile.state == "retry")).scalar()

    def claim_for_sending(self, file_id: int, owner: str, now: dt.datetime, lease: dt.timedelta) -> FileRow | None:
        with self.engine.begin() as conn:
            claimed = conn.execute(update(ReportFile).where(ReportFile.id == file_id, self._sendable(now)).values(
                state="sending", lease_owner=owner, lease_expires_at=now + lease,
                attempts=ReportFile.attempts + 1)).rowcount
        return self.get(file_id) if claimed else None

    def mark_sent(self, file_id: int, owner: str, now: dt.datetime, note: str | None = None) -> bool:
        with self.engine.begin() as conn:
            return conn.execute(update(ReportFile).where(
                ReportFile.id == file_id, ReportFile.state == "sending", ReportFile.lease_owner == owner,
            ).values(state="sent", sent_at=now, last_error=note, lease_owner=None, lease_expires_at=None)).rowcount == 1

    def mark_retry(self, file_id: int, owner: str, error: str, at: dt.datetime) -> bool:
        with self.engine.begin() as conn:
            return conn.execute(update(ReportFile).where(
                ReportFile.id == file_id, ReportFile.state == "sending", ReportFile.lease_owner == owner,
            ).values(state="retry", last_error=error[:2000], next_attempt_at=at, lease_owner=None,
                     lease_expires_at=None)).rowcount == 1

    def mark_failed(self, file_id: int, owner: str, error: str) -> bool:
        with self.engine.begin() as conn:
            return conn.execute(update(ReportFile).where(
                ReportFile.id == file_id, ReportFile.state == "sending", ReportFile.lease_owner == owner,
            ).values(state="failed", last_error=error[:2000], lease_owner=None, lease_expires_at=None)).rowcount == 1

    def retry_failed(self, file_id: int) -> bool:
        """An operator's resend of a failed file: back to ready, attempts kept."""
        with self.engine.begin() as conn:
            return conn.execute(update(ReportFile).where(ReportFile.id == file_id, ReportFile.state == "failed")
                                .values(state="ready", next_attempt_at=None)).rowcount == 1

    # --- cleaner -------------------------------------------------------------------------------
    def sent_before(self, cutoff: dt.datetime, limit: int = 10_000) -> list[FileRow]:
        with Session(self.engine) as conn:
            rows = conn.execute(select(ReportFile).where(ReportFile.state == "sent", ReportFile.sent_at < cutoff)
                                .order_by(ReportFile.sent_at).limit(limit)).scalars()
            return [_file(r) for r in rows]

    def delete_sent(self, file_id: int) -> bool:
        with self.engine.begin() as conn:
            return conn.execute(delete(ReportFile).where(ReportFile.id == file_id, ReportFile.state == "sent")).rowcount == 1
