"""The cache HIT's signed GET (waba_lookup.cache.signed_get) signs exactly as the SDKs do, and addresses objects as they do.

Each signature is compared with the SDK's own signer on the same request at the same instant: botocore's
S3SigV4Auth for S3, alibabacloud-oss-v2's SignerV4 for OSS. The OSS stand-in checks OSS signatures on every read as
well (tests/integration/test_cache_contract.py); moto does not check S3's, hence the comparison here.
"""

from __future__ import annotations

import datetime
import http.server
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from waba_lookup.cache import signed_get
from waba_lookup.cache.oss import OssObjectStore
from waba_lookup.cache.s3 import S3ObjectStore, signed_get_request
from waba_lookup.credentials import AccessKey, StaticCredentials

text = st.text(st.characters(min_codepoint=33, max_codepoint=126, exclude_characters="/"), min_size=1, max_size=40)
key_ids, secrets = st.from_regex(r"[A-Z0-9.]{4,24}", fullmatch=True), text
tokens = st.none() | st.from_regex(r"[A-Za-z0-9+/=]{8,300}", fullmatch=True)
regions = st.sampled_from(["ap-southeast-1", "us-east-1", "eu-central-1", "cn-hangzhou", "me-central-1"])
# object keys as the cache writes them, and a few a caller might: spaces, unicode, reserved characters
object_keys = st.lists(st.text(min_size=1, max_size=20).filter(lambda s: s not in (".", "..")), min_size=1, max_size=4)
instants = st.floats(min_value=1.6e9, max_value=2.2e9)


ENDPOINTS = [None, "http://127.0.0.1:5000", "https://s3.example.test:8443", "HTTPS://S3.Example.Test:443"]


@settings(max_examples=150, deadline=None)
@given(key_ids, secrets, tokens, regions, object_keys, instants, st.sampled_from(ENDPOINTS))
def test_s3_signatures_are_botocores(
    key_id: str, secret: str, token: str | None, region: str, parts: list[str], now: float, endpoint: str | None
) -> None:
    from botocore import auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    key = "/".join(parts)
    env = {"AWS_ACCESS_KEY_ID": key_id, "AWS_SECRET_ACCESS_KEY": secret, "AWS_DEFAULT_REGION": region}
    env |= ({"AWS_ENDPOINT_URL_S3": endpoint} if endpoint else {}) | ({"AWS_SESSION_TOKEN": token} if token else {})
    request = signed_get_request("waba-cache", key, env, now)
    if endpoint is None and region == "cn-hangzhou":  # not an AWS region: botocore's business
        assert request is None
        return
    assert request is not None
    url, ours = request
    theirs = AWSRequest("GET", url)
    original = auth.get_current_datetime
    auth.get_current_datetime = lambda: datetime.datetime.fromtimestamp(int(now), datetime.UTC).replace(tzinfo=None)
    try:
        auth.S3SigV4Auth(Credentials(key_id, secret, token), "s3", region).add_auth(theirs)
    finally:
        auth.get_current_datetime = original
    assert {k.lower(): v for k, v in ours.items() if k != "Host"} == {k.lower(): v for k, v in theirs.headers.items()}


@pytest.mark.parametrize("endpoint", ENDPOINTS)
@pytest.mark.parametrize("region", ["ap-southeast-1", "us-east-1"])
def test_s3_objects_are_where_botocores_client_sends_the_get(endpoint: str | None, region: str) -> None:
    """The URL and Host header of a real botocore client's GetObject (caught before it is sent)."""
    from botocore.auth import _host_from_url
    from botocore.awsrequest import AWSResponse
    from botocore.session import get_session

    sent: dict[str, Any] = {}

    def catch(request: Any, **_: Any) -> AWSResponse:
        sent["url"] = request.url
        return AWSResponse(request.url, 404, {}, None)

    client = get_session().create_client(
        "s3", region, endpoint_url=endpoint, aws_access_key_id="AKID", aws_secret_access_key="s"
    )
    client.meta.events.register("before-send", catch)
    env = {"AWS_ACCESS_KEY_ID": "AKID", "AWS_SECRET_ACCESS_KEY": "s", "AWS_DEFAULT_REGION": region}
    env |= {"AWS_ENDPOINT_URL": endpoint} if endpoint else {}
    for key in ["waba/0123/cs-acme-001/ab12.json", "a b/ü/~x(1)!*'.json", "k+=&?#%.json", "x//y"]:
        with pytest.raises(Exception):  # noqa: B017 - the caught 404 becomes botocore's ClientError
            client.get_object(Bucket="waba-cache", Key=key)
        request = signed_get_request("waba-cache", key, env)
        assert request is not None
        url, headers = request
        assert url == sent["url"]
        assert headers["Host"] == _host_from_url(sent["url"])  # the Host botocore signs


