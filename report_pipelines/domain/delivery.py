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
