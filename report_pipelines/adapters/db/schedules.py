"""Scheduled reports in the database: schedules, and the state machine of their files.

Every state change is one conditional ``UPDATE ... WHERE <expected state>`` (or an ``INSERT`` that a
unique key guards) and reports whether it happened, so any number of sensors, runs and workers can
race for the same row and exactly one wins. On PostgreSQL a competing ``UPDATE`` waits for the
winner's row lock and then re-checks its ``WHERE`` against the new row (and finds it no longer
matches); SQLite serialises writers.

The transitions of a report file (one row per schedule and occurrence):

* **build**: :meth:`ReportFileRepository.claim_build` inserts the row ``building`` under a lease, or
  takes over one whose lease expired (a builder that died, or a failed build whose backoff is
  over), counting ``build_attempts``; a live builder renews its lease (:meth:`renew_build`).
  :meth:`finish_build` records the file ``ready`` with its recipients *and* advances the schedule
  in one transaction; :meth:`fail_build` gives it back for a retry after a backoff, or, at the
  last attempt, records it ``failed`` and advances the schedule in one transaction. So a schedule
  never moves past an occurrence whose file is not durably ready or failed.
* **send**: :meth:`claim_sendable` claims a batch (``UPDATE ... WHERE id IN (SELECT ... FOR UPDATE
  SKIP LOCKED) RETURNING``), each file under its own lease, counting ``attempts``;
  :meth:`renew_sending` extends the leases still held (and says which are);
  :meth:`record_sends` writes a batch of outcomes (file, recipients, history) in one transaction,
  only for files whose lease the writer still holds; :meth:`release` gives back files claimed but
  not tried (deadline, relay down) without counting an attempt.
* **resend**: :meth:`reopen` puts a failed file (or a sent one with recipients that did not get
  it) back to be sent (or built) again; its history is kept.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterable
from dataclasses import dataclass

from psycopg2.extras import execute_values
from sqlalchemy import Engine, and_, bindparam, case, delete, func, insert, or_, select, update
from sqlalchemy.exc import IntegrityError

from report_pipelines.adapters.db.models import (
    Client,
    ReportFile,
    ReportFileAttempt,
    ReportFileRecipient,
    ReportSchedule,
)
from report_pipelines.domain.delivery import ACCEPTED, FAILED, OPEN_STATES, PENDING

UTC = dt.UTC

#: Columns whose change alters when or what is sent: editing one re-plans the schedule.
#: The planner's write on PostgreSQL: one statement per 2,000 plans (psycopg2's execute_values).
PLAN_SQL = """
UPDATE report_schedules AS s SET next_send_at = v.at
FROM (VALUES %s) AS v(id, revision, at)
WHERE s.id = v.id AND s.revision = v.revision AND s.next_send_at IS NULL
RETURNING s.id
"""

RULE_FIELDS = frozenset({"report", "period", "period_days", "frequency", "weekdays", "month_day", "send_time",
                         "timezone", "condition"})


@dataclass(frozen=True)
class ScheduleRow:
    id: int
    client_id: int
    client_slug: str
    client_name: str
    client_timezone: str  # the zone the client's days are cut in (the period's days)
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
    kind: str = "report"
    body: str = "summary"
    no_calls: str = "send"
    message: str | None = None
    reply_to: str | None = None
    condition: str | None = None
    alert_state: str | None = None
    alert_since: dt.datetime | None = None


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
    build_attempts: int
    last_error: str | None
    next_attempt_at: dt.datetime | None
    lease_owner: str | None
    lease_expires_at: dt.datetime | None
    message_id: str | None
    created_at: dt.datetime
    sent_at: dt.datetime | None


def _schedule(row) -> ScheduleRow:
    s = row._mapping
    return ScheduleRow(
        id=s["id"], client_id=s["client_id"], client_slug=s["client_slug"], client_name=s["client_name"],
        client_timezone=s["client_timezone"], report=s["report"], period=s["period"], period_days=s["period_days"],
        frequency=s["frequency"], weekdays=tuple(int(d) for d in s["weekdays"].split(",")) if s["weekdays"] else (),
        month_day=s["month_day"], send_time=s["send_time"], timezone=s["timezone"],
        recipients=tuple(r for r in s["recipients"].split(",") if r), subject=s["subject"], format=s["format"],
        active=s["active"], paused_reason=s["paused_reason"], next_send_at=s["next_send_at"], revision=s["revision"],
        kind=s["kind"], body=s["body"], no_calls=s["no_calls"], message=s["message"], reply_to=s["reply_to"],
        condition=s["condition"], alert_state=s["alert_state"], alert_since=s["alert_since"],
    )


@dataclass(frozen=True)
class RecipientRow:
    file_id: int
    address: str
    position: int
    state: str
    attempts: int
    last_reply: str | None
    updated_at: dt.datetime


@dataclass(frozen=True)
class AttemptRow:
    id: int
    file_id: int
    kind: str
    number: int
    owner: str
    outcome: str
    error: str | None
    recipients: dict[str, str]
    started_at: dt.datetime
    finished_at: dt.datetime


@dataclass(frozen=True)
class BuildClaim:
    """What :meth:`ReportFileRepository.claim_build` found: ``claimed`` (build it now), ``held``
    (another builder holds it, or its failed build waits for its backoff), ``done`` (built, or
    failed, already), ``gave_up`` (its last builder died at the last attempt: recorded failed now)."""

    status: str
    file: FileRow | None


@dataclass(frozen=True)
class SendOutcome:
    """One send attempt's result, as :meth:`ReportFileRepository.record_sends` writes it."""

    file_id: int
    number: int  # the file's ``attempts`` when it was claimed
    verdict: str  # sent, retry or failed
    recipients: dict[str, tuple[str, str]]  # address -> (new state, reply) of those sent to
    started_at: dt.datetime
    error: str | None = None  # last_error (a note of refusals on a sent file)
    next_attempt_at: dt.datetime | None = None


