"""Infrastructure settings, parsed from the environment in one place, when asked (never at import).

:meth:`Settings.from_env` is the only reader of ``REPORT_PIPELINES_*`` variables, and
:func:`report_pipelines.app.bootstrap` is the only caller of it in the application: every entry
point (CLI, Dagster resources, demo runner, HTTP API, workers) gets its settings, and the pieces
built from them, through the :class:`~report_pipelines.app.App` it returns.

| variable | default | what |
|---|---|---|
| ``REPORT_PIPELINES_DATA_DIR`` | ``./data`` | local folder for the embedded defaults |
| ``REPORT_PIPELINES_DATABASE_URL`` | ``sqlite:///<data dir>/report_pipelines.sqlite3`` | app database |
| ``REPORT_PIPELINES_STORE`` | ``<data dir>/reports`` | Parquet report store: a folder or a URI (``s3://...``) |
| ``REPORT_PIPELINES_S3_ENDPOINT`` | (empty: AWS) | ``http(s)://host:port`` of an S3-compatible server for an ``s3://`` store |
| ``REPORT_PIPELINES_WORKERS`` | ``2`` | worker processes computing client-days in one run |
| ``REPORT_PIPELINES_POOL`` | ``process`` | where a run's batches are computed: ``process`` (local pool) or ``celery`` |
| ``REPORT_PIPELINES_BROKER_URL`` | ``redis://127.0.0.1:6379/0`` | Celery broker and result backend (``POOL=celery``) |
| ``REPORT_PIPELINES_CELERY_QUEUE`` | ``report_pipelines`` | the Celery queue the batches go to (and workers consume) |
| ``REPORT_PIPELINES_WORKER_WAIT_S`` | ``60`` | a run fails when no Celery worker answers for this long |
| ``REPORT_PIPELINES_VISIBILITY_TIMEOUT_S`` | ``3600`` | a batch a lost worker took is re-delivered after this long |
| ``REPORT_PIPELINES_LOCK_TIMEOUT_S`` | ``3600`` | longest wait for another run's client-day (within any deadline) |
| ``REPORT_PIPELINES_EXECUTOR`` | ``in_process`` | Dagster executor: ``in_process`` or ``multiprocess`` |
| ``REPORT_PIPELINES_DEPLOYMENT`` | ``local`` | ``production`` binds every resource field to its variable |
| ``REPORT_PIPELINES_HISTORY_START`` | ``2020-01-01`` | first local date of the report partitions (imported history) |
| ``REPORT_PIPELINES_FILES`` | ``<data dir>/report_files`` | scheduled report files waiting to be sent |
| ``REPORT_PIPELINES_SMTP_HOST`` | (empty: write ``.eml`` files to the outbox) | SMTP server |
| ``REPORT_PIPELINES_SMTP_PORT`` | ``587`` | |
| ``REPORT_PIPELINES_SMTP_USER`` / ``_PASSWORD`` | (empty: no login) | SMTP login |
| ``REPORT_PIPELINES_SMTP_STARTTLS`` | ``true`` | STARTTLS before login |
| ``REPORT_PIPELINES_SMTP_CAFILE`` | (system CAs) | CA bundle for the server's certificate |
| ``REPORT_PIPELINES_OUTBOX`` | ``<data dir>/outbox`` | the local outbox when no SMTP host is set |
| ``REPORT_PIPELINES_MAIL_FROM`` | ``reports@localhost`` | sender address |
| ``REPORT_PIPELINES_MAX_ATTACHMENT_MB`` | ``10`` | larger attachments (after base64) are zipped |
| ``REPORT_PIPELINES_RETENTION_DAYS`` | ``7`` | sent files are deleted after this many days |
| ``REPORT_PIPELINES_MAX_ATTEMPTS`` | ``5`` | sending attempts before a file is failed |
| ``REPORT_PIPELINES_MAX_BUILD_ATTEMPTS`` | ``5`` | build attempts before a scheduled report file is failed |
| ``REPORT_PIPELINES_SMTP_TIMEOUT_S`` | ``30`` | longest wait for one SMTP operation (connect, a reply) |
| ``REPORT_PIPELINES_SEND_DEADLINE_S`` | ``300`` | a send run starts no message after this many seconds |
| ``REPORT_PIPELINES_EXTRACT_DEADLINE_S`` | ``120`` | default deadline of a period request (``extract --deadline``) |
| ``REPORT_PIPELINES_EXTRACT_MAX_DAYS`` | ``366`` | longest period a request may ask for, in local days |
| ``REPORT_PIPELINES_READ_MEMO_MB`` | ``64`` | MB a process keeps of the summaries it read (decoded day tables, presented periods; ``0``: none) |
| ``REPORT_PIPELINES_PRECACHE_WINDOW_DAYS`` | ``28`` | days of the usage log the D-1 plan studies |
| ``REPORT_PIPELINES_PRECACHE_MIN_SHARE`` | ``25`` | % of those days with a D-1 request that make a client ``priority`` |
| ``REPORT_PIPELINES_PRECACHE_MIN_REQUESTS`` | ``3`` | ... and at least this many D-1 requests in the window |
| ``REPORT_PIPELINES_PRECACHE_PERCENTILE`` | ``10`` | low percentile of the first D-1 request's local time: the ready-by time |
| ``REPORT_PIPELINES_PRECACHE_GRACE_MINUTES`` | ``15`` | minutes after a zone's local midnight before its closed day is pre-cached |
| ``REPORT_PIPELINES_PRECACHE_QUIET_HOURS`` | (empty: right after, at a lower run priority) | ``HH:MM-HH:MM`` local: the non-priority clients are pre-cached in these hours |
| ``REPORT_PIPELINES_API_DEADLINE_S`` | ``30`` | longest a ``GET /v1/reports/{report}`` computes before answering 504 (longer work: ``POST /v1/extractions``) |
| ``REPORT_PIPELINES_API_MAX_BODY_KB`` | ``64`` | larger request bodies are refused (413) |
| ``REPORT_PIPELINES_API_RATE_PER_MINUTE`` | ``600`` | requests per key per minute (bursts up to it), then 429 with ``Retry-After`` |
| ``REPORT_PIPELINES_API_CORS_ORIGINS`` | (empty: no cross-origin access) | comma-separated origins allowed by CORS |
| ``REPORT_PIPELINES_API_PUBLIC_TRIALS`` | ``false`` | ``POST /v1/trials`` without a key (public sign-up) |
| ``REPORT_PIPELINES_API_PUBLIC_TRIALS_PER_HOUR`` | ``5`` | public trial sign-ups per client address per hour |
| ``REPORT_PIPELINES_API_EXTRACTION_WORKERS`` | ``2`` | asynchronous extractions running at once in one API process |

Every value is checked when it is read; a bad one is refused naming the variable
(``REPORT_PIPELINES_WORKERS: must be a whole number >= 1, not 'two'``).
"""

