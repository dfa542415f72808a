"""The wire protocol of the local SMQ (formerly MNS) stand-in: routes, the MNS signature, XML bodies, errors, limits.

Pure functions only (no sockets, no state), and no SMQ SDK.
Protocol notes (where each rule, error code and limit comes from): docs/stand-ins.md#smq.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from urllib.parse import unquote
from xml.sax.saxutils import escape

from waba_local.stand_ins.stand_in_base import KeyRing as BaseKeyRing
from waba_local.stand_ins.stand_in_base import ServiceError, WireRequest, error_fields

XMLNS = "http://mns.aliyuncs.com/doc/v1/"
API_VERSION = "2015-06-06"
MAX_SKEW_SECONDS = 15 * 60
OPERATIONS = (
    "SendMessage",
    "BatchSendMessage",
    "ReceiveMessage",
    "BatchReceiveMessage",
    "DeleteMessage",
    "BatchDeleteMessage",
    "ChangeMessageVisibility",
    "CreateQueue",
    "GetQueueAttributes",
)
UNSUPPORTED = "Unsupported"  # recorded operation name of anything else (topics, peek, list, set attributes...)

BATCH_MAX_MESSAGES = 16
BATCH_MAX_BYTES = 64 * 1024
MAX_WAIT_SECONDS = 30
DEFAULT_PRIORITY = 8

# Attribute -> (low, high, default), as SMQ documents them.
QUEUE_LIMITS: dict[str, tuple[int, int, int]] = {
    "DelaySeconds": (0, 604800, 0),
    "MaximumMessageSize": (1024, 65536, 65536),
    "MessageRetentionPeriod": (60, 604800, 345600),
    "VisibilityTimeout": (1, 43200, 30),
    "PollingWaitSeconds": (0, 30, 0),
}

# Code -> (HTTP status, message).
ERRORS: dict[str, tuple[int, str]] = {
    "AccessDenied": (403, "The OwnerId that your Access Key Id associated to is forbidden for this operation."),
    "InvalidAccessKeyId": (403, "The AccessKey Id you provided is not exist."),
    "SignatureDoesNotMatch": (
        403,
        (
            "The request signature we calculated does not match the signature you provided. "
            "Check your key and signing method."
        ),
    ),
    "InvalidSecurityToken": (403, "The security token you provided is invalid."),  # name not confirmed for SMQ
    "SecurityTokenExpired": (403, "The security token you provided has expired."),  # name not confirmed for SMQ
    "InvalidAuthorizationHeader": (400, "The Authorization header format is invalid."),
    "MissingAuthorizationHeader": (400, "Authorization header is required."),
    "InvalidDateHeader": (400, "The Date header format is invalid."),
    "MissingDateHeader": (400, "Date header is required."),
    "MissingVersionHeader": (400, "x-mns-version header is required."),
    "InvalidVersionHeader": (400, "The x-mns-version header is invalid."),
    "TimeExpired": (408, "The http request you sent is expired."),
    "InvalidArgument": (400, "The XML you provided did not validate against our published schema."),
    "InvalidDegist": (400, "The Content-MD5 you specified is invalid."),  # [sic], as SMQ spells it
    "InvalidRequestURL": (400, "Http request URL format invalid."),
    "InvalidQueryString": (400, "Http request URL contains invalid querystring item."),
    "MalformedXML": (400, "The XML you provided was not well-formed."),
    "MissingReceiptHandle": (400, "ReceiptHandle is required."),
    "MissingVisibilityTimeout": (400, "VisibilityTimeout is required."),
    "ReceiptHandleError": (400, "The receipt handle you provide is not valid."),
    "MessageNotExist": (404, "Message not exist."),
    "QueueNotExist": (404, "The queue name you provided is not exist."),
    "QueueAlreadyExist": (409, "The queue you want to create is already exist."),
    "InvalidQueueName": (
        400,
        (
            "The queue name you provided is not valid. The QueueName must start with an alphabetic character, "
            "and the rest can be alphabetic characters, digits or hyphens (-)."
        ),
    ),
    "QueueNameLengthError": (400, "The length of queue name should be between 1 and 256."),
    "QpsLimitExceeded": (403, "Qps limit exceeded."),
    "InternalError": (500, "Interal error."),  # [sic]
    "InternalServerError": (500, "Interal error."),  # [sic]
    "NotImplemented": (501, "This operation is not served by the local SMQ stand-in."),  # the stand-in's own
}

_QUEUE_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9-]*$")
_AUTHORIZATION = re.compile(r"^MNS ([^:\s]+):(\S+)$")
_RECEIPT_HANDLE = re.compile(r"^\d+-[A-Za-z0-9_-]{16,}$")
_QUEUE_PATH = re.compile(r"^/queues/([^/?]+)(/messages)?$")


class SmqError(ServiceError):
    """An SMQ error answer."""

    ERRORS = ERRORS


def invalid_value(element: str, low: int, high: int, unit: str = "seconds") -> SmqError:
    """SMQ's documented wording for an out-of-range parameter."""
    return SmqError("InvalidArgument", f"The value of {element} should between {low} and {high} {unit}.")


