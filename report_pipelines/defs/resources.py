"""Resources: infrastructure behind small interfaces, configured in one place (definitions.py)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import dagster as dg
from pydantic import Field
from sqlalchemy import Engine

from report_pipelines.adapters.db.engine import engine_for
from report_pipelines.adapters.mailer import Mailer, mailer_from_settings
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


class MailerResource(dg.ConfigurableResource):
    """Where e-mail goes: the SMTP server when ``smtp_host`` is set (STARTTLS and login when
    configured), else ``.eml`` files in the local outbox. Defaults come from ``REPORT_PIPELINES_SMTP_*``
    and ``REPORT_PIPELINES_OUTBOX``; secrets only through the environment (``dg.EnvVar``)."""

    smtp_host: str | None = Field(default=None, description="SMTP host; default REPORT_PIPELINES_SMTP_HOST")
    smtp_port: int | None = Field(default=None, description="default REPORT_PIPELINES_SMTP_PORT or 587")
    smtp_starttls: bool | None = Field(default=None, description="default REPORT_PIPELINES_SMTP_STARTTLS or true")
    outbox_dir: str | None = Field(default=None, description="default REPORT_PIPELINES_OUTBOX or <data>/outbox")

    def mailer(self) -> Mailer:
        settings = Settings.from_env()
        mail = replace(
            settings.mail,
            smtp_host=self.smtp_host or settings.mail.smtp_host,
            smtp_port=self.smtp_port or settings.mail.smtp_port,
            smtp_starttls=settings.mail.smtp_starttls if self.smtp_starttls is None else self.smtp_starttls,
            outbox_dir=Path(self.outbox_dir) if self.outbox_dir else settings.mail.outbox_dir,
        )
        return mailer_from_settings(replace(settings, mail=mail))
