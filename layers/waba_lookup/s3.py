"""The S3 object store behind the cache port: botocore's client, one attempt, failing fast."""

from __future__ import annotations

from typing import Any

from waba_lookup.aws import fail_fast_client
from waba_lookup.cache import ObjectStoreError


class S3ObjectStore:
    """One S3 bucket. A failed read falls through to CAMS; a failed refresh write goes back to the queue."""

    def __init__(self, bucket: str, s3_client: Any = None) -> None:
        self.bucket = bucket
        self._s3 = s3_client

    def read(self, key: str) -> bytes | None:
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


def _error_code(exc: BaseException) -> str | None:
    response = getattr(exc, "response", None)
    return response.get("Error", {}).get("Code") if isinstance(response, dict) else None
