"""The local OSS stand-in, driven by the real `alibabacloud_oss_v2` client over real HTTP.

Every case goes through the SDK's own signer, serializers and error parsing, so what passes here is what a cache
adapter built on the SDK will see. The stand-in's signature check is independent of the SDK (stdlib only)."""

from __future__ import annotations

import base64
import hashlib
import http.client
import json
import os
import re
import time
import urllib.request
from collections.abc import Iterator
from typing import Any
from urllib.error import HTTPError

import alibabacloud_oss_v2 as oss
import pytest
from alibabacloud_oss_v2.crc import Crc64

from tests.support import WRONG_TOKEN, assert_control_refuses, control, no_secret_leaves, stand_in_cli
from waba_local.stand_ins.oss_protocol import crc64ecma
from waba_local.stand_ins.oss_stand_in import DEFAULT_ACCESS_KEY_ID, DEFAULT_ACCESS_KEY_SECRET, OssStandIn

BUCKET = "waba-cache"
STS_ID, STS_SECRET, STS_TOKEN = "STS.NUlocalStandInKey", "sts-secret-do-not-leak", "CAIS-sts-token-do-not-leak"


@pytest.fixture
def stand_in() -> Iterator[OssStandIn]:
    with OssStandIn() as server:
        server.create_bucket(BUCKET)
        yield server


def client_for(
    server: OssStandIn,
    key_id: str = DEFAULT_ACCESS_KEY_ID,
    secret: str = DEFAULT_ACCESS_KEY_SECRET,
    token: str | None = None,
    region: str | None = None,
    retries: int = 1,
    **config: Any,
) -> oss.Client:
    cfg = oss.config.load_default()
    cfg.credentials_provider = oss.credentials.StaticCredentialsProvider(key_id, secret, token)
    cfg.region = region or server.region
    cfg.endpoint = server.endpoint
    cfg.use_path_style = True
    cfg.retry_max_attempts = retries
    for name, value in config.items():
        setattr(cfg, name, value)
    return oss.Client(cfg)


@pytest.fixture
def client(stand_in: OssStandIn) -> oss.Client:
    return client_for(stand_in)


def put(client: oss.Client, key: str, body: bytes, **kwargs: Any) -> Any:
    return client.put_object(oss.PutObjectRequest(bucket=BUCKET, key=key, body=body, **kwargs))


def get(client: oss.Client, key: str, bucket: str = BUCKET, **kwargs: Any) -> bytes:
    result = client.get_object(oss.GetObjectRequest(bucket=bucket, key=key), **kwargs)
    return bytes(result.body.read())


def service_error(excinfo: pytest.ExceptionInfo[oss.exceptions.OperationError]) -> oss.exceptions.ServiceError:
    error = excinfo.value.unwrap()
    assert isinstance(error, oss.exceptions.ServiceError), error
    return error


# --- the happy path -------------------------------------------------------------------------------------------


