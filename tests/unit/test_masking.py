"""CAMS's messages reach callers with each secret masked where it stands as a token, and nowhere else."""

from __future__ import annotations

import pytest

from waba_lookup.cams import _safe_message


@pytest.mark.parametrize(
    ("message", "secrets", "masked"),
    [
        ("The request failed.", ["i"], "The request failed."),  # an IsvCode `i` is no substring mask
        ("IsvCode i is not authorised", ["i"], "IsvCode *** is not authorised"),
        ("IsvCode=i&CustSpaceId=1", ["i"], "IsvCode=***&CustSpaceId=1"),
        ("code 'abc-1' unknown; abc-12 is another", ["abc-1"], "code '***' unknown; abc-12 is another"),
        ("token CAES+x/y== expired", ["CAES+x/y=="], "token *** expired"),
        ("token CAES%2Bx%2Fy%3D%3D expired", ["CAES+x/y=="], "token *** expired"),  # URL-encoded too
        ("keyXsecretX", ["secretX"], "keyXsecretX"),
        ("no message here", [], "no message here"),
    ],
)
def test_secrets_are_masked_as_whole_tokens(message: str, secrets: list[str], masked: str) -> None:
    assert _safe_message(message, secrets) == masked


def test_a_secret_past_the_cut_is_masked_before_the_cut() -> None:
    message = "x" * 290 + " SECRETVALUE123456789"
    assert "SECRET" not in _safe_message(message, ["SECRETVALUE123456789"])
