"""The budget's record in DynamoDB: one item per CAMS account (key `pk`), the record's columns as attributes
(budget/store.py). Every write is one UpdateItem on its conditions, returning the item when they fail.
"""

from __future__ import annotations

from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from waba_lookup.budget.log import LogRecord
from waba_lookup.budget.store import Column, Expects, Names, Put, StoreUnavailable, from_columns
from waba_lookup.platforms.aws import FAIL_FAST_SECONDS, fail_fast_client


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

    def update(self, put: Put, delete: Names = (), expect: Expects = (), returning: bool = False) -> LogRecord | None:
        names: dict[str, str] = {}
        values: dict[str, Any] = {}

        def name(column: str) -> str:
            names[f"#n{len(names)}"] = column
            return f"#n{len(names) - 1}"

        def value(column_value: Column) -> str:
            values[f":v{len(values)}"] = _attribute(column_value)
            return f":v{len(values) - 1}"

        clauses = []
        if put:
            clauses.append("SET " + ", ".join(f"{name(c)} = {value(v)}" for c, v in put.items()))
        if delete:
            clauses.append("REMOVE " + ", ".join(name(c) for c in delete))
        conditions = []
        for e in expect:
            column = name(e.column)
            test = f"{column} {'=' if e.op == 'eq' else '<='} {value(e.value)}"
            conditions.append(f"(attribute_not_exists({column}) OR {test})" if e.if_missing else test)
        params: dict[str, Any] = {"UpdateExpression": " ".join(clauses), "ExpressionAttributeNames": names}
        if values:
            params["ExpressionAttributeValues"] = values
        if conditions:
            params["ConditionExpression"] = " AND ".join(conditions)
        if returning:
            params["ReturnValues"] = "ALL_NEW"
        try:
            answer = self._request(
                "update_item",
                TableName=self.table,
                Key=self.key,
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
                **params,
            )
        except _ConditionFailed as lost:
            return decode(lost.item)
        return decode(answer.get("Attributes")) if returning else None

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


def decode(item: dict[str, Any] | None) -> LogRecord:
    """The record in an item; an empty record for no item."""
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
