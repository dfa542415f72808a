"""The refresh queue: `POST /waba/refresh` sends one message per customer, in batches, within the request's deadline.

One sender for both platforms; what differs (SQS's SendMessageBatch, SMQ's BatchSendMessage, their limits) sits
behind `QueueBatches`. Batches go out a few at a time, each retried for the entries the queue refused, and nothing
starts that could not finish before the deadline. Messages already sent stay queued: a refresh is idempotent.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from functools import lru_cache
from typing import Protocol

from waba_lookup.customer import Customer
from waba_lookup.errors import ConfigurationError, UpstreamFailed
from waba_lookup.observability import logger
from waba_lookup.settings import Settings, get_settings

SEND_ATTEMPTS = 3
CONCURRENT_BATCHES = 4


class QueueSendFailed(Exception):
    """A batch call failed as a whole (unreachable, refused): its entries may be tried again."""


class QueueBatches(Protocol):
    """One queue's batch send. `call_seconds` is the longest one call can take (its client's timeouts)."""

    max_messages: int
    max_bytes: int
    call_seconds: float

    def send_batch(self, bodies: list[str]) -> list[int]:
        """Send the bodies in one call; the positions of those the queue refused. QueueSendFailed if none went."""


class RefreshQueue:
    """Sends refresh requests to the deployment's queue."""

    def __init__(self, batches: QueueBatches, clock: Callable[[], float] = time.monotonic) -> None:
        self.batches = batches
        self._clock = clock

    def send(self, customers: list[Customer], deadline: float) -> int:
        """Queue one message per customer; raise UpstreamFailed (QueueTimeout, QueueUnavailable) saying how many
        were queued if any could not be before the (monotonic) deadline."""
        chunks = list(self._chunks([json.dumps(c.as_item()) for c in customers]))
        with ThreadPoolExecutor(max_workers=CONCURRENT_BATCHES) as pool:
            outcomes = list(pool.map(lambda chunk: self._send_chunk(chunk, deadline), chunks))
        late = sum(unsent for unsent, out_of_time in outcomes if out_of_time)
        refused = sum(unsent for unsent, out_of_time in outcomes if not out_of_time)
        queued = len(customers) - late - refused
        if late:
            raise UpstreamFailed(f"queued {queued} of {len(customers)} refreshes before the deadline", "QueueTimeout")
        if refused:
            raise UpstreamFailed(f"{refused} of {len(customers)} refreshes could not be queued", "QueueUnavailable")
        return len(customers)

    def _chunks(self, bodies: list[str]) -> list[list[str]]:
        chunks: list[list[str]] = [[]]
        size = 0
        for body in bodies:
            length = len(body.encode())
            if len(chunks[-1]) == self.batches.max_messages or (chunks[-1] and size + length > self.batches.max_bytes):
                chunks.append([])
                size = 0
            chunks[-1].append(body)
            size += length
        return [chunk for chunk in chunks if chunk]

    def _send_chunk(self, bodies: list[str], deadline: float) -> tuple[int, bool]:
        """(how many of these stayed unsent, whether because time ran out)."""
        for _ in range(SEND_ATTEMPTS):
            if self._clock() + self.batches.call_seconds > deadline:
                return len(bodies), True
            try:
                refused = self.batches.send_batch(bodies)
            except QueueSendFailed as error:
                logger.warning("sending a batch of refreshes failed", extra={"error_type": str(error)})
                continue
            bodies = [bodies[i] for i in refused]
            if not bodies:
                return 0, False
        return len(bodies), False


def refresh_queue_for(settings: Settings) -> RefreshQueue:
    """SQS on AWS, SMQ on Function Compute, at REFRESH_QUEUE_URL."""
    if not settings.refresh_queue_url:
        raise ConfigurationError("REFRESH_QUEUE_URL is not set: bulk refresh needs a queue")
    if settings.on_fc:
        from waba_lookup.smq import SmqQueue

        return RefreshQueue(SmqQueue(settings.refresh_queue_url))
    from waba_lookup.sqs import SqsBatches

    return RefreshQueue(SqsBatches(settings.refresh_queue_url))


@lru_cache(maxsize=1)
def get_refresh_queue() -> RefreshQueue:
    """The instance's RefreshQueue (one queue client per instance, not per request)."""
    return refresh_queue_for(get_settings())
