"""Pytest plugin: a local CAMS emulator on an ephemeral port, and the AccessKey pair it accepts."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from waba_local.stand_ins.emulator import DEFAULT_ACCESS_KEY_ID, DEFAULT_ACCESS_KEY_SECRET, CamsEmulator


@pytest.fixture
def emulator_credentials() -> tuple[str, str]:
    """(AccessKeyId, AccessKeySecret) that `cams_emulator` accepts."""
    return DEFAULT_ACCESS_KEY_ID, DEFAULT_ACCESS_KEY_SECRET


@pytest.fixture
def cams_emulator(emulator_credentials: tuple[str, str]) -> Iterator[CamsEmulator]:
    """A fresh emulator per test (own calls, nonces, flow-control window), stopped afterwards."""
    access_key_id, secret = emulator_credentials
    with CamsEmulator(accounts={access_key_id: secret}) as emulator:
        yield emulator