_FILE_COLUMNS = tuple(FileRow.__dataclass_fields__)


def _file(f) -> FileRow:
    get = f._mapping.__getitem__ if hasattr(f, "_mapping") else f.__getattribute__
    return FileRow(**{name: get(name) for name in _FILE_COLUMNS})


class ScheduleRepository:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def _select(self):
        return select(ReportSchedule.__table__, Client.slug.label("client_slug"), Client.name.label("client_name"),
                      Client.timezone.label("client_timezone")).join(Client, Client.id == ReportSchedule.client_id)

    def add(self, values: dict, now: dt.datetime) -> int:
        with self.engine.begin() as conn:
            return conn.execute(insert(ReportSchedule).values(
                **values, active=True, revision=1, next_send_at=None, created_at=now, updated_at=now,
            ).returning(ReportSchedule.id)).scalar_one()

    def get(self, schedule_id: int) -> ScheduleRow | None:
        with self.engine.connect() as conn:
            row = conn.execute(self._select().where(ReportSchedule.id == schedule_id)).first()
        return _schedule(row) if row else None

    def get_many(self, schedule_ids: Iterable[int]) -> dict[int, ScheduleRow]:
        ids = sorted(set(schedule_ids))
        if not ids:
            return {}
        with self.engine.connect() as conn:
            return {r.id: r for r in map(_schedule, conn.execute(self._select().where(ReportSchedule.id.in_(ids))))}

    def list(self, client_id: int | None = None) -> list[ScheduleRow]:
        query = self._select().order_by(ReportSchedule.id)
        if client_id is not None:
            query = query.where(ReportSchedule.client_id == client_id)
        with self.engine.connect() as conn:
            return [_schedule(r) for r in conn.execute(query)]

    def edit(self, schedule_id: int, changes: dict, now: dt.datetime) -> bool:
        """Change fields; a change of the rule empties ``next_send_at`` so the planner re-plans it
        (and a new alert condition starts from a clear incident)."""
        values = dict(changes, updated_at=now, revision=ReportSchedule.revision + 1)
        if "condition" in changes:
            values.update(alert_state=None, alert_since=None)
        if RULE_FIELDS & set(changes):
            values["next_send_at"] = None
        with self.engine.begin() as conn:
            return conn.execute(update(ReportSchedule).where(ReportSchedule.id == schedule_id).values(**values)).rowcount == 1

    def set_active(self, schedule_id: int, active: bool, reason: str | None = None, *, now: dt.datetime) -> bool:
        """Pause (with a reason) or resume; resuming re-plans from now (no burst of missed sends)."""
        values: dict = {"active": active, "paused_reason": None if active else reason,
                        "updated_at": now, "revision": ReportSchedule.revision + 1}
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
        with self.engine.connect() as conn:
            return [_schedule(r) for r in conn.execute(query.order_by(ReportSchedule.id).limit(limit))]

    def plan(self, plans: list[tuple[int, int, dt.datetime]]) -> int:
        """Set ``next_send_at`` for (id, revision, instant) if the schedule is still unplanned at that revision.

        One statement for the whole batch: ``UPDATE ... FROM (VALUES ...) ... RETURNING`` (an executemany
        is still one statement per schedule on the wire, and five times slower); returns how many were
        planned, each a compare-and-set on the revision and the empty ``next_send_at``.
        """
        if not plans:
            return 0
        table = ReportSchedule.__table__
        wanted = {schedule_id: (revision, instant) for schedule_id, revision, instant in plans}
        planned = 0
        items = list(wanted.items())
        with self.engine.begin() as conn:
            if conn.dialect.name != "postgresql":  # SQLite cannot name a VALUES list's columns: one by one
                one = update(table).where(table.c.id == bindparam("sid"), table.c.revision == bindparam("rev"),
                                          table.c.next_send_at.is_(None)).values(next_send_at=bindparam("at"))
                return sum(conn.execute(one, {"sid": i, "rev": r, "at": at}).rowcount for i, (r, at) in items)
            cursor = conn.connection.dbapi_connection.cursor()
            rows = execute_values(cursor, PLAN_SQL, [(i, r, at) for i, (r, at) in items], page_size=2000, fetch=True)
            planned = len(rows)
        return planned

    def due(self, now: dt.datetime, limit: int = 10_000) -> list[ScheduleRow]:
        query = self._select().where(ReportSchedule.active.is_(True), ReportSchedule.next_send_at <= now)
        with self.engine.connect() as conn:
            return [_schedule(r) for r in conn.execute(query.order_by(ReportSchedule.next_send_at).limit(limit))]

    def advance(self, schedule_id: int, due: dt.datetime, following: dt.datetime) -> bool:
        """Move ``next_send_at`` from ``due`` to ``following`` (no-op if it was edited or advanced meanwhile)."""
        with self.engine.begin() as conn:
            return _advance(conn, (schedule_id, due, following))


