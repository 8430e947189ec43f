"""What a client's PBX says about its own lines, and how a CDR's channels and contexts are read.

Asterisk names a channel ``TECH/endpoint-sequence`` (``SIP/201-00000a1b``, ``PJSIP/trunk-0000001f``,
``DAHDI/i1/5551234-1``, ``Local/201@from-queue-00000012;2``). Whether an endpoint is one of the
client's phones or a trunk to the outside cannot be told from its shape alone: many PBXs name SIP
trunks and DIDs by numbers (``SIP/4055501-...``). So the evidence is graded, and the strongest one
present decides (:class:`Evidence`):

1. **configured** (:class:`PbxConfig`, given with ``--trunk``/``--extensions``/``--did`` or stored on
   the client): an endpoint matching a trunk pattern is a trunk; with extension ranges given, an
   endpoint inside them is a phone and every other endpoint is a trunk;
2. **technology**: DAHDI, ZAP, mISDN, SS7, Khomp and DGV channels only ever carry PSTN lines;
3. **shape** (weak, used only when the dialplan context says nothing): an endpoint of 2 to 5 digits
   looks like an extension; an endpoint with letters (``voipms``, ``trunk-provider``) looks like a
   named trunk peer; an endpoint of 6 digits or more proves nothing (trunks and DIDs are named so).

Dialplan contexts (:func:`context_class`): ``from-pstn``, ``from-trunk*``, ``*-pstn``, ``from-did*``,
``from-external*``, ``from-inbound*``, ``incoming*``, ``inbound*``, ``ext-did*`` are where calls
from outside land (inbound); ``from-internal*``, ``*-internal``, ``from-phones``, ``from-users``,
``from-extensions``, ``internal*`` are where the client's phones dial from. Every other context
(``ext-queues``, ``from-queue``, ``ivr-3``, ``macro-*``...) says nothing about direction.
"""

from __future__ import annotations

import enum
import fnmatch
import json
import re
from dataclasses import dataclass

from report_pipelines.domain.errors import InvalidInput

#: Channel technologies that only ever carry PSTN lines (cards, gateways), whatever the endpoint.
TRUNK_TECHNOLOGIES = frozenset({"DAHDI", "ZAP", "MISDN", "SS7", "KHOMP", "DGV"})
#: The weak "looks like an extension" shape: 2 to 5 digits.
EXTENSION_SHAPE = re.compile(r"\d{2,5}")
_DIGITS = re.compile(r"\d+")
_HAS_LETTER = re.compile(r"[A-Za-z]")

INBOUND_CONTEXT_PREFIXES = ("from-pstn", "from-trunk", "from-did", "from-external", "from-sip-external",
                            "from-inbound", "incoming", "inbound", "ext-did")
INBOUND_CONTEXT_SUFFIXES = ("-pstn", "-inbound", "-incoming")
INTERNAL_CONTEXT_PREFIXES = ("from-internal", "from-phones", "from-users", "from-extensions", "internal")
INTERNAL_CONTEXT_SUFFIXES = ("-internal",)


class Kind(enum.IntEnum):
    """What an endpoint is (the int values are stored in NumPy arrays)."""

    UNKNOWN = 0
    TRUNK = 1
    PHONE = 2
    LOCAL = 3  # a Local channel: a dialplan construct, neither a phone nor a trunk


class Evidence(enum.IntEnum):
    NONE = 0
    SHAPE = 1
    TECHNOLOGY = 2
    CONFIGURED = 3


class Context(enum.IntEnum):
    NEUTRAL = 0
    INBOUND = 1
    INTERNAL = 2