def test_put_get_head_list_delete_round_trip(stand_in: OssStandIn, client: oss.Client) -> None:
    body = json.dumps({"waba": "123", "ñ": True}).encode()
    md5 = hashlib.md5(body).hexdigest().upper()

    written = put(client, "cache/cs-1.json", body)  # the SDK checks x-oss-hash-crc64ecma against its own CRC here
    assert (written.status_code, written.etag) == (200, f'"{md5}"')
    assert written.hash_crc64 == str(crc64ecma(body))
    assert written.request_id == stand_in.requests[-1].request_id
    assert re.fullmatch(r"[0-9A-F]{24}", written.request_id)

    got = client.get_object(oss.GetObjectRequest(bucket=BUCKET, key="cache/cs-1.json"))
    assert got.body.read() == body
    assert (got.content_type, got.content_length, got.etag) == ("application/json", len(body), f'"{md5}"')
    assert got.hash_crc64 == str(crc64ecma(body)) and got.last_modified is not None

    head = client.head_object(oss.HeadObjectRequest(bucket=BUCKET, key="cache/cs-1.json"))
    assert (head.status_code, head.content_length, head.etag) == (200, len(body), f'"{md5}"')
    meta = client.get_object_meta(oss.GetObjectMetaRequest(bucket=BUCKET, key="cache/cs-1.json"))
    assert (meta.content_length, meta.etag, meta.hash_crc64) == (len(body), f'"{md5}"', str(crc64ecma(body)))
    assert client.is_object_exist(BUCKET, "cache/cs-1.json") and not client.is_object_exist(BUCKET, "cache/none")

    listed = client.list_objects_v2(oss.ListObjectsV2Request(bucket=BUCKET, prefix="cache/"))
    assert [(o.key, o.size, o.etag) for o in listed.contents] == [("cache/cs-1.json", len(body), f'"{md5}"')]
    assert (listed.key_count, listed.is_truncated, listed.name) == (1, False, BUCKET)

    assert client.delete_object(oss.DeleteObjectRequest(bucket=BUCKET, key="cache/cs-1.json")).status_code == 204
    assert client.delete_object(oss.DeleteObjectRequest(bucket=BUCKET, key="cache/cs-1.json")).status_code == 204
    assert stand_in.objects(BUCKET) == {}
    ops = [(r.operation, r.status) for r in stand_in.requests]
    assert ops == [
        ("PutObject", 200),
        ("GetObject", 200),
        ("HeadObject", 200),
        ("GetObjectMeta", 200),
        ("GetObjectMeta", 200),
        ("GetObjectMeta", 404),
        ("ListObjectsV2", 200),
        ("DeleteObject", 204),
        ("DeleteObject", 204),
    ]
    assert stand_in.count("DeleteObject") == 2 and stand_in.count(status=200) == 6


def test_crc64_is_ecma182_as_the_sdk_computes_it() -> None:
    assert crc64ecma(b"123456789") == 0x995DC9BBDF1939FA  # the CRC-64/XZ check value
    for data in (b"", b"x", os.urandom(4099)):
        sdk = Crc64(0)
        sdk.update(data)
        assert crc64ecma(data) == sdk.sum64()


def test_list_pages_with_tokens_and_url_encoded_keys(stand_in: OssStandIn, client: oss.Client) -> None:
    keys = ["p/a b", "p/c+d", "p/é~", "p/sub/1", "p/sub/2", "q/other"]
    for key in keys:
        stand_in.put(BUCKET, key, b"v")
    seen: list[str] = []
    token = None
    for _ in range(3):  # 5 keys under p/, 2 a page
        page = client.list_objects_v2(
            oss.ListObjectsV2Request(bucket=BUCKET, prefix="p/", max_keys=2, continuation_token=token)
        )
        seen += [o.key for o in page.contents or []]
        token = page.next_continuation_token
        assert page.is_truncated == (token is not None)
    assert seen == sorted(keys[:5]) and not page.is_truncated

    folded = client.list_objects_v2(oss.ListObjectsV2Request(bucket=BUCKET, prefix="p/", delimiter="/"))
    assert [o.key for o in folded.contents] == ["p/a b", "p/c+d", "p/é~"]
    assert [p.prefix for p in folded.common_prefixes] == ["p/sub/"] and folded.key_count == 4


def test_create_bucket_through_the_sdk_and_virtual_hosted_addressing(stand_in: OssStandIn) -> None:
    client = client_for(stand_in)
    assert client.put_bucket(oss.PutBucketRequest(bucket="other-bucket")).status_code == 200
    with pytest.raises(oss.exceptions.OperationError) as excinfo:
        client.put_bucket(oss.PutBucketRequest(bucket="other-bucket"))
    assert (service_error(excinfo).code, service_error(excinfo).status_code) == ("BucketAlreadyExists", 409)

    # Virtual-hosted: a non-IP endpoint, reached through the stand-in as an HTTP proxy (no DNS needed); the request
    # line is absolute-form and Host is "other-bucket.oss-<region>.example.test". (A str proxy_host becomes the
    # requests proxies key "http://", which requests never matches: the SDK needs the dict form.)
    virtual_client = client_for(
        stand_in,
        endpoint="http://oss-ap-southeast-1.example.test",
        proxy_host={"http": stand_in.endpoint},
        use_path_style=False,
    )
    virtual_client.put_object(oss.PutObjectRequest(bucket="other-bucket", key="dir/k", body=b"via host"))
    assert get(virtual_client, "dir/k", bucket="other-bucket") == b"via host"
    assert stand_in.objects("other-bucket") == {"dir/k": b"via host"}
    assert get(client, "dir/k", bucket="other-bucket") == b"via host"  # the same object, path-style


