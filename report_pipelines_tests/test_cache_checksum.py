"""The source checksum of a client-day: sha256 of its call ids sorted, one per line; the Arrow path
(one buffer) gives the digest the ids give one by one, which manifests already hold."""

from __future__ import annotations

import hashlib
import random

import pyarrow as pa

from report_pipelines.domain.cache import call_ids_checksum


def by_hand(ids: list[str]) -> str:
    return hashlib.sha256("".join(f"{i}\n" for i in sorted(ids)).encode()).hexdigest()


def test_the_arrow_column_and_the_ids_one_by_one_give_the_same_digest() -> None:
    rng = random.Random(3)
    ids = [f"{rng.randint(0, 10**9)}.{i}" for i in range(5_000)] + ["", "ação", "ação", "日本-1", "Z", "a", "a\tb"]
    rng.shuffle(ids)
    expected = by_hand(ids)
    assert call_ids_checksum(ids) == expected
    assert call_ids_checksum(pa.array(ids)) == expected
    assert call_ids_checksum(pa.chunked_array([pa.array(ids[:1234]), pa.array(ids[1234:])])) == expected
    assert call_ids_checksum(pa.array(["x", *ids[:10], "y"]).slice(1, 10)) == by_hand(ids[:10])  # an offset
    assert call_ids_checksum(pa.array([], pa.string())) == call_ids_checksum([]) == hashlib.sha256().hexdigest()
    assert call_ids_checksum(pa.array(["b", "a"])) == hashlib.sha256(b"a\nb\n").hexdigest()
