"""The local stand-ins for the cloud: the CAMS emulator and moto's server (S3, SQS, Secrets Manager).

Started together for the demo, `make serve` and the benchmark; `environment()` gives the settings that point
the package at them (the same variables a deployment sets).
"""

from __future__ import annotations

import json
import logging
import socket
import urllib.request
from dataclasses import dataclass
from typing import Any

import boto3
from moto.server import ThreadedMotoServer

from waba_local.emulator import DEFAULT_ACCESS_KEY_ID, DEFAULT_ACCESS_KEY_SECRET, CamsEmulator

REGION = "ap-southeast-1"
BUCKET = "waba-lookup-local-cache"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@dataclass
class StandIns:
    emulator: CamsEmulator | None
    moto: ThreadedMotoServer
    aws_endpoint: str
    bucket: str
    queue_url: str
    dlq_url: str

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
            }
        if cams and self.emulator is not None:
            env |= {
                "CAMS_ENDPOINT": self.emulator.endpoint,
                "CAMS_PROTOCOL": "http",
                "ALIBABA_CLOUD_ACCESS_KEY_ID": DEFAULT_ACCESS_KEY_ID,
                "ALIBABA_CLOUD_ACCESS_KEY_SECRET": DEFAULT_ACCESS_KEY_SECRET,
            }
        return env

    def stop(self) -> None:
        if self.emulator is not None:
            self.emulator.stop()
        self.moto.stop()


def start(
    visibility_timeout: int = 1,
    max_receive_count: int = 3,
    with_emulator: bool = True,
    accounts: dict[str, str] | None = None,
) -> StandIns:
    """Start the emulator (unless real CAMS is used) and a moto server with the cache bucket and the queues."""
    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # moto's server logs every request otherwise
    emulator = CamsEmulator(accounts=accounts).start() if with_emulator else None
    port = free_port()
    moto = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    moto.start()
    endpoint = f"http://127.0.0.1:{port}"
    # moto's backends live in the process, not the server: start from empty even after an earlier stand-in
    urllib.request.urlopen(urllib.request.Request(f"{endpoint}/moto-api/reset", method="POST"), timeout=10).close()
    stand_ins = StandIns(emulator, moto, endpoint, BUCKET, "", "")
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
    return stand_ins
