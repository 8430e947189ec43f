"""Infrastructure settings, read from the environment in one place, when asked (never at import).

| variable | default | what |
|---|---|---|
| ``REPORT_PIPELINES_DATA_DIR`` | ``./data`` | local folder for the embedded defaults |
| ``REPORT_PIPELINES_DATABASE_URL`` | ``sqlite:///<data dir>/report_pipelines.sqlite3`` | app database |
| ``REPORT_PIPELINES_STORE`` | ``<data dir>/reports`` | Parquet report store: a folder or a URI (``s3://...``) |
| ``REPORT_PIPELINES_WORKERS`` | ``2`` | worker processes computing client-days in one run |
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

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


@dataclass(frozen=True)
class Settings:
    data_dir: Path
    database_url: str
    store_root: str
    workers: int = 2

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> "Settings":
        env = os.environ if environ is None else environ
        data_dir = Path(env.get(DATA_DIR_ENV) or "data").expanduser().resolve()
        url = env.get(DATABASE_URL_ENV) or f"sqlite:///{data_dir / 'report_pipelines.sqlite3'}"
        store = env.get(STORE_ENV) or str(data_dir / "reports")
        workers_text = env.get(WORKERS_ENV) or "2"
        if not workers_text.isdigit() or int(workers_text) < 1:
            from report_pipelines.domain.errors import InvalidInput

            raise InvalidInput(WORKERS_ENV, f"must be a whole number >= 1, not {workers_text!r}")
        return cls(data_dir=data_dir, database_url=normalise_database_url(url), store_root=store,
                   workers=int(workers_text))
