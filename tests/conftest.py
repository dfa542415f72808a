"""Shared fixtures: the settings environment, moto's AWS, a Lambda context, sample events."""

from __future__ import annotations

import json
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import pytest

from waba_local.emulator import CamsEmulator
from waba_local.fc_local import fc_environment
from waba_local.local_aws import LocalAws
from waba_local.oss_stand_in import OssStandIn
from waba_local.poller import LocalLambdaContext as FakeLambdaContext
from waba_local.smq_stand_in import SmqStandIn
from waba_local.tablestore_stand_in import TablestoreStandIn
from waba_lookup.budget.dynamodb import decode
from waba_lookup.budget.log import LogRecord
from waba_lookup.credentials import use_invocation_credentials
from waba_lookup.lookup import get_lookup
from waba_lookup.observability import metrics
from waba_lookup.refresh_queue import get_refresh_queue
from waba_lookup.settings import get_settings

pytest_plugins = ["conftest_emulator"]  # cams_emulator, emulator_credentials

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


@pytest.fixture(autouse=True)
def fresh_instance(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Each test is a new Lambda instance: settings and the lookup are rebuilt from its environment."""
    for name in (
        "AWS_ENDPOINT_URL",
        "AWS_ENDPOINT_URL_S3",
        "AWS_ENDPOINT_URL_SQS",
        "AWS_ENDPOINT_URL_DYNAMODB",
        "AWS_PROFILE",
        "AWS_CA_BUNDLE",  # set on some machines; Lambda sets none, and with it S3 reads would skip the signed GET
        "FC_FUNCTION_NAME",
        "FC_REGION",
        "FC_ACCOUNT_ID",
        "OSS_ENDPOINT",
        "OSS_REGION",
        "CACHE_BACKEND",
        "ALIBABA_CLOUD_SECURITY_TOKEN",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("POWERTOOLS_TRACE_DISABLED", "true")
    monkeypatch.setenv("POWERTOOLS_METRICS_NAMESPACE", "WabaLookup")
    caches = (get_settings, get_lookup, get_refresh_queue)
    for cached in caches:
        cached.cache_clear()
    metrics.clear_metrics()  # what an earlier test counted is not this instance's
    use_invocation_credentials(None)  # no FC invocation's credentials: each test passes its own context
    yield
    for cached in caches:
        cached.cache_clear()


@pytest.fixture
def cams_env(
    monkeypatch: pytest.MonkeyPatch, cams_emulator: CamsEmulator, emulator_credentials: tuple[str, str]
) -> CamsEmulator:
    """Settings that point the real SDK at the emulator over HTTP, credentials from the SDK's env chain."""
    monkeypatch.setenv("CAMS_ENDPOINT", cams_emulator.endpoint)
    monkeypatch.setenv("CAMS_PROTOCOL", "http")
    monkeypatch.setenv("CAMS_TIMEOUT_MS", "1000")
    monkeypatch.setenv("ALIBABA_CLOUD_ACCESS_KEY_ID", emulator_credentials[0])
    monkeypatch.setenv("ALIBABA_CLOUD_ACCESS_KEY_SECRET", emulator_credentials[1])
    return cams_emulator


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


@pytest.fixture(scope="session")
def moto_server() -> Iterator[LocalAws]:
    """moto's server (one request at a time, as local_aws serialises it) in a thread, shared by the session."""
    local = LocalAws().start()
    yield local
    local.stop()


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch, moto_server: LocalAws) -> Iterator[AwsStandIn]:
    """moto's server over real HTTP, emptied for each test: the cache bucket, the refresh queue and its dead-letter
    queue (redrive after 3), and the shared budget's table, as deployed. AWS_ENDPOINT_URL points every client (the
    function's and the test's) at it, as on a developer's machine; nothing is patched in process.

    The visibility timeout outlasts a test batch, as it must in a deployment: the local poller, like Lambda's,
    receives the next batch while the handler works."""
    moto_server.reset()
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_server.endpoint)
    s3, sqs = boto3.client("s3", region_name=REGION), boto3.client("sqs", region_name=REGION)
    dynamodb = boto3.client("dynamodb", region_name=REGION)
    create_budget_table(dynamodb, BUDGET_TABLE)
    s3.create_bucket(Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": REGION})
    dlq_url = sqs.create_queue(QueueName="waba-refresh-dlq")["QueueUrl"]
    dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    redrive = json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": "3"})
    queue_url = sqs.create_queue(
        QueueName="waba-refresh", Attributes={"RedrivePolicy": redrive, "VisibilityTimeout": "2"}
    )["QueueUrl"]
    monkeypatch.setenv("CACHE_BUCKET", BUCKET)
    monkeypatch.setenv("REFRESH_QUEUE_URL", queue_url)
    monkeypatch.setenv("CAMS_BUDGET_TABLE", BUDGET_TABLE)
    yield AwsStandIn(s3, sqs, dynamodb, BUCKET, queue_url, dlq_url, BUDGET_TABLE, moto_server)


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


@pytest.fixture
def oss(monkeypatch: pytest.MonkeyPatch, emulator_credentials: tuple[str, str]) -> Iterator[OssCache]:
    """Function Compute's side: the instance's FC_* variables and an OSS stand-in with the cache bucket, accepting
    the same key as the CAMS emulator (on FC both are the function role's). No shared budget: static shares."""
    key_id, secret = emulator_credentials
    with OssStandIn(credentials={key_id: secret}) as stand_in:
        stand_in.create_bucket(BUCKET)
        for name, value in fc_environment().items():
            monkeypatch.setenv(name, value)
        monkeypatch.setenv("OSS_ENDPOINT", stand_in.endpoint)
        monkeypatch.setenv("CACHE_BUCKET", BUCKET)
        monkeypatch.delenv("CAMS_BUDGET_TABLE", raising=False)
        yield OssCache(stand_in, BUCKET)


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
        from waba_lookup.smq import SmqQueue

        name = self.queue if which == "queue" else self.dlq
        return SmqQueue(self.stand_in.queue_url(name), StaticCredentials(AccessKey(*self.key)))

    def receiver(self, which: str = "queue") -> Any:
        """An SDK queue client (plain bodies), as the trigger reads the queue."""
        from waba_lookup.credentials import AccessKey, StaticCredentials
        from waba_lookup.smq import build_queue

        name = self.queue if which == "queue" else self.dlq
        return build_queue(self.stand_in.endpoint, name, StaticCredentials(AccessKey(*self.key)))


@pytest.fixture
def smq(monkeypatch: pytest.MonkeyPatch, emulator_credentials: tuple[str, str]) -> Iterator[SmqQueues]:
    """SMQ for the FC functions: the refresh queue and the dead-letter queue, accepting the CAMS emulator's key (on
    FC all three are called with the function role's credentials)."""
    with SmqStandIn(credentials=dict([emulator_credentials])) as stand_in:
        monkeypatch.setenv("REFRESH_QUEUE_URL", stand_in.create_queue("waba-refresh", visibility_timeout=30))
        monkeypatch.setenv("REFRESH_DLQ_URL", stand_in.create_queue("waba-refresh-dlq"))
        yield SmqQueues(stand_in, "waba-refresh", "waba-refresh-dlq", emulator_credentials)


FC_BUDGET_TABLE = "waba_budget_test"


@pytest.fixture
def tablestore(monkeypatch: pytest.MonkeyPatch, emulator_credentials: tuple[str, str]) -> Iterator[TablestoreStandIn]:
    """The shared budget on FC: a Tablestore stand-in with the budget's table, accepting the emulator's key (the
    function role's, on FC)."""
    with TablestoreStandIn(credentials=dict([emulator_credentials])) as stand_in:
        stand_in.create_table(FC_BUDGET_TABLE)
        monkeypatch.setenv("CAMS_BUDGET_TABLE", FC_BUDGET_TABLE)
        monkeypatch.setenv("TABLESTORE_ENDPOINT", stand_in.endpoint)
        monkeypatch.setenv("TABLESTORE_INSTANCE", stand_in.instance)
        yield stand_in


@pytest.fixture
def lambda_context() -> FakeLambdaContext:
    return FakeLambdaContext()


def load_event(name: str, **overrides: Any) -> dict[str, Any]:
    """A sample event from events/<name>.json, with top-level keys overridden."""
    event: dict[str, Any] = json.loads((EVENTS / f"{name}.json").read_text())
    event.update(overrides)
    return event
