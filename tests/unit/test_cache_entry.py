"""Cache entries read back are checked: a FetchedAt that is not a finite time, or more than a minute ahead of now,
makes the entry unreadable (a miss), so no entry can stay fresh forever."""

from __future__ import annotations

import json
from typing import Any

import pytest

from waba_lookup.cache import SCHEMA, CacheEntry

NOW = 1_800_000_000.0
BINDING = "b" * 40


def stored(fetched_at: Any) -> bytes:
    """An entry as the cache writes it, with this FetchedAt (json.dumps writes Infinity and NaN as bare words)."""
    document = {"SchemaVersion": SCHEMA, "FetchedAt": fetched_at, "IsvBinding": BINDING, "Result": "OK"}
    return json.dumps(document | {"Body": {"Code": "OK"}, "Error": None}).encode()


@pytest.mark.parametrize(
    "fetched_at",
    [float("inf"), float("-inf"), float("nan"), NOW + 61, NOW + 10**9, 10**400, "1800000000", "Infinity", True, None],
    ids=[
        "Infinity",
        "-Infinity",
        "NaN",
        "61 s ahead",
        "years ahead",
        "too big for a float",
        "a string",
        "the string Infinity",
        "a bool",
        "null",
    ],
)
def test_an_untrustworthy_fetched_at_makes_the_entry_unreadable(fetched_at: Any) -> None:
    with pytest.raises((ValueError, TypeError)):  # what WabaCache.get takes for an unreadable entry: a logged miss
        CacheEntry.from_json(stored(fetched_at), BINDING, now=NOW)


@pytest.mark.parametrize("fetched_at", [NOW, NOW - 86_400, NOW + 59, 1_700_000_000])
def test_a_sane_fetched_at_is_read(fetched_at: float) -> None:
    entry = CacheEntry.from_json(stored(fetched_at), BINDING, now=NOW)
    assert entry is not None and entry.fetched_at == fetched_at and entry.body == {"Code": "OK"}


def test_now_defaults_to_the_wall_clock() -> None:
    import time

    assert CacheEntry.from_json(stored(time.time()), BINDING) is not None
    with pytest.raises(ValueError):
        CacheEntry.from_json(stored(time.time() + 3600), BINDING)


def test_a_deeply_nested_object_is_unreadable_not_a_crash() -> None:
    with pytest.raises(ValueError):
        CacheEntry.from_json(b"[" * 100_000, BINDING, now=NOW)
