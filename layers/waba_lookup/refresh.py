"""Background refreshes: the HTTP side queues them, the queue worker runs them."""

from __future__ import annotations

import json
import time
from functools import lru_cache
from typing import Any

from waba_lookup.aws import FAIL_FAST_SECONDS, fail_fast_client
from waba_lookup.customer import Customer
from waba_lookup.errors import ConfigurationError, InvalidRequest, Throttled, UpstreamFailed
from waba_lookup.lookup import RefreshOutcome, WabaLookup
from waba_lookup.observability import logger
from waba_lookup.settings import get_settings

MAX_ITEMS = 1000
SQS_BATCH = 10
SEND_ATTEMPTS = 3


class PoisonMessage(InvalidRequest):
    """A queue message that can never be processed; it goes to the dead-letter queue."""


class OutOfTime(Throttled):
    """Not enough function time left to start a CAMS call; the message goes back to the queue."""

    default_code = "Throttling.Deadline"


def parse_refresh_request(raw: str | None) -> list[Customer]:
    """`{"Items": [{"CustSpaceId"?, "IsvCode"?}, ...]}` with 1-1000 items, all valid, or InvalidRequest."""
    try:
        document = json.loads(raw or "")
    except ValueError:
        raise InvalidRequest("the body must be JSON") from None
    items = document.get("Items") if isinstance(document, dict) else None
    if not isinstance(items, list) or not 1 <= len(items) <= MAX_ITEMS:
        raise InvalidRequest(f'the body must be {{"Items": [...]}} with 1 to {MAX_ITEMS} items')
    customers = []
    for index, item in enumerate(items):
        try:
            customers.append(Customer.from_item(item))
        except InvalidRequest as error:
            raise InvalidRequest(f"Items[{index}]: {error.message}") from None
    return customers


def parse_message(body: str) -> Customer:
    """One queue message's body, or PoisonMessage."""
    try:
        return Customer.from_item(json.loads(body))
    except (ValueError, InvalidRequest) as error:
        reason = error.message if isinstance(error, InvalidRequest) else "the body is not JSON"
        raise PoisonMessage(reason) from None


class RefreshQueue:
    """Sends refresh requests to REFRESH_QUEUE_URL, ten per SendMessageBatch call."""

    def __init__(self, queue_url: str | None, sqs_client: Any = None) -> None:
        if not queue_url:
            raise ConfigurationError("REFRESH_QUEUE_URL is not set: bulk refresh needs a queue")
        self.queue_url = queue_url
        self._sqs = sqs_client

    def send(self, customers: list[Customer], deadline: float) -> int:
        """Queue one message per customer; retry entries SQS refused; raise UpstreamFailed if any remain or the
        (monotonic) deadline comes first. Messages already sent stay queued: a refresh is idempotent."""
        unsent = 0
        for start in range(0, len(customers), SQS_BATCH):
            if time.monotonic() + FAIL_FAST_SECONDS > deadline:
                raise UpstreamFailed(
                    f"queued {start} of {len(customers)} refreshes before the deadline", "QueueTimeout"
                )
            entries = [
                {"Id": str(i), "MessageBody": json.dumps(c.as_item())}
                for i, c in enumerate(customers[start : start + SQS_BATCH])
            ]
            unsent += len(self._send_batch(entries))
        if unsent:
            raise UpstreamFailed(f"{unsent} of {len(customers)} refreshes could not be queued", "QueueUnavailable")
        return len(customers)

    def _send_batch(self, entries: list[dict[str, str]]) -> list[dict[str, str]]:
        from botocore.exceptions import BotoCoreError, ClientError  # not at import: the FC layer has no botocore

        for _ in range(SEND_ATTEMPTS):
            try:
                failed = self._client().send_message_batch(QueueUrl=self.queue_url, Entries=entries).get("Failed", [])
            except (BotoCoreError, ClientError) as exc:
                logger.warning("SendMessageBatch failed", extra={"error_type": type(exc).__name__})
                continue
            failed_ids = {f["Id"] for f in failed}
            entries = [e for e in entries if e["Id"] in failed_ids]
            if not entries:
                break
        return entries

    def _client(self) -> Any:
        if self._sqs is None:
            self._sqs = fail_fast_client("sqs")
        return self._sqs


@lru_cache(maxsize=1)
def get_refresh_queue() -> RefreshQueue:
    """The instance's RefreshQueue (one SQS client per instance, not per request)."""
    return RefreshQueue(get_settings().refresh_queue_url)


def refresh_message(lookup: WabaLookup, body: str, deadline: float, now: float) -> RefreshOutcome:
    """Process one queue message: PoisonMessage, OutOfTime and transient errors are raised for the batch."""
    customer = parse_message(body)
    # one more call needs a permit (up to a second) and then a whole CAMS call
    if deadline - now < 1.0 + lookup.settings.call_seconds:
        raise OutOfTime("not enough function time left for another CAMS call")
    return lookup.refresh(customer, deadline)
