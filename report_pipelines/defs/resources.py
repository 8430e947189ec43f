"""The one Dagster resource, ``app``: the application's composition root, configured in one place.

:class:`AppResource` hands every asset, op and sensor the :class:`~report_pipelines.app.App` (engine,
report store, mailer, locks, clock), built once per process and configuration. Its fields stand for
the ``REPORT_PIPELINES_*`` variables of the same meaning and go through the same parsing; an empty
field means "what the environment says". :func:`app_resource` binds them for a deployment:

* ``local`` (the embedded default): nothing bound; the environment (or its defaults) decides;
* ``production``: every infrastructure field bound with ``dg.EnvVar``, so Dagster resolves the
  variables when a run starts, shows which ones the code location consumes, never displays secrets,
  and fails a run loudly when one is missing.
"""

from __future__ import annotations

import datetime as dt
from functools import lru_cache

import dagster as dg
from pydantic import Field

from report_pipelines.app import App, Clock, FixedClock, app_for, load_settings, system_clock
from report_pipelines.settings import PREFIX, Settings

#: Resource field -> the variable it stands for.
FIELDS = {
    "data_dir": "DATA_DIR", "database_url": "DATABASE_URL", "store": "STORE", "s3_endpoint": "S3_ENDPOINT", "workers": "WORKERS",
    "lock_timeout_s": "LOCK_TIMEOUT_S", "files": "FILES", "outbox": "OUTBOX", "mail_from": "MAIL_FROM",
    "smtp_host": "SMTP_HOST", "smtp_port": "SMTP_PORT", "smtp_user": "SMTP_USER", "smtp_password": "SMTP_PASSWORD",
    "smtp_starttls": "SMTP_STARTTLS", "smtp_cafile": "SMTP_CAFILE", "max_attempts": "MAX_ATTEMPTS",
    "retention_days": "RETENTION_DAYS", "history_start": "HISTORY_START",
    # period requests and the D-1 plan
    "extract_deadline_s": "EXTRACT_DEADLINE_S", "extract_max_days": "EXTRACT_MAX_DAYS",
    "precache_window_days": "PRECACHE_WINDOW_DAYS", "precache_min_share": "PRECACHE_MIN_SHARE",
    "precache_min_requests": "PRECACHE_MIN_REQUESTS", "precache_percentile": "PRECACHE_PERCENTILE",
    "precache_grace_minutes": "PRECACHE_GRACE_MINUTES", "precache_quiet_hours": "PRECACHE_QUIET_HOURS",
    # where the batches are computed (the local pool or Celery workers)
    "pool": "POOL", "broker_url": "BROKER_URL", "celery_queue": "CELERY_QUEUE", "worker_wait_s": "WORKER_WAIT_S",
    "visibility_timeout_s": "VISIBILITY_TIMEOUT_S",
}


@lru_cache(maxsize=64)
def _fixed(instant: str) -> FixedClock:
    try:
        parsed = dt.datetime.fromisoformat(instant)
    except ValueError:
        raise dg.DagsterInvariantViolationError(f"app.now: {instant!r} is not an ISO 8601 instant") from None
    return FixedClock(parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC))


