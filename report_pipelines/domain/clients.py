"""Clients (tenants) of the PBX platform."""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass

from report_pipelines.domain.errors import InvalidInput
from report_pipelines.domain.timezones import parse_zone

_SLUG = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,62}[a-z0-9])?$")


def validate_slug(slug: str, field: str = "slug") -> str:
    """A slug is lower-case letters, digits and inner hyphens, 1 to 64 characters.

    It ends up in file paths (``client=<id>`` uses the numeric id, but exports use the slug), so
    nothing else is allowed: no dots, slashes or spaces.
    """
    if not isinstance(slug, str) or not _SLUG.fullmatch(slug):
        raise InvalidInput(
            field,
            f"{slug!r} is not a valid slug (1-64 lower-case letters, digits and inner hyphens, e.g. 'acme-sales')",
        )
    return slug


def validate_name(name: str, field: str = "name") -> str:
    name = (name or "").strip()
    if not name:
        raise InvalidInput(field, "a name is required")
    if len(name) > 200:
        raise InvalidInput(field, "longer than 200 characters")
    if any(ord(ch) < 32 for ch in name):
        raise InvalidInput(field, "control characters are not allowed")
    return name


@dataclass(frozen=True, slots=True)
class ClientSpec:
    """A client as a user describes it, validated."""

    slug: str
    name: str
    timezone: str
    active_from: dt.date | None = None  # None: the local date at creation

    @classmethod
    def parse(cls, slug: str, name: str, timezone: str, active_from: dt.date | None = None) -> ClientSpec:
        zone = parse_zone(timezone, field="timezone")
        return cls(slug=validate_slug(slug), name=validate_name(name), timezone=zone.key, active_from=active_from)


@dataclass(frozen=True, slots=True)
class ClientRecord:
    """A stored client."""

    id: int
    slug: str
    name: str
    timezone: str
    active_from: dt.date  # the first local date the client has reports for