# --- OSS's errors ---------------------------------------------------------------------------------------------


def test_no_such_key_and_no_such_bucket_as_oss_sends_them(stand_in: OssStandIn, client: oss.Client) -> None:
    with pytest.raises(oss.exceptions.OperationError) as excinfo:
        get(client, "missing.json")
    error = service_error(excinfo)
    record = stand_in.requests[-1]
    assert (error.code, error.status_code, error.ec) == ("NoSuchKey", 404, "0026-00000001")
    assert error.request_id == record.request_id == error.headers["x-oss-request-id"]
    assert error.message == "The specified key does not exist."
    assert error.error_fileds["Key"] == "missing.json"
    assert error.headers["Content-Type"] == "application/xml" and error.headers["x-oss-ec"] == "0026-00000001"
    assert error.headers["Server"] == "AliyunOSS" and error.timestamp is not None  # parsed from Date
    assert error.snapshot.startswith(b'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>NoSuchKey</Code>')
    assert (record.operation, record.status, record.code) == ("GetObject", 404, "NoSuchKey")

    with pytest.raises(oss.exceptions.OperationError) as excinfo:  # HEAD: no body, the XML in x-oss-err
        client.head_object(oss.HeadObjectRequest(bucket=BUCKET, key="missing.json"))
    error = service_error(excinfo)
    assert (error.code, error.status_code, error.snapshot) == ("NoSuchKey", 404, b"")
    assert error.request_id == stand_in.requests[-1].request_id

    with pytest.raises(oss.exceptions.OperationError) as excinfo:
        get(client, "k", bucket="no-such-bucket")
    error = service_error(excinfo)
    assert (error.code, error.status_code, error.ec) == ("NoSuchBucket", 404, "0015-00000101")
    assert error.error_fileds["BucketName"] == "no-such-bucket"


def test_wrong_secret_and_unknown_key_id(stand_in: OssStandIn) -> None:
    with pytest.raises(oss.exceptions.OperationError) as excinfo:
        get(client_for(stand_in, secret="not-the-secret"), "k")
    error = service_error(excinfo)
    assert (error.code, error.status_code) == ("SignatureDoesNotMatch", 403)
    assert error.error_fileds["OSSAccessKeyId"] == DEFAULT_ACCESS_KEY_ID

    with pytest.raises(oss.exceptions.OperationError) as excinfo:
        get(client_for(stand_in, key_id="LTAI5tNobody"), "k")
    assert (service_error(excinfo).code, service_error(excinfo).status_code) == ("InvalidAccessKeyId", 403)
    assert stand_in.count(status=403) == 2 and stand_in.count(status=404) == 0


def test_tampering_after_signing_is_caught(stand_in: OssStandIn, client: oss.Client) -> None:
    """A signed header changed on the way (here: the content type) no longer matches the signature."""
    with pytest.raises(oss.exceptions.OperationError) as excinfo:
        client.put_object(
            oss.PutObjectRequest(bucket=BUCKET, key="k", body=b"v", content_type="text/plain"),
            http_client=_Tamper(),
        )
    assert service_error(excinfo).code == "SignatureDoesNotMatch"
    assert stand_in.objects(BUCKET) == {}


class _Tamper(oss.transport.RequestsHttpClient):
    def send(self, request: Any, **kwargs: Any) -> Any:
        request.headers["Content-Type"] = "text/html"
        return super().send(request, **kwargs)


