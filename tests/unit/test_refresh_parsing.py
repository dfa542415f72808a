"""What the worker and the bulk refresh make of hostile bodies: a defined answer (a list, InvalidRequest, or
PoisonMessage at once), never another exception that would send a message round the queue five times."""

from __future__ import annotations

import base64
import json

import pytest

from waba_lookup.customer import Customer
from waba_lookup.errors import InvalidRequest
from waba_lookup.queue.message import PoisonMessage, parse_message, parse_refresh_request

POISON = {
    "100,000 [": "[" * 100_000,
    "100,000 nested objects": '{"a":' * 100_000 + "1" + "}" * 100_000,
    "nested in a field": '{"CustSpaceId": ' + "[" * 50_000 + "]" * 50_000 + "}",
    "not JSON": "CustSpaceId=1",
    "empty": "",
    "a list": '[{"CustSpaceId": "1"}]',
    "null field": '{"CustSpaceId": null}',
    "empty IsvCode": '{"CustSpaceId": "1", "IsvCode": ""}',
    "number": '{"CustSpaceId": 1}',
    "unknown field": '{"CustSpaceId": "1", "Isv": "x"}',
    "NaN": "NaN",
}


@pytest.mark.parametrize("body", POISON.values(), ids=POISON.keys())
def test_a_message_that_can_never_be_processed_is_poison_at_once(body: str) -> None:
    with pytest.raises(PoisonMessage):
        parse_message(body)


@pytest.mark.parametrize(
    ("body", "customer"),
    [
        ("{}", Customer()),
        ('{"CustSpaceId": "1"}', Customer("1")),
        ('{"CustSpaceId": "1", "IsvCode": "a.b-c_d"}', Customer("1", "a.b-c_d")),
    ],
)
def test_a_good_message_is_its_customer(body: str, customer: Customer) -> None:
    assert parse_message(body) == customer


def test_a_base64_refresh_body_is_decoded() -> None:
    body = base64.b64encode(json.dumps({"Items": [{"CustSpaceId": "1"}, {}]}).encode()).decode()
    assert parse_refresh_request(body, base64_encoded=True) == [Customer("1"), Customer()]


@pytest.mark.parametrize(
    ("body", "base64_encoded"),
    [
        ("[" * 100_000, False),
        (base64.b64encode(b"\xff\xfe{}").decode(), True),
        ("not base64!", True),
        ('{"Items": [{}], "Extra": true}', False),
        ('{"Items": [{"IsvCode": ""}]}', False),
        (None, False),
    ],
    ids=["deep", "invalid UTF-8", "not base64", "extra field", "empty IsvCode", "no body"],
)
def test_a_hostile_refresh_body_is_invalid_request(body: str | None, base64_encoded: bool) -> None:
    with pytest.raises(InvalidRequest):
        parse_refresh_request(body, base64_encoded)
