"""Background refreshes: the requests the HTTP side queues (refresh_queue.py sends them), the messages the queue
worker runs."""

from __future__ import annotations

import json

from waba_lookup.customer import Customer
from waba_lookup.errors import InvalidRequest, Throttled
from waba_lookup.lookup import RefreshOutcome, WabaLookup

MAX_ITEMS = 1000


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


def refresh_message(lookup: WabaLookup, body: str, deadline: float, now: float) -> RefreshOutcome:
    """Process one queue message: PoisonMessage, OutOfTime and transient errors are raised for the batch."""
    customer = parse_message(body)
    # one more call needs a permit (up to a second) and then a whole CAMS call
    if deadline - now < 1.0 + lookup.settings.call_seconds:
        raise OutOfTime("not enough function time left for another CAMS call")
    return lookup.refresh(customer, deadline)
