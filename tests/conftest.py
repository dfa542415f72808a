"""Shared fixtures: the settings environment, moto's AWS, a Lambda context, sample events."""

from __future__ import annotations

import json
from collections.abc import Iterator

import boto3
import pytest

from tests.support import (
    BUCKET,
    BUDGET_TABLE,
    FC_BUDGET_TABLE,
    REGION,
    AwsStandIn,
    OssCache,
    SmqQueues,
    create_budget_table,
)
from waba_local.dev.fc_local import fc_environment
from waba_local.dev.poller import LocalLambdaContext as FakeLambdaContext
from waba_local.stand_ins.emulator import CamsEmulator
from waba_local.stand_ins.local_aws import LocalAws
from waba_local.stand_ins.oss_stand_in import OssStandIn
from waba_local.stand_ins.smq_stand_in import SmqStandIn
from waba_local.stand_ins.tablestore_stand_in import TablestoreStandIn
from waba_lookup.compose import get_refresh_queue
from waba_lookup.credentials import use_invocation_credentials
from waba_lookup.lookup import get_lookup
from waba_lookup.observability import metrics
from waba_lookup.settings import get_settings

pytest_plugins = ["conftest_emulator"]  # cams_emulator, emulator_credentials


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


@pytest.fixture
def smq(monkeypatch: pytest.MonkeyPatch, emulator_credentials: tuple[str, str]) -> Iterator[SmqQueues]:
    """SMQ for the FC functions: the refresh queue and the dead-letter queue, accepting the CAMS emulator's key (on
    FC all three are called with the function role's credentials)."""
    with SmqStandIn(credentials=dict([emulator_credentials])) as stand_in:
        monkeypatch.setenv("REFRESH_QUEUE_URL", stand_in.create_queue("waba-refresh", visibility_timeout=30))
        monkeypatch.setenv("REFRESH_DLQ_URL", stand_in.create_queue("waba-refresh-dlq"))
        yield SmqQueues(stand_in, "waba-refresh", "waba-refresh-dlq", emulator_credentials)


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