@settings(max_examples=150, deadline=None)
@given(key_ids, secrets, tokens, regions, object_keys, instants, st.booleans())
def test_oss_signatures_are_the_oss_sdks(
    key_id: str, secret: str, token: str | None, region: str, parts: list[str], now: float, ip: bool
) -> None:
    from alibabacloud_oss_v2.credentials import Credentials
    from alibabacloud_oss_v2.signer.v4 import SignerV4
    from alibabacloud_oss_v2.types import HttpRequest, SigningContext

    key = "/".join(parts)
    endpoint = "http://127.0.0.1:9000" if ip else f"https://oss-{region}-internal.aliyuncs.com"
    store = OssObjectStore("waba-cache", region, endpoint, StaticCredentials(AccessKey(key_id, secret, token)))
    url, ours = store.signed_get_request(key, now)
    request = HttpRequest("GET", url)
    signing_time = datetime.datetime.fromtimestamp(int(now), datetime.UTC)
    context = SigningContext(
        product="oss",
        region=region,
        bucket="waba-cache",
        key=key,
        request=request,
        credentials=Credentials(key_id, secret, token),
        signing_time=signing_time,
    )
    SignerV4().sign(context)
    theirs = {k.lower(): v for k, v in request.headers.items() if k.lower() != "date"}
    assert {k.lower(): v for k, v in ours.items() if k != "Host"} == theirs


def test_objects_are_addressed_as_the_sdks_address_them() -> None:
    env = {"AWS_ACCESS_KEY_ID": "AKID", "AWS_SECRET_ACCESS_KEY": "s", "AWS_DEFAULT_REGION": "ap-southeast-1"}
    # S3: virtual-hosted in a standard region, path-style on a configured endpoint
    assert _url(signed_get_request("waba-cache", "waba/a b/c.json", env)).startswith(
        "https://waba-cache.s3.ap-southeast-1.amazonaws.com/waba/a%20b/c.json"
    )
    local = env | {"AWS_ENDPOINT_URL": "http://127.0.0.1:5000/"}
    assert (
        _url(signed_get_request("waba-cache", "waba/k.json", local)) == "http://127.0.0.1:5000/waba-cache/waba/k.json"
    )
    # OSS: virtual-hosted, path-style for an IP endpoint (the SDK's rule)
    key = StaticCredentials(AccessKey("LTAI", "s"))
    store = OssObjectStore("waba-cache", "cn-hangzhou", "https://oss-cn-hangzhou-internal.aliyuncs.com", key)
    assert store.signed_get_request("waba/k.json")[0] == (
        "https://waba-cache.oss-cn-hangzhou-internal.aliyuncs.com/waba/k.json"
    )
    store = OssObjectStore("waba-cache", "cn-hangzhou", "http://[::1]:9000", key)
    assert store.signed_get_request("waba/k.json")[0] == "http://[::1]:9000/waba-cache/waba/k.json"


