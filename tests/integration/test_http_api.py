"""The HTTP function end to end: API Gateway events in, the real SDK to the emulator, moto's S3 and SQS."""

from __future__ import annotations

import json
from typing import Any

import pytest
from http_api import app

from tests.conftest import AwsStandIn, FakeLambdaContext, load_event
from waba_local.emulator import CamsEmulator
from waba_lookup.lookup import get_lookup
from waba_lookup.settings import get_settings

SUB = "cs-acme-001"
ISV = "isv-cs-acme-001"


@pytest.fixture
def stack(cams_env: CamsEmulator, aws: AwsStandIn) -> tuple[CamsEmulator, AwsStandIn]:
    return cams_env, aws


def call(name: str, context: FakeLambdaContext | None = None, **overrides: Any) -> dict[str, Any]:
    response: dict[str, Any] = app.lambda_handler(load_event(name, **overrides), context or FakeLambdaContext())
    return response


def body(response: dict[str, Any]) -> Any:
    return json.loads(response["body"])


def header(response: dict[str, Any], name: str) -> str | None:
    headers = {k.lower(): v for k, v in (response.get("headers") or {}).items()}
    multi = {k.lower(): v[-1] for k, v in (response.get("multiValueHeaders") or {}).items()}
    return headers.get(name.lower()) or multi.get(name.lower())


def test_miss_then_hit_spends_one_cams_call(stack: tuple[CamsEmulator, AwsStandIn]) -> None:
    cams, aws = stack
    first, second = call("http-v2-sub"), call("http-v2-sub")
    assert first["statusCode"] == second["statusCode"] == 200
    assert (header(first, "X-Cache"), header(second, "X-Cache")) == ("MISS", "HIT")
    assert header(first, "Content-Type") == "application/json"
    assert body(first) == body(second) and body(first)["Data"]["Id"]
    assert "ThroughputTier" in body(second)["Data"]  # unknown CAMS fields survive the cache
    assert cams.count(cust_space_id=SUB) == 1
    assert len(aws.cache_objects()) == 1


def test_age_counts_seconds_since_fetched(
    stack: tuple[CamsEmulator, AwsStandIn], monkeypatch: pytest.MonkeyPatch
) -> None:
    assert header(call("http-v2-own"), "Age") == "0"
    lookup = get_lookup()
    monkeypatch.setattr(lookup, "_wall", lambda: __import__("time").time() + 42)
    hit = call("http-v2-own")
    assert header(hit, "X-Cache") == "HIT" and header(hit, "Age") in ("42", "43")


@pytest.mark.parametrize("event", ["http-v2-sub-refresh", "http-v2-sub-no-cache", "rest-v1-sub-no-cache"])
def test_refresh_and_no_cache_skip_a_fresh_entry(stack: tuple[CamsEmulator, AwsStandIn], event: str) -> None:
    cams, _ = stack
    call("http-v2-sub")
    forced = call(event)
    assert header(forced, "X-Cache") == "MISS"
    assert cams.count(cust_space_id=SUB) == 2


@pytest.mark.parametrize("event", ["http-v2-sub-wrong-isv", "http-v2-sub-no-isv"])
def test_a_wrong_or_missing_isv_code_never_gets_the_cached_entry(
    stack: tuple[CamsEmulator, AwsStandIn], event: str
) -> None:
    cams, aws = stack
    cached = call("http-v2-sub")
    denied = call(event)
    assert denied["statusCode"] == 403
    assert body(denied)["Code"] == "Ram.PermissionDeny"
    assert body(cached)["Data"]["Id"] not in denied["body"]
    assert cams.count(cust_space_id=SUB) == 2  # CAMS was asked, not the other IsvCode's entry
    keys = " ".join(aws.cache_objects())
    assert ISV not in keys and ISV not in json.dumps(list(aws.cache_objects().values()))


@pytest.mark.parametrize("code", ["Ram.PermissionDeny", "Product.Unsubscript", "Unknown.ResourceOwnerId"])
def test_permanent_cams_codes_are_403_and_cached_briefly(stack: tuple[CamsEmulator, AwsStandIn], code: str) -> None:
    cams, aws = stack
    cams.set_behaviour(SUB, f"error:{code}")
    first, second = call("http-v2-sub"), call("http-v2-sub")
    assert first["statusCode"] == second["statusCode"] == 403
    assert body(first)["Code"] == body(second)["Code"] == code
    assert set(body(first)) == {"Code", "Message", "RequestId"}
    assert cams.count(cust_space_id=SUB) == 1
    [entry] = aws.cache_objects().values()
    assert entry["Result"] == "DENIED" and entry["Error"]["Code"] == code


