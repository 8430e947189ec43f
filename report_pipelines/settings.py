"""Infrastructure settings, read from the environment in one place, when asked (never at import).

| variable | default | what |
|---|---|---|
| ``REPORT_PIPELINES_DATA_DIR`` | ``./data`` | local folder for the embedded defaults |
| ``REPORT_PIPELINES_DATABASE_URL`` | ``sqlite:///<data dir>/report_pipelines.sqlite3`` | app database |
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

DATA_DIR_ENV = "REPORT_PIPELINES_DATA_DIR"
DATABASE_URL_ENV = "REPORT_PIPELINES_DATABASE_URL"


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

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> "Settings":
        env = os.environ if environ is None else environ
        data_dir = Path(env.get(DATA_DIR_ENV) or "data").expanduser().resolve()
        url = env.get(DATABASE_URL_ENV) or f"sqlite:///{data_dir / 'report_pipelines.sqlite3'}"
        return cls(data_dir=data_dir, database_url=normalise_database_url(url))