#: (schedule id, the due instant it must still have, the instant it moves to)
Advance = tuple[int, dt.datetime, dt.datetime]


def _advance(conn, advance: Advance | None) -> bool:
    if advance is None:
        return False
    schedule_id, due, following = advance
    return conn.execute(update(ReportSchedule).where(
        ReportSchedule.id == schedule_id, ReportSchedule.next_send_at == due,
    ).values(next_send_at=following)).rowcount == 1




def _schedule_values(conn, file_id: int, values: dict | None) -> None:
    """Set columns of the file's schedule (an alert's incident) in the caller's transaction."""
    if values:
        schedule_id = select(ReportFile.schedule_id).where(ReportFile.id == file_id).scalar_subquery()
        conn.execute(update(ReportSchedule).where(ReportSchedule.id == schedule_id).values(**values))


F = ReportFile.__table__
R = ReportFileRecipient.__table__
A = ReportFileAttempt.__table__


def _history(conn, rows: list[dict]) -> None:
    if rows:
        conn.execute(insert(A), rows)


def _json(replies: dict[str, str] | None) -> str | None:
    return json.dumps(replies, ensure_ascii=False) if replies else None


class ReportFileRepository:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def get(self, file_id: int) -> FileRow | None:
        with self.engine.connect() as conn:
            row = conn.execute(select(F).where(F.c.id == file_id)).first()
        return _file(row) if row else None

    def for_occurrence(self, schedule_id: int, occurrence: dt.datetime) -> FileRow | None:
        with self.engine.connect() as conn:
            row = conn.execute(select(F).where(F.c.schedule_id == schedule_id, F.c.occurrence == occurrence)).first()
        return _file(row) if row else None

    def list(self, schedule_id: int | None = None, states: tuple[str, ...] | None = None,
             limit: int = 1000) -> list[FileRow]:
        query = select(F).order_by(F.c.occurrence.desc(), F.c.id.desc()).limit(limit)
        if schedule_id is not None:
            query = query.where(F.c.schedule_id == schedule_id)
        if states:
            query = query.where(F.c.state.in_(states))
        with self.engine.connect() as conn:
            return [_file(r) for r in conn.execute(query)]

    def recipients(self, file_ids: Iterable[int]) -> dict[int, list[RecipientRow]]:
        """Each file's recipients in the order of its To: header."""
        ids = sorted(set(file_ids))
        found: dict[int, list[RecipientRow]] = {i: [] for i in ids}
        if not ids:
            return found
        with self.engine.connect() as conn:
            for r in conn.execute(select(R).where(R.c.file_id.in_(ids)).order_by(R.c.file_id, R.c.position)):
                found[r.file_id].append(RecipientRow(**r._mapping))
        return found

    def attempts_of(self, file_id: int) -> list[AttemptRow]:
        with self.engine.connect() as conn:
            rows = conn.execute(select(A).where(A.c.file_id == file_id).order_by(A.c.id)).all()
        return [AttemptRow(**{**r._mapping, "recipients": json.loads(r.recipients) if r.recipients else {}})
                for r in rows]

    # --- processor -----------------------------------------------------------------------------
    def claim_build(self, schedule_id: int, occurrence: dt.datetime, fmt: str, owner: str, now: dt.datetime,
                    lease: dt.timedelta, max_attempts: int, advance: Advance | None = None) -> BuildClaim:
        """Claim the building of one occurrence: the first caller inserts it; after a lease has
        expired (the builder died, or a failed build's backoff is over) the next caller takes it
        over, up to ``max_attempts`` claims; past that it is recorded failed (``gave_up``) and the
        schedule advanced (``advance``) in the same transaction."""
        try:
            with self.engine.begin() as conn:
                row = conn.execute(insert(F).values(
                    schedule_id=schedule_id, occurrence=occurrence, format=fmt, state="building", attempts=0,
                    build_attempts=1, lease_owner=owner, lease_expires_at=now + lease, created_at=now,
                ).returning(*F.c)).one()
            return BuildClaim("claimed", _file(row))
        except IntegrityError:
            pass
        current = self.for_occurrence(schedule_id, occurrence)
        if current is None or current.state != "building":
            return BuildClaim("done", current)
        if current.lease_expires_at is not None and current.lease_expires_at >= now:
            return BuildClaim("held", current)
        expired = and_(F.c.id == current.id, F.c.state == "building", F.c.build_attempts == current.build_attempts,
                       or_(F.c.lease_expires_at.is_(None), F.c.lease_expires_at < now))
        with self.engine.begin() as conn:
            if current.build_attempts < max_attempts:
                row = conn.execute(update(F).where(expired).values(
                    lease_owner=owner, lease_expires_at=now + lease, build_attempts=F.c.build_attempts + 1,
                ).returning(*F.c)).first()
                return BuildClaim("claimed", _file(row)) if row else BuildClaim("held", current)
            why = (f"its builder ({current.lease_owner}) stopped without finishing" if current.lease_owner
                   else f"last error: {current.last_error}")
            error = f"build gave up after {current.build_attempts} attempts; {why}"
            row = conn.execute(update(F).where(expired).values(
                state="failed", last_error=error[:2000], lease_owner=None, lease_expires_at=None,
            ).returning(*F.c)).first()
            if row is None:
                return BuildClaim("held", current)
            _history(conn, [{"file_id": current.id, "kind": "build", "number": current.build_attempts, "owner": owner,
                             "outcome": "failed", "error": error[:2000], "recipients": None, "started_at": now,
                             "finished_at": now}])
            _advance(conn, advance)
            return BuildClaim("gave_up", _file(row))

    def renew_build(self, file_id: int, owner: str, until: dt.datetime) -> bool:
        """The build's heartbeat: extend the lease if this owner still holds it."""
        with self.engine.begin() as conn:
            return conn.execute(update(F).where(F.c.id == file_id, F.c.state == "building", F.c.lease_owner == owner)
                                .values(lease_expires_at=until)).rowcount == 1

    def finish_build(self, file_id: int, owner: str, *, path: str, size: int, checksum: str, rows: int,
                     period: tuple[dt.date, dt.date], message_id: str, recipients: tuple[str, ...], now: dt.datetime,
                     started_at: dt.datetime, advance: Advance | None = None,
                     schedule_values: dict | None = None) -> bool:
        """Record the file ready with its recipients (pending), its history row, and advance the
        schedule (with ``schedule_values``: an alert's incident state): one transaction, only if
        ``owner`` still holds the build."""
        with self.engine.begin() as conn:
            number = conn.execute(update(F).where(F.c.id == file_id, F.c.state == "building", F.c.lease_owner == owner)
                                  .values(state="ready", path=path, bytes=size, checksum=checksum, rows=rows,
                                          period_start=period[0], period_end=period[1], message_id=message_id,
                                          lease_owner=None, lease_expires_at=None, next_attempt_at=None, attempts=0,
                                          last_error=None).returning(F.c.build_attempts)).scalar()
            if number is None:
                return False
            conn.execute(delete(R).where(R.c.file_id == file_id))  # a rebuild after a resend starts afresh
            conn.execute(insert(R), [{"file_id": file_id, "address": a, "position": i, "state": PENDING, "attempts": 0,
                                      "last_reply": None, "updated_at": now} for i, a in enumerate(recipients)])
            _history(conn, [{"file_id": file_id, "kind": "build", "number": number, "owner": owner, "outcome": "ready",
                             "error": None, "recipients": None, "started_at": started_at, "finished_at": now}])
            _advance(conn, advance)
            _schedule_values(conn, file_id, schedule_values)
            return True

    def skip_build(self, file_id: int, owner: str, reason: str, *, period: tuple[dt.date, dt.date] | None,
                   now: dt.datetime, started_at: dt.datetime, advance: Advance | None = None,
                   schedule_values: dict | None = None) -> bool:
        """Record an occurrence that sends nothing (no calls and ``--no-calls skip``; an alert
        check that changes nothing to say) ``skipped`` with the reason, and advance the schedule:
        one transaction, only if ``owner`` still holds the build. It is never tried again."""
        with self.engine.begin() as conn:
            number = conn.execute(update(F).where(F.c.id == file_id, F.c.state == "building", F.c.lease_owner == owner)
                                  .values(state="skipped", last_error=reason[:2000], lease_owner=None,
                                          lease_expires_at=None, next_attempt_at=None,
                                          period_start=period[0] if period else None,
                                          period_end=period[1] if period else None)
                                  .returning(F.c.build_attempts)).scalar()
            if number is None:
                return False
            _history(conn, [{"file_id": file_id, "kind": "build", "number": number, "owner": owner,
                             "outcome": "skipped", "error": reason[:2000], "recipients": None,
                             "started_at": started_at, "finished_at": now}])
            _advance(conn, advance)
            _schedule_values(conn, file_id, schedule_values)
            return True

    def fail_build(self, file_id: int, owner: str, error: str, *, now: dt.datetime, started_at: dt.datetime,
                   retry_at: dt.datetime, give_up: bool, advance: Advance | None = None) -> str | None:
        """A failed build: given back for another claim from ``retry_at``, or (``give_up``) recorded
        failed with the schedule advanced, in one transaction. Returns ``retry``, ``failed`` or
        ``None`` if ``owner`` no longer held it."""
        error = error[:2000]
        with self.engine.begin() as conn:
            mine = and_(F.c.id == file_id, F.c.state == "building", F.c.lease_owner == owner)
            if give_up:
                number = conn.execute(update(F).where(mine).values(
                    state="failed", last_error=error, lease_owner=None, lease_expires_at=None,
                ).returning(F.c.build_attempts)).scalar()
            else:
                number = conn.execute(update(F).where(mine).values(
                    last_error=error, lease_owner=None, lease_expires_at=retry_at,
                ).returning(F.c.build_attempts)).scalar()
            if number is None:
                return None
            outcome = "failed" if give_up else "retry"
            _history(conn, [{"file_id": file_id, "kind": "build", "number": number, "owner": owner, "outcome": outcome,
                             "error": error, "recipients": None, "started_at": started_at, "finished_at": now}])
            if give_up:
                _advance(conn, advance)
            return outcome

    def builds_in_progress(self, schedule_ids: list[int]) -> dict[tuple[int, dt.datetime], tuple[int, dt.datetime]]:
        """``(schedule, occurrence) -> (build claims so far, lease end)`` of unfinished builds."""
        if not schedule_ids:
            return {}
        with self.engine.connect() as conn:
            rows = conn.execute(select(F.c.schedule_id, F.c.occurrence, F.c.build_attempts, F.c.lease_expires_at)
                                .where(F.c.schedule_id.in_(schedule_ids), F.c.state == "building"))
            return {(r[0], r[1]): (r[2], r[3]) for r in rows}

    def record_skipped(self, schedule_id: int, occurrences: list[dt.datetime], fmt: str, now: dt.datetime,
                       reason: str) -> int:
        recorded = 0
        for occurrence in occurrences:
            try:
                with self.engine.begin() as conn:
                    conn.execute(insert(F).values(
                        schedule_id=schedule_id, occurrence=occurrence, format=fmt, state="skipped", attempts=0,
                        build_attempts=0, last_error=reason, created_at=now))
                recorded += 1
            except IntegrityError:
                continue  # already recorded (or sent) by an earlier run
        return recorded

    # --- sender --------------------------------------------------------------------------------
    @staticmethod
    def _sendable(now: dt.datetime):
        return or_(
            and_(F.c.state.in_(("ready", "retry")),
                 or_(F.c.next_attempt_at.is_(None), F.c.next_attempt_at <= now)),
            and_(F.c.state == "sending", F.c.lease_expires_at < now),
        )

    def sendable(self, now: dt.datetime, limit: int = 1000) -> list[tuple[int, int]]:
        """``(id, attempts)`` of the files that may be sent now, oldest occurrence first."""
        with self.engine.connect() as conn:
            return [(i, n) for i, n in conn.execute(select(F.c.id, F.c.attempts).where(self._sendable(now))
                                                     .order_by(F.c.occurrence, F.c.id).limit(limit))]

    def next_retry_at(self) -> dt.datetime | None:
        """When the next file waiting for a retry may be sent (the sender sensor's next window)."""
        with self.engine.connect() as conn:
            return conn.execute(select(func.min(F.c.next_attempt_at)).where(F.c.state == "retry")).scalar()

    def claim_sendable(self, owner: str, now: dt.datetime, lease: dt.timedelta, limit: int,
                       file_ids: Iterable[int] | None = None) -> list[FileRow]:
        """Claim up to ``limit`` files that may be sent now, oldest occurrence first, each under a
        lease until ``now + lease``: one ``UPDATE ... RETURNING`` whose candidates are locked with
        ``SKIP LOCKED`` (on PostgreSQL), so concurrent senders take disjoint batches."""
        candidates = select(F.c.id).where(self._sendable(now))
        if file_ids is not None:
            candidates = candidates.where(F.c.id.in_(list(file_ids)))
        # A CTE, evaluated once: as a plain ``IN (subquery)`` PostgreSQL may rescan the subquery for
        # every row it updates, and each rescan skips the rows this statement already changed and
        # locks the next ones, so the LIMIT would bound nothing.
        candidates = (candidates.order_by(F.c.occurrence, F.c.id).limit(limit).with_for_update(skip_locked=True)
                      .cte("candidates").prefix_with("MATERIALIZED", dialect="postgresql"))
        with self.engine.begin() as conn:
            rows = conn.execute(update(F).where(F.c.id.in_(select(candidates.c.id)), self._sendable(now)).values(
                state="sending", lease_owner=owner, lease_expires_at=now + lease, attempts=F.c.attempts + 1,
            ).returning(*F.c)).all()
        return sorted((_file(r) for r in rows), key=lambda f: (f.occurrence, f.id))

    def renew_sending(self, file_ids: Iterable[int], owner: str, until: dt.datetime) -> set[int]:
        """Extend the leases ``owner`` still holds among ``file_ids``; returns those ids."""
        ids = list(file_ids)
        if not ids:
            return set()
        with self.engine.begin() as conn:
            return set(conn.scalars(update(F).where(F.c.id.in_(ids), F.c.state == "sending", F.c.lease_owner == owner)
                                    .values(lease_expires_at=until).returning(F.c.id)))

    def release(self, owner: str, file_ids: Iterable[int], retry_at: dt.datetime | None = None) -> int:
        """Give back files claimed but not tried (their attempt is not counted), to be sent from
        ``retry_at`` (or as soon as possible)."""
        ids = list(file_ids)
        if not ids:
            return 0
        values: dict = {"state": case((F.c.attempts <= 1, "ready"), else_="retry"), "attempts": F.c.attempts - 1,
                        "lease_owner": None, "lease_expires_at": None}
        if retry_at is not None:
            values["next_attempt_at"] = retry_at
        with self.engine.begin() as conn:
            return conn.execute(update(F).where(F.c.id.in_(ids), F.c.state == "sending", F.c.lease_owner == owner)
                                .values(**values)).rowcount

    def record_sends(self, owner: str, outcomes: list[SendOutcome], now: dt.datetime) -> set[int]:
        """Write a batch of send outcomes in one transaction: each file's new state, its recipients'
        states, and its history row. A file whose lease ``owner`` no longer holds is not changed (its
        history row says ``lease_lost``); returns the ids that were recorded."""
        if not outcomes:
            return set()
        mine = and_(F.c.state == "sending", F.c.lease_owner == owner)
        released = {"lease_owner": None, "lease_expires_at": None}
        recorded: set[int] = set()
        with self.engine.begin() as conn:
            plain = [o.file_id for o in outcomes if o.verdict == "sent" and o.error is None]
            if plain:  # the common case, one statement for all: sent, no note
                recorded |= set(conn.scalars(update(F).where(F.c.id.in_(plain), mine).values(
                    state="sent", sent_at=now, last_error=None, next_attempt_at=None, **released).returning(F.c.id)))
            for o in outcomes:
                if o.verdict == "sent" and o.error is None:
                    continue
                values = {"state": o.verdict, "last_error": o.error[:2000] if o.error else None, **released}
                if o.verdict == "sent":
                    values.update(sent_at=now, next_attempt_at=None)
                elif o.verdict == "retry":
                    values["next_attempt_at"] = o.next_attempt_at
                if conn.execute(update(F).where(F.c.id == o.file_id, mine).values(**values)).rowcount:
                    recorded.add(o.file_id)
            done = [o for o in outcomes if o.file_id in recorded]
            accepted_all = [o.file_id for o in done
                            if o.recipients and all(state == ACCEPTED for state, _ in o.recipients.values())]
            if accepted_all:  # one statement: every recipient sent to accepted it
                conn.execute(update(R).where(R.c.file_id.in_(accepted_all), R.c.state.in_(OPEN_STATES)).values(
                    state=ACCEPTED, attempts=R.c.attempts + 1, last_reply=None, updated_at=now))
            each = [{"f": o.file_id, "a": address, "s": state, "r": reply if state != ACCEPTED else None}
                    for o in done if o.file_id not in accepted_all for address, (state, reply) in o.recipients.items()]
            if each:
                conn.execute(update(R).where(R.c.file_id == bindparam("f"), R.c.address == bindparam("a")).values(
                    state=bindparam("s"), last_reply=bindparam("r"), attempts=R.c.attempts + 1, updated_at=now), each)
            failed = [o.file_id for o in done if o.verdict == FAILED]
            if failed:  # recipients still open when a file fails have failed with it
                conn.execute(update(R).where(R.c.file_id.in_(failed), R.c.state.in_(OPEN_STATES)).values(
                    state=FAILED, updated_at=now))
            _history(conn, [{"file_id": o.file_id, "kind": "send", "number": o.number, "owner": owner,
                             "outcome": o.verdict if o.file_id in recorded else "lease_lost",
                             "error": o.error[:2000] if o.error else None,
                             "recipients": _json({a: reply for a, (_, reply) in o.recipients.items()}),
                             "started_at": o.started_at, "finished_at": now} for o in outcomes])
        return recorded

    # --- resend --------------------------------------------------------------------------------
    def reopen(self, file_id: int, owner: str, now: dt.datetime, expected_state: str) -> bool:
        """An operator's resend: a failed file (or a sent one whose recipients did not all get it)
        goes back to ``ready`` with its attempts counted afresh, and its recipients that did not
        accept it back to ``pending``; a file that was never built goes back to ``building``, its
        lease already expired, to be built again. The history is kept, with a ``resend`` row."""
        with self.engine.begin() as conn:
            built = F.c.path.is_not(None)
            changed = conn.execute(update(F).where(F.c.id == file_id, F.c.state == expected_state).values(
                state=case((built, "ready"), else_="building"), attempts=0,
                build_attempts=case((built, F.c.build_attempts), else_=0), next_attempt_at=None,
                lease_owner=None, lease_expires_at=case((built, None), else_=now - dt.timedelta(seconds=1)),
            )).rowcount == 1
            if not changed:
                return False
            conn.execute(update(R).where(R.c.file_id == file_id, R.c.state != ACCEPTED).values(
                state=PENDING, updated_at=now))
            _history(conn, [{"file_id": file_id, "kind": "send", "number": 0, "owner": owner, "outcome": "resend",
                             "error": f"resend asked by {owner} (the file was {expected_state})", "recipients": None,
                             "started_at": now, "finished_at": now}])
            return True

    # --- cleaner -------------------------------------------------------------------------------
    def sent_before(self, cutoff: dt.datetime, limit: int = 10_000) -> list[FileRow]:
        with self.engine.connect() as conn:
            rows = conn.execute(select(F).where(F.c.state == "sent", F.c.sent_at < cutoff)
                                .order_by(F.c.sent_at).limit(limit))
            return [_file(r) for r in rows]

    def delete_skipped_before(self, cutoff: dt.datetime) -> int:
        """Delete ``skipped`` records (nothing on disk) whose occurrence is older than ``cutoff``: an
        alert checked every 15 minutes leaves 96 a day."""
        with self.engine.begin() as conn:
            return conn.execute(delete(F).where(F.c.state == "skipped", F.c.occurrence < cutoff)).rowcount

    def delete_sent(self, file_id: int) -> bool:
        with self.engine.begin() as conn:
            return conn.execute(delete(F).where(F.c.id == file_id, F.c.state == "sent")).rowcount == 1
