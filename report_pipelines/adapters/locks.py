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
import time
from collections.abc import Iterator, Sequence
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
    """``with locks.hold(client_id, day, timeout_s):`` serialises work on one client-day;
    ``hold_many`` on the client-days of a zone-day batch."""

    def __init__(self, engine: Engine, lock_dir: Path, timeout_s: float = 3600.0) -> None:
        self.engine = engine
        self.lock_dir = lock_dir
        self.timeout_s = timeout_s

    @contextlib.contextmanager
    def hold(self, client_id: int, day: dt.date, timeout_s: float | None = None) -> Iterator[None]:
        """Hold the client-day's lock; wait at most ``timeout_s`` (default: the configured one) for it."""
        with self.hold_many([client_id], day, timeout_s):
            yield

    @contextlib.contextmanager
    def hold_many(self, client_ids: Sequence[int], day: dt.date, timeout_s: float | None = None) -> Iterator[None]:
        """Hold the locks of several clients' ``day`` (a zone-day batch), waiting at most ``timeout_s`` in all.

        Locks are taken in one order (by key), so two batches that share client-days never deadlock:
        whoever holds a key only ever waits for larger ones.
        """
        timeout_s = self.timeout_s if timeout_s is None else max(0.0, timeout_s)
        ids = sorted(set(client_ids))
        if not ids:
            yield
            return
        if self.engine.dialect.name == "postgresql":
            with self._advisory(ids, day, timeout_s):
                yield
            return
        self.lock_dir.mkdir(parents=True, exist_ok=True)
        deadline = time.monotonic() + timeout_s
        held: list[FileLock] = []
        try:
            for client_id in ids:
                lock = FileLock(str(self.lock_dir / f"client-{client_id}-{day.isoformat()}.lock"))
                try:
                    lock.acquire(timeout=max(0.0, deadline - time.monotonic()))
                except Timeout as exc:
                    raise LockTimeout(f"client-day {client_id}/{day}: still locked by another run after "
                                      f"{timeout_s:.1f} s") from exc
                held.append(lock)
            yield
        finally:
            for lock in reversed(held):
                lock.release()

    @contextlib.contextmanager
    def _advisory(self, ids: list[int], day: dt.date, timeout_s: float) -> Iterator[None]:
        keys = sorted(lock_key(client_id, day) for client_id in ids)
        owner = {lock_key(client_id, day): client_id for client_id in ids}
        with self.engine.connect() as conn:
            # First try them all at once (one round trip; the usual case: nobody else has them).
            missed = list(conn.scalars(text("SELECT k FROM unnest(CAST(:keys AS bigint[])) AS k "
                                            "WHERE NOT pg_try_advisory_lock(k)"), {"keys": keys}))
            if missed:  # someone has some: give ours back and wait for each in key order
                conn.execute(text("SELECT pg_advisory_unlock(k) FROM unnest(CAST(:keys AS bigint[])) AS k"),
                             {"keys": [k for k in keys if k not in set(missed)]})
                deadline = time.monotonic() + timeout_s
                taken: list[int] = []
                try:
                    for key in keys:
                        remaining = max(0.001, deadline - time.monotonic())
                        # lock_timeout 0 would mean "wait for ever": the shortest wait PostgreSQL knows is 1 ms.
                        conn.execute(text("SELECT set_config('lock_timeout', :t, false)"),
                                     {"t": f"{max(1, int(remaining * 1000))}ms"})
                        try:
                            conn.execute(text("SELECT pg_advisory_lock(:k)"), {"k": key})
                        except Exception as exc:
                            conn.rollback()
                            if "lock timeout" in str(exc).lower():
                                raise LockTimeout(f"client-day {owner[key]}/{day}: still locked by another run "
                                                  f"after {timeout_s:.1f} s") from exc
                            raise
                        taken.append(key)
                except BaseException:
                    if taken:
                        conn.execute(text("SELECT pg_advisory_unlock(k) FROM unnest(CAST(:keys AS bigint[])) AS k"),
                                     {"keys": taken})
                    conn.execute(text("SELECT set_config('lock_timeout', '0', false)"))
                    conn.commit()
                    raise
                conn.execute(text("SELECT set_config('lock_timeout', '0', false)"))
            conn.commit()
            try:
                yield
            finally:
                conn.execute(text("SELECT pg_advisory_unlock(k) FROM unnest(CAST(:keys AS bigint[])) AS k"),
                             {"keys": keys})
                conn.commit()
