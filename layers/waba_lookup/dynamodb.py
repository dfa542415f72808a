"""The shared budget's record in DynamoDB: one item per CAMS account (key `pk`), one attribute per slot field.

Item: `pk`, `v` (version), `ns`, `rm`, `ta`, `ra`, `rw`, `su` (the record's times and rate), and per slot i
`h{i}` (holder), `s{i}` (sent), `e{i}` (expires), `a{i}` (answered), `c{i}` (interactive). Whole-record writes are
PutItem conditional on `v`, returning the current item when the condition fails; an answer is an UpdateItem of one
slot conditional on its holder, so it never races with admissions of other slots.
"""

from __future__ import annotations

from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from waba_lookup.aws import fail_fast_client
from waba_lookup.log_store import StoreUnavailable
from waba_lookup.sliding_log import LogRecord, Slot

_FIELDS = {
    "ns": "next_send",
    "rm": "rate_max",
    "ta": "throttled_at",
    "ra": "reads_at",
    "rw": "reads_waiting_until",
    "su": "static_until",
}


class DynamoLogStore:
    """The LogStore port on a DynamoDB table whose partition key is `pk` (a string)."""

    def __init__(self, table: str, key: str, client: Any = None) -> None:
        self.table = table
        self.key = {"pk": {"S": f"budget/{key}"}}
        self._client = client

    def load(self) -> LogRecord:
        answer = self._request("get_item", TableName=self.table, Key=self.key, ConsistentRead=True)
        return decode(answer.get("Item"))

    def replace(self, record: LogRecord, expected_version: str) -> LogRecord | None:
        if expected_version:
            condition = {"ConditionExpression": "v = :v", "ExpressionAttributeValues": {":v": {"S": expected_version}}}
        else:
            condition = {"ConditionExpression": "attribute_not_exists(pk)"}
        try:
            self._request(
                "put_item",
                TableName=self.table,
                Item=self.key | encode(record),
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
                **condition,
            )
        except _ConditionFailed as lost:
            return decode(lost.item)
        return None

    def answer(self, index: int, holder: str, expires: float, version: str) -> LogRecord | None:
        try:
            answer = self._request(
                "update_item",
                TableName=self.table,
                Key=self.key,
                UpdateExpression=f"SET e{index} = :e, a{index} = :t, v = :v",
                ConditionExpression=f"h{index} = :h",
                ExpressionAttributeValues={
                    ":e": _number(expires),
                    ":t": {"BOOL": True},
                    ":v": {"S": version},
                    ":h": {"S": holder},
                },
                ReturnValues="ALL_NEW",
            )
        except _ConditionFailed:
            return None
        return decode(answer.get("Attributes"))

    def _request(self, operation: str, **params: Any) -> Any:
        if self._client is None:
            self._client = fail_fast_client("dynamodb")
        try:
            return getattr(self._client, operation)(**params)
        except ClientError as exc:
            error = exc.response.get("Error", {})
            if error.get("Code") == "ConditionalCheckFailedException":
                raise _ConditionFailed(exc.response.get("Item")) from None  # type: ignore[arg-type]
            raise StoreUnavailable(f"DynamoDB {operation}: {error.get('Code')}") from None
        except BotoCoreError as exc:
            raise StoreUnavailable(f"DynamoDB {operation}: {type(exc).__name__}") from None


class _ConditionFailed(Exception):
    def __init__(self, item: dict[str, Any] | None) -> None:
        super().__init__("condition failed")
        self.item = item


def _number(value: float) -> dict[str, str]:
    return {"N": repr(round(value, 6))}


def encode(record: LogRecord) -> dict[str, Any]:
    item: dict[str, Any] = {"v": {"S": record.version}}
    item |= {name: _number(getattr(record, field)) for name, field in _FIELDS.items()}
    for i, slot in enumerate(record.slots):
        if slot.holder:
            item |= {
                f"h{i}": {"S": slot.holder},
                f"s{i}": _number(slot.sent),
                f"e{i}": _number(slot.expires),
                f"a{i}": {"BOOL": slot.answered},
                f"c{i}": {"BOOL": slot.interactive},
            }
    return item


def decode(item: dict[str, Any] | None) -> LogRecord:
    """The record in an item; an empty record (version "") for no item."""
    if not item:
        return LogRecord()
    default = LogRecord()
    slots = [
        Slot(
            item[f"h{i}"]["S"],
            float(item[f"s{i}"]["N"]),
            float(item[f"e{i}"]["N"]),
            item[f"a{i}"]["BOOL"],
            item[f"c{i}"]["BOOL"],
        )
        if f"h{i}" in item
        else empty
        for i, empty in enumerate(default.slots)
    ]
    times = {field: float(item[name]["N"]) for name, field in _FIELDS.items() if name in item}
    return LogRecord(version=item["v"]["S"], slots=tuple(slots), **times)