def split_channel(channel: str) -> tuple[str, str] | None:
    """``(technology, endpoint)`` of an Asterisk channel name, or None when it is not one.

    ``SIP/201-00000a1b`` -> ``("SIP", "201")`` (the suffix after the last ``-`` is the channel's
    sequence number); ``Local/201@from-queue-0000;1`` -> ``("Local", "201")`` (the extension before
    ``@``); ``SIP/trunk-provider-0000001f`` -> ``("SIP", "trunk-provider")``.
    """
    tech, slash, rest = channel.strip().partition("/")
    if not slash or not tech or not rest:
        return None
    if tech.upper() == "LOCAL":
        endpoint = rest.split("@", 1)[0]
    else:
        endpoint = rest.rsplit("-", 1)[0] if "-" in rest else rest
    return tech, endpoint


def context_class(context: str) -> Context:
    name = context.strip().lower()
    if name.startswith(INBOUND_CONTEXT_PREFIXES) or name.endswith(INBOUND_CONTEXT_SUFFIXES):
        return Context.INBOUND
    if name.startswith(INTERNAL_CONTEXT_PREFIXES) or name.endswith(INTERNAL_CONTEXT_SUFFIXES):
        return Context.INTERNAL
    return Context.NEUTRAL


def digits_of(number: str | None) -> str:
    """The digits of a phone number (``+1 (212) 555-0100`` -> ``12125550100``)."""
    return "".join(_DIGITS.findall(number or ""))


@dataclass(frozen=True)
class PbxConfig:
    """A client's own lines: trunk patterns, extension ranges (inclusive) and DIDs (digits only).

    Trunk patterns are shell-style globs matched case-insensitively against ``TECH/endpoint`` and
    against the bare endpoint: ``SIP/4055501``, ``trunk-*``, ``PJSIP/voip*``. DIDs are the numbers
    callers dial to reach the client: a call to one is inbound.
    """

    trunks: tuple[str, ...] = ()
    extensions: tuple[tuple[int, int], ...] = ()
    dids: tuple[str, ...] = ()

    @property
    def empty(self) -> bool:
        return not (self.trunks or self.extensions or self.dids)

    def in_extensions(self, endpoint: str) -> bool:
        if not endpoint.isdigit():
            return False
        value = int(endpoint)
        return any(low <= value <= high for low, high in self.extensions)

    def is_trunk_pattern(self, tech: str, endpoint: str) -> bool:
        full = f"{tech}/{endpoint}".lower()
        return any(fnmatch.fnmatchcase(full, p.lower()) or fnmatch.fnmatchcase(endpoint.lower(), p.lower())
                   for p in self.trunks)

    def is_did(self, number: str | None) -> bool:
        digits = digits_of(number)
        return bool(digits) and digits in self.dids

    def classify(self, channel: str) -> tuple[Kind, Evidence]:
        """What a channel's endpoint is, and on what evidence (see the module docstring)."""
        parts = split_channel(channel)
        if parts is None:
            return Kind.UNKNOWN, Evidence.NONE
        return self.classify_endpoint(*parts)

    def classify_endpoint(self, tech: str, endpoint: str) -> tuple[Kind, Evidence]:
        upper = tech.upper()
        if upper == "LOCAL":
            return Kind.LOCAL, Evidence.NONE
        if self.trunks and self.is_trunk_pattern(tech, endpoint):
            return Kind.TRUNK, Evidence.CONFIGURED
        if self.extensions:
            return (Kind.PHONE if self.in_extensions(endpoint) else Kind.TRUNK), Evidence.CONFIGURED
        if upper in TRUNK_TECHNOLOGIES:
            return Kind.TRUNK, Evidence.TECHNOLOGY
        if EXTENSION_SHAPE.fullmatch(endpoint):
            return Kind.PHONE, Evidence.SHAPE
        if _HAS_LETTER.search(endpoint):
            return Kind.TRUNK, Evidence.SHAPE
        return Kind.UNKNOWN, Evidence.NONE

    def extension_of(self, channel: str) -> str | None:
        """The extension behind a phone channel or a Local channel to an extension, else None.

        ``SIP/201-00000a1b``, ``PJSIP/201-00000a1b`` and ``Local/201@from-queue-0000;1`` give ``201``;
        a trunk gives None. With extension ranges configured, only extensions inside them count.
        """
        parts = split_channel(channel)
        return None if parts is None else self.extension_of_endpoint(*parts)

    def extension_of_endpoint(self, tech: str, endpoint: str) -> str | None:
        if tech.upper() == "LOCAL":
            if not endpoint.isdigit() or not 2 <= len(endpoint) <= 6:
                return None
            return endpoint if not self.extensions or self.in_extensions(endpoint) else None
        kind, _ = self.classify_endpoint(tech, endpoint)
        return endpoint if kind is Kind.PHONE else None

    def to_json(self) -> dict:
        return {"trunks": list(self.trunks), "extensions": [f"{a}-{b}" if a != b else str(a) for a, b in self.extensions],
                "dids": list(self.dids)}

    def describe(self) -> str:
        parts = [f"trunks {', '.join(self.trunks)}" if self.trunks else "",
                 f"extensions {', '.join(self.to_json()['extensions'])}" if self.extensions else "",
                 f"DIDs {', '.join(self.dids)}" if self.dids else ""]
        return "; ".join(p for p in parts if p) or "nothing configured"

    def merged(self, other: PbxConfig) -> PbxConfig:
        """``other``'s non-empty parts replace this one's (command-line options over the stored config)."""
        return PbxConfig(trunks=other.trunks or self.trunks, extensions=other.extensions or self.extensions,
                         dids=other.dids or self.dids)


