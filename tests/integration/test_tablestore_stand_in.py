"""The local Tablestore (OTS) stand-in, driven by the real `tablestore` SDK (`OTSClient`) over real HTTP.

Every case goes through the SDK's own signer, protobuf and PlainBuffer encoders and decoders, response checks
(MD5, date, signature) and error parsing, so what passes here is what a store built on the SDK will see. The
stand-in's codec and signature checks are independent of the SDK (stdlib only). Time is the stand-in's injected
clock, moved instead of slept through, except for slow answers."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from typing import Any
from urllib.error import HTTPError

import pytest
import tablestore as ots
import tablestore.protobuf.table_store_pb2 as pb2
import urllib3

from tests.support import WRONG_TOKEN, assert_control_refuses, control, no_secret_leaves, stand_in_cli
from tests.support import OffsetClock as Clock
from waba_local.stand_ins import tablestore_protocol, tablestore_stand_in
from waba_local.stand_ins.tablestore_protocol import OtsError, encode_row, parse_row
from waba_local.stand_ins.tablestore_stand_in import (
    DEFAULT_ACCESS_KEY_ID,
    DEFAULT_ACCESS_KEY_SECRET,
    INSTANCE,
    TablestoreStandIn,
)

TABLE = "waba_budget"
KEY = [("pk", "budget/123")]
STS_ID, STS_SECRET, STS_TOKEN = "STS.NUlocalOtsKey", "sts-secret-do-not-leak", "CAIS-ots-token-do-not-leak"


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def stand_in(clock: Clock) -> Iterator[TablestoreStandIn]:
    with TablestoreStandIn(clock=clock) as server:
        server.create_table(TABLE)
        yield server
        assert server.internal_errors == []  # no answer was a 500 of the stand-in's own making


def client_for(
    server: TablestoreStandIn | str,
    key_id: str = DEFAULT_ACCESS_KEY_ID,
    secret: str = DEFAULT_ACCESS_KEY_SECRET,
    token: str | None = None,
    instance: str = INSTANCE,
    retry_policy: Any = None,
    **kwargs: Any,
) -> Any:
    """A fail-fast OTSClient: no retries, a 2 s socket timeout (connect and each read)."""
    endpoint = server if isinstance(server, str) else server.endpoint
    kwargs.setdefault("socket_timeout", 2.0)
    return ots.OTSClient(
        endpoint,
        key_id,
        secret,
        instance,
        sts_token=token,
        retry_policy=retry_policy or ots.NoRetryPolicy(),
        **kwargs,
    )


@pytest.fixture
def client(stand_in: TablestoreStandIn) -> Any:
    return client_for(stand_in)


def service_error(call: Callable[[], Any]) -> ots.OTSServiceError:
    with pytest.raises(ots.OTSServiceError) as excinfo:
        call()
    return excinfo.value


def row(columns: list[tuple[str, Any]] | dict[str, Any], key: list[tuple[str, Any]] = KEY) -> ots.Row:
    return ots.Row(key, columns)


def expect(expectation: str, column: Any = None) -> ots.Condition:
    return ots.Condition(getattr(ots.RowExistenceExpectation, expectation), column)


def equal(column: str, value: Any, pass_if_missing: bool = False) -> ots.SingleColumnCondition:
    return ots.SingleColumnCondition(column, value, ots.ComparatorType.EQUAL, pass_if_missing=pass_if_missing)


def get(client: Any, key: list[tuple[str, Any]] = KEY, **kwargs: Any) -> Any:
    kwargs.setdefault("max_version", 1)
    return client.get_row(TABLE, key, **kwargs)


class Wire:
    """Spy on (or change) what an OTSClient sends and receives: (url, headers, body) -> (status, headers, body)."""

    def __init__(self, client: Any, change: Callable[[str, dict[str, str], bytes], bytes] | None = None) -> None:
        self.client, self.connection = client, client.connection
        self.send = self.connection.send_receive
        self.change = change
        self.sent: list[dict[str, str]] = []
        self.received: list[tuple[int, dict[str, str], bytes]] = []
        self.connection.send_receive = self

    def __call__(self, url: str, headers: dict[str, str], body: bytes) -> Any:
        self.sent.append(dict(headers))
        if self.change is not None:
            body = self.change(url, headers, body)
        status, reason, answer_headers, answer_body = self.send(url, headers, body)
        self.received.append((status, answer_headers, answer_body))
        return status, reason, answer_headers, answer_body


# --- tables -------------------------------------------------------------------------------------------------------


def test_create_describe_list_and_delete_tables(stand_in: TablestoreStandIn, client: Any) -> None:
    meta = ots.TableMeta("waba_other", [("pk", "STRING"), ("n", "INTEGER")])
    client.create_table(meta, ots.TableOptions(), ots.ReservedThroughput(ots.CapacityUnit(0, 0)))
    assert client.list_table() == ("waba_budget", "waba_other")
    described = client.describe_table("waba_other")
    assert described.table_meta.schema_of_primary_key == [("pk", "STRING"), ("n", "INTEGER")]
    options = described.table_options
    assert (options.time_to_live, options.max_version, options.max_time_deviation) == (-1, 1, 86400)
    assert described.reserved_throughput_details.capacity_unit.read == 0

    error = service_error(
        lambda: client.create_table(meta, ots.TableOptions(), ots.ReservedThroughput(ots.CapacityUnit(0, 0)))
    )
    assert (error.get_http_status(), error.get_error_code(), error.get_error_message()) == (
        409,
        "OTSObjectAlreadyExist",
        "Requested table already exists.",
    )
    hyphenated = ots.TableMeta("waba-budget", [("pk", "STRING")])  # Tablestore allows letters, digits and _ only
    error = service_error(
        lambda: client.create_table(hyphenated, ots.TableOptions(), ots.ReservedThroughput(ots.CapacityUnit(0, 0)))
    )
    assert (error.get_http_status(), error.get_error_code()) == (400, "OTSParameterInvalid")
    assert error.get_error_message() == "Invalid table name: waba-budget."
    with pytest.raises(OtsError, match="OTSParameterInvalid"):
        stand_in.create_table("waba-lookup-local-budget")  # the local API refuses it too

    client.delete_table("waba_other")
    error = service_error(lambda: client.describe_table("waba_other"))
    assert (error.get_http_status(), error.get_error_code(), error.get_error_message()) == (
        404,
        "OTSObjectNotExist",
        "Requested table does not exist.",
    )
    assert [r.operation for r in stand_in.requests] == [
        "CreateTable",
        "ListTable",
        "DescribeTable",
        "CreateTable",
        "CreateTable",
        "DeleteTable",
        "DescribeTable",
    ]
    assert stand_in.requests[0].table == "waba_other" and stand_in.count(status=200) == 4


# --- rows ---------------------------------------------------------------------------------------------------------


def test_put_and_get_every_column_type(stand_in: TablestoreStandIn, client: Any, clock: Clock) -> None:
    columns = [("v", "1"), ("n", -7), ("e", 1700000000.123456), ("a", True), ("b", bytearray(b"\x00\xff")), ("s", "ñ")]
    consumed, returned = client.put_row(TABLE, row(columns), expect("EXPECT_NOT_EXIST"))
    assert returned is None and (consumed.read, consumed.write) == (1, 1)

    consumed, found, token = get(client)
    assert found.primary_key == KEY and token == b""
    assert {name: value for name, value, _ in found.attribute_columns} == {
        "a": True,
        "b": bytearray(b"\x00\xff"),
        "e": 1700000000.123456,
        "n": -7,
        "s": "ñ",
        "v": "1",
    }
    assert [name for name, _, _ in found.attribute_columns] == ["a", "b", "e", "n", "s", "v"]  # by name
    assert all(abs(stamp / 1000 - clock()) < 5 for _, _, stamp in found.attribute_columns)  # versions: ms
    assert stand_in.rows(TABLE) == {"budget/123": dict(columns[:4] + [("b", b"\x00\xff"), ("s", "ñ")])}

    _, some, _ = get(client, columns_to_get=["v", "a", "not-there"])
    assert [(name, value) for name, value, _ in some.attribute_columns] == [("a", True), ("v", "1")]
    assert get(client, columns_to_get=["not_there"])[1] is None  # none of the columns asked for: no row

    consumed, missing, token = get(client, key=[("pk", "budget/none")])
    assert missing is None and token == b"" and consumed.read == 1  # (CapacityUnit, None, b"")
    assert [(r.operation, r.table, r.status, r.code) for r in stand_in.requests] == [
        ("PutRow", TABLE, 200, ""),
        ("GetRow", TABLE, 200, ""),
        ("GetRow", TABLE, 200, ""),
        ("GetRow", TABLE, 200, ""),
        ("GetRow", TABLE, 200, ""),
    ]


def test_update_row_put_delete_all_and_return_types(stand_in: TablestoreStandIn, client: Any) -> None:
    client.put_row(TABLE, row([("v", "1"), ("h0", "holder"), ("e0", 1.5)]), expect("IGNORE"))
    consumed, returned = client.update_row(
        TABLE, row({"PUT": [("v", "2"), ("a0", True)], "DELETE_ALL": ["h0", "never_there"]}), expect("EXPECT_EXIST")
    )
    assert returned is None and consumed.write == 1
    assert stand_in.rows(TABLE) == {"budget/123": {"a0": True, "e0": 1.5, "v": "2"}}

    _, returned = client.update_row(TABLE, row({"PUT": [("v", "3")]}), expect("IGNORE"), ots.ReturnType.RT_PK)
    assert returned.primary_key == KEY and returned.attribute_columns == []
    _, returned = client.put_row(TABLE, row([("v", "4")]), expect("IGNORE"), ots.ReturnType.RT_PK)
    assert returned.primary_key == KEY and stand_in.rows(TABLE)["budget/123"] == {"v": "4"}  # PutRow replaces

    other = [("pk", "budget/other")]
    client.update_row(TABLE, row({"PUT": [("v", "1")]}, other), expect("IGNORE"))  # creates the row
    client.update_row(TABLE, row({"INCREMENT": [("n", 5)]}, other), expect("IGNORE"))
    client.update_row(TABLE, row({"INCREMENT": [("n", 2)], "DELETE_ALL": ["v"]}, other), expect("IGNORE"))
    assert stand_in.rows(TABLE)["budget/other"] == {"n": 7}
    _, _, stamp = get(client, other)[1].attribute_columns[0]
    client.update_row(TABLE, row({"DELETE": [("n", None, stamp)]}, other), expect("IGNORE"))  # that one version
    assert stand_in.rows(TABLE)["budget/other"] == {}  # the row stays, with no column

    client.delete_row(TABLE, ots.Row(other), expect("EXPECT_EXIST"))
    assert list(stand_in.rows(TABLE)) == ["budget/123"]
    error = service_error(lambda: client.update_row(TABLE, row({"PUT": [("pk", "x")]}), expect("IGNORE")))
    assert error.get_error_message() == "Duplicated attribute column name with primary key column:pk."
    error = service_error(lambda: client.put_row(TABLE, row([("bad-name", 1)]), expect("IGNORE")))
    assert (error.get_error_code(), error.get_error_message()) == (
        "OTSParameterInvalid",
        "Invalid column name: bad-name.",
    )


def test_a_failed_expectation_leaves_the_row_and_returns_nothing(stand_in: TablestoreStandIn, client: Any) -> None:
    client.put_row(TABLE, row([("v", "1")]), expect("EXPECT_NOT_EXIST"))
    wire = Wire(client)
    error = service_error(lambda: client.put_row(TABLE, row([("v", "2")]), expect("EXPECT_NOT_EXIST")))
    assert (error.get_http_status(), error.get_error_code(), error.get_error_message()) == (
        403,
        "OTSConditionCheckFail",
        "Condition check failed.",
    )
    assert error.get_request_id() == stand_in.requests[-1].request_id
    assert re.fullmatch(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", error.get_request_id())
    _, headers, body = wire.received[-1]
    assert [field.name for field, _ in pb2.Error.FromString(body).ListFields()] == ["code", "message"]  # no row
    assert headers["Authorization"].startswith(f"OTS {DEFAULT_ACCESS_KEY_ID}:")  # signed: the SDK checked it
    assert stand_in.rows(TABLE) == {"budget/123": {"v": "1"}}

    missing = [("pk", "budget/none")]
    for call in (
        lambda: client.update_row(TABLE, row({"PUT": [("v", "1")]}, missing), expect("EXPECT_EXIST")),
        lambda: client.delete_row(TABLE, ots.Row(missing), expect("EXPECT_EXIST")),
    ):
        assert service_error(call).get_error_code() == "OTSConditionCheckFail"
    client.put_row(TABLE, row([("v", "9")]), expect("IGNORE"))
    assert stand_in.rows(TABLE) == {"budget/123": {"v": "9"}}
    assert stand_in.count(status=403) == 3 and stand_in.count("PutRow", 200) == 2


def test_version_column_conditions(stand_in: TablestoreStandIn, client: Any) -> None:
    client.put_row(TABLE, row([("v", "1"), ("n", 3)]), expect("EXPECT_NOT_EXIST"))
    client.put_row(TABLE, row([("v", "2"), ("n", 3)]), expect("EXPECT_EXIST", equal("v", "1")))
    error = service_error(lambda: client.put_row(TABLE, row([("v", "3")]), expect("EXPECT_EXIST", equal("v", "1"))))
    assert error.get_error_code() == "OTSConditionCheckFail"  # someone else moved it on: v is "2"
    assert stand_in.rows(TABLE)["budget/123"]["v"] == "2"

    missing = equal("h0", "me")
    assert (
        service_error(
            lambda: client.update_row(TABLE, row({"PUT": [("a0", True)]}), expect("EXPECT_EXIST", missing))
        ).get_error_code()
        == "OTSConditionCheckFail"
    )  # pass_if_missing=False: a missing column fails
    client.update_row(TABLE, row({"PUT": [("a0", True)]}), expect("IGNORE", equal("h0", "me", pass_if_missing=True)))
    assert stand_in.rows(TABLE)["budget/123"]["a0"] is True

    integer = ots.SingleColumnCondition("n", 2, ots.ComparatorType.GREATER_THAN, pass_if_missing=False)
    client.update_row(TABLE, row({"PUT": [("x", 1)]}), expect("IGNORE", integer))
    for comparator, value in ((ots.ComparatorType.LESS_THAN, 3), (ots.ComparatorType.NOT_EQUAL, 3)):
        condition = ots.SingleColumnCondition("n", value, comparator, pass_if_missing=False)
        error = service_error(lambda: client.update_row(TABLE, row({"PUT": [("x", 2)]}), expect("IGNORE", condition)))  # noqa: B023
        assert error.get_error_code() == "OTSConditionCheckFail"
    assert (
        service_error(  # "3" is a STRING, n an INTEGER: not equal
            lambda: client.update_row(TABLE, row({"PUT": [("x", 3)]}), expect("IGNORE", equal("n", "3")))
        ).get_error_code()
        == "OTSConditionCheckFail"
    )
    assert stand_in.rows(TABLE)["budget/123"]["x"] == 1


def test_composite_conditions(stand_in: TablestoreStandIn, client: Any) -> None:
    client.put_row(TABLE, row([("v", "1"), ("h0", "me")]), expect("IGNORE"))

    def composite(operator: Any, *subs: Any) -> ots.CompositeColumnCondition:
        condition = ots.CompositeColumnCondition(operator)
        for sub in subs:
            condition.add_sub_condition(sub)
        return condition

    both = composite(ots.LogicalOperator.AND, equal("v", "1"), equal("h0", "me"))
    either = composite(ots.LogicalOperator.OR, equal("v", "9"), equal("h0", "me"))
    neither = composite(ots.LogicalOperator.NOT, composite(ots.LogicalOperator.OR, equal("v", "9"), equal("h0", "x")))
    for n, condition in enumerate((both, either, neither)):
        client.update_row(TABLE, row({"PUT": [("n", n)]}), expect("EXPECT_EXIST", condition))
    wrong = composite(ots.LogicalOperator.AND, equal("v", "1"), equal("h0", "someone else"))
    not_both = composite(ots.LogicalOperator.NOT, both)
    for condition in (wrong, not_both):
        error = service_error(lambda: client.update_row(TABLE, row({"PUT": [("n", 9)]}), expect("IGNORE", condition)))  # noqa: B023
        assert error.get_error_code() == "OTSConditionCheckFail"
    assert stand_in.rows(TABLE)["budget/123"]["n"] == 2

    lonely = composite(ots.LogicalOperator.AND, equal("v", "1"))
    error = service_error(lambda: client.update_row(TABLE, row({"PUT": [("n", 9)]}), expect("IGNORE", lonely)))
    assert (error.get_http_status(), error.get_error_message()) == (
        400,
        "Invalid AND/OR operator: the number of sub-filters must be 2.",
    )


def test_missing_tables_and_wrong_keys(stand_in: TablestoreStandIn, client: Any) -> None:
    for call in (
        lambda: client.get_row("no_such_table", KEY, max_version=1),
        lambda: client.put_row("no_such_table", row([("v", "1")]), expect("IGNORE")),
        lambda: client.update_row("no_such_table", row({"PUT": [("v", "1")]}), expect("IGNORE")),
    ):
        error = service_error(call)
        assert (error.get_http_status(), error.get_error_code(), error.get_error_message()) == (
            404,
            "OTSObjectNotExist",
            "Requested table does not exist.",
        )
    assert {r.table for r in stand_in.requests} == {"no_such_table"}
    for key in ([("pk", 1)], [("id", "budget/1")], [("pk", "a"), ("sk", "b")]):
        error = service_error(lambda: client.get_row(TABLE, key, max_version=1))  # noqa: B023
        assert (error.get_http_status(), error.get_error_code(), error.get_error_message()) == (
            400,
            "OTSInvalidPK",
            "Primary key schema mismatch.",
        )
    error = service_error(lambda: client.get_row(TABLE, KEY, max_version=None))
    assert error.get_error_message() == "No version condition is specified while querying row."


# --- authentication -----------------------------------------------------------------------------------------------


def test_wrong_secret_unknown_key_and_wrong_instance(stand_in: TablestoreStandIn) -> None:
    for client, message in (
        (client_for(stand_in, secret="not-the-secret"), "Signature mismatch."),
        (client_for(stand_in, key_id="LTAI5tNobody"), "The AccessKeyID does not exist."),
        (client_for(stand_in, instance="other-instance"), "The instance is not found."),
    ):
        error = service_error(lambda: get(client))  # noqa: B023
        assert (error.get_http_status(), error.get_error_code(), error.get_error_message()) == (
            403,
            "OTSAuthFailed",
            message,
        )
    assert stand_in.requests[0].access_key_id == DEFAULT_ACCESS_KEY_ID
    assert stand_in.count(status=403) == 3 and stand_in.rows(TABLE) == {}


def test_sts_credentials(stand_in: TablestoreStandIn, clock: Clock) -> None:
    stand_in.add_sts(STS_ID, STS_SECRET, STS_TOKEN, expires_at=clock() + 60)
    client_for(stand_in, STS_ID, STS_SECRET, STS_TOKEN).put_row(TABLE, row([("v", "1")]), expect("IGNORE"))
    assert stand_in.requests[-1].access_key_id == STS_ID and stand_in.rows(TABLE) == {"budget/123": {"v": "1"}}

    for token, message in (
        (None, "The AccessKeyID does not exist."),
        ("CAIS-some-other-token", "The security token you provided is invalid."),
    ):
        error = service_error(lambda: get(client_for(stand_in, STS_ID, STS_SECRET, token)))  # noqa: B023
        assert (error.get_http_status(), error.get_error_code(), error.get_error_message()) == (
            403,
            "OTSAuthFailed",
            message,
        )
    clock.advance(61)
    error = service_error(lambda: get(client_for(stand_in, STS_ID, STS_SECRET, STS_TOKEN)))
    assert (error.get_error_code(), error.get_error_message()) == (
        "OTSAuthFailed",
        "The security token you provided has expired.",
    )
    error = service_error(lambda: get(client_for(stand_in, token=STS_TOKEN)))  # a long-term key with a token
    assert error.get_error_message() == "The AccessKeyID does not exist."


def test_v4_signatures_and_signed_answers(stand_in: TablestoreStandIn, monkeypatch: pytest.MonkeyPatch) -> None:
    v4 = client_for(stand_in, region="ap-southeast-1")
    wire = Wire(v4)
    v4.put_row(TABLE, row([("v", "1")]), expect("EXPECT_NOT_EXIST"))
    assert "x-ots-signaturev4" in wire.sent[0] and "x-ots-signature" not in wire.sent[0]
    assert service_error(
        lambda: get(client_for(stand_in, secret="wrong", region="ap-southeast-1"))
    ).get_error_code() == ("OTSAuthFailed")

    # The SDK checks the answers' signatures: one signed with the wrong key is refused by the client.
    sign = tablestore_protocol.response_signature
    monkeypatch.setattr(
        tablestore_protocol, "response_signature", lambda key, headers, path: sign(b"x" + key, headers, path)
    )
    with pytest.raises(ots.OTSClientError, match="Invalid signature in response"):
        get(client_for(stand_in))
    with pytest.raises(ots.OTSClientError, match="Invalid signature in response"):  # a 404 is checked too
        client_for(stand_in).get_row("no_such_table", KEY, max_version=1)


def test_dates_and_tampered_requests(stand_in: TablestoreStandIn, clock: Clock) -> None:
    clock.advance(16 * 60)
    with pytest.raises(ots.OTSClientError, match="more than 15 minutes"):  # the SDK refuses the answer's date too
        get(client_for(stand_in))
    last = stand_in.requests[-1]
    assert (last.status, last.code) == (403, "OTSAuthFailed")
    clock.advance(-16 * 60 - 14 * 60)
    get(client_for(stand_in))  # 14 minutes behind: accepted both ways
    clock.advance(14 * 60)

    tampered = client_for(stand_in)
    Wire(tampered, lambda url, headers, body: body + b"\x00")
    error = service_error(lambda: get(tampered))
    assert error.get_error_message() == "Mismatch between MD5 value of request body and x-ots-contentmd5 in header."

    for method, path, data, status, code in (
        ("POST", "/GetRow", b"", 400, "OTSParameterInvalid"),
        ("GET", "/GetRow", None, 405, "OTSMethodNotAllowed"),
    ):
        request = urllib.request.Request(f"{stand_in.endpoint}{path}", data=data, method=method)
        with pytest.raises(HTTPError) as http_error:
            urllib.request.urlopen(request, timeout=5)
        answer = pb2.Error.FromString(http_error.value.read())
        assert (http_error.value.code, answer.code) == (status, code)
        assert http_error.value.headers["x-ots-contenttype"] == "protocol buffer"
    assert answer.message == "OTSMethodNotAllowedOnly POST method for requests is supported."  # [sic]

    class Unserved:  # an operation the SDK knows and the stand-in does not serve, and one nobody knows
        @staticmethod
        def call(client: Any, action: str) -> ots.OTSServiceError:
            client.protocol.api_list.append(action)
            client.protocol.encoder.api_encode_map[action] = lambda: pb2.ListTableRequest()
            return service_error(lambda: client._request_helper(action))

    error = Unserved.call(client_for(stand_in), "BatchGetRow")
    assert (error.get_http_status(), error.get_error_code()) == (501, "OTSNotImplemented")
    error = Unserved.call(client_for(stand_in), "FlyToTheMoon")
    assert (error.get_http_status(), error.get_error_message()) == (400, "Unsupported operation: FlyToTheMoon.")
    assert stand_in.requests[-1].operation == "Unsupported"


def test_plainbuffer_checksums_are_checked() -> None:
    good = encode_row([("pk", "a")], [("v", "1", 1)])
    assert parse_row(good).primary_key == (("pk", "a"),)
    cell_broken = good.replace(
        b"\x01\x00\x00\x001", b"\x01\x00\x00\x002"
    )  # the value "1" becomes "2" under the same cell checksum
    with pytest.raises(OtsError) as excinfo:
        parse_row(cell_broken)
    assert excinfo.value.message.startswith("Cell data broken, checksum is mismatch")
    with pytest.raises(OtsError, match="OTSParameterInvalid"):
        parse_row(good[:-1] + bytes([good[-1] ^ 1]))  # the row checksum


# --- faults -------------------------------------------------------------------------------------------------------


def test_fail_scoped_to_an_operation_then_cleared(stand_in: TablestoreStandIn, client: Any) -> None:
    stand_in.fail(times=None, operation="PutRow")  # OTSServerBusy, 503: Tablestore's throttling answer
    get(client)  # another operation: not affected
    for _ in range(2):
        error = service_error(lambda: client.put_row(TABLE, row([("v", "1")]), expect("IGNORE")))
        assert (error.get_http_status(), error.get_error_code(), error.get_error_message()) == (
            503,
            "OTSServerBusy",
            "Server is busy.",
        )
        assert error.get_request_id() == stand_in.requests[-1].request_id
    stand_in.clear_faults()
    client.put_row(TABLE, row([("v", "1")]), expect("IGNORE"))
    assert stand_in.faults == [] and stand_in.count("PutRow", 503) == 2 and stand_in.count("PutRow", 200) == 1

    stand_in.fail(times=1, status=409, code="OTSRowOperationConflict", operation="UpdateRow")
    error = service_error(lambda: client.update_row(TABLE, row({"PUT": [("v", "2")]}), expect("IGNORE")))
    assert (error.get_http_status(), error.get_error_message()) == (409, "Data is being modified by the other request.")
    stand_in.fail(times=1, status=500, code="OTSInternalServerError")  # any operation
    assert service_error(lambda: get(client)).get_error_message() == "Internal server error."
    assert stand_in.rows(TABLE) == {"budget/123": {"v": "1"}}
    with pytest.raises(ValueError):
        stand_in.fail(operation="PutRows")  # a typo must not silently match nothing

    # The SDK's default policies retry OTSServerBusy on any operation, writes included (up to 20 times).
    stand_in.fail(times=2, operation="PutRow")
    client_for(stand_in, retry_policy=ots.NoDelayRetryPolicy()).put_row(TABLE, row([("v", "3")]), expect("IGNORE"))
    assert stand_in.count("PutRow") == 6 and stand_in.rows(TABLE)["budget/123"] == {"v": "3"}


def test_slow_answers_trip_the_socket_timeout(stand_in: TablestoreStandIn) -> None:
    hasty = client_for(stand_in, socket_timeout=0.3)
    stand_in.slow(0.8, times=1, operation="PutRow")
    started = time.monotonic()
    with pytest.raises(urllib3.exceptions.ReadTimeoutError):  # urllib3's own: the SDK does not wrap it
        hasty.put_row(TABLE, row([("v", "late")]), expect("IGNORE"))
    assert 0.25 < time.monotonic() - started < 0.7
    get(hasty)  # only one was slow; the client reconnected by itself
    time.sleep(0.6)
    assert stand_in.rows(TABLE) == {"budget/123": {"v": "late"}}  # served after the client gave up: written anyway

    stand_in.slow(0.2)  # until cleared, any operation
    split = client_for(stand_in, socket_timeout=urllib3.Timeout(connect=0.5, read=1.0))
    started = time.monotonic()
    get(split)
    get(split)
    assert time.monotonic() - started >= 0.4
    stand_in.clear_faults()
    assert stand_in.faults == []


def test_dropped_connections(stand_in: TablestoreStandIn, client: Any) -> None:
    stand_in.drop(times=1, operation="PutRow")
    with pytest.raises(urllib3.exceptions.ProtocolError):  # no retry of a POST, by urllib3 or the SDK
        client.put_row(TABLE, row([("v", "1")]), expect("IGNORE"))
    assert stand_in.rows(TABLE) == {}  # dropped before anything was done
    client.put_row(TABLE, row([("v", "1")]), expect("IGNORE"))
    assert [(r.operation, r.status, r.code) for r in stand_in.requests] == [
        ("PutRow", 0, "Dropped"),
        ("PutRow", 200, ""),
    ]


def test_http_control_plane(stand_in: TablestoreStandIn, client: Any) -> None:
    fault = {"kind": "fail", "times": 1, "status": 503, "code": "OTSTimeout", "operation": "GetRow"}
    assert control(stand_in, "POST", "faults", fault)["faults"][0]["code"] == "OTSTimeout"
    error = service_error(lambda: get(client))
    assert (error.get_http_status(), error.get_error_message()) == (503, "Operation timeout.")
    control(stand_in, "POST", "faults", {"kind": "drop", "times": None})
    assert len(control(stand_in, "GET", "faults")["faults"]) == 1
    assert control(stand_in, "DELETE", "faults") == {"faults": []}

    assert control(stand_in, "POST", "tables", {"name": "made_over_http"}) == {"name": "made_over_http"}
    control(stand_in, "POST", "tables/made_over_http/rows", {"primary_key": "k", "columns": {"v": 1, "a": True}})
    _, found, _ = client.get_row("made_over_http", [("pk", "k")], max_version=1)
    assert sorted((name, value) for name, value, _ in found.attribute_columns) == [("a", True), ("v", 1)]
    client.put_row(TABLE, row([("b", bytearray(b"\x01"))]), expect("IGNORE"))
    assert control(stand_in, "GET", f"tables/{TABLE}") == {
        "name": TABLE,
        "primary_key": [["pk", "STRING"]],
        "rows": [{"primary_key": "budget/123", "columns": {"b": {"binary": "AQ=="}}}],
    }
    assert control(stand_in, "GET", "tables") == {"tables": ["made_over_http", TABLE]}
    assert [(r["operation"], r["status"]) for r in control(stand_in, "GET", "requests")] == [
        ("GetRow", 503),
        ("GetRow", 200),
        ("PutRow", 200),
    ]
    assert_control_refuses(
        stand_in,
        ("POST", "tables", {"name": "bad-name"}, 400),
        ("POST", "tables/made_over_http/rows", {"primary_key": 1}, 400),
        ("POST", "tables/made_over_http/rows", {"primary_key": "k", "columns": {"v": [1]}}, 400),
        ("GET", "tables/no_such_table", None, 404),
        ("GET", "nothing-here", None, 404),
    )
    control(stand_in, "DELETE", "requests")
    assert stand_in.requests == []


# --- atomicity ----------------------------------------------------------------------------------------------------


def test_concurrent_conditional_writes_never_both_succeed(stand_in: TablestoreStandIn) -> None:
    """Each round, every thread (with its own client and connection) tries to move v from the same version: exactly
    one may win, whichever it is, and the row holds the winner's write."""
    threads, rounds = 8, 12
    client_for(stand_in).put_row(TABLE, row([("v", "0"), ("writer", -1)]), expect("EXPECT_NOT_EXIST"))
    barrier = threading.Barrier(threads)
    wins: list[tuple[int, int]] = []  # (round, thread)
    failures: list[BaseException] = []

    def contend(me: int) -> None:
        client = client_for(stand_in)
        try:
            for version in range(rounds):
                barrier.wait(timeout=10)
                change = row({"PUT": [("v", str(version + 1)), ("writer", me)]})
                try:
                    client.update_row(TABLE, change, expect("EXPECT_EXIST", equal("v", str(version))))
                    wins.append((version, me))
                except ots.OTSServiceError as error:
                    assert error.get_error_code() == "OTSConditionCheckFail"
                barrier.wait(timeout=10)
        except BaseException as error:  # noqa: BLE001 - reported below
            failures.append(error)
            barrier.abort()

    workers = [threading.Thread(target=contend, args=(n,)) for n in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=30)
    assert failures == []
    assert sorted(version for version, _ in wins) == list(range(rounds))  # one win a round, never two
    assert stand_in.rows(TABLE)["budget/123"] == {"v": str(rounds), "writer": wins[-1][1]}
    assert stand_in.count("UpdateRow", 200) == rounds and stand_in.count("UpdateRow", 403) == rounds * (threads - 1)


