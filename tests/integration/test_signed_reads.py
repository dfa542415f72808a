"""Reads signed by the library are accepted by servers that check the signatures, for any object key:

- S3: moto's server with its IAM authentication on (INITIAL_NO_AUTH_ACTION_COUNT), which recomputes each request's
  SigV4 signature from what it received (method, path, signed headers) and answers SignatureDoesNotMatch when it
  differs;
- OSS: the stand-in, which checks OSS4-HMAC-SHA256 (and the STS token) on every request, objects written by the SDK.

tests/unit/test_signed_get.py compares the signatures with the SDKs' signers on the same inputs; this checks what
http.client actually sends: the path as encoded on the wire, the Host header, the date and payload headers.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass

import boto3
import pytest

from tests.support import REGION, OssCache
from waba_local.stand_ins.local_aws import LocalAws
from waba_lookup.cache import signed_get
from waba_lookup.cache.oss import OssObjectStore
from waba_lookup.cache.s3 import S3ObjectStore, signed_get_request
from waba_lookup.credentials import AccessKey, StaticCredentials

BUCKET = "waba-signed-reads"
KEYS = ["waba/0123456789abcdef/cs-acme-001/3f2a.json", "waba/a b/ü é/+=&$@,;:!*'()~.json", "waba//double//slash.json"]


@dataclass
class VerifyingS3:
    endpoint: str
    key_id: str
    secret: str

    def environ(self, secret: str | None = None) -> dict[str, str]:
        return {
            "AWS_ACCESS_KEY_ID": self.key_id,
            "AWS_SECRET_ACCESS_KEY": secret or self.secret,
            "AWS_DEFAULT_REGION": REGION,
            "AWS_ENDPOINT_URL": self.endpoint,
        }


@pytest.fixture(scope="module")
def verifying_s3() -> Iterator[VerifyingS3]:
    """moto's server in a process of its own, checking every request's signature after its first three (the IAM
    user, its access key and its policy), with a bucket holding KEYS."""
    local = LocalAws(own_process=True, environ={"INITIAL_NO_AUTH_ACTION_COUNT": "3"}).start()
    try:
        anonymous = {"aws_access_key_id": "bootstrap", "aws_secret_access_key": "bootstrap"}
        iam = boto3.client("iam", region_name=REGION, endpoint_url=local.endpoint, **anonymous)
        iam.create_user(UserName="waba-reader")
        key = iam.create_access_key(UserName="waba-reader")["AccessKey"]
        policy = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}]}
        iam.put_user_policy(UserName="waba-reader", PolicyName="s3", PolicyDocument=json.dumps(policy))
        verifying = VerifyingS3(local.endpoint, key["AccessKeyId"], key["SecretAccessKey"])
        s3 = boto3.client(
            "s3",
            region_name=REGION,
            endpoint_url=local.endpoint,
            aws_access_key_id=verifying.key_id,
            aws_secret_access_key=verifying.secret,
        )
        s3.create_bucket(Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": REGION})
        for key_name in KEYS:
            s3.put_object(Bucket=BUCKET, Key=key_name, Body=json.dumps({"Key": key_name}).encode())
        yield verifying
    finally:
        local.stop()


@pytest.mark.parametrize("key", KEYS)
def test_signed_reads_are_accepted_by_a_server_that_checks_them(verifying_s3: VerifyingS3, key: str) -> None:
    store = S3ObjectStore(BUCKET, environ=verifying_s3.environ())
    assert json.loads(store.read(key) or b"{}") == {"Key": key}


def test_a_missing_object_is_a_miss_not_a_signature_error(verifying_s3: VerifyingS3) -> None:
    assert S3ObjectStore(BUCKET, environ=verifying_s3.environ()).read("waba/nothing here.json") is None


def test_a_wrong_secret_is_refused(verifying_s3: VerifyingS3) -> None:
    """The server does check: the same read signed with another secret is refused."""
    request = signed_get_request(BUCKET, KEYS[0], verifying_s3.environ(secret="not-the-secret"))
    assert request is not None
    reply = signed_get.fetch(*request)  # the store would now retry through botocore (test_cache_contract)
    assert (reply.status, reply.error_code) == (403, "SignatureDoesNotMatch")


@pytest.mark.parametrize("key", KEYS)
def test_signed_oss_reads_of_any_key_are_accepted(oss: OssCache, key: str) -> None:
    oss.stand_in.add_sts("STS.reader", "sts-secret", "sts-token", expires_at=time.time() + 3600)
    credentials = StaticCredentials(AccessKey("STS.reader", "sts-secret", "sts-token"))
    store = OssObjectStore(oss.bucket, oss.stand_in.region, oss.stand_in.endpoint, credentials)
    store.write(key, json.dumps({"Key": key}).encode())  # through the SDK
    oss.stand_in.clear_requests()
    assert json.loads(store.read(key) or b"{}") == {"Key": key}  # signed here
    assert [(r.operation, r.status) for r in oss.stand_in.requests] == [("GetObject", 200)]
