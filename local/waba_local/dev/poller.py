"""What Lambda's SQS event source does, locally: receive a batch, invoke the handler, delete what succeeded.

Like Lambda's pollers, `drain` receives the next batch while the handler works on the current one, and
deletes behind it, so queue round trips are not on the function's critical path.

Failed records are left alone, so they reappear after the queue's visibility timeout, and the queue's
redrive policy moves them to the dead-letter queue after maxReceiveCount receives, as on AWS.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

Handler = Callable[[dict[str, Any], Any], dict[str, Any]]
WORKER_BATCH = 30  # template.yaml's BatchSize for the queue worker's event source


WORKER_NAME = "waba-lookup-worker-local"  # the queue worker's function_name in its log lines, beside the HTTP one's


@dataclass
class LocalLambdaContext:
    """A LambdaContext whose remaining time runs down from its creation, like the real one."""

    timeout_ms: int = 60_000
    function_name: str = "waba-lookup-local"
    memory_limit_in_mb: int = 256
    invoked_function_arn: str = "arn:aws:lambda:ap-southeast-1:123456789012:function:waba-lookup-local"
    aws_request_id: str = "local"
    started: float = field(default_factory=time.monotonic)

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int(self.timeout_ms - (time.monotonic() - self.started) * 1000))


@dataclass
class DeliveryStats:
    """What a local event source counts, whichever platform's: messages received, handler invocations."""

    received: int = 0
    invocations: int = 0


@dataclass
class PollStats(DeliveryStats):
    succeeded: int = 0  # records, by the handler's batchItemFailures
    failed: int = 0


def sqs_event(messages: list[dict[str, Any]], queue_arn: str, region: str) -> dict[str, Any]:
    """The event Lambda would pass for these received messages."""
    return {
        "Records": [
            {
                "messageId": m["MessageId"],
                "receiptHandle": m["ReceiptHandle"],
                "body": m["Body"],
                "attributes": m.get("Attributes", {}),
                "messageAttributes": {},
                "md5OfBody": m.get("MD5OfBody", ""),
                "eventSource": "aws:sqs",
                "eventSourceARN": queue_arn,
                "awsRegion": region,
            }
            for m in messages
        ]
    }


class LocalPoller:
    """Drains one queue into one handler, batch by batch."""

    def __init__(
        self, sqs: Any, queue_url: str, handler: Handler, timeout_ms: int = 60_000, batch_size: int = 10
    ) -> None:
        self.sqs, self.queue_url, self.handler = sqs, queue_url, handler
        self.timeout_ms, self.batch_size = timeout_ms, batch_size
        attributes = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"]
        self.queue_arn = attributes["QueueArn"]
        self.region = self.queue_arn.split(":")[3]
        self.stats = PollStats()

    def _invoke(self, messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Invoke the handler with one batch; returns the messages that succeeded."""
        context = LocalLambdaContext(self.timeout_ms, function_name=WORKER_NAME)  # its log lines say whose they are
        response = self.handler(sqs_event(messages, self.queue_arn, self.region), context)
        failed = {f["itemIdentifier"] for f in response.get("batchItemFailures", [])}
        done = [m for m in messages if m["MessageId"] not in failed]
        self.stats.received += len(messages)
        self.stats.succeeded += len(done)
        self.stats.failed += len(messages) - len(done)
        self.stats.invocations += 1
        return done

    def _delete(self, done: list[dict[str, Any]]) -> None:
        for start in range(0, len(done), 10):
            entries = [
                {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(done[start : start + 10])
            ]
            self.sqs.delete_message_batch(QueueUrl=self.queue_url, Entries=entries)

    def _receive_batch(self, wait_seconds: int) -> list[dict[str, Any]]:
        """Up to batch_size messages, ten per ReceiveMessage, as Lambda's batching window gathers them."""
        messages: list[dict[str, Any]] = []
        while len(messages) < self.batch_size:
            received = self.sqs.receive_message(
                QueueUrl=self.queue_url,
                MaxNumberOfMessages=min(10, self.batch_size - len(messages)),
                WaitTimeSeconds=wait_seconds if not messages else 0,
                AttributeNames=["All"],
            ).get("Messages", [])
            if not received:
                break
            messages += received
        return messages

    def drain(
        self,
        until_empty_for: float = 1.0,
        time_limit: float = 300.0,
        on_batch: Callable[[PollStats], None] | None = None,
    ) -> PollStats:
        """Poll until the queue has been empty for `until_empty_for` seconds (failures come back) or time runs out."""
        started = empty_since = time.monotonic()
        with ThreadPoolExecutor(max_workers=1) as queue_io:
            upcoming: Future[list[dict[str, Any]]] = queue_io.submit(self._receive_batch, 0)
            while time.monotonic() - started < time_limit:
                messages = upcoming.result()
                upcoming = queue_io.submit(self._receive_batch, 0)
                if messages:
                    done = self._invoke(messages)
                    queue_io.submit(self._delete, done)
                    empty_since = time.monotonic()
                    if on_batch:
                        on_batch(self.stats)
                elif time.monotonic() - empty_since >= until_empty_for:
                    if leftover := upcoming.result():  # never drop a batch already received
                        queue_io.submit(self._delete, self._invoke(leftover))
                    break
                else:
                    time.sleep(0.05)
        return self.stats
