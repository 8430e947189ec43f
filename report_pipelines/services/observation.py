"""What the call events table holds right now, per client: the source observation."""

from __future__ import annotations

import datetime as dt
import hashlib
from dataclasses import dataclass

from sqlalchemy import Engine

from report_pipelines.adapters.db.repositories import CallEventRepository, ClientWatermark


@dataclass(frozen=True)
class EventsObservation:
    clients: tuple[ClientWatermark, ...]

    @property
    def events(self) -> int:
        return sum(c.events for c in self.clients)

    @property
    def ingest_watermark(self) -> dt.datetime | None:
        marks = [c.ingest_watermark for c in self.clients if c.ingest_watermark]
        return max(marks) if marks else None

    @property
    def latest_started_at(self) -> dt.datetime | None:
        marks = [c.latest_started_at for c in self.clients if c.latest_started_at]
        return max(marks) if marks else None

    @property
    def data_version(self) -> str:
        """Changes whenever any client gains, loses or re-ingests events."""
        digest = hashlib.sha256()
        for c in sorted(self.clients, key=lambda c: c.client_id):
            mark = c.ingest_watermark.isoformat() if c.ingest_watermark else "-"
            digest.update(f"{c.client_id}:{c.events}:{mark};".encode())
        return digest.hexdigest()[:16]


def observe_events(engine: Engine) -> EventsObservation:
    return EventsObservation(clients=tuple(CallEventRepository(engine).watermarks()))