def test_sts_credentials(stand_in: OssStandIn) -> None:
    stand_in.add_sts(STS_ID, STS_SECRET, STS_TOKEN, expires_at=time.time() + 3600)
    put(client_for(stand_in, STS_ID, STS_SECRET, STS_TOKEN), "sts.json", b"{}")
    assert stand_in.objects(BUCKET) == {"sts.json": b"{}"} and stand_in.requests[-1].access_key_id == STS_ID

    expected = {
        None: ("InvalidAccessKeyId", "0002-00000003"),
        "CAIS-some-other-token": ("InvalidSecurityToken", "0002-00000006"),
    }
    for token, (code, ec) in expected.items():
        with pytest.raises(oss.exceptions.OperationError) as excinfo:
            get(client_for(stand_in, STS_ID, STS_SECRET, token), "sts.json")
        error = service_error(excinfo)
        assert (error.code, error.status_code, error.ec) == (code, 403, ec)

    stand_in.add_sts("STS.expired", STS_SECRET, STS_TOKEN, expires_at=time.time() - 1)
    with pytest.raises(oss.exceptions.OperationError) as excinfo:
        get(client_for(stand_in, "STS.expired", STS_SECRET, STS_TOKEN), "sts.json")
    error = service_error(excinfo)
    assert (error.code, error.status_code, error.ec) == ("SecurityTokenExpired", 403, "0002-00000007")
    assert error.message == "The security token you provided has expired."

    with pytest.raises(oss.exceptions.OperationError) as excinfo:  # a long-term key with a token is no STS key
        get(client_for(stand_in, token=STS_TOKEN), "sts.json")
    assert service_error(excinfo).code == "InvalidAccessKeyId"


def test_scope_must_name_the_stand_ins_region(stand_in: OssStandIn) -> None:
    with pytest.raises(oss.exceptions.OperationError) as excinfo:
        get(client_for(stand_in, region="cn-hangzhou"), "k")
    error = service_error(excinfo)
    assert (error.code, error.status_code, error.ec) == ("InvalidArgument", 400, "0002-00000228")


def test_request_time_too_skewed() -> None:
    with OssStandIn(clock=lambda: time.time() + 16 * 60) as skewed:
        skewed.create_bucket(BUCKET)
        with pytest.raises(oss.exceptions.OperationError) as excinfo:
            get(client_for(skewed), "k")
        error = service_error(excinfo)
        assert (error.code, error.status_code) == ("RequestTimeTooSkewed", 403)
        assert error.error_fileds["MaxAllowedSkewMilliseconds"] == "900000"
    with OssStandIn(clock=lambda: time.time() - 14 * 60) as within:
        within.create_bucket(BUCKET)
        put(client_for(within), "k", b"v")  # 14 minutes off is still accepted


def test_forbid_overwrite(stand_in: OssStandIn, client: oss.Client) -> None:
    put(client, "entry.json", b"first", forbid_overwrite=True)
    with pytest.raises(oss.exceptions.OperationError) as excinfo:
        put(client, "entry.json", b"second", forbid_overwrite=True)
    error = service_error(excinfo)
    assert (error.code, error.status_code) == ("FileAlreadyExists", 409)
    assert stand_in.objects(BUCKET) == {"entry.json": b"first"}
    put(client, "entry.json", b"third", forbid_overwrite=False)
    assert stand_in.objects(BUCKET) == {"entry.json": b"third"}


# --- faults ---------------------------------------------------------------------------------------------------


def test_fail_the_next_requests(stand_in: OssStandIn, client: oss.Client) -> None:
    stand_in.put(BUCKET, "k", b"v")
    stand_in.fail(times=2, status=503, code="ServiceUnavailable")
    for _ in range(2):
        with pytest.raises(oss.exceptions.OperationError) as excinfo:
            get(client, "k")
        assert (service_error(excinfo).code, service_error(excinfo).status_code) == ("ServiceUnavailable", 503)
    assert get(client, "k") == b"v"
    stand_in.fail()
    with pytest.raises(oss.exceptions.OperationError) as excinfo:
        put(client, "k", b"w")
    assert (service_error(excinfo).code, service_error(excinfo).status_code) == ("InternalError", 500)
    assert stand_in.objects(BUCKET) == {"k": b"v"}
    assert stand_in.count(status=503) == 2 and stand_in.count(status=500) == 1 and stand_in.faults == []


def test_the_sdks_default_retryer_rides_over_a_5xx(stand_in: OssStandIn) -> None:
    stand_in.put(BUCKET, "k", b"v")
    stand_in.fail(times=2, status=503, code="ServiceUnavailable")
    assert get(client_for(stand_in, retries=3), "k") == b"v"  # 3 attempts, jittered backoff under 0.6 s
    assert stand_in.count("GetObject") == 3


