"""One contract for every LogStore: the in-memory one, DynamoDB (boto3 against moto) and Tablestore (OTSClient
against the stand-in), the same behaviour."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import replace

import boto3
import pytest
from botocore.config import Config
from moto import mock_aws

from tests.support import REGION, create_budget_table
from waba_local.stand_ins.tablestore_stand_in import DEFAULT_ACCESS_KEY_ID, DEFAULT_ACCESS_KEY_SECRET, TablestoreStandIn
from waba_lookup.budget.dynamodb import DynamoLogStore
from waba_lookup.budget.log import LogRecord, Slot, Ticket
from waba_lookup.budget.store import Expect, LogStore, MemoryLogStore, StoreUnavailable, slot_columns, ticket_column
from waba_lookup.budget.tablestore import TablestoreLogStore
from waba_lookup.credentials import AccessKey, StaticCredentials


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


SLOT = Slot("p1", 1000.25, 1007.25, False, True)


def test_an_unwritten_record_reads_empty(store: LogStore) -> None:
    assert store.load() == LogRecord()


def test_a_record_reads_back_as_written(store: LogStore) -> None:
    ticket = Ticket("t1", True, 1000.125, 1001.5)
    put = slot_columns(3, SLOT) | dict([ticket_column(ticket)])
    put |= {"ns": 1000.35, "lv": 7.0, "bs": 6.0, "ta": 990.5, "pf": 992.5, "st": 2.0, "nf": 1.0, "ra": 980.125}
    assert store.update(put) is None
    slots = tuple(SLOT if i == 3 else s for i, s in enumerate(LogRecord().slots))
    level = {"level": 7.0, "base": 6.0, "changed_at": 990.5, "probe_from": 992.5, "step": 2.0, "failures": 1.0}
    expected = LogRecord(slots, (ticket,), next_send=1000.35, reads_at=980.125, **level)
    assert store.load() == expected


def test_a_slot_is_taken_only_once_its_last_permit_has_expired(store: LogStore) -> None:
    free_by = [Expect("e2", "le", 1007.0, if_missing=True)]
    assert (
        store.update(slot_columns(2, replace(SLOT, holder="p1", expires=1007.0)), (), free_by) is None
    )  # no one held it
    assert store.update(slot_columns(2, replace(SLOT, holder="p2")), (), free_by) is None  # 1007 <= 1007
    lost = store.update(slot_columns(2, replace(SLOT, holder="p3")), (), free_by)  # p2's expires 1007.25
    assert lost is not None and lost.slots[2].holder == "p2"  # the failed write returns the record as it is
    assert store.load().slots[2].holder == "p2"


def test_every_expectation_must_hold(store: LogStore) -> None:
    store.update({"ns": 5.0, "ta": 2.0})
    both = [Expect("ns", "eq", 5.0), Expect("ta", "eq", 3.0)]
    assert store.update({"lv": 1.0}, (), both) is not None
    assert store.update({"lv": 1.0}, (), [Expect("ns", "eq", 5.0), Expect("ta", "le", 2.0)]) is None
    assert store.update({"lv": 2.0}, (), [Expect("xx", "eq", 1.0)]) is not None  # missing, and not if_missing
    assert store.update({"lv": 3.0}, (), [Expect("xx", "eq", 1.0, if_missing=True)]) is None
    assert store.load().level == 3.0


def test_an_answer_changes_only_its_own_slot_if_its_holder_still_holds_it(store: LogStore) -> None:
    store.update(slot_columns(2, SLOT) | slot_columns(5, replace(SLOT, holder="p2")))
    held = [Expect("h2", "eq", "p1")]
    assert store.update({"e2": 1001.5, "a2": True}, (), held) is None
    record = store.load()
    assert record.slots[2] == replace(SLOT, expires=1001.5, answered=True) and record.slots[5].holder == "p2"
    assert store.update({"e2": 1009.0, "a2": True}, (), [Expect("h2", "eq", "someone else")]) is not None
    assert store.load().slots[2].expires == 1001.5


def test_joining_and_leaving_the_line_touch_nothing_else(store: LogStore) -> None:
    first, second = Ticket("a1", False, 1000.0, 1003.0), Ticket("b2", True, 1000.5, 1002.0)
    store.update(slot_columns(0, SLOT))
    store.update(dict([ticket_column(first)]))
    store.update(dict([ticket_column(second)]))
    assert set(store.load().line) == {first, second}
    store.update({}, ("qa1", "qneverjoined"))
    record = store.load()
    assert record.line == (second,) and record.slots[0] == SLOT


def test_the_record_is_per_account() -> None:
    with mock_aws():
        client = boto3.client("dynamodb", region_name=REGION)
        create_budget_table(client, "budget")
        a, b = DynamoLogStore("budget", "account-a", client), DynamoLogStore("budget", "account-b", client)
        a.update(slot_columns(0, SLOT))
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


def test_a_join_on_tablestore_leaves_out_tickets_written_between_its_write_and_its_read(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Tablestore's UpdateRow returns no row, so a join reads it after: a ticket another instance wrote in between
    arrived after ours (a later cell version) and is not ahead of us, though its clock said it joined earlier."""
    with TablestoreStandIn() as stand_in:
        stand_in.create_table("budget")
        key = StaticCredentials(AccessKey(DEFAULT_ACCESS_KEY_ID, DEFAULT_ACCESS_KEY_SECRET))
        ours, theirs = (TablestoreLogStore(stand_in.endpoint, stand_in.instance, "budget", "a", key) for _ in "ab")
        before, mine, later = (
            Ticket(i, True, joined, 1005.0) for i, joined in (("b0", 1000.0), ("me", 1000.2), ("l1", 1000.1))
        )
        theirs.update(dict([ticket_column(before)]))
        request = ours._request

        def between(operation: str, *args: object, **kwargs: object) -> object:
            if operation == "get_row":
                time.sleep(0.002)  # the next millisecond, at least: the server's versions are milliseconds
                theirs.update(dict([ticket_column(later)]))
            return request(operation, *args, **kwargs)

        time.sleep(0.002)
        monkeypatch.setattr(ours, "_request", between)
        joined = ours.update(dict([ticket_column(mine)]), returning=True)
        assert joined is not None and {t.id for t in joined.line} == {"b0", "me"}
        assert {t.id for t in theirs.load().line} == {"b0", "me", "l1"}


def test_tablestore_joins_in_the_same_millisecond_are_ordered_by_name() -> None:
    """Cells written in one millisecond share a version: of two such joins, exactly one counts the other ahead."""
    frozen = time.time()
    with TablestoreStandIn(clock=lambda: frozen) as stand_in:
        stand_in.create_table("budget")
        key = StaticCredentials(AccessKey(DEFAULT_ACCESS_KEY_ID, DEFAULT_ACCESS_KEY_SECRET))
        store = TablestoreLogStore(stand_in.endpoint, stand_in.instance, "budget", "a", key)
        for ticket_id in ("a", "z"):
            store.update(dict([ticket_column(Ticket(ticket_id, True, 1000.0, 1005.0))]))
        joined = store.update(dict([ticket_column(Ticket("m", True, 1000.1, 1005.0))]), returning=True)
        assert joined is not None and {t.id for t in joined.line} == {"a", "m"}
