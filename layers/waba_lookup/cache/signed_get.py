"""A cache HIT's one GET, signed here and sent over the standard library: no cloud SDK on the path most reads take.

Signature V4 for S3 and OSS4-HMAC-SHA256 for OSS, one attempt, HTTPS verified as the SDKs verify it.
Why, and how it sends: docs/architecture.md#cache-reads-without-an-sdk.
"""

from __future__ import annotations

import hashlib
import hmac
import http.client
import re
import select
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from typing import Any
from urllib.parse import urlsplit

CONNECT_SECONDS, READ_SECONDS = 1.0, 2.0
EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()
_ERROR_CODE = re.compile(rb"<Code>([^<]{1,200})</Code>")


@dataclass(frozen=True)
class V4Scheme:
    """One cloud's names for the Signature V4 scheme."""

    algorithm: str
    key_prefix: str
    terminator: str
    service: str
    header_prefix: str
    signs_host: bool  # SigV4 signs Host; OSS signs only its own headers unless told to sign more


AWS_S3 = V4Scheme("AWS4-HMAC-SHA256", "AWS4", "aws4_request", "s3", "x-amz-", signs_host=True)
OSS = V4Scheme("OSS4-HMAC-SHA256", "aliyun_v4", "aliyun_v4_request", "oss", "x-oss-", signs_host=False)


def sign_get(
    scheme: V4Scheme,
    host: str,
    canonical_uri: str,
    region: str,
    key_id: str,
    secret: str,
    token: str | None = None,
    now: float | None = None,
) -> dict[str, str]:
    """The headers of a GET (no query, no body) signed with the scheme: its date, payload hash, token and
    Authorization. `canonical_uri` is the path as the scheme signs it (S3: as sent; OSS: /bucket/key)."""
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(time.time() if now is None else now))
    prefix = scheme.header_prefix
    payload = EMPTY_SHA256 if scheme is AWS_S3 else "UNSIGNED-PAYLOAD"
    headers = {f"{prefix}content-sha256": payload, f"{prefix}date": stamp}
    if token and token.strip():
        headers[f"{prefix}security-token"] = token.strip()
    signed = {**headers, "host": host} if scheme.signs_host else dict(headers)
    names = sorted(signed)
    canonical_headers = "".join(f"{name}:{signed[name].strip()}\n" for name in names)
    signed_names = ";".join(names) if scheme.signs_host else ""  # OSS: the additional headers, none here
    canonical = f"GET\n{canonical_uri}\n\n{canonical_headers}\n{signed_names}\n{payload}"  # no query
    scope = f"{stamp[:8]}/{region}/{scheme.service}/{scheme.terminator}"
    to_sign = "\n".join([scheme.algorithm, stamp, scope, hashlib.sha256(canonical.encode()).hexdigest()])
    signing_key = (scheme.key_prefix + secret).encode()
    for part in (stamp[:8], region, scheme.service, scheme.terminator):
        signing_key = hmac.new(signing_key, part.encode(), hashlib.sha256).digest()
    signature = hmac.new(signing_key, to_sign.encode(), hashlib.sha256).hexdigest()
    if scheme.signs_host:
        authorization = f"{scheme.algorithm} Credential={key_id}/{scope}, SignedHeaders={signed_names}, "
    else:
        authorization = f"{scheme.algorithm} Credential={key_id}/{scope},"
    headers["Authorization"] = f"{authorization}Signature={signature}"
    return headers


@dataclass(frozen=True)
class Reply:
    status: int
    body: bytes
    headers: dict[str, str]  # names in lower case

    @property
    def error_code(self) -> str | None:
        """The <Code> of an S3 or OSS XML error body."""
        found = _ERROR_CODE.search(self.body)
        return found.group(1).decode(errors="replace") if found else None


class _Connections(threading.local):
    def __init__(self) -> None:
        self.open: dict[tuple[str, str], http.client.HTTPConnection] = {}


_connections = _Connections()


def get(url: str, headers: dict[str, str]) -> Reply:
    """GET the URL with these headers (Host among them, as signed) over this thread's connection to its host.
    Raises OSError (refused, unreachable, timed out), http.client.HTTPException (a malformed or cut-off answer) or
    ValueError (a header value http.client refuses)."""
    parts = urlsplit(url)
    where = (parts.scheme, parts.netloc)
    path = parts.path + (f"?{parts.query}" if parts.query else "")
    connection = _connections.open.pop(where, None)
    if connection is not None and _closed_by_peer(connection):
        connection.close()
        connection = None
    reused = connection is not None
    while True:
        if connection is None:
            connection = _connect(parts.scheme, parts.netloc)
        try:
            connection.request("GET", path, headers=headers)
            response = connection.getresponse()
        except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError):
            connection.close()
            if not reused:
                raise
            reused, connection = False, None  # closed under us before any answer: once more, on a new connection
            continue
        except BaseException:
            connection.close()
            raise
        try:
            body = response.read()
        except BaseException:  # cut off or timed out mid-answer: never retried, never reused
            connection.close()
            raise
        if response.will_close:
            connection.close()
        else:
            _connections.open[where] = connection
        return Reply(response.status, body, {name.lower(): value for name, value in response.getheaders()})


