"""The local stand-ins behind `make demo`, `make serve` and `make bench`: moto's server one request at a time, the
shared budget's table, and the settings that point the package at them."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from waba_local.stand_ins import launch as stand_ins
from waba_local.stand_ins.local_aws import SerialMotoApp


@pytest.fixture(scope="module")
def local() -> Iterator[stand_ins.StandIns]:
    started = stand_ins.start(with_emulator=False)
    yield started
    started.stop()


class SlowApp:
    """A WSGI app that takes a while and remembers how many requests it ever held at once."""

    def __init__(self) -> None:
        self.inside = self.most = 0
        self._lock = threading.Lock()

    def __call__(self, environ: dict[str, Any], start_response: Any) -> list[bytes]:
        with self._lock:
            self.inside += 1
            self.most = max(self.most, self.inside)
        time.sleep(0.01)
        with self._lock:
            self.inside -= 1
        start_response("200 OK", [])
        return [b"ok"]


def test_serial_app_answers_one_request_at_a_time() -> None:
    # Given moto's app wrapped, as the stand-in wraps it
    inner = SlowApp()
    app = SerialMotoApp(inner)
    # When eight threads call it at once
    threads = [threading.Thread(target=app, args=({}, lambda status, headers: None)) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    # Then it never held two
    assert inner.most == 1


def test_serial_app_counts_requests_per_service_and_operation() -> None:
    app = SerialMotoApp(SlowApp())
    signed = "AWS4-HMAC-SHA256 Credential=local/20260101/ap-southeast-1/dynamodb/aws4_request, SignedHeaders=host"
    app({"HTTP_AUTHORIZATION": signed, "HTTP_X_AMZ_TARGET": "DynamoDB_20120810.PutItem"}, lambda *_: None)
    app({"HTTP_AUTHORIZATION": signed.replace("dynamodb", "s3")}, lambda *_: None)
    assert app.requests == {"dynamodb": 1, "dynamodb:PutItem": 1, "s3": 1}


def test_budget_table_is_created_as_the_template_declares_it(local: stand_ins.StandIns) -> None:
    table = local.client("dynamodb").describe_table(TableName=local.budget_table)["Table"]
    assert table["KeySchema"] == [{"AttributeName": "pk", "KeyType": "HASH"}]
    assert table["AttributeDefinitions"] == [{"AttributeName": "pk", "AttributeType": "S"}]
    assert table["BillingModeSummary"]["BillingMode"] == "PAY_PER_REQUEST"


def test_environment_selects_the_shared_budget(local: stand_ins.StandIns) -> None:
    env = local.environment()
    assert env["CAMS_BUDGET_TABLE"] == local.budget_table
    assert env["CAMS_INTERACTIVE_RESERVE"] == "2"
    assert env["AWS_ENDPOINT_URL"] == local.aws_endpoint
    assert "CAMS_BUDGET_TABLE" not in local.environment(aws=False)  # real AWS: the user's own table, if any


def test_conditional_writes_racing_on_one_item_have_one_winner(local: stand_ins.StandIns) -> None:
    # Given one item, and sixteen clients that all read version "0"
    key = {"pk": {"S": "race"}}
    local.client("dynamodb").put_item(TableName=local.budget_table, Item=key | {"v": {"S": "0"}})
    clients = [local.client("dynamodb") for _ in range(16)]
    start, winners = threading.Barrier(16), []

    def replace(i: int) -> None:
        start.wait()
        try:
            clients[i].put_item(
                TableName=local.budget_table,
                Item=key | {"v": {"S": f"writer-{i}"}},
                ConditionExpression="v = :v",
                ExpressionAttributeValues={":v": {"S": "0"}},
            )
            winners.append(i)
        except clients[i].exceptions.ConditionalCheckFailedException:
            pass

    # When they all replace it, conditionally on that version, at once
    threads = [threading.Thread(target=replace, args=(i,)) for i in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    # Then exactly one wins, and the item is the winner's
    item = local.client("dynamodb").get_item(TableName=local.budget_table, Key=key, ConsistentRead=True)["Item"]
    assert len(winners) == 1
    assert item["v"]["S"] == f"writer-{winners[0]}"


def test_requests_are_counted_at_the_stand_in(local: stand_ins.StandIns) -> None:
    before = local.aws.requests()
    local.client("dynamodb").get_item(TableName=local.budget_table, Key={"pk": {"S": "nothing"}})
    after = local.aws.requests()
    assert after["dynamodb:GetItem"] - before["dynamodb:GetItem"] == 1


def test_moto_in_a_process_of_its_own_starts_empty_and_stops() -> None:
    separate = stand_ins.start(with_emulator=False, aws_own_process=True)
    try:
        tables = separate.client("dynamodb").list_tables()["TableNames"]
        assert tables == [separate.budget_table]
    finally:
        separate.stop()
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", separate.aws.port), timeout=1)
