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
from typing import Protocol

from waba_lookup.customer import Customer
from waba_lookup.errors import UpstreamFailed
from waba_lookup.observability import logger

SEND_ATTEMPTS = 3
CONCURRENT_BATCHES = 4


class QueueSendFailed(Exception):
    """A batch call failed as a whole (unreachable, refused): its entries may be tried again."""


class QueueBatches(Protocol):
    """One queue's batch send. `call_seconds` is the longest one call can take (its client's timeouts)."""

    max_messages: int
    max_bytes: int
    call_seconds: float

    def send_batch(self, bodies: list[str], delays: list[int] | None = None) -> list[int]:
        """Send the bodies in one call, each hidden for its delay in seconds (none: 0); the positions of those the
        queue refused. QueueSendFailed if none went."""


class RefreshQueue:
    """Sends refresh requests to the deployment's queue."""

    def __init__(self, batches: QueueBatches, clock: Callable[[], float] = time.monotonic) -> None:
        self.batches = batches
        self._clock = clock

    def send(self, customers: list[Customer], deadline: float) -> list[int]:
        """Queue one message per customer; the positions of those that could not be queued before the (monotonic)
        deadline. UpstreamFailed (QueueTimeout, QueueUnavailable) if none could: then nothing is queued twice by a
        retry of the whole request, and after a partial send a retry of just those positions duplicates nothing."""
        unsent, late = self.send_bodies([json.dumps(c.as_item()) for c in customers], deadline)
        if customers and len(unsent) == len(customers):
            code = "QueueTimeout" if late else "QueueUnavailable"
            raise UpstreamFailed(f"none of {len(customers)} refreshes could be queued", code)
        return unsent

    def send_bodies(self, bodies: list[str], deadline: float, delay: int = 0) -> tuple[list[int], bool]:
        """Send these message bodies, each hidden `delay` seconds; (the positions of those not sent, whether time
        ran out for any)."""
        chunks = self._chunks(list(enumerate(bodies)))
        with ThreadPoolExecutor(max_workers=CONCURRENT_BATCHES) as pool:
            outcomes = list(pool.map(lambda chunk: self._send_chunk(chunk, deadline, delay), chunks))
        return sorted(i for unsent, _ in outcomes for i in unsent), any(late for _, late in outcomes)

    def _chunks(self, bodies: list[tuple[int, str]]) -> list[list[tuple[int, str]]]:
        chunks: list[list[tuple[int, str]]] = [[]]
        size = 0
        for entry in bodies:
            length = len(entry[1].encode())
            if len(chunks[-1]) == self.batches.max_messages or (chunks[-1] and size + length > self.batches.max_bytes):
                chunks.append([])
                size = 0
            chunks[-1].append(entry)
            size += length
        return [chunk for chunk in chunks if chunk]

    def _send_chunk(self, entries: list[tuple[int, str]], deadline: float, delay: int) -> tuple[list[int], bool]:
        """(the positions that stayed unsent, whether because time ran out)."""
        for _ in range(SEND_ATTEMPTS):
            if self._clock() + self.batches.call_seconds > deadline:
                return [i for i, _ in entries], True
            try:
                refused = self.batches.send_batch([body for _, body in entries], [delay] * len(entries))
            except QueueSendFailed as error:
                logger.warning("sending a batch of refreshes failed", extra={"error_type": str(error)})
                continue
            entries = [entries[i] for i in refused]
            if not entries:
                return [], False
        return [i for i, _ in entries], False
