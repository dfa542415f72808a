"""The local stand-ins for the clouds: the CAMS emulator, moto's server (S3, SQS, DynamoDB, Secrets Manager), and
for Function Compute the OSS, SMQ and Tablestore stand-ins.

Started together for the demo, `make serve` and the benchmark; `environment()` gives the settings that point
the package at them as AWS sets them (the shared budget's table included), `fc_environment()` as Function Compute
does (FC_*, and the function role's STS credentials, which the emulator and the FC stand-ins accept). moto's server
answers one request at a time (local_aws.py), so a race in the stand-in can never pass for one in the product.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

import boto3

from waba_local.dev.fc_local import fc_environment
from waba_local.stand_ins.emulator import DEFAULT_ACCESS_KEY_ID, DEFAULT_ACCESS_KEY_SECRET, CamsEmulator
from waba_local.stand_ins.local_aws import LocalAws
from waba_local.stand_ins.oss_stand_in import OssStandIn
from waba_local.stand_ins.smq_stand_in import SmqStandIn
from waba_local.stand_ins.tablestore_stand_in import TablestoreStandIn

REGION = "ap-southeast-1"
BUCKET = "waba-lookup-local-cache"
BUDGET_TABLE = "waba-lookup-local-budget"
INTERACTIVE_RESERVE = "2"  # the template's default
# the FC function role's STS credentials, as FC puts them in the instance's environment (local, and never real)
ROLE = ("STS.LocalFunctionRole", "local-function-role-secret", "local-function-role-security-token")
ROLE_VALID_SECONDS = 36 * 3600
FC_QUEUE, FC_DLQ = "waba-lookup-refresh", "waba-lookup-refresh-dlq"
FC_BUDGET_TABLE = "waba_lookup_local_budget"  # Tablestore's names: letters, digits and _ only


@dataclass
class StandIns:
    emulator: CamsEmulator | None
    aws: LocalAws
    bucket: str
    queue_url: str
    dlq_url: str
    budget_table: str = BUDGET_TABLE
    oss: OssStandIn | None = None
    smq: SmqStandIn | None = None
    tablestore: TablestoreStandIn | None = None

    @property
    def aws_endpoint(self) -> str:
        return self.aws.endpoint

    def client(self, service: str) -> Any:
        return boto3.client(
            service,
            endpoint_url=self.aws_endpoint,
            region_name=REGION,
            aws_access_key_id="local",
            aws_secret_access_key="local",
        )

    def environment(self, cams: bool = True, aws: bool = True) -> dict[str, str]:
        """The settings that point the package at the stand-ins: CAMS (the emulator), AWS (moto), or both."""
        env = {"POWERTOOLS_TRACE_DISABLED": "true", "POWERTOOLS_METRICS_NAMESPACE": "WabaLookup"}
        if aws:
            env |= {
                "AWS_ENDPOINT_URL": self.aws_endpoint,
                "AWS_DEFAULT_REGION": REGION,
                "AWS_ACCESS_KEY_ID": "local",
                "AWS_SECRET_ACCESS_KEY": "local",
                "CACHE_BUCKET": self.bucket,
                "REFRESH_QUEUE_URL": self.queue_url,
                "CAMS_BUDGET_TABLE": self.budget_table,
                "CAMS_INTERACTIVE_RESERVE": INTERACTIVE_RESERVE,
            }
        if cams and self.emulator is not None:
            env |= {
                "CAMS_ENDPOINT": self.emulator.endpoint,
                "CAMS_PROTOCOL": "http",
                "ALIBABA_CLOUD_ACCESS_KEY_ID": DEFAULT_ACCESS_KEY_ID,
                "ALIBABA_CLOUD_ACCESS_KEY_SECRET": DEFAULT_ACCESS_KEY_SECRET,
            }
        return env

    def fc_environment(self, cams: bool = True) -> dict[str, str]:
        """The settings of the FC HTTP function: FC's own variables, OSS (the stand-in), and CAMS (the emulator) with
        the role's STS credentials. No shared budget yet on FC: static shares."""
        assert self.oss is not None and self.smq is not None
        env = fc_environment() | {"OSS_ENDPOINT": self.oss.endpoint, "CACHE_BUCKET": self.bucket}
        env |= {"REFRESH_QUEUE_URL": self.smq.queue_url(FC_QUEUE), "REFRESH_DLQ_URL": self.smq.queue_url(FC_DLQ)}
        if self.tablestore is not None:
            env |= {
                "CAMS_BUDGET_TABLE": FC_BUDGET_TABLE,
                "TABLESTORE_ENDPOINT": self.tablestore.endpoint,
                "TABLESTORE_INSTANCE": self.tablestore.instance,
                "CAMS_INTERACTIVE_RESERVE": INTERACTIVE_RESERVE,
            }
        if cams and self.emulator is not None:
            env |= {
                "CAMS_ENDPOINT": self.emulator.endpoint,
                "CAMS_PROTOCOL": "http",
                "ALIBABA_CLOUD_ACCESS_KEY_ID": ROLE[0],
                "ALIBABA_CLOUD_ACCESS_KEY_SECRET": ROLE[1],
                "ALIBABA_CLOUD_SECURITY_TOKEN": ROLE[2],
            }
        return env

    def forget_flow_control(self) -> None:
        """Take the last System.LimitControl out of the shared budget's record (both stores), as a minute later it
        would no longer count: the rate is the whole budget again. The permits stay: they still count."""
        from waba_lookup.budget.store import CUT

        dynamodb = self.client("dynamodb")
        for item in dynamodb.scan(TableName=self.budget_table)["Items"]:
            remove = f"REMOVE {', '.join(CUT)}"
            dynamodb.update_item(TableName=self.budget_table, Key={"pk": item["pk"]}, UpdateExpression=remove)
        if self.tablestore is not None:
            for key, columns in self.tablestore.rows(FC_BUDGET_TABLE).items():
                kept = {name: value for name, value in columns.items() if name not in CUT}
                self.tablestore.put_row(FC_BUDGET_TABLE, key, kept)

    def budget_store_requests(self) -> int:
        """Requests the shared budget's store has answered so far: Tablestore's on FC, else DynamoDB's."""
        if self.tablestore is not None:
            return self.tablestore.count()
        return int(self.aws.requests()["dynamodb"])

    def stop(self) -> None:
        if self.emulator is not None:
            self.emulator.stop()
        for fc_stand_in in (self.oss, self.smq, self.tablestore):
            if fc_stand_in is not None:
                fc_stand_in.stop()
        self.aws.stop()


