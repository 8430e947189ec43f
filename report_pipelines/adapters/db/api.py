"""The HTTP API's tables: keys, the audit of writes, asynchronous extractions. The only SQL about them."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass

from sqlalchemy import Engine, delete, insert, select, update

from report_pipelines.adapters.db.models import ApiAuditRow, ApiExtractionRow, ApiKeyRow, Client


@dataclass(frozen=True, slots=True)
class StoredKey:
    id: int
    prefix: str
    salt: bytes
    digest: bytes
    role: str
    client_id: int | None
    client_slug: str | None
    label: str | None
    created_at: dt.datetime
    created_by: str
    revoked_at: dt.datetime | None


@dataclass(frozen=True, slots=True)
class AuditEntry:
    id: int
    at: dt.datetime
    actor: str
    role: str | None
    client_id: int | None
    action: str
    status: int
    detail: str | None


@dataclass(frozen=True, slots=True)
class Extraction:
    id: str
    key_id: int | None
    client_id: int
    report: str
    period_start: dt.date
    period_end: dt.date
    shape: str
    format: str
    state: str
    days_done: int
    days_total: int
    file_name: str | None
    path: str | None
    rows: int | None
    bytes: int | None
    error: str | None
    created_at: dt.datetime
    finished_at: dt.datetime | None
    expires_at: dt.datetime | None


_KEY_COLUMNS = (ApiKeyRow.id, ApiKeyRow.prefix, ApiKeyRow.salt, ApiKeyRow.hash, ApiKeyRow.role, ApiKeyRow.client_id,
                Client.slug, ApiKeyRow.label, ApiKeyRow.created_at, ApiKeyRow.created_by, ApiKeyRow.revoked_at)


def _key(row) -> StoredKey:
    return StoredKey(*row)


class ApiKeyRepository:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def add(self, *, prefix: str, salt: bytes, digest: bytes, role: str, client_id: int | None, label: str | None,
            created_by: str, now: dt.datetime) -> int:
        with self.engine.begin() as conn:
            return conn.execute(insert(ApiKeyRow).values(
                prefix=prefix, salt=salt, hash=digest, role=role, client_id=client_id, label=label,
                created_by=created_by, created_at=now).returning(ApiKeyRow.id)).scalar_one()

    def by_prefix(self, prefix: str) -> StoredKey | None:
        query = select(*_KEY_COLUMNS).outerjoin(Client, Client.id == ApiKeyRow.client_id).where(ApiKeyRow.prefix == prefix)
        with self.engine.connect() as conn:
            row = conn.execute(query).first()
        return _key(row) if row else None

    def list(self) -> list[StoredKey]:
        query = select(*_KEY_COLUMNS).outerjoin(Client, Client.id == ApiKeyRow.client_id).order_by(ApiKeyRow.id)
        with self.engine.connect() as conn:
            return [_key(row) for row in conn.execute(query)]

    def revoke(self, prefix: str, now: dt.datetime) -> bool:
        """Revoke the key; False when there is no such key or it was already revoked."""
        with self.engine.begin() as conn:
            return conn.execute(update(ApiKeyRow).where(ApiKeyRow.prefix == prefix, ApiKeyRow.revoked_at.is_(None))
                                .values(revoked_at=now)).rowcount == 1


class AuditRepository:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def record(self, *, at: dt.datetime, actor: str, role: str | None, client_id: int | None, action: str,
               status: int, detail: str | None = None) -> None:
        with self.engine.begin() as conn:
            conn.execute(insert(ApiAuditRow).values(at=at, actor=actor[:200], role=role, client_id=client_id,
                                                    action=action[:200], status=status,
                                                    detail=detail[:2000] if detail else None))

    def entries(self, limit: int = 1000) -> list[AuditEntry]:
        query = select(ApiAuditRow.id, ApiAuditRow.at, ApiAuditRow.actor, ApiAuditRow.role, ApiAuditRow.client_id,
                       ApiAuditRow.action, ApiAuditRow.status, ApiAuditRow.detail).order_by(ApiAuditRow.id).limit(limit)
        with self.engine.connect() as conn:
            return [AuditEntry(*row) for row in conn.execute(query)]


_EXTRACTION_COLUMNS = tuple(getattr(ApiExtractionRow, name) for name in Extraction.__slots__)


class ExtractionRepository:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def add(self, values: Mapping[str, object]) -> None:
        with self.engine.begin() as conn:
            conn.execute(insert(ApiExtractionRow).values(**values))

    def get(self, extraction_id: str) -> Extraction | None:
        with self.engine.connect() as conn:
            row = conn.execute(select(*_EXTRACTION_COLUMNS).where(ApiExtractionRow.id == extraction_id)).first()
        return Extraction(*row) if row else None

    def update(self, extraction_id: str, **values: object) -> None:
        with self.engine.begin() as conn:
            conn.execute(update(ApiExtractionRow).where(ApiExtractionRow.id == extraction_id).values(**values))

    def expired(self, now: dt.datetime) -> list[Extraction]:
        query = select(*_EXTRACTION_COLUMNS).where(ApiExtractionRow.expires_at.is_not(None),
                                                   ApiExtractionRow.expires_at <= now)
        with self.engine.connect() as conn:
            return [Extraction(*row) for row in conn.execute(query)]

    def delete(self, extraction_id: str) -> None:
        with self.engine.begin() as conn:
            conn.execute(delete(ApiExtractionRow).where(ApiExtractionRow.id == extraction_id))
