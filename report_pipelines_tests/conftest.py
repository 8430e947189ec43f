"""Shared fixtures: real databases, no mocks.

PostgreSQL is required, not optional: a test that needs it fails loudly when the server at
``REPORT_PIPELINES_TEST_PG_ADMIN_URL`` (default ``postgresql+psycopg2://postgres@127.0.0.1:5432/postgres``)
cannot be reached. Each test session creates its own databases and drops them at the end.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import make_url

from report_pipelines.adapters.db.engine import make_engine
from report_pipelines.adapters.db.migrate import upgrade
from report_pipelines_tests.s3_support import s3_server, use_test_credentials  # noqa: F401  (fixture)

use_test_credentials()

PG_ADMIN_URL = os.environ.get(
    "REPORT_PIPELINES_TEST_PG_ADMIN_URL", "postgresql+psycopg2://postgres@127.0.0.1:5432/postgres"
)


class PostgresServer:
    """Creates and drops throwaway databases on the test server."""

    def __init__(self, admin_url: str) -> None:
        self.admin_url = admin_url
        self.admin = create_engine(admin_url, isolation_level="AUTOCOMMIT", pool_pre_ping=True)
        self.created: list[str] = []

    def check(self) -> None:
        try:
            with self.admin.connect() as conn:
                conn.execute(text("SELECT 1"))
        except Exception as exc:
            pytest.fail(
                f"PostgreSQL is required for this test and could not be reached at {self.admin_url}: {exc}. "
                "Start it (pg_ctlcluster <version> main start) or set REPORT_PIPELINES_TEST_PG_ADMIN_URL.",
                pytrace=False,
            )

    def create_database(self, prefix: str = "rp_test") -> str:
        self.check()
        name = f"{prefix}_{uuid.uuid4().hex[:10]}"
        with self.admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
        self.created.append(name)
        return make_url(self.admin_url).set(database=name).render_as_string(hide_password=False)

    def drop_all(self) -> None:
        with self.admin.connect() as conn:
            for name in self.created:
                conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        self.admin.dispose()


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    server = PostgresServer(PG_ADMIN_URL)
    yield server
    server.drop_all()


@pytest.fixture
def pg_url(postgres_server: PostgresServer) -> str:
    """A fresh, empty PostgreSQL database for one test."""
    return postgres_server.create_database()


@pytest.fixture
def pg_engine(pg_url: str) -> Iterator[Engine]:
    """A fresh PostgreSQL database, migrated to head."""
    engine = make_engine(pg_url)
    upgrade(engine)
    yield engine
    engine.dispose()


@pytest.fixture
def sqlite_engine(tmp_path: Path) -> Iterator[Engine]:
    """A fresh SQLite database file, migrated to head."""
    engine = make_engine(f"sqlite:///{tmp_path / 'app.sqlite3'}")
    upgrade(engine)
    yield engine
    engine.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def engine(request: pytest.FixtureRequest) -> Engine:
    """The same test on both backends."""
    return request.getfixturevalue("sqlite_engine" if request.param == "sqlite" else "pg_engine")
