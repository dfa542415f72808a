"""What the tests share besides fixtures: names of the local resources, the stand-ins' views, sample events."""

from __future__ import annotations

import json
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from waba_local.dev.poller import LocalLambdaContext as FakeLambdaContext
from waba_local.stand_ins.local_aws import LocalAws
from waba_local.stand_ins.oss_stand_in import OssStandIn
from waba_local.stand_ins.smq_stand_in import SmqStandIn
from waba_lookup.budget.dynamodb import decode
from waba_lookup.budget.log import LogRecord

__all__ = ["FakeLambdaContext"]
EVENTS = Path(__file__).resolve().parent.parent / "events"
BUCKET = "waba-cache-test"
BUDGET_TABLE = "waba-budget-test"
REGION = "ap-southeast-1"


def control(server: Any, method: str, route: str, body: Any = None) -> Any:
    """A call to a stand-in's control plane (the stand-in, or its endpoint), its JSON answer."""
    endpoint = server if isinstance(server, str) else server.endpoint
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(f"{endpoint}/_stand_in/{route}", data=data, method=method)
    with urllib.request.urlopen(request, timeout=5) as response:
        return json.loads(response.read())


class OffsetClock:
    """A stand-in's clock: real time plus an offset that tests move forward."""

    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.time() + self.offset

    def advance(self, seconds: float) -> None:
        self.offset += seconds


@dataclass
class AwsStandIn:
    s3: Any
    sqs: Any
    dynamodb: Any
    bucket: str
    queue_url: str
    dlq_url: str
    budget_table: str
    server: LocalAws | None = None  # moto's server, for its faults

    def cache_objects(self) -> dict[str, dict[str, Any]]:
        """Every cache entry in the bucket, parsed."""
        listed = self.s3.list_objects_v2(Bucket=self.bucket).get("Contents", [])
        keys = [o["Key"] for o in listed]
        return {key: json.loads(self.s3.get_object(Bucket=self.bucket, Key=key)["Body"].read()) for key in keys}

    def budget_record(self) -> LogRecord:
        """The deployment's shared budget record (the only item in the table), decoded."""
        items = self.dynamodb.scan(TableName=self.budget_table)["Items"]
        assert len(items) <= 1
        return decode(items[0] if items else None)


def create_budget_table(dynamodb: Any, name: str) -> None:
    """The shared budget's table as template.yaml declares it."""
    dynamodb.create_table(
        TableName=name,
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )


@dataclass
class OssCache:
    """The local OSS stand-in serving the cache bucket, as the FC function sees it."""

    stand_in: OssStandIn
    bucket: str

    def cache_objects(self) -> dict[str, dict[str, Any]]:
        """Every cache entry in the bucket, parsed."""
        return {key: json.loads(data) for key, data in self.stand_in.objects(self.bucket).items()}


@dataclass
class SmqQueues:
    """The local SMQ stand-in with the refresh queue and its dead-letter queue, as the FC functions see them."""

    stand_in: SmqStandIn
    queue: str
    dlq: str
    key: tuple[str, str]

    def bodies(self, which: str = "queue") -> list[str]:
        """The bodies of every message in the queue ("queue") or the dead-letter queue ("dlq"), visible or not."""
        return [m.body for m in self.stand_in.messages(self.queue if which == "queue" else self.dlq)]

    def sender(self, which: str = "queue") -> Any:
        """The library's SMQ client for one of the queues."""
        from waba_lookup.credentials import AccessKey, StaticCredentials
        from waba_lookup.queue.smq import SmqQueue

        name = self.queue if which == "queue" else self.dlq
        return SmqQueue(self.stand_in.queue_url(name), StaticCredentials(AccessKey(*self.key)))

    def receiver(self, which: str = "queue") -> Any:
        """An SDK queue client (plain bodies), as the trigger reads the queue."""
        from waba_lookup.credentials import AccessKey, StaticCredentials
        from waba_lookup.queue.smq import build_queue

        name = self.queue if which == "queue" else self.dlq
        return build_queue(self.stand_in.endpoint, name, StaticCredentials(AccessKey(*self.key)))


FC_BUDGET_TABLE = "waba_budget_test"


def load_event(name: str, **overrides: Any) -> dict[str, Any]:
    """A sample event from events/<name>.json, with top-level keys overridden."""
    event: dict[str, Any] = json.loads((EVENTS / f"{name}.json").read_text())
    event.update(overrides)
    return event
