"""Shared set-up for the extract, reading and Dagster report tests: a seeded database and settings."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
from sqlalchemy import Engine

from report_pipelines.adapters.db.bulk import CALL_EVENT_SCHEMA
from report_pipelines.adapters.sources.synthetic import GeneratorConfig
from report_pipelines.app import App
from report_pipelines.domain.clients import ClientRecord
from report_pipelines.services.clients import list_clients
from report_pipelines.services.demo import seed_demo
from report_pipelines.settings import Settings

UTC = dt.UTC
#: When the test platforms are seeded (created_at stamps; the licences start on the first seeded day).
SEEDED_AT = dt.datetime(2024, 3, 1, tzinfo=UTC)

#: Four local days around the US spring-forward (2024-03-10) for three clients in three zones.
SMALL = GeneratorConfig(start=dt.date(2024, 3, 8), days=4, clients=3, largest_daily_calls=600,
                        smallest_daily_calls=40, seed=31,
                        zones=("America/New_York", "Europe/Lisbon", "Australia/Sydney"))


def url_of(engine: Engine) -> str:
    return engine.url.render_as_string(hide_password=False)


@dataclass
class Seeded:
    engine: Engine
    settings: Settings
    clients: dict[str, ClientRecord]  # by time zone (one client per zone in SMALL)
    all_clients: list[ClientRecord]

    @property
    def app(self) -> App:
        """An App on the seeded database (its own pool; the real clock)."""
        if not hasattr(self, "_app"):
            self._app = App(self.settings)
        return self._app


def seed(engine: Engine, tmp_path: Path, config: GeneratorConfig = SMALL) -> Seeded:
    seed_demo(engine, config, now=SEEDED_AT)
    settings = Settings(data_dir=tmp_path, database_url=url_of(engine), store_root=str(tmp_path / "reports"), workers=2)
    clients = list_clients(engine)
    return Seeded(engine, settings, {c.timezone: c for c in clients}, clients)


def late_call(client_id: int, call_id: str, started: dt.datetime, ingested: dt.datetime, *,
              answered: bool = True, seconds: int = 200) -> pa.Table:
    """One inbound call as a one-row table for ``load_call_events`` (answered after 12 s, or abandoned)."""
    return pa.Table.from_pylist([{
        "client_id": client_id, "pbx_call_id": call_id, "direction": "inbound", "queue": "support",
        "agent": "1001" if answered else None, "caller": "+15550100", "callee": "+15550199", "started_at": started,
        "answered_at": started + dt.timedelta(seconds=min(12, seconds)) if answered else None,
        "ended_at": started + dt.timedelta(seconds=seconds),
        "disposition": "ANSWERED" if answered else "ABANDONED", "ingested_at": ingested,
    }], schema=CALL_EVENT_SCHEMA)
