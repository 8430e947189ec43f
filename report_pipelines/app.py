"""The composition root: the application's pieces, built once from :class:`Settings`.

Every entry point gets what it needs from an :class:`App`: the CLI (one per command), the Dagster
resources (one per process and configuration), the demo runner, worker processes (each builds its own
from the picklable settings it is handed), and later the HTTP API and Celery workers. Nothing else
reads the environment: :func:`bootstrap` is the one caller of :meth:`Settings.from_env`.

The pieces are made on first use, so a command that only validates its input opens no connection:

* ``engine``: the app database (SQLAlchemy, one pool per App);
* ``store``: the Parquet report store;
* ``mailer``: SMTP when a host is configured, else the local outbox;
* ``locks``: the client-day locks (PostgreSQL advisory locks, or file locks beside a SQLite database);
* ``clock``: ``now()`` as an aware UTC instant; tests and replays pass a fixed or movable one.
"""

from __future__ import annotations

import datetime as dt
import os
import threading
from collections.abc import Callable, Mapping
from functools import cached_property
from typing import TYPE_CHECKING

from report_pipelines.settings import Settings

if TYPE_CHECKING:  # the pieces import SQLAlchemy / pyarrow; the CLI imports this module eagerly
    from sqlalchemy import Engine

    from report_pipelines.adapters.locks import ClientDayLocks
    from report_pipelines.adapters.mailer import Mailer
    from report_pipelines.adapters.report_store import ParquetReportStore
    from report_pipelines.services.read_memo import ReadMemo

UTC = dt.UTC

Clock = Callable[[], dt.datetime]


def system_clock() -> dt.datetime:
    return dt.datetime.now(UTC)


class FixedClock:
    """A clock that reads what it is set to (tests, replays); ``advance`` moves it."""

    def __init__(self, instant: dt.datetime) -> None:
        if instant.tzinfo is None:
            raise ValueError("a clock reads aware instants")
        self.instant = instant.astimezone(UTC)

    def __call__(self) -> dt.datetime:
        return self.instant

    def advance(self, delta: dt.timedelta) -> dt.datetime:
        self.instant += delta
        return self.instant

    def set(self, instant: dt.datetime) -> dt.datetime:
        self.instant = instant.astimezone(UTC)
        return self.instant


class App:
    """Settings and the pieces built from them; cheap to create, pieces made on first use."""

    def __init__(self, settings: Settings, *, clock: Clock = system_clock) -> None:
        self.settings = settings
        self.clock = clock
        self._lock = threading.Lock()

    def now(self) -> dt.datetime:
        return self.clock()

    @cached_property
    def engine(self) -> Engine:
        from report_pipelines.adapters.db.engine import make_engine

        with self._lock:
            return make_engine(self.settings.database_url)

    @cached_property
    def store(self) -> ParquetReportStore:
        from report_pipelines.adapters.report_store import ParquetReportStore

        return ParquetReportStore(self.settings.store_root, endpoint=self.settings.store_endpoint)

    @cached_property
    def mailer(self) -> Mailer:
        from report_pipelines.adapters.mailer import mailer_from_settings

        return mailer_from_settings(self.settings)

    @cached_property
    def locks(self) -> ClientDayLocks:
        from report_pipelines.adapters.locks import ClientDayLocks

        return ClientDayLocks(self.engine, self.settings.lock_dir, self.settings.lock_timeout_s)

    @cached_property
    def memo(self) -> ReadMemo:
        """What this process keeps of the summaries it read (:mod:`report_pipelines.services.read_memo`)."""
        from report_pipelines.services.read_memo import ReadMemo

        with self._lock:
            return ReadMemo(self.settings.periods.memo_mb * 1024 * 1024)

    def dispose(self) -> None:
        """Close the database pool (a worker process that ends, a test that is done)."""
        engine = self.__dict__.pop("engine", None)
        self.__dict__.pop("locks", None)
        if engine is not None:
            engine.dispose()

    def __repr__(self) -> str:
        return f"App(database={self.settings.database_url.split('@')[-1]!r}, store={self.settings.store_root!r})"


def load_settings(overrides: Mapping[str, str] | None = None, environ: Mapping[str, str] | None = None) -> Settings:
    """The settings: the environment (or ``environ``), with ``overrides`` (variable name -> value) on top.

    Overrides go through the same parsing as the environment, so a Dagster resource's configured
    value is checked exactly like the variable it stands for.
    """
    env = dict(os.environ if environ is None else environ)
    env.update({name: value for name, value in (overrides or {}).items() if value is not None})
    return Settings.from_env(env)


def bootstrap(overrides: Mapping[str, str] | None = None, *, environ: Mapping[str, str] | None = None,
              clock: Clock = system_clock) -> App:
    """Build the application from the environment: what every entry point calls first."""
    return App(load_settings(overrides, environ), clock=clock)


_apps: dict[tuple[Settings, Clock], App] = {}
_apps_lock = threading.Lock()


def app_for(settings: Settings, clock: Clock = system_clock) -> App:
    """One App per process for given settings and clock (a Dagster resource, a worker): one pool each."""
    with _apps_lock:
        key = (settings, clock)
        if key not in _apps:
            _apps[key] = App(settings, clock=clock)
        return _apps[key]


_default: App | None = None
_default_lock = threading.Lock()


def default_app() -> App:
    """One App per process for the Python API (``read_report`` without an ``app``)."""
    global _default
    with _default_lock:
        if _default is None:
            _default = bootstrap()
        return _default
