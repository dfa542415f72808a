"""`make serve` behaves like API Gateway (or FC's HTTP trigger) for every method and every failure, and prints
what the README promises: the four curl examples and the emulator's fault controls."""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Iterator
from http.server import HTTPServer
from types import SimpleNamespace
from typing import Any

import pytest

from tests.integration.serving import Served, start_serve
from waba_local.dev.serve import ApiGatewayHandler


@pytest.fixture(scope="module", params=["aws", "fc"])
def served(request: pytest.FixtureRequest) -> Iterator[Served]:
    process, server = start_serve(request.param)
    yield server
    process.terminate()
    process.wait(timeout=30)


def test_the_banner_shows_the_readme_s_four_examples_and_the_fault_controls(served: Served) -> None:
    curls = served.examples()
    assert len(curls) == 4, served.banner
    assert any("?refresh=true" in line for line in curls)
    assert any("/waba/refresh" in line and "-d " in line for line in curls)
    text = "\n".join(served.banner)
    assert "/_emulator/behaviour" in text and "error:System.LimitControl" in text  # how to see a 429 or a STALE


@pytest.mark.parametrize("method", ["PUT", "DELETE", "PATCH", "OPTIONS", "TRACE"])
def test_every_method_reaches_the_function_and_gets_its_json(served: Served, method: str) -> None:
    status, headers, body = served.request(method, "/waba")
    assert status == 405 and headers["allow"] == "GET"
    assert headers["content-type"] == "application/json"
    assert json.loads(body)["Code"] == "MethodNotAllowed"
    status, headers, body = served.request(method, "/nowhere")
    assert status == 404 and json.loads(body)["Code"] == "NotFound"


def test_head_gets_the_status_and_headers_without_a_body(served: Served) -> None:
    status, headers, body = served.request("HEAD", "/waba")
    assert status == 405 and headers["content-type"] == "application/json" and body == b""


def test_a_body_that_is_not_utf8_is_a_400_not_a_dropped_connection(served: Served) -> None:
    status, _, body = served.request("POST", "/waba/refresh", b"\xff\xfe{}", {"Content-Type": "application/json"})
    assert status == 400 and json.loads(body)["Code"] == "InvalidParameter"


def test_the_readme_s_examples_answer(served: Served) -> None:
    for line in served.examples():
        url = re.search(r"'?(http://\S+?)'?$", line)
        assert url, line
        path = url[1].split(str(served.port), 1)[1]
        headers = dict(re.findall(r"-H '([^:]+): ([^']*)'", line))
        data = re.search(r"-d '([^']*)'", line)
        status, _, _ = served.request("POST" if data else "GET", path, data[1].encode() if data else None, headers)
        assert status == (202 if data else 200), line


class Crashing:
    """A handler module whose function raises, as a bug in the code would."""

    @staticmethod
    def lambda_handler(event: dict[str, Any], context: object) -> dict[str, Any]:
        raise RuntimeError("boom")

    @staticmethod
    def handler(event: bytes, context: object) -> dict[str, Any]:
        raise RuntimeError("boom")


@pytest.mark.parametrize("platform", ["aws", "fc"])
def test_a_handler_exception_is_a_500_with_the_json_body(platform: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ApiGatewayHandler, "api", SimpleNamespace(**vars(Crashing)))
    monkeypatch.setattr(ApiGatewayHandler, "platform", platform)
    server = HTTPServer(("127.0.0.1", 0), ApiGatewayHandler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        status, headers, body = Served("127.0.0.1", server.server_port, []).request("GET", "/waba")
    finally:
        server.shutdown()
        server.server_close()
    assert status == 500 and headers["content-type"] == "application/json"
    document = json.loads(body)
    assert set(document) == {"Code", "Message", "RequestId"} and document["Code"] == "InternalError"
    assert "boom" not in document["Message"]


DRAIN_SECONDS = 30  # the worker looks at the queue every second; the SMQ trigger waits out its 2 s batch window


def emulator_calls(served: Served) -> list[dict[str, Any]]:
    """Every call CAMS saw, from the emulator's control plane that the banner prints."""
    import urllib.request

    (url,) = [m[1] for line in served.banner if (m := re.search(r"curl -s (http://\S+/calls)", line))]
    with urllib.request.urlopen(url, timeout=10) as answer:
        calls: list[dict[str, Any]] = json.loads(answer.read())
    return calls


def test_a_queued_refresh_is_drained_by_the_worker(served: Served) -> None:
    """make serve runs the queue worker: a refresh queued with POST /waba/refresh reaches CAMS and the cache, so
    the next read is a HIT that costs no call. Without a worker it would stay queued, and the read would be a MISS."""
    import time
    import uuid

    assert any("drained by the queue worker" in line for line in served.banner), served.banner
    space = f"cs-drained-{uuid.uuid4().hex[:8]}"
    headers = {"X-Isv-Code": f"isv-{space}"}
    items = json.dumps({"Items": [{"CustSpaceId": space, "IsvCode": headers["X-Isv-Code"]}]}).encode()
    status, _, _ = served.request("POST", "/waba/refresh", items, {"Content-Type": "application/json"})
    assert status == 202
    deadline = time.monotonic() + DRAIN_SECONDS
    while not (refreshed := [c for c in emulator_calls(served) if c["cust_space_id"] == space and c["code"] == "OK"]):
        assert time.monotonic() < deadline, f"nothing refreshed {space} within {DRAIN_SECONDS} s"
        time.sleep(0.5)
    time.sleep(1.0)  # the cache write follows CAMS's answer
    status, response_headers, body = served.request("GET", f"/waba/{space}", headers=headers)
    assert status == 200 and response_headers["x-cache"] == "HIT", (response_headers, body)
    assert json.loads(body)["Data"]["Name"] == f"Generated {space}"
    assert [c for c in emulator_calls(served) if c["cust_space_id"] == space] == refreshed  # the read called no one