def fetch(url: str, headers: dict[str, str]) -> Reply:
    """get(), any failure to get an answer raised as ObjectStoreError with the failure's type alone (an exception's
    message could hold the request's headers)."""
    from waba_lookup.cache import ObjectStoreError

    try:
        return get(url, headers)
    except Exception as exc:  # noqa: BLE001 - OSError, HTTPException, a header value refused: each a failed read
        raise ObjectStoreError(None, type(exc).__name__) from None


class ReadPath:
    """How an instance reads one store: the signed GET, until a signed read fails where the SDK's read of the same
    object does not; from then on the SDK's, for the instance's life.

    A signing regression, or a request the real service judges otherwise than the stand-ins (SignatureDoesNotMatch,
    AccessDenied, a redirect, a 400), would otherwise quietly turn every HIT into a CAMS call. So any failure but a
    missing object or a timeout (which the SDK would meet as well) is retried once through the SDK, and a success
    there is logged once, naming the failure's code, and counted as a cache failure (the CacheFailures alarm)."""

    def __init__(self, signed: bool = True) -> None:
        self.signed = signed

    def read(self, signed: Callable[[], Reply], sdk: Callable[[], bytes | None]) -> bytes | None:
        """The object (None: no such object) through the path in use; ObjectStoreError when it cannot be read."""
        from waba_lookup.cache import ObjectStoreError

        if not self.signed:
            return sdk()
        try:
            return object_or_none(signed())  # the object, or None for a missing one, as any read takes them
        except ObjectStoreError as error:
            if error.error_type in ("TimeoutError", "timeout"):
                raise
            failure = error.code or error.error_type
        data = sdk()  # raises if the SDK fails too: then it is the store's failure, not the signing's
        self.signed = False
        from waba_lookup.observability import count, logger

        logger.warning(
            "signed cache read failed where the SDK's did not: reading through the SDK from now on",
            extra={"error_code": failure},
        )
        count("CacheFailures")
        return data


def object_or_none(reply: Reply) -> bytes | None:
    """An object store's answer to a GET: the object, None for no such key (a 404 NoSuchKey, or a 404 without an
    error body, as botocore reads one), or ObjectStoreError with the error's code."""
    from waba_lookup.cache import ObjectStoreError

    if reply.status == 200:
        return reply.body
    code = reply.error_code
    if reply.status == 404 and code in ("NoSuchKey", None):
        return None
    raise ObjectStoreError(code or str(reply.status), f"HTTP{reply.status}")


def is_ip(hostname: str) -> bool:
    """Whether a URL's host name is an IPv4 or IPv6 address (path-style addressing, for S3 and OSS alike)."""
    for family in (socket.AF_INET, socket.AF_INET6):
        try:
            socket.inet_pton(family, hostname)
        except OSError:
            continue
        return True
    return False


def host_header(scheme: str, netloc: str) -> str:
    """The Host header the SDKs send for an endpoint: lower case, without the scheme's default port."""
    return netloc.lower().removesuffix(":443" if scheme == "https" else ":80")


def _closed_by_peer(connection: http.client.HTTPConnection) -> bool:
    """Whether an idle kept-alive connection has been closed (or written to) by the server: readable means so."""
    sock = connection.sock
    if sock is None:
        return True
    try:
        readable, _, _ = select.select([sock], [], [], 0)
    except (OSError, ValueError):
        return True
    return bool(readable)


def _connect(scheme: str, netloc: str) -> http.client.HTTPConnection:
    connection: http.client.HTTPConnection
    if scheme == "https":
        connection = http.client.HTTPSConnection(netloc, timeout=CONNECT_SECONDS, context=_tls())
    elif scheme == "http":
        connection = http.client.HTTPConnection(netloc, timeout=CONNECT_SECONDS)
    else:
        raise ValueError(f"not an http(s) URL scheme: {scheme!r}")
    connection.connect()
    if connection.sock is not None:
        connection.sock.settimeout(READ_SECONDS)
    return connection


@lru_cache(maxsize=1)
def _tls() -> Any:
    import ssl

    return ssl.create_default_context(cafile=ca_bundle())


def ca_bundle() -> str | None:
    """The CA bundle the SDKs would verify with: certifi's when installed (botocore and requests take it first),
    else botocore's own cacert.pem (its fallback; the Lambda layer has botocore but not certifi), else None: the
    system's."""
    try:
        import certifi
    except ImportError:
        pass
    else:
        return str(certifi.where())
    import importlib.util
    import os

    botocore = importlib.util.find_spec("botocore")  # found, not imported
    if botocore is not None and botocore.origin:
        bundled = os.path.join(os.path.dirname(botocore.origin), "cacert.pem")
        if os.path.isfile(bundled):
            return bundled
    return None
