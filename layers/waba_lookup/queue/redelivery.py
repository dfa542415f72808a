"""Failures without partial batches (Function Compute's SMQ trigger): each item that failed is sent on again before
the invocation returns, back to the queue or to the dead-letter queue.

Which goes where: docs/architecture.md#on-function-compute.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from waba_lookup.errors import ConfigurationError, UpstreamFailed
from waba_lookup.settings import Settings

MAX_ATTEMPTS = 5  # as many as the SQS queue's maxReceiveCount
RETRY_DELAYS_SECONDS = (10, 30, 60, 120)  # before attempts 2, 3, 4 and 5
NOT_ATTEMPTED_DELAY_SECONDS = 1
POSTPONED_DELAY_SECONDS = 10  # the shared budget's store could not be reached: give it time


@dataclass(frozen=True)
class Delivery:
    """A queued refresh as the worker received it: the message without its attempt count, and that count."""

    body: str
    attempts: int = 0

    @classmethod
    def read(cls, raw: str) -> Delivery:
        """Plain JSON, or base64 of JSON (SMQ's senders encode by default; the trigger may or may not decode)."""
        text = raw.strip()
        if not text.startswith("{"):
            try:
                text = base64.b64decode(text, validate=True).decode()
            except (binascii.Error, UnicodeDecodeError):
                return cls(raw)  # neither: the item's parse will call it poison
        try:
            document = json.loads(text)
        except (ValueError, RecursionError):
            return cls(text)
        if not isinstance(document, dict):
            return cls(text)
        attempts = document.pop("Attempts", 0)
        return cls(json.dumps(document), attempts if isinstance(attempts, int) and attempts >= 0 else 0)


@dataclass
class Redelivery:
    """The failed items of one batch, and where each goes."""

    retries: list[tuple[str, int]] = field(default_factory=list)  # (body with its attempt count, delay)
    dead: list[str] = field(default_factory=list)

    def not_attempted(self, delivery: Delivery) -> None:
        self.retries.append((_with(delivery.body, Attempts=delivery.attempts), NOT_ATTEMPTED_DELAY_SECONDS))

    def postponed(self, delivery: Delivery) -> None:
        """Not attempted because no CAMS call could be made safely (the budget's store failed): back to the queue
        with a delay, its attempt count unchanged."""
        self.retries.append((_with(delivery.body, Attempts=delivery.attempts), POSTPONED_DELAY_SECONDS))

    def failed(self, delivery: Delivery, code: str) -> None:
        attempts = delivery.attempts + 1
        if attempts >= MAX_ATTEMPTS:
            self.dead_letter(delivery, code, attempts)
            return
        delay = RETRY_DELAYS_SECONDS[min(attempts, len(RETRY_DELAYS_SECONDS)) - 1]
        self.retries.append((_with(delivery.body, Attempts=attempts), delay))

    def dead_letter(self, delivery: Delivery, code: str, attempts: int | None = None) -> None:
        record = {"Message": delivery.body, "Attempts": delivery.attempts if attempts is None else attempts}
        self.dead.append(json.dumps(record | {"LastError": code}, ensure_ascii=False))

    def send(self, queue: Any, dead_letter_queue: Any) -> None:
        """Send the re-sends and the dead letters; UpstreamFailed if any could not be sent (the batch is retried)."""
        _send_all(queue, [body for body, _ in self.retries], [delay for _, delay in self.retries], "QueueUnavailable")
        _send_all(dead_letter_queue, self.dead, [0] * len(self.dead), "DeadLetterQueueUnavailable")


def send_seconds(queue: Any, dead_letter_queue: Any, count: int) -> float:
    """The longest `Redelivery.send` can take for a batch of `count` items, all failed: every batch call of both
    queues at its client's timeouts."""
    calls = -(-count // queue.max_messages) + 1  # the items split between the two queues: one call more at most
    return float(calls * max(queue.call_seconds, dead_letter_queue.call_seconds))


def _with(body: str, **fields: Any) -> str:
    try:
        document = json.loads(body)
    except ValueError:
        document = None
    if not isinstance(document, dict):
        return body
    return json.dumps(document | fields, ensure_ascii=False)


def _send_all(queue: Any, bodies: list[str], delays: list[int], code: str) -> None:
    from waba_lookup.queue import QueueSendFailed

    step = queue.max_messages
    for start in range(0, len(bodies), step):
        chunk, chunk_delays = bodies[start : start + step], delays[start : start + step]
        try:
            refused = queue.send_batch(chunk, chunk_delays)
        except QueueSendFailed as error:
            raise UpstreamFailed(f"{len(chunk)} failed items could not be sent on ({error})", code) from None
        if refused:
            raise UpstreamFailed(f"{len(refused)} failed items could not be sent on", code)


def redelivery_queues(settings: Settings) -> tuple[Any, Any]:
    """The refresh queue (re-sends) and the dead-letter queue, as SMQ clients; ConfigurationError naming what is
    missing. Built once per instance."""
    if not settings.refresh_queue_url or not settings.refresh_dlq_url:
        missing = "REFRESH_QUEUE_URL" if not settings.refresh_queue_url else "REFRESH_DLQ_URL"
        raise ConfigurationError(f"{missing} is not set: the FC worker re-sends and dead-letters failed items there")
    return _queues(settings.refresh_queue_url, settings.refresh_dlq_url)


@lru_cache(maxsize=1)
def _queues(queue_url: str, dlq_url: str) -> tuple[Any, Any]:
    from waba_lookup.queue.smq import SmqQueue

    return SmqQueue(queue_url), SmqQueue(dlq_url)
