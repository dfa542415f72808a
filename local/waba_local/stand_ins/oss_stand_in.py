"""A local stand-in for Alibaba Cloud OSS that the real `alibabacloud-oss-v2` client (V4 signing) can talk to.

It serves the objects a cache client reads and writes, checks signatures as OSS does, records every request, and
fails on demand. What it serves, its control plane (faults, buckets) and how to run it: docs/stand-ins.md#oss.
"""

from __future__ import annotations

import base64
import hashlib
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from waba_local.stand_ins.oss_protocol import (
    OPERATIONS,
    UNSUPPORTED,
    KeyRing,
    ListPage,
    OssError,
    OssRequest,
    Resource,
    check_content_md5,
    check_names,
    crc64ecma,
    decode_token,
    encode_token,
    error_xml,
    etag_of,
    http_date,
    iso_time,
    list_v2_xml,
    new_request_id,
    operation,
    resolve,
    verify_v4,
)
from waba_local.stand_ins.stand_in_base import (
    Answer,
    FaultyStandIn,
    ServiceError,
    StandInHandler,
    WireRequest,
    cli_parser,
    json_answer,
    serve_until_interrupted,
)

DEFAULT_ACCESS_KEY_ID = "LTAI5tLocalOssKey"
DEFAULT_ACCESS_KEY_SECRET = "local-oss-secret"
MAX_BODY = 64 << 20  # enough for cache entries; refuse to buffer more


@dataclass(frozen=True)
class StoredObject:
    data: bytes
    content_type: str
    last_modified: float
    etag: str
    crc64: int  # computed once at upload: the pure-Python CRC costs ~1 s per MB


@dataclass(frozen=True)
class RequestRecord:
    """One answered request. status 0 means the connection was dropped without an answer."""

    operation: str
    bucket: str | None
    key: str | None
    status: int
    code: str  # the OSS error code, "" on success, "Dropped" for a dropped connection
    request_id: str
    access_key_id: str | None  # the id the request claimed (not a secret); None when it named none


class _Handler(StandInHandler):
    SERVER_NAME, MAX_BODY, REQUEST = "AliyunOSS", MAX_BODY, OssRequest
    do_GET = do_PUT = do_HEAD = do_DELETE = do_POST = StandInHandler._dispatch