@pytest.mark.parametrize(("behaviour", "status"), [("5xx", 502), ("garbage", 502), ("slow:1.5", 504)])
def test_upstream_failures_without_a_cached_entry(
    stack: tuple[CamsEmulator, AwsStandIn], behaviour: str, status: int
) -> None:
    cams, _ = stack
    cams.set_behaviour(SUB, behaviour)
    response = call("http-v2-sub")
    assert response["statusCode"] == status
    assert set(body(response)) == {"Code", "Message", "RequestId"} and body(response)["RequestId"]
    assert "Traceback" not in response["body"]


@pytest.mark.parametrize("behaviour", ["5xx", "slow:1.5", "error:System.LimitControl", "garbage"])
def test_a_stale_entry_is_served_when_cams_fails(
    stack: tuple[CamsEmulator, AwsStandIn], monkeypatch: pytest.MonkeyPatch, behaviour: str
) -> None:
    cams, _ = stack
    monkeypatch.setenv("CACHE_TTL_SECONDS", "0")  # every entry is past fresh at once, well within stale
    fresh = call("http-v2-sub")
    cams.set_behaviour(SUB, behaviour)
    stale = call("http-v2-sub")
    assert stale["statusCode"] == 200 and header(stale, "X-Cache") == "STALE"
    assert body(stale) == body(fresh)


def test_an_entry_past_the_stale_window_is_not_served(
    stack: tuple[CamsEmulator, AwsStandIn], monkeypatch: pytest.MonkeyPatch
) -> None:
    cams, _ = stack
    monkeypatch.setenv("CACHE_TTL_SECONDS", "0")
    monkeypatch.setenv("CACHE_STALE_SECONDS", "0")
    call("http-v2-sub")
    cams.set_behaviour(SUB, "5xx")
    assert call("http-v2-sub")["statusCode"] == 502


def new_instance_without_the_budget_store(monkeypatch: pytest.MonkeyPatch) -> None:
    """The next request runs in a fresh instance whose budget table cannot be reached."""
    monkeypatch.setenv("CAMS_BUDGET_TABLE", "no-such-budget-table")
    get_settings.cache_clear()
    get_lookup.cache_clear()


def test_the_budget_store_down_with_nothing_cached_is_503_and_spends_nothing(
    stack: tuple[CamsEmulator, AwsStandIn], monkeypatch: pytest.MonkeyPatch
) -> None:
    cams, _ = stack
    new_instance_without_the_budget_store(monkeypatch)
    response = call("http-v2-sub")
    assert response["statusCode"] == 503 and body(response)["Code"] == "BudgetUnavailable"
    assert int(header(response, "Retry-After") or 0) >= 1
    assert cams.calls == []


def test_the_budget_store_down_serves_a_stale_entry_and_fresh_hits_never_ask_it(
    stack: tuple[CamsEmulator, AwsStandIn], monkeypatch: pytest.MonkeyPatch
) -> None:
    cams, _ = stack
    call("http-v2-sub")
    new_instance_without_the_budget_store(monkeypatch)
    hit = call("http-v2-sub")
    assert header(hit, "X-Cache") == "HIT" and get_lookup().budget.stats.store_requests == 0
    stale = call("http-v2-sub-refresh")
    assert stale["statusCode"] == 200 and header(stale, "X-Cache") == "STALE"
    assert cams.count(cust_space_id=SUB) == 1


def test_throttled_with_nothing_cached_is_429_with_retry_after(stack: tuple[CamsEmulator, AwsStandIn]) -> None:
    cams, _ = stack
    cams.set_behaviour(SUB, "error:System.LimitControl")
    response = call("http-v2-sub")
    assert response["statusCode"] == 429
    assert body(response)["Code"] == "System.LimitControl"
    assert int(header(response, "Retry-After") or 0) >= 1


def test_no_permit_within_the_wait_bound_is_429(
    stack: tuple[CamsEmulator, AwsStandIn], monkeypatch: pytest.MonkeyPatch
) -> None:
    cams, _ = stack
    monkeypatch.setenv("CAMS_QPS_BUDGET", "1")
    monkeypatch.setenv("CAMS_INTERACTIVE_RESERVE", "0")
    monkeypatch.setattr(app, "HTTP_SLOT_WAIT_SECONDS", 0.3)
    assert call("http-v2-own")["statusCode"] == 200
    # the one slot is held until a second after that answer; this read may queue for 0.3 s only
    response = call("http-v2-sub")
    assert response["statusCode"] == 429 and body(response)["Code"] == "Throttling.Pacing"
    assert header(response, "Retry-After") is not None
    assert len(cams.calls) == 1


