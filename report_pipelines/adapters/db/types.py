"""Column types that behave the same on SQLite and PostgreSQL."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

from sqlalchemy import ColumnElement, DateTime, String, bindparam, func
from sqlalchemy.dialects import postgresql
from sqlalchemy.types import TypeDecorator, TypeEngine

UTC = dt.UTC


class UTCDateTime(TypeDecorator[dt.datetime]):
    """An instant, stored in UTC, always returned aware.

    PostgreSQL stores ``timestamptz``. SQLite has no time type: values are stored as naive UTC text,
    which sorts correctly, and get their UTC zone back on the way out. A naive datetime is refused on
    the way in, since it could mean any zone.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: dt.datetime | None, dialect) -> dt.datetime | None:
        if value is None:
            return None
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError(f"naive datetime {value!r} given for a UTC column")
        value = value.astimezone(UTC)
        if dialect.name == "sqlite":
            return value.replace(tzinfo=None)
        return value

    def process_result_value(self, value: dt.datetime | None, dialect) -> dt.datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


class ExactDecimal(TypeDecorator[Decimal]):
    """A ``Decimal`` stored exactly as text on every backend (SQLite has no decimal type and would
    round money through a float). Money is never added up in SQL here, only in Python."""

    impl = String(40)
    cache_ok = True

    def process_bind_param(self, value: Decimal | None, dialect) -> str | None:
        if value is None:
            return None
        if not isinstance(value, Decimal):
            raise ValueError(f"{value!r} is not a Decimal")
        return format(value, "f")

    def process_result_value(self, value: str | None, dialect) -> Decimal | None:
        return None if value is None else Decimal(value)


def one_of(column: ColumnElement, name: str, item_type: type[TypeEngine], arrays: bool) -> ColumnElement[bool]:
    """``column`` among the values of the list parameter ``name``: on PostgreSQL (``arrays``) one array
    parameter (``= ANY``), which SQLAlchemy does not rewrite at each execution as it does an expanding
    ``IN`` (an expanding ``IN`` elsewhere)."""
    if arrays:
        return column == func.any(bindparam(name, type_=postgresql.ARRAY(item_type)))
    return column.in_(bindparam(name, expanding=True))
