"""One contract for every LogStore: the in-memory one, DynamoDB (boto3 against moto) and Tablestore (OTSClient
against the stand-in), the same behaviour."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace

import boto3
import pytest
from botocore.config import Config
from moto import mock_aws

from tests.conftest import REGION, create_budget_table
from waba_local.tablestore_stand_in import DEFAULT_ACCESS_KEY_ID, DEFAULT_ACCESS_KEY_SECRET, TablestoreStandIn
from waba_lookup.credentials import AccessKey, StaticCredentials
from waba_lookup.dynamodb import DynamoLogStore
from waba_lookup.log_store import LogStore, MemoryLogStore, StoreUnavailable
from waba_lookup.ots import TablestoreLogStore
from waba_lookup.sliding_log import LogRecord, Slot


@pytest.fixture(params=["memory", "dynamodb", "tablestore"])
def store(request: pytest.FixtureRequest) -> Iterator[LogStore]:
    if request.param == "memory":
        yield MemoryLogStore()
        return
    if request.param == "tablestore":
        with TablestoreStandIn() as stand_in:
            stand_in.create_table("budget")
            key = StaticCredentials(AccessKey(DEFAULT_ACCESS_KEY_ID, DEFAULT_ACCESS_KEY_SECRET))
            yield TablestoreLogStore(stand_in.endpoint, stand_in.instance, "budget", "account-a", key)
        return
    with mock_aws():
        client = boto3.client("dynamodb", region_name=REGION)
        create_budget_table(client, "budget")
        yield DynamoLogStore("budget", "account-a", client)


def with_slot(record: LogRecord, index: int, slot: Slot, version: str) -> LogRecord:
    slots = record.slots[:index] + (slot,) + record.slots[index + 1 :]
    return replace(record, slots=slots, version=version)


def test_an_unwritten_record_reads_empty(store: LogStore) -> None:
    assert store.load() == LogRecord()


def test_a_record_reads_back_as_written(store: LogStore) -> None:
    record = with_slot(LogRecord(), 3, Slot("p1", 1000.25, 1007.25, False, True), "v1")
    record = replace(record, next_send=1000.35, rate_max=7.5, throttled_at=990.5, reads_at=999.0)
    record = replace(record, reads_waiting_until=1000.5, reads_at=980.125)
    assert store.replace(record, "") is None
    assert store.load() == record


def test_a_write_against_an_old_version_loses_and_returns_the_record_as_it_is(store: LogStore) -> None:
    first = with_slot(LogRecord(), 0, Slot("p1", 1000.0, 1007.0, False, False), "v1")
    assert store.replace(first, "") is None
    second = with_slot(first, 1, Slot("p2", 1000.1, 1007.1, False, False), "v2")
    assert store.replace(second, "v1") is None
    stale = with_slot(first, 1, Slot("p3", 1000.2, 1007.2, False, False), "v3")
    assert store.replace(stale, "v1") == second
    assert store.replace(replace(first, version="v4"), "") == second  # "not yet stored" is a version too
    assert store.load() == second


def test_an_answer_updates_only_its_own_slot_and_the_version(store: LogStore) -> None:
    record = with_slot(LogRecord(), 2, Slot("p1", 1000.0, 1007.0, False, False), "v1")
    record = with_slot(record, 5, Slot("p2", 1000.1, 1007.1, False, True), "v1")
    store.replace(record, "")
    after = store.answer(2, "p1", 1001.5, "v2")
    expected = with_slot(record, 2, Slot("p1", 1000.0, 1001.5, True, False), "v2")
    assert after == expected == store.load()


def test_an_answer_for_a_slot_that_has_moved_on_changes_nothing(store: LogStore) -> None:
    record = with_slot(LogRecord(), 2, Slot("p9", 1010.0, 1017.0, False, False), "v1")
    store.replace(record, "")
    assert store.answer(2, "p1", 1001.5, "v2") is None
    assert store.load() == record


def test_the_record_is_per_account() -> None:
    with mock_aws():
        client = boto3.client("dynamodb", region_name=REGION)
        create_budget_table(client, "budget")
        a, b = DynamoLogStore("budget", "account-a", client), DynamoLogStore("budget", "account-b", client)
        a.replace(with_slot(LogRecord(), 0, Slot("p1", 1000.0, 1007.0, False, False), "v1"), "")
        assert b.load() == LogRecord()


def test_a_missing_table_or_unreachable_dynamodb_is_store_unavailable() -> None:
    with mock_aws():
        client = boto3.client("dynamodb", region_name=REGION)
        with pytest.raises(StoreUnavailable, match="ResourceNotFoundException"):
            DynamoLogStore("no-such-table", "account-a", client).load()
    unreachable = boto3.client(
        "dynamodb",
        region_name=REGION,
        endpoint_url="http://127.0.0.1:9",  # the discard port: nothing listens
        config=Config(connect_timeout=0.5, retries={"total_max_attempts": 1}),
    )
    with pytest.raises(StoreUnavailable, match="EndpointConnectionError"):
        DynamoLogStore("budget", "account-a", unreachable).load()
