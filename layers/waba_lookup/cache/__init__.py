"""The cache: one JSON object per (account, CustSpaceId, IsvCode) in S3 or OSS, never served across IsvCodes.

The IsvCode is bound through a digest in the object key, so a different or missing IsvCode names another
object; it is never stored in clear. A failing store never fails a lookup: reads miss, writes are dropped, and
both are logged and counted. The stores themselves (s3.py, oss.py) sit behind the `ObjectStore` port and import
their SDK only when built, so neither cloud's SDK is paid for on the other.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from waba_lookup.customer import Customer
from waba_lookup.errors import Denied
from waba_lookup.observability import count, logger

SCHEMA = 1
DENIED_TTL_SECONDS = 60  # a 403-class answer is cached briefly: permissions get fixed
FUTURE_SKEW_SECONDS = 60  # how far ahead of this instance's clock a FetchedAt may be (another instance's clock)


@dataclass(frozen=True)
class CacheEntry:
    """What CAMS answered and when: a success body, or a 403-class error with the last success beside it.

    A denial never destroys the last good body (one bad RAM policy would otherwise erase every stale copy): it is
    kept as `last_good`, never served while the denial is fresh, and served stale once the denial is past fresh and
    CAMS fails or throttles, within CACHE_TTL_SECONDS + CACHE_STALE_SECONDS of its own fetch."""

    fetched_at: float
    body: dict[str, Any] | None = None
    error: dict[str, str | None] | None = None
    last_good: CacheEntry | None = None  # a denial's predecessor with a body
    stored: bool = field(default=False, compare=False)  # whether the last write reached the store

    @classmethod
    def denied(cls, error: Denied, fetched_at: float, previous: CacheEntry | None = None) -> CacheEntry:
        """A 403-class answer, keeping the last good body of the entry it replaces."""
        last_good = previous if previous and previous.body is not None else previous and previous.last_good
        error_fields = {"Code": error.code, "Message": error.message, "RequestId": error.request_id}
        return cls(fetched_at, error=error_fields, last_good=last_good or None)

    def age(self, now: float) -> float:
        return max(0.0, now - self.fetched_at)

    def is_fresh(self, now: float, ttl: float) -> bool:
        return self.age(now) < (ttl if self.body is not None else min(ttl, DENIED_TTL_SECONDS))

    def servable_stale(self, now: float, ttl: float, stale: float) -> CacheEntry | None:
        """The success entry that may be served when CAMS fails or throttles: this one, or a denial's last good
        body once the denial is past fresh; None when neither is younger than `ttl + stale`."""
        if self.body is None:
            usable = self.last_good is not None and not self.is_fresh(now, ttl)
            return self.last_good.servable_stale(now, ttl, stale) if usable and self.last_good else None
        return self if self.age(now) < ttl + stale else None

    def raise_if_denied(self) -> dict[str, Any]:
        """The success body, or the cached 403-class error raised again."""
        if self.body is not None:
            return self.body
        error = self.error or {}
        raise Denied(error.get("Message") or "denied", error.get("Code"), error.get("RequestId"))

    def to_json(self, binding: str, customer: Customer) -> bytes:
        document = {
            "SchemaVersion": SCHEMA,
            "FetchedAt": self.fetched_at,
            "CustSpaceId": customer.cust_space_id,
            "IsvBinding": binding,
            "Result": "OK" if self.body is not None else "DENIED",
            "Body": self.body,
            "Error": self.error,
        }
        if self.last_good is not None:
            document["LastGood"] = {"FetchedAt": self.last_good.fetched_at, "Body": self.last_good.body}
        return json.dumps(document, ensure_ascii=False, separators=(",", ":")).encode()

    @classmethod
    def from_json(cls, raw: bytes, binding: str, now: float | None = None) -> CacheEntry | None:
        """The entry, or None when it is another schema or binding. ValueError or TypeError when it cannot be trusted:
        not JSON, or a FetchedAt that is not a finite time at most a minute past `now` (default: the wall clock)."""
        try:
            document = json.loads(raw)
        except RecursionError:
            raise ValueError("the entry is nested too deeply") from None
        if not isinstance(document, dict):
            return None
        if document.get("SchemaVersion") != SCHEMA or document.get("IsvBinding") != binding:
            return None
        body, error = document.get("Body"), document.get("Error")
        if not isinstance(body, dict) and not isinstance(error, dict):
            return None
        now = time.time() if now is None else now
        fetched_at = _fetched_at(document.get("FetchedAt"), now)
        if isinstance(body, dict):
            return cls(fetched_at, body)
        return cls(fetched_at, None, error, _last_good(document.get("LastGood"), now))


def _last_good(value: Any, now: float) -> CacheEntry | None:
    # an unreadable LastGood costs only the stale copy, never the denial beside it
    if not isinstance(value, dict) or not isinstance(value.get("Body"), dict):
        return None
    try:
        return CacheEntry(_fetched_at(value.get("FetchedAt"), now), value["Body"])
    except (ValueError, TypeError):
        return None


def _fetched_at(value: Any, now: float) -> float:
    # An Infinity, or a time far ahead (a bad clock, a hand-edited object), would keep an entry fresh forever.
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError("FetchedAt is not a number")
    try:
        fetched_at = float(value)
    except OverflowError:
        raise ValueError("FetchedAt is out of range") from None
    if not math.isfinite(fetched_at) or fetched_at > now + FUTURE_SKEW_SECONDS:
        raise ValueError("FetchedAt is not a finite time at most a minute ahead")
    return fetched_at


class ObjectStoreError(Exception):
    """The store failed (unreachable, slow, refused): the cache carries on without it."""

    def __init__(self, code: str | None, error_type: str) -> None:
        super().__init__(code or error_type)
        self.code, self.error_type = code, error_type


class ObjectStore(Protocol):
    """One bucket of an object store, failing fast with no SDK retries."""

    write_seconds: float  # the longest one write can take (its client's timeouts)

    def read(self, key: str) -> bytes | None:
        """The object's bytes, or None when there is no such object; ObjectStoreError on any other failure."""

    def write(self, key: str, data: bytes) -> None:
        """Store a JSON object under the key; ObjectStoreError on failure."""