# --- no secrets out -----------------------------------------------------------------------------------------------


def test_no_secret_token_or_signature_leaves_the_stand_in(
    stand_in: TablestoreStandIn, capfd: pytest.CaptureFixture[str]
) -> None:
    sts = (STS_ID, STS_SECRET, STS_TOKEN)
    with no_secret_leaves(stand_in, capfd, sts, DEFAULT_ACCESS_KEY_SECRET, views=(f"tables/{TABLE}",)) as tap:
        wires = [
            Wire(client_for(stand_in)),
            Wire(client_for(stand_in, STS_ID, STS_SECRET, STS_TOKEN)),
            Wire(client_for(stand_in, STS_ID, STS_SECRET, WRONG_TOKEN)),
            Wire(client_for(stand_in, secret="wrong-" + DEFAULT_ACCESS_KEY_SECRET, region="ap-southeast-1")),
        ]
        for client in (wire.client for wire in wires):
            for call in (
                lambda: client.put_row(TABLE, row([("v", "1")]), expect("IGNORE")),  # noqa: B023
                lambda: get(client),  # noqa: B023
                lambda: client.put_row(TABLE, row([("v", "2")]), expect("EXPECT_NOT_EXIST")),  # noqa: B023
            ):
                try:
                    call()
                except ots.OTSServiceError:
                    pass
        signatures = [h.get("x-ots-signature") or h.get("x-ots-signaturev4") for w in wires for h in w.sent]
        assert all(signatures)
        tap.signatures += signatures
        tap.answers += [json.dumps(headers) + body.decode("latin-1") for w in wires for _, headers, body in w.received]


