"""Repositories: the only place that speaks SQL about clients and calls."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from sqlalchemy import Engine, func, select, update
from sqlalchemy.exc import IntegrityError

from report_pipelines.adapters.db.models import CallEvent, Client
from report_pipelines.domain.clients import ClientRecord, ClientSpec
from report_pipelines.domain.errors import Conflict, NotFound
from report_pipelines.domain.timezones import local_date_of, parse_zone

UTC = dt.timezone.utc


def _record(row) -> ClientRecord:  # noqa: ANN001 - a Client or a row with the same columns
    return ClientRecord(id=row.id, slug=row.slug, name=row.name, timezone=row.timezone, active_from=row.active_from)


class ClientRepository:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def add(self, spec: ClientSpec) -> ClientRecord:
        now = dt.datetime.now(UTC)
        active_from = spec.active_from or local_date_of(now, parse_zone(spec.timezone))
        with self.engine.begin() as conn:
            if conn.execute(select(Client.id).where(Client.slug == spec.slug)).first():
                raise Conflict("slug", f"a client with slug {spec.slug!r} already exists")
            try:
                new_id = conn.execute(
                    Client.__table__.insert()
                    .values(slug=spec.slug, name=spec.name, timezone=spec.timezone, active_from=active_from,
                            created_at=now, updated_at=now)
                    .returning(Client.id)
                ).scalar_one()
            except IntegrityError as exc:  # a concurrent add won the race
                raise Conflict("slug", f"a client with slug {spec.slug!r} already exists") from exc
        return ClientRecord(id=new_id, slug=spec.slug, name=spec.name, timezone=spec.timezone, active_from=active_from)

    def get_by_slug(self, slug: str) -> ClientRecord:
        with self.engine.connect() as conn:
            row = conn.execute(select(Client).where(Client.slug == slug)).first()
        if row is None:
            raise NotFound("client", f"no client with slug {slug!r}")
        return _record(row)

    def get(self, client_id: int) -> ClientRecord:
        with self.engine.connect() as conn:
            row = conn.execute(select(Client).where(Client.id == client_id)).first()
        if row is None:
            raise NotFound("client", f"no client with id {client_id}")
        return _record(row)

    def extend_active_from(self, client_id: int, day: dt.date) -> None:
        """Move the client's first report date back to ``day`` if it is earlier (imported history)."""
        with self.engine.begin() as conn:
            conn.execute(
                update(Client)
                .where(Client.id == client_id, Client.active_from > day)
                .values(active_from=day, updated_at=dt.datetime.now(UTC))
            )

    def list(self) -> list[ClientRecord]:
        with self.engine.connect() as conn:
            rows = conn.execute(select(Client).order_by(Client.slug)).all()
        return [_record(r) for r in rows]


@dataclass(frozen=True, slots=True)
class ClientWatermark:
    """What the events table holds for one client."""

    client_id: int
    slug: str
    timezone: str
    events: int
    latest_started_at: dt.datetime | None
    ingest_watermark: dt.datetime | None


class CallEventRepository:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def watermarks(self) -> list[ClientWatermark]:
        """Per client: event count, latest call start and newest ingest instant (the watermark)."""
        stats = (
            select(
                CallEvent.client_id,
                func.count().label("events"),
                func.max(CallEvent.started_at).label("latest"),
                func.max(CallEvent.ingested_at).label("watermark"),
            )
            .group_by(CallEvent.client_id)
            .subquery()
        )
        query = (
            select(Client.id, Client.slug, Client.timezone, stats.c.events, stats.c.latest, stats.c.watermark)
            .outerjoin(stats, stats.c.client_id == Client.id)
            .order_by(Client.slug)
        )
        with self.engine.connect() as conn:
            rows = conn.execute(query).all()
        return [
            ClientWatermark(
                client_id=r.id,
                slug=r.slug,
                timezone=r.timezone,
                events=int(r.events or 0),
                latest_started_at=_as_utc(r.latest),
                ingest_watermark=_as_utc(r.watermark),
            )
            for r in rows
        ]

    def count(self, client_id: int) -> int:
        with self.engine.connect() as conn:
            return int(conn.execute(select(func.count()).where(CallEvent.client_id == client_id)).scalar_one())


def _as_utc(value: dt.datetime | str | None) -> dt.datetime | None:
    """Aggregates bypass the column type on SQLite (``max`` returns the stored text)."""
    if value is None:
        return None
    if isinstance(value, str):
        value = dt.datetime.fromisoformat(value)
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)
