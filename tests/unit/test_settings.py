"""Settings read from the environment: defaults, and errors that name the variable."""

from __future__ import annotations

import pytest

from waba_lookup.errors import ConfigurationError
from waba_lookup.settings import Settings


def test_a_read_waits_five_seconds_for_a_permit_by_default() -> None:
    assert Settings.from_env({}).http_permit_wait_seconds == 5
    assert Settings.from_env({"HTTP_PERMIT_WAIT_SECONDS": "0"}).http_permit_wait_seconds == 0


@pytest.mark.parametrize("value", ["11", "-1", "1.5", "soon"])
def test_a_wait_the_http_function_could_not_hold_is_refused_by_name(value: str) -> None:
    with pytest.raises(ConfigurationError, match="HTTP_PERMIT_WAIT_SECONDS"):
        Settings.from_env({"HTTP_PERMIT_WAIT_SECONDS": value})
