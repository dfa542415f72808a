"""`make demo`: the whole job against the local stand-ins, on both platforms. No cloud account, nothing to set.

1. the CAMS client: the official SDK, signed requests, to the emulator;
2. AWS: HTTP reads through the API function (API Gateway events, S3): MISS, HIT, STALE, and errors;
3. AWS: a bulk refresh: POST /waba/refresh, then the queue worker drains SQS the way Lambda's poller would;
4. Function Compute: the same reads through the same function's FC entry point (FC HTTP trigger events, OSS,
   the function role's STS credentials);
5. Function Compute: a bulk refresh through SMQ, drained by the FC worker the way the EventBridge trigger would.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
import warnings
from collections.abc import Callable
from typing import Any

from waba_local.dev.apigw import http_event, load_handler
from waba_local.dev.console import Tally, heading, table
from waba_local.dev.demo_fc import answered_after_a_retry, bulk_fc_part
from waba_local.dev.fc_local import fc_invocation
from waba_local.dev.poller import WORKER_BATCH, LocalLambdaContext, LocalPoller, PollStats
from waba_local.stand_ins import launch as stand_ins
from waba_local.stand_ins.emulator import SEEDED_CUSTOMERS, CamsEmulator
from waba_local.stand_ins.emulator_state import busiest_window

SUB, (SUB_ISV, _) = next((k, v) for k, v in SEEDED_CUSTOMERS.items() if k is not None)
BULK = 36
# a forced refresh of an entry younger than this is a HIT: 60 s deployed, 2 s here so the demo shows both sides
REFRESH_MIN_INTERVAL = 2
PAST_INTERVAL = f"CAMS failing (503), forced {REFRESH_MIN_INTERVAL} s later"


QUIET = {"POWERTOOLS_LOG_LEVEL": "CRITICAL", "POWERTOOLS_METRICS_DISABLED": "true"}


def quiet() -> None:
    """Only the demo's own tables on the screen: the functions' JSON log lines, Powertools' warning that an
    invocation had no metrics to flush (metrics are off here), and the Tablestore SDK's import-time notices would
    cut through them. Powertools reads POWERTOOLS_LOG_LEVEL when the logger is made, so the variable is set first,
    and the logger is then made, or set if another program had made it already."""
    os.environ.update(QUIET)
    warnings.filterwarnings("ignore", message="No application metrics to publish", category=UserWarning)
    logging.getLogger("tablestore").setLevel(logging.ERROR)  # "Native C++ encoder not available…"
    from waba_lookup.observability import logger

    logger.setLevel(QUIET["POWERTOOLS_LOG_LEVEL"])


def main() -> None:
    sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr]  # keep tables and progress in order
    quiet()
    heading("Starting the local stand-ins")
    local = stand_ins.start(visibility_timeout=5, max_receive_count=3, with_fc=True)
    assert local.emulator is not None and local.oss is not None
    os.environ.update(local.environment())
    os.environ["CAMS_TIMEOUT_MS"] = "1500"
    os.environ["REFRESH_MIN_INTERVAL_SECONDS"] = str(REFRESH_MIN_INTERVAL)
    print(
        f"  CAMS emulator      {local.emulator.endpoint}  (checks ACS3-HMAC-SHA256 signatures, 10 calls/s flow control)"
    )
    print(
        f"  S3, SQS, DynamoDB  {local.aws_endpoint}  (moto server, one request at a time: bucket {local.bucket}, "
        f"queue + dead-letter queue, the shared budget's table {local.budget_table})"
    )
    print(f"  OSS                {local.oss.endpoint}  (checks OSS4-HMAC-SHA256 signatures and STS tokens)")
    assert local.smq is not None
    print(
        f"  SMQ                {local.smq.endpoint}  (checks MNS signatures and STS tokens: queue + dead-letter queue)"
    )
    try:
        cams_client_part(local.emulator)
        api = load_handler("http_api")
        http_part(
            local.emulator,
            "2. AWS Lambda: HTTP reads through the API function (API Gateway HTTP API events, cache: S3)",
            lambda method, path, headers: api.lambda_handler(
                http_event(method, path, headers), LocalLambdaContext(10_000)
            ),
        )
        bulk_part(local)
        become_fc_instance(local)
        http_part(
            local.emulator,
            "4. Function Compute: the same reads through `handler` (FC HTTP trigger events, cache: OSS, budget: "
            "Tablestore, all called with the function role's STS credentials)",
            lambda method, path, headers: api.handler(*fc_invocation(method, path, headers)),
        )
        bulk_fc_part(local)
    finally:
        local.stop()
    print("\nDone. `make serve` runs the same API on localhost for curl, with the queue worker draining its refreshes;")
    print("`make test` runs the tests.")


def cams_client_part(emulator: CamsEmulator) -> None:
    from waba_lookup.cams import client_from_settings
    from waba_lookup.errors import WabaLookupError
    from waba_lookup.settings import get_settings

    heading("1. The CAMS client: QueryChatappBindWaba through the official SDK")
    client = client_from_settings(get_settings())
    rows: list[list[object]] = []
    for label, space, isv in (("own account", None, None), (f"sub-customer {SUB}", SUB, SUB_ISV)):
        data = client.query(space, isv)["Data"]
        rows.append([label, data["Id"], data["Name"], data["AccountReviewStatus"], data["Currency"]])
    print(table(["who", "WABA Id", "Name", "Review", "Currency"], rows))
    try:
        client.query(SUB, "not-the-right-code")
    except WabaLookupError as error:
        print(f"\n  with a wrong IsvCode CAMS answers {error.code}: classified as {type(error).__name__} (HTTP 403)")
    print(f"  calls the emulator saw: {len(emulator.calls)}")


def http_part(emulator: CamsEmulator, title: str, invoke: Callable[[str, str, dict[str, str]], Any]) -> None:
    heading(title)
    sub_headers = {"X-Isv-Code": SUB_ISV}
    steps: list[tuple[str, str, str, dict[str, str], str | None]] = [
        ("first read", "GET", f"/waba/{SUB}", sub_headers, None),
        ("second read", "GET", f"/waba/{SUB}", sub_headers, None),
        ("forced refresh at once (no CAMS call)", "GET", f"/waba/{SUB}?refresh=true", sub_headers, None),
        (PAST_INTERVAL, "GET", f"/waba/{SUB}?refresh=true", sub_headers, "5xx"),
        ("CAMS failing, nothing cached", "GET", "/waba", {}, "5xx"),
        (
            "CAMS flow control, nothing cached",
            "GET",
            "/waba/cs-new-tenant",
            {"X-Isv-Code": "isv-cs-new-tenant"},
            "error:System.LimitControl",
        ),
        ("a wrong IsvCode", "GET", f"/waba/{SUB}", {"X-Isv-Code": "someone-elses-code"}, None),
        ("a malformed CustSpaceId", "GET", "/waba/bad$id", sub_headers, None),
    ]
    rows = []
    for label, method, path, headers, behaviour in steps:
        emulator.clear_behaviours()
        if label == PAST_INTERVAL:
            time.sleep(REFRESH_MIN_INTERVAL)
        if behaviour:
            emulator.set_behaviour("*", behaviour)
        before = len(emulator.calls)
        response = invoke(method, path, headers)
        body, out = json.loads(response["body"]), response.get("headers", {})
        what = body.get("Data", {}).get("Id") or body.get("Code")
        rows.append(
            [
                label,
                response["statusCode"],
                out.get("X-Cache", ""),
                out.get("Age", ""),
                what,
                len(emulator.calls) - before,
            ]
        )
    emulator.clear_behaviours()
    print(table(["request", "status", "X-Cache", "Age", "WABA Id / Code", "CAMS calls"], rows))


def bulk_part(local: stand_ins.StandIns) -> None:
    heading(f"3. AWS: bulk refresh: POST /waba/refresh with {BULK + 3} items, drained by the queue worker")
    assert local.emulator is not None
    from waba_lookup.lookup import get_lookup

    api, worker = load_handler("http_api"), load_handler("queue_worker")
    # in AWS the worker is another function: a fresh instance, its CAMS permits from the same shared budget
    # (the DynamoDB table) as the HTTP function's
    get_lookup.cache_clear()
    items: list[dict[str, Any]] = [
        {"CustSpaceId": f"cs-tenant-{i:03d}", "IsvCode": f"isv-cs-tenant-{i:03d}"} for i in range(BULK)
    ]
    items += [
        {"CustSpaceId": "cs-unsubscribed", "IsvCode": "isv-cs-unsubscribed"},
        {"CustSpaceId": "cs-flaky", "IsvCode": "isv-cs-flaky"},
        {},
    ]
    local.forget_flow_control()
    print("  (part 2's flow control taken out of the budget's record, as a minute later: the whole 10 calls/s)")
    local.emulator.set_behaviour("cs-unsubscribed", "error:Product.Unsubscript")
    local.emulator.set_behaviour("cs-flaky", "5xx", times=3)
    clear_cache(local)
    calls_before, started = len(local.emulator.calls), time.monotonic()
    response = api.lambda_handler(
        http_event("POST", "/waba/refresh", {"Content-Type": "application/json"}, json.dumps({"Items": items})),
        LocalLambdaContext(10_000),
    )
    print(f"  POST /waba/refresh -> {response['statusCode']} {response['body']}")
    sqs = local.client("sqs")
    for poison in ("not json", json.dumps({"CustSpaceId": 42})):
        sqs.send_message(QueueUrl=local.queue_url, MessageBody=poison)
    print("  + 2 unprocessable messages sent straight to the queue (they must end in the dead-letter queue)")
    tally = Tally(len(items) + 2, started, lambda: (cached_count(local), dead_letter_count(local)))
    stats = LocalPoller(sqs, local.queue_url, worker.lambda_handler, timeout_ms=60_000, batch_size=WORKER_BATCH).drain(
        until_empty_for=6, on_batch=lambda stats: tally.update(f"{stats.received} received, {stats.failed} returned")
    )
    drained = time.monotonic() - started
    tally.end()
    calls = local.emulator.calls[calls_before:]
    summarise(
        local, stats, tally.to_last_answer(c.answered_at for c in calls), drained, calls, get_lookup().budget.stats
    )


def cached_count(local: stand_ins.StandIns) -> int:
    listed = local.client("s3").list_objects_v2(Bucket=local.bucket)
    return int(listed.get("KeyCount", 0))


def dead_letter_count(local: stand_ins.StandIns) -> int:
    attributes = local.client("sqs").get_queue_attributes(
        QueueUrl=local.dlq_url, AttributeNames=["ApproximateNumberOfMessages"]
    )
    return int(attributes["Attributes"]["ApproximateNumberOfMessages"])


def become_fc_instance(local: stand_ins.StandIns) -> None:
    """From here on the process is an FC instance: FC's variables instead of AWS's, and a fresh lookup."""
    from waba_lookup.compose import get_refresh_queue
    from waba_lookup.lookup import get_lookup
    from waba_lookup.settings import get_settings

    for name in local.environment():
        os.environ.pop(name, None)
    os.environ.update(local.fc_environment())
    for instance_cache in (get_settings, get_lookup, get_refresh_queue):
        instance_cache.cache_clear()


def clear_cache(local: stand_ins.StandIns) -> None:
    """Start the bulk part from an empty cache, so its summary counts only its own entries."""
    s3 = local.client("s3")
    for listed in s3.get_paginator("list_objects_v2").paginate(Bucket=local.bucket):
        for item in listed.get("Contents", []):
            s3.delete_object(Bucket=local.bucket, Key=item["Key"])


def summarise(
    local: stand_ins.StandIns, stats: PollStats, answered: float, drained: float, calls: list[Any], budget: Any
) -> None:
    s3 = local.client("s3")
    results: dict[str, int] = {}
    for listed in s3.get_paginator("list_objects_v2").paginate(Bucket=local.bucket):
        for item in listed.get("Contents", []):
            entry = json.loads(s3.get_object(Bucket=local.bucket, Key=item["Key"])["Body"].read())
            results[entry["Result"]] = results.get(entry["Result"], 0) + 1
    busiest = busiest_window([c.arrived_at for c in calls], 1.0)
    rows = [
        ["cache entries with a WABA", results.get("OK", 0)],
        ["cache entries with a 403-class answer", results.get("DENIED", 0)],
        ["messages in the dead-letter queue", dead_letter_count(local)],
        ["worker invocations / records returned for retry", f"{stats.invocations} / {stats.failed}"],
        ["CAMS calls", len(calls)],
        ["CAMS calls rejected by flow control", sum(1 for c in calls if c.code == "System.LimitControl")],
        ["most CAMS calls in any sliding second", f"{busiest} (limit 10)"],
        ["shared budget: DynamoDB requests per CAMS call", f"{budget.store_requests / max(1, budget.permits):.1f}"],
        ["time to the last answer", f"{answered:.1f} s (the POST to the last CAMS answer or cache write)"],
    ]
    print(table(["bulk refresh summary", "value"], rows))
    if answered_after_a_retry(calls):
        print("  The last answer was a second attempt: its record, returned by the worker, waited out the queue's 5 s")
        print("  visibility timeout before it was received again.")
    print(f"  The poller stopped at {drained:.1f} s: it went on receiving the unprocessable messages until the")
    print("  dead-letter queue took them (after 3 receives, 5 s apart), then waited for 6 s of an empty queue.")


if __name__ == "__main__":
    main()
