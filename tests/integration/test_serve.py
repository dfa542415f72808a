"""`make serve` behaves like API Gateway (or FC's HTTP trigger) for every method and every failure, and prints
what the README promises: the four curl examples and the emulator's fault controls."""

from __future__ import annotations

import http.client
import json
import os
import re
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import HTTPServer
from types import SimpleNamespace
from typing import Any

import pytest

from waba_local.serve import ApiGatewayHandler

STARTUP_SECONDS = 60


@dataclass
class Served:
    host: str
    port: int
    banner: list[str]

    def examples(self) -> list[str]:
        """The banner's curl lines that call the API (not the emulator's control plane)."""
        lines = (line.strip() for line in self.banner)
        return [line for line in lines if line.startswith("curl ") and f":{self.port}/" in line]

    def request(
        self, method: str, path: str, body: bytes | None = None, headers: dict[str, str] | None = None
    ) -> tuple[int, dict[str, str], bytes]:
        connection = http.client.HTTPConnection(self.host, self.port, timeout=30)
        try:
            connection.request(method, path, body=body, headers=headers or {})
            response = connection.getresponse()
            return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
        finally:
            connection.close()


def start_serve(platform: str) -> tuple[subprocess.Popen[str], Served]:
    """`python -m waba_local.serve --platform … --port 0` with the stand-ins; its banner, read up to the examples."""
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("CAMS_", "ALIBABA_CLOUD_", "CACHE_", "AWS_"))}
    environ |= {"PYTHONUNBUFFERED": "1", "POWERTOOLS_LOG_LEVEL": "WARNING"}
    process = subprocess.Popen(
        [sys.executable, "-m", "waba_local.serve", "--platform", platform, "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env=environ,
    )
    banner: list[str] = []
    assert process.stdout is not None
    threading.Thread(target=lambda: banner.extend(line.rstrip("\n") for line in process.stdout), daemon=True).start()
    deadline = time.monotonic() + STARTUP_SECONDS
    while time.monotonic() < deadline and not any(line.startswith("Ready") for line in banner):
        assert process.poll() is None, banner
        time.sleep(0.1)
    match = re.search(r"http://([\d.]+):(\d+)", banner[0] if banner else "")
    if not (match and int(match[2]) > 0 and any(line.startswith("Ready") for line in banner)):
        process.kill()
        pytest.fail(f"make serve did not start: {banner}")
    return process, Served(match[1], int(match[2]), banner)


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
