"""Shared fixtures: real databases, no mocks.

PostgreSQL is required, not optional: a test that needs it fails loudly when the server at
``REPORT_PIPELINES_TEST_PG_ADMIN_URL`` (default ``postgresql+psycopg2://postgres@127.0.0.1:5432/postgres``)
cannot be reached. Each test session creates its own databases and drops them at the end.

A migrated database is migrated once per session (Alembic's upgrade, 0.1-0.3 s) and copied for each test
that asks for one: ``CREATE DATABASE ... TEMPLATE`` on PostgreSQL, a file copy on SQLite. The tests of the
migrations themselves start from an empty database (``pg_url``, their own SQLite file) and run them.
"""

from __future__ import annotations

import os
import shutil
import uuid
import weakref
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.engine import make_url

from report_pipelines.adapters.db.engine import make_engine
from report_pipelines.adapters.db.migrate import upgrade
from report_pipelines_tests.s3_support import s3_server, use_test_credentials  # noqa: F401  (fixture)

use_test_credentials()

#: Engines that connected during the running test (the fixtures', the code's own: an ``App``'s pool, a
#: Dagster resource's process-wide ``app_for`` pool, their ADBC connections).
_engines_used: weakref.WeakSet[Engine] = weakref.WeakSet()


@event.listens_for(Engine, "engine_connect")
def _note_engine(connection) -> None:
    _engines_used.add(connection.engine)


@pytest.fixture(autouse=True)
def _close_idle_connections() -> Iterator[None]:
    """Every pool a test used is disposed when it ends: its idle connections closed (a disposed engine
    opens new ones if used again). Without this, each test's pools stay open until collected, or for
    good in process-wide caches, and the suite reached 97 of the server's 100 connections."""
    yield
    for engine in list(_engines_used):
        engine.dispose()
    _engines_used.clear()

PG_ADMIN_URL = os.environ.get(
    "REPORT_PIPELINES_TEST_PG_ADMIN_URL", "postgresql+psycopg2://postgres@127.0.0.1:5432/postgres"
)


class PostgresServer:
    """Creates and drops throwaway databases on the test server."""

    def __init__(self, admin_url: str) -> None:
        self.admin_url = admin_url
        self.admin = create_engine(admin_url, isolation_level="AUTOCOMMIT", pool_pre_ping=True)
        self.created: list[str] = []
        self._migrated: str | None = None  # the session's migrated database, copied for each test

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

    def create_database(self, prefix: str = "rp_test", *, template: str | None = None) -> str:
        self.check()
        name = f"{prefix}_{uuid.uuid4().hex[:10]}"
        with self.admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"' + (f' TEMPLATE "{template}"' if template else "")))
        self.created.append(name)
        return make_url(self.admin_url).set(database=name).render_as_string(hide_password=False)

    def create_migrated_database(self) -> str:
        """A new database at the migrations' head: a copy of one migrated once for the session (a
        template must have no connection while it is copied: its engine is disposed)."""
        if self._migrated is None:
            url = self.create_database("rp_template")
            engine = make_engine(url)
            try:
                upgrade(engine)
            finally:
                engine.dispose()
            self._migrated = make_url(url).database
        return self.create_database(template=self._migrated)

    def drop_all(self) -> None:
        def drop(names: list[str]) -> None:
            with self.admin.connect() as conn:
                for name in names:
                    conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))

        # Four connections at once: a drop is a few tens of ms, hundreds of them in a session.
        with ThreadPoolExecutor(4) as pool:
            list(pool.map(drop, [self.created[i::4] for i in range(4)]))
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
def pg_engine(postgres_server: PostgresServer) -> Iterator[Engine]:
    """A fresh PostgreSQL database, migrated to head."""
    engine = make_engine(postgres_server.create_migrated_database())
    yield engine
    engine.dispose()


@pytest.fixture(scope="session")
def migrated_sqlite_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A SQLite file migrated to head once per session; its engine is disposed, so the write-ahead log is
    checkpointed into the file and removed."""
    path = tmp_path_factory.mktemp("migrated") / "app.sqlite3"
    engine = make_engine(f"sqlite:///{path}")
    try:
        upgrade(engine)
    finally:
        engine.dispose()
    assert not path.with_name(path.name + "-wal").exists(), "the migrated file's WAL was not checkpointed"
    return path


@pytest.fixture
def sqlite_engine(tmp_path: Path, migrated_sqlite_file: Path) -> Iterator[Engine]:
    """A fresh SQLite database file, migrated to head."""
    path = tmp_path / "app.sqlite3"
    shutil.copyfile(migrated_sqlite_file, path)
    engine = make_engine(f"sqlite:///{path}")
    yield engine
    engine.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def engine(request: pytest.FixtureRequest) -> Engine:
    """The same test on both backends."""
    return request.getfixturevalue("sqlite_engine" if request.param == "sqlite" else "pg_engine")