def test_faults_scoped_to_an_operation_and_cleared(stand_in: OssStandIn, client: oss.Client) -> None:
    stand_in.fail(times=None, status=503, code="ServiceUnavailable", operation="GetObject")
    put(client, "k", b"v")
    client.head_object(oss.HeadObjectRequest(bucket=BUCKET, key="k"))
    for _ in range(3):
        with pytest.raises(oss.exceptions.OperationError):
            get(client, "k")
    stand_in.clear_faults()
    assert get(client, "k") == b"v"
    assert stand_in.count("GetObject", 503) == 3 and stand_in.count("GetObject", 200) == 1
    with pytest.raises(ValueError):
        stand_in.fail(operation="GetObjects")  # a typo must not silently match nothing


def test_slow_answers_trip_the_clients_read_timeout(stand_in: OssStandIn) -> None:
    stand_in.put(BUCKET, "k", b"v")
    client = client_for(stand_in, readwrite_timeout=0.25)
    stand_in.slow(0.8, times=1, operation="GetObject")
    started = time.monotonic()
    with pytest.raises(oss.exceptions.OperationError) as excinfo:
        get(client, "k")
    assert isinstance(excinfo.value.unwrap(), oss.exceptions.ResponseError)  # requests' ReadTimeout inside
    assert 0.2 < time.monotonic() - started < 0.7
    assert get(client, "k") == b"v"  # only the next one was slow

    stand_in.slow(0.3)  # until cleared, any operation: slower than usual but within the timeout
    patient = client_for(stand_in, readwrite_timeout=2)
    started = time.monotonic()
    put(patient, "k2", b"w")
    assert get(patient, "k2") == b"w"
    assert time.monotonic() - started >= 0.6
    stand_in.clear_faults()
    assert stand_in.faults == []


def test_dropped_connections(stand_in: OssStandIn, client: oss.Client) -> None:
    stand_in.put(BUCKET, "k", b"v")
    stand_in.drop(times=1, operation="GetObject")
    with pytest.raises(oss.exceptions.OperationError) as excinfo:
        get(client, "k")
    assert isinstance(excinfo.value.unwrap(), oss.exceptions.RequestError)  # requests' ConnectionError inside
    assert get(client, "k") == b"v"
    record = [r for r in stand_in.requests if r.code == "Dropped"]
    assert [(r.operation, r.status) for r in record] == [("GetObject", 0)]


def test_http_control_plane(stand_in: OssStandIn, client: oss.Client) -> None:
    stand_in.put(BUCKET, "k", b"v")
    fault = {"kind": "fail", "times": 1, "status": 503, "code": "ServiceUnavailable", "operation": "GetObject"}
    assert control(stand_in, "POST", "faults", fault)["faults"][0]["code"] == "ServiceUnavailable"
    put(client, "k2", b"w")  # another operation: not affected
    with pytest.raises(oss.exceptions.OperationError) as excinfo:
        get(client, "k")
    assert service_error(excinfo).status_code == 503

    control(stand_in, "POST", "faults", {"kind": "drop", "times": None})
    assert len(control(stand_in, "GET", "faults")["faults"]) == 1
    assert control(stand_in, "DELETE", "faults") == {"faults": []}
    assert get(client, "k") == b"v"

    records = control(stand_in, "GET", "requests")
    assert [(r["operation"], r["status"]) for r in records] == [
        ("PutObject", 200),
        ("GetObject", 503),
        ("GetObject", 200),
    ]
    control(stand_in, "POST", "buckets", {"name": "made-over-http"})
    assert stand_in.objects("made-over-http") == {}
    assert_control_refuses(stand_in)


# --- no secrets out -------------------------------------------------------------------------------------------