from __future__ import annotations

import datetime as dt
import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from report_pipelines.domain.errors import InvalidInput

PREFIX = "REPORT_PIPELINES_"
DATA_DIR_ENV = "REPORT_PIPELINES_DATA_DIR"
DATABASE_URL_ENV = "REPORT_PIPELINES_DATABASE_URL"
STORE_ENV = "REPORT_PIPELINES_STORE"
WORKERS_ENV = "REPORT_PIPELINES_WORKERS"

EXECUTORS = ("in_process", "multiprocess")
POOLS = ("process", "celery")
DEPLOYMENTS = ("local", "production")


def normalise_database_url(url: str) -> str:
    """Make a plain ``postgresql://`` URL explicit about its driver.

    SQLAlchemy 2.1 maps ``postgresql://`` to psycopg 3, which we do not install; we use psycopg2
    (the driver dagster-postgres uses too), so say so.
    """
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg2://" + url[len(prefix):]
    return url


class _Reader:
    """Reads ``REPORT_PIPELINES_<name>`` values from one mapping, each refusal naming its variable."""

    def __init__(self, env: Mapping[str, str]) -> None:
        self.env = env

    def text(self, name: str) -> str | None:
        """The stripped value, or None when unset or blank (blank means: the default)."""
        value = self.env.get(PREFIX + name)
        if value is None or not value.strip():
            return None
        if any(ord(ch) < 32 for ch in value.strip()):
            raise InvalidInput(PREFIX + name, "control characters are not allowed")
        return value.strip()

    def whole(self, name: str, default: int, minimum: int, maximum: int | None = None) -> int:
        text = self.text(name)
        if text is None:
            return default
        if not re.fullmatch(r"\d{1,9}", text) or int(text) < minimum or (maximum is not None and int(text) > maximum):
            bounds = f">= {minimum}" if maximum is None else f"from {minimum} to {maximum}"
            raise InvalidInput(PREFIX + name, f"must be a whole number {bounds}, not {text[:40]!r}")
        return int(text)

    def seconds(self, name: str, default: float, minimum: float) -> float:
        text = self.text(name)
        if text is None:
            return default
        try:
            value = float(text)
        except ValueError:
            value = math.nan
        if not math.isfinite(value) or value < minimum:
            raise InvalidInput(PREFIX + name, f"must be a number of seconds >= {minimum:g}, not {text[:40]!r}")
        return value

    def boolean(self, name: str, default: bool) -> bool:
        text = self.text(name)
        if text is None:
            return default
        lowered = text.lower()
        if lowered in {"1", "true", "yes", "on"}:
            return True
        if lowered in {"0", "false", "no", "off"}:
            return False
        raise InvalidInput(PREFIX + name, f"must be true or false, not {text[:40]!r}")

    def choice(self, name: str, default: str, choices: tuple[str, ...]) -> str:
        text = self.text(name)
        if text is None:
            return default
        if text not in choices:
            raise InvalidInput(PREFIX + name, f"must be one of {', '.join(choices)}, not {text[:40]!r}")
        return text

    def date(self, name: str, default: dt.date) -> dt.date:
        text = self.text(name)
        if text is None:
            return default
        try:
            value = dt.date.fromisoformat(text)
        except ValueError:
            raise InvalidInput(PREFIX + name, f"must be a date (YYYY-MM-DD), not {text[:40]!r}") from None
        if not dt.date(1990, 1, 1) <= value <= dt.date(2100, 1, 1):
            raise InvalidInput(PREFIX + name, f"must be a date between 1990 and 2100, not {text[:40]!r}")
        return value

    def folder(self, name: str) -> Path | None:
        """A local folder (``~`` expanded, made absolute); refused if it exists and is not a folder."""
        text = self.text(name)
        if text is None:
            return None
        if "://" in text:
            raise InvalidInput(PREFIX + name, f"must be a local folder, not a URI ({text[:80]!r})")
        path = Path(text).expanduser().resolve()
        if path.exists() and not path.is_dir():
            raise InvalidInput(PREFIX + name, f"{str(path)[:200]!r} exists and is not a folder")
        return path

    def file(self, name: str) -> str | None:
        text = self.text(name)
        if text is None:
            return None
        path = Path(text).expanduser().resolve()
        if not path.is_file():
            raise InvalidInput(PREFIX + name, f"{str(path)[:200]!r} is not a readable file")
        return str(path)


