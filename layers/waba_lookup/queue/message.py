"""Background refreshes: the requests the HTTP side queues (refresh_queue.py sends them), the messages the queue
worker runs."""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any

from waba_lookup.customer import Customer
from waba_lookup.errors import InvalidRequest, Throttled
from waba_lookup.lookup import RefreshOutcome, WabaLookup

MAX_ITEMS = 1000


class PoisonMessage(InvalidRequest):
    """A queue message that can never be processed; it goes to the dead-letter queue."""


class OutOfTime(Throttled):
    """Not enough function time left to start a CAMS call; the message goes back to the queue."""

    default_code = "Throttling.Deadline"


def parse_refresh_request(body: str | None, base64_encoded: bool = False) -> list[Customer]:
    """`{"Items": [{"CustSpaceId"?, "IsvCode"?}, ...]}` with 1-1000 items, all valid, or InvalidRequest.

    `body` as the trigger passed it: base64 when `base64_encoded`. Whatever it holds ends as a list or InvalidRequest.
    """
    document = _json_document(_decoded(body or "", base64_encoded))
    if not isinstance(document, dict) or set(document) != {"Items"}:
        raise InvalidRequest(f'the body must be {{"Items": [...]}} with 1 to {MAX_ITEMS} items and nothing else')
    items = document["Items"]
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
        return Customer.from_item(_json_document(body))
    except InvalidRequest as error:
        raise PoisonMessage(error.message) from None


def _decoded(body: str, base64_encoded: bool) -> str:
    if not base64_encoded:
        return body
    try:
        return base64.b64decode(body, validate=True).decode("utf-8")
    except (binascii.Error, ValueError):  # UnicodeDecodeError is a ValueError
        raise InvalidRequest("the body must be JSON in UTF-8 (base64: valid base64 of it)") from None


def _json_document(text: str) -> Any:
    try:
        return json.loads(text)
    except (ValueError, RecursionError):  # json's C decoder recurses once per nesting level
        raise InvalidRequest("the body must be JSON") from None


def refresh_message(lookup: WabaLookup, body: str, deadline: float, now: float) -> RefreshOutcome:
    """Process one queue message: PoisonMessage, OutOfTime and transient errors are raised for the batch."""
    customer = parse_message(body)
    # one more call needs a permit (up to a second) and then a whole CAMS call
    if deadline - now < 1.0 + lookup.settings.call_seconds:
        raise OutOfTime("not enough function time left for another CAMS call")
    return lookup.refresh(customer, deadline)
