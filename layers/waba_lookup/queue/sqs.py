"""SQS behind the refresh-queue port: SendMessageBatch, botocore's client, one attempt, failing fast."""

from __future__ import annotations

from typing import Any

from waba_lookup.platforms.aws import FAIL_FAST_SECONDS, fail_fast_client
from waba_lookup.queue import QueueSendFailed


class SqsBatches:
    """Batches of up to 10 messages and 256 KiB, SQS's limits."""

    max_messages = 10
    max_bytes = 256 * 1024
    call_seconds = FAIL_FAST_SECONDS

    def __init__(self, queue_url: str, sqs_client: Any = None) -> None:
        self.queue_url = queue_url
        self._sqs = sqs_client

    def send_batch(self, bodies: list[str], delays: list[int] | None = None) -> list[int]:
        from botocore.exceptions import BotoCoreError, ClientError  # not at import: the FC layer has no botocore

        delays = delays or [0] * len(bodies)
        entries = [
            {"Id": str(i), "MessageBody": body} | ({"DelaySeconds": delay} if delay else {})
            for i, (body, delay) in enumerate(zip(bodies, delays, strict=True))
        ]
        try:
            failed = self._client().send_message_batch(QueueUrl=self.queue_url, Entries=entries).get("Failed", [])
        except (BotoCoreError, ClientError) as exc:
            raise QueueSendFailed(type(exc).__name__) from None
        return sorted(int(f["Id"]) for f in failed)

    def _client(self) -> Any:
        if self._sqs is None:
            self._sqs = fail_fast_client("sqs")  # botocore's clients are thread-safe: one serves every batch
        return self._sqs
