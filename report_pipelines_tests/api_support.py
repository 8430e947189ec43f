"""A real API server for the tests: uvicorn on a free loopback port, in a thread, over one App."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path

import httpx
from sqlalchemy import Engine

from report_pipelines.api.server import serving_in_thread
from report_pipelines.app import App, FixedClock
from report_pipelines.services.api_keys import create_key
from report_pipelines_tests.extract_support import UTC, Seeded, seed

#: 15:00 UTC on 11 March 2024 (the extract tests' instant): the 8th..10th are closed everywhere seeded.
NOW = dt.datetime(2024, 3, 11, 15, tzinfo=UTC)


def running(app: App, api=None, log_level: str = "warning"):
    """Serve ``create_api(app)`` on 127.0.0.1 at a free port; yields the base URL; stops on exit."""
    return serving_in_thread(app, api, log_level=log_level)


@dataclass
class Tenants:
    seeded: Seeded
    app: App
    keys: dict[str, str]  # client slug, or "operator" / "sales" -> token

    def client(self, base_url: str, who: str) -> httpx.Client:
        return httpx.Client(base_url=base_url, headers={"Authorization": f"Bearer {self.keys[who]}"}, timeout=60)


def tenants(engine: Engine, tmp_path: Path, *, now: dt.datetime = NOW, **api) -> Tenants:
    """The seeded platform (three clients in three zones), an App at ``now``, and a key for each client
    and each staff role. ``api``: ApiSettings fields to change."""
    from dataclasses import replace

    seeded = seed(engine, tmp_path)
    settings = seeded.settings
    if api:
        settings = replace(settings, api=replace(settings.api, **api))
    app = App(settings, clock=FixedClock(now))
    keys = {c.slug: create_key(app, client=c.slug).token for c in seeded.all_clients}
    keys.update({role: create_key(app, role=role).token for role in ("operator", "sales")})
    return Tenants(seeded, app, keys)
