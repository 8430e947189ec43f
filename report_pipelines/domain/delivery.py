"""Delivery rules of scheduled report e-mails: retries, leases, attachment sizes. Pure functions."""

from __future__ import annotations

import datetime as dt
import math
import random

#: Attempts before a file is given up (the first send included).
DEFAULT_MAX_ATTEMPTS = 5
#: First retry after about a minute, doubling, never more than an hour apart.
BACKOFF_BASE = dt.timedelta(seconds=60)
BACKOFF_CAP = dt.timedelta(hours=1)
#: A claim (building or sending) lasts this long; a crashed worker's claim is taken over after it.
DEFAULT_LEASE = dt.timedelta(minutes=10)
#: Attachments up to this size (after base64) go as they are; larger ones are zipped.
DEFAULT_MAX_ATTACHMENT_BYTES = 10 * 1024 * 1024


def backoff_delay(attempt: int, rng: random.Random | None = None, base: dt.timedelta = BACKOFF_BASE,
                  cap: dt.timedelta = BACKOFF_CAP) -> dt.timedelta:
    """Delay before retry number ``attempt`` (1 = the first retry): exponential with "equal jitter".

    Half of ``min(cap, base * 2**(attempt-1))`` is fixed and half is random, so retries of many
    files spread out (no thundering herd) but never come back sooner than half the nominal delay.
    """
    if attempt < 1:
        raise ValueError("attempt counts from 1")
    nominal = min(cap.total_seconds(), base.total_seconds() * 2 ** (attempt - 1))
    jitter = (rng or random).uniform(0, nominal / 2)
    return dt.timedelta(seconds=nominal / 2 + jitter)


def base64_size(raw_bytes: int) -> int:
    """Bytes an attachment of ``raw_bytes`` takes in a MIME message: base64 (4/3) in 76-column lines."""
    encoded = 4 * math.ceil(raw_bytes / 3)
    return encoded + 2 * math.ceil(encoded / 76)  # CRLF after each line


def fits(raw_bytes: int, limit: int = DEFAULT_MAX_ATTACHMENT_BYTES) -> bool:
    return base64_size(raw_bytes) <= limit


# --- attempts and recipients ----------------------------------------------------------------------
#: Build attempts before a file whose build keeps failing (or whose builder keeps dying) is failed.
DEFAULT_MAX_BUILD_ATTEMPTS = 5
#: A send batch stops starting messages at this deadline and gives the rest back, unclaimed.
DEFAULT_SEND_DEADLINE = dt.timedelta(minutes=5)
#: A lease is only trusted while at least this much more than the message's own time is left of
#: it: the room left for clocks of different machines to disagree.
LEASE_MARGIN = dt.timedelta(seconds=2)
#: A build's heartbeat stops renewing its lease after this long: a hung build is then reclaimed.
MAX_BUILD_TIME = dt.timedelta(hours=1)

PENDING, DEFERRED, ACCEPTED, REFUSED, FAILED = "pending", "deferred", "accepted", "refused", "failed"
#: Recipients still to be sent to.
OPEN_STATES = frozenset({PENDING, DEFERRED})


def reply_state(reply: str) -> str:
    """A recipient's state from the server's reply: 2xx accepted, 4xx deferred, anything else refused."""
    code = int(reply[:3]) if reply[:3].isdigit() else 0
    if 200 <= code < 300:
        return ACCEPTED
    if 400 <= code < 500:
        return DEFERRED
    return REFUSED


def file_verdict(states: dict[str, str], attempts: int, max_attempts: int) -> str:
    """What a file becomes after a send attempt, from its recipients' states.

    ``sent`` once every recipient has accepted or permanently refused and at least one accepted;
    ``failed`` when every one refused, or when recipients are still open after the last attempt
    (they become ``failed`` too); ``retry`` otherwise (the open ones are tried again).
    """
    if not states:
        return FAILED
    if not any(state in OPEN_STATES for state in states.values()):
        return "sent" if ACCEPTED in states.values() else FAILED
    return FAILED if attempts >= max_attempts else "retry"


def lease_holds(lease_end: dt.datetime, now: dt.datetime, needed: dt.timedelta) -> bool:
    """Whether a lease ending at ``lease_end`` still covers ``needed`` more time from ``now``, margin included."""
    return lease_end - now >= needed + LEASE_MARGIN
