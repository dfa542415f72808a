"""The S3 cache: one JSON object per (account, CustSpaceId, IsvCode), never served across IsvCodes.

The IsvCode is bound through a digest in the object key, so a different or missing IsvCode names another
object; it is never stored in clear. A failing S3 never fails a lookup: reads miss, writes are dropped, and
both are logged and counted.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from waba_lookup.aws import fail_fast_client
from waba_lookup.customer import Customer
from waba_lookup.errors import Denied
from waba_lookup.observability import count, logger

SCHEMA = 1
DENIED_TTL_SECONDS = 60  # a 403-class answer is cached briefly: permissions get fixed


@dataclass(frozen=True)
class CacheEntry:
    """What CAMS answered and when: a success body, or a 403-class error."""

    fetched_at: float
    body: dict[str, Any] | None = None
    error: dict[str, str | None] | None = None
    stored: bool = field(default=False, compare=False)  # whether the last write reached S3

    @classmethod
    def denied(cls, error: Denied, fetched_at: float) -> CacheEntry:
        return cls(fetched_at, error={"Code": error.code, "Message": error.message, "RequestId": error.request_id})

    def age(self, now: float) -> float:
        return max(0.0, now - self.fetched_at)

    def is_fresh(self, now: float, ttl: float) -> bool:
        return self.age(now) < (ttl if self.body is not None else min(ttl, DENIED_TTL_SECONDS))

    def is_servable_stale(self, now: float, ttl: float, stale: float) -> bool:
        """A success entry that may still be served when CAMS fails or throttles."""
        return self.body is not None and self.age(now) < ttl + stale

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
        return json.dumps(document, ensure_ascii=False, separators=(",", ":")).encode()

    @classmethod
    def from_json(cls, raw: bytes, binding: str) -> CacheEntry | None:
        document = json.loads(raw)
        if not isinstance(document, dict):
            return None
        if document.get("SchemaVersion") != SCHEMA or document.get("IsvBinding") != binding:
            return None
        body, error = document.get("Body"), document.get("Error")
        if not isinstance(body, dict) and not isinstance(error, dict):
            return None
        return cls(float(document["FetchedAt"]), body if isinstance(body, dict) else None, error)


class WabaCache:
    """Read and write cache entries in one bucket under a prefix and the account's scope."""

    def __init__(self, bucket: str, prefix: str, account_scope: str, s3_client: Any = None) -> None:
        self.bucket = bucket
        self.prefix = prefix
        self.account_scope = account_scope
        self._s3 = s3_client

    def binding(self, customer: Customer) -> str:
        """The digest that binds an entry to its account, CustSpaceId and IsvCode (absent IsvCode included)."""
        material = "\0".join((self.account_scope, customer.cust_space_id or "", customer.isv_code or ""))
        return hashlib.sha256(material.encode()).hexdigest()[:40]

    def object_key(self, customer: Customer) -> str:
        space = customer.cust_space_id or "_own"
        return f"{self.prefix}{self.account_scope}/{space}/{self.binding(customer)}.json"

    def get(self, customer: Customer) -> CacheEntry | None:
        """The entry, or None when there is none, it is unreadable, or S3 fails."""
        key = self.object_key(customer)
        try:
            raw = self._client().get_object(Bucket=self.bucket, Key=key)["Body"].read()
        except (BotoCoreError, ClientError) as exc:
            if _error_code(exc) not in ("NoSuchKey", "404"):
                self._failed("read", key, exc)
            return None
        try:
            return CacheEntry.from_json(raw, self.binding(customer))
        except (ValueError, KeyError, TypeError):
            logger.warning("unreadable cache entry ignored", extra={"cache_key": key})
            return None

    def put(self, customer: Customer, entry: CacheEntry) -> bool:
        """Write the entry; an S3 failure is logged and counted, never raised. True when written."""
        key = self.object_key(customer)
        try:
            self._client().put_object(
                Bucket=self.bucket,
                Key=key,
                Body=entry.to_json(self.binding(customer), customer),
                ContentType="application/json",
            )
        except (BotoCoreError, ClientError) as exc:
            self._failed("write", key, exc)
            return False
        return True

    def _failed(self, operation: str, key: str, exc: BaseException) -> None:
        logger.warning(
            f"cache {operation} failed; continuing without the cache",
            extra={"cache_key": key, "error_type": type(exc).__name__, "error_code": _error_code(exc)},
        )
        count("CacheFailures")

    def _client(self) -> Any:
        if self._s3 is None:
            # a failed read falls through to CAMS; a failed refresh write goes back to the queue
            self._s3 = fail_fast_client("s3")
        return self._s3


def _error_code(exc: BaseException) -> str | None:
    response = getattr(exc, "response", None)
    return response.get("Error", {}).get("Code") if isinstance(response, dict) else None
