"""Infrastructure settings, read from the environment in one place, when asked (never at import).

| variable | default | what |
|---|---|---|
| ``REPORT_PIPELINES_DATA_DIR`` | ``./data`` | local folder for the embedded defaults |
| ``REPORT_PIPELINES_DATABASE_URL`` | ``sqlite:///<data dir>/report_pipelines.sqlite3`` | app database |
| ``REPORT_PIPELINES_STORE`` | ``<data dir>/reports`` | Parquet report store: a folder or a URI (``s3://...``) |
| ``REPORT_PIPELINES_WORKERS`` | ``2`` | worker processes computing client-days in one run |
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
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from report_pipelines.domain.errors import InvalidInput

PREFIX = "REPORT_PIPELINES_"
DATA_DIR_ENV = "REPORT_PIPELINES_DATA_DIR"
DATABASE_URL_ENV = "REPORT_PIPELINES_DATABASE_URL"
STORE_ENV = "REPORT_PIPELINES_STORE"
WORKERS_ENV = "REPORT_PIPELINES_WORKERS"


def normalise_database_url(url: str) -> str:
    """Make a plain ``postgresql://`` URL explicit about its driver.

    SQLAlchemy 2.1 maps ``postgresql://`` to psycopg 3, which we do not install; we use psycopg2
    (the driver dagster-postgres uses too), so say so.
    """
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg2://" + url[len(prefix):]
    return url


def _int(env: Mapping[str, str], name: str, default: int, minimum: int) -> int:
    text = (env.get(PREFIX + name) or str(default)).strip()
    if not text.isdigit() or int(text) < minimum:
        raise InvalidInput(PREFIX + name, f"must be a whole number >= {minimum}, not {text!r}")
    return int(text)


def _bool(env: Mapping[str, str], name: str, default: bool) -> bool:
    text = (env.get(PREFIX + name) or "").strip().lower()
    if not text:
        return default
    if text in {"1", "true", "yes", "on"}:
        return True
    if text in {"0", "false", "no", "off"}:
        return False
    raise InvalidInput(PREFIX + name, f"must be true or false, not {text!r}")


@dataclass(frozen=True)
class MailSettings:
    mail_from: str = "reports@localhost"
    smtp_host: str | None = None
    smtp_port: int = 587
    smtp_user: str | None = None
    smtp_password: str | None = None
    smtp_starttls: bool = True
    smtp_cafile: str | None = None
    outbox_dir: Path | None = None
    max_attachment_bytes: int = 10 * 1024 * 1024
    max_attempts: int = 5
    smtp_timeout_s: int = 30
    send_deadline_s: int = 300


@dataclass(frozen=True)
class Settings:
    data_dir: Path
    database_url: str
    store_root: str
    workers: int = 2
    files_root: Path | None = None
    retention_days: int = 7
    max_build_attempts: int = 5
    mail: MailSettings = MailSettings()

    @property
    def files_dir(self) -> Path:
        return self.files_root or self.data_dir / "report_files"

    @property
    def outbox_dir(self) -> Path:
        return self.mail.outbox_dir or self.data_dir / "outbox"

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> "Settings":
        env = os.environ if environ is None else environ
        data_dir = Path(env.get(DATA_DIR_ENV) or "data").expanduser().resolve()
        url = env.get(DATABASE_URL_ENV) or f"sqlite:///{data_dir / 'report_pipelines.sqlite3'}"
        files = env.get(PREFIX + "FILES")
        outbox = env.get(PREFIX + "OUTBOX")
        mail = MailSettings(
            mail_from=env.get(PREFIX + "MAIL_FROM") or "reports@localhost",
            smtp_host=env.get(PREFIX + "SMTP_HOST") or None,
            smtp_port=_int(env, "SMTP_PORT", 587, 1),
            smtp_user=env.get(PREFIX + "SMTP_USER") or None,
            smtp_password=env.get(PREFIX + "SMTP_PASSWORD") or None,
            smtp_starttls=_bool(env, "SMTP_STARTTLS", True),
            smtp_cafile=env.get(PREFIX + "SMTP_CAFILE") or None,
            outbox_dir=Path(outbox).expanduser().resolve() if outbox else None,
            max_attachment_bytes=_int(env, "MAX_ATTACHMENT_MB", 10, 1) * 1024 * 1024,
            max_attempts=_int(env, "MAX_ATTEMPTS", 5, 1),
            smtp_timeout_s=_int(env, "SMTP_TIMEOUT_S", 30, 1),
            send_deadline_s=_int(env, "SEND_DEADLINE_S", 300, 1),
        )
        return cls(
            data_dir=data_dir,
            database_url=normalise_database_url(url),
            store_root=env.get(STORE_ENV) or str(data_dir / "reports"),
            workers=_int(env, "WORKERS", 2, 1),
            files_root=Path(files).expanduser().resolve() if files else None,
            retention_days=_int(env, "RETENTION_DAYS", 7, 0),
            max_build_attempts=_int(env, "MAX_BUILD_ATTEMPTS", 5, 1),
            mail=mail,
        )
