"""Credentials that change under a running instance: the FC role's STS credentials (renewed in the environment),
and a rotated AccessKey (re-read after CAMS rejects the old one)."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Any, cast

import boto3
import pytest
from http_api import app

from tests.support import REGION, OssCache, SmqQueues, load_event
from waba_local.dev.fc_local import LocalFcContext
from waba_local.stand_ins.emulator import CamsEmulator
from waba_local.stand_ins.tablestore_stand_in import TablestoreStandIn
from waba_lookup.cams import CamsClient
from waba_lookup.credentials import AccessKey, SecretCredentials
from waba_lookup.customer import Customer
from waba_lookup.errors import UpstreamFailed
from waba_lookup.lookup import get_lookup
from waba_lookup.settings import get_settings


def use_sts(monkeypatch: pytest.MonkeyPatch, n: int) -> None:
    """The variables FC sets from the function role's STS credentials (renewal n)."""
    monkeypatch.setenv("ALIBABA_CLOUD_ACCESS_KEY_ID", f"STS.role{n}")
    monkeypatch.setenv("ALIBABA_CLOUD_ACCESS_KEY_SECRET", f"sts-secret-{n}")
    monkeypatch.setenv("ALIBABA_CLOUD_SECURITY_TOKEN", f"sts-token-{n}")


def fc_call(case: str) -> dict[str, object]:
    response: dict[str, object] = app.handler(json.dumps(load_event(f"fc-http-{case}")).encode(), LocalFcContext())
    return response


