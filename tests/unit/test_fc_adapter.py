"""The FC HTTP trigger's event and context, seen as the router sees API Gateway's: nothing lost either way."""

from __future__ import annotations

import json
from types import SimpleNamespace
from typing import Any

import pytest
from aws_lambda_powertools.utilities.data_classes import APIGatewayProxyEventV2

from tests.support import load_event
from waba_local.dev.fc_local import LocalFcContext, fc_http_event
from waba_lookup.credentials import AccessKey, FunctionCredentials
from waba_lookup.platforms.fc import FcContext, begin_invocation, http_answer, http_event


def as_router_sees_it(fc_event: bytes | dict[str, Any]) -> APIGatewayProxyEventV2:
    return APIGatewayProxyEventV2(http_event(fc_event))


def test_an_fc_event_reads_like_the_api_gateway_event_of_the_same_request() -> None:
    fc = as_router_sees_it(json.dumps(load_event("fc-http-sub-refresh")).encode())
    v2 = APIGatewayProxyEventV2(load_event("http-v2-sub-refresh"))
    assert (fc.path, fc.http_method, fc.raw_query_string) == (v2.path, v2.http_method, v2.raw_query_string)
    assert fc.headers.get("X-Isv-Code") == v2.headers.get("X-Isv-Code") == "isv-cs-acme-001"
    assert fc.get_query_string_value("refresh") == "true"
    assert fc.request_context.request_id == "1-6746a0c0-0123456789abcdef01234567"  # FC's: the correlation id


def test_repeated_headers_and_query_parameters_stay_joined_by_commas() -> None:
    event = fc_http_event("GET", "/waba/cs-1?refresh=true&refresh=false", {"Cache-Control": "max-age=0, no-cache"})
    seen = as_router_sees_it(event)
    assert seen.get_query_string_value("refresh") == "true,false"
    assert seen.headers.get("cache-control") == "max-age=0, no-cache"


def test_the_path_stays_percent_encoded_as_on_api_gateway() -> None:
    seen = as_router_sees_it(fc_http_event("GET", "/waba/cs%2F..%2Fown"))
    assert seen.path == "/waba/cs%2F..%2Fown"  # never decoded into another route


def test_a_base64_body_is_passed_on_as_such() -> None:
    event = load_event("fc-http-refresh", body="eyJJdGVtcyI6IFt7fV19", isBase64Encoded=True)
    seen = as_router_sees_it(event)
    assert seen.decoded_body == '{"Items": [{}]}'


def test_the_answer_has_exactly_fcs_keys() -> None:
    router = {"statusCode": 200, "body": "{}", "isBase64Encoded": False, "headers": {"X-Cache": "HIT"}, "cookies": []}
    assert http_answer(router) == {
        "statusCode": 200,
        "headers": {"X-Cache": "HIT"},
        "isBase64Encoded": False,
        "body": "{}",
    }


def test_remaining_time_runs_down_from_the_invocation_start_and_the_function_timeout() -> None:
    now = [100.0]
    context = FcContext.of(LocalFcContext(), started=99.0, clock=lambda: now[0])  # timeout 20 s, started 1 s ago
    assert context.get_remaining_time_in_millis() == 19_000
    now[0] = 130.0
    assert context.get_remaining_time_in_millis() == 0


def test_the_context_carries_fcs_request_id_and_function() -> None:
    fc = SimpleNamespace(
        request_id="1-abc",
        function=SimpleNamespace(name="waba-http", memory=512, timeout=20, qualifier="prod"),
        region="cn-hangzhou",
        account_id="123",
    )
    context = FcContext.of(fc)
    assert (context.aws_request_id, context.function_name, context.memory_limit_in_mb) == ("1-abc", "waba-http", 512)
    assert context.invoked_function_arn == "acs:fc:cn-hangzhou:123:functions/waba-http"
    assert context.function_version == "prod"


def test_an_invocations_credentials_are_used_for_it_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ALIBABA_CLOUD_ACCESS_KEY_ID", "env-key")
    monkeypatch.setenv("ALIBABA_CLOUD_ACCESS_KEY_SECRET", "env-secret")
    given = SimpleNamespace(access_key_id="STS.ctx", access_key_secret="ctx-secret", security_token="ctx-token")
    begin_invocation(SimpleNamespace(credentials=given), 0.0)
    assert FunctionCredentials().current() == AccessKey("STS.ctx", "ctx-secret", "ctx-token")
    begin_invocation(SimpleNamespace(), 0.0)  # the next invocation passes none (Python 3.12): the environment's
    assert FunctionCredentials().current() == AccessKey("env-key", "env-secret")
