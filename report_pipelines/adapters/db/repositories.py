"""Repositories: the only place that speaks SQL about clients and calls."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from sqlalchemy import Engine, func, select
from sqlalchemy.exc import IntegrityError

from report_pipelines.adapters.db.models import CallEvent, Client
from report_pipelines.domain.clients import ClientRecord, ClientSpec
from report_pipelines.domain.errors import Conflict, NotFound

UTC = dt.timezone.utc


def _record(row: Client) -> ClientRecord:
    return ClientRecord(id=row.id, slug=row.slug, name=row.name, timezone=row.timezone)


class ClientRepository:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def add(self, spec: ClientSpec) -> ClientRecord:
        now = dt.datetime.now(UTC)
        with self.engine.begin() as conn:
            if conn.execute(select(Client.id).where(Client.slug == spec.slug)).first():
                raise Conflict("slug", f"a client with slug {spec.slug!r} already exists")
            try:
                new_id = conn.execute(
                    Client.__table__.insert()
                    .values(slug=spec.slug, name=spec.name, timezone=spec.timezone, created_at=now, updated_at=now)
                    .returning(Client.id)
                ).scalar_one()
            except IntegrityError as exc:  # a concurrent add won the race
                raise Conflict("slug", f"a client with slug {spec.slug!r} already exists") from exc
        return ClientRecord(id=new_id, slug=spec.slug, name=spec.name, timezone=spec.timezone)

    def get_by_slug(self, slug: str) -> ClientRecord:
        with self.engine.connect() as conn:
            row = conn.execute(select(Client).where(Client.slug == slug)).first()
        if row is None:
            raise NotFound("client", f"no client with slug {slug!r}")
        return ClientRecord(id=row.id, slug=row.slug, name=row.name, timezone=row.timezone)

    def list(self) -> list[ClientRecord]:
        with self.engine.connect() as conn:
            rows = conn.execute(select(Client).order_by(Client.slug)).all()
        return [ClientRecord(id=r.id, slug=r.slug, name=r.name, timezone=r.timezone) for r in rows]


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