@dataclass(frozen=True)
class SmqRequest(WireRequest):
    """What arrived on the wire (see WireRequest)."""

    def query(self) -> dict[str, str]:
        """Parameters with lower-cased names (clients differ in case: numOfMessages, waitseconds). The SDK does not
        URL-encode receipt handles, so values are unquoted without turning '+' into a space."""
        pairs = (pair.partition("=") for pair in self.raw_query.split("&") if pair)
        return {unquote(key).lower(): unquote(value) for key, _, value in pairs}


class KeyRing(BaseKeyRing):
    """The keys SMQ accepts, refused in SMQ's words."""

    def rejection(self, reason: str, access_key_id: str) -> Exception:
        codes = {"wrong token": "InvalidSecurityToken", "expired": "SecurityTokenExpired"}
        return SmqError(codes.get(reason, "InvalidAccessKeyId"))


@dataclass(frozen=True)
class Route:
    operation: str
    queue: str | None


def route(request: SmqRequest, query: dict[str, str]) -> Route:
    """The queue operation a request asks for (UNSUPPORTED for anything else), and its queue name."""
    match = _QUEUE_PATH.match(request.raw_path)
    if match is None:
        return Route(UNSUPPORTED, None)
    queue, messages = unquote(match.group(1)), match.group(2) is not None
    method = request.method
    if not messages:
        if method == "PUT" and not query:
            return Route("CreateQueue", queue)
        return Route("GetQueueAttributes" if method == "GET" and not query else UNSUPPORTED, queue)
    if method == "POST" and not query:
        return Route("BatchSendMessage" if _root_name(request.body) == "Messages" else "SendMessage", queue)
    if method == "GET" and set(query) <= {"numofmessages", "waitseconds"}:
        return Route("BatchReceiveMessage" if "numofmessages" in query else "ReceiveMessage", queue)
    if method == "DELETE":
        return Route("BatchDeleteMessage" if not query else "DeleteMessage", queue)
    if method == "PUT" and ("receipthandle" in query or "visibilitytimeout" in query):
        return Route("ChangeMessageVisibility", queue)
    return Route(UNSUPPORTED, queue)


def check_queue_name(name: str) -> None:
    if not 1 <= len(name) <= 256:
        raise SmqError("QueueNameLengthError")
    if not _QUEUE_NAME.match(name):
        raise SmqError("InvalidQueueName")


# --- authentication -----------------------------------------------------------------------------------------------