def start(
    visibility_timeout: int = 1,
    max_receive_count: int = 3,
    with_emulator: bool = True,
    accounts: dict[str, str] | None = None,
    aws_own_process: bool = False,
    with_fc: bool = False,
    fc_visibility_timeout: int = 60,
) -> StandIns:
    """Start the emulator (unless real CAMS is used) and a moto server with the cache bucket, the queues and
    the shared budget's table; with_fc, the OSS stand-in with the bucket, the SMQ stand-in with the queues (a
    visibility timeout that outlasts a worker invocation) and the Tablestore stand-in with the budget's table too."""
    emulator = CamsEmulator(accounts=accounts).start() if with_emulator else None
    oss = smq = tablestore = None
    if with_fc:
        expires = time.time() + ROLE_VALID_SECONDS
        oss, smq = OssStandIn(credentials={}).start(), SmqStandIn(credentials={}).start()
        tablestore = TablestoreStandIn(credentials={}).start()
        oss.create_bucket(BUCKET)
        smq.create_queue(FC_QUEUE, visibility_timeout=fc_visibility_timeout)
        smq.create_queue(FC_DLQ)
        tablestore.create_table(FC_BUDGET_TABLE)
        for stand_in in (oss, smq, tablestore, emulator):
            if stand_in is not None:
                stand_in.add_sts(*ROLE, expires_at=expires)
    stand_ins = StandIns(emulator, LocalAws(aws_own_process).start(), BUCKET, "", "", oss=oss, smq=smq)
    stand_ins.tablestore = tablestore
    s3, sqs = stand_ins.client("s3"), stand_ins.client("sqs")
    s3.create_bucket(Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": REGION})
    stand_ins.dlq_url = sqs.create_queue(QueueName="waba-refresh-dlq")["QueueUrl"]
    dlq_arn = sqs.get_queue_attributes(QueueUrl=stand_ins.dlq_url, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    redrive = json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": str(max_receive_count)})
    stand_ins.queue_url = sqs.create_queue(
        QueueName="waba-refresh",
        Attributes={"RedrivePolicy": redrive, "VisibilityTimeout": str(visibility_timeout)},
    )["QueueUrl"]
    stand_ins.client("dynamodb").create_table(
        TableName=BUDGET_TABLE,
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    return stand_ins
