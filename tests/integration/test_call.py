"""`python -m waba_local.dev.call` against a local stand-in for an FC HTTP trigger with `authType: function`.

The stand-in checks each request's ACS3-HMAC-SHA256 signature independently of the Alibaba SDK: it rebuilds the
canonical request with the CAMS emulator's stdlib code (waba_local.stand_ins.emulator_protocol), over the headers the
request says it signed and an empty payload, as FC's own examples sign a trigger request, and answers 403 when it
does not match, as the FC gateway does.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import re
import subprocess
import sys
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import parse_qsl, urlsplit

import pytest

from waba_local.stand_ins.emulator_protocol import ApiRequest, canonical_request

KEY_ID, KEY_SECRET = "LTAI5tCallerKeyId0001", "caller-secret-never-printed"
STS_ID, STS_SECRET, STS_TOKEN = "STS.NTempKeyId0002", "sts-secret-never-printed", "sts-token-never-printed"
ACCOUNTS = {KEY_ID: KEY_SECRET, STS_ID: STS_SECRET}
TOKENS = {STS_ID: STS_TOKEN}
AUTHORIZATION = re.compile(
    r"^ACS3-HMAC-SHA256 Credential=(?P<ak>[^,\s]+),SignedHeaders=(?P<signed>[a-z0-9;-]+),Signature=(?P<sig>[0-9a-f]{64})$"
)
WINDOW_SECONDS = 15 * 60  # FC refuses a request dated further than this from its clock


def verified(request: ApiRequest) -> str | None:
    """Why the request is refused, or None when its signature holds."""
    match = AUTHORIZATION.match(request.header("authorization") or "")
    if match is None:
        return "no ACS3-HMAC-SHA256 authorization"
    signed = match.group("signed").split(";")
    if "x-acs-date" not in signed or any(name not in request.headers for name in signed):
        return "x-acs-date unsigned, or a signed header missing"
    sent = datetime.strptime(request.header("x-acs-date") or "", "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    if abs((datetime.now(UTC) - sent).total_seconds()) > WINDOW_SECONDS:
        return "x-acs-date out of the window"
    key_id = match.group("ak")
    if key_id not in ACCOUNTS:
        return "unknown AccessKeyId"
    token = TOKENS.get(key_id)
    if token is not None and ("x-acs-security-token" not in signed or request.header("x-acs-security-token") != token):
        return "STS credentials without their signed token"
    canonical = canonical_request(request, signed, "")  # FC's trigger signature covers no payload
    string_to_sign = f"ACS3-HMAC-SHA256\n{hashlib.sha256(canonical.encode()).hexdigest()}"
    expected = hmac.new(ACCOUNTS[key_id].encode(), string_to_sign.encode(), hashlib.sha256).hexdigest()
    return None if hmac.compare_digest(expected, match.group("sig")) else "signature does not match"


class Trigger(BaseHTTPRequestHandler):
    """Answers like the HTTP function behind a trigger that checks signatures: an echo of what arrived."""

    seen: ClassVar[list[dict[str, Any]]] = []

    def handle_one(self) -> None:
        url = urlsplit(self.path)
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        headers: dict[str, list[str]] = {}
        for name, value in self.headers.items():
            headers.setdefault(name.lower(), []).append(value)
        request = ApiRequest(self.command, url.path, parse_qsl(url.query, keep_blank_values=True), headers, body)
        refused = verified(request)
        echo: dict[str, Any] = {
            "method": self.command,
            "path": url.path,
            "query": dict(request.query),
            "body": body.decode(),
        }
        echo |= {"isvCode": request.header("x-isv-code"), "contentType": request.header("content-type")}
        self.seen.append(echo | {"refused": refused})
        status, answer = (403, {"ErrorCode": "SignatureNotMatch"}) if refused else (200, echo)
        payload = json.dumps(answer).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("X-Cache", "MISS")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    do_GET = do_POST = handle_one

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def trigger() -> Iterator[tuple[str, list[dict[str, Any]]]]:
    Trigger.seen = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), Trigger)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", Trigger.seen
    finally:
        server.shutdown()
        server.server_close()


def call(args: list[str], tmp_path: Path, **credentials: str) -> subprocess.CompletedProcess[str]:
    """`python -m waba_local.dev.call` as a person runs it, with only the given credentials to find."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ALIBABA_CLOUD_")}
    # no profile in HOME, and no instance metadata service to ask: the chain ends at the variables
    env |= {"HOME": str(tmp_path), "ALIBABA_CLOUD_ECS_METADATA_DISABLED": "true"} | credentials
    argv = [sys.executable, "-m", "waba_local.dev.call", *args]
    return subprocess.run(argv, capture_output=True, text=True, env=env, timeout=60, check=False)