def test_no_secret_token_or_signature_leaves_the_stand_in(
    stand_in: OssStandIn, capfd: pytest.CaptureFixture[str]
) -> None:
    with no_secret_leaves(stand_in, capfd, (STS_ID, STS_SECRET, STS_TOKEN), DEFAULT_ACCESS_KEY_SECRET) as tap:

        class Spy(oss.transport.RequestsHttpClient):
            def send(self, request: Any, **kwargs: Any) -> Any:
                tap.signatures.append(request.headers["Authorization"].rpartition("Signature=")[2])
                response = super().send(request, **kwargs)
                tap.answers.append(json.dumps(dict(response.headers)))
                return response

        clients = [
            client_for(stand_in, http_client=Spy()),
            client_for(stand_in, STS_ID, STS_SECRET, STS_TOKEN, http_client=Spy()),
            client_for(stand_in, STS_ID, STS_SECRET, WRONG_TOKEN, http_client=Spy()),
            client_for(stand_in, secret="wrong-" + DEFAULT_ACCESS_KEY_SECRET, http_client=Spy()),
        ]
        for client in clients:
            for call, args in ((put, (client, "k", b"v")), (get, (client, "k")), (get, (client, "nope"))):
                try:
                    call(*args)
                except oss.exceptions.OperationError as error:
                    tap.answers.append((getattr(error.unwrap(), "snapshot", b"") or b"").decode())


def test_cli_serves_and_prints_no_secret() -> None:
    with stand_in_cli("oss_stand_in", "--bucket", BUCKET, lines=8, secret=DEFAULT_ACCESS_KEY_SECRET) as (
        banner,
        endpoint,
    ):
        assert f"OSS_ACCESS_KEY_ID={DEFAULT_ACCESS_KEY_ID}\n" in banner
        client = client_for(_Endpoint(endpoint))  # type: ignore[arg-type]
        put(client, "k", b"v")
        assert get(client, "k") == b"v"


class _Endpoint:
    """What client_for needs of a stand-in running in another process."""

    def __init__(self, endpoint: str) -> None:
        self.endpoint, self.region = endpoint, "ap-southeast-1"


def test_bad_requests_get_oss_errors_not_tracebacks(stand_in: OssStandIn) -> None:
    """Unsigned and unsupported requests, by hand: OSS-shaped XML, a request id, nothing recorded as success."""
    for method, path, code, status in (
        ("GET", f"/{BUCKET}/k", "AccessDenied", 403),
        ("GET", "/", "AccessDenied", 403),
        ("GET", "/Bad_Bucket/k", "InvalidBucketName", 400),
    ):
        request = urllib.request.Request(f"{stand_in.endpoint}{path}", method=method)
        with pytest.raises(HTTPError) as http_error:
            urllib.request.urlopen(request, timeout=5)
        body = http_error.value.read()
        assert http_error.value.code == status and f"<Code>{code}</Code>".encode() in body
        assert re.fullmatch(r"[0-9A-F]{24}", http_error.value.headers["x-oss-request-id"])
    sdk = client_for(stand_in)
    with pytest.raises(oss.exceptions.OperationError) as excinfo:
        sdk.get_object_acl(oss.GetObjectAclRequest(bucket=BUCKET, key="k"))
    assert (service_error(excinfo).code, service_error(excinfo).status_code) == ("NotImplemented", 501)
    assert stand_in.requests[-1].operation == "Unsupported"
    md5 = base64.b64encode(hashlib.md5(b"other").digest()).decode()
    with pytest.raises(oss.exceptions.OperationError) as excinfo:
        sdk.put_object(oss.PutObjectRequest(bucket=BUCKET, key="k", body=b"v", content_md5=md5))
    assert (service_error(excinfo).code, service_error(excinfo).status_code) == ("InvalidDigest", 400)


def test_streamed_upload_and_oversized_body(stand_in: OssStandIn, client: oss.Client) -> None:
    put(client, "streamed", iter([b"chunk-1,", b"chunk-2"]))  # an iterator body goes out chunked
    assert stand_in.objects(BUCKET) == {"streamed": b"chunk-1,chunk-2"}

    connection = http.client.HTTPConnection(stand_in.endpoint.removeprefix("http://"), timeout=5)
    connection.putrequest("PUT", f"/{BUCKET}/huge")
    connection.putheader("Content-Length", str(1 << 40))
    connection.endheaders()
    response = connection.getresponse()
    assert response.status == 400 and b"<Code>EntityTooLarge</Code>" in response.read()
    assert response.getheader("Connection") == "close" and response.getheader("Server") == "AliyunOSS"
    connection.close()
