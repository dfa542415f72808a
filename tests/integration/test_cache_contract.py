"""One contract for the cache on every store: S3 (moto) and OSS (the stand-in), each through its real client.

What a user relies on: the same keys and IsvCode binding on both clouds, a missing object is a quiet miss, and a
store that fails, however it fails, is a logged miss or a dropped write, never an exception into a read.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from tests.support import BUCKET, AwsStandIn, OssCache
from waba_lookup.cache import CacheEntry, ObjectStore, WabaCache, signed_get
from waba_lookup.cache.oss import OssObjectStore
from waba_lookup.cache.s3 import S3ObjectStore
from waba_lookup.credentials import AccessKey, StaticCredentials
from waba_lookup.customer import Customer
from waba_lookup.observability import metrics

BODY = {"Code": "OK", "Success": True, "RequestId": "r-1", "Data": {"Id": "waba-1", "Name": "Acme"}, "New": [1]}
SUB = Customer("cs-acme-001", "isv-cs-acme-001")
SCOPE = "0123456789abcdef"


@dataclass
class Backend:
    """A cache over one store, the raw objects in its bucket, and how to make that store fail."""

    cache: WabaCache
    objects: Callable[[], dict[str, bytes]]
    store_for: Callable[[str], ObjectStore]  # the same store pointed at another bucket, or "down": nothing listening


@pytest.fixture(params=["s3", "oss"])
def backend(request: pytest.FixtureRequest, emulator_credentials: tuple[str, str]) -> Iterator[Backend]:
    if request.param == "s3":
        aws: AwsStandIn = request.getfixturevalue("aws")

        def s3_store(bucket: str) -> ObjectStore:
            if bucket == "down":
                request.getfixturevalue("monkeypatch").setenv("AWS_ENDPOINT_URL_S3", "http://127.0.0.1:9")
                return S3ObjectStore(BUCKET)
            return S3ObjectStore(bucket)  # as deployed: reads signed here, writes through botocore

        def s3_objects() -> dict[str, bytes]:
            return {k: json.dumps(v).encode() for k, v in aws.cache_objects().items()}

        yield Backend(WabaCache(s3_store(BUCKET), "waba/", SCOPE), s3_objects, s3_store)
    else:
        oss: OssCache = request.getfixturevalue("oss")
        key = StaticCredentials(AccessKey(*emulator_credentials))

        def oss_store(bucket: str) -> ObjectStore:
            endpoint = "http://127.0.0.1:9" if bucket == "down" else oss.stand_in.endpoint
            return OssObjectStore(BUCKET if bucket == "down" else bucket, oss.stand_in.region, endpoint, key)

        yield Backend(WabaCache(oss_store(BUCKET), "waba/", SCOPE), lambda: oss.stand_in.objects(BUCKET), oss_store)


def test_a_missing_entry_is_a_quiet_miss(backend: Backend, caplog: pytest.LogCaptureFixture) -> None:
    assert backend.cache.get(SUB) is None
    assert "failed" not in caplog.text


def test_an_entry_round_trips_with_unknown_fields(backend: Backend) -> None:
    fetched_at = time.time()
    assert backend.cache.put(SUB, CacheEntry(fetched_at, body=BODY))
    entry = backend.cache.get(SUB)
    assert entry is not None and entry.body == BODY and entry.fetched_at == pytest.approx(fetched_at)


def test_keys_are_the_same_on_every_store_and_never_hold_the_isv_code(backend: Backend) -> None:
    backend.cache.put(SUB, CacheEntry(time.time(), body=BODY))
    [key] = backend.objects()
    assert key == f"waba/{SCOPE}/cs-acme-001/{backend.cache.binding(SUB)}.json"
    assert "isv-cs-acme-001" not in key and b"isv-cs-acme-001" not in b"".join(backend.objects().values())


@pytest.mark.parametrize("other", [Customer("cs-acme-001", "isv-wrong"), Customer("cs-acme-001", None)])
def test_an_entry_is_never_served_to_another_isv_code(backend: Backend, other: Customer) -> None:
    backend.cache.put(SUB, CacheEntry(time.time(), body=BODY))
    assert backend.cache.get(other) is None


def test_a_denied_answer_is_kept_as_the_entry(backend: Backend) -> None:
    from waba_lookup.errors import Denied

    backend.cache.put(SUB, CacheEntry.denied(Denied("no", "Ram.PermissionDeny", "r-2"), time.time()))
    entry = backend.cache.get(SUB)
    assert (
        entry is not None
        and entry.body is None
        and entry.error
        == {
            "Code": "Ram.PermissionDeny",
            "Message": "no",
            "RequestId": "r-2",
        }
    )


@pytest.mark.parametrize("bucket", ["no-such-bucket-here", "down"])
def test_a_failing_store_is_a_logged_miss_and_a_dropped_write(
    backend: Backend, bucket: str, caplog: pytest.LogCaptureFixture
) -> None:
    cache = WabaCache(backend.store_for(bucket), "waba/", SCOPE)
    started = time.monotonic()
    assert cache.get(SUB) is None
    assert cache.put(SUB, CacheEntry(time.time(), body=BODY)) is False
    assert time.monotonic() - started < 8  # one attempt each, with short timeouts: no SDK retries
    assert "cache read failed" in caplog.text and "cache write failed" in caplog.text


def test_an_unreadable_object_is_a_miss(backend: Backend, caplog: pytest.LogCaptureFixture) -> None:
    backend.cache.store.write(backend.cache.object_key(SUB), b"{not json")
    assert backend.cache.get(SUB) is None
    assert "unreadable cache entry" in caplog.text


@pytest.mark.parametrize(
    ("status", "code"),
    [(403, "SignatureDoesNotMatch"), (403, "AccessDenied"), (307, "TemporaryRedirect"), (400, "InvalidRequest")],
)
def test_a_signed_read_failing_where_the_sdks_does_not_hands_the_instance_to_the_sdk(
    request: pytest.FixtureRequest, backend: Backend, status: int, code: str, caplog: pytest.LogCaptureFixture
) -> None:
    # Given an entry, and a store that refuses the next signed read of it as the real service might
    assert backend.cache.put(SUB, CacheEntry(time.time(), body=BODY))
    if isinstance(backend.cache.store, S3ObjectStore):
        request.getfixturevalue("aws").server.fail(status, code)
    else:
        request.getfixturevalue("oss").stand_in.fail(times=1, status=status, code=code, operation="GetObject")
    signed = spy_on_signed_gets(request.getfixturevalue("monkeypatch"))
    # When it is read twice
    first, second = backend.cache.get(SUB), backend.cache.get(SUB)
    # Then both reads are HITs: the first retried through the SDK, the second through the SDK alone
    assert first is not None and second is not None and first.body == second.body == BODY
    assert len(signed) == 1
    warnings = [r for r in caplog.records if "reading through the SDK" in r.getMessage()]
    assert len(warnings) == 1 and getattr(warnings[0], "error_code", None) == code
    if isinstance(backend.cache.store, S3ObjectStore):  # metrics are AWS's
        assert metrics.metric_set["CacheFailures"]["Value"] == [1.0]


def test_a_failure_of_the_sdk_too_is_the_stores_and_keeps_the_signed_path(
    request: pytest.FixtureRequest, backend: Backend, caplog: pytest.LogCaptureFixture
) -> None:
    assert backend.cache.put(SUB, CacheEntry(time.time(), body=BODY))
    if isinstance(backend.cache.store, S3ObjectStore):
        request.getfixturevalue("aws").server.fail(403, "AccessDenied", times=2)
    else:
        request.getfixturevalue("oss").stand_in.fail(times=2, status=403, code="AccessDenied", operation="GetObject")
    signed = spy_on_signed_gets(request.getfixturevalue("monkeypatch"))
    assert backend.cache.get(SUB) is None and "cache read failed" in caplog.text
    assert backend.cache.get(SUB) is not None and len(signed) == 2
    assert "reading through the SDK" not in caplog.text


def spy_on_signed_gets(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The URLs of the signed GETs sent from now on (each still sent)."""
    sent: list[str] = []
    real = signed_get.get

    def get(url: str, headers: dict[str, str]) -> signed_get.Reply:
        sent.append(url)
        return real(url, headers)

    monkeypatch.setattr(signed_get, "get", get)
    return sent


