"""Resources: infrastructure behind small interfaces, configured in one place (definitions.py)."""

from __future__ import annotations

import dagster as dg
from pydantic import Field
from sqlalchemy import Engine

from report_pipelines.adapters.db.engine import engine_for
from report_pipelines.adapters.report_store import ParquetReportStore
from report_pipelines.settings import Settings


class AppDatabase(dg.ConfigurableResource):
    """The app database (clients, call events, cache manifest...).

    ``url`` defaults to ``REPORT_PIPELINES_DATABASE_URL``, else the SQLite file under the data folder.
    One engine (and connection pool) per process and URL.
    """

    url: str | None = Field(default=None, description="SQLAlchemy URL; default from REPORT_PIPELINES_DATABASE_URL")

    def resolved_url(self) -> str:
        return self.url or Settings.from_env().database_url

    def engine(self) -> Engine:
        return engine_for(self.resolved_url())


class ReportStore(dg.ConfigurableResource):
    """The Parquet report store (a folder, or a URI such as ``s3://bucket/prefix``).

    ``root`` defaults to ``REPORT_PIPELINES_STORE``, else ``<data dir>/reports``.
    """

    root: str | None = Field(default=None, description="Folder or URI; default from REPORT_PIPELINES_STORE")

    def resolved_root(self) -> str:
        return self.root or Settings.from_env().store_root

    def store(self) -> ParquetReportStore:
        return ParquetReportStore(self.resolved_root())
