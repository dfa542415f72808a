"""The local CAMS emulator, driven by the real Alibaba SDK over real HTTP (and by raw signed requests where the SDK
cannot express the case: tampering, replays, stale dates). Time-dependent cases use a fake clock, not sleeps."""

from __future__ import annotations

import hashlib
import json
import re
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.error import HTTPError
from urllib.parse import urlencode

import pytest
from alibabacloud_cams20200606.client import Client
from alibabacloud_cams20200606.models import QueryChatappBindWabaRequest
from alibabacloud_tea_openapi import utils_models
from alibabacloud_tea_openapi.exceptions import ClientException, ServerException
from alibabacloud_tea_openapi.utils import Utils
from darabonba.request import DaraRequest
from darabonba.runtime import RuntimeOptions

from waba_local.stand_ins.emulator import (
    ANY_CUSTOMER,
    SEEDED_CUSTOMERS,
    CamsEmulator,
    expected_isv_code,
    generated_waba,
)
from waba_local.stand_ins.emulator_protocol import DOCUMENTED_ERRORS, ERRORS
from waba_lookup.cams import query_params

SUB_ID = "293483100049493"
SUB_ISV, SUB_DATA = SEEDED_CUSTOMERS[SUB_ID]
OWN_ID = "104839274658213"
EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()
UPPER_UUID = re.compile(r"^[0-9A-F]{8}-[0-9A-F]{4}-[0-9A-F]{4}-[0-9A-F]{4}-[0-9A-F]{12}$")


class FakeClock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def clocked_emulator(clock: FakeClock, emulator_credentials: tuple[str, str]) -> Iterator[CamsEmulator]:
    with CamsEmulator(accounts=dict([emulator_credentials]), clock=clock) as emulator:
        yield emulator


def sdk_client(emulator: CamsEmulator, credentials: tuple[str, str], read_timeout_ms: int = 3000) -> Client:
    access_key_id, secret = credentials
    config = utils_models.Config(
        access_key_id=access_key_id,
        access_key_secret=secret,
        endpoint=emulator.endpoint,
        protocol="http",
        region_id="ap-southeast-1",
        read_timeout=read_timeout_ms,
    )
    return Client(config)


@pytest.fixture
def client(cams_emulator: CamsEmulator, emulator_credentials: tuple[str, str]) -> Client:
    return sdk_client(cams_emulator, emulator_credentials)


@pytest.fixture
def clocked_client(clocked_emulator: CamsEmulator, emulator_credentials: tuple[str, str]) -> Client:
    return sdk_client(clocked_emulator, emulator_credentials)


def query(client: Client, cust_space_id: str | None = None, isv_code: str | None = None) -> Any:
    return client.query_chatapp_bind_waba(QueryChatappBindWabaRequest(cust_space_id=cust_space_id, isv_code=isv_code))


def outcome(client: Client, cust_space_id: str | None = None, isv_code: str | None = None) -> str:
    """ "OK" or the CAMS error code the SDK raised."""
    try:
        return str(query(client, cust_space_id, isv_code).body.code)
    except (ClientException, ServerException) as exc:
        return str(exc.code)


def outcomes(client: Client, n: int, cust_space_id: str | None = None, isv_code: str | None = None) -> list[str]:
    return [outcome(client, cust_space_id, isv_code) for _ in range(n)]


# --- raw signed requests (the SDK's own signer, then sent with urllib so they can be tampered with) ---------------


@dataclass
class RawRequest:
    url: str
    headers: dict[str, str]
    body: bytes = b""


def signed(
    endpoint: str,
    credentials: tuple[str, str],
    params: dict[str, str] | None = None,
    headers: dict[str, str | None] | None = None,
    unsigned: dict[str, str] | None = None,
) -> RawRequest:
    """A request signed exactly as the SDK signs it; `headers` override (None: leave out) the SDK's, `unsigned`
    headers are added after signing."""
    params = dict(params or {})
    defaults: dict[str, str | None] = {
        "host": endpoint,
        "x-acs-action": "QueryChatappBindWaba",
        "x-acs-version": "2020-06-06",
        "x-acs-date": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "x-acs-signature-nonce": uuid.uuid4().hex,
        "x-acs-content-sha256": EMPTY_SHA256,
    }
    all_headers = {name: value for name, value in (defaults | (headers or {})).items() if value is not None}
    dara = DaraRequest()
    dara.method, dara.pathname, dara.query, dara.headers = "POST", "/", params, all_headers
    all_headers["Authorization"] = Utils.get_authorization(
        dara, "ACS3-HMAC-SHA256", all_headers["x-acs-content-sha256"], *credentials
    )
    return RawRequest(f"http://{endpoint}/?{urlencode(params)}", all_headers | (unsigned or {}))