@pytest.mark.parametrize(
    "event",
    [
        "http-v2-invalid-cust-space-id",
        "http-v2-invalid-isv-code",
        "rest-v1-invalid-cust-space-id",
        "http-v2-refresh-malformed",
        "http-v2-refresh-empty",
        "http-v2-refresh-not-json",
        "rest-v1-refresh-malformed",
    ],
)
def test_invalid_input_is_400_and_spends_nothing(stack: tuple[CamsEmulator, AwsStandIn], event: str) -> None:
    cams, aws = stack
    response = call(event)
    assert response["statusCode"] == 400
    assert set(body(response)) == {"Code", "Message", "RequestId"}
    assert cams.calls == []
    assert aws.cache_objects() == {}
    assert get_lookup.cache_info().currsize == 0 or get_lookup().cache._s3 is None  # type: ignore[union-attr]
    assert aws.sqs.receive_message(QueueUrl=aws.queue_url).get("Messages", []) == []


def test_a_refresh_body_over_1000_items_is_400(stack: tuple[CamsEmulator, AwsStandIn]) -> None:
    _, aws = stack
    items = json.dumps({"Items": [{"CustSpaceId": f"cs-{i}"} for i in range(1001)]})
    assert call("http-v2-refresh", body=items)["statusCode"] == 400
    assert aws.sqs.receive_message(QueueUrl=aws.queue_url).get("Messages", []) == []


def test_s3_down_still_answers_from_cams(
    stack: tuple[CamsEmulator, AwsStandIn], monkeypatch: pytest.MonkeyPatch
) -> None:
    cams, _ = stack
    monkeypatch.setenv("CACHE_BUCKET", "no-such-bucket-here")
    first, second = call("http-v2-sub"), call("http-v2-sub")
    assert first["statusCode"] == second["statusCode"] == 200
    assert header(second, "X-Cache") == "MISS"
    assert cams.count(cust_space_id=SUB) == 2


def test_s3_unreachable_still_answers_from_cams(
    stack: tuple[CamsEmulator, AwsStandIn], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", "http://127.0.0.1:9")
    response = call("http-v2-own")
    assert response["statusCode"] == 200 and header(response, "X-Cache") == "MISS"


@pytest.mark.parametrize(
    "case",
    ["own", "sub", "sub-wrong-isv", "invalid-cust-space-id", "invalid-isv-code", "refresh", "refresh-malformed"],
)
def test_rest_v1_and_http_v2_events_are_answered_alike(stack: tuple[CamsEmulator, AwsStandIn], case: str) -> None:
    v2, v1 = call(f"http-v2-{case}"), call(f"rest-v1-{case}")
    assert v1["statusCode"] == v2["statusCode"]
    strip = lambda r: {k: v for k, v in body(r).items() if k != "RequestId"}
    assert strip(v1) == strip(v2)
    for name in ("Content-Type", "Retry-After"):
        assert header(v1, name) == header(v2, name)
    # the v1 request comes second, so a read the v2 request cached is a HIT for it
    assert (header(v2, "X-Cache"), header(v1, "X-Cache")) in ((None, None), ("MISS", "HIT"))


def test_bulk_refresh_enqueues_exactly_the_items(stack: tuple[CamsEmulator, AwsStandIn]) -> None:
    cams, aws = stack
    items = [{"CustSpaceId": f"cs-bulk-{i}", "IsvCode": f"isv-cs-bulk-{i}"} for i in range(23)] + [{}]
    response = call("http-v2-refresh", body=json.dumps({"Items": items}))
    assert response["statusCode"] == 202 and body(response) == {"Queued": 24}
    received = []
    while batch := aws.sqs.receive_message(QueueUrl=aws.queue_url, MaxNumberOfMessages=10).get("Messages", []):
        received += [json.loads(m["Body"]) for m in batch]
        aws.sqs.delete_message_batch(
            QueueUrl=aws.queue_url,
            Entries=[{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(batch)],
        )
    assert sorted(map(json.dumps, received)) == sorted(map(json.dumps, items))
    assert cams.calls == []  # queuing spends no CAMS call
