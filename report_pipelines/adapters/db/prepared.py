"""A read statement that runs on every request, prepared once per pooled PostgreSQL connection.

psycopg2 sends each statement as text, so PostgreSQL parses and plans it at every execution. For the
indexed lookups every cached summary makes (the client with its licences, the manifest's day tables)
that is most of the server's part: measured here, 0.21 -> 0.11 ms and 0.25 -> 0.2 ms a statement with
``PREPARE`` / ``EXECUTE``, against a 0.075 ms round trip. :class:`Prepared` keeps a statement built
once by SQLAlchemy (the same SQL, the same bind and result types: its ``EXECUTE`` is a typed textual
select) and prepares it on a connection the first time that connection runs it; the pool's record of
the connection remembers it, and forgets it with the connection.

Only on a connection in autocommit (:func:`report_pipelines.adapters.db.engine.transaction_free`, the
read path): there a statement that fails aborts no transaction, so a prepared statement the server no
longer holds (a ``DISCARD ALL``) or one whose plan a migration changed under it is prepared again and
run once more. Anywhere else, and on SQLite, the statement runs as it is.
"""

from __future__ import annotations

import hashlib
import re
from functools import lru_cache
from typing import Any

from sqlalchemy import Connection, CursorResult, Dialect, Select, TextClause, bindparam, column, exc, text

#: The server's codes for "no such prepared statement" and "cached plan must not change result type".
_GONE, _PLAN_CHANGED = "26000", "0A000"
_PREPARE_AGAIN = {_GONE, _PLAN_CHANGED}
_PLACEHOLDER = re.compile(r"%\((\w+)\)s")
#: A statement without parameters sent as it is (the driver does not read ``%`` in it).
_AS_IS = {"no_parameters": True}


class Prepared:
    """``statement``, prepared per connection where that pays (see the module's text)."""

    def __init__(self, statement: Select) -> None:
        self.statement = statement
        self._built: tuple[str, str, TextClause, dict[str, Any]] | None = None

    def execute(self, conn: Connection, params: dict[str, Any]) -> CursorResult:
        driver = conn.connection.dbapi_connection
        if conn.dialect.name != "postgresql" or not getattr(driver, "autocommit", False):
            return conn.execute(self.statement, params)
        name, prepare, clause, defaults = self._build(conn.dialect)
        held: set[str] = conn.connection.info.setdefault("prepared_statements", set())
        arguments = {**defaults, **params}
        for attempt in (1, 2):
            if name not in held:
                conn.exec_driver_sql(prepare, execution_options=_AS_IS)
                held.add(name)
            try:
                return conn.execute(clause, arguments)
            except exc.DBAPIError as error:
                code = getattr(error.orig, "pgcode", None)
                if attempt == 2 or code not in _PREPARE_AGAIN:
                    raise
                held.discard(name)
                if code == _PLAN_CHANGED:  # the server still holds it: let it go before preparing it again
                    conn.exec_driver_sql(f"DEALLOCATE {name}", execution_options=_AS_IS)
        raise AssertionError("unreachable")

    def _build(self, dialect: Dialect) -> tuple[str, str, TextClause, dict[str, Any]]:
        if self._built is None:
            compiled = self.statement.compile(dialect=dialect)
            names: list[str] = []

            def positional(match: re.Match) -> str:
                if match.group(1) not in names:
                    names.append(match.group(1))
                return f"${names.index(match.group(1)) + 1}"

            sql = _PLACEHOLDER.sub(positional, compiled.string)
            if "%" in sql.replace("%%", ""):  # a placeholder of another style: not for this class
                raise ValueError(f"cannot prepare {compiled.string[:80]!r}")
            sql = sql.replace("%%", "%")  # the driver's escape, which PREPARE's text does not go through
            name = "rp_" + hashlib.sha1(sql.encode()).hexdigest()[:16]
            binds = {compiled.bind_names[b]: b for b in compiled.binds.values()}
            values = compiled.params
            clause = (text(f"EXECUTE {name}({', '.join(f':{n}' for n in names)})")
                      .bindparams(*[bindparam(n, type_=binds[n].type) for n in names])
                      .columns(*[column(getattr(c, "name", None) or f"column_{i}", c.type)
                                 for i, c in enumerate(self.statement.selected_columns)]))
            defaults = {n: values[n] for n in names if values.get(n) is not None}
            self._built = (name, f"PREPARE {name} AS {sql}", clause, defaults)
        return self._built


@lru_cache(maxsize=64)
def prepared(statement: Select) -> Prepared:
    """The one :class:`Prepared` of a statement built once (a module's constant, or an ``lru_cache``'s)."""
    return Prepared(statement)
