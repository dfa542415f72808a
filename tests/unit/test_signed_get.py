"""The cache HIT's signed GET (waba_lookup.signed_get) signs exactly as the SDKs do, and addresses objects as they do.

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

from waba_lookup import signed_get
from waba_lookup.credentials import AccessKey, StaticCredentials
from waba_lookup.oss import OssObjectStore
from waba_lookup.s3 import S3ObjectStore, signed_get_request

text = st.text(st.characters(min_codepoint=33, max_codepoint=126, exclude_characters="/"), min_size=1, max_size=40)
key_ids, secrets = st.from_regex(r"[A-Z0-9.]{4,24}", fullmatch=True), text
tokens = st.none() | st.from_regex(r"[A-Za-z0-9+/=]{8,300}", fullmatch=True)
regions = st.sampled_from(["ap-southeast-1", "us-east-1", "eu-central-1", "cn-hangzhou", "me-central-1"])
# object keys as the cache writes them, and a few a caller might: spaces, unicode, reserved characters
object_keys = st.lists(st.text(min_size=1, max_size=20).filter(lambda s: s not in (".", "..")), min_size=1, max_size=4)
instants = st.floats(min_value=1.6e9, max_value=2.2e9)


@settings(max_examples=150, deadline=None)
@given(key_ids, secrets, tokens, regions, object_keys, instants)
def test_s3_signatures_are_botocores(
    key_id: str, secret: str, token: str | None, region: str, parts: list[str], now: float
) -> None:
    from botocore import auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    key = "/".join(parts)
    env = {"AWS_ACCESS_KEY_ID": key_id, "AWS_SECRET_ACCESS_KEY": secret, "AWS_REGION": region}
    env |= {"AWS_ENDPOINT_URL_S3": "https://s3.example.test:8443"} | ({"AWS_SESSION_TOKEN": token} if token else {})
    original = auth.get_current_datetime
    auth.get_current_datetime = lambda: datetime.datetime.fromtimestamp(int(now), datetime.UTC).replace(tzinfo=None)
    try:
        request = signed_get_request("waba-cache", key, env, now)
        assert request is not None
        url, ours = request
        theirs = AWSRequest("GET", url)
        auth.S3SigV4Auth(Credentials(key_id, secret, token), "s3", region).add_auth(theirs)
    finally:
        auth.get_current_datetime = original
    assert {k.lower(): v for k, v in ours.items() if k != "Host"} == {k.lower(): v for k, v in theirs.headers.items()}
    assert ours["Host"] == "s3.example.test:8443"


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
    env = {"AWS_ACCESS_KEY_ID": "AKID", "AWS_SECRET_ACCESS_KEY": "s", "AWS_REGION": "ap-southeast-1"}
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
        {"AWS_REGION": "", "AWS_DEFAULT_REGION": ""},
        {"AWS_REGION": "cn-north-1"},  # another partition (amazonaws.com.cn)
        {"AWS_REGION": "us-gov-west-1"},
        {"AWS_USE_FIPS_ENDPOINT": "true"},
        {"AWS_USE_DUALSTACK_ENDPOINT": "true"},
        {"AWS_CA_BUNDLE": "/etc/corporate-ca.pem"},
        {"AWS_PROFILE": "dev"},
        {"BUCKET": "waba.cache"},  # dots: not virtual-hostable over TLS
    ],
)
def test_what_the_signed_get_does_not_handle_goes_through_botocore(change: dict[str, str]) -> None:
    env = {"AWS_ACCESS_KEY_ID": "AKID", "AWS_SECRET_ACCESS_KEY": "s", "AWS_REGION": "ap-southeast-1"} | change
    assert signed_get_request(env.pop("BUCKET", "waba-cache"), "k.json", env) is None


def test_a_configured_endpoint_wins_unless_ignored() -> None:
    env = {"AWS_ACCESS_KEY_ID": "AKID", "AWS_SECRET_ACCESS_KEY": "s", "AWS_REGION": "cn-north-1"}
    env |= {"AWS_ENDPOINT_URL": "http://127.0.0.1:5000"}
    assert _url(signed_get_request("waba.cache", "k.json", env)) == "http://127.0.0.1:5000/waba.cache/k.json"
    assert signed_get_request("waba.cache", "k.json", env | {"AWS_IGNORE_CONFIGURED_ENDPOINT_URLS": "true"}) is None


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True


@pytest.fixture
def keep_alive_server() -> Iterator[dict[str, Any]]:
    """An HTTP/1.1 server that answers each GET with its path, and can close a kept-alive connection unasked."""
    state: dict[str, Any] = {"connections": 0, "requests": 0, "close_next": False}

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def setup(self) -> None:
            super().setup()
            state["connections"] += 1

        def do_GET(self) -> None:
            state["requests"] += 1
            body = self.path.encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            if state["close_next"]:  # gone without saying so, as a server's idle timeout does
                state["close_next"] = False
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
    keep_alive_server["close_next"] = True
    assert signed_get.get(f"{url}/c", {}).body == b"/c"
    time.sleep(0.05)  # the server has closed that connection by now
    assert signed_get.get(f"{url}/d", {}).body == b"/d"  # reopened once, not an error
    assert keep_alive_server["connections"] == 2 and keep_alive_server["requests"] == 4


def test_a_refused_connection_raises_at_once() -> None:
    with pytest.raises(OSError):
        signed_get.get("http://127.0.0.1:9/k", {})


def test_an_s3_failure_is_an_object_store_error_with_its_code(keep_alive_server: dict[str, Any]) -> None:
    from waba_lookup.cache import ObjectStoreError

    env = {"AWS_ACCESS_KEY_ID": "AKID", "AWS_SECRET_ACCESS_KEY": "s", "AWS_REGION": "ap-southeast-1"}
    store = S3ObjectStore("waba-cache", environ=env | {"AWS_ENDPOINT_URL": "http://127.0.0.1:9"})
    with pytest.raises(ObjectStoreError) as refused:
        store.read("k.json")
    assert refused.value.code is None and refused.value.error_type == "ConnectionRefusedError"


def _url(request: tuple[str, dict[str, str]] | None) -> str:
    assert request is not None
    return request[0]
