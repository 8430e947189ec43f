"""Delivery rules of scheduled report e-mails (pure functions): backoff, attachment size, a reply's
meaning for its recipient, what a file becomes after an attempt, whether a lease still covers a message."""

from __future__ import annotations

import datetime as dt
import random

import pytest

from report_pipelines.domain.delivery import (
    ACCEPTED,
    DEFERRED,
    FAILED,
    LEASE_MARGIN,
    PENDING,
    REFUSED,
    backoff_delay,
    base64_size,
    file_verdict,
    fits,
    lease_holds,
    reply_state,
)


def test_backoff_doubles_from_a_minute_to_an_hour_with_half_of_it_jittered() -> None:
    rng = random.Random(3)
    for attempt, nominal in ((1, 60), (2, 120), (3, 240), (6, 1920), (7, 3600), (20, 3600)):
        delays = [backoff_delay(attempt, rng).total_seconds() for _ in range(200)]
        assert nominal / 2 <= min(delays) and max(delays) <= nominal
        assert max(delays) - min(delays) > nominal / 4  # spread out, not all at once
    assert backoff_delay(1, base=dt.timedelta(seconds=2), rng=rng) <= dt.timedelta(seconds=2)
    with pytest.raises(ValueError):
        backoff_delay(0)


def test_base64_size_and_fits() -> None:
    assert base64_size(0) == 0
    assert base64_size(57) == 76 + 2  # one full line and its CRLF
    assert base64_size(58) == 80 + 4  # a second line
    assert fits(57, 78) and not fits(58, 78)


@pytest.mark.parametrize(("reply", "state"), [
    ("250 2.1.5 Ok", ACCEPTED), ("251 User not local; will forward", ACCEPTED),
    ("450 4.2.1 mailbox busy", DEFERRED), ("451 4.7.1 greylisted, try again later", DEFERRED),
    ("452 4.5.3 too many recipients", DEFERRED), ("550 5.1.1 no such user", REFUSED),
    ("553 5.6.7 needs SMTPUTF8", REFUSED), ("no reply at all", REFUSED),
])
def test_a_reply_decides_its_recipients_state(reply: str, state: str) -> None:
    assert reply_state(reply) == state


def test_a_file_is_sent_when_every_recipient_accepted_or_refused() -> None:
    assert file_verdict({"a": ACCEPTED, "b": ACCEPTED}, attempts=1, max_attempts=5) == "sent"
    assert file_verdict({"a": ACCEPTED, "b": REFUSED}, attempts=1, max_attempts=5) == "sent"
    assert file_verdict({"a": REFUSED, "b": REFUSED}, attempts=1, max_attempts=5) == FAILED  # nobody got it
    assert file_verdict({"a": ACCEPTED, "b": DEFERRED}, attempts=1, max_attempts=5) == "retry"
    assert file_verdict({"a": ACCEPTED, "b": PENDING}, attempts=4, max_attempts=5) == "retry"
    assert file_verdict({"a": ACCEPTED, "b": DEFERRED}, attempts=5, max_attempts=5) == FAILED  # out of attempts
    assert file_verdict({"a": ACCEPTED, "b": FAILED}, attempts=1, max_attempts=5) == "sent"
    assert file_verdict({}, attempts=1, max_attempts=5) == FAILED


def test_a_lease_covers_a_message_only_with_the_margin_to_spare() -> None:
    now = dt.datetime(2024, 3, 12, 13, 0, tzinfo=dt.UTC)
    need = dt.timedelta(seconds=60)
    assert lease_holds(now + need + LEASE_MARGIN, now, need)
    assert not lease_holds(now + need + LEASE_MARGIN - dt.timedelta(microseconds=1), now, need)
    assert not lease_holds(now - dt.timedelta(seconds=1), now, need)
