"""The real SDK over real HTTP to the emulator: every answer CAMS can give, classified by the taxonomy."""

from __future__ import annotations

import pytest

from waba_local.stand_ins.emulator import SEEDED_CUSTOMERS, CamsEmulator
from waba_lookup.cams import CamsClient, client_from_settings
from waba_lookup.credentials import AccessKey, StaticCredentials
from waba_lookup.errors import Denied, Throttled, UpstreamFailed, UpstreamTimeout
from waba_lookup.settings import get_settings

SUB, (ISV, SUB_DATA) = next((k, v) for k, v in SEEDED_CUSTOMERS.items() if k is not None)


@pytest.fixture
def cams(cams_env: CamsEmulator):  # type: ignore[no-untyped-def]
    return client_from_settings(get_settings())


def test_own_account_answers_the_documented_body(cams, cams_env: CamsEmulator) -> None:  # type: ignore[no-untyped-def]
    body = cams.query(None, None)
    assert body["Code"] == "OK" and body["Success"] is True and body["RequestId"]
    assert set(body["Data"]) >= {"Id", "Name", "BusinessId", "Currency", "AccountReviewStatus"}
    assert cams_env.count(code="OK") == 1


def test_sub_customer_answer_keeps_fields_the_sdk_model_does_not_know(cams) -> None:  # type: ignore[no-untyped-def]
    body = cams.query(SUB, ISV)
    assert body["Data"]["Id"] == SUB_DATA["Id"]
    assert body["Data"]["ThroughputTier"] == SUB_DATA["ThroughputTier"]
    assert body["Data"]["AuthInternationalRateEligibility"] == SUB_DATA["AuthInternationalRateEligibility"]


@pytest.mark.parametrize("code", ["Ram.PermissionDeny", "Product.Unsubscript", "Unknown.ResourceOwnerId"])
def test_permanent_codes_are_denied_with_the_cams_code_kept(cams, cams_env: CamsEmulator, code: str) -> None:  # type: ignore[no-untyped-def]
    cams_env.set_behaviour(SUB, f"error:{code}")
    with pytest.raises(Denied) as raised:
        cams.query(SUB, ISV)
    assert raised.value.code == code
    assert raised.value.request_id


def test_a_wrong_isv_code_is_denied(cams) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(Denied) as raised:
        cams.query(SUB, "not-the-code")
    assert raised.value.code == "Ram.PermissionDeny"


def test_limit_control_is_throttled(cams, cams_env: CamsEmulator) -> None:  # type: ignore[no-untyped-def]
    cams_env.set_behaviour(None, "error:System.LimitControl")
    with pytest.raises(Throttled) as raised:
        cams.query(None, None)
    assert raised.value.code == "System.LimitControl"


def test_the_eleventh_call_within_a_second_is_flow_controlled(cams, cams_env: CamsEmulator) -> None:  # type: ignore[no-untyped-def]
    outcomes = []
    for _ in range(11):
        try:
            cams.query(None, None)
            outcomes.append("OK")
        except Throttled as error:
            outcomes.append(error.code)
    assert outcomes == ["OK"] * 10 + ["System.LimitControl"]


def test_a_bad_signature_is_refused_and_not_retried(
    cams_env: CamsEmulator, emulator_credentials: tuple[str, str]
) -> None:
    # (the SDK's default chain caches what it read from the environment per process, so the key is given here)
    wrong = AccessKey(emulator_credentials[0], "not-the-secret")
    with pytest.raises(UpstreamFailed) as raised:
        CamsClient(get_settings(), StaticCredentials(wrong)).query(None, None)
    assert raised.value.code == "SignatureDoesNotMatch"
    assert len(cams_env.calls) == 1  # the SDK's own retries are off


@pytest.mark.parametrize(("behaviour", "code"), [("5xx", "ServiceUnavailable"), ("500", "InternalError")])
def test_server_errors_are_transient(cams, cams_env: CamsEmulator, behaviour: str, code: str) -> None:  # type: ignore[no-untyped-def]
    cams_env.set_behaviour(None, behaviour)
    with pytest.raises(UpstreamFailed) as raised:
        cams.query(None, None)
    assert type(raised.value) is UpstreamFailed and raised.value.code == code


def test_a_slow_answer_is_a_timeout(cams, cams_env: CamsEmulator) -> None:  # type: ignore[no-untyped-def]
    cams_env.set_behaviour(None, "slow:1.5")  # CAMS_TIMEOUT_MS is 1000 in these tests
    with pytest.raises(UpstreamTimeout) as raised:
        cams.query(None, None)
    assert raised.value.code == "UpstreamTimeout"


def test_garbage_is_unparseable(cams, cams_env: CamsEmulator) -> None:  # type: ignore[no-untyped-def]
    cams_env.set_behaviour(None, "garbage")
    with pytest.raises(UpstreamFailed) as raised:
        cams.query(None, None)
    assert raised.value.code == "UpstreamUnparseable"


def test_a_dropped_connection_is_unreachable(cams, cams_env: CamsEmulator) -> None:  # type: ignore[no-untyped-def]
    cams_env.set_behaviour(None, "drop")
    with pytest.raises(UpstreamFailed) as raised:
        cams.query(None, None)
    assert type(raised.value) is UpstreamFailed and raised.value.code == "UpstreamUnreachable"


def test_nothing_listening_is_unreachable(monkeypatch: pytest.MonkeyPatch, cams_env: CamsEmulator) -> None:
    monkeypatch.setenv("CAMS_ENDPOINT", "127.0.0.1:9")  # discard port: connection refused
    with pytest.raises(UpstreamFailed) as raised:
        client_from_settings(get_settings()).query(None, None)
    assert raised.value.code == "UpstreamUnreachable"