class AppResource(dg.ConfigurableResource):
    """The application (database, report store, mailer, locks, clock); fields override the environment."""

    data_dir: str | None = Field(default=None, description="REPORT_PIPELINES_DATA_DIR")
    database_url: str | None = Field(default=None, description="REPORT_PIPELINES_DATABASE_URL")
    store: str | None = Field(default=None, description="REPORT_PIPELINES_STORE: a folder or a URI")
    s3_endpoint: str | None = Field(default=None, description="REPORT_PIPELINES_S3_ENDPOINT (S3-compatible server)")
    workers: str | None = Field(default=None, description="REPORT_PIPELINES_WORKERS")
    lock_timeout_s: str | None = Field(default=None, description="REPORT_PIPELINES_LOCK_TIMEOUT_S")
    files: str | None = Field(default=None, description="REPORT_PIPELINES_FILES")
    outbox: str | None = Field(default=None, description="REPORT_PIPELINES_OUTBOX")
    mail_from: str | None = Field(default=None, description="REPORT_PIPELINES_MAIL_FROM")
    smtp_host: str | None = Field(default=None, description="REPORT_PIPELINES_SMTP_HOST")
    smtp_port: str | None = Field(default=None, description="REPORT_PIPELINES_SMTP_PORT")
    smtp_user: str | None = Field(default=None, description="REPORT_PIPELINES_SMTP_USER")
    smtp_password: str | None = Field(default=None, description="REPORT_PIPELINES_SMTP_PASSWORD (an EnvVar)")
    smtp_starttls: str | None = Field(default=None, description="REPORT_PIPELINES_SMTP_STARTTLS")
    smtp_cafile: str | None = Field(default=None, description="REPORT_PIPELINES_SMTP_CAFILE")
    max_attempts: str | None = Field(default=None, description="REPORT_PIPELINES_MAX_ATTEMPTS")
    retention_days: str | None = Field(default=None, description="REPORT_PIPELINES_RETENTION_DAYS")
    history_start: str | None = Field(default=None, description="REPORT_PIPELINES_HISTORY_START (partitions' first date)")
    extract_deadline_s: str | None = Field(default=None, description="REPORT_PIPELINES_EXTRACT_DEADLINE_S")
    extract_max_days: str | None = Field(default=None, description="REPORT_PIPELINES_EXTRACT_MAX_DAYS")
    precache_window_days: str | None = Field(default=None, description="REPORT_PIPELINES_PRECACHE_WINDOW_DAYS")
    precache_min_share: str | None = Field(default=None, description="REPORT_PIPELINES_PRECACHE_MIN_SHARE (%)")
    precache_min_requests: str | None = Field(default=None, description="REPORT_PIPELINES_PRECACHE_MIN_REQUESTS")
    precache_percentile: str | None = Field(default=None, description="REPORT_PIPELINES_PRECACHE_PERCENTILE")
    precache_grace_minutes: str | None = Field(default=None, description="REPORT_PIPELINES_PRECACHE_GRACE_MINUTES")
    precache_quiet_hours: str | None = Field(default=None, description="REPORT_PIPELINES_PRECACHE_QUIET_HOURS")
    pool: str | None = Field(default=None, description="REPORT_PIPELINES_POOL: process or celery")
    broker_url: str | None = Field(default=None, description="REPORT_PIPELINES_BROKER_URL (POOL=celery)")
    celery_queue: str | None = Field(default=None, description="REPORT_PIPELINES_CELERY_QUEUE")
    worker_wait_s: str | None = Field(default=None, description="REPORT_PIPELINES_WORKER_WAIT_S")
    visibility_timeout_s: str | None = Field(default=None, description="REPORT_PIPELINES_VISIBILITY_TIMEOUT_S")
    now: str | None = Field(default=None, description="Pin the clock to this instant (tests, replays); empty = real")

    def overrides(self) -> dict[str, str]:
        return {PREFIX + variable: str(getattr(self, name)) for name, variable in FIELDS.items()
                if getattr(self, name) not in (None, "")}

    def clock(self) -> Clock:
        return _fixed(self.now) if self.now else system_clock

    def settings(self) -> Settings:
        return _settings(tuple(sorted(self.overrides().items())))

    def app(self) -> App:
        return app_for(self.settings(), self.clock())

    @classmethod
    def for_settings(cls, settings: Settings, now: dt.datetime | None = None) -> AppResource:
        """The resource that stands for ``settings`` (tests, the demo runner), optionally at a fixed instant."""
        mail = settings.mail
        values = {
            "data_dir": str(settings.data_dir), "database_url": settings.database_url, "store": settings.store_root,
            "s3_endpoint": settings.store_endpoint, "workers": str(settings.workers), "lock_timeout_s": repr(settings.lock_timeout_s),
            "files": str(settings.files_root) if settings.files_root else None,
            "outbox": str(mail.outbox_dir) if mail.outbox_dir else None, "mail_from": mail.mail_from,
            "smtp_host": mail.smtp_host, "smtp_port": str(mail.smtp_port), "smtp_user": mail.smtp_user,
            "smtp_password": mail.smtp_password, "smtp_starttls": str(mail.smtp_starttls).lower(),
            "smtp_cafile": mail.smtp_cafile, "max_attempts": str(mail.max_attempts),
            "retention_days": str(settings.retention_days), "history_start": settings.history_start.isoformat(),
            **_period_values(settings), **_pool_values(settings),
            "now": now.isoformat() if now else None,
        }
        return cls(**{k: v for k, v in values.items() if v is not None})


def _period_values(settings: Settings) -> dict[str, str | None]:
    p = settings.periods
    return {"extract_deadline_s": repr(p.deadline_s), "extract_max_days": str(p.max_days),
            "precache_window_days": str(p.window_days), "precache_min_share": str(p.min_share_percent),
            "precache_min_requests": str(p.min_requests), "precache_percentile": str(p.percentile),
            "precache_grace_minutes": str(p.grace_minutes), "precache_quiet_hours": p.quiet_hours}


def _pool_values(settings: Settings) -> dict[str, str]:
    p = settings.pool
    return {"pool": p.kind, "broker_url": p.broker_url, "celery_queue": p.queue,
            "worker_wait_s": repr(p.worker_wait_s), "visibility_timeout_s": repr(p.visibility_timeout_s)}


def _settings(overrides: tuple[tuple[str, str], ...]) -> Settings:
    # Parsed on every call (cheap): equal settings give the same App, and a changed environment is seen.
    return load_settings(dict(overrides))


def app_resource(deployment: str) -> AppResource:
    """The ``app`` resource of a deployment (see the module docstring)."""
    if deployment == "production":
        return AppResource(**{name: dg.EnvVar(PREFIX + variable) for name, variable in FIELDS.items()
                              if name in {"database_url", "store", "smtp_host", "smtp_port", "smtp_user",
                                          "smtp_password", "mail_from"}})
    return AppResource()
