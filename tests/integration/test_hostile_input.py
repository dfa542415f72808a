"""Hostile requests to the HTTP function, on both platforms: each gets a defined status and our JSON error body
(never a platform 500, a traceback or Powertools' own shape), CAMS is not called for input it can reject, and
no sentinel IsvCode appears in an answer, a log line or the cache."""

from __future__ import annotations

import base64
import json
import logging
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

import pytest
from http_api import app

from tests.support import AwsStandIn, FakeLambdaContext, OssCache
from waba_local.dev.apigw import http_event
from waba_local.dev.fc_local import LocalFcContext, fc_http_event
from waba_local.stand_ins.emulator import CamsEmulator

SUB = "cs-acme-001"
ISV = "isv-cs-acme-001"
SENTINEL_ISV = "SENTINELisvHostile7f3a9c"


@dataclass
class Platform:
    """One platform's HTTP entry point, fed requests as the platform's trigger would shape them."""

    name: str
    cams: CamsEmulator
    cache: AwsStandIn | OssCache

    def send(
        self,
        method: str,
        path: str,
        headers: dict[str, str] | None = None,
        query: dict[str, str] | None = None,
        body: str | bytes | None = None,
        base64_body: str | None = None,
    ) -> dict[str, Any]:
        """One request; `base64_body` is sent as is with isBase64Encoded (the platform says the body is base64)."""
        target = f"{path}?{urlencode(query)}" if query else path
        text = body.decode("latin-1") if isinstance(body, bytes) else body
        if self.name == "aws":
            event = http_event(method, target, headers, text)
            if base64_body is not None:
                event |= {"body": base64_body, "isBase64Encoded": True}
            response: dict[str, Any] = app.lambda_handler(event, FakeLambdaContext())
            return response
        fc = json.loads(fc_http_event(method, target, headers, text))
        if base64_body is not None:
            fc |= {"body": base64_body, "isBase64Encoded": True}
        response = app.handler(json.dumps(fc).encode(), LocalFcContext())
        return response


@pytest.fixture(params=["aws", "fc"])
def platform(request: pytest.FixtureRequest, cams_env: CamsEmulator) -> Platform:
    cache = request.getfixturevalue("aws" if request.param == "aws" else "oss")
    return Platform(request.param, cams_env, cache)


def error_body(response: dict[str, Any], status: int) -> dict[str, Any]:
    """The response is `status` with our JSON error body; returns the body."""
    assert response["statusCode"] == status, response
    headers = {k.lower(): v for k, v in (response.get("headers") or {}).items()}
    assert headers.get("content-type") == "application/json"
    document = json.loads(response["body"])
    assert set(document) == {"Code", "Message", "RequestId"}, document
    assert all(isinstance(value, str) and value for value in document.values()), document
    assert "Traceback" not in response["body"]
    return document


def refresh(platform: Platform, body: str | bytes | None = None, base64_body: str | None = None) -> dict[str, Any]:
    headers = {"Content-Type": "application/json"}
    return platform.send("POST", "/waba/refresh", headers, body=body, base64_body=base64_body)


HOSTILE_BODIES = {
    "100,000 [": "[" * 100_000,
    "100,000 nested objects": '{"a":' * 100_000,
    "deep Items": '{"Items": ' + "[" * 100_000,
    "NUL and surrogates": '{"Items": [{"CustSpaceId": "\\u0000\\ud800"}]}',
    "not an object": '"Items"',
    "Items not a list": '{"Items": {"CustSpaceId": "1"}}',
    "huge number": '{"Items": [{"CustSpaceId": 1e999999}]}',
}


@pytest.mark.parametrize("body", HOSTILE_BODIES.values(), ids=HOSTILE_BODIES.keys())
def test_a_hostile_refresh_body_is_400(platform: Platform, body: str) -> None:
    document = error_body(refresh(platform, body), 400)
    assert document["Code"] == "InvalidParameter"
    assert platform.cams.calls == []


@pytest.mark.parametrize(
    "encoded",
    [
        base64.b64encode(b"\xff\xfe{}").decode(),  # valid base64 of bytes that are not UTF-8
        "!!! this is not base64 !!!",
        "QUJD=",  # bad padding
        base64.b64encode(b"[" * 100_000).decode(),
    ],
    ids=["invalid UTF-8", "not base64", "bad padding", "base64 of 100,000 ["],
)
def test_a_base64_body_that_does_not_decode_to_json_is_400(platform: Platform, encoded: str) -> None:
    error_body(refresh(platform, base64_body=encoded), 400)


def test_a_base64_body_that_decodes_to_a_valid_request_is_accepted(platform: Platform) -> None:
    if platform.name == "fc":
        pytest.skip("the oss fixture gives FC no queue (REFRESH_QUEUE_URL unset); test_fc_queue_worker covers it")
    encoded = base64.b64encode(json.dumps({"Items": [{"CustSpaceId": SUB, "IsvCode": ISV}]}).encode()).decode()
    response = refresh(platform, base64_body=encoded)
    assert response["statusCode"] == 202 and json.loads(response["body"]) == {"Queued": 1}


