"""Sentinel AccessKey secret and IsvCode, every failure path: neither appears in logs or error messages."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest

from waba_local.emulator import DEFAULT_ACCESS_KEY_ID, SEEDED_CUSTOMERS, CamsEmulator
from waba_lookup.customer import Customer
from waba_lookup.errors import InvalidRequest, WabaLookupError
from waba_lookup.lookup import get_lookup
from waba_lookup.settings import get_settings

SECRET = "SENTINEL-SECRET-d41d8cd98f00b204"
ISV_CODE = "SENTINELisv9e107d9d372bb6826b"
SPACE = "778899001122"
BEHAVIOURS = [
    "ok",
    "error:Ram.PermissionDeny",
    "error:Product.Unsubscript",
    "error:Unknown.ResourceOwnerId",
    "error:System.LimitControl",
    "5xx",
    "500",
    "slow:0.8",
    "garbage",
    "drop",
]


@pytest.fixture
def sentinel_cams(monkeypatch: pytest.MonkeyPatch) -> Iterator[CamsEmulator]:
    data = dict(next(v for k, v in SEEDED_CUSTOMERS.items() if k is not None)[1])
    with CamsEmulator(accounts={DEFAULT_ACCESS_KEY_ID: SECRET}, customers={SPACE: (ISV_CODE, data)}) as emulator:
        monkeypatch.setenv("CAMS_ENDPOINT", emulator.endpoint)
        monkeypatch.setenv("CAMS_PROTOCOL", "http")
        monkeypatch.setenv("CAMS_TIMEOUT_MS", "500")
        monkeypatch.setenv("ALIBABA_CLOUD_ACCESS_KEY_ID", DEFAULT_ACCESS_KEY_ID)
        monkeypatch.setenv("ALIBABA_CLOUD_ACCESS_KEY_SECRET", SECRET)
        monkeypatch.setenv("POWERTOOLS_LOG_LEVEL", "DEBUG")
        yield emulator


def test_no_failure_path_leaks_the_secret_or_the_isv_code(
    sentinel_cams: CamsEmulator, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="waba-lookup")
    caplog.set_level(logging.INFO)
    lookup = get_lookup()
    seen: list[str] = []
    for behaviour in BEHAVIOURS:
        sentinel_cams.set_behaviour(SPACE, behaviour)
        try:
            lookup.read(Customer(SPACE, ISV_CODE), deadline=lookup_deadline(), refresh=True)
        except WabaLookupError as error:
            seen += [str(error), repr(error), error.message, str(error.request_id)]
    sentinel_cams.clear_behaviours()
    with pytest.raises(WabaLookupError) as wrong_code:
        lookup.read(Customer(SPACE, ISV_CODE + "x"), deadline=lookup_deadline())
    seen.append(str(wrong_code.value))
    with pytest.raises(InvalidRequest) as invalid:
        Customer.parse(SPACE, ISV_CODE + "!")
    seen.append(str(invalid.value))
    seen += [capsys.readouterr().out, capsys.readouterr().err, caplog.text, repr(get_settings())]
    everything = "\n".join(seen)
    assert "Denied" in everything or "Ram.PermissionDeny" in everything  # the paths really ran
    assert "UpstreamTimeout" in everything and "UpstreamUnparseable" in everything
    assert SECRET not in everything
    assert ISV_CODE not in everything


def lookup_deadline() -> float:
    import time

    return time.monotonic() + 2.5
