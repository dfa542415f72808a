"""The S3 object store behind the cache port: one attempt, failing fast.

Reads are one GET signed here (`signed_get`) when the environment is Lambda's, else botocore's client; every write
goes through botocore. When each path is taken: docs/architecture.md#cache-reads-without-an-sdk.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote, urlsplit

from waba_lookup.cache import ObjectStoreError, signed_get
from waba_lookup.observability import tracer
from waba_lookup.platforms.aws import FAIL_FAST_SECONDS, fail_fast_client

# the regions of the aws partition (not aws-cn, aws-us-gov, the iso partitions)
_STANDARD_REGION = re.compile(r"(?!us-gov-)(af|ap|ca|eu|il|me|mx|sa|us)-[a-z]+-\d{1,2}")
# a bucket name botocore puts in the host name: no dots, not a directory bucket (--x-s3) or an alias (--op-s3, -s3alias)
_VIRTUAL_HOSTABLE = re.compile(r"(?!.*(--x-s3|--op-s3|-s3alias)$)[a-z0-9][a-z0-9-]{1,61}[a-z0-9]")
_BOTOCORE_ONLY = (
    "AWS_USE_FIPS_ENDPOINT",
    "AWS_USE_DUALSTACK_ENDPOINT",
    "AWS_CA_BUNDLE",
    "AWS_PROFILE",
    "AWS_SECURITY_TOKEN",  # botocore's legacy name for the session token
    "HTTPS_PROXY",
    "https_proxy",
    "HTTP_PROXY",
    "http_proxy",
)


class S3ObjectStore:
    """One S3 bucket. A failed read falls through to CAMS; a failed refresh write goes back to the queue."""

    write_seconds = FAIL_FAST_SECONDS

    def __init__(self, bucket: str, s3_client: Any = None, environ: Mapping[str, str] = os.environ) -> None:
        self.bucket = bucket
        self._s3 = s3_client  # given: every call goes through it
        self._environ = environ
        self._path = signed_get.ReadPath(signed=s3_client is None)

    def read(self, key: str) -> bytes | None:
        request = signed_get_request(self.bucket, key, self._environ) if self._path.signed and not tracer.on else None
        if request is None:  # the environment needs botocore
            return self._read_sdk(key)
        return self._path.read(lambda: signed_get.fetch(*request), lambda: self._read_sdk(key))

    def _read_sdk(self, key: str) -> bytes | None:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            body: bytes = self._client().get_object(Bucket=self.bucket, Key=key)["Body"].read()
        except (BotoCoreError, ClientError) as exc:
            code = _error_code(exc)
            if code in ("NoSuchKey", "404"):
                return None
            raise ObjectStoreError(code, type(exc).__name__) from None
        return body

    def write(self, key: str, data: bytes) -> None:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            self._client().put_object(Bucket=self.bucket, Key=key, Body=data, ContentType="application/json")
        except (BotoCoreError, ClientError) as exc:
            raise ObjectStoreError(_error_code(exc), type(exc).__name__) from None

    def _client(self) -> Any:
        if self._s3 is None:
            self._s3 = fail_fast_client("s3")
        return self._s3


def signed_get_request(
    bucket: str, key: str, environ: Mapping[str, str], now: float | None = None
) -> tuple[str, dict[str, str]] | None:
    """The URL and signed headers of a GET of the object (signed now, or at `now`), as botocore would send it; or
    None when the environment needs botocore."""
    key_id, secret = environ.get("AWS_ACCESS_KEY_ID", "").strip(), environ.get("AWS_SECRET_ACCESS_KEY", "").strip()
    token, region = environ.get("AWS_SESSION_TOKEN", "").strip(), environ.get("AWS_DEFAULT_REGION", "").strip()
    if not (key_id and secret and region) or any(_on(environ.get(name)) for name in _BOTOCORE_ONLY):
        return None
    endpoint = environ.get("AWS_ENDPOINT_URL_S3") or environ.get("AWS_ENDPOINT_URL")
    if _on(environ.get("AWS_IGNORE_CONFIGURED_ENDPOINT_URLS")):
        endpoint = None
    if endpoint:  # path-style, as botocore addresses a configured endpoint
        parts = urlsplit(endpoint.strip())
        if parts.scheme not in ("http", "https") or parts.path.strip("/") or parts.query or "@" in parts.netloc:
            return None
        base, path = f"{parts.scheme}://{parts.netloc}", f"/{quote(bucket)}/{quote(key)}"
    elif _STANDARD_REGION.fullmatch(region) and _VIRTUAL_HOSTABLE.fullmatch(bucket):
        regional = region != "us-east-1" or environ.get("AWS_S3_US_EAST_1_REGIONAL_ENDPOINT", "").lower() == "regional"
        base = f"https://{bucket}.s3.{region}.amazonaws.com" if regional else f"https://{bucket}.s3.amazonaws.com"
        path = f"/{quote(key)}"
    else:
        return None
    scheme, netloc = base.split("://", 1)
    host = signed_get.host_header(scheme, netloc)
    headers = signed_get.sign_get(signed_get.AWS_S3, host, path, region, key_id, secret, token or None, now)
    return base + path, {"Host": host, **headers}


def _on(value: str | None) -> bool:
    return value is not None and value.strip().lower() not in ("", "false", "0")


def _error_code(exc: BaseException) -> str | None:
    response = getattr(exc, "response", None)
    return response.get("Error", {}).get("Code") if isinstance(response, dict) else None