@pytest.mark.parametrize(
    "change",
    [
        {"AWS_ACCESS_KEY_ID": ""},  # credentials from a profile, a container or instance metadata
        {"AWS_DEFAULT_REGION": ""},
        {"AWS_DEFAULT_REGION": "cn-north-1"},  # another partition (amazonaws.com.cn)
        {"AWS_DEFAULT_REGION": "us-gov-west-1"},
        {"AWS_USE_FIPS_ENDPOINT": "true"},
        {"AWS_USE_DUALSTACK_ENDPOINT": "true"},
        {"AWS_CA_BUNDLE": "/etc/corporate-ca.pem"},
        {"AWS_PROFILE": "dev"},
        {"AWS_SECURITY_TOKEN": "legacy"},
        {"HTTPS_PROXY": "http://proxy.internal:3128"},
        {"BUCKET": "waba.cache"},  # dots: not virtual-hostable over TLS
        {"BUCKET": "waba-cache--usw2-az1--x-s3"},  # a directory bucket (S3 Express)
        {"AWS_ENDPOINT_URL": "https://gateway.internal/s3"},  # an endpoint with a path
        {"AWS_ENDPOINT_URL": "https://user@s3.internal"},
    ],
)
def test_what_the_signed_get_does_not_handle_goes_through_botocore(change: dict[str, str]) -> None:
    env = {"AWS_ACCESS_KEY_ID": "AKID", "AWS_SECRET_ACCESS_KEY": "s", "AWS_DEFAULT_REGION": "ap-southeast-1"} | change
    assert signed_get_request(env.pop("BUCKET", "waba-cache"), "k.json", env) is None


def test_a_configured_endpoint_wins_unless_ignored() -> None:
    env = {"AWS_ACCESS_KEY_ID": "AKID", "AWS_SECRET_ACCESS_KEY": "s", "AWS_DEFAULT_REGION": "cn-north-1"}
    env |= {"AWS_ENDPOINT_URL": "http://127.0.0.1:5000"}
    assert _url(signed_get_request("waba.cache", "k.json", env)) == "http://127.0.0.1:5000/waba.cache/k.json"
    assert signed_get_request("waba.cache", "k.json", env | {"AWS_IGNORE_CONFIGURED_ENDPOINT_URLS": "true"}) is None


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True


