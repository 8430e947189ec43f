"""Time zones and client-local days.

Instants are UTC everywhere. A client's day is the half-open interval
``[local midnight, next local midnight)`` in its IANA zone, so it lasts 23, 24 or 25 hours (or
23.5 / 24.5 in zones with half-hour DST such as Australia/Lord_Howe).

**One time-zone database everywhere.** Zones come from the ``tzdata`` package (a pinned dependency),
never from the host's ``/usr/share/zoneinfo``: importing this module points ``zoneinfo`` at the
package (``zoneinfo.reset_tzpath([])``), so every machine that runs the same release computes the
same instants, whatever its operating system ships. :data:`TZDATA_VERSION` says which release.

**Only canonical names.** A zone is one of the IANA database's own zones (``Zone`` lines of
``tzdata.zi``), plus ``UTC``. Its aliases (``Link`` lines) are refused with the canonical name to use:
``US/Eastern`` -> ``America/New_York``, ``Asia/Calcutta`` -> ``Asia/Kolkata``; so are abbreviations and
POSIX-style names (``EST``, ``MST``, ``EST5EDT``, ``CET``), which are fixed offsets or some other city's
rules (``EST`` is Panama's: a New York client on ``EST`` would get its reports an hour late all summer),
with the zone people usually mean.
"""

from __future__ import annotations

import datetime as dt
import difflib
import re
import zoneinfo
from functools import cache, lru_cache
from importlib import resources
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from report_pipelines.domain.errors import InvalidInput

UTC = dt.UTC

zoneinfo.reset_tzpath([])  # the tzdata package only (see the module docstring)
ZoneInfo.clear_cache()

#: Zones users mean by an abbreviation or a POSIX-style name (the suggestion; never accepted as such).
ABBREVIATIONS = {
    "EST": "America/New_York", "EDT": "America/New_York", "EST5EDT": "America/New_York",
    "CST": "America/Chicago", "CDT": "America/Chicago", "CST6CDT": "America/Chicago",
    "MST": "America/Denver", "MDT": "America/Denver", "MST7MDT": "America/Denver",
    "PST": "America/Los_Angeles", "PDT": "America/Los_Angeles", "PST8PDT": "America/Los_Angeles",
    "HST": "Pacific/Honolulu", "CET": "Europe/Paris", "CEST": "Europe/Paris", "MET": "Europe/Paris",
    "EET": "Europe/Athens", "WET": "Europe/Lisbon", "BST": "Europe/London", "IST": "Asia/Kolkata",
    "JST": "Asia/Tokyo", "AEST": "Australia/Sydney", "BRT": "America/Sao_Paulo",
}
_POSIX_STYLE = re.compile(r"[A-Z]{3,5}\d{1,2}[A-Z]{3,4}")


@lru_cache(maxsize=1)
def _database() -> tuple[frozenset[str], dict[str, str], str]:
    """(canonical zones, alias -> canonical, version) read from the tzdata package's ``tzdata.zi``."""
    text = resources.files("tzdata").joinpath("zoneinfo", "tzdata.zi").read_text(encoding="utf-8")
    zones, links, version = {"UTC"}, {}, "unknown"
    for line in text.splitlines():
        if line.startswith("# version "):
            version = line.split()[-1]
        elif line.startswith("Z "):
            zones.add(line.split()[1])
        elif line.startswith("L "):
            _, target, alias = line.split()[:3]
            links[alias] = target
    links.pop("UTC", None)
    return frozenset(zones), links, version


TZDATA_VERSION = _database()[2]


def canonical_zones() -> frozenset[str]:
    return _database()[0]


def _shown(name: str) -> str:
    """A user's value as echoed in a message: at most 60 characters."""
    return repr(name if len(name) <= 60 else name[:57] + "...")


def parse_zone(name: str, field: str = "timezone") -> ZoneInfo:
    """Return the ``ZoneInfo`` for a canonical IANA name, or refuse it with a message naming ``field``.

    No file paths, no POSIX TZ strings, no abbreviations, no aliases (see the module docstring): each
    refusal says which canonical name to use when there is one.
    """
    if not isinstance(name, str) or not name.strip():
        raise InvalidInput(field, "a time zone is required (an IANA name such as 'Europe/Lisbon')")
    name = name.strip()
    links = _database()[1]
    if name not in canonical_zones() or _is_abbreviation(name):
        raise InvalidInput(field, _refusal(name, links))
    try:
        return _zone_info(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:  # pragma: no cover - guarded by the set above
        raise InvalidInput(field, f"unknown time zone {_shown(name)}") from exc


@cache
def _zone_info(name: str) -> ZoneInfo:
    """``ZoneInfo(name)``, held for good. ``ZoneInfo``'s own cache keeps only the last 8 zones it made
    alive, and its weak references die with their last user: a run over 10 zones in turn, whose clients
    keep dates rather than zones, read and parsed the zone's file again on most calls (~90 us instead
    of under 1). Only canonical names get here, so this holds at most the ~600 of the database."""
    return ZoneInfo(name)


def _is_abbreviation(name: str) -> bool:
    return name.upper() in ABBREVIATIONS or bool(_POSIX_STYLE.fullmatch(name.upper()))


def _refusal(name: str, links: dict[str, str]) -> str:
    upper = name.upper()
    if _is_abbreviation(name):
        meant = ABBREVIATIONS.get(upper)
        hint = f"; did you mean {meant!r}?" if meant else " (give the IANA zone of the client's city)"
        return (f"{_shown(name)} is an abbreviation, not a time zone (a fixed offset or another place's rules, "
                f"not the daylight-saving rules of a city){hint}")
    if name in links:
        return f"{_shown(name)} is an old alias of {links[name]!r}; did you mean {links[name]!r}?"
    hint = _suggest(name)
    suffix = f"; did you mean {hint!r}?" if hint else ""
    return f"unknown time zone {_shown(name)} (expected an IANA name such as 'America/Sao_Paulo'){suffix}"


def _suggest(name: str) -> str | None:
    lowered = name.lower().replace(" ", "_")
    zones, links, _ = _database()
    by_lower = {zone.lower(): zone for zone in zones}
    if lowered in by_lower:
        return by_lower[lowered]
    by_lower_alias = {alias.lower(): target for alias, target in links.items()}
    if lowered in by_lower_alias:
        return by_lower_alias[lowered]
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
