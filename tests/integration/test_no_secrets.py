"""Sentinel AccessKey secret, security token and IsvCode, every failure path and every setting a user may turn on
(DEBUG=sdk, POWERTOOLS_LOGGER_LOG_EVENT=true, DEBUG logs): none appears in logs, error messages or answers."""

from __future__ import annotations

import json
import logging
import re
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from waba_local.stand_ins.emulator import DEFAULT_ACCESS_KEY_ID, SEEDED_CUSTOMERS, CamsEmulator
from waba_lookup.cams import client_from_settings
from waba_lookup.customer import Customer
from waba_lookup.errors import InvalidRequest, WabaLookupError
from waba_lookup.lookup import get_lookup
from waba_lookup.settings import get_settings

SECRET = "SENTINEL-SECRET-d41d8cd98f00b204"
ISV_CODE = "SENTINELisv9e107d9d372bb6826b"
STS_KEY_ID = "STS.SENTINELkeyid"
STS_SECRET = "SENTINEL-STS-SECRET-5eb63bbbe01eeed0"
STS_TOKEN = "SENTINEL-STS-TOKEN-CAESgAFkO2nT+x/y=="
SENTINELS = (SECRET, ISV_CODE, STS_SECRET, STS_TOKEN)
SPACE = "778899001122"
BEHAVIOURS = [
    "ok",
    "error:Ram.PermissionDeny",
    "error:Product.Unsubscript",
    "error:Unknown.ResourceOwnerId",
    "error:System.LimitControl",
    "5xx",
    "500",
    "slow:0.8",
    "garbage",
    "drop",
]


@pytest.fixture
def sentinel_cams(monkeypatch: pytest.MonkeyPatch) -> Iterator[CamsEmulator]:
    data = dict(next(v for k, v in SEEDED_CUSTOMERS.items() if k is not None)[1])
    with CamsEmulator(accounts={DEFAULT_ACCESS_KEY_ID: SECRET}, customers={SPACE: (ISV_CODE, data)}) as emulator:
        monkeypatch.setenv("CAMS_ENDPOINT", emulator.endpoint)
        monkeypatch.setenv("CAMS_PROTOCOL", "http")
        monkeypatch.setenv("CAMS_TIMEOUT_MS", "500")
        monkeypatch.setenv("ALIBABA_CLOUD_ACCESS_KEY_ID", DEFAULT_ACCESS_KEY_ID)
        monkeypatch.setenv("ALIBABA_CLOUD_ACCESS_KEY_SECRET", SECRET)
        monkeypatch.setenv("POWERTOOLS_LOG_LEVEL", "DEBUG")
        yield emulator


def test_no_failure_path_leaks_the_secret_or_the_isv_code(
    sentinel_cams: CamsEmulator, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="waba-lookup")
    caplog.set_level(logging.INFO)
    lookup = get_lookup()
    seen: list[str] = []
    for behaviour in BEHAVIOURS:
        sentinel_cams.set_behaviour(SPACE, behaviour)
        try:
            lookup.read(Customer(SPACE, ISV_CODE), deadline=lookup_deadline(), refresh=True)
        except WabaLookupError as error:
            seen += [str(error), repr(error), error.message, str(error.request_id)]
    sentinel_cams.clear_behaviours()
    with pytest.raises(WabaLookupError) as wrong_code:
        lookup.read(Customer(SPACE, ISV_CODE + "x"), deadline=lookup_deadline())
    seen.append(str(wrong_code.value))
    with pytest.raises(InvalidRequest) as invalid:
        Customer.parse(SPACE, ISV_CODE + "!")
    seen.append(str(invalid.value))
    seen += [capsys.readouterr().out, capsys.readouterr().err, caplog.text, repr(get_settings())]
    everything = "\n".join(seen)
    assert "Denied" in everything or "Ram.PermissionDeny" in everything  # the paths really ran
    assert "UpstreamTimeout" in everything and "UpstreamUnparseable" in everything
    assert SECRET not in everything
    assert ISV_CODE not in everything


def lookup_deadline() -> float:
    import time

    return time.monotonic() + 2.5


class Collected(logging.Handler):
    """Every record of a logger, formatted, whatever handlers and levels the SDK set on it."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


@pytest.fixture
def sdk_logs() -> Iterator[Collected]:
    collected = Collected()
    loggers = [logging.getLogger(name) for name in ("darabonba-core", "alibabacloud-tea")]
    for sdk_logger in loggers:
        sdk_logger.addHandler(collected)
    yield collected
    for sdk_logger in loggers:
        sdk_logger.removeHandler(collected)


@pytest.fixture
def sts_cams(sentinel_cams: CamsEmulator, monkeypatch: pytest.MonkeyPatch) -> CamsEmulator:
    """The emulator accepting STS credentials whose secret and token are sentinels, as FC's role gives them."""
    sentinel_cams.add_sts(STS_KEY_ID, STS_SECRET, STS_TOKEN, time.time() + 3600)
    monkeypatch.setenv("ALIBABA_CLOUD_ACCESS_KEY_ID", STS_KEY_ID)
    monkeypatch.setenv("ALIBABA_CLOUD_ACCESS_KEY_SECRET", STS_SECRET)
    monkeypatch.setenv("ALIBABA_CLOUD_SECURITY_TOKEN", STS_TOKEN)
    return sentinel_cams