def test_on_fc_cams_and_oss_are_called_with_the_roles_sts_credentials_and_renewals_are_seen(
    cams_env: CamsEmulator, oss: OssCache, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given the role's STS credentials, accepted by CAMS and OSS alike, and no AccessKey anywhere
    for n in (1, 2):
        cams_env.add_sts(f"STS.role{n}", f"sts-secret-{n}", f"sts-token-{n}", expires_at=time.time() + 3600)
        oss.stand_in.add_sts(f"STS.role{n}", f"sts-secret-{n}", f"sts-token-{n}", expires_at=time.time() + 3600)
    use_sts(monkeypatch, 1)
    assert fc_call("own")["statusCode"] == 200
    scope = get_settings().account_scope
    # When FC renews them, the first token expires, and the instance serves its next requests
    use_sts(monkeypatch, 2)
    cams_env.add_sts("STS.role1", "sts-secret-1", "sts-token-1", expires_at=time.time() - 1)
    oss.stand_in.add_sts("STS.role1", "sts-secret-1", "sts-token-1", expires_at=time.time() - 1)
    own, sub = fc_call("own"), fc_call("sub")
    # Then every call succeeds at its first attempt, with the new credentials, under the same cache partition
    assert (own["statusCode"], own["headers"]["X-Cache"]) == (200, "HIT")  # type: ignore[index]
    assert (sub["statusCode"], sub["headers"]["X-Cache"]) == (200, "MISS")  # type: ignore[index]
    assert [c.access_key_id for c in cams_env.calls] == ["STS.role1", "STS.role2"]
    assert all(c.status == 200 for c in cams_env.calls)
    assert get_settings().account_scope == scope and scope == get_lookup().settings.account_scope


@dataclass(frozen=True)
class InvocationCredentials:
    """`context.credentials` as FC's Python 3.10/3.9 runtimes pass them (3.12 passes none: the environment has them)."""

    access_key_id: str
    access_key_secret: str
    security_token: str


@dataclass(frozen=True)
class ContextWithCredentials(LocalFcContext):
    credentials: InvocationCredentials | None = None


def test_on_fc_the_invocations_credentials_win_over_expired_ones_in_the_environment(
    cams_env: CamsEmulator,
    oss: OssCache,
    smq: SmqQueues,
    tablestore: TablestoreStandIn,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given CAMS, OSS, SMQ and Tablestore that know the role's key 1, expired, and key 2, and key 1 in the environment
    for service in (cams_env, oss.stand_in, smq.stand_in, tablestore):
        service.add_sts("STS.role1", "sts-secret-1", "sts-token-1", expires_at=time.time() - 1)
        service.add_sts("STS.role2", "sts-secret-2", "sts-token-2", expires_at=time.time() + 3600)
    use_sts(monkeypatch, 1)
    context = ContextWithCredentials(credentials=InvocationCredentials("STS.role2", "sts-secret-2", "sts-token-2"))

    def invoke(case: str, **overrides: object) -> dict[str, Any]:
        event = json.dumps(load_event(f"fc-http-{case}", **overrides)).encode()
        return cast(dict[str, Any], app.handler(event, context))

    # When the invocation carries key 2: a miss (the budget in Tablestore, CAMS, the OSS write), a hit (the signed
    # OSS read) and a bulk refresh (SMQ)
    miss, hit = invoke("sub"), invoke("sub")
    queued = invoke("refresh", body=json.dumps({"Items": [{"CustSpaceId": "cs-1"}]}))
    # Then each was called with key 2, and none failed
    assert (miss["statusCode"], miss["headers"]["X-Cache"]) == (200, "MISS")
    assert (hit["statusCode"], hit["headers"]["X-Cache"]) == (200, "HIT")
    assert queued["statusCode"] == 202 and json.loads(queued["body"]) == {"Queued": 1}
    assert [c.access_key_id for c in cams_env.calls] == ["STS.role2"]
    assert len(smq.bodies()) == 1 and len(oss.cache_objects()) == 1
    assert get_lookup().budget.stats.store_failures == 0 and get_lookup().budget.stats.store_requests > 0


@dataclass
class Rotating:
    """A credentials source holding an old key until told it was rejected."""

    keys: list[AccessKey]
    rejections: list[float] = field(default_factory=list)

    def current(self) -> AccessKey:
        return self.keys[0]

    def rejected(self) -> None:
        self.rejections.append(time.monotonic())
        if len(self.keys) > 1:
            self.keys.pop(0)


def test_a_rejected_key_is_dropped_and_the_next_attempt_uses_the_source_again(
    cams_env: CamsEmulator, emulator_credentials: tuple[str, str]
) -> None:
    key_id, secret = emulator_credentials
    source = Rotating([AccessKey(key_id, "rotated-away"), AccessKey(key_id, secret)])
    client = CamsClient(get_settings(), source)
    with pytest.raises(UpstreamFailed) as raised:
        client.query(None, None)
    assert raised.value.code == "SignatureDoesNotMatch" and len(source.rejections) == 1
    assert client.query(None, None)["Code"] == "OK"
    assert [c.status for c in cams_env.calls] == [400, 200]


def test_a_read_through_the_lookup_survives_a_rotation_with_one_failed_attempt(
    cams_env: CamsEmulator, emulator_credentials: tuple[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    key_id, secret = emulator_credentials
    lookup = get_lookup()
    source = Rotating([AccessKey(key_id, "rotated-away"), AccessKey(key_id, secret)])
    client = CamsClient(lookup.settings, source)
    monkeypatch.setattr(lookup, "_cams", lambda: client)
    body = lookup.fetch(Customer(), time.monotonic() + 10)
    assert body["Code"] == "OK" and [c.status for c in cams_env.calls] == [400, 200]


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_rotated_secret_is_read_again_at_most_once_a_minute_after_a_rejection(aws: object) -> None:
    from aws_lambda_powertools.utilities.parameters import SecretsProvider

    secrets = boto3.client("secretsmanager", region_name=REGION)
    secrets.create_secret(Name="cams-key", SecretString=json.dumps({"AccessKeyId": "A", "AccessKeySecret": "a"}))
    clock = Clock()
    source = SecretCredentials("cams-key", SecretsProvider(), clock)
    assert source.current().access_key_id == "A"
    secrets.put_secret_value(SecretId="cams-key", SecretString=json.dumps({"AccessKeyId": "B", "AccessKeySecret": "b"}))
    assert source.current().access_key_id == "A"  # no rejection: the cached key is used, no read
    source.rejected()
    clock.now += 30
    assert source.current().access_key_id == "A"  # rejected, but read less than a minute ago
    clock.now += 31
    assert source.current().access_key_id == "B"
    source.rejected()
    clock.now += 1
    assert source.current().access_key_id == "B"


@pytest.mark.parametrize("how", ["wrong secret", "unknown key", "expired STS token", "missing bucket"])
def test_on_fc_an_oss_that_refuses_the_function_is_a_miss_never_a_500(
    cams_env: CamsEmulator, oss: OssCache, monkeypatch: pytest.MonkeyPatch, how: str, caplog: pytest.LogCaptureFixture
) -> None:
    # Given CAMS accepting the role's STS credentials, and OSS refusing them (or missing the bucket)
    cams_env.add_sts("STS.role1", "sts-secret-1", "sts-token-1", expires_at=time.time() + 3600)
    use_sts(monkeypatch, 1)
    if how == "wrong secret":
        oss.stand_in.add_sts("STS.role1", "another-secret", "sts-token-1", expires_at=time.time() + 3600)
    elif how == "expired STS token":
        oss.stand_in.add_sts("STS.role1", "sts-secret-1", "sts-token-1", expires_at=time.time() - 1)
    elif how == "missing bucket":
        oss.stand_in.add_sts("STS.role1", "sts-secret-1", "sts-token-1", expires_at=time.time() + 3600)
        monkeypatch.setenv("CACHE_BUCKET", "no-such-bucket-here")
    # When the function reads twice
    first, second = fc_call("sub"), fc_call("sub")
    # Then both are answered by CAMS, and the refusals are in the logs, not in the answers
    assert [r["statusCode"] for r in (first, second)] == [200, 200]
    assert [r["headers"]["X-Cache"] for r in (first, second)] == ["MISS", "MISS"]  # type: ignore[index]
    assert "cache read failed" in caplog.text and "cache write failed" in caplog.text
    assert oss.cache_objects() == {}
