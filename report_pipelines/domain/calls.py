"""What a call is, for the reports: one row per call, instants in UTC."""

from __future__ import annotations

import datetime as dt
import enum
from dataclasses import dataclass

import pyarrow as pa


class Direction(str, enum.Enum):
    """Who started the call. UNKNOWN: the PBX's records did not say (an import counts and shows
    these instead of guessing); reports count an unknown call in no direction's figures (it is not
    an offered inbound call), ``call_detail`` lists it as it is."""

    INBOUND = "inbound"
    OUTBOUND = "outbound"
    INTERNAL = "internal"
    UNKNOWN = "unknown"


class Disposition(str, enum.Enum):
    """How a call ended, in the PBX's own vocabulary (Asterisk CDR dispositions, plus ABANDONED).

    ABANDONED is an inbound call whose caller hung up while waiting in a queue; the PBX logs it as
    NO ANSWER, the contact centre counts it apart.
    """

    ANSWERED = "ANSWERED"
    NO_ANSWER = "NO ANSWER"
    BUSY = "BUSY"
    FAILED = "FAILED"
    ABANDONED = "ABANDONED"


DIRECTIONS: tuple[str, ...] = tuple(d.value for d in Direction)
DISPOSITIONS: tuple[str, ...] = tuple(d.value for d in Disposition)

#: Longest text a call column may hold (queue, agent, caller, callee, call id).
MAX_TEXT = 128

#: Type of every instant of a call in Arrow: microseconds, UTC.
INSTANT = pa.timestamp("us", tz="UTC")

#: A call's columns as Arrow tables carry them (reports read these; storage adds the owner in front
#: and the ingest instant behind: ``adapters.db.bulk.CALL_EVENT_SCHEMA``).
CALL_SCHEMA = pa.schema(
    [
        ("pbx_call_id", pa.string()),
        ("direction", pa.string()),
        ("queue", pa.string()),
        ("agent", pa.string()),
        ("caller", pa.string()),
        ("callee", pa.string()),
        ("started_at", INSTANT),
        ("answered_at", INSTANT),
        ("ended_at", INSTANT),
        ("disposition", pa.string()),
        # When the caller entered the queue that answered (or last held) the call: the PBX's
        # queue_log says it; null without one. Waits are measured from it when it is known.
        ("queued_at", INSTANT),
    ]
)


@dataclass(frozen=True, slots=True)
class Call:
    """One call of one client, ready to store. Instants are aware and in UTC."""

    client_id: int
    pbx_call_id: str
    direction: Direction
    started_at: dt.datetime
    ended_at: dt.datetime
    disposition: Disposition
    answered_at: dt.datetime | None = None
    queue: str | None = None
    agent: str | None = None
    caller: str | None = None
    callee: str | None = None
    queued_at: dt.datetime | None = None

    def problems(self) -> list[str]:
        """Why this call cannot be stored as it is (empty when it can)."""
        found: list[str] = []
        if not self.pbx_call_id:
            found.append("pbx_call_id: empty call id")
        elif len(self.pbx_call_id) > MAX_TEXT:
            found.append(f"pbx_call_id: longer than {MAX_TEXT} characters")
        for name in ("started_at", "ended_at", "answered_at", "queued_at"):
            value = getattr(self, name)
            if value is not None and (value.tzinfo is None or value.utcoffset() != dt.timedelta(0)):
                found.append(f"{name}: must be an aware UTC instant")
        if found:
            return found
        if self.ended_at < self.started_at:
            found.append("ended_at: the call ends before it starts")
        if self.answered_at is not None:
            if self.answered_at < self.started_at:
                found.append("answered_at: answered before the call starts")
            elif self.answered_at > self.ended_at:
                found.append("answered_at: answered after the call ends")
        if self.queued_at is not None:
            if not self.started_at <= self.queued_at <= self.ended_at:
                found.append("queued_at: the queue entry is outside the call")
            elif self.answered_at is not None and self.queued_at > self.answered_at:
                found.append("queued_at: queued after the call was answered")
        if self.disposition is Disposition.ANSWERED and self.answered_at is None:
            found.append("answered_at: an ANSWERED call needs an answer time")
        if self.disposition is not Disposition.ANSWERED and self.answered_at is not None:
            found.append(f"disposition: {self.disposition.value} call has an answer time")
        for name in ("queue", "agent", "caller", "callee"):
            value = getattr(self, name)
            if value is not None and len(value) > MAX_TEXT:
                found.append(f"{name}: longer than {MAX_TEXT} characters")
        return found
