"""The budget's record in Tablestore (OTS) on Function Compute: one row per CAMS account (primary key `pk`), the
record's columns as attribute columns (budget/store.py). Every write is one UpdateRow on its column conditions;
Tablestore's failed conditions do not return the row, so a lost race costs a GetRow more than on DynamoDB. The SDK
(numpy and aiohttp among its imports: about 0.35 s) is imported when the store is first used: at a first CAMS
call, never on a cache hit.
"""

from __future__ import annotations

import logging
from typing import Any

from waba_lookup.budget.log import LogRecord
from waba_lookup.budget.store import TICKET_PREFIX, Expects, Names, Put, StoreUnavailable, from_columns
from waba_lookup.credentials import Credentials, FunctionCredentials

TIMEOUT_SECONDS = 2.0
CONDITION_FAILED = "OTSConditionCheckFail"


class TablestoreLogStore:
    """The LogStore port on a Tablestore table whose one primary key column is `pk` (a string)."""

    answer_seconds = TIMEOUT_SECONDS  # one UpdateRow

    def __init__(
        self,
        endpoint: str,
        instance: str,
        table: str,
        key: str,
        credentials: Credentials | None = None,
        client: Any = None,
    ) -> None:
        self.endpoint, self.instance, self.table = endpoint, instance, table
        self.primary_key = [("pk", f"budget/{key}")]
        self._credentials = credentials or FunctionCredentials()
        self._client = client

    def load(self) -> LogRecord:
        return self._read()

    def _read(self, written: Put | None = None) -> LogRecord:
        """The row; right after a write that joined the line (`written`), without the tickets written after it:
        their cells' versions, the server's milliseconds at the write, are later than ours (ties: by name). So a
        join counts those ahead of it as from DynamoDB's returned item. Versions:
        https://help.aliyun.com/en/tablestore/data-versions-and-ttl; a wrong order costs a lost race, never a permit."""
        _, row, _ = self._request("get_row", self.table, self.primary_key, max_version=1)
        columns = row.attribute_columns if row else []
        ours = [(version, name) for name, _, version in columns if written and name in written and _ticket(name)]
        if ours:  # the same millisecond: ordered by name, so of two such joins exactly one is first
            later = {n for n, _, version in columns if _ticket(n) and (version, n) > ours[0]}
            columns = [column for column in columns if column[0] not in later]
        return from_columns({name: value for name, value, _ in columns} if columns else None)

    def update(self, put: Put, delete: Names = (), expect: Expects = (), returning: bool = False) -> LogRecord | None:
        ots = _sdk()

        comparators = {"eq": ots.ComparatorType.EQUAL, "le": ots.ComparatorType.LESS_EQUAL}
        tests = [
            ots.SingleColumnCondition(e.column, e.value, comparators[e.op], pass_if_missing=e.if_missing)
            for e in expect
        ]
        column_condition: Any = tests[0] if len(tests) == 1 else None
        if len(tests) > 1:
            column_condition = ots.CompositeColumnCondition(ots.LogicalOperator.AND)
            for test in tests:
                column_condition.add_sub_condition(test)
        changes: dict[str, list[Any]] = {}
        if put:
            changes["PUT"] = list(put.items())
        if delete:
            changes["DELETE_ALL"] = list(delete)
        condition = ots.Condition(ots.RowExistenceExpectation.IGNORE, column_condition)
        try:
            self._request("update_row", self.table, ots.Row(self.primary_key, changes), condition)
        except _ConditionFailed:
            return self._read()  # the failed write says nothing of the row: read it
        return self._read(put) if returning else None  # UpdateRow returns no attribute columns

    def _request(self, operation: str, *args: Any, **kwargs: Any) -> Any:
        ots = _sdk()
        try:
            if self._client is None:  # inside: a client that cannot be built is a store that cannot be reached
                self._client = build_client(self.endpoint, self.instance, self._credentials)
            return getattr(self._client, operation)(*args, **kwargs)
        except ots.OTSServiceError as error:
            if error.get_error_code() == CONDITION_FAILED:
                raise _ConditionFailed from None
            raise StoreUnavailable(f"Tablestore {operation}: {error.get_error_code()}") from None
        except ots.OTSClientError as error:
            raise StoreUnavailable(f"Tablestore {operation}: {type(error).__name__}") from None
        except Exception as error:  # noqa: BLE001 - the SDK lets urllib3's and socket's errors through
            raise StoreUnavailable(f"Tablestore {operation}: {type(error).__name__}") from None


class _ConditionFailed(Exception):
    pass


def _ticket(column: str) -> bool:
    return column.startswith(TICKET_PREFIX)


def _sdk() -> Any:
    """The Tablestore SDK, or StoreUnavailable when it cannot be loaded: the budget fails closed, never a 500."""
    for codec in ("tablestore.encoder", "tablestore.decoder"):  # without the native codec, their import warns so on
        logging.getLogger(codec).setLevel(logging.ERROR)  # stderr at each cold start: the Python one answers alike
    try:
        import tablestore
    except Exception as error:  # noqa: BLE001 - ImportError, or whatever its import-time code raises
        raise StoreUnavailable(f"Tablestore SDK: {type(error).__name__}") from None
    return tablestore


def build_client(endpoint: str, instance: str, credentials: Credentials) -> Any:
    """An OTSClient: no retries (every attempt is ours to count), short timeouts, credentials read per request."""
    import tablestore as ots
    from tablestore.credentials import Credentials as OtsCredentials
    from tablestore.credentials import CredentialsProvider

    class Current(CredentialsProvider):  # type: ignore[misc]
        def get_credentials(self) -> Any:
            key = credentials.current()
            if key is None:
                raise StoreUnavailable("no credentials for Tablestore: ALIBABA_CLOUD_ACCESS_KEY_ID/_SECRET are unset")
            return OtsCredentials(key.access_key_id, key.access_key_secret, key.security_token)

    # The SDK logs every request's headers (the STS token and the signature among them) at DEBUG, and every service
    # error at ERROR, to this logger, which propagates to the root: stop it there.
    logging.getLogger(ots.OTSClient.DEFAULT_LOGGER_NAME).propagate = False
    return ots.OTSClient(
        endpoint,
        instance_name=instance,
        credentials_provider=Current(),
        retry_policy=ots.NoRetryPolicy(),
        socket_timeout=TIMEOUT_SECONDS,
    )
