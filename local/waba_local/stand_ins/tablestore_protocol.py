"""The wire protocol of the local Tablestore (OTS) stand-in: routes, signatures, protobuf and PlainBuffer, conditions,
errors.

Pure functions only (no sockets, no state), and nothing from the `tablestore` SDK.
Protocol notes (where each rule and error comes from, and what was chosen): docs/stand-ins.md#tablestore.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import math
import re
import secrets
import struct
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, cast
from urllib.parse import parse_qsl, urlencode

from waba_local.stand_ins.stand_in_base import KeyRing as BaseKeyRing
from waba_local.stand_ins.stand_in_base import ServiceError, WireRequest

API_VERSION = "2015-12-31"
MAX_SKEW_SECONDS = 15 * 60
DATE_FORMAT = "%Y-%m-%dT%H:%M:%S.000Z"
CONTENT_TYPE = "protocol buffer"
OPERATIONS = (
    "CreateTable",
    "ListTable",
    "DescribeTable",
    "DeleteTable",
    "GetRow",
    "PutRow",
    "UpdateRow",
    "DeleteRow",
)
NOT_SERVED = (  # Tablestore operations the SDK can send that the stand-in answers with OTSNotImplemented
    "UpdateTable",
    "BatchGetRow",
    "BatchWriteRow",
    "GetRange",
    "ComputeSplitPointsBySize",
    "StartLocalTransaction",
    "CommitTransaction",
    "AbortTransaction",
    "CreateIndex",
    "DropIndex",
    "ListSearchIndex",
    "CreateSearchIndex",
    "UpdateSearchIndex",
    "DeleteSearchIndex",
    "DescribeSearchIndex",
    "Search",
    "ComputeSplits",
    "ParallelScan",
    "SQLQuery",
)
UNSUPPORTED = "Unsupported"  # recorded operation name of a path that names no Tablestore operation
MAX_PRIMARY_KEYS = 4
MAX_FILTERS = 32  # chosen: Tablestore's limit is not documented where this was checked
PRIMARY_KEY_TYPES = {1: "INTEGER", 2: "STRING", 3: "BINARY"}  # PK_BOOLEAN (5) is refused, as documented

# Code -> (HTTP status, message). Raising sites give the message where Tablestore's depends on the request.
ERRORS: dict[str, tuple[int, str]] = {
    "OTSAuthFailed": (403, "Signature mismatch."),
    "OTSNoPermissionAccess": (
        403,
        "You have no permission to access the requested resource, please contact the resource owner",
    ),
    "OTSRequestBodyTooLarge": (413, "The size of POST data is too large."),
    "OTSRequestTimeout": (408, "Request timeout."),
    "OTSMethodNotAllowed": (405, "OTSMethodNotAllowedOnly POST method for requests is supported."),  # [sic]
    "OTSParameterInvalid": (400, "Cannot deserialize the request data."),
    "OTSInvalidPK": (400, "Primary key schema mismatch."),
    "OTSOutOfRowSizeLimit": (400, "The total data size of columns in one row exceeded the limit."),
    "OTSOutOfColumnCountLimit": (400, "The number of columns in one row exceeded the limit."),
    "OTSInternalServerError": (500, "Internal server error."),
    "OTSQuotaExhausted": (403, "Too frequent table operations."),
    "OTSServerBusy": (503, "Server is busy."),
    "OTSPartitionUnavailable": (503, "The partition is not available."),
    "OTSTimeout": (503, "Operation timeout."),
    "OTSServerUnavailable": (503, "Server is not available."),
    "OTSRowOperationConflict": (409, "Data is being modified by the other request."),
    "OTSObjectAlreadyExist": (409, "Requested table already exists."),
    "OTSObjectNotExist": (404, "Requested table does not exist."),
    "OTSTableNotReady": (404, "The table is not ready."),
    "OTSCapacityUnitExhausted": (403, "Capacity unit is not enough."),
    "OTSNotEnoughCapacityUnit": (403, "Remaining capacity unit is not enough."),
    "OTSConditionCheckFail": (403, "Condition check failed."),
    "OTSFlowControl": (429, "The requests have been throttled."),
    "OTSNotImplemented": (501, "This operation is not served by the local Tablestore stand-in."),  # the stand-in's
}

_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,254}$")
_INSTANCE = re.compile(r"^[A-Za-z][A-Za-z0-9-]{1,14}[A-Za-z0-9]$")
_ACTION = re.compile(r"^/([A-Za-z]+)$")


class OtsError(ServiceError):
    """A Tablestore error answer."""

    ERRORS = ERRORS


def invalid(message: str) -> OtsError:
    return OtsError("OTSParameterInvalid", message)


def check_table_name(name: str) -> None:
    if not _NAME.match(name):
        raise invalid(f"Invalid table name: {name}.")


def check_column_name(name: str) -> None:
    if not _NAME.match(name):
        raise invalid(f"Invalid column name: {name}.")


def check_instance_name(name: str) -> None:
    if not _INSTANCE.match(name):
        raise ValueError(
            f"invalid Tablestore instance name {name!r}: 3 to 16 letters, digits and hyphens, starting with a letter "
            "and not ending with a hyphen"
        )


# --- requests and routes ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class OtsRequest(WireRequest):
    """What arrived on the wire (see WireRequest)."""


def route(request: OtsRequest) -> tuple[str, str]:
    """(the operation to record, the action named by the path). UNSUPPORTED when the path names no operation."""
    match = _ACTION.match(request.raw_path)
    action = match.group(1) if match else request.raw_path.lstrip("/")
    if action in OPERATIONS or action in NOT_SERVED:
        return action, action
    return UNSUPPORTED, action


def table_of(operation: str, body: bytes) -> str | None:
    """The table a request names, for the record (None if it names none or cannot be read)."""
    try:
        message = Pb(body)
        if operation == "CreateTable":
            meta = message.sub(1)
            return None if meta is None else meta.text(1)
        if operation in ("DescribeTable", "DeleteTable", "GetRow", "PutRow", "UpdateRow", "DeleteRow"):
            return message.text(1)
    except (ValueError, OtsError):
        pass
    return None


def new_request_id() -> str:
    """The shape of x-ots-requestid (8-4-4-4-12 hex digits, as Tablestore's request ids look)."""
    return "-".join(secrets.token_hex(n) for n in (4, 2, 2, 2, 6))


# --- authentication -----------------------------------------------------------------------------------------------


class KeyRing(BaseKeyRing):
    """The keys Tablestore accepts, refused as OTSAuthFailed (the wordings for STS tokens are ours)."""

    def rejection(self, reason: str, access_key_id: str) -> Exception:
        messages = {
            "wrong token": "The security token you provided is invalid.",
            "expired": "The security token you provided has expired.",
        }
        return OtsError("OTSAuthFailed", messages.get(reason, "The AccessKeyID does not exist."))


@dataclass(frozen=True)
class Authenticated:
    """Who signed the request, and the key that signs the answer (the secret, or the v4 signing key)."""

    access_key_id: str
    signing_key: bytes = field(repr=False)


REQUIRED_HEADERS = ("x-ots-date", "x-ots-apiversion", "x-ots-accesskeyid", "x-ots-instancename", "x-ots-contentmd5")
SIGNATURE_HEADERS = ("x-ots-signature", "x-ots-signaturev4")


def verify(request: OtsRequest, instance: str, keys: BaseKeyRing, now: float) -> Authenticated:
    """Check the headers, the date against the clock, the body's MD5, the instance, the key (and STS token), then the
    signature (v2, or v4 when x-ots-signaturev4 is sent)."""
    for name in REQUIRED_HEADERS:
        if request.header(name) is None:
            raise invalid(f"Missing header: {name}.")
    v4 = request.header("x-ots-signaturev4")
    signature = v4 if v4 is not None else request.header("x-ots-signature")
    if signature is None:
        raise invalid("Missing header: x-ots-signature.")
    if v4 is not None:
        for name in ("x-ots-signdate", "x-ots-signregion"):
            if request.header(name) is None:
                raise invalid(f"Missing header: {name}.")
    version = request.header("x-ots-apiversion") or ""
    if version != API_VERSION:
        raise invalid(f"Invalid API version: {version}.")  # chosen wording
    stamp = request.header("x-ots-date") or ""
    try:
        signed_at = datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC).timestamp()
    except ValueError:
        raise invalid(f"Invalid date format: {stamp}.") from None
    if abs(signed_at - now) > MAX_SKEW_SECONDS:
        raise OtsError("OTSAuthFailed", f"Mismatch between system time and x-ots-date: {stamp}.")
    if request.header("x-ots-contentmd5") != content_md5(request.body):
        raise OtsError("OTSAuthFailed", "Mismatch between MD5 value of request body and x-ots-contentmd5 in header.")
    if request.header("x-ots-instancename") != instance:
        raise OtsError("OTSAuthFailed", "The instance is not found.")
    access_key_id = request.header("x-ots-accesskeyid") or ""
    secret = keys.secret_for(access_key_id, request.header("x-ots-ststoken"), now)
    text = string_to_sign(request)
    if v4 is not None:
        key = v4_signing_key(secret, request.header("x-ots-signdate") or "", request.header("x-ots-signregion") or "")
        expected = _b64_hmac(key, text + "ots", "sha256")
    else:
        key = secret.encode()
        expected = _b64_hmac(key, text, "sha1")
    if not hmac.compare_digest(expected.encode(), signature.encode()):
        raise OtsError("OTSAuthFailed", "Signature mismatch.")
    return Authenticated(access_key_id, key)