def parse_extension_ranges(values: list[str] | tuple[str, ...], field: str = "--extensions") -> tuple[tuple[int, int], ...]:
    """``["100-399", "500"]`` or ``["100-399,500"]`` -> ``((100, 399), (500, 500))``."""
    ranges: list[tuple[int, int]] = []
    for value in values:
        for part in str(value).split(","):
            part = part.strip()
            if not part:
                continue
            match = re.fullmatch(r"(\d{1,9})\s*(?:-\s*(\d{1,9}))?", part)
            if match is None:
                raise InvalidInput(field, f"{part!r} is not an extension or a range like 100-399")
            low = int(match.group(1))
            high = int(match.group(2)) if match.group(2) else low
            if high < low:
                raise InvalidInput(field, f"{part!r}: the range ends before it starts")
            ranges.append((low, high))
    return tuple(ranges)


def parse_trunks(values: list[str] | tuple[str, ...], field: str = "--trunk") -> tuple[str, ...]:
    patterns: list[str] = []
    for value in values:
        for part in str(value).split(","):
            part = part.strip()
            if not part:
                continue
            if len(part) > 128 or any(c.isspace() for c in part):
                raise InvalidInput(field, f"{part!r} is not a channel pattern like SIP/4055501 or trunk-*")
            patterns.append(part)
    return tuple(patterns)


def parse_dids(values: list[str] | tuple[str, ...], field: str = "--did") -> tuple[str, ...]:
    dids: list[str] = []
    for value in values:
        for part in str(value).split(","):
            if not part.strip():
                continue
            digits = digits_of(part)
            if not 3 <= len(digits) <= 20 or re.search(r"[^\d+\s().-]", part.strip()):
                raise InvalidInput(field, f"{part.strip()!r} is not a phone number")
            dids.append(digits)
    return tuple(dids)


def pbx_config(trunks: list[str] | tuple[str, ...] = (), extensions: list[str] | tuple[str, ...] = (),
               dids: list[str] | tuple[str, ...] = ()) -> PbxConfig:
    """A validated :class:`PbxConfig` from option values (each may hold comma-separated items)."""
    return PbxConfig(trunks=parse_trunks(trunks), extensions=parse_extension_ranges(extensions), dids=parse_dids(dids))


def config_from_json(text: str | None) -> PbxConfig:
    if not text:
        return PbxConfig()
    raw = json.loads(text)
    return pbx_config(raw.get("trunks", ()), raw.get("extensions", ()), raw.get("dids", ()))
