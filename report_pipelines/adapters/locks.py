"""One computation per client-day at a time, across runs and processes.

PostgreSQL: a session-level advisory lock on a dedicated connection (released when the block ends,
or by the server if the process dies). SQLite (the embedded default, one machine): a file lock under
the data folder. Either way the second caller waits, then finds the first one's result in the cache
manifest and reuses it.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
from collections.abc import Iterator
from pathlib import Path

from filelock import FileLock, Timeout
from sqlalchemy import Engine, text

from report_pipelines.domain.errors import ReportPipelinesError


class LockTimeout(ReportPipelinesError, TimeoutError):
    """Another run held the client-day longer than we may wait."""


def lock_key(client_id: int, day: dt.date) -> int:
    """A stable signed 64-bit key for ``pg_advisory_lock``, namespaced to this application."""
    digest = hashlib.blake2b(f"report_pipelines:client_day:{client_id}:{day.isoformat()}".encode(), digest_size=8)
    return int.from_bytes(digest.digest(), "big", signed=True)


class ClientDayLocks:
    """``with locks.hold(client_id, day, timeout_s):`` serialises work on one client-day."""

    def __init__(self, engine: Engine, lock_dir: Path, timeout_s: float = 3600.0) -> None:
        self.engine = engine
        self.lock_dir = lock_dir
        self.timeout_s = timeout_s

    @contextlib.contextmanager
    def hold(self, client_id: int, day: dt.date, timeout_s: float | None = None) -> Iterator[None]:
        """Hold the client-day's lock; wait at most ``timeout_s`` (default: the configured one) for it."""
        timeout_s = self.timeout_s if timeout_s is None else max(0.0, timeout_s)
        if self.engine.dialect.name == "postgresql":
            with self._advisory(client_id, day, timeout_s):
                yield
        else:
            self.lock_dir.mkdir(parents=True, exist_ok=True)
            lock = FileLock(str(self.lock_dir / f"client-{client_id}-{day.isoformat()}.lock"))
            try:
                lock.acquire(timeout=timeout_s)
            except Timeout as exc:
                raise LockTimeout(f"client-day {client_id}/{day}: still locked by another run after {timeout_s:.1f} s") from exc
            try:
                yield
            finally:
                lock.release()

    @contextlib.contextmanager
    def _advisory(self, client_id: int, day: dt.date, timeout_s: float) -> Iterator[None]:
        key = lock_key(client_id, day)
        with self.engine.connect() as conn:
            # lock_timeout 0 would mean "wait for ever": the shortest wait PostgreSQL knows is 1 ms.
            conn.execute(text("SELECT set_config('lock_timeout', :t, false)"), {"t": f"{max(1, int(timeout_s * 1000))}ms"})
            try:
                conn.execute(text("SELECT pg_advisory_lock(:k)"), {"k": key})
            except Exception as exc:
                if "lock timeout" in str(exc).lower():
                    raise LockTimeout(
                        f"client-day {client_id}/{day}: still locked by another run after {timeout_s:.1f} s") from exc
                raise
            conn.commit()
            try:
                yield
            finally:
                conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": key})
                conn.execute(text("SELECT set_config('lock_timeout', '0', false)"))
                conn.commit()