class WabaCache:
    """Read and write cache entries in one bucket under a prefix and the account's scope."""

    def __init__(
        self, store: ObjectStore, prefix: str, account_scope: str, wall: Callable[[], float] = time.time
    ) -> None:
        self.store = store
        self.prefix = prefix
        self.account_scope = account_scope
        self.wall = wall  # what "now" is when an entry's FetchedAt is checked

    def binding(self, customer: Customer) -> str:
        """The digest that binds an entry to its account, CustSpaceId and IsvCode (absent IsvCode included)."""
        material = "\0".join((self.account_scope, customer.cust_space_id or "", customer.isv_code or ""))
        return hashlib.sha256(material.encode()).hexdigest()[:40]

    def object_key(self, customer: Customer) -> str:
        space = customer.cust_space_id or "_own"
        return f"{self.prefix}{self.account_scope}/{space}/{self.binding(customer)}.json"

    def get(self, customer: Customer) -> CacheEntry | None:
        """The entry, or None when there is none, it is unreadable, or the store fails."""
        key = self.object_key(customer)
        try:
            raw = self.store.read(key)
        except ObjectStoreError as error:
            self._failed("read", key, error)
            return None
        if raw is None:
            return None
        try:
            return CacheEntry.from_json(raw, self.binding(customer), self.wall())
        except (ValueError, KeyError, TypeError):
            logger.warning("unreadable cache entry ignored", extra={"cache_key": key})
            return None

    def put(self, customer: Customer, entry: CacheEntry) -> bool:
        """Write the entry; a store failure is logged and counted, never raised. True when written."""
        key = self.object_key(customer)
        try:
            self.store.write(key, entry.to_json(self.binding(customer), customer))
        except ObjectStoreError as error:
            self._failed("write", key, error)
            return False
        return True

    def _failed(self, operation: str, key: str, error: ObjectStoreError) -> None:
        logger.warning(
            f"cache {operation} failed; continuing without the cache",
            extra={"cache_key": key, "error_type": error.error_type, "error_code": error.code},
        )
        count("CacheFailures")