def send(raw: RawRequest) -> tuple[int, dict[str, str], bytes]:
    request = urllib.request.Request(raw.url, data=raw.body, headers=raw.headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, dict(response.headers), response.read()
    except HTTPError as error:
        return error.code, dict(error.headers), error.read()


def send_code(raw: RawRequest) -> str:
    return str(json.loads(send(raw)[2])["Code"])


def control(emulator: CamsEmulator, method: str, route: str, payload: Any = None) -> tuple[int, Any]:
    data = None if payload is None else json.dumps(payload).encode()
    request = urllib.request.Request(f"http://{emulator.endpoint}/_emulator/{route}", data=data, method=method)
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, json.loads(response.read())
    except HTTPError as error:
        return error.code, json.loads(error.read())


# --- success --------------------------------------------------------------------------------------------------------


def test_own_account_gets_its_waba_through_the_sdk(client: Client, cams_emulator: CamsEmulator) -> None:
    response = query(client)

    assert response.status_code == 200
    assert (response.body.code, response.body.message, response.body.success) == ("OK", "SUCCESS", True)
    assert response.body.access_denied_detail == "None"
    assert response.body.data.id == OWN_ID
    assert UPPER_UUID.match(response.body.request_id)
    assert [(c.cust_space_id, c.status, c.code) for c in cams_emulator.calls] == [(None, 200, "OK")]


def test_sub_customer_with_its_isv_code_gets_its_waba(client: Client) -> None:
    data = query(client, SUB_ID, SUB_ISV).body.data

    assert (data.id, data.name, data.account_review_status) == (SUB_DATA["Id"], "Alibaba", "APPROVED")
    assert data.auth_international_rate_eligibility == {"test": "test", "test2": 1}


def test_unknown_fields_reach_the_caller_raw(
    client: Client, cams_emulator: CamsEmulator, emulator_credentials: tuple[str, str]
) -> None:
    # The SDK's call_api returns the body as sent; the typed model would drop ThroughputTier.
    params = query_params()
    request = utils_models.OpenApiRequest(query={"CustSpaceId": SUB_ID, "IsvCode": SUB_ISV})
    via_sdk = client.call_api(params, request, RuntimeOptions())["body"]
    status, headers, body = send(signed(cams_emulator.endpoint, emulator_credentials))

    assert via_sdk["Data"] == SUB_DATA
    assert via_sdk["Data"]["ThroughputTier"] == "HIGH"
    assert status == 200 and headers["Content-Type"] == "application/json;charset=utf-8"
    assert json.loads(body)["Data"]["ThroughputTier"] == "STANDARD"


def test_generated_customers_are_deterministic_and_need_their_isv_code(client: Client) -> None:
    data = query(client, "cs-bench-0042", expected_isv_code("cs-bench-0042")).body.data

    assert data.id == generated_waba("cs-bench-0042")["Id"] != generated_waba("cs-bench-0043")["Id"]
    assert data.to_map() == {k: v for k, v in generated_waba("cs-bench-0042").items() if k != "ThroughputTier"}
    assert outcome(client, "cs-bench-0042", "isv-cs-bench-0043") == "Ram.PermissionDeny"


def test_custom_customers_replace_the_seeded_ones(emulator_credentials: tuple[str, str]) -> None:
    own = {"Id": "1", "Name": "Own"}
    with CamsEmulator(accounts=dict([emulator_credentials]), customers={None: (None, own), "42": ("c", {})}) as emu:
        client = sdk_client(emu, emulator_credentials)

        assert query(client).body.data.id == "1"
        assert outcome(client, "42", "c") == "OK"
        assert outcome(client, SUB_ID, SUB_ISV) == "Unknown.ResourceOwnerId"


# --- customer errors ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("isv_code", ["wrong-code", None])
def test_sub_customer_without_its_isv_code_is_denied(client: Client, isv_code: str | None) -> None:
    with pytest.raises(ClientException) as raised:
        query(client, SUB_ID, isv_code)

    assert (raised.value.code, raised.value.status_code) == ("Ram.PermissionDeny", 400)
    assert SUB_ISV not in str(raised.value.data) and "wrong-code" not in str(raised.value.data)


@pytest.mark.parametrize("cust_space_id", ["999999999999999", "cs-" + "x" * 41, "cs-bad id"])
def test_unknown_customer_is_not_the_callers(client: Client, cust_space_id: str) -> None:
    assert outcome(client, cust_space_id, "any") == "Unknown.ResourceOwnerId"


# --- authentication -------------------------------------------------------------------------------------------------


def test_wrong_secret_does_not_match(cams_emulator: CamsEmulator, emulator_credentials: tuple[str, str]) -> None:
    client = sdk_client(cams_emulator, (emulator_credentials[0], "not-the-secret"))

    with pytest.raises(ClientException) as raised:
        query(client)

    assert (raised.value.code, raised.value.status_code) == ("SignatureDoesNotMatch", 400)
    assert "not-the-secret" not in str(raised.value.data)
    assert cams_emulator.calls[0].access_key_id == emulator_credentials[0]


def test_unknown_access_key_is_not_found(cams_emulator: CamsEmulator) -> None:
    with pytest.raises(ClientException) as raised:
        query(sdk_client(cams_emulator, ("LTAI5tSomeoneElse", "x")))

    assert (raised.value.code, raised.value.status_code) == ("InvalidAccessKeyId.NotFound", 404)


def test_tampered_requests_are_rejected(cams_emulator: CamsEmulator, emulator_credentials: tuple[str, str]) -> None:
    endpoint = cams_emulator.endpoint
    swapped = signed(endpoint, emulator_credentials, {"CustSpaceId": SUB_ID, "IsvCode": SUB_ISV})
    swapped.url = swapped.url.replace(SUB_ID, "293483200078121")
    redated = signed(endpoint, emulator_credentials)
    redated.headers["x-acs-date"] = "2020-01-01T00:00:00Z"
    with_body = signed(endpoint, emulator_credentials)
    with_body.body = b"CustSpaceId=293483200078121"
    # Validly signed, but over headers that leave out the nonce: it could be swapped to replay the request.
    nonce_unsigned = signed(
        endpoint, emulator_credentials, headers={"x-acs-signature-nonce": None}, unsigned={"x-acs-signature-nonce": "n"}
    )

    assert send_code(swapped) == "SignatureDoesNotMatch"
    assert send_code(redated) == "SignatureDoesNotMatch"
    assert send_code(with_body) == "IncompleteSignature"
    assert send_code(nonce_unsigned) == "IncompleteSignature"
    assert cams_emulator.count(code="OK") == 0


@pytest.mark.parametrize("authorization", [None, "Bearer abc", "ACS3-HMAC-SHA256 Credential=LTAI5tLocalEmulatorKey"])
def test_missing_or_garbled_authorization_is_incomplete(
    cams_emulator: CamsEmulator, emulator_credentials: tuple[str, str], authorization: str | None
) -> None:
    raw = signed(cams_emulator.endpoint, emulator_credentials)
    del raw.headers["Authorization"]
    if authorization:
        raw.headers["Authorization"] = authorization

    assert send_code(raw) == "IncompleteSignature"


def test_replayed_nonce_is_rejected_until_reset(
    cams_emulator: CamsEmulator, emulator_credentials: tuple[str, str]
) -> None:
    raw = signed(cams_emulator.endpoint, emulator_credentials)

    assert [send_code(raw), send_code(raw)] == ["OK", "SignatureNonceUsed"]
    cams_emulator.reset()
    assert send_code(raw) == "OK"


@pytest.mark.parametrize(
    ("minutes_off", "code"), [(-16, "InvalidTimeStamp.Expired"), (16, "InvalidTimeStamp.Expired"), (-14, "OK")]
)
def test_request_date_must_be_within_fifteen_minutes(
    cams_emulator: CamsEmulator, emulator_credentials: tuple[str, str], minutes_off: int, code: str
) -> None:
    date = (datetime.now(UTC) + timedelta(minutes=minutes_off)).strftime("%Y-%m-%dT%H:%M:%SZ")

    assert send_code(signed(cams_emulator.endpoint, emulator_credentials, headers={"x-acs-date": date})) == code


@pytest.mark.parametrize(
    ("headers", "code"),
    [
        ({"x-acs-action": "SendChatappMessage"}, "InvalidAction.NotFound"),
        ({"x-acs-version": "2017-05-25"}, "InvalidVersion"),
    ],
)
def test_wrong_action_or_version(
    cams_emulator: CamsEmulator, emulator_credentials: tuple[str, str], headers: dict[str, str], code: str
) -> None:
    assert send_code(signed(cams_emulator.endpoint, emulator_credentials, headers=headers)) == code


def test_error_body_is_shaped_like_alibaba_cloud(
    cams_emulator: CamsEmulator, emulator_credentials: tuple[str, str]
) -> None:
    status, headers, body = send(
        signed(cams_emulator.endpoint, emulator_credentials, {"CustSpaceId": SUB_ID, "IsvCode": "secret-guess"})
    )
    error = json.loads(body)

    assert status == 400 and headers["Content-Type"] == "application/json;charset=utf-8"
    assert set(error) == {"RequestId", "HostId", "Code", "Message", "Recommend"}
    assert UPPER_UUID.match(error["RequestId"]) and headers["x-acs-request-id"] == error["RequestId"]
    assert error["HostId"] == "cams.ap-southeast-1.aliyuncs.com"
    assert error["Recommend"].startswith("https://api.aliyun.com/troubleshoot?q=Ram.PermissionDeny")
    assert b"secret-guess" not in body and SUB_ISV.encode() not in body


# --- flow control ---------------------------------------------------------------------------------------------------


def test_eleventh_call_within_a_second_is_flow_controlled(
    clocked_client: Client, clocked_emulator: CamsEmulator
) -> None:
    assert outcomes(clocked_client, 11) == ["OK"] * 10 + ["System.LimitControl"]
    assert clocked_emulator.calls[-1].status == 400
    assert clocked_emulator.max_calls_in_window(accepted_only=True) == 10


def test_window_slides_and_rejected_calls_do_not_occupy_it(
    clocked_client: Client, clocked_emulator: CamsEmulator, clock: FakeClock
) -> None:
    first = outcomes(clocked_client, 5)
    clock.now = 1000.5
    second = outcomes(clocked_client, 6)
    clock.now = 1000.75
    rejected = outcomes(clocked_client, 3)
    clock.now = 1001.0  # the calls of 1000.0 have left the window; those of 1000.5 have not
    third = outcomes(clocked_client, 6)
    clock.now = 1001.5
    fourth = outcomes(clocked_client, 6)

    assert first == ["OK"] * 5
    assert second == ["OK"] * 5 + ["System.LimitControl"]
    assert rejected == ["System.LimitControl"] * 3
    assert third == ["OK"] * 5 + ["System.LimitControl"]
    assert fourth == ["OK"] * 5 + ["System.LimitControl"]
    assert clocked_emulator.max_calls_in_window(accepted_only=True) == 10


def test_all_access_keys_of_the_account_share_the_limit(clock: FakeClock) -> None:
    keys = {"LTAI5tKeyOne": "one", "LTAI5tKeyTwo": "two"}
    with CamsEmulator(accounts=keys, clock=clock) as emulator:
        one, two = (sdk_client(emulator, pair) for pair in keys.items())

        assert outcomes(one, 6) + outcomes(two, 5) == ["OK"] * 10 + ["System.LimitControl"]
        assert emulator.calls[-1].access_key_id == "LTAI5tKeyTwo"


def test_concurrent_burst_admits_exactly_the_limit(
    clocked_emulator: CamsEmulator, emulator_credentials: tuple[str, str]
) -> None:
    # 15 threads racing on their own connections; the fake clock keeps the burst inside one window however
    # loaded the machine is.
    clients = [sdk_client(clocked_emulator, emulator_credentials) for _ in range(15)]

    with ThreadPoolExecutor(max_workers=15) as pool:
        results = list(pool.map(outcome, clients))

    assert sorted(results) == ["OK"] * 10 + ["System.LimitControl"] * 5
    assert clocked_emulator.max_calls_in_window(accepted_only=True) == 10


def test_qps_limit_is_configurable(clock: FakeClock, emulator_credentials: tuple[str, str]) -> None:
    with CamsEmulator(accounts=dict([emulator_credentials]), clock=clock, qps_limit=2) as emulator:
        assert outcomes(sdk_client(emulator, emulator_credentials), 3) == ["OK", "OK", "System.LimitControl"]


def test_max_calls_in_window_and_count(
    clocked_client: Client, clocked_emulator: CamsEmulator, clock: FakeClock
) -> None:
    for at, cust_space_id, isv_code in [
        (0.0, None, None),
        (0.5, None, None),
        (0.75, SUB_ID, "wrong"),
        (1.0, SUB_ID, SUB_ISV),
        (1.25, None, None),
    ]:
        clock.now = 1000.0 + at
        outcome(clocked_client, cust_space_id, isv_code)

    assert clocked_emulator.max_calls_in_window() == 4  # 0.5, 0.75, 1.0, 1.25 (1.5 is outside [0.5, 1.5))
    assert clocked_emulator.max_calls_in_window(accepted_only=True) == 3
    assert clocked_emulator.max_calls_in_window(window=0.5) == 2
    assert clocked_emulator.count() == 5
    assert clocked_emulator.count(code="OK") == 4
    assert clocked_emulator.count(code="Ram.PermissionDeny", cust_space_id=SUB_ID) == 1
    assert clocked_emulator.count(cust_space_id=SUB_ID) == 2


# --- behaviours -----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("code", DOCUMENTED_ERRORS)
def test_each_documented_error_can_be_injected(client: Client, cams_emulator: CamsEmulator, code: str) -> None:
    cams_emulator.set_behaviour(SUB_ID, f"error:{code}")

    with pytest.raises(ClientException) as raised:
        query(client, SUB_ID, SUB_ISV)

    assert (raised.value.code, raised.value.status_code) == (code, 400)
    assert ERRORS[code][1] in raised.value.message
    assert outcome(client) == "OK"  # only that customer is affected


@pytest.mark.parametrize(
    ("behaviour", "status", "code"), [("5xx", 503, "ServiceUnavailable"), ("500", 500, "InternalError")]
)
def test_server_errors(client: Client, cams_emulator: CamsEmulator, behaviour: str, status: int, code: str) -> None:
    cams_emulator.set_behaviour(None, behaviour)

    with pytest.raises(ServerException) as raised:
        query(client)

    assert (raised.value.status_code, raised.value.code) == (status, code)


def test_times_applies_to_the_next_calls_then_reverts(client: Client, cams_emulator: CamsEmulator) -> None:
    cams_emulator.set_behaviour(None, "error:Product.Unsubscript", times=2)
    assert outcomes(client, 3) == ["Product.Unsubscript"] * 2 + ["OK"]

    cams_emulator.set_behaviour(None, "5xx")
    cams_emulator.set_behaviour(None, "ok", times=1)
    assert outcomes(client, 2) == ["OK", "ServiceUnavailable"]


def test_global_default_and_per_customer_override(client: Client, cams_emulator: CamsEmulator) -> None:
    cams_emulator.set_behaviour(ANY_CUSTOMER, "error:Product.Unsubscript")
    cams_emulator.set_behaviour(None, "ok")

    assert outcome(client) == "OK"
    assert outcome(client, SUB_ID, SUB_ISV) == "Product.Unsubscript"
    cams_emulator.clear_behaviours()
    assert outcome(client, SUB_ID, SUB_ISV) == "OK"


def test_flow_control_comes_before_behaviours(
    clocked_client: Client, clocked_emulator: CamsEmulator, clock: FakeClock
) -> None:
    outcomes(clocked_client, 10)
    clocked_emulator.set_behaviour(None, "error:Ram.PermissionDeny", times=1)

    assert outcome(clocked_client) == "System.LimitControl"  # does not use up the injected error
    clock.now += 1.0
    assert outcomes(clocked_client, 2) == ["Ram.PermissionDeny", "OK"]


def test_bad_behaviours_are_refused(cams_emulator: CamsEmulator) -> None:
    for behaviour, times in [("error:Nope", None), ("slow:x", None), ("teapot", None), ("ok", 0)]:
        with pytest.raises(ValueError):
            cams_emulator.set_behaviour(None, behaviour, times)


def test_slow_answers_late_and_trips_the_sdk_read_timeout(
    cams_emulator: CamsEmulator, emulator_credentials: tuple[str, str]
) -> None:
    impatient = sdk_client(cams_emulator, emulator_credentials, read_timeout_ms=100)
    cams_emulator.set_behaviour(None, "slow:0.3", times=1)
    with pytest.raises(Exception, match="(?i)timed? ?out"):
        query(impatient)

    cams_emulator.set_behaviour(None, "slow:0.05", times=1)
    started = time.monotonic()
    assert query(impatient).body.data.id == OWN_ID
    assert time.monotonic() - started >= 0.05
    slow_call = cams_emulator.calls[-1]
    assert slow_call.answered_at - slow_call.arrived_at >= 0.05


def test_garbage_is_a_non_json_200(
    client: Client, cams_emulator: CamsEmulator, emulator_credentials: tuple[str, str]
) -> None:
    cams_emulator.set_behaviour(None, "garbage", times=2)

    with pytest.raises(Exception, match="json"):
        query(client)
    status, headers, body = send(signed(cams_emulator.endpoint, emulator_credentials))

    assert (status, headers["Content-Type"]) == (200, "text/html")
    assert body.startswith(b"<html>") and b"upstream proxy error" in body
    assert [c.code for c in cams_emulator.calls] == ["Garbage", "Garbage"]


def test_drop_closes_the_connection_without_an_answer(client: Client, cams_emulator: CamsEmulator) -> None:
    cams_emulator.set_behaviour(None, "drop", times=1)

    with pytest.raises(Exception, match="(?i)closed connection without response|aborted"):
        query(client)

    assert outcome(client) == "OK"
    assert [(c.status, c.code) for c in cams_emulator.calls] == [(0, "Dropped"), (200, "OK")]


# --- control plane, lifecycle, CLI ----------------------------------------------------------------------------------


def test_control_plane_over_http(client: Client, cams_emulator: CamsEmulator) -> None:
    behaviour = {"CustSpaceId": None, "Behaviour": "error:Product.Unsubscript", "Times": 1}

    assert control(cams_emulator, "POST", "behaviour", behaviour) == (200, behaviour)
    assert outcomes(client, 2) == ["Product.Unsubscript", "OK"]
    status, calls = control(cams_emulator, "GET", "calls")
    assert status == 200 and calls == [asdict(call) for call in cams_emulator.calls]
    assert [c["code"] for c in calls] == ["Product.Unsubscript", "OK"]
    assert control(cams_emulator, "POST", "reset")[0] == 200
    assert cams_emulator.calls == [] and control(cams_emulator, "GET", "calls") == (200, [])


@pytest.mark.parametrize(
    "payload", [{"CustSpaceId": None, "Behaviour": "explode"}, {"CustSpaceId": 5, "Behaviour": "ok"}, ["ok"]]
)
def test_control_plane_refuses_bad_behaviours(cams_emulator: CamsEmulator, payload: Any) -> None:
    status, answer = control(cams_emulator, "POST", "behaviour", payload)

    assert status == 400 and "Error" in answer
    assert control(cams_emulator, "GET", "nope")[0] == 404


def test_stop_cuts_kept_alive_connections(emulator_credentials: tuple[str, str]) -> None:
    emulator = CamsEmulator(accounts=dict([emulator_credentials])).start()
    client = sdk_client(emulator, emulator_credentials, read_timeout_ms=500)
    assert outcome(client) == "OK"

    emulator.stop()

    with pytest.raises(Exception):  # noqa: B017 (connection refused or reset: any transport error)
        query(client)
    with pytest.raises(RuntimeError):
        _ = emulator.endpoint


def test_cli_prints_endpoint_and_keys_then_serves() -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "waba_local.stand_ins.emulator", "--port", "0"], stdout=subprocess.PIPE, text=True
    )
    try:
        assert process.stdout is not None
        banner = [process.stdout.readline() for _ in range(5)]
        endpoint = re.search(r"http://(\S+)", banner[0]).group(1)  # type: ignore[union-attr]
        with urllib.request.urlopen(f"http://{endpoint}/_emulator/calls", timeout=5) as response:
            assert json.loads(response.read()) == []
        assert "ALIBABA_CLOUD_ACCESS_KEY_ID=LTAI5tLocalEmulatorKey\n" in banner
        assert "ALIBABA_CLOUD_ACCESS_KEY_SECRET=local-emulator-secret\n" in banner
    finally:
        process.terminate()
        process.wait(timeout=5)
