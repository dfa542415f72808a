"""The queue worker end to end: SQS events in, the real SDK to the emulator, moto's S3 and SQS."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
from queue_worker import app

from tests.support import AwsStandIn, FakeLambdaContext, load_event
from waba_local.dev.poller import LocalPoller
from waba_local.stand_ins.emulator import CamsEmulator
from waba_lookup.compose import budget_for
from waba_lookup.customer import Customer
from waba_lookup.errors import ConfigurationError
from waba_lookup.lookup import WabaLookup, get_lookup

Stack = tuple[CamsEmulator, AwsStandIn]


@pytest.fixture
def stack(cams_env: CamsEmulator, aws: AwsStandIn) -> Stack:
    return cams_env, aws


def failures(response: dict[str, Any]) -> set[str]:
    return {f["itemIdentifier"] for f in response["batchItemFailures"]}


def record_ids(event: dict[str, Any], *positions: int) -> set[str]:
    return {event["Records"][p - 1]["messageId"] for p in positions}


def sqs_batch(prefix: str, size: int) -> dict[str, Any]:
    """An SQS event of `size` records, each a generated customer cs-<prefix>-<i> with its ISV code."""
    template = load_event("sqs-single")["Records"][0]
    bodies = [json.dumps({"CustSpaceId": f"cs-{prefix}-{i}", "IsvCode": f"isv-cs-{prefix}-{i}"}) for i in range(size)]
    return {"Records": [dict(template, messageId=f"m-{i}", body=b) for i, b in enumerate(bodies)]}


def results(aws: AwsStandIn) -> dict[str | None, str]:
    return {e["CustSpaceId"]: e["Result"] for e in aws.cache_objects().values()}


def test_a_mixed_batch_fails_exactly_the_transient_and_unprocessable_records(stack: Stack) -> None:
    cams, aws = stack
    cams.set_behaviour("cs-denied-003", "error:Ram.PermissionDeny")
    cams.set_behaviour("cs-flaky-004", "5xx")
    event = load_event("sqs-mixed-batch")
    response = app.lambda_handler(event, FakeLambdaContext())
    assert failures(response) == record_ids(event, 4, 5, 6)
    assert results(aws) == {"cs-acme-001": "OK", None: "OK", "cs-denied-003": "DENIED"}
    assert cams.count(cust_space_id="cs-denied-003") == 1  # permanent: no retry
    assert cams.count(cust_space_id="cs-flaky-004") == 3  # transient: retried within the record, then returned


def test_a_duplicate_delivery_spends_no_cams_call(stack: Stack) -> None:
    cams, _ = stack
    response = app.lambda_handler(load_event("sqs-duplicate"), FakeLambdaContext())
    assert response["batchItemFailures"] == []
    assert cams.count(cust_space_id="cs-acme-001") == 1


def test_a_throttled_message_is_returned_and_succeeds_on_redelivery(stack: Stack) -> None:
    cams, aws = stack
    cams.set_behaviour("cs-acme-001", "error:System.LimitControl", times=3)
    event = load_event("sqs-single")
    assert failures(app.lambda_handler(event, FakeLambdaContext())) == record_ids(event, 1)
    assert aws.cache_objects() == {}
    assert app.lambda_handler(event, FakeLambdaContext())["batchItemFailures"] == []
    assert results(aws) == {"cs-acme-001": "OK"}


def short_of_time(stack: Stack, prefix: str) -> tuple[dict[str, Any], dict[str, Any], float, set[str]]:
    """A batch of ten slow customers (0.3 s a call) given 14 s: room for a few calls, as each must still leave a whole
    call, its write-back (DynamoDB, 3 s), the cache write (S3, 3 s), requeuing what had no time (SQS, 3 s) and the
    final wait before the end. The event, the worker's answer, the seconds it ran, the customers it cached."""
    cams, aws = stack
    cams.set_behaviour("*", "slow:0.3")
    event = sqs_batch(prefix, 10)
    started = time.monotonic()
    response = app.lambda_handler(event, FakeLambdaContext(timeout_ms=14_000))
    elapsed = time.monotonic() - started
    return event, response, elapsed, {e["CustSpaceId"] for e in aws.cache_objects().values()}


def test_with_little_time_left_the_worker_returns_in_time_with_nothing_lost(stack: Stack) -> None:
    _, aws = stack
    _, response, elapsed, done = short_of_time(stack, "deadline")
    assert elapsed < 14.0
    requeued = aws.sqs.receive_message(QueueUrl=aws.queue_url, MaxNumberOfMessages=10).get("Messages", [])
    assert 1 <= len(done) < 10
    assert len(done) + len(requeued) + len(failures(response)) == 10


def test_an_all_failed_batch_is_answered_not_raised(stack: Stack) -> None:
    cams, _ = stack
    cams.set_behaviour("*", "5xx")
    event = load_event("sqs-duplicate")
    response = app.lambda_handler(event, FakeLambdaContext())
    assert failures(response) == record_ids(event, 1, 2)


def test_poison_messages_are_failed_without_calling_cams(stack: Stack) -> None:
    cams, _ = stack
    event = load_event("sqs-malformed")
    assert failures(app.lambda_handler(event, FakeLambdaContext())) == record_ids(event, 1)
    assert cams.calls == []


