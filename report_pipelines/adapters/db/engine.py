"""Engines for the app database: one function, both backends."""

from __future__ import annotations

import gc
import time
from collections.abc import Iterator
from contextlib import contextmanager
from functools import lru_cache

from sqlalchemy import Connection, Engine, create_engine, event, exc
from sqlalchemy.engine import make_url

from report_pipelines.settings import normalise_database_url


def make_engine(url: str, **kwargs) -> Engine:
    """Create an engine; SQLite gets WAL, foreign keys and a busy timeout, and its folder created."""
    url = normalise_database_url(url)
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        database = parsed.database
        if database and database != ":memory:":
            from pathlib import Path

            Path(database).parent.mkdir(parents=True, exist_ok=True)
        # Pooled connections may be returned (and closed) by another thread than the one that opened them.
        engine = create_engine(url, connect_args={"timeout": 30, "check_same_thread": False}, **kwargs)

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_connection, _record) -> None:
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.close()

        return engine
    engine = create_engine(url, **kwargs)
    if not kwargs.get("pool_pre_ping"):
        _ping_after_idle(engine)
    return engine


#: A pooled PostgreSQL connection idle for longer is pinged before it is handed out.
IDLE_PING_S = 1.0


def _ping_after_idle(engine: Engine) -> None:
    """``pool_pre_ping`` for connections that were idle: one that was returned less than
    :data:`IDLE_PING_S` ago has just answered, so its ping would be a round trip for nothing; an
    older one (the server may have restarted, a proxy dropped it) is pinged, and a dead one replaced
    before anyone sees it. A connection that dies within that second fails its statement, as it could
    between a ping and the statement."""

    @event.listens_for(engine, "checkin")
    def _returned(_dbapi_connection, record) -> None:
        record.info["returned_at"] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def _check(dbapi_connection, record, _proxy) -> None:
        returned = record.info.get("returned_at")
        if returned is None or time.monotonic() - returned < IDLE_PING_S:
            return  # new (it has just connected), or used a moment ago
        try:
            alive = engine.dialect.do_ping(dbapi_connection)
        except engine.dialect.loaded_dbapi.Error as error:
            if not engine.dialect.is_disconnect(error, dbapi_connection, None):
                raise
            alive = False
        if not alive:  # as pool_pre_ping: the connections older than this one are replaced too, when checked out
            raise exc.InvalidatePoolError("a pooled connection did not answer its ping")


@contextmanager
def transaction_free(engine: Engine) -> Iterator[Connection]:
    """A pooled connection for statements that need no transaction together (a request's validation and
    its day tables: each statement sees one committed snapshot, as in read committed). On PostgreSQL the
    driver's connection is switched to autocommit for the duration, a client-side flag: no ``BEGIN``
    before the first statement and nothing to roll back when it returns to the pool (with the ping
    after idle time, a cached summary's read is 2 round trips instead of 5), on the app's own pool, so
    no second pool of connections. Do not write through it: each statement would commit on its own."""
    with engine.connect() as conn:
        if engine.dialect.name != "postgresql":
            yield conn
            return
        driver = conn.connection.dbapi_connection
        driver.autocommit = True
        try:
            yield conn
        finally:
            try:  # back as the pool hands connections out; no transaction is open, so this sends nothing
                driver.autocommit = False
            except engine.dialect.loaded_dbapi.Error:
                conn.invalidate()  # a connection that died meanwhile is not returned to the pool


@contextmanager
def gc_paused() -> Iterator[None]:
    """Python's cyclic garbage collector held off while many rows become objects that hold no cycle
    (a fleet's clients and licences: ~100,000 objects). Each allocation would count towards a
    collection, and the full ones walk every object the process holds (Dagster's and SQLAlchemy's
    too): a third of the time of reading 20,000 clients' serving states. Reference counting still
    frees everything; the collector resumes on the way out, unless it was already off.

    On the way out the objects made meanwhile go straight to the oldest generation (``gc.freeze()`` then
    ``gc.unfreeze()``, Instagram's trick): otherwise the first young collection after would walk all of
    them and their promotion would start a full one, the same cost only moved to the next caller (measured:
    the fetch after the read 0.09 -> 0.26 s). A cycle among them is still found by the next full collection.
    Only after a large build (:data:`_PROMOTE_AFTER` young collections' worth): the step moves the process's
    other young objects too, so a single client's read, which may come many times a second, leaves the
    young generations as they were."""
    was_on = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_on:
            if gc.get_count()[0] >= _PROMOTE_AFTER * gc.get_threshold()[0]:
                gc.freeze()  # every tracked object to the permanent generation, and back to the oldest one:
                gc.unfreeze()  # the new ones skip the young collections' walks and count for no full one
            gc.enable()


#: How many young collections' worth of new objects a :func:`gc_paused` build makes before they are moved
#: to the oldest generation (10 x 700 by default: a fleet of ~1,000 clients or more).
_PROMOTE_AFTER = 10


@lru_cache(maxsize=16)
def engine_for(url: str) -> Engine:
    """One shared engine (and connection pool) per URL in this process."""
    return make_engine(url)