def oss_failure(oss: OssCache, emulator_credentials: tuple[str, str], how: str) -> OssObjectStore:
    """An OSS store whose requests fail the way `how` says."""
    key_id, secret = emulator_credentials
    stand_in, credentials = oss.stand_in, AccessKey(key_id, secret)
    if how == "wrong signature":
        credentials = AccessKey(key_id, "not-the-secret")
    elif how == "unknown key":
        credentials = AccessKey("LTAI5tNobodyKnowsMe", secret)
    elif how == "expired STS token":
        stand_in.add_sts("STS.expired", "sts-secret", "sts-token", expires_at=time.time() - 1)
        credentials = AccessKey("STS.expired", "sts-secret", "sts-token")
    elif how == "500":  # the signed read, its retry through the SDK, and the write
        stand_in.fail(times=3, status=500, code="InternalError")
    elif how == "dropped connection":
        stand_in.drop(times=3)
    elif how == "slow":
        stand_in.slow(2.5, times=2)
    return OssObjectStore(BUCKET, stand_in.region, stand_in.endpoint, StaticCredentials(credentials))


@pytest.mark.parametrize(
    "how", ["wrong signature", "unknown key", "expired STS token", "500", "dropped connection", "slow"]
)
def test_every_oss_failure_is_a_logged_miss(
    oss: OssCache, emulator_credentials: tuple[str, str], how: str, caplog: pytest.LogCaptureFixture
) -> None:
    cache = WabaCache(oss_failure(oss, emulator_credentials, how), "waba/", SCOPE)
    assert cache.get(SUB) is None
    assert cache.put(SUB, CacheEntry(time.time(), body=BODY)) is False
    assert oss.stand_in.objects(BUCKET) == {}
    logged = [json.loads(r.message) if r.message.startswith("{") else r.__dict__ for r in caplog.records]
    assert "cache read failed" in caplog.text
    assert all("sts-token" not in str(line) and "not-the-secret" not in str(line) for line in logged)