@pytest.mark.parametrize(
    "document",
    [
        {"Items": [{"CustSpaceId": SUB}], "Extra": 1},
        {"Items": [{"CustSpaceId": SUB, "IsvCode": ""}]},
        {"Items": [{"CustSpaceId": "", "IsvCode": ISV}]},
        {"Items": [{"CustSpaceId": SUB, "IsvCode": None}]},
    ],
    ids=["extra top-level field", "empty IsvCode", "empty CustSpaceId", "null IsvCode"],
)
def test_a_refresh_body_the_openapi_schema_rejects_is_400(platform: Platform, document: dict[str, Any]) -> None:
    error_body(refresh(platform, json.dumps(document)), 400)


@pytest.mark.parametrize("value", ["TRUE", "True", "1", "yes", "", "true,true"])
def test_refresh_takes_only_true_or_false(platform: Platform, value: str) -> None:
    assert platform.send("GET", "/waba")["statusCode"] == 200
    document = error_body(platform.send("GET", "/waba", query={"refresh": value}), 400)
    assert "refresh" in document["Message"]
    assert len(platform.cams.calls) == 1  # the rejected read spent nothing


def test_refresh_false_reads_the_cache(platform: Platform) -> None:
    platform.send("GET", "/waba")
    response = platform.send("GET", "/waba", query={"refresh": "false"})
    assert response["statusCode"] == 200 and response["headers"]["X-Cache"] == "HIT"


def test_an_empty_isv_code_header_is_400(platform: Platform) -> None:
    error_body(platform.send("GET", f"/waba/{SUB}", {"X-Isv-Code": ""}), 400)
    assert platform.cams.calls == []


@pytest.mark.parametrize(
    ("method", "path"),
    [("GET", "/nope"), ("GET", "/waba/a/b"), ("POST", "/"), ("DELETE", "/waba-x"), ("GET", "/waba/refresh/x")],
)
def test_an_unknown_route_is_404_with_our_body(platform: Platform, method: str, path: str) -> None:
    document = error_body(platform.send(method, path), 404)
    assert document["Code"] == "NotFound"


@pytest.mark.parametrize(
    ("method", "path", "allowed"),
    [
        ("POST", "/waba", "GET"),
        ("PUT", "/waba", "GET"),
        ("DELETE", f"/waba/{SUB}", "GET"),
        ("PATCH", f"/waba/{SUB}", "GET"),
        ("HEAD", "/waba", "GET"),
        ("OPTIONS", "/waba", "GET"),
        ("PUT", "/waba/refresh", "POST"),
        ("GET", "/waba/refresh", "POST"),  # the literal path wins over /waba/{custSpaceId}, as in OpenAPI
        ("OPTIONS", "/waba/refresh", "POST"),
    ],
)
def test_a_wrong_method_is_405_with_allow(platform: Platform, method: str, path: str, allowed: str) -> None:
    response = platform.send(method, path, {"X-Isv-Code": SENTINEL_ISV})
    document = error_body(response, 405)
    assert document["Code"] == "MethodNotAllowed"
    assert response["headers"]["Allow"] == allowed
    assert platform.cams.calls == []


def test_an_unexpected_failure_is_500_with_our_body(
    platform: Platform, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def broken() -> None:
        raise RuntimeError(f"a bug that mentions {SENTINEL_ISV}")

    monkeypatch.setattr(app, "get_lookup", broken)
    response = platform.send("GET", f"/waba/{SUB}", {"X-Isv-Code": ISV})
    document = error_body(response, 500)
    assert document["Code"] == "InternalError"
    assert SENTINEL_ISV not in response["body"]
    assert "RuntimeError" in caplog.text  # the logs say what failed


@pytest.mark.parametrize(
    "headers",
    [
        {"X-Isv-Code": SENTINEL_ISV + "!"},
        {"X-Isv-Code": SENTINEL_ISV + "\u00e9"},
        {"X-Isv-Code": SENTINEL_ISV * 10},
        {"X-Isv-Code": f"{SENTINEL_ISV}, {SENTINEL_ISV}"},
        {"X-Isv-Code": f"{SENTINEL_ISV}\t"},
    ],
    ids=["bad character", "non-ASCII", "too long", "two values", "tab"],
)
def test_a_bad_isv_code_is_400_and_never_echoed(
    platform: Platform, headers: dict[str, str], capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    response = platform.send("GET", f"/waba/{SUB}", headers, query={"refresh": "true"})
    error_body(response, 400)
    captured = capsys.readouterr()
    for text in (response["body"], captured.out, captured.err, caplog.text, json.dumps(platform.cache.cache_objects())):
        assert SENTINEL_ISV not in text
    assert platform.cams.calls == []


@pytest.mark.parametrize(
    "path",
    ["/waba/%00", "/waba/..%2F..%2Fetc", "/waba/" + "9" * 65, "/waba/a%20b", "/waba/\u00e9"],
    ids=["NUL", "traversal", "too long", "space", "non-ASCII"],
)
def test_a_bad_cust_space_id_is_400_or_404(platform: Platform, path: str) -> None:
    response = platform.send("GET", path, {"X-Isv-Code": ISV})
    assert response["statusCode"] in (400, 404)
    error_body(response, response["statusCode"])
    assert platform.cams.calls == []