@pytest.fixture
def keep_alive_server() -> Iterator[dict[str, Any]]:
    """An HTTP/1.1 server that answers each GET with its path, or as `answer` says: close a kept-alive connection
    unasked, an XML error, a redirect to the bucket's region, a stall, or a body cut off."""
    state: dict[str, Any] = {"connections": 0, "requests": [], "answer": "path"}

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def setup(self) -> None:
            super().setup()
            state["connections"] += 1

        def do_GET(self) -> None:
            state["requests"].append(self.headers.get("User-Agent") or "")
            answer, state["answer"] = state["answer"], "path"
            status, body, extra = 200, self.path.encode(), {}
            if answer == "error":
                status, body = 403, b"<?xml version='1.0'?><Error><Code>AccessDenied</Code></Error>"
            elif answer == "redirect":
                status, body = 301, b"<Error><Code>PermanentRedirect</Code></Error>"
                extra = {"x-amz-bucket-region": "eu-west-1"}
            elif answer == "stall":
                time.sleep(3)
            self.send_response(status)
            self.send_header("Content-Length", str(len(body) + (90 if answer == "cut" else 0)))
            for name, value in extra.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(body)
            if answer in ("close", "cut"):  # gone without saying so, as a server's idle timeout does
                self.close_connection = True

        def log_message(self, *args: object) -> None:
            pass

    server = _Server(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    state["url"] = f"http://127.0.0.1:{server.server_address[1]}"
    yield state
    server.shutdown()
    server.server_close()


def test_gets_reuse_one_connection_and_reopen_one_the_server_closed(keep_alive_server: dict[str, Any]) -> None:
    url = keep_alive_server["url"]
    assert signed_get.get(f"{url}/a", {}).body == b"/a"
    assert signed_get.get(f"{url}/b", {}).body == b"/b"
    assert keep_alive_server["connections"] == 1
    keep_alive_server["answer"] = "close"
    assert signed_get.get(f"{url}/c", {}).body == b"/c"
    time.sleep(0.05)  # the server has closed that connection by now
    assert signed_get.get(f"{url}/d", {}).body == b"/d"  # seen closed and opened again, not an error
    assert keep_alive_server["connections"] == 2 and len(keep_alive_server["requests"]) == 4


def test_a_refused_connection_raises_at_once() -> None:
    with pytest.raises(OSError):
        signed_get.get("http://127.0.0.1:9/k", {})


def test_a_stalled_answer_times_out_and_its_connection_is_not_kept(keep_alive_server: dict[str, Any]) -> None:
    url = keep_alive_server["url"]
    keep_alive_server["answer"] = "stall"
    started = time.monotonic()
    with pytest.raises(TimeoutError):
        signed_get.get(f"{url}/slow", {})
    assert time.monotonic() - started < signed_get.CONNECT_SECONDS + signed_get.READ_SECONDS
    assert signed_get.get(f"{url}/next", {}).body == b"/next"
    assert keep_alive_server["connections"] == 2


def test_a_body_cut_off_is_an_error_and_never_sent_again(keep_alive_server: dict[str, Any]) -> None:
    import http.client

    keep_alive_server["answer"] = "cut"
    with pytest.raises(http.client.IncompleteRead):
        signed_get.get(f"{keep_alive_server['url']}/cut", {})
    assert len(keep_alive_server["requests"]) == 1


def s3_store_at(url: str, monkeypatch: pytest.MonkeyPatch) -> S3ObjectStore:
    """The S3 store as Lambda would make it, against `url`; botocore's client reads the same environment."""
    env = {"AWS_ACCESS_KEY_ID": "AKID", "AWS_SECRET_ACCESS_KEY": "s", "AWS_DEFAULT_REGION": "ap-southeast-1"}
    env |= {"AWS_ENDPOINT_URL": url}
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return S3ObjectStore("waba-cache", environ=env)


def test_an_s3_error_answer_is_read_again_through_botocore(
    keep_alive_server: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    store = s3_store_at(keep_alive_server["url"], monkeypatch)
    keep_alive_server["answer"] = "error"  # AccessDenied to the signed GET, then the object
    assert store.read("k.json") == b"/waba-cache/k.json"
    signed, by_botocore = keep_alive_server["requests"]
    assert "Botocore" not in signed and "Botocore" in by_botocore


def test_a_bucket_in_another_region_sends_reads_to_botocore(
    keep_alive_server: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    store = s3_store_at(keep_alive_server["url"], monkeypatch)
    keep_alive_server["answer"] = "redirect"
    assert store.read("waba/k.json") == b"/waba-cache/waba/k.json"  # botocore's read, at once
    assert store.read("waba/k.json") == b"/waba-cache/waba/k.json"
    first, *then = keep_alive_server["requests"]
    assert "Botocore" not in first and then and all("Botocore" in agent for agent in then)


def test_an_s3_store_that_cannot_be_reached_is_an_object_store_error(monkeypatch: pytest.MonkeyPatch) -> None:
    from waba_lookup.cache import ObjectStoreError

    env = {"AWS_ACCESS_KEY_ID": "AKID", "AWS_SECRET_ACCESS_KEY": "s", "AWS_DEFAULT_REGION": "ap-southeast-1"}
    env |= {"AWS_ENDPOINT_URL": "http://127.0.0.1:9"}
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    store = S3ObjectStore("waba-cache", environ=env)
    with pytest.raises(ObjectStoreError) as refused:
        store.read("k.json")  # refused signed, then refused to botocore
    assert refused.value.code is None and refused.value.error_type == "EndpointConnectionError"


def _url(request: tuple[str, dict[str, str]] | None) -> str:
    assert request is not None
    return request[0]


def test_https_is_verified_against_the_ca_bundle_the_sdks_use(monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    import certifi

    assert signed_get.ca_bundle() == certifi.where()  # the OSS SDK's (requests) and botocore's first choice
    monkeypatch.setitem(sys.modules, "certifi", None)  # as in the Lambda layer: botocore without certifi
    bundled = signed_get.ca_bundle()
    assert bundled is not None and bundled.endswith("botocore/cacert.pem")  # botocore's fallback


def test_a_server_whose_certificate_is_not_trusted_is_refused(tmp_path: Any) -> None:
    """HTTPS is verified: a self-signed certificate (for the right host name) is a failed read, not an answer."""
    import datetime as dt
    import ssl

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = dt.datetime.now(dt.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
        .sign(key, hashes.SHA256())
    )
    (tmp_path / "cert.pem").write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    (tmp_path / "key.pem").write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, *args: object) -> None:
            pass

    server = _Server(("127.0.0.1", 0), Handler)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(tmp_path / "cert.pem", tmp_path / "key.pem")
    server.socket = context.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        with pytest.raises(ssl.SSLCertVerificationError):
            signed_get.get(f"https://localhost:{server.server_address[1]}/k", {})
    finally:
        server.shutdown()
        server.server_close()