def access_key() -> dict[str, str]:
    return {"ALIBABA_CLOUD_ACCESS_KEY_ID": KEY_ID, "ALIBABA_CLOUD_ACCESS_KEY_SECRET": KEY_SECRET}


def sts() -> dict[str, str]:
    return {
        "ALIBABA_CLOUD_ACCESS_KEY_ID": STS_ID,
        "ALIBABA_CLOUD_ACCESS_KEY_SECRET": STS_SECRET,
        "ALIBABA_CLOUD_SECURITY_TOKEN": STS_TOKEN,
    }


def printed(run: subprocess.CompletedProcess[str]) -> tuple[str, dict[str, str], Any]:
    """The status line, the headers and the JSON body that the helper printed."""
    head, _, body = run.stdout.partition("\n\n")
    status, *lines = head.splitlines()
    headers = dict(line.split(": ", 1) for line in lines)
    return status, headers, json.loads(body)


def test_an_access_key_signs_a_read_that_the_trigger_accepts(trigger: Any, tmp_path: Path) -> None:
    url, seen = trigger
    run = call([f"{url}/waba/cust-1?refresh=true"], tmp_path, **access_key())
    assert run.returncode == 0, run.stderr
    status, headers, body = printed(run)
    assert status == "HTTP/1.0 200 OK" and headers["X-Cache"] == "MISS"
    assert body["path"] == "/waba/cust-1" and body["query"] == {"refresh": "true"}
    assert [request["refused"] for request in seen] == [None]
    assert "AccessKey LTAI****001" in run.stderr
    assert KEY_SECRET not in run.stdout + run.stderr


def test_sts_credentials_sign_and_send_their_token(trigger: Any, tmp_path: Path) -> None:
    url, seen = trigger
    run = call([f"{url}/waba"], tmp_path, **sts())
    assert run.returncode == 0, run.stderr
    assert [request["refused"] for request in seen] == [None]
    assert "STS credentials" in run.stderr
    assert STS_SECRET not in run.stdout + run.stderr and STS_TOKEN not in run.stdout + run.stderr


def test_a_refresh_post_carries_its_body_and_headers(trigger: Any, tmp_path: Path) -> None:
    url, seen = trigger
    items = json.dumps({"Items": [{"CustSpaceId": "cust-1", "IsvCode": "isv-1"}]})
    run = call([f"{url}/waba/refresh", "-H", "X-Isv-Code: isv-1", "-d", items], tmp_path, **access_key())
    assert run.returncode == 0, run.stderr
    _, _, body = printed(run)
    assert body["method"] == "POST" and body["body"] == items
    assert body["isvCode"] == "isv-1" and body["contentType"] == "application/json"
    assert [request["refused"] for request in seen] == [None]


def test_a_wrong_secret_is_refused_and_the_exit_code_says_so(trigger: Any, tmp_path: Path) -> None:
    url, seen = trigger
    wrong = access_key() | {"ALIBABA_CLOUD_ACCESS_KEY_SECRET": "not-the-secret"}
    run = call([f"{url}/waba"], tmp_path, **wrong)
    assert run.returncode == 1
    status, _, body = printed(run)
    assert status == "HTTP/1.0 403 Forbidden" and body == {"ErrorCode": "SignatureNotMatch"}
    assert [request["refused"] for request in seen] == ["signature does not match"]
    assert "not-the-secret" not in run.stdout + run.stderr


def test_without_credentials_nothing_is_sent(trigger: Any, tmp_path: Path) -> None:
    url, seen = trigger
    run = call([f"{url}/waba"], tmp_path)
    assert run.returncode == 2 and run.stdout == ""
    assert "ALIBABA_CLOUD_ACCESS_KEY_ID" in run.stderr and "Traceback" not in run.stderr
    assert seen == []


def test_a_header_the_signer_sets_cannot_be_overridden(trigger: Any, tmp_path: Path) -> None:
    url, seen = trigger
    run = call([f"{url}/waba", "-H", "x-acs-date: 2020-01-01T00:00:00Z"], tmp_path, **access_key())
    assert run.returncode == 2 and "set by the signer" in run.stderr
    assert seen == []