class OssStandIn(FaultyStandIn[RequestRecord]):
    """One OSS region on 127.0.0.1 with its buckets, AccessKeys and STS credentials.

    `clock` (epoch seconds) judges x-oss-date and STS expiry; pass a skewed one to provoke RequestTimeTooSkewed.
    """

    THREAD_NAME, DESCRIPTION = "oss-stand-in", "the OSS stand-in"
    OPERATIONS, ERROR, HANDLER = OPERATIONS, OssError, _Handler

    def __init__(
        self,
        region: str = "ap-southeast-1",
        credentials: dict[str, str] | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        static = {DEFAULT_ACCESS_KEY_ID: DEFAULT_ACCESS_KEY_SECRET} if credentials is None else dict(credentials)
        super().__init__(host, port, KeyRing(static), clock)
        self.region = region
        self._buckets: dict[str, dict[str, StoredObject]] = {}

    # --- setup -----------------------------------------------------------------------------------------------

    def create_bucket(self, name: str) -> None:
        check_names(Resource(name, None))
        with self._lock:
            self._buckets.setdefault(name, {})

    def put(self, bucket: str, key: str, data: bytes, content_type: str = "application/octet-stream") -> None:
        """Store an object directly (no request recorded), e.g. to seed a cache."""
        with self._lock:
            self._bucket(bucket)[key] = _stored(data, content_type, self._clock())

    def objects(self, bucket: str) -> dict[str, bytes]:
        """A copy of the bucket's objects, key -> bytes."""
        with self._lock:
            return {key: stored.data for key, stored in self._bucket(bucket).items()}

    # --- the API ---------------------------------------------------------------------------------------------

    def handle(self, request: OssRequest) -> Answer:
        """Answer one OSS request and record it."""
        request_id = new_request_id()
        resource = resolve(request.header("host") or "", request.raw_path)
        query = request.query()
        op = operation(request.method, resource, query)
        claimed = None
        try:
            dropped = RequestRecord(op, resource.bucket, resource.key, 0, "Dropped", request_id, None)
            faulted = self._front_end(op, dropped)  # before names, signatures or the store are looked at
            if faulted is not None:
                return faulted
            check_names(resource)
            keys = self._key_ring()
            claimed = verify_v4(request, resource, keys, self.region, self._clock())
            answer = self._serve(op, request, resource, query, request_id)
        except OssError as error:
            answer = self._error(error, request, resource, request_id)
            code = error.code
        else:
            code = ""
        self._record(RequestRecord(op, resource.bucket, resource.key, answer.status, code, request_id, claimed))
        return answer

    def _serve(
        self, op: str, request: OssRequest, resource: Resource, query: dict[str, str], request_id: str
    ) -> Answer:
        bucket, key = resource.bucket or "", resource.key or ""
        if op == UNSUPPORTED:
            raise OssError("NotImplemented")
        if op == "PutBucket":
            with self._lock:
                if bucket in self._buckets:
                    raise OssError("BucketAlreadyExists", extras={"BucketName": bucket})
                self._buckets[bucket] = {}
            return self._answer(200, request_id, {"Location": f"/{bucket}"})
        with self._lock:
            objects = self._bucket(bucket)
            if op == "ListObjectsV2":
                page = _list_page(objects, query)
            elif op == "PutObject":
                stored = self._put_locked(objects, key, request)
            elif op == "DeleteObject":
                objects.pop(key, None)  # OSS answers 204 for a missing key too
            elif key in objects:
                stored = objects[key]
            else:
                raise OssError("NoSuchKey", extras={"Key": key})
        if op == "ListObjectsV2":
            body = list_v2_xml(bucket, query, page)
            return self._answer(200, request_id, {"Content-Type": "application/xml"}, body)
        if op == "DeleteObject":
            return self._answer(204, request_id)
        headers = {"ETag": stored.etag, "x-oss-hash-crc64ecma": str(stored.crc64), "Content-MD5": _md5_b64(stored.data)}
        if op == "PutObject":
            return self._answer(200, request_id, headers)
        if op == "GetObjectMeta":
            headers |= {"Last-Modified": http_date(stored.last_modified)}
            return self._answer(200, request_id, headers, stored.data)  # a HEAD: only the length is sent
        headers |= {
            "Content-Type": stored.content_type,
            "Last-Modified": http_date(stored.last_modified),
            "x-oss-object-type": "Normal",
            "x-oss-storage-class": "Standard",
            "Accept-Ranges": "bytes",
        }
        return self._answer(200, request_id, headers, stored.data)

    def _put_locked(self, objects: dict[str, StoredObject], key: str, request: OssRequest) -> StoredObject:
        check_content_md5(request)
        if (request.header("x-oss-forbid-overwrite") or "").lower() == "true" and key in objects:
            raise OssError("FileAlreadyExists")
        content_type = request.header("content-type") or "application/octet-stream"
        objects[key] = _stored(request.body, content_type, self._clock())
        return objects[key]

    def _bucket(self, name: str) -> dict[str, StoredObject]:
        if name not in self._buckets:
            raise OssError("NoSuchBucket", extras={"BucketName": name})
        return self._buckets[name]

    def _answer(self, status: int, request_id: str, headers: dict[str, str] | None = None, body: bytes = b"") -> Answer:
        return Answer(status, {"x-oss-request-id": request_id, **(headers or {})}, body)

    def _error(self, error: OssError, request: OssRequest, resource: Resource, request_id: str) -> Answer:
        host = f"oss-{self.region}.aliyuncs.com"
        body = error_xml(error, request_id, f"{resource.bucket}.{host}" if resource.bucket else host)
        headers = {"x-oss-request-id": request_id, "Content-Type": "application/xml"}
        if error.ec:
            headers["x-oss-ec"] = error.ec
        if request.method == "HEAD":  # no body on HEAD: OSS sends the error document base64-encoded in x-oss-err
            headers["x-oss-err"] = base64.b64encode(body).decode()
            body = b""
        return Answer(error.status, headers, body)

    def body_refusal(self, too_large: bool, target: str) -> Answer:
        error = (
            OssError("EntityTooLarge")
            if too_large
            else OssError("InvalidArgument", "Bad Content-Length or chunk size.")
        )
        request_id = new_request_id()
        body = error_xml(error, request_id, f"oss-{self.region}.aliyuncs.com")
        return Answer(error.status, {"x-oss-request-id": request_id, "Content-Type": "application/xml"}, body)

    # --- the control plane: POST buckets besides faults and requests -------------------------------------------

    def is_control(self, request: WireRequest) -> bool:
        """The control plane's paths, unless addressed to a bucket (absolute-form and virtual-hosted requests address
        by their Host header)."""
        return super().is_control(request) and resolve(request.header("host") or "", "/").bucket is None

    def _control(self, method: str, route: str, request: dict[str, Any]) -> Any:
        if (method, route) != ("POST", "buckets"):
            return None
        self.create_bucket(str(request["name"]))
        return self._faults_payload()

    def _control_error(self, error: ServiceError) -> Answer:
        return json_answer(400, {"error": str(error)})  # the bucket name OSS refuses, by its code


def _stored(data: bytes, content_type: str, now: float) -> StoredObject:
    return StoredObject(data, content_type, now, etag_of(data), crc64ecma(data))


def _md5_b64(data: bytes) -> str:
    return base64.b64encode(hashlib.md5(data).digest()).decode()


def _list_page(objects: dict[str, StoredObject], params: dict[str, str]) -> ListPage:
    """Keys in byte order after the token (or start-after), under the prefix, folded at the delimiter."""
    try:
        max_keys = int(params.get("max-keys", "100"))
    except ValueError:
        max_keys = -1
    if not 0 <= max_keys <= 1000:
        raise OssError("InvalidArgument", "max-keys must be between 0 and 1000.")
    prefix, delimiter = params.get("prefix", ""), params.get("delimiter", "")
    after = (
        decode_token(params["continuation-token"]) if "continuation-token" in params else params.get("start-after", "")
    )
    contents: list[list[tuple[str, str]]] = []
    common: list[str] = []
    last = None
    for key in sorted(k for k in objects if k.startswith(prefix) and k > after):
        rolled = (
            key[: key.index(delimiter, len(prefix)) + len(delimiter)]
            if delimiter and delimiter in key[len(prefix) :]
            else None
        )
        if rolled is not None and common and common[-1] == rolled:
            last = key
            continue
        if len(contents) + len(common) == max_keys:
            return ListPage(max_keys, contents, common, encode_token(last or after))
        if rolled is not None:
            common.append(rolled)
        else:
            stored = objects[key]
            contents.append(
                [
                    ("Key", key),
                    ("LastModified", iso_time(stored.last_modified)),
                    ("ETag", stored.etag),
                    ("Type", "Normal"),
                    ("Size", str(len(stored.data))),
                    ("StorageClass", "Standard"),
                ]
            )
        last = key
    return ListPage(max_keys, contents, common, None)


def main(argv: list[str] | None = None) -> None:
    """CLI: serve until Ctrl-C, printing what a client needs (never the secret itself)."""
    parser = cli_parser("waba_local.stand_ins.oss_stand_in", __doc__, 9000)
    parser.add_argument("--region", default="ap-southeast-1", help="region the signatures must name")
    parser.add_argument("--bucket", action="append", default=[], help="bucket to create (repeatable)")
    args = parser.parse_args(argv)
    with OssStandIn(region=args.region, host=args.host, port=args.port) as stand_in:
        for bucket in args.bucket:
            stand_in.create_bucket(bucket)
        lines = [
            f"OSS stand-in listening on {stand_in.endpoint} (region {stand_in.region}, path-style)",
            f"OSS_ENDPOINT={stand_in.endpoint}",
            f"OSS_REGION={stand_in.region}",
            f"OSS_ACCESS_KEY_ID={DEFAULT_ACCESS_KEY_ID}",
            "OSS_ACCESS_KEY_SECRET: waba_local.stand_ins.oss_stand_in.DEFAULT_ACCESS_KEY_SECRET",
            f"buckets: {', '.join(args.bucket) or '(none)'}",
            *stand_in.control_lines({"kind": "fail", "times": 1, "status": 503, "code": "ServiceUnavailable"}),
        ]
        serve_until_interrupted(lines)


if __name__ == "__main__":
    main()