def verify(request: SmqRequest, keys: BaseKeyRing, now: float) -> str:
    """Check the headers, the Date against the clock, the key (and STS token), then the signature.

    Returns the AccessKeyId the request was signed with."""
    authorization = request.header("authorization")
    if authorization is None:
        raise SmqError("MissingAuthorizationHeader")
    version = request.header("x-mns-version")
    if version is None:
        raise SmqError("MissingVersionHeader")
    if version != API_VERSION:
        raise SmqError("InvalidVersionHeader")
    stamp = request.header("x-mns-date") or request.header("date")
    if stamp is None:
        raise SmqError("MissingDateHeader")
    try:
        signed_at = parsedate_to_datetime(stamp).timestamp()
    except (TypeError, ValueError):
        raise SmqError("InvalidDateHeader") from None
    if abs(signed_at - now) > MAX_SKEW_SECONDS:
        raise SmqError("TimeExpired")
    match = _AUTHORIZATION.match(authorization)
    if match is None:
        raise SmqError("InvalidAuthorizationHeader")
    access_key_id, signature = match.groups()
    token = request.header("security-token") or request.header("x-mns-security-token")
    secret = keys.secret_for(access_key_id, token, now)
    expected = sign(secret, string_to_sign(request))
    if not hmac.compare_digest(expected.encode(), signature.encode()):
        raise SmqError("SignatureDoesNotMatch")
    return access_key_id


def claimed_access_key_id(request: SmqRequest) -> str | None:
    """The AccessKeyId the Authorization header names (not a secret), whether or not it checks out."""
    match = _AUTHORIZATION.match(request.header("authorization") or "")
    return match.group(1) if match else None


def string_to_sign(request: SmqRequest) -> str:
    """METHOD, Content-MD5, Content-Type, Date, the x-mns-* headers, the request URI with its query as sent."""
    mns_headers = sorted((name, request.header(name) or "") for name in request.headers if name.startswith("x-mns-"))
    canonical_headers = "".join(f"{name}:{value}\n" for name, value in mns_headers)
    date = request.header("x-mns-date") or request.header("date") or ""
    lines = [request.method, request.header("content-md5") or "", request.header("content-type") or "", date]
    return "\n".join(lines) + "\n" + canonical_headers + request.target


def sign(secret: str, text: str) -> str:
    return base64.b64encode(hmac.new(secret.encode(), text.encode(), hashlib.sha1).digest()).decode()


def check_content_md5(request: SmqRequest) -> None:
    """Base64 of the hex digest (what SMQ's SDKs send) or of the raw digest (RFC 1864)."""
    claimed = request.header("content-md5")
    if claimed is None:
        return
    digest = hashlib.md5(request.body)
    accepted = (base64.b64encode(digest.hexdigest().encode()).decode(), base64.b64encode(digest.digest()).decode())
    if claimed not in accepted:
        raise SmqError("InvalidDegist")


# --- request bodies -----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class MessageSpec:
    """One message to send: its body as it arrived (base64 text when the SDK encodes), delay and priority."""

    body: str
    delay_seconds: int | None
    priority: int


def parse_message(body: bytes) -> MessageSpec:
    root = _parse(body, "Message")
    return _message_spec(_fields(root))


def parse_messages(body: bytes) -> list[MessageSpec]:
    root = _parse(body, "Messages")
    specs = [_message_spec(_fields(child)) for child in root if _local(child.tag) == "Message"]
    if not 1 <= len(specs) <= BATCH_MAX_MESSAGES:
        raise SmqError(
            "InvalidArgument", f"The count of Message should between 1 and {BATCH_MAX_MESSAGES} in a batch request."
        )
    if sum(len(spec.body.encode()) for spec in specs) > BATCH_MAX_BYTES:
        raise invalid_value("the total length of MessageBody", 1, BATCH_MAX_BYTES, "bytes")
    return specs


def parse_receipt_handles(body: bytes) -> list[str]:
    root = _parse(body, "ReceiptHandles")
    handles = [(child.text or "").strip() for child in root if _local(child.tag) == "ReceiptHandle"]
    if not 1 <= len(handles) <= BATCH_MAX_MESSAGES:
        raise SmqError(
            "InvalidArgument",
            f"The count of ReceiptHandle should between 1 and {BATCH_MAX_MESSAGES} in a batch request.",
        )
    return handles


