"""The shared budget's record in DynamoDB: one item per CAMS account (key `pk`), the record's columns as attributes
(log_store.to_columns). Whole-record writes are
PutItem conditional on `v`, returning the current item when the condition fails; an answer is an UpdateItem of one
slot conditional on its holder, so it never races with admissions of other slots.
"""

from __future__ import annotations

from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from waba_lookup.aws import FAIL_FAST_SECONDS, fail_fast_client
from waba_lookup.log_store import Column, StoreUnavailable, from_columns, to_columns
from waba_lookup.sliding_log import LogRecord


class DynamoLogStore:
    """The LogStore port on a DynamoDB table whose partition key is `pk` (a string)."""

    answer_seconds = FAIL_FAST_SECONDS  # one UpdateItem

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
        try:
            if self._client is None:
                self._client = _client()
            return getattr(self._client, operation)(**params)
        except ClientError as exc:
            error = exc.response.get("Error", {})
            if error.get("Code") == "ConditionalCheckFailedException":
                raise _ConditionFailed(exc.response.get("Item")) from None  # type: ignore[arg-type]
            raise StoreUnavailable(f"DynamoDB {operation}: {error.get('Code')}") from None
        except BotoCoreError as exc:
            raise StoreUnavailable(f"DynamoDB {operation}: {type(exc).__name__}") from None


def _client() -> Any:
    """The DynamoDB client, or StoreUnavailable when it cannot be built: the budget fails closed, never a 500."""
    try:
        return fail_fast_client("dynamodb")
    except Exception as error:  # noqa: BLE001 - an ImportError, a bad region or endpoint: all the same to a caller
        raise StoreUnavailable(f"DynamoDB client: {type(error).__name__}") from None


class _ConditionFailed(Exception):
    def __init__(self, item: dict[str, Any] | None) -> None:
        super().__init__("condition failed")
        self.item = item


def encode(record: LogRecord) -> dict[str, Any]:
    """The record's columns as DynamoDB attribute values."""
    return {name: _attribute(value) for name, value in to_columns(record).items()}


def decode(item: dict[str, Any] | None) -> LogRecord:
    """The record in an item; an empty record (version "") for no item."""
    if not item:
        return LogRecord()
    return from_columns({name: _value(attribute) for name, attribute in item.items() if name != "pk"})


def _attribute(value: Column) -> dict[str, Any]:
    if isinstance(value, bool):
        return {"BOOL": value}
    if isinstance(value, float):
        return _number(value)
    return {"S": value}


def _value(attribute: dict[str, Any]) -> Column:
    if "BOOL" in attribute:
        return bool(attribute["BOOL"])
    if "N" in attribute:
        return float(attribute["N"])
    return str(attribute["S"])


def _number(value: float) -> dict[str, str]:
    return {"N": repr(round(value, 6))}