@dataclass(frozen=True)
class MailSettings:
    mail_from: str = "reports@localhost"
    smtp_host: str | None = None
    smtp_port: int = 587
    smtp_user: str | None = None
    smtp_password: str | None = field(default=None, repr=False)
    smtp_starttls: bool = True
    smtp_cafile: str | None = None
    outbox_dir: Path | None = None
    max_attachment_bytes: int = 10 * 1024 * 1024
    max_attempts: int = 5
    smtp_timeout_s: int = 30
    send_deadline_s: int = 300


@dataclass(frozen=True)
class PeriodSettings:
    """Period requests and the D-1 pre-cache plan (see the table above for each value's meaning)."""

    deadline_s: float = 120.0
    max_days: int = 366
    memo_mb: int = 64
    window_days: int = 28
    min_share_percent: int = 25
    min_requests: int = 3
    percentile: int = 10
    grace_minutes: int = 15
    quiet_hours: str | None = None  # "HH:MM-HH:MM" local, or None: right after the priority run

    def __post_init__(self) -> None:
        if self.quiet_hours is not None:
            from report_pipelines.domain.precache import parse_quiet_hours

            parse_quiet_hours(self.quiet_hours, PREFIX + "PRECACHE_QUIET_HOURS")


@dataclass(frozen=True)
class ApiSettings:
    """The HTTP API's limits (see the table above)."""

    deadline_s: float = 30.0
    max_body_bytes: int = 64 * 1024
    rate_per_minute: int = 600
    cors_origins: tuple[str, ...] = ()
    public_trials: bool = False
    public_trials_per_hour: int = 5
    extraction_workers: int = 2