def test_cli_serves_and_prints_no_secret() -> None:
    tables = ("--table", TABLE, "waba_other")
    with stand_in_cli("tablestore_stand_in", *tables, lines=9, secret=DEFAULT_ACCESS_KEY_SECRET) as (banner, endpoint):
        assert f"TABLESTORE_ENDPOINT={endpoint}\n" in banner and f"TABLESTORE_INSTANCE={INSTANCE}\n" in banner
        assert f"ALIBABA_CLOUD_ACCESS_KEY_ID={DEFAULT_ACCESS_KEY_ID}\n" in banner
        client = client_for(endpoint)
        client.put_row(TABLE, row([("v", "from the cli")]), expect("EXPECT_NOT_EXIST"))
        assert get(client)[1].attribute_columns[0][:2] == ("v", "from the cli")
        assert control(endpoint, "GET", "tables/waba_other")["rows"] == []

    refused = subprocess.run(
        [sys.executable, "-m", "waba_local.stand_ins.tablestore_stand_in", "--port", "0", "--table", "waba-budget"],
        check=False,
        capture_output=True,
        text=True,
        timeout=10,
    )
    assert refused.returncode == 2 and "Invalid table name: waba-budget." in refused.stderr


@pytest.mark.skipif(
    not os.environ.get("WABA_OTS_NATIVE_PYTHON"),
    reason="set WABA_OTS_NATIVE_PYTHON to a python3.12 with tablestore installed (its native C++ codec)",
)
def test_the_sdks_native_codec_under_python312(stand_in: TablestoreStandIn) -> None:
    """On python3.12 (FC's runtime) the SDK encodes and decodes with its C++ extension, not its Python code."""
    script = f"""
import tablestore as ots
c = ots.OTSClient({stand_in.endpoint!r}, {DEFAULT_ACCESS_KEY_ID!r}, {DEFAULT_ACCESS_KEY_SECRET!r}, {INSTANCE!r},
                  retry_policy=ots.NoRetryPolicy())
assert c.protocol.encoder._use_native_encoder and c.protocol.decoder._use_native_decoder
key = [("pk", "native")]
c.put_row({TABLE!r}, ots.Row(key, [("v", "1"), ("n", 2), ("e", 0.5), ("a", True), ("b", bytearray(b"x"))]))
cond = ots.SingleColumnCondition("v", "1", ots.ComparatorType.EQUAL, pass_if_missing=False)
c.update_row({TABLE!r}, ots.Row(key, {{"PUT": [("v", "2")], "DELETE_ALL": ["b"], "INCREMENT": [("n", 1)]}}),
             ots.Condition(ots.RowExistenceExpectation.EXPECT_EXIST, cond))
try:
    c.update_row({TABLE!r}, ots.Row(key, {{"PUT": [("v", "3")]}}), ots.Condition(ots.RowExistenceExpectation.EXPECT_EXIST, cond))
    raise SystemExit("the condition passed")
except ots.OTSServiceError as error:
    assert error.get_error_code() == "OTSConditionCheckFail"
_, found, _ = c.get_row({TABLE!r}, key, max_version=1)
print(sorted((name, value) for name, value, _ in found.attribute_columns))
"""
    done = subprocess.run(
        [os.environ["WABA_OTS_NATIVE_PYTHON"], "-c", script], check=False, capture_output=True, text=True, timeout=30
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[('a', True), ('e', 0.5), ('n', 3), ('v', '2')]"
    assert stand_in.count(status=200) == 3 and stand_in.count("UpdateRow", 403) == 1


def test_the_stand_in_needs_no_sdk() -> None:
    """The stand-in is stdlib only: it starts fast and checks the SDK rather than trusting it."""
    code = "import sys, waba_local.stand_ins.tablestore_stand_in; print(any(m.startswith('tablestore') for m in sys.modules))"
    done = subprocess.run([sys.executable, "-c", code], check=False, capture_output=True, text=True, timeout=10)
    assert done.stdout.strip() == "False"
    assert tablestore_stand_in.MAX_BODY > 0


def test_loading_the_sdk_through_the_budget_prints_no_codec_warning() -> None:
    """Without its native codec the SDK warns on stderr at import, in every process that loads it (make serve's,
    the bench's, a function's cold start): the budget loads it quietly."""
    import subprocess
    import sys

    code = "from waba_lookup.budget.tablestore import _sdk; _sdk()"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "Native C++" not in done.stderr + done.stdout
