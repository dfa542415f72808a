"""The HTTP function end to end on both platforms, through the same tests: API Gateway events in with moto's S3,
SQS and DynamoDB (AWS), or Function Compute HTTP events in with the OSS stand-in (FC); the real SDKs to the
emulator and the stand-ins over HTTP."""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass
from typing import Any

import pytest
from http_api import app

from tests.support import AwsStandIn, FakeLambdaContext, OssCache, SmqQueues, load_event
from waba_local.dev.fc_local import LocalFcContext
from waba_local.stand_ins.emulator import CamsEmulator
from waba_lookup import queue as refresh_queue
from waba_lookup.customer import Customer
from waba_lookup.lookup import get_lookup
from waba_lookup.queue.sqs import SqsBatches
from waba_lookup.settings import get_settings

SUB = "cs-acme-001"
ISV = "isv-cs-acme-001"


@dataclass
class Stack:
    """One platform's HTTP function with its stand-ins. `call(case)` sends the platform's event for that case
    (events/http-v2-<case>.json on AWS, events/fc-http-<case>.json on FC) through the platform's entry point."""

    platform: str
    cams: CamsEmulator
    cache: AwsStandIn | OssCache
    aws: AwsStandIn | None  # SQS and the DynamoDB budget (AWS)
    smq: SmqQueues | None = None  # the refresh queue (FC); its budget is in the Tablestore stand-in

    def queued(self) -> list[Any]:
        """The bodies of the messages in the refresh queue, parsed (SQS's are received and deleted)."""
        if self.smq is not None:
            return [json.loads(body) for body in self.smq.bodies()]
        assert self.aws is not None
        received, sqs, url = [], self.aws.sqs, self.aws.queue_url
        while batch := sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages", []):
            received += [json.loads(m["Body"]) for m in batch]
            entries = [{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(batch)]
            sqs.delete_message_batch(QueueUrl=url, Entries=entries)
        return received

    def call(self, case: str, **overrides: Any) -> dict[str, Any]:
        response: dict[str, Any]
        if self.platform == "aws":
            response = app.lambda_handler(load_event(f"http-v2-{case}", **overrides), FakeLambdaContext())
        else:
            event = json.dumps(load_event(f"fc-http-{case}", **overrides)).encode()
            response = app.handler(event, LocalFcContext())
        return response

    def break_cache(self, monkeypatch: pytest.MonkeyPatch, how: str) -> None:
        """The cache bucket missing, or its store unreachable (nothing listening)."""
        if how == "missing":
            monkeypatch.setenv("CACHE_BUCKET", "no-such-bucket-here")
        else:
            monkeypatch.setenv(
                "AWS_ENDPOINT_URL_S3" if self.platform == "aws" else "OSS_ENDPOINT", "http://127.0.0.1:9"
            )


@pytest.fixture(params=["aws", "fc"])
def stack(request: pytest.FixtureRequest, cams_env: CamsEmulator) -> Stack:
    if request.param == "aws":
        aws: AwsStandIn = request.getfixturevalue("aws")
        return Stack("aws", cams_env, aws, aws)
    oss = request.getfixturevalue("oss")  # before the budget: the FC fixtures' environment, then Tablestore's
    request.getfixturevalue("tablestore")
    return Stack("fc", cams_env, oss, None, request.getfixturevalue("smq"))


@pytest.fixture
def aws_stack(cams_env: CamsEmulator, aws: AwsStandIn) -> Stack:
    """AWS only: the REST API's events."""
    return Stack("aws", cams_env, aws, aws)


def call(name: str, context: FakeLambdaContext | None = None, **overrides: Any) -> dict[str, Any]:
    response: dict[str, Any] = app.lambda_handler(load_event(name, **overrides), context or FakeLambdaContext())
    return response


def body(response: dict[str, Any]) -> Any:
    return json.loads(response["body"])


def header(response: dict[str, Any], name: str) -> str | None:
    headers = {k.lower(): v for k, v in (response.get("headers") or {}).items()}
    multi = {k.lower(): v[-1] for k, v in (response.get("multiValueHeaders") or {}).items()}
    return headers.get(name.lower()) or multi.get(name.lower())


def test_miss_then_hit_spends_one_cams_call(stack: Stack) -> None:
    cams, cache = stack.cams, stack.cache
    first, second = stack.call("sub"), stack.call("sub")
    assert first["statusCode"] == second["statusCode"] == 200
    assert (header(first, "X-Cache"), header(second, "X-Cache")) == ("MISS", "HIT")
    assert header(first, "Content-Type") == "application/json"
    assert body(first) == body(second) and body(first)["Data"]["Id"]
    assert "ThroughputTier" in body(second)["Data"]  # unknown CAMS fields survive the cache
    assert cams.count(cust_space_id=SUB) == 1
    assert len(cache.cache_objects()) == 1


def test_age_counts_seconds_since_fetched(stack: Stack, monkeypatch: pytest.MonkeyPatch) -> None:
    assert header(stack.call("own"), "Age") == "0"
    later(42, monkeypatch)
    hit = stack.call("own")
    assert header(hit, "X-Cache") == "HIT" and header(hit, "Age") in ("42", "43")


def later(seconds: float, monkeypatch: pytest.MonkeyPatch) -> None:
    """The instance's wall clock `seconds` ahead: cache entries it reads are that much older."""
    lookup = get_lookup()
    monkeypatch.setattr(lookup, "_wall", lambda: time.time() + seconds)
    assert lookup.cache is not None
    monkeypatch.setattr(lookup.cache, "wall", lookup._wall)


@pytest.mark.parametrize("case", ["sub-refresh", "sub-no-cache"])
def test_refresh_and_no_cache_skip_a_fresh_entry_past_the_min_interval(
    stack: Stack, case: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    stack.call("sub")
    later(61, monkeypatch)  # fresh (TTL 300 s), but older than REFRESH_MIN_INTERVAL_SECONDS (60 s)
    forced = stack.call(case)
    assert header(forced, "X-Cache") == "MISS"
    assert stack.cams.count(cust_space_id=SUB) == 2


@pytest.mark.parametrize("case", ["sub-refresh", "sub-no-cache"])
def test_forced_reads_in_a_loop_spend_one_cams_call(stack: Stack, case: str) -> None:
    # Given an entry fetched moments ago, When a caller forces four reads in a row
    answers = [stack.call(case) for _ in range(4)]
    # Then the first fetched it, the rest were served from it: CAMS was called once
    assert [a["statusCode"] for a in answers] == [200] * 4
    assert [header(a, "X-Cache") for a in answers] == ["MISS", "HIT", "HIT", "HIT"]
    assert stack.cams.count(cust_space_id=SUB) == 1


@pytest.mark.parametrize(
    ("cache_control", "forced"),
    [
        ("no-cache", True),
        ("No-Cache", True),
        ("max-age=0, no-cache", True),
        ('no-cache="Set-Cookie"', True),
        ("no-store", False),
        ("x-no-cache-hint", False),
        ('private="no-cache"', False),
        ("max-age=0", False),
    ],
)
def test_cache_control_is_read_as_directives(
    stack: Stack, monkeypatch: pytest.MonkeyPatch, cache_control: str, forced: bool
) -> None:
    stack.call("sub")
    later(61, monkeypatch)
    event = load_event(f"{'http-v2' if stack.platform == 'aws' else 'fc-http'}-sub")
    headers = {k: v for k, v in event["headers"].items() if k.lower() != "cache-control"}
    name = "cache-control" if stack.platform == "aws" else "Cache-Control"  # as each platform spells it
    answer = stack.call("sub", headers=headers | {name: cache_control})
    assert header(answer, "X-Cache") == ("MISS" if forced else "HIT")
    assert stack.cams.count(cust_space_id=SUB) == (2 if forced else 1)


def test_no_cache_in_a_rest_api_event_skips_a_fresh_entry(aws_stack: Stack, monkeypatch: pytest.MonkeyPatch) -> None:
    aws_stack.call("sub")
    later(61, monkeypatch)
    assert header(call("rest-v1-sub-no-cache"), "X-Cache") == "MISS"
    assert header(call("rest-v1-sub-no-cache"), "X-Cache") == "HIT"  # fetched moments ago now
    assert aws_stack.cams.count(cust_space_id=SUB) == 2


@pytest.mark.parametrize("case", ["sub-wrong-isv", "sub-no-isv"])
def test_a_wrong_or_missing_isv_code_never_gets_the_cached_entry(stack: Stack, case: str) -> None:
    cams, cache = stack.cams, stack.cache
    cached = stack.call("sub")
    denied = stack.call(case)
    assert denied["statusCode"] == 403
    assert body(denied)["Code"] == "Ram.PermissionDeny"
    assert body(cached)["Data"]["Id"] not in denied["body"]
    assert cams.count(cust_space_id=SUB) == 2  # CAMS was asked, not the other IsvCode's entry
    keys = " ".join(cache.cache_objects())
    assert ISV not in keys and ISV not in json.dumps(list(cache.cache_objects().values()))


@pytest.mark.parametrize("code", ["Ram.PermissionDeny", "Product.Unsubscript", "Unknown.ResourceOwnerId"])
def test_permanent_cams_codes_are_403_and_cached_briefly(stack: Stack, code: str) -> None:
    cams, cache = stack.cams, stack.cache
    cams.set_behaviour(SUB, f"error:{code}")
    first, second = stack.call("sub"), stack.call("sub")
    assert first["statusCode"] == second["statusCode"] == 403
    assert body(first)["Code"] == body(second)["Code"] == code
    assert set(body(first)) == {"Code", "Message", "RequestId"}
    assert cams.count(cust_space_id=SUB) == 1
    [entry] = cache.cache_objects().values()
    assert entry["Result"] == "DENIED" and entry["Error"]["Code"] == code


@pytest.mark.parametrize(("behaviour", "status"), [("5xx", 502), ("garbage", 502), ("slow:1.5", 504)])
def test_upstream_failures_without_a_cached_entry(stack: Stack, behaviour: str, status: int) -> None:
    cams = stack.cams
    cams.set_behaviour(SUB, behaviour)
    response = stack.call("sub")
    assert response["statusCode"] == status
    assert set(body(response)) == {"Code", "Message", "RequestId"} and body(response)["RequestId"]
    assert "Traceback" not in response["body"]


@pytest.mark.parametrize("behaviour", ["5xx", "slow:1.5", "error:System.LimitControl", "garbage"])
def test_a_stale_entry_is_served_when_cams_fails(stack: Stack, monkeypatch: pytest.MonkeyPatch, behaviour: str) -> None:
    cams = stack.cams
    monkeypatch.setenv("CACHE_TTL_SECONDS", "0")  # every entry is past fresh at once, well within stale
    fresh = stack.call("sub")
    cams.set_behaviour(SUB, behaviour)
    stale = stack.call("sub")
    assert stale["statusCode"] == 200 and header(stale, "X-Cache") == "STALE"
    assert body(stale) == body(fresh)


def test_an_entry_past_the_stale_window_is_not_served(stack: Stack, monkeypatch: pytest.MonkeyPatch) -> None:
    cams = stack.cams
    monkeypatch.setenv("CACHE_TTL_SECONDS", "0")
    monkeypatch.setenv("CACHE_STALE_SECONDS", "0")
    stack.call("sub")
    cams.set_behaviour(SUB, "5xx")
    assert stack.call("sub")["statusCode"] == 502


def new_instance_without_the_budget_store(monkeypatch: pytest.MonkeyPatch) -> None:
    """The next request runs in a fresh instance whose budget table cannot be reached."""
    monkeypatch.setenv("CAMS_BUDGET_TABLE", "no_such_budget_table")  # a valid name on DynamoDB and Tablestore
    get_settings.cache_clear()
    get_lookup.cache_clear()


def test_the_budget_store_down_with_nothing_cached_is_503_and_spends_nothing(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    cams = stack.cams
    new_instance_without_the_budget_store(monkeypatch)
    response = stack.call("sub")
    assert response["statusCode"] == 503 and body(response)["Code"] == "BudgetUnavailable"
    assert int(header(response, "Retry-After") or 0) >= 1
    assert cams.calls == []


def test_the_budget_store_down_serves_a_stale_entry_and_fresh_hits_never_ask_it(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    cams = stack.cams
    stack.call("sub")
    new_instance_without_the_budget_store(monkeypatch)
    hit = stack.call("sub")
    assert header(hit, "X-Cache") == "HIT" and get_lookup().budget.stats.store_requests == 0
    later(61, monkeypatch)  # past REFRESH_MIN_INTERVAL_SECONDS: a forced read asks CAMS, through the budget
    stale = stack.call("sub-refresh")
    assert stale["statusCode"] == 200 and header(stale, "X-Cache") == "STALE"
    assert cams.count(cust_space_id=SUB) == 1


def test_throttled_with_nothing_cached_is_429_with_retry_after(stack: Stack) -> None:
    cams = stack.cams
    cams.set_behaviour(SUB, "error:System.LimitControl")
    response = stack.call("sub")
    assert response["statusCode"] == 429
    assert body(response)["Code"] == "System.LimitControl"
    assert int(header(response, "Retry-After") or 0) >= 1


def test_no_permit_within_the_wait_bound_is_429(stack: Stack, monkeypatch: pytest.MonkeyPatch) -> None:
    cams = stack.cams
    monkeypatch.setenv("CAMS_QPS_BUDGET", "1")
    monkeypatch.setenv("CAMS_INTERACTIVE_RESERVE", "0")
    monkeypatch.setenv("HTTP_PERMIT_WAIT_SECONDS", "0")
    assert stack.call("own")["statusCode"] == 200
    # the one slot is held until a second after that answer; this read may not wait at all
    response = stack.call("sub")
    assert response["statusCode"] == 429 and body(response)["Code"] == "Throttling.Pacing"
    assert header(response, "Retry-After") is not None
    assert len(cams.calls) == 1


@pytest.mark.parametrize(
    "case",
    ["invalid-cust-space-id", "invalid-isv-code", "refresh-malformed", "refresh-empty", "refresh-not-json"],
)
def test_invalid_input_is_400_and_spends_nothing(stack: Stack, case: str) -> None:
    response = stack.call(case)
    assert response["statusCode"] == 400
    assert set(body(response)) == {"Code", "Message", "RequestId"}
    assert stack.cams.calls == []
    assert stack.cache.cache_objects() == {}
    assert get_lookup.cache_info().currsize == 0  # no client was made, for the cache or anything else
    assert_nothing_queued(stack)


def test_a_refresh_body_over_1000_items_is_400(stack: Stack) -> None:
    items = json.dumps({"Items": [{"CustSpaceId": f"cs-{i}"} for i in range(1001)]})
    assert stack.call("refresh", body=items)["statusCode"] == 400
    assert_nothing_queued(stack)


def assert_nothing_queued(stack: Stack) -> None:
    assert stack.queued() == []


@pytest.mark.parametrize("how", ["missing", "unreachable"])
def test_the_cache_store_failing_still_answers_from_cams(
    stack: Stack, monkeypatch: pytest.MonkeyPatch, how: str, caplog: pytest.LogCaptureFixture
) -> None:
    stack.break_cache(monkeypatch, how)
    first, second = stack.call("sub"), stack.call("sub")
    assert first["statusCode"] == second["statusCode"] == 200
    assert header(second, "X-Cache") == "MISS"
    assert stack.cams.count(cust_space_id=SUB) == 2
    assert "cache read failed" in caplog.text and "cache write failed" in caplog.text


@pytest.mark.parametrize(
    "case",
    ["own", "sub", "sub-wrong-isv", "invalid-cust-space-id", "invalid-isv-code", "refresh", "refresh-malformed"],
)
def test_rest_v1_and_http_v2_events_are_answered_alike(aws_stack: Stack, case: str) -> None:
    v2, v1 = call(f"http-v2-{case}"), call(f"rest-v1-{case}")
    assert v1["statusCode"] == v2["statusCode"]
    strip = lambda r: {k: v for k, v in body(r).items() if k != "RequestId"}
    assert strip(v1) == strip(v2)
    for name in ("Content-Type", "Retry-After"):
        assert header(v1, name) == header(v2, name)
    # the v1 request comes second, so a read the v2 request cached is a HIT for it
    assert (header(v2, "X-Cache"), header(v1, "X-Cache")) in ((None, None), ("MISS", "HIT"))


def test_bulk_refresh_enqueues_exactly_the_items(stack: Stack) -> None:
    items = [{"CustSpaceId": f"cs-bulk-{i}", "IsvCode": f"isv-cs-bulk-{i}"} for i in range(23)] + [{}]
    response = stack.call("refresh", body=json.dumps({"Items": items}))
    assert response["statusCode"] == 202 and body(response) == {"Queued": 24}
    assert sorted(map(json.dumps, stack.queued())) == sorted(map(json.dumps, items))
    assert stack.cams.calls == []  # queuing spends no CAMS call


def test_at_the_deployed_share_a_failing_cams_is_502_with_its_request_id_not_429(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given static shares as deployed without a budget table: 5 HTTP instances sharing 5 calls/s, 1 each
    monkeypatch.delenv("CAMS_BUDGET_TABLE")
    monkeypatch.setenv("CAMS_QPS_BUDGET", "5")
    monkeypatch.setenv("CAMS_MAX_INSTANCES", "5")
    stack.cams.set_behaviour(SUB, "5xx")
    # When a read's retries cannot all get a slot in time
    response = stack.call("sub")
    # Then the caller sees CAMS's failure, with CAMS's request id, not the pacing that stopped the retry
    assert (response["statusCode"], body(response)["Code"]) == (502, "ServiceUnavailable")
    assert re.fullmatch(r"[0-9A-F]{8}(-[0-9A-F]{4}){3}-[0-9A-F]{12}", body(response)["RequestId"])  # CAMS's, not ours


def test_an_undocumented_4xx_from_cams_is_not_retried(stack: Stack) -> None:
    stack.cams.set_behaviour(SUB, "error:InvalidVersion")  # a 400 outside QueryChatappBindWaba's documented four
    response = stack.call("sub")
    assert (response["statusCode"], body(response)["Code"]) == (502, "InvalidVersion")
    assert stack.cams.count(cust_space_id=SUB) == 1  # the same request cannot do better a second time


def test_a_partial_enqueue_says_which_items_to_send_again_and_a_retry_of_those_duplicates_nothing(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a queue that refuses one batch call: SQS unreachable for it, or SMQ failing it
    items = [{"CustSpaceId": f"cs-part-{i:02d}", "IsvCode": f"isv-cs-part-{i:02d}"} for i in range(40)]
    monkeypatch.setattr(refresh_queue, "SEND_ATTEMPTS", 1)
    if stack.smq is not None:
        stack.smq.stand_in.fail(times=1, status=503, code="ServiceUnavailable", operation="BatchSendMessage")
    else:
        real = SqsBatches.send_batch
        failed = []

        def once_unreachable(self: SqsBatches, bodies: list[str], delays: list[int] | None = None) -> list[int]:
            if not failed:
                failed.append(True)
                raise refresh_queue.QueueSendFailed("EndpointConnectionError")
            return real(self, bodies, delays)

        monkeypatch.setattr(SqsBatches, "send_batch", once_unreachable)
    # When the bulk refresh is sent
    response = stack.call("refresh", body=json.dumps({"Items": items}))
    # Then it says how many were queued and which positions were not, so a retry sends only those
    assert response["statusCode"] == 202
    answer = body(response)
    assert answer["Queued"] + len(answer["NotQueued"]) == 40 and 0 < len(answer["NotQueued"]) < 40
    retry = stack.call("refresh", body=json.dumps({"Items": [items[i] for i in answer["NotQueued"]]}))
    assert retry["statusCode"] == 202 and body(retry) == {"Queued": len(answer["NotQueued"])}
    queued = [json.dumps(m, sort_keys=True) for m in stack.queued()]
    assert sorted(queued) == sorted(json.dumps(i, sort_keys=True) for i in items)  # each exactly once


def test_a_denied_refresh_keeps_the_last_good_body_for_stale_serving(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a good entry, then an account-wide denial that a background refresh records
    good = stack.call("sub")
    monkeypatch.setenv("REFRESH_MIN_INTERVAL_SECONDS", "0")
    get_settings.cache_clear()
    get_lookup.cache_clear()
    stack.cams.set_behaviour("*", "error:Ram.PermissionDeny")
    customer = Customer(SUB, ISV)
    assert get_lookup().refresh(customer, time.monotonic() + 10) == "denied"
    [entry] = stack.cache.cache_objects().values()
    assert entry["Result"] == "DENIED" and entry["LastGood"]["Body"] == body(good)
    # While the denial is fresh, reads answer it: the last good body is not served
    assert body(stack.call("sub"))["Code"] == "Ram.PermissionDeny"
    # When the denial is fixed but CAMS throttles, past the denial's freshness the last good body is served stale
    stack.cams.set_behaviour("*", "error:System.LimitControl")
    later(61, monkeypatch)
    stale = stack.call("sub")
    assert (stale["statusCode"], header(stale, "X-Cache")) == (200, "STALE") and body(stale) == body(good)
    # A denial again is answered, and still keeps the last good body beside it
    stack.cams.set_behaviour("*", "error:Product.Unsubscript")
    assert stack.call("sub")["statusCode"] == 403
    [entry] = stack.cache.cache_objects().values()
    assert entry["Error"]["Code"] == "Product.Unsubscript" and entry["LastGood"]["Body"] == body(good)
    # And once CAMS answers well again, the entry is good and carries no LastGood
    stack.cams.clear_behaviours()
    later(122, monkeypatch)
    assert header(stack.call("sub"), "X-Cache") == "MISS"
    [entry] = stack.cache.cache_objects().values()
    assert entry["Result"] == "OK" and entry.get("LastGood") is None


def test_a_budget_store_client_that_cannot_be_built_fails_closed(stack: Stack, monkeypatch: pytest.MonkeyPatch) -> None:
    # Given an instance whose budget store's SDK cannot be loaded (a layer built without it)
    import sys

    monkeypatch.setitem(sys.modules, "tablestore" if stack.platform == "fc" else "botocore.config", None)
    # When a read must call CAMS
    response = stack.call("sub")
    # Then it is the budget store's failure, 503 with nothing spent, not an unexpected 500
    assert (response["statusCode"], body(response)["Code"]) == (503, "BudgetUnavailable")
    assert stack.cams.calls == []


def test_a_denied_sub_customer_read_without_an_isv_code_says_the_header_was_missing(stack: Stack) -> None:
    denied, with_code = stack.call("sub-no-isv"), stack.call("sub-wrong-isv")
    assert denied["statusCode"] == with_code["statusCode"] == 403
    assert "X-Isv-Code" in body(denied)["Message"] and "X-Isv-Code" not in body(with_code)["Message"]


def test_the_cams_client_is_ready_before_a_permit_starts(stack: Stack, monkeypatch: pytest.MonkeyPatch) -> None:
    # Given a new instance, its CAMS client not built yet (the SDK not loaded, the credentials not read)
    lookup = get_lookup()
    budget, cams = lookup.budget, lookup._cams()
    ready_at_permit: list[bool] = []
    real_permit = budget.permit

    def permit(send_by: float, interactive: bool) -> Any:
        ready_at_permit.append(cams._sdk is not None)
        return real_permit(send_by, interactive)

    monkeypatch.setattr(budget, "permit", permit)
    # When a read calls CAMS
    assert stack.call("sub")["statusCode"] == 200
    # Then the client was built before its permit was asked for: a permit's second is spent on the call alone
    assert ready_at_permit == [True]


def test_each_answer_and_cams_call_logs_the_fields_the_dashboards_read(
    stack: Stack, caplog: pytest.LogCaptureFixture
) -> None:
    """s.yaml's SLS dashboard counts `CAMS call` lines and their `permit_wait_ms`, and answers by `cache`."""
    caplog.set_level("INFO")
    stack.call("sub")
    stack.call("sub")
    calls = [r for r in caplog.records if r.getMessage() == "CAMS call"]
    assert len(calls) == 1 and isinstance(calls[0].permit_wait_ms, int) and calls[0].interactive is True
    answers = [r.cache for r in caplog.records if r.getMessage() == "answered" and r.status == 200]
    assert answers == ["MISS", "HIT"]