def test_renewed_sts_credentials_are_used_at_the_next_request(oss: OssCache, monkeypatch: pytest.MonkeyPatch) -> None:
    # Given the function role's STS credentials in the environment, as FC sets them
    stand_in = oss.stand_in
    for n in (1, 2):
        stand_in.add_sts(f"STS.key{n}", f"secret{n}", f"token{n}", expires_at=time.time() + 3600)
    env: dict[str, Any] = {
        "ALIBABA_CLOUD_ACCESS_KEY_ID": "STS.key1",
        "ALIBABA_CLOUD_ACCESS_KEY_SECRET": "secret1",
        "ALIBABA_CLOUD_SECURITY_TOKEN": "token1",
    }
    from waba_lookup.credentials import EnvironmentCredentials

    cache = WabaCache(OssObjectStore(BUCKET, stand_in.region, stand_in.endpoint, EnvironmentCredentials(env)), "", "s")
    assert cache.put(SUB, CacheEntry(time.time(), body=BODY))
    # When FC renews them and the first token expires
    env |= {
        "ALIBABA_CLOUD_ACCESS_KEY_ID": "STS.key2",
        "ALIBABA_CLOUD_ACCESS_KEY_SECRET": "secret2",
        "ALIBABA_CLOUD_SECURITY_TOKEN": "token2",
    }
    stand_in.add_sts("STS.key1", "secret1", "token1", expires_at=time.time() - 1)
    # Then the same client carries on with the new ones
    assert cache.get(SUB) is not None
