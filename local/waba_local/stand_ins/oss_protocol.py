"""The wire protocol of the local OSS stand-in: addressing, OSS4-HMAC-SHA256 checks, error and listing XML, CRC-64.

Pure functions only (no sockets, no state), and no OSS SDK.
Protocol notes (where each rule and error code comes from): docs/stand-ins.md#oss.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import formatdate
from urllib.parse import quote, unquote
from xml.sax.saxutils import escape

from waba_local.stand_ins.stand_in_base import KeyRing as BaseKeyRing
from waba_local.stand_ins.stand_in_base import ServiceError, WireRequest, error_fields

ALGORITHM = "OSS4-HMAC-SHA256"
PRODUCT = "oss"
TERMINATOR = "aliyun_v4_request"
UNSIGNED_PAYLOAD = "UNSIGNED-PAYLOAD"
MAX_SKEW_SECONDS = 15 * 60  # OSS answers RequestTimeTooSkewed beyond 900000 ms either way
OPERATIONS = ("GetObject", "PutObject", "HeadObject", "GetObjectMeta", "DeleteObject", "ListObjectsV2", "PutBucket")
UNSUPPORTED = "Unsupported"  # recorded operation name of anything else

# Code -> (HTTP status, message, EC or "").
ERRORS: dict[str, tuple[int, str, str]] = {
    "NoSuchKey": (404, "The specified key does not exist.", "0026-00000001"),
    "NoSuchBucket": (404, "The specified bucket does not exist.", "0015-00000101"),
    "SignatureDoesNotMatch": (
        403,
        (
            "The request signature we calculated does not match the signature you provided. "
            "Check your key and signing method."
        ),
        "0002-00000040",
    ),
    "InvalidAccessKeyId": (403, "The OSS Access Key Id you provided does not exist in our records.", ""),
    "InvalidSecurityToken": (403, "The security token you provided is invalid.", "0002-00000006"),
    "SecurityTokenExpired": (403, "The security token you provided has expired.", "0002-00000007"),
    "RequestTimeTooSkewed": (403, "The difference between the request time and the current time is too large.", ""),
    "AccessDenied": (403, "You have no right to access this object because of bucket acl.", ""),
    "InvalidArgument": (400, "Authorization header is invalid.", ""),
    "InvalidDigest": (400, "The Content-MD5 you specified is not valid.", ""),
    "InvalidBucketName": (400, "The specified bucket is not valid.", ""),
    "InvalidObjectName": (400, "The specified object is not valid.", ""),
    "EntityTooLarge": (400, "Your proposed upload exceeds the maximum allowed size.", ""),
    "FileAlreadyExists": (409, "The object you specified already exists and can not be overwritten.", ""),
    "BucketAlreadyExists": (409, "The requested bucket name is not available.", ""),
    "InternalError": (500, "We encountered an internal error. Please try again.", ""),
    "NotImplemented": (501, "A header you provided implies functionality that is not implemented.", ""),
    "ServiceUnavailable": (503, "Please reduce your request rate.", ""),
}

_BUCKET_NAME = re.compile(r"^[a-z0-9][a-z0-9-]{1,61}[a-z0-9]$")
_AUTH_FIELD = re.compile(r"\s*(Credential|AdditionalHeaders|Signature)=([^,]*)")
_IPV4 = re.compile(r"^\d{1,3}(\.\d{1,3}){3}$")
_Field = tuple[str, str | list[tuple[str, str]]]  # an XML element: text, or child elements


class OssError(ServiceError):
    """An OSS error answer, with its EC (OSS's finer error code, "" for none) and the error document's own fields
    (`extras`). Messages come from ERRORS or the raising site, never from request data."""

    def __init__(
        self,
        code: str,
        message: str | None = None,
        ec: str | None = None,
        status: int | None = None,
        extras: dict[str, str] | None = None,
    ) -> None:
        default_status, default_message, default_ec = ERRORS.get(code, (500, "Injected fault.", ""))
        super().__init__(
            code, default_message if message is None else message, default_status if status is None else status
        )
        self.ec = default_ec if ec is None else ec
        self.extras = dict(extras or {})


@dataclass(frozen=True)
class OssRequest(WireRequest):
    """What arrived on the wire (see WireRequest)."""

    def query(self) -> dict[str, str]:
        """Decoded query parameters (unquote, not unquote_plus: OSS clients encode a space as %20)."""
        return {unquote(key): unquote(value) for key, value in _query_pairs(self.raw_query)}


@dataclass(frozen=True)
class Resource:
    """Which bucket and key a request addresses; key None means the bucket itself."""

    bucket: str | None
    key: str | None

    def canonical_uri(self) -> str:
        """As OSS4-HMAC-SHA256 signs it: /bucket/key whatever the addressing style."""
        return quote(f"/{self.bucket}/{self.key or ''}" if self.bucket else "/", safe="/")


class KeyRing(BaseKeyRing):
    """The keys OSS accepts, refused in OSS's words (with the ECs OSS gives)."""

    def rejection(self, reason: str, access_key_id: str) -> Exception:
        extras = {"OSSAccessKeyId": access_key_id}
        if reason == "no token":
            message = (
                ERRORS["InvalidAccessKeyId"][1]
                + " The Security Token may be lost to specify that it is a STS Access Id."
            )
            return OssError("InvalidAccessKeyId", message, "0002-00000003", extras=extras)
        if reason == "wrong token":
            return OssError("InvalidSecurityToken", extras=extras)
        if reason == "expired":
            return OssError("SecurityTokenExpired", extras=extras)
        ec = "0002-00000002" if reason == "token for a long-term key" and self.static[access_key_id] else None
        return OssError("InvalidAccessKeyId", ec=ec, extras=extras)


def resolve(host: str, raw_path: str) -> Resource:
    """Path style (/bucket/key, any IP or single-label host or oss-* endpoint) or virtual-hosted (bucket.<host>)."""
    hostname = host.rpartition(":")[0] if re.search(r":\d+$", host) else host
    label, dot, _ = hostname.partition(".")
    path = unquote(raw_path)
    if dot and not _IPV4.match(hostname) and not label.startswith("oss-") and label != "localhost":
        return Resource(label, path[1:] or None)
    bucket, _, key = path[1:].partition("/")
    return Resource(bucket or None, key or None)


def operation(method: str, resource: Resource, query: dict[str, str]) -> str:
    """The OSS operation a request asks for, or UNSUPPORTED."""
    if resource.bucket is None:
        return UNSUPPORTED
    if resource.key is None:
        if method == "GET" and query.get("list-type") == "2":
            return "ListObjectsV2"
        return "PutBucket" if method == "PUT" and not query else UNSUPPORTED
    if method == "HEAD" and set(query) == {"objectMeta"}:
        return "GetObjectMeta"  # what the SDK's is_object_exist() asks
    if any(not name.startswith("response-") for name in query):
        return UNSUPPORTED  # a sub-resource (?acl, ?tagging, ...) this stand-in does not serve
    names = {"GET": "GetObject", "PUT": "PutObject", "HEAD": "HeadObject", "DELETE": "DeleteObject"}
    return names.get(method, UNSUPPORTED)


def check_names(resource: Resource) -> None:
    if resource.bucket is not None and not _BUCKET_NAME.match(resource.bucket):
        raise OssError("InvalidBucketName", extras={"BucketName": resource.bucket})
    if resource.key is not None and (len(resource.key.encode()) > 1023 or resource.key.startswith(("/", "\\"))):
        raise OssError("InvalidObjectName")


def verify_v4(request: OssRequest, resource: Resource, keys: BaseKeyRing, region: str, now: float) -> str:
    """Check the OSS4-HMAC-SHA256 Authorization header; return the AccessKeyId it was signed with."""
    authorization = request.header("authorization")
    if authorization is None:
        raise OssError("AccessDenied")
    if not authorization.startswith(ALGORITHM + " "):
        raise OssError("InvalidArgument", "Only OSS4-HMAC-SHA256 header signatures are supported here.")
    fields: dict[str, str] = dict(_AUTH_FIELD.findall(authorization[len(ALGORITHM) + 1 :]))
    scope = fields.get("Credential", "").split("/")
    signature = fields.get("Signature", "")
    if len(scope) != 5 or not re.fullmatch(r"[0-9a-f]{64}", signature) or scope[4] != TERMINATOR or scope[3] != PRODUCT:
        raise OssError("InvalidArgument", "Invalid credential in Authorization header.", "0002-00000213")
    access_key_id, date, scope_region = scope[0], scope[1], scope[2]
    stamp = request.header("x-oss-date") or ""
    try:
        signed_at = datetime.strptime(stamp, "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC).timestamp()
    except ValueError:
        raise OssError("InvalidArgument", "Invalid x-oss-date header.") from None
    if date != stamp[:8]:
        raise OssError("InvalidArgument", "Invalid signing date in Authorization header.", "0002-00000212")
    if scope_region != region:
        raise OssError("InvalidArgument", "Invalid signing region in Authorization header.", "0002-00000228")
    if abs(signed_at - now) > MAX_SKEW_SECONDS:
        extras = {"MaxAllowedSkewMilliseconds": str(MAX_SKEW_SECONDS * 1000)}
        extras |= {"RequestTime": iso_time(signed_at), "ServerTime": iso_time(now)}
        raise OssError("RequestTimeTooSkewed", extras=extras)
    secret = keys.secret_for(access_key_id, request.header("x-oss-security-token"), now)
    payload_hash = request.header("x-oss-content-sha256")
    if payload_hash != UNSIGNED_PAYLOAD and payload_hash != hashlib.sha256(request.body).hexdigest():
        raise OssError("InvalidArgument", "x-oss-content-sha256 must be UNSIGNED-PAYLOAD or the body's SHA-256.")
    additional = [name for name in fields.get("AdditionalHeaders", "").lower().split(";") if name]
    canonical = canonical_request(request, resource, additional, payload_hash)
    string_to_sign = "\n".join([ALGORITHM, stamp, "/".join(scope[1:]), hashlib.sha256(canonical.encode()).hexdigest()])
    expected = hmac.new(signing_key(secret, date, region), string_to_sign.encode(), hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected, signature):
        extras = {"OSSAccessKeyId": access_key_id, "StringToSign": string_to_sign}
        raise OssError("SignatureDoesNotMatch", extras=extras)
    return access_key_id


def canonical_request(request: OssRequest, resource: Resource, additional: list[str], payload_hash: str) -> str:
    """Verb, canonical URI, canonical query, canonical headers, additional header names, payload hash."""
    signed = sorted(
        (name, request.header(name) or "")
        for name in request.headers
        if name.startswith("x-oss-") or name in ("content-type", "content-md5") or name in additional
    )
    headers = "".join(f"{name}:{value}\n" for name, value in signed)
    return "\n".join(
        [
            request.method,
            resource.canonical_uri(),
            canonical_query(request.raw_query),
            headers,
            ";".join(additional),
            payload_hash,
        ]
    )


def canonical_query(raw_query: str) -> str:
    """Pairs re-encoded as OSS specifies (RFC 3986, nothing but unreserved characters left bare), sorted."""
    pairs = sorted(
        (quote(unquote(key), safe="~"), quote(unquote(value), safe="~")) for key, value in _query_pairs(raw_query)
    )
    return "&".join(f"{key}={value}" if value else key for key, value in pairs)


def signing_key(secret: str, date: str, region: str) -> bytes:
    key = ("aliyun_v4" + secret).encode()
    for part in (date, region, PRODUCT, TERMINATOR):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    return key


def check_content_md5(request: OssRequest) -> None:
    claimed = request.header("content-md5")
    if claimed is not None and claimed != base64.b64encode(hashlib.md5(request.body).digest()).decode():
        raise OssError("InvalidDigest")


def error_xml(error: OssError, request_id: str, host_id: str) -> bytes:
    """OSS's error document: Code, Message, RequestId, HostId, the error's own fields, then EC and RecommendDoc."""
    fields: list[_Field] = [*error_fields(error, request_id, host_id), *error.extras.items()]
    if error.ec:
        fields += [("EC", error.ec), ("RecommendDoc", f"https://api.aliyun.com/troubleshoot?q={error.ec}")]
    return _xml_document("Error", fields)


def list_v2_xml(bucket: str, params: dict[str, str], page: ListPage) -> bytes:
    """ListBucketResult as OSS returns it; with encoding-type=url, keys, prefixes and tokens are URL-encoded."""
    encode = (lambda text: quote(text, safe="")) if params.get("encoding-type") == "url" else (lambda text: text)
    fields: list[_Field] = [
        ("Name", bucket),
        ("Prefix", encode(params.get("prefix", ""))),
    ]
    for name, param in (("ContinuationToken", "continuation-token"), ("StartAfter", "start-after")):
        if param in params:
            fields.append((name, encode(params[param])))
    fields += [("MaxKeys", str(page.max_keys)), ("Delimiter", encode(params.get("delimiter", "")))]
    if "encoding-type" in params:
        fields.append(("EncodingType", params["encoding-type"]))
    fields.append(("IsTruncated", "true" if page.next_token else "false"))
    if page.next_token:
        fields.append(("NextContinuationToken", encode(page.next_token)))
    for entry in page.contents:
        fields.append(("Contents", [(n, encode(v) if n == "Key" else v) for n, v in entry]))
    fields += [("CommonPrefixes", [("Prefix", encode(prefix))]) for prefix in page.common_prefixes]
    fields.append(("KeyCount", str(len(page.contents) + len(page.common_prefixes))))
    return _xml_document("ListBucketResult", fields)


@dataclass(frozen=True)
class ListPage:
    """One page of a listing: Contents entries as (element, text) pairs, CommonPrefixes, the token to go on."""

    max_keys: int
    contents: list[list[tuple[str, str]]]
    common_prefixes: list[str]
    next_token: str | None


def encode_token(key: str) -> str:
    return base64.urlsafe_b64encode(key.encode()).decode()


def decode_token(token: str) -> str:
    try:
        return base64.urlsafe_b64decode(token.encode()).decode()
    except (ValueError, UnicodeDecodeError):
        raise OssError("InvalidArgument", "The continuation token provided is incorrect.") from None


def new_request_id() -> str:
    """24 upper-case hex digits, the shape of OSS's x-oss-request-id."""
    return secrets.token_hex(12).upper()


def http_date(epoch: float) -> str:
    return formatdate(epoch, usegmt=True)


def iso_time(epoch: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime(epoch))


def etag_of(data: bytes) -> str:
    """OSS's ETag of a simple upload: the MD5 in upper-case hex, quoted."""
    return f'"{hashlib.md5(data).hexdigest().upper()}"'


def _crc64_table() -> list[int]:
    table = []
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0xC96C5795D7870F42 if crc & 1 else crc >> 1
        table.append(crc)
    return table


_CRC64_TABLE = _crc64_table()


def crc64ecma(data: bytes) -> int:
    """CRC-64/XZ (ECMA-182 polynomial, reflected, all-ones init and xor-out): x-oss-hash-crc64ecma."""
    crc = 0xFFFFFFFFFFFFFFFF
    for byte in data:
        crc = _CRC64_TABLE[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFFFFFFFFFF


def _query_pairs(raw_query: str) -> list[tuple[str, str]]:
    return [(key, value) for key, _, value in (pair.partition("=") for pair in raw_query.split("&") if pair)]


def _xml_document(root: str, fields: list[_Field]) -> bytes:
    def render(name: str, value: str | list[tuple[str, str]]) -> str:
        inner = "".join(render(n, v) for n, v in value) if isinstance(value, list) else escape(value)
        return f"<{name}>{inner}</{name}>"

    body = "".join(render(name, value) for name, value in fields)
    return f'<?xml version="1.0" encoding="UTF-8"?>\n<{root}>{body}</{root}>\n'.encode()