def string_to_sign(request: OtsRequest) -> str:
    """<path>\\n<METHOD>\\n<sorted query>\\n<x-ots-* headers but the signatures, sorted name:value lines>\\n"""
    query = urlencode(sorted(parse_qsl(request.raw_query)))
    return f"{request.raw_path}\n{request.method}\n{query}\n{_canonical_headers(request.headers)}\n"


def v4_signing_key(secret: str, sign_date: str, region: str) -> bytes:
    key = hmac.new(("aliyun_v4" + secret).encode(), sign_date.encode(), "sha256").digest()
    for part in (region, "ots", "aliyun_v4_request"):
        key = hmac.new(key, part.encode(), "sha256").digest()
    return base64.b64encode(key)


def response_signature(signing_key: bytes, headers: Mapping[str, str], path: str) -> str:
    canonical = _canonical_headers({name: [value] for name, value in headers.items()})
    return _b64_hmac(signing_key, f"{canonical}\n{path}", "sha1")


def claimed_access_key_id(request: OtsRequest) -> str | None:
    """The AccessKeyId the request names (not a secret), whether or not it checks out."""
    return request.header("x-ots-accesskeyid")


def content_md5(body: bytes) -> str:
    return base64.b64encode(hashlib.md5(body).digest()).decode()


def format_date(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime(DATE_FORMAT)


def answer_headers(body: bytes, request_id: str, now: float, path: str, auth: Authenticated | None) -> dict[str, str]:
    """The x-ots-* headers of an answer, and Authorization when the request's key is known."""
    headers = {
        "x-ots-contentmd5": content_md5(body),
        "x-ots-requestid": request_id,
        "x-ots-date": format_date(now),
        "x-ots-contenttype": CONTENT_TYPE,
    }
    if auth is not None:
        headers["Authorization"] = f"OTS {auth.access_key_id}:{response_signature(auth.signing_key, headers, path)}"
    return headers


def _canonical_headers(headers: Mapping[str, Sequence[str]]) -> str:
    lines = (
        f"{name.lower()}:{','.join(value.strip() for value in values)}"
        for name, values in headers.items()
        if name.lower().startswith("x-ots-") and name.lower() not in SIGNATURE_HEADERS
    )
    return "\n".join(sorted(lines))


def _b64_hmac(key: bytes, text: str, digest: str) -> str:
    return base64.b64encode(hmac.new(key, text.encode(), digest).digest()).decode()


# --- protobuf (proto2 wire format) --------------------------------------------------------------------------------


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= len(data) or shift > 63:
            raise ValueError("truncated varint")
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7


class Pb:
    """A decoded protobuf message: field number -> every value it had (varints as int, the rest as bytes).

    Accessors take the last value of a field, as proto2 parsers do, and raise ValueError on a wrong wire type."""

    def __init__(self, data: bytes) -> None:
        self.fields: dict[int, list[int | bytes]] = {}
        pos = 0
        while pos < len(data):
            key, pos = _varint(data, pos)
            number, wire = key >> 3, key & 7
            value: int | bytes
            if number == 0:
                raise ValueError("field number 0")
            if wire == 0:
                value, pos = _varint(data, pos)
            elif wire in (1, 2, 5):
                if wire == 2:
                    size, pos = _varint(data, pos)
                else:
                    size = 8 if wire == 1 else 4
                if pos + size > len(data):
                    raise ValueError("truncated field")
                value, pos = data[pos : pos + size], pos + size
            else:
                raise ValueError(f"wire type {wire}")
            self.fields.setdefault(number, []).append(value)

    def has(self, number: int) -> bool:
        return number in self.fields

    def varint(self, number: int) -> int | None:
        """An int32/int64/enum/bool field (two's complement for negatives), or None."""
        values = self.varints(number)
        return values[-1] if values else None

    def varints(self, number: int) -> list[int]:
        values = self.fields.get(number, [])
        if not all(isinstance(value, int) for value in values):
            raise ValueError(f"field {number} is not a varint")
        return [value - (1 << 64) if value >= 1 << 63 else value for value in values if isinstance(value, int)]

    def blob(self, number: int) -> bytes | None:
        values = self.blobs(number)
        return values[-1] if values else None

    def blobs(self, number: int) -> list[bytes]:
        values = self.fields.get(number, [])
        if not all(isinstance(value, bytes) for value in values):
            raise ValueError(f"field {number} is not length-delimited")
        return [value for value in values if isinstance(value, bytes)]

    def text(self, number: int) -> str | None:
        value = self.blob(number)
        return None if value is None else value.decode()

    def texts(self, number: int) -> list[str]:
        return [value.decode() for value in self.blobs(number)]

    def sub(self, number: int) -> Pb | None:
        value = self.blob(number)
        return None if value is None else Pb(value)

    def subs(self, number: int) -> list[Pb]:
        return [Pb(value) for value in self.blobs(number)]


PbValue = int | bool | str | bytes | None


def pb_encode(*fields: tuple[int, PbValue]) -> bytes:
    """Encode (number, value) pairs in order: int/bool as varints (negatives as 64-bit two's complement), str and
    bytes (submessages included) length-delimited. None values are left out; repeat a number for a repeated field."""
    out = bytearray()
    for number, value in fields:
        if value is None:
            continue
        if isinstance(value, bool | int):
            out += _encode_varint(number << 3) + _encode_varint(int(value) % (1 << 64))
        else:
            raw = value.encode() if isinstance(value, str) else value
            out += _encode_varint(number << 3 | 2) + _encode_varint(len(raw)) + raw
    return bytes(out)


def _encode_varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _parse(body: bytes) -> Pb:
    try:
        return Pb(body)
    except ValueError:
        raise invalid("Parse PBMessage from RawString failed.") from None


def _required_text(value: str | None) -> str:
    if value is None:
        raise invalid("Parse PBMessage from RawString failed.")  # a proto2 required field is missing
    return value


def _required_blob(value: bytes | None) -> bytes:
    if value is None:
        raise invalid("Parse PBMessage from RawString failed.")
    return value


# --- PlainBuffer --------------------------------------------------------------------------------------------------

HEADER = 0x75
TAG_ROW_PK, TAG_ROW_DATA, TAG_CELL, TAG_CELL_NAME, TAG_CELL_VALUE = 0x1, 0x2, 0x3, 0x4, 0x5
TAG_CELL_TYPE, TAG_CELL_TIMESTAMP, TAG_DELETE_ROW_MARKER, TAG_ROW_CHECKSUM, TAG_CELL_CHECKSUM = 0x6, 0x7, 0x8, 0x9, 0xA
VT_INTEGER, VT_DOUBLE, VT_BOOLEAN, VT_STRING, VT_NULL, VT_BLOB = 0x0, 0x1, 0x2, 0x3, 0x6, 0x7
VT_INF_MIN, VT_INF_MAX, VT_AUTO_INCREMENT = 0x9, 0xA, 0xB
DELETE_ALL_VERSION, DELETE_ONE_VERSION, INCREMENT = 0x1, 0x3, 0x4

Value = bool | int | float | str | bytes  # STRING is str, BINARY (BLOB) is bytes


def _crc8_table() -> list[int]:
    table = []
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = ((crc << 1) ^ 0x07) & 0xFF if crc & 0x80 else (crc << 1) & 0xFF
        table.append(crc)
    return table


CRC8_TABLE = _crc8_table()


def crc8(crc: int, data: bytes | Iterable[int]) -> int:
    for byte in data:
        crc = CRC8_TABLE[(crc ^ byte) & 0xFF]
    return crc


def _crc_int32(crc: int, value: int) -> int:
    return crc8(crc, struct.pack("<i", value))


def _crc_int64(crc: int, value: int) -> int:
    return crc8(crc, struct.pack("<q", value))


@dataclass(frozen=True)
class Cell:
    """One attribute cell of a row change: value None for deletes, op None for a put."""

    name: str
    value: Value | None
    op: int | None = None
    timestamp: int | None = None


@dataclass(frozen=True)
class PlainRow:
    primary_key: tuple[tuple[str, Value], ...]
    cells: tuple[Cell, ...] = ()
    delete_marker: bool = False


def _broken(message: str) -> OtsError:
    return invalid(f"Cell data broken, {message}")


class _Reader:
    def __init__(self, data: bytes) -> None:
        self.data, self.pos = data, 0

    def take(self, size: int) -> bytes:
        if size < 0 or self.pos + size > len(self.data):
            raise _broken("length is shorter than expect.")
        chunk = self.data[self.pos : self.pos + size]
        self.pos += size
        return chunk

    def byte(self) -> int:
        return self.take(1)[0]

    def int32(self) -> int:
        value: int = struct.unpack("<i", self.take(4))[0]
        return value

    def int64(self) -> int:
        value: int = struct.unpack("<q", self.take(8))[0]
        return value

    def tag(self) -> int | None:
        return None if self.pos == len(self.data) else self.byte()


def parse_row(data: bytes) -> PlainRow:
    """A PlainBuffer row (a primary key, a row change or a delete), checksums checked."""
    reader = _Reader(data)
    if len(data) < 4 or (header := reader.int32()) != HEADER:
        raise _broken(f"mismatch header, actual: {header if len(data) >= 4 else 0}, expect: {HEADER}.")
    tag = reader.tag()
    if tag != TAG_ROW_PK:
        raise _broken(f"mismatch tag, actual tag({tag}), expect({TAG_ROW_PK}).")
    row_crc = 0
    primary_key: list[tuple[str, Value]] = []
    cells: list[Cell] = []
    tag = reader.tag()
    while tag == TAG_CELL:
        cell, cell_crc, tag = _read_cell(reader)
        if cell.value is None:
            raise _broken(f"PK value cannot be NULL, name: {cell.name}.")
        if cell.op is not None:
            raise invalid(f"OpType cannot be given for primary key name :{cell.name}.")
        if cell.timestamp is not None:
            raise invalid(f"Timestamp cannot be given for primary key name:{cell.name}.")
        primary_key.append((cell.name, cell.value))
        row_crc = crc8(row_crc, [cell_crc])
    if not primary_key:
        raise _broken("PK is empty.")
    if tag == TAG_ROW_DATA:
        tag = reader.tag()
        while tag == TAG_CELL:
            cell, cell_crc, tag = _read_cell(reader)
            cells.append(cell)
            row_crc = crc8(row_crc, [cell_crc])
    delete_marker = tag == TAG_DELETE_ROW_MARKER
    if delete_marker:
        tag = reader.tag()
    row_crc = crc8(row_crc, [1 if delete_marker else 0])
    if tag != TAG_ROW_CHECKSUM:
        raise _broken("row is not end with checksum tag.")
    checksum = reader.byte()
    if checksum != row_crc:
        raise _broken(f"checksum is mismatch, {checksum} :{row_crc} :")
    if reader.tag() is not None:
        raise invalid("data format is invalid.")
    return PlainRow(tuple(primary_key), tuple(cells), delete_marker)


def _read_cell(reader: _Reader) -> tuple[Cell, int, int | None]:
    """A cell after its TAG_CELL: (the cell, its checksum, the tag that follows it)."""
    if reader.tag() != TAG_CELL_NAME:
        raise _broken("attr has no name.")
    raw_name = reader.take(reader.int32())
    try:
        name = raw_name.decode()
    except UnicodeDecodeError:
        raise invalid("Value of column must be UTF8 encoding.") from None
    crc = crc8(0, raw_name)
    value: Value | None = None
    op = timestamp = None
    tag = reader.tag()
    if tag == TAG_CELL_VALUE:
        size = reader.int32()
        start = reader.pos
        value, crc = _read_value(reader, crc)
        if reader.pos - start != size:
            raise invalid("data format is invalid.")
        tag = reader.tag()
    seen: set[int] = set()
    while tag in (TAG_CELL_TYPE, TAG_CELL_TIMESTAMP) and tag not in seen:  # the SDK writes type, then timestamp
        seen.add(tag)
        if tag == TAG_CELL_TYPE:
            op = reader.byte()
        else:
            timestamp = reader.int64()
        tag = reader.tag()
    if timestamp is not None:
        crc = _crc_int64(crc, timestamp)
    if op is not None:
        crc = crc8(crc, [op])
    if tag != TAG_CELL_CHECKSUM:
        raise _broken("cell is not end with checksum[0x0A] tag.")
    checksum = reader.byte()
    if checksum != crc:
        raise _broken(f"checksum is mismatch, {checksum} :{crc} :")
    return Cell(name, value, op, timestamp), crc, reader.tag()


def _read_value(reader: _Reader, crc: int) -> tuple[Value, int]:
    kind = reader.byte()
    crc = crc8(crc, [kind])
    if kind == VT_INTEGER:
        number = reader.int64()
        return number, _crc_int64(crc, number)
    if kind == VT_DOUBLE:
        raw = reader.take(8)
        double: float = struct.unpack("<d", raw)[0]
        if math.isnan(double):
            raise invalid("NaN can't be set to double value.")
        if math.isinf(double):
            raise invalid("Infinity can't be set to double value.")
        return double, crc8(crc, raw)
    if kind == VT_BOOLEAN:
        flag = reader.byte() != 0
        return flag, crc8(crc, [1 if flag else 0])
    if kind in (VT_STRING, VT_BLOB):
        size = reader.int32()
        raw = reader.take(size)
        crc = crc8(_crc_int32(crc, size), raw)
        if kind == VT_BLOB:
            return raw, crc
        try:
            return raw.decode(), crc
        except UnicodeDecodeError:
            raise _broken(f"wrong string format, size: {size}.") from None
    if kind in (VT_INF_MIN, VT_INF_MAX, VT_AUTO_INCREMENT):
        raise OtsError(
            "OTSNotImplemented", "INF_MIN, INF_MAX and auto-increment values are not served by the local stand-in."
        )
    raise invalid("data format is invalid, unknown variant type occured.")  # [sic]


def parse_value(data: bytes) -> Value:
    """A bare PlainBuffer value (type byte and payload, no length prefix): a column condition's value."""
    reader = _Reader(data)
    value, _ = _read_value(reader, 0)
    if reader.tag() is not None:
        raise invalid("data format is invalid.")
    return value


def encode_row(
    primary_key: Sequence[tuple[str, Value]], columns: Sequence[tuple[str, Value, int | None]] = ()
) -> bytes:
    """A PlainBuffer row as Tablestore answers it: the primary key, then each column with its timestamp."""
    out = bytearray(struct.pack("<i", HEADER))
    out.append(TAG_ROW_PK)
    row_crc = 0
    for name, value in primary_key:
        cell, cell_crc = _encode_cell(name, value, None)
        out += cell
        row_crc = crc8(row_crc, [cell_crc])
    if columns:
        out.append(TAG_ROW_DATA)
        for name, value, timestamp in columns:
            cell, cell_crc = _encode_cell(name, value, timestamp)
            out += cell
            row_crc = crc8(row_crc, [cell_crc])
    out += bytes([TAG_ROW_CHECKSUM, crc8(row_crc, [0])])
    return bytes(out)


def _encode_cell(name: str, value: Value, timestamp: int | None) -> tuple[bytes, int]:
    raw_name = name.encode()
    payload = encode_value(value)
    crc = crc8(crc8(0, raw_name), payload)  # the checksum covers exactly the type byte and the payload
    out = bytearray([TAG_CELL, TAG_CELL_NAME]) + struct.pack("<i", len(raw_name)) + raw_name
    out += bytes([TAG_CELL_VALUE]) + struct.pack("<i", len(payload)) + payload
    if timestamp is not None:
        out += bytes([TAG_CELL_TIMESTAMP]) + struct.pack("<q", timestamp)
        crc = _crc_int64(crc, timestamp)
    out += bytes([TAG_CELL_CHECKSUM, crc])
    return bytes(out), crc


def encode_value(value: Value) -> bytes:
    """The type byte and the payload of a value (what follows a cell value's length)."""
    if isinstance(value, bool):
        return bytes([VT_BOOLEAN, 1 if value else 0])
    if isinstance(value, int):
        return bytes([VT_INTEGER]) + struct.pack("<q", value)
    if isinstance(value, float):
        return bytes([VT_DOUBLE]) + struct.pack("<d", value)
    raw = value.encode() if isinstance(value, str) else value
    return bytes([VT_STRING if isinstance(value, str) else VT_BLOB]) + struct.pack("<i", len(raw)) + raw


def value_type(value: Value) -> str:
    if isinstance(value, bool):
        return "BOOLEAN"
    if isinstance(value, int):
        return "INTEGER"
    if isinstance(value, float):
        return "DOUBLE"
    return "STRING" if isinstance(value, str) else "BINARY"


# --- conditions ---------------------------------------------------------------------------------------------------

IGNORE, EXPECT_EXIST, EXPECT_NOT_EXIST = 0, 1, 2
CT_EQUAL, CT_NOT_EQUAL, CT_GREATER_THAN, CT_GREATER_EQUAL, CT_LESS_THAN, CT_LESS_EQUAL = 1, 2, 3, 4, 5, 6
CT_EXIST, CT_NOT_EXIST = 7, 8
LO_NOT, LO_AND, LO_OR = 1, 2, 3
FT_SINGLE_COLUMN_VALUE, FT_COMPOSITE_COLUMN_VALUE, FT_COLUMN_PAGINATION = 1, 2, 3


@dataclass(frozen=True)
class SingleCondition:
    comparator: int
    column: str
    value: Value
    filter_if_missing: bool  # the SDK sends `not pass_if_missing`
    latest_version_only: bool


@dataclass(frozen=True)
class CompositeCondition:
    operator: int
    subs: tuple[ColumnCondition, ...]


ColumnCondition = SingleCondition | CompositeCondition


@dataclass(frozen=True)
class RowCondition:
    expectation: int = IGNORE
    column: ColumnCondition | None = None

    @property
    def reads(self) -> bool:
        return self.expectation != IGNORE or self.column is not None


def parse_filter(data: bytes) -> ColumnCondition:
    """A serialized Filter: a single column condition or an AND/OR/NOT of them."""
    count = [0]
    try:
        return _parse_filter(Pb(data), count)
    except ValueError:
        raise invalid("Deserialize filter failed.") from None


def _parse_filter(message: Pb, count: list[int]) -> ColumnCondition:
    count[0] += 1
    if count[0] > MAX_FILTERS:
        raise invalid(f"The count of filter exceeds the max:{MAX_FILTERS}.")
    kind, body = message.varint(1), message.blob(2)
    if kind is None or body is None:
        raise invalid("Deserialize filter failed.")
    if kind == FT_SINGLE_COLUMN_VALUE:
        single = Pb(body)
        comparator, name, raw = single.varint(1), single.text(2), single.blob(3)
        missing, latest = single.varint(4), single.varint(5)
        if comparator is None or name is None or raw is None or missing is None or latest is None:
            raise invalid("Deserialize relation filter failed.")
        if not CT_EQUAL <= comparator <= CT_NOT_EXIST:
            raise invalid(f"Invalid relation operator: {comparator}.")
        if single.has(6):
            raise OtsError("OTSNotImplemented", "Regular-expression conditions are not served by the local stand-in.")
        return SingleCondition(comparator, name, parse_value(raw), bool(missing), bool(latest))
    if kind == FT_COMPOSITE_COLUMN_VALUE:
        composite = Pb(body)
        operator = composite.varint(1)
        if operator not in (LO_NOT, LO_AND, LO_OR):
            raise invalid("Deserialize composite filter failed.")
        subs = tuple(_parse_filter(sub, count) for sub in composite.subs(2))
        if operator == LO_NOT and len(subs) != 1:
            raise invalid("Invalid NOT operator: the number of sub-filters must be 1.")
        if operator != LO_NOT and len(subs) < 2:
            raise invalid("Invalid AND/OR operator: the number of sub-filters must be 2.")
        return CompositeCondition(operator, subs)
    if kind == FT_COLUMN_PAGINATION:
        raise OtsError("OTSNotImplemented", "Column pagination filters are not served by the local stand-in.")
    raise invalid(f"Invalid type of filter: {kind}.")


def evaluate(condition: ColumnCondition, columns: Mapping[str, Value]) -> bool:
    """Whether a row's latest column values pass a column condition."""
    if isinstance(condition, CompositeCondition):
        results = (evaluate(sub, columns) for sub in condition.subs)
        if condition.operator == LO_NOT:
            return not next(results)
        return all(results) if condition.operator == LO_AND else any(results)
    if condition.column not in columns:
        if condition.comparator in (CT_EXIST, CT_NOT_EXIST):
            return condition.comparator == CT_NOT_EXIST
        return not condition.filter_if_missing
    actual, expected = columns[condition.column], condition.value
    if condition.comparator in (CT_EXIST, CT_NOT_EXIST):
        return condition.comparator == CT_EXIST
    if value_type(actual) != value_type(expected):  # chosen: values of different types are unequal, unordered
        return condition.comparator == CT_NOT_EQUAL
    left, right = cast(Any, actual), cast(Any, expected)  # the same type, so ordered
    order: int = (left > right) - (left < right)
    return {
        CT_EQUAL: order == 0,
        CT_NOT_EQUAL: order != 0,
        CT_GREATER_THAN: order > 0,
        CT_GREATER_EQUAL: order >= 0,
        CT_LESS_THAN: order < 0,
        CT_LESS_EQUAL: order <= 0,
    }[condition.comparator]


def condition_holds(condition: RowCondition, current: Mapping[str, Value] | None) -> bool:
    """The row-existence expectation, then the column condition, against the row as it is now (None: no row)."""
    if condition.expectation == EXPECT_EXIST and current is None:
        return False
    if condition.expectation == EXPECT_NOT_EXIST and current is not None:
        return False
    return condition.column is None or evaluate(condition.column, current or {})


def _parse_condition(message: Pb | None) -> RowCondition:
    if message is None:
        raise invalid("Parse PBMessage from RawString failed.")
    expectation = message.varint(1)
    if expectation not in (IGNORE, EXPECT_EXIST, EXPECT_NOT_EXIST):
        raise invalid(f"Invalid row-existence expectation: {expectation}.")
    raw = message.blob(2)
    return RowCondition(expectation, None if raw is None else parse_filter(raw))


# --- operations ---------------------------------------------------------------------------------------------------

RT_NONE, RT_PK, RT_AFTER_MODIFY = 0, 1, 2


@dataclass(frozen=True)
class TableSpec:
    name: str
    primary_key: tuple[tuple[str, str], ...]  # (name, "STRING" | "INTEGER" | "BINARY")
    read_cu: int = 0
    write_cu: int = 0
    time_to_live: int = -1
    max_versions: int = 1
    max_time_deviation: int = 86400


@dataclass(frozen=True)
class GetRow:
    table: str
    primary_key: tuple[tuple[str, Value], ...]
    columns_to_get: tuple[str, ...]
    max_versions: int | None
    time_range: tuple[int | None, int | None, int | None] | None  # (start, end, specific)
    column_filter: ColumnCondition | None
    transaction_id: str | None


@dataclass(frozen=True)
class WriteRow:
    """PutRow, UpdateRow or DeleteRow."""

    operation: str
    table: str
    row: PlainRow
    condition: RowCondition
    return_type: int
    return_columns: tuple[str, ...]
    transaction_id: str | None


def parse_create_table(body: bytes) -> TableSpec:
    try:
        message = _parse(body)
        meta = message.sub(1)
        if meta is None or message.sub(2) is None:
            raise invalid("Parse PBMessage from RawString failed.")
        name = _required_text(meta.text(1))
        check_table_name(name)
        schema: list[tuple[str, str]] = []
        for column in meta.subs(2):
            column_name, kind = _required_text(column.text(1)), column.varint(2)
            check_column_name(column_name)
            if column.has(3):
                raise OtsError("OTSNotImplemented", "Auto-increment primary keys are not served by the local stand-in.")
            if kind not in PRIMARY_KEY_TYPES:
                raise invalid("Invalid column type, only STRING,INTEGER,BINARY is allowed.")
            if any(column_name == seen for seen, _ in schema):
                raise invalid(f"Duplicated primary key name: '{column_name}'.")
            schema.append((column_name, PRIMARY_KEY_TYPES[kind]))
        if not 1 <= len(schema) <= MAX_PRIMARY_KEYS:
            raise invalid(f"The number of primary key columns must be in range: [1, {MAX_PRIMARY_KEYS}].")
        throughput = message.sub(2)
        unit = None if throughput is None else throughput.sub(1)
        options = message.sub(3)
        if options is None or options.varint(1) is None:
            raise invalid("Time-to-live is missing while creating table.")
        if options.varint(2) is None:
            raise invalid("MaxVersions is missing while creating table.")
        ttl, versions = options.varint(1) or 0, options.varint(2) or 0
        if ttl == 0 or ttl < -1:
            raise invalid("TimeToLive cannot be 0 or less than -1.")
        if versions <= 0:
            raise invalid("The maximum versions cannot be less than or equal to 0.")
        return TableSpec(
            name,
            tuple(schema),
            (unit.varint(1) or 0) if unit else 0,
            (unit.varint(2) or 0) if unit else 0,
            ttl,
            versions,
            deviation if (deviation := options.varint(5)) is not None else 86400,
        )
    except (ValueError, UnicodeDecodeError):
        raise invalid("Parse PBMessage from RawString failed.") from None


def parse_table_name(body: bytes) -> str:
    """DescribeTable and DeleteTable: the table_name field."""
    try:
        return _required_text(_parse(body).text(1))
    except (ValueError, UnicodeDecodeError):
        raise invalid("Parse PBMessage from RawString failed.") from None


def parse_get_row(body: bytes) -> GetRow:
    try:
        message = _parse(body)
        table = _required_text(message.text(1))
        row = parse_row(_required_blob(message.blob(2)))
        if row.cells or row.delete_marker:
            raise invalid("Attribute column cannot be given while reading data.")
        window = message.sub(4)
        time_range = None if window is None else (window.varint(1), window.varint(2), window.varint(3))
        raw_filter = message.blob(7)
        return GetRow(
            table,
            row.primary_key,
            tuple(dict.fromkeys(message.texts(3))),
            message.varint(5),
            time_range,
            None if raw_filter is None else parse_filter(raw_filter),
            message.text(11),
        )
    except (ValueError, UnicodeDecodeError):
        raise invalid("Parse PBMessage from RawString failed.") from None


def parse_write(operation: str, body: bytes) -> WriteRow:
    """PutRowRequest, UpdateRowRequest and DeleteRowRequest share their field numbers."""
    try:
        message = _parse(body)
        table = _required_text(message.text(1))
        row = parse_row(_required_blob(message.blob(2)))
        condition = _parse_condition(message.sub(3))
        returns = message.sub(4)
        return_type = (returns.varint(1) or RT_NONE) if returns else RT_NONE
        if return_type not in (RT_NONE, RT_PK, RT_AFTER_MODIFY):
            raise invalid(f"Invalid return type: {return_type}.")
        return_columns = tuple(returns.texts(2)) if returns else ()
        return WriteRow(operation, table, row, condition, return_type, return_columns, message.text(5))
    except (ValueError, UnicodeDecodeError):
        raise invalid("Parse PBMessage from RawString failed.") from None


def check_primary_key(spec: TableSpec, primary_key: Sequence[tuple[str, Value]]) -> tuple[Value, ...]:
    """The row's key in the table's order, if its names, order and types are the table's (else OTSInvalidPK)."""
    names = [name for name, _ in primary_key]
    if len(set(names)) != len(names):
        raise invalid(f"Duplicated primary key name: '{next(n for n in names if names.count(n) > 1)}'.")
    if len(primary_key) != len(spec.primary_key):
        raise OtsError("OTSInvalidPK")
    for (name, value), (expected_name, expected_type) in zip(primary_key, spec.primary_key, strict=True):
        if name != expected_name or value_type(value) != expected_type:
            raise OtsError("OTSInvalidPK")
    return tuple(value for _, value in primary_key)


# --- answers ------------------------------------------------------------------------------------------------------


def consumed(read: int, write: int) -> bytes:
    """ConsumedCapacity{CapacityUnit{read, write}}."""
    return pb_encode((1, pb_encode((1, read), (2, write))))


def get_row_response(read: int, row: bytes) -> bytes:
    """GetRowResponse: row is required, empty when there is no row."""
    return pb_encode((1, consumed(read, 0)), (2, row))


def write_response(read: int, write: int, row: bytes | None) -> bytes:
    """PutRowResponse, UpdateRowResponse and DeleteRowResponse."""
    return pb_encode((1, consumed(read, write)), (2, row))


def list_table_response(names: Iterable[str]) -> bytes:
    return pb_encode(*((1, name) for name in names))


def describe_table_response(spec: TableSpec, created: float) -> bytes:
    types = {kind: number for number, kind in PRIMARY_KEY_TYPES.items()}
    schema = [(2, pb_encode((1, name), (2, types[kind]))) for name, kind in spec.primary_key]
    meta = pb_encode((1, spec.name), *schema)
    details = pb_encode((1, pb_encode((1, spec.read_cu), (2, spec.write_cu))), (2, int(created)))
    options = pb_encode((1, spec.time_to_live), (2, spec.max_versions), (5, spec.max_time_deviation))
    return pb_encode((1, meta), (2, details), (3, options))


def error_body(error: OtsError) -> bytes:
    """Tablestore's Error message: code, message."""
    return pb_encode((1, error.code), (2, error.message))