def test_every_message_ends_cached_or_dead_lettered(stack: Stack) -> None:
    cams, aws = stack
    cams.set_behaviour("cs-denied-1", "error:Product.Unsubscript")
    cams.set_behaviour("cs-flaky-1", "error:System.LimitControl", times=4)
    cams.set_behaviour("cs-flaky-2", "5xx", times=2)
    bodies = [json.dumps({"CustSpaceId": f"cs-good-{i}", "IsvCode": f"isv-cs-good-{i}"}) for i in range(12)]
    bodies += [
        json.dumps({"CustSpaceId": s, "IsvCode": f"isv-{s}"}) for s in ("cs-denied-1", "cs-flaky-1", "cs-flaky-2")
    ]
    bodies += ["{}", "not json", json.dumps({"CustSpaceId": ["x"]}), json.dumps({"Unexpected": 1})]
    for body in bodies:
        aws.sqs.send_message(QueueUrl=aws.queue_url, MessageBody=body)

    stats = LocalPoller(aws.sqs, aws.queue_url, app.lambda_handler).drain(until_empty_for=2.5, time_limit=120)

    dead = aws.sqs.receive_message(QueueUrl=aws.dlq_url, MaxNumberOfMessages=10).get("Messages", [])
    cached = aws.cache_objects()
    assert len(cached) + len(dead) == len(bodies) == 19
    assert sorted(m["Body"] for m in dead) == sorted(bodies[-3:])
    assert results(aws)["cs-flaky-1"] == results(aws)["cs-flaky-2"] == "OK"
    assert stats.failed >= 3 * 3  # each poison message was received maxReceiveCount times


def test_a_throttle_in_one_instance_slows_the_whole_deployment(stack: Stack) -> None:
    cams, aws = stack
    throttled = get_lookup()
    assert aws.budget_record().rate(time.time(), 10) == 10
    cams.set_behaviour("cs-acme-001", "error:System.LimitControl", times=1)

    assert not failures(app.lambda_handler(load_event("sqs-single"), FakeLambdaContext()))  # the retry went through

    # the cut is in the shared record: our one call was alone in CAMS's window, so halved
    record = aws.budget_record()
    assert record.level == 5 and record.rate(record.changed_at, 10) == 5
    # so another instance follows it at its next permit: permits are spaced 1/rate apart, not 1/10
    settings = throttled.settings
    other = WabaLookup(settings, lambda: throttled._cams(), lambda: budget_for(settings), throttled.cache)
    other.refresh(Customer("cs-other-1", "isv-cs-other-1"), time.monotonic() + 10)
    after = aws.budget_record()
    sent = max(slot.sent for slot in after.slots)
    assert after.next_send - sent > 1 / 8.5


def test_a_refresh_whose_cache_write_fails_goes_back_to_the_queue(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    cams, _ = stack
    monkeypatch.setenv("CACHE_BUCKET", "no-such-bucket-here")
    event = load_event("sqs-single")
    assert failures(app.lambda_handler(event, FakeLambdaContext())) == record_ids(event, 1)
    assert cams.count(cust_space_id="cs-acme-001") == 1  # fetched, but not acknowledged: it will be retried


def test_with_the_budget_store_down_the_worker_calls_nothing_and_returns_every_record(
    stack: Stack, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    cams, aws = stack
    monkeypatch.setenv("CAMS_BUDGET_TABLE", "no-such-budget-table")
    event = sqs_batch("closed", 3)
    response = app.lambda_handler(event, FakeLambdaContext())
    # fail closed: no CAMS call, nothing cached; every record sent to the queue again, to be seen later, and reported
    # done, so that no receive counts against it towards the dead-letter queue
    assert cams.calls == [] and aws.cache_objects() == {}
    assert failures(response) == set()
    assert aws.sqs.receive_message(QueueUrl=aws.queue_url, MaxNumberOfMessages=10).get("Messages", []) == []
    attributes = aws.sqs.get_queue_attributes(
        QueueUrl=aws.queue_url, AttributeNames=["ApproximateNumberOfMessagesDelayed"]
    )
    assert attributes["Attributes"]["ApproximateNumberOfMessagesDelayed"] == "3"
    # the store was asked for the first record only (with one immediate retry): the rest waited with it
    assert get_lookup().budget.stats.store_failures == 1
    assert caplog.text.count("shared CAMS budget unreachable") == 1


def test_records_never_attempted_are_requeued_without_burning_a_receive(stack: Stack) -> None:
    _, aws = stack
    event, response, _, done = short_of_time(stack, "late")
    assert 1 <= len(done) < 10
    assert failures(response) == set()  # none goes back to count a receive towards the dead-letter queue ...
    queued = aws.sqs.receive_message(QueueUrl=aws.queue_url, MaxNumberOfMessages=10).get("Messages", [])
    bodies = [r["body"] for r in event["Records"]]
    assert sorted(m["Body"] for m in queued) == sorted(b for b in bodies if json.loads(b)["CustSpaceId"] not in done)


@pytest.mark.parametrize(
    ("variable", "value"),
    [("CACHE_BUCKET", None), ("CAMS_CREDENTIALS_SECRET", "arn:aws:secretsmanager:ap-southeast-1:1:secret:nope")],
)
def test_a_configuration_error_fails_the_invocation_loudly(
    stack: Stack,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
    variable: str,
    value: str | None,
) -> None:
    cams, _ = stack
    if value is None:
        monkeypatch.delenv(variable)
    else:
        monkeypatch.setenv(variable, value)
    with pytest.raises(ConfigurationError, match=variable):
        app.lambda_handler(load_event("sqs-single"), FakeLambdaContext())
    assert [r.levelname for r in caplog.records if variable in str(r.__dict__)] == ["ERROR"]  # a log line naming it
    assert '"ConfigurationErrors"' in capsys.readouterr().out  # and a metric
    assert cams.calls == []
