"""What the tests share besides fixtures: names of the local resources, the stand-ins' views, sample events, and the
checks every local stand-in's tests make (its control plane's refusals, its CLI, that no secret leaves it)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.error import HTTPError

import pytest

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


# --- what every stand-in's tests check ------------------------------------------------------------------------------

BAD_FAULTS = ({"kind": "explode"}, {"kind": "fail", "operation": "Nope"}, {"kind": "fail", "colour": 1})
WRONG_TOKEN = "CAIS-wrong"  # an STS token no stand-in accepts


def assert_control_refuses(server: Any, *calls: tuple[str, str, Any, int]) -> None:
    """The stand-in's control plane refuses each of BAD_FAULTS (400) and each (method, route, body, status) of
    `calls` with that status, and no fault is left."""
    for method, route, body, status in [("POST", "faults", fault, 400) for fault in BAD_FAULTS] + list(calls):
        with pytest.raises(HTTPError) as http_error:
            control(server, method, route, body)
        assert http_error.value.code == status, route
    assert server.faults == []


@contextmanager
def stand_in_cli(module: str, *args: str, lines: int, secret: str) -> Iterator[tuple[list[str], str]]:
    """`python -m waba_local.stand_ins.<module> --port 0 <args>` serving in a process of its own: the first `lines`
    lines of its banner (which must show how to inject a fault) and the endpoint its first line names. Once the
    process is stopped, nothing it printed may hold `secret`."""
    process = subprocess.Popen(
        [sys.executable, "-m", f"waba_local.stand_ins.{module}", "--port", "0", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert process.stdout is not None
        banner = [process.stdout.readline() for _ in range(lines)]
        endpoint = re.search(r"(http://\S+)", banner[0])
        assert endpoint is not None, banner
        assert any("curl -X POST" in line and "/_stand_in/faults" in line for line in banner)
        yield banner, endpoint.group(1)
    finally:
        process.terminate()
        rest, _ = process.communicate(timeout=5)
    assert secret not in "".join(banner) + rest


@dataclass
class Wiretap:
    """What a test's clients sent and got: the signatures of their requests, and their answers as text."""

    signatures: list[str] = field(default_factory=list)
    answers: list[str] = field(default_factory=list)


@contextmanager
def no_secret_leaves(
    stand_in: Any,
    capfd: pytest.CaptureFixture[str],
    sts: tuple[str, str, str],
    secret: str,
    views: tuple[str, ...] = (),
) -> Iterator[Wiretap]:
    """For a test that no secret leaves a stand-in: the STS key `sts` (id, secret, token) is accepted for an hour
    while the test's clients make 12 requests, noting in the Wiretap what they sent and got. Then none of the long-term
    `secret`, the STS secret and token, WRONG_TOKEN or any signature is in the record (as Python sees it and over the
    control plane), what was printed, the answers, or the control plane's `views` (routes to GET)."""
    access_key_id, sts_secret, token = sts
    stand_in.add_sts(access_key_id, sts_secret, token, expires_at=time.time() + 3600)
    tap = Wiretap()
    yield tap
    out, err = capfd.readouterr()
    emitted = [repr(stand_in.requests), json.dumps(control(stand_in, "GET", "requests")), out, err, *tap.answers]
    emitted += [json.dumps(control(stand_in, "GET", view)) for view in views]
    assert len(tap.signatures) == 12 and stand_in.count() == 12
    for leak in (secret, sts_secret, token, WRONG_TOKEN, *tap.signatures):
        assert not any(leak in text for text in emitted), leak