def _origins(text: str | None) -> tuple[str, ...]:
    origins = tuple(o.strip().rstrip("/") for o in (text or "").split(",") if o.strip())
    for origin in origins:
        if origin != "*" and not re.fullmatch(r"https?://[A-Za-z0-9.-]+(:\d{1,5})?", origin):
            raise InvalidInput(PREFIX + "API_CORS_ORIGINS", f"{origin[:80]!r} is not an origin such as https://app.example.com")
    return origins


@dataclass(frozen=True)
class PoolSettings:
    """Where a run's zone-day batches are computed (see :mod:`report_pipelines.adapters.celery_pool`)."""

    kind: str = "process"  # "process": the local pool; "celery": Celery workers, on any host
    broker_url: str = "redis://127.0.0.1:6379/0"
    queue: str = "report_pipelines"
    worker_wait_s: float = 60.0
    visibility_timeout_s: float = 3600.0


@dataclass(frozen=True)
class Settings:
    """What the application is configured with. Frozen and picklable: worker processes get a copy."""

    data_dir: Path
    database_url: str
    store_root: str
    workers: int = 2
    store_endpoint: str | None = None
    files_root: Path | None = None
    retention_days: int = 7
    max_build_attempts: int = 5
    mail: MailSettings = MailSettings()
    lock_timeout_s: float = 3600.0
    executor: str = "in_process"
    deployment: str = "local"
    service_level_seconds: int = 20
    history_start: dt.date = dt.date(2020, 1, 1)
    periods: PeriodSettings = PeriodSettings()
    api: ApiSettings = ApiSettings()
    pool: PoolSettings = PoolSettings()

    @property
    def files_dir(self) -> Path:
        return self.files_root or self.data_dir / "report_files"

    @property
    def outbox_dir(self) -> Path:
        return self.mail.outbox_dir or self.data_dir / "outbox"

    @property
    def lock_dir(self) -> Path:
        """Client-day file locks when the app database is SQLite (one machine)."""
        return self.data_dir / "locks"

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Parse ``environ`` (default: the process environment); a bad value is refused naming its variable."""
        read = _Reader(os.environ if environ is None else environ)
        data_dir = read.folder("DATA_DIR") or Path("data").resolve()
        url = read.text("DATABASE_URL") or f"sqlite:///{data_dir / 'report_pipelines.sqlite3'}"
        if "://" not in url:
            raise InvalidInput(DATABASE_URL_ENV, f"must be a database URL such as postgresql://user@host/db, not {url[:80]!r}")
        mail = MailSettings(
            mail_from=read.text("MAIL_FROM") or "reports@localhost",
            smtp_host=read.text("SMTP_HOST"),
            smtp_port=read.whole("SMTP_PORT", 587, 1, 65535),
            smtp_user=read.text("SMTP_USER"),
            smtp_password=read.text("SMTP_PASSWORD"),
            smtp_starttls=read.boolean("SMTP_STARTTLS", True),
            smtp_cafile=read.file("SMTP_CAFILE"),
            outbox_dir=read.folder("OUTBOX"),
            max_attachment_bytes=read.whole("MAX_ATTACHMENT_MB", 10, 1, 1024) * 1024 * 1024,
            max_attempts=read.whole("MAX_ATTEMPTS", 5, 1, 100),
            smtp_timeout_s=read.whole("SMTP_TIMEOUT_S", 30, 1, 3600),
            send_deadline_s=read.whole("SEND_DEADLINE_S", 300, 1, 86400),
        )
        return cls(
            data_dir=data_dir,
            database_url=normalise_database_url(url),
            store_root=read.text("STORE") or str(data_dir / "reports"),
            store_endpoint=_endpoint(read.text("S3_ENDPOINT")),
            workers=read.whole("WORKERS", 2, 1, 256),
            files_root=read.folder("FILES"),
            retention_days=read.whole("RETENTION_DAYS", 7, 0, 3650),
            max_build_attempts=read.whole("MAX_BUILD_ATTEMPTS", 5, 1, 100),
            mail=mail,
            lock_timeout_s=read.seconds("LOCK_TIMEOUT_S", 3600.0, 0.0),
            executor=read.choice("EXECUTOR", "in_process", EXECUTORS),
            deployment=read.choice("DEPLOYMENT", "local", DEPLOYMENTS),
            history_start=read.date("HISTORY_START", dt.date(2020, 1, 1)),
            periods=PeriodSettings(
                deadline_s=read.seconds("EXTRACT_DEADLINE_S", 120.0, 1.0),
                max_days=read.whole("EXTRACT_MAX_DAYS", 366, 1, 3660),
                memo_mb=read.whole("READ_MEMO_MB", 64, 0, 65_536),
                window_days=read.whole("PRECACHE_WINDOW_DAYS", 28, 1, 366),
                min_share_percent=read.whole("PRECACHE_MIN_SHARE", 25, 0, 100),
                min_requests=read.whole("PRECACHE_MIN_REQUESTS", 3, 1, 10_000),
                percentile=read.whole("PRECACHE_PERCENTILE", 10, 0, 100),
                grace_minutes=read.whole("PRECACHE_GRACE_MINUTES", 15, 0, 720),
                quiet_hours=read.text("PRECACHE_QUIET_HOURS"),
            ),
            api=ApiSettings(
                deadline_s=read.seconds("API_DEADLINE_S", 30.0, 1.0),
                max_body_bytes=read.whole("API_MAX_BODY_KB", 64, 1, 100_000) * 1024,
                rate_per_minute=read.whole("API_RATE_PER_MINUTE", 600, 1, 10_000_000),
                cors_origins=_origins(read.text("API_CORS_ORIGINS")),
                public_trials=read.boolean("API_PUBLIC_TRIALS", False),
                public_trials_per_hour=read.whole("API_PUBLIC_TRIALS_PER_HOUR", 5, 1, 100_000),
                extraction_workers=read.whole("API_EXTRACTION_WORKERS", 2, 1, 64),
            ),
            pool=_pool_settings(read),
        )


def _pool_settings(read: _Reader) -> PoolSettings:
    broker = read.text("BROKER_URL") or PoolSettings.broker_url
    if not re.fullmatch(r"(redis|rediss|amqp|amqps|pyamqp)://\S*", broker):
        raise InvalidInput(PREFIX + "BROKER_URL", f"must be a redis:// or amqp:// URL, not {broker[:80]!r}")
    queue = read.text("CELERY_QUEUE") or PoolSettings.queue
    if not re.fullmatch(r"[A-Za-z0-9_.:-]{1,100}", queue):
        raise InvalidInput(PREFIX + "CELERY_QUEUE", f"must be letters, digits and _.:- only, not {queue[:40]!r}")
    return PoolSettings(
        kind=read.choice("POOL", "process", POOLS),
        broker_url=broker,
        queue=queue,
        worker_wait_s=read.seconds("WORKER_WAIT_S", 60.0, 1.0),
        visibility_timeout_s=read.seconds("VISIBILITY_TIMEOUT_S", 3600.0, 1.0),
    )

def _endpoint(value: str | None) -> str | None:
    if value and not re.fullmatch(r"https?://[^/\s]+/?", value):
        raise InvalidInput(PREFIX + "S3_ENDPOINT", f"must be http://host:port or https://host[:port], not {value[:80]!r}")
    return value.rstrip("/") if value else None
