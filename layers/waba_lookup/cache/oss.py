"""The OSS object store behind the cache port: V4 signatures, one attempt, failing fast.

Writes go through alibabacloud-oss-v2, imported at the first write (a quarter of a second of imports: requests,
pycryptodome). Reads are one GET signed here with OSS4-HMAC-SHA256 (`signed_get`), addressed as the SDK addresses
it (virtual-hosted, path-style for an IP endpoint), so that a cold instance's first cache HIT loads no SDK.
Credentials are the ALIBABA_CLOUD_* variables, read at every request: on Function Compute they are the function
role's STS credentials, renewed by the platform.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote, urlsplit

from waba_lookup.cache import ObjectStoreError, signed_get
from waba_lookup.credentials import Credentials, FunctionCredentials

CONNECT_SECONDS, READ_SECONDS = 1, 2  # as for S3: FAIL_FAST_SECONDS in all


class OssObjectStore:
    """One OSS bucket. A failed read falls through to CAMS; a failed refresh write goes back to the queue."""

    write_seconds = float(CONNECT_SECONDS + READ_SECONDS)

    def __init__(
        self, bucket: str, region: str, endpoint: str, credentials: Credentials | None = None, client: Any = None
    ) -> None:
        self.bucket, self.region, self.endpoint = bucket, region, endpoint
        self._credentials = credentials or FunctionCredentials()
        self._oss = client
        self._path = signed_get.ReadPath(signed=client is None)  # a client given: every call goes through it

    def read(self, key: str) -> bytes | None:
        return self._path.read(lambda: signed_get.fetch(*self.signed_get_request(key)), lambda: self._read_sdk(key))

    def _read_sdk(self, key: str) -> bytes | None:
        import alibabacloud_oss_v2 as oss

        try:
            result = self._client().get_object(oss.GetObjectRequest(bucket=self.bucket, key=key))
            with result.body as body:
                data: bytes = body.read()
        except Exception as exc:  # noqa: BLE001 - the SDK wraps every failure; each is classified here
            error = _store_error(exc)
            if error.code == "NoSuchKey":
                return None
            raise error from None
        return data

    def write(self, key: str, data: bytes) -> None:
        import alibabacloud_oss_v2 as oss

        request = oss.PutObjectRequest(bucket=self.bucket, key=key, body=data, content_type="application/json")
        try:
            self._client().put_object(request)
        except Exception as exc:  # noqa: BLE001
            raise _store_error(exc) from None

    def signed_get_request(self, key: str, now: float | None = None) -> tuple[str, dict[str, str]]:
        """The URL and signed headers of a GET of the object (signed now, or at `now`), addressed as the SDK
        addresses it."""
        access = self._credentials.current()
        if access is None:
            raise ObjectStoreError("NoCredentials", "CredentialsEmptyError")
        endpoint = urlsplit(self.endpoint)
        if signed_get.is_ip(endpoint.hostname or ""):
            host, path = endpoint.netloc, f"/{quote(self.bucket)}/{quote(key)}"
        else:
            host, path = f"{self.bucket}.{endpoint.netloc}", f"/{quote(key)}"
        canonical_uri = quote(f"/{self.bucket}/{key}", safe="/")
        headers = signed_get.sign_get(
            signed_get.OSS,
            host,
            canonical_uri,
            self.region,
            access.access_key_id,
            access.access_key_secret,
            access.security_token,
            now,
        )
        return f"{endpoint.scheme}://{host}{path}", {"Host": host, **headers}

    def _client(self) -> Any:
        if self._oss is None:
            self._oss = build_client(self.region, self.endpoint, self._credentials)
        return self._oss


def build_client(region: str, endpoint: str, credentials: Credentials) -> Any:
    """An OSS client: V4 signing, no retries, short timeouts, credentials read at every request."""
    import alibabacloud_oss_v2 as oss

    def current() -> Any:
        key = credentials.current()
        if key is None:
            raise ObjectStoreError("NoCredentials", "CredentialsEmptyError")
        return oss.credentials.Credentials(key.access_key_id, key.access_key_secret, key.security_token)

    config = oss.config.Config(
        region=region,
        endpoint=endpoint,
        signature_version="v4",
        credentials_provider=oss.credentials.CredentialsProviderFunc(current),
        retryer=oss.retry.NopRetryer(),
        connect_timeout=CONNECT_SECONDS,
        readwrite_timeout=READ_SECONDS,
    )
    return oss.Client(config)


def _store_error(exc: BaseException) -> ObjectStoreError:
    """The OSS error code (NoSuchKey, SignatureDoesNotMatch, …) or the failure's type, nothing more: the SDK's
    messages carry the request's endpoint and, for signatures, the string that was signed."""
    if isinstance(exc, ObjectStoreError):
        return exc
    cause: BaseException = exc
    unwrap = getattr(exc, "unwrap", None)
    if callable(unwrap) and isinstance(unwrap(), BaseException):
        cause = unwrap()
    if isinstance(cause, ObjectStoreError):
        return cause
    code = getattr(cause, "code", None)
    return ObjectStoreError(code if isinstance(code, str) and code else None, type(cause).__name__)
