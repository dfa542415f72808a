"""Cache entries read back are checked: a FetchedAt that is not a finite time, or more than a minute ahead of now,
makes the entry unreadable (a miss), so no entry can stay fresh forever."""

from __future__ import annotations

import json
from typing import Any

import pytest

from waba_lookup.cache import SCHEMA, CacheEntry
from waba_lookup.customer import Customer
from waba_lookup.errors import Denied

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


def denial(previous: CacheEntry | None, at: float = NOW) -> CacheEntry:
    return CacheEntry.denied(Denied("no", "Ram.PermissionDeny", "r-1"), at, previous)


def round_trip(entry: CacheEntry) -> CacheEntry | None:
    return CacheEntry.from_json(entry.to_json(BINDING, Customer("cs-1")), BINDING, now=NOW)


def test_a_denial_keeps_the_last_good_body_through_later_denials_and_the_store() -> None:
    good = CacheEntry(NOW - 500, {"Code": "OK", "Data": {"Id": "1"}})
    twice = denial(denial(good, NOW - 100))
    assert twice.last_good == good and round_trip(twice) == twice
    assert denial(None).last_good is None and denial(CacheEntry(NOW, error={"Code": "x"})).last_good is None


def test_the_last_good_body_is_served_stale_only_once_the_denial_is_past_fresh() -> None:
    good = CacheEntry(NOW - 500, {"Code": "OK"})
    ttl, stale = 300, 86_400
    assert denial(good, NOW - 10).servable_stale(NOW, ttl, stale) is None  # the denial is fresh (60 s)
    assert denial(good, NOW - 61).servable_stale(NOW, ttl, stale) == good
    assert denial(good, NOW - 61).servable_stale(NOW, ttl, stale=100) is None  # the good body is past stale too


@pytest.mark.parametrize("last_good", [{"FetchedAt": "x", "Body": {}}, {"FetchedAt": NOW}, [], {"Body": None}])
def test_an_unreadable_last_good_costs_only_the_stale_copy(last_good: Any) -> None:
    document = json.loads(denial(None).to_json(BINDING, Customer()))
    entry = CacheEntry.from_json(json.dumps(document | {"LastGood": last_good}).encode(), BINDING, now=NOW)
    assert entry is not None and entry.error and entry.last_good is None
