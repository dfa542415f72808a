"""Where each failed item of an FC batch goes: back to the queue (with its attempt count and a growing delay), or to
the dead-letter queue, and what a message body may look like when it arrives."""

from __future__ import annotations

import base64
import json

import pytest

from waba_lookup.errors import UpstreamFailed
from waba_lookup.queue import QueueSendFailed
from waba_lookup.queue.redelivery import MAX_ATTEMPTS, RETRY_DELAYS_SECONDS, Delivery, Redelivery

ITEM = {"CustSpaceId": "cs-acme-001", "IsvCode": "isv-cs-acme-001"}


@pytest.mark.parametrize(
    "raw",
    [json.dumps(ITEM), base64.b64encode(json.dumps(ITEM).encode()).decode(), "  " + json.dumps(ITEM) + "\n"],
)
def test_plain_and_base64_bodies_read_alike(raw: str) -> None:
    assert Delivery.read(raw) == Delivery(json.dumps(ITEM), 0)


def test_the_attempt_count_is_taken_out_of_the_message() -> None:
    delivery = Delivery.read(json.dumps(ITEM | {"Attempts": 3}))
    assert (json.loads(delivery.body), delivery.attempts) == (ITEM, 3)


@pytest.mark.parametrize("raw", ["not json", "////", base64.b64encode(b"\xff\xfe{}").decode(), "[" * 100_000, "[]"])
def test_what_cannot_be_read_is_left_for_the_item_parse_to_call_poison(raw: str) -> None:
    delivery = Delivery.read(raw)
    assert delivery.attempts == 0 and isinstance(delivery.body, str)


def test_a_transient_failure_goes_back_with_one_more_attempt_and_a_growing_delay() -> None:
    plan = Redelivery()
    for attempts in range(MAX_ATTEMPTS - 1):
        plan.failed(Delivery(json.dumps(ITEM), attempts), "ServiceUnavailable")
    assert [json.loads(body)["Attempts"] for body, _ in plan.retries] == [1, 2, 3, 4]
    assert [delay for _, delay in plan.retries] == list(RETRY_DELAYS_SECONDS)
    assert plan.dead == []


def test_the_last_attempt_goes_to_the_dead_letter_queue_with_its_error() -> None:
    plan = Redelivery()
    plan.failed(Delivery(json.dumps(ITEM), MAX_ATTEMPTS - 1), "ServiceUnavailable")
    assert plan.retries == []
    [dead] = plan.dead
    assert json.loads(dead) == {
        "Message": json.dumps(ITEM),
        "Attempts": MAX_ATTEMPTS,
        "LastError": "ServiceUnavailable",
    }


def test_an_item_never_attempted_goes_back_without_counting() -> None:
    plan = Redelivery()
    plan.not_attempted(Delivery(json.dumps(ITEM), 2))
    [(body, delay)] = plan.retries
    assert json.loads(body)["Attempts"] == 2 and delay >= 1


class Queue:
    max_messages = 16

    def __init__(self, fail: bool = False, refuse: bool = False) -> None:
        self.sent: list[tuple[str, int]] = []
        self.fail, self.refuse = fail, refuse

    def send_batch(self, bodies: list[str], delays: list[int] | None = None) -> list[int]:
        if self.fail:
            raise QueueSendFailed("NetWorkException")
        self.sent += list(zip(bodies, delays or [0] * len(bodies), strict=True))
        return [0] if self.refuse else []


def test_sending_on_goes_in_batches_to_each_queue() -> None:
    plan, queue, dead_letters = Redelivery(), Queue(), Queue()
    for i in range(20):
        plan.failed(Delivery(json.dumps({"CustSpaceId": f"cs-{i}"}), 0), "ServiceUnavailable")
    plan.dead_letter(Delivery("not json"), "InvalidParameter")
    plan.send(queue, dead_letters)
    assert len(queue.sent) == 20 and len(dead_letters.sent) == 1


@pytest.mark.parametrize("queue", [Queue(fail=True), Queue(refuse=True)])
def test_an_item_that_cannot_be_sent_on_fails_the_invocation(queue: Queue) -> None:
    plan = Redelivery()
    plan.failed(Delivery(json.dumps(ITEM), 0), "ServiceUnavailable")
    with pytest.raises(UpstreamFailed):
        plan.send(queue, Queue())
