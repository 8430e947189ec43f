"""Resources: infrastructure behind small interfaces, configured in one place (definitions.py)."""

from __future__ import annotations

from functools import lru_cache

import dagster as dg
from pydantic import Field
from sqlalchemy import Engine

from report_pipelines.adapters.db.engine import make_engine
from report_pipelines.settings import Settings


@lru_cache(maxsize=8)
def _engine_for(url: str) -> Engine:
    return make_engine(url)


class AppDatabase(dg.ConfigurableResource):
    """The app database (clients, call events, cache manifest...).

    ``url`` defaults to ``REPORT_PIPELINES_DATABASE_URL``, else the SQLite file under the data folder.
    One engine (and connection pool) per process and URL.
    """

    url: str | None = Field(default=None, description="SQLAlchemy URL; default from REPORT_PIPELINES_DATABASE_URL")

    def resolved_url(self) -> str:
        return self.url or Settings.from_env().database_url

    def engine(self) -> Engine:
        return _engine_for(self.resolved_url())
