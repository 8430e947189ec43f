"""Time zones and client-local days.

Instants are UTC everywhere. A client's day is the half-open interval
``[local midnight, next local midnight)`` in its IANA zone, so it lasts 23, 24 or 25 hours (or
23.5 / 24.5 in zones with half-hour DST such as Australia/Lord_Howe).
"""

from __future__ import annotations

import datetime as dt
import difflib
from functools import lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

from report_pipelines.domain.errors import InvalidInput

UTC = dt.timezone.utc


@lru_cache(maxsize=None)
def _known_zones() -> frozenset[str]:
    return frozenset(available_timezones())


def parse_zone(name: str, field: str = "timezone") -> ZoneInfo:
    """Return the ``ZoneInfo`` for an IANA name, or refuse it with a message naming ``field``.

    Only canonical IANA names from the bundled database are accepted: no file paths, no POSIX TZ
    strings, no abbreviations such as ``EST`` that mean different things to different people.
    """
    if not isinstance(name, str) or not name.strip():
        raise InvalidInput(field, "a time zone is required (an IANA name such as 'Europe/Lisbon')")
    name = name.strip()
    if name not in _known_zones():
        hint = _suggest(name)
        suffix = f"; did you mean {hint!r}?" if hint else ""
        raise InvalidInput(field, f"unknown time zone {name!r} (expected an IANA name such as 'America/Sao_Paulo'){suffix}")
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:  # pragma: no cover - guarded by the set above
        raise InvalidInput(field, f"unknown time zone {name!r}") from exc


def _suggest(name: str) -> str | None:
    lowered = name.lower().replace(" ", "_")
    by_lower = {zone.lower(): zone for zone in _known_zones()}
    if lowered in by_lower:
        return by_lower[lowered]
    close = difflib.get_close_matches(lowered, list(by_lower), n=1, cutoff=0.8)
    return by_lower[close[0]] if close else None


def ensure_utc(instant: dt.datetime, field: str = "instant") -> dt.datetime:
    """Return ``instant`` in UTC; a naive datetime is ambiguous and refused."""
    if instant.tzinfo is None or instant.utcoffset() is None:
        raise InvalidInput(field, "a time zone-aware instant is required (naive datetimes are ambiguous)")
    return instant.astimezone(UTC)


def local_midnight_utc(day: dt.date, zone: ZoneInfo) -> dt.datetime:
    """The UTC instant at which local ``day`` starts in ``zone``.

    Where midnight itself falls in a spring-forward gap (America/Sao_Paulo until 2019,
    America/Havana, Asia/Beirut...), the day starts at the jump: ``fold=0`` resolves a missing wall
    time with the offset in force before the transition, which is exactly the transition instant.
    Where midnight happens twice (a fall-back at 01:00 back to 00:00), ``fold=0`` takes the first.
    """
    return dt.datetime.combine(day, dt.time(0, 0), tzinfo=zone).astimezone(UTC)


def local_day_window(day: dt.date, zone: ZoneInfo) -> tuple[dt.datetime, dt.datetime]:
    """``[start, end)`` in UTC of the local ``day`` in ``zone``."""
    return local_midnight_utc(day, zone), local_midnight_utc(day + dt.timedelta(days=1), zone)


def local_date_of(instant: dt.datetime, zone: ZoneInfo) -> dt.date:
    """The local date, in ``zone``, at which ``instant`` happens."""
    return ensure_utc(instant).astimezone(zone).date()
