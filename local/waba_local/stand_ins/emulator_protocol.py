"""The wire protocol of the CAMS emulator: request shape, answer bodies, error codes and ACS3 signature checks.

The signature is verified independently of the Alibaba SDK (stdlib only), the way the CAMS gateway does it:
rebuild the canonical request from what arrived, hash it, HMAC it with the AccessKey secret and compare.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

ACTION = "QueryChatappBindWaba"
VERSION = "2020-06-06"
ALGORITHM = "ACS3-HMAC-SHA256"
HOST_ID = "cams.ap-southeast-1.aliyuncs.com"
JSON_CONTENT_TYPE = "application/json;charset=utf-8"
# CAMS rejects a request dated more than 15 minutes away and a nonce seen in the last 15 minutes.
REPLAY_WINDOW_SECONDS = 15 * 60

# Code -> (HTTP status, message). The first four are the documented errors of QueryChatappBindWaba.
ERRORS: dict[str, tuple[int, str]] = {
    "Product.Unsubscript": (400, "You have not subscribed to the specified product."),
    "Ram.PermissionDeny": (400, "You are not authorized to perform the operation."),
    "System.LimitControl": (400, "The system is under flow control."),
    "Unknown.ResourceOwnerId": (400, "The resource does not belong to the current user."),
    "IncompleteSignature": (400, "The request signature does not conform to Aliyun standards."),
    "SignatureDoesNotMatch": (400, "Specified signature does not match our calculation."),
    "InvalidAccessKeyId.NotFound": (404, "Specified access key is not found."),
    "InvalidSecurityToken.Expired": (400, "Specified SecurityToken is expired."),
    "InvalidSecurityToken.MismatchWithAccessKey": (400, "Specified SecurityToken mismatch with the AccessKey."),
    "InvalidTimeStamp.Expired": (400, "Specified time stamp or date value is expired."),
    "InvalidTimeStamp.Format": (400, "Specified time stamp or date value is not well formatted."),
    "SignatureNonceUsed": (400, "Specified signature nonce was used already."),
    "InvalidAction.NotFound": (400, "Specified api is not found, please check your url and method."),
    "InvalidVersion": (400, "Specified parameter Version is not valid."),
    "ServiceUnavailable": (503, "The request has failed due to a temporary failure of the server."),
    "InternalError": (500, "The request processing has failed due to some unknown error, exception or failure."),
}
DOCUMENTED_ERRORS = ("Product.Unsubscript", "Ram.PermissionDeny", "System.LimitControl", "Unknown.ResourceOwnerId")

# Without these signed, a captured request could be replayed with a fresh nonce or date, or sent to another action.
REQUIRED_SIGNED_HEADERS = frozenset(
    {"host", "x-acs-action", "x-acs-version", "x-acs-date", "x-acs-signature-nonce", "x-acs-content-sha256"}
)
_AUTHORIZATION = re.compile(
    rf"^{ALGORITHM} Credential=(?P<ak>[^,\s]+),\s*SignedHeaders=(?P<signed>[a-z0-9;-]+),\s*"
    r"Signature=(?P<signature>[0-9a-fA-F]{64})$"
)
_CREDENTIAL = re.compile(r"Credential=([^,\s]+)")


class CamsError(Exception):
    """A CAMS error answer; the message comes from the code table so no request data can leak into it."""

    def __init__(self, code: str) -> None:
        self.code = code
        self.status, self.message = ERRORS[code]
        super().__init__(code)


@dataclass(frozen=True)
class ApiRequest:
    """What arrived on the wire: header names lower-cased, query pairs decoded, the raw body."""

    method: str
    path: str
    query: list[tuple[str, str]]
    headers: dict[str, list[str]]
    body: bytes

    def header(self, name: str) -> str | None:
        values = self.headers.get(name)
        return values[0].strip() if values else None

    def param(self, name: str) -> str | None:
        return next((value for key, value in self.query if key == name), None)


@dataclass(frozen=True)
class Answer:
    """What the emulator sends back; `drop` means closing the connection without an answer."""

    status: int
    code: str
    body: bytes = b""
    content_type: str = JSON_CONTENT_TYPE
    request_id: str | None = None
    drop: bool = False

    @classmethod
    def json(cls, status: int, code: str, payload: Any, request_id: str | None = None) -> Answer:
        return cls(status, code, json.dumps(payload).encode(), request_id=request_id)

    @classmethod
    def error(cls, error: CamsError, request_id: str) -> Answer:
        return cls.json(error.status, error.code, error_body(error.code, error.message, request_id), request_id)


def new_request_id() -> str:
    return str(uuid.uuid4()).upper()


def error_body(code: str, message: str, request_id: str) -> dict[str, Any]:
    """The JSON error body of Alibaba Cloud's gateway."""
    return {
        "RequestId": request_id,
        "HostId": HOST_ID,
        "Code": code,
        "Message": message,
        "Recommend": f"https://api.aliyun.com/troubleshoot?q={code}&product=Cams&requestId={request_id}",
    }


