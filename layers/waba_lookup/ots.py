"""The shared budget's record in Tablestore (OTS) on Function Compute: one row per CAMS account (primary key `pk`),
the record's columns as attribute columns (log_store.to_columns).

Whole-record writes are PutRow conditional on the row's existence and on `v`; an answer is an UpdateRow of one
slot's columns conditional on its holder. Tablestore's failed conditions do not return the row, so a lost race
costs one GetRow more than on DynamoDB, and so does an answer (UpdateRow returns no columns). The SDK (numpy and
aiohttp among its imports: about 0.35 s) is imported when the store is first used: at a first CAMS call, never on a
cache hit.
"""

from __future__ import annotations

import logging
from typing import Any

from waba_lookup.credentials import Credentials, FunctionCredentials
from waba_lookup.log_store import StoreUnavailable, from_columns, to_columns
from waba_lookup.sliding_log import LogRecord

TIMEOUT_SECONDS = 2.0
CONDITION_FAILED = "OTSConditionCheckFail"


class TablestoreLogStore:
    """The LogStore port on a Tablestore table whose one primary key column is `pk` (a string)."""

    answer_seconds = 2 * TIMEOUT_SECONDS  # UpdateRow, then GetRow (UpdateRow returns no columns)

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
        _, row, _ = self._request("get_row", self.table, self.primary_key, max_version=1)
        return from_columns({name: value for name, value, _ in row.attribute_columns} if row else None)

    def replace(self, record: LogRecord, expected_version: str) -> LogRecord | None:
        ots = _sdk()

        if expected_version:
            version = ots.SingleColumnCondition("v", expected_version, ots.ComparatorType.EQUAL, pass_if_missing=False)
            condition = ots.Condition(ots.RowExistenceExpectation.EXPECT_EXIST, version)
        else:
            condition = ots.Condition(ots.RowExistenceExpectation.EXPECT_NOT_EXIST)
        row = ots.Row(self.primary_key, list(to_columns(record).items()))
        try:
            self._request("put_row", self.table, row, condition)
        except _ConditionFailed:
            return self.load()  # the failed write says nothing of the row: read it
        return None

    def answer(self, index: int, holder: str, expires: float, version: str) -> LogRecord | None:
        ots = _sdk()

        held = ots.SingleColumnCondition(f"h{index}", holder, ots.ComparatorType.EQUAL, pass_if_missing=False)
        columns = {"PUT": [(f"e{index}", round(expires, 6)), (f"a{index}", True), ("v", version)]}
        try:
            self._request(
                "update_row",
                self.table,
                ots.Row(self.primary_key, columns),
                ots.Condition(ots.RowExistenceExpectation.EXPECT_EXIST, held),
            )
        except _ConditionFailed:
            return None
        return self.load()  # UpdateRow returns no attribute columns

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


def _sdk() -> Any:
    """The Tablestore SDK, or StoreUnavailable when it cannot be loaded: the budget fails closed, never a 500."""
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