def parse_queue_attributes(body: bytes) -> dict[str, int | bool]:
    """CreateQueue's <Queue>: every attribute, defaults filled in, ranges checked."""
    fields = _fields(_parse(body, "Queue")) if body.strip() else {}
    attributes: dict[str, int | bool] = {}
    for name, (low, high, default) in QUEUE_LIMITS.items():
        attributes[name] = bounded(fields.get(name), name, low, high, default, "bytes" if "Size" in name else "seconds")
    logging = fields.get("LoggingEnabled", "False").strip().lower()
    if logging not in ("true", "false"):
        raise SmqError("InvalidArgument", "The value of LoggingEnabled should be True or False.")
    attributes["LoggingEnabled"] = logging == "true"
    return attributes


def bounded(text: str | None, element: str, low: int, high: int, default: int, unit: str = "seconds") -> int:
    if text is None or text.strip() == "":
        return default
    try:
        value = int(text.strip())
    except ValueError:
        raise invalid_value(element, low, high, unit) from None
    if not low <= value <= high:
        raise invalid_value(element, low, high, unit)
    return value


def check_receipt_handle(handle: str) -> None:
    if not _RECEIPT_HANDLE.match(handle):
        raise SmqError("ReceiptHandleError")


def _message_spec(fields: dict[str, str]) -> MessageSpec:
    body = fields.get("MessageBody")
    if not body:
        raise SmqError(
            "InvalidArgument",
            "The XML you provided did not validate against our published schema, cause by MessageBody.",
        )
    delay = fields.get("DelaySeconds")
    low, high, _ = QUEUE_LIMITS["DelaySeconds"]
    priority = bounded(fields.get("Priority"), "Priority", 1, 16, DEFAULT_PRIORITY, "(1 is the highest)")
    return MessageSpec(body, None if delay is None else bounded(delay, "DelaySeconds", low, high, 0), priority)


def _parse(body: bytes, root_name: str) -> ET.Element:
    try:
        root = ET.fromstring(body)
    except ET.ParseError:
        raise SmqError("MalformedXML") from None
    if _local(root.tag) != root_name:
        raise SmqError(
            "InvalidArgument",
            f"The XML you provided did not validate against our published schema, cause by {_local(root.tag)}.",
        )
    return root


def _root_name(body: bytes) -> str | None:
    try:
        return _local(ET.fromstring(body).tag)
    except ET.ParseError:
        return None


def _fields(element: ET.Element) -> dict[str, str]:
    return {_local(child.tag): child.text or "" for child in element}


def _local(tag: str) -> str:
    return tag.rpartition("}")[2]


# --- answers ------------------------------------------------------------------------------------------------------

_Field = tuple[str, "str | list[_Field]"]


def error_xml(error: SmqError, request_id: str, host_id: str) -> bytes:
    """SMQ's error document: Code, Message, RequestId, HostId."""
    return xml_document("Error", [*error_fields(error, request_id, host_id)])


def xml_document(root: str, fields: list[_Field]) -> bytes:
    def render(name: str, value: str | list[_Field]) -> str:
        inner = "".join(render(n, v) for n, v in value) if isinstance(value, list) else escape(value)
        return f"<{name}>{inner}</{name}>"

    body = "".join(render(name, value) for name, value in fields)
    return f'<?xml version="1.0" encoding="UTF-8"?>\n<{root} xmlns="{XMLNS}">{body}</{root}>\n'.encode()


def body_md5(body: str) -> str:
    """MessageBodyMD5: upper-case hex MD5 of the body as stored (the base64 text when the SDK encodes)."""
    return hashlib.md5(body.encode()).hexdigest().upper()


def new_request_id() -> str:
    """24 upper-case hex digits, the shape of x-mns-request-id."""
    return secrets.token_hex(12).upper()


def new_message_id() -> str:
    """32 upper-case hex digits, the shape of an SMQ MessageId."""
    return secrets.token_hex(16).upper()


def new_receipt_handle(dequeue_count: int) -> str:
    """Unique per receive and URL-safe (the SDK puts it in the query unencoded), shaped like SMQ's "8-0zxjHB..."."""
    return f"{dequeue_count}-{secrets.token_urlsafe(24)}"


def millis(epoch: float) -> str:
    return str(int(epoch * 1000))