def success_body(data: dict[str, Any], request_id: str) -> dict[str, Any]:
    return {
        "RequestId": request_id,
        "Code": "OK",
        "Message": "SUCCESS",
        "Success": True,
        "AccessDeniedDetail": "None",
        "Data": data,
    }


def claimed_access_key(request: ApiRequest) -> str | None:
    """The AccessKeyId the caller claims, for the call log, even when the rest of the header is garbled."""
    match = _CREDENTIAL.search(request.header("authorization") or "")
    return match.group(1) if match else None


def check_route(request: ApiRequest) -> None:
    if request.path != "/" or request.header("x-acs-action") != ACTION:
        raise CamsError("InvalidAction.NotFound")
    if request.header("x-acs-version") != VERSION:
        raise CamsError("InvalidVersion")


def verify_signature(request: ApiRequest, accounts: dict[str, str]) -> str:
    """Check the ACS3-HMAC-SHA256 Authorization header; return the AccessKeyId it was signed with."""
    match = _AUTHORIZATION.match(request.header("authorization") or "")
    if match is None:
        raise CamsError("IncompleteSignature")
    signed = match.group("signed").split(";")
    if not REQUIRED_SIGNED_HEADERS.issubset(signed) or any(name not in request.headers for name in signed):
        raise CamsError("IncompleteSignature")
    secret = accounts.get(match.group("ak"))
    if secret is None:
        raise CamsError("InvalidAccessKeyId.NotFound")
    payload_hash = request.header("x-acs-content-sha256") or ""
    if not hmac.compare_digest(payload_hash.lower(), hashlib.sha256(request.body).hexdigest()):
        raise CamsError("IncompleteSignature")
    expected = _signature(canonical_request(request, signed, payload_hash), secret)
    if not hmac.compare_digest(expected, match.group("signature").lower()):
        raise CamsError("SignatureDoesNotMatch")
    return match.group("ak")


def canonical_request(request: ApiRequest, signed: list[str], payload_hash: str) -> str:
    headers = "".join(f"{name}:{_header_value(request, name)}\n" for name in signed)
    return "\n".join(
        [request.method, request.path, canonical_query(request.query), headers, ";".join(signed), payload_hash]
    )


def canonical_query(pairs: list[tuple[str, str]]) -> str:
    encoded = sorted((quote(key, safe="~"), quote(value, safe="~")) for key, value in pairs)
    return "&".join(f"{key}={value}" for key, value in encoded)


def check_timestamp(request: ApiRequest, now: float) -> None:
    """x-acs-date is ISO 8601 UTC to the second and must be within the replay window of the server's clock."""
    try:
        sent = datetime.strptime(request.header("x-acs-date") or "", "%Y-%m-%dT%H:%M:%SZ")
    except ValueError:
        raise CamsError("InvalidTimeStamp.Format") from None
    if abs(sent.replace(tzinfo=UTC).timestamp() - now) > REPLAY_WINDOW_SECONDS:
        raise CamsError("InvalidTimeStamp.Expired")


def _header_value(request: ApiRequest, name: str) -> str:
    # A header sent several times is signed as its values, stripped and sorted, joined by commas.
    return ",".join(sorted(value.strip() for value in request.headers[name]))


def _signature(canonical: str, secret: str) -> str:
    string_to_sign = f"{ALGORITHM}\n{hashlib.sha256(canonical.encode()).hexdigest()}"
    return hmac.new(secret.encode(), string_to_sign.encode(), hashlib.sha256).hexdigest()
