"""What Lambda's SQS event source does, locally: receive a batch, invoke the handler, delete what succeeded.

Failed records are left alone, so they reappear after the queue's visibility timeout, and the queue's
redrive policy moves them to the dead-letter queue after maxReceiveCount receives, as on AWS.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

Handler = Callable[[dict[str, Any], Any], dict[str, Any]]


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
class PollStats:
    received: int = 0
    succeeded: int = 0
    failed: int = 0
    invocations: int = 0


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

    def poll_once(self, wait_seconds: int = 0) -> int:
        """One receive and one invocation; returns how many messages were received."""
        messages = self.sqs.receive_message(
            QueueUrl=self.queue_url,
            MaxNumberOfMessages=self.batch_size,
            WaitTimeSeconds=wait_seconds,
            AttributeNames=["All"],
        ).get("Messages", [])
        if not messages:
            return 0
        response = self.handler(sqs_event(messages, self.queue_arn, self.region), LocalLambdaContext(self.timeout_ms))
        failed = {f["itemIdentifier"] for f in response.get("batchItemFailures", [])}
        done = [m for m in messages if m["MessageId"] not in failed]
        if done:
            entries = [{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(done)]
            self.sqs.delete_message_batch(QueueUrl=self.queue_url, Entries=entries)
        self.stats.received += len(messages)
        self.stats.succeeded += len(done)
        self.stats.failed += len(failed)
        self.stats.invocations += 1
        return len(messages)

    def drain(
        self,
        until_empty_for: float = 1.0,
        time_limit: float = 300.0,
        on_batch: Callable[[PollStats], None] | None = None,
    ) -> PollStats:
        """Poll until the queue has been empty for `until_empty_for` seconds (failures come back) or time runs out."""
        started = empty_since = time.monotonic()
        while time.monotonic() - started < time_limit:
            if self.poll_once():
                empty_since = time.monotonic()
                if on_batch:
                    on_batch(self.stats)
            elif time.monotonic() - empty_since >= until_empty_for:
                break
            else:
                time.sleep(0.05)
        return self.stats