def assert_no_sentinel(*texts: str) -> None:
    everything = "\n".join(texts)
    for sentinel in SENTINELS:
        assert sentinel not in everything, f"{sentinel} leaked"


def test_debug_sdk_never_prints_credentials_or_the_isv_code(
    sts_cams: CamsEmulator,
    monkeypatch: pytest.MonkeyPatch,
    sdk_logs: Collected,
    capfd: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.setenv("DEBUG", "sdk")
    caplog.set_level(logging.DEBUG)
    lookup = get_lookup()
    for behaviour in ("ok", "error:Ram.PermissionDeny", "5xx"):
        sts_cams.set_behaviour(SPACE, behaviour)
        try:
            lookup.read(Customer(SPACE, ISV_CODE), deadline=lookup_deadline(), refresh=True)
        except WabaLookupError:
            pass
    assert sts_cams.count(code="OK") == 1  # the STS credentials were used and accepted
    assert any("authorization" in line.lower() for line in sdk_logs.lines)  # the SDK's debug dump ran
    captured = capfd.readouterr()
    everything = "\n".join([*sdk_logs.lines, caplog.text, captured.out, captured.err])
    assert_no_sentinel(everything)
    assert not re.search(r"(authorization|x-acs-security-token) : (?!\*\*\*)", everything, re.IGNORECASE)
    assert not re.search(r"Signature=[0-9a-f]{8}", everything)


class EchoingCams(BaseHTTPRequestHandler):
    """A CAMS that answers every call with an error whose Message repeats the whole request."""

    def do_POST(self) -> None:
        # what matters first: CAMS's messages are cut to a few hundred characters
        token, query = self.headers.get("x-acs-security-token"), self.path.partition("?")[2]
        echoed = f"x-acs-security-token={token}; {query}; {dict(self.headers.items())}"
        body = json.dumps({"Code": "InvalidParameter", "Message": echoed, "RequestId": "echo-1"}).encode()
        self.send_response(400)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def echoing_cams(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), EchoingCams)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    monkeypatch.setenv("CAMS_ENDPOINT", f"127.0.0.1:{server.server_port}")
    monkeypatch.setenv("CAMS_PROTOCOL", "http")
    monkeypatch.setenv("ALIBABA_CLOUD_ACCESS_KEY_ID", STS_KEY_ID)
    monkeypatch.setenv("ALIBABA_CLOUD_ACCESS_KEY_SECRET", STS_SECRET)
    monkeypatch.setenv("ALIBABA_CLOUD_SECURITY_TOKEN", STS_TOKEN)
    yield f"127.0.0.1:{server.server_port}"
    server.shutdown()
    server.server_close()


def test_a_cams_message_that_echoes_the_request_is_masked(
    echoing_cams: str, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    with pytest.raises(WabaLookupError) as failed:
        client_from_settings(get_settings()).query(SPACE, ISV_CODE)
    error = failed.value
    assert error.code == "InvalidParameter" and "x-acs-security-token" in error.message.lower()  # it was echoed
    captured = capsys.readouterr()
    assert_no_sentinel(str(error), repr(error), error.message, captured.out, captured.err, caplog.text)


def test_event_logging_is_off_whatever_powertools_logger_log_event_says(
    sentinel_cams: CamsEmulator, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from waba_local.dev.apigw import http_event, load_handler
    from waba_local.dev.fc_local import fc_invocation
    from waba_local.dev.poller import LocalLambdaContext

    monkeypatch.setenv("POWERTOOLS_LOGGER_LOG_EVENT", "true")
    app = load_handler("http_api")  # decorated under this environment, as a new instance would be
    headers = {"X-Isv-Code": ISV_CODE}
    aws = app.lambda_handler(http_event("GET", f"/waba/{SPACE}", headers), LocalLambdaContext())
    fc = app.handler(*fc_invocation("GET", f"/waba/{SPACE}", headers))
    denied = app.lambda_handler(http_event("GET", f"/waba/{SPACE}", {"X-Isv-Code": "other"}), LocalLambdaContext())
    assert aws["statusCode"] == fc["statusCode"] == 200 and denied["statusCode"] == 403
    assert "lookup failed" in caplog.text  # the handler's logger is heard here
    assert_no_sentinel(caplog.text, *(str(record.msg) for record in caplog.records))
