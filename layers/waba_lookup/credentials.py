"""Where the Alibaba Cloud AccessKey comes from: a Secrets Manager secret, or the SDK's own chain."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from waba_lookup.errors import ConfigurationError


@dataclass(frozen=True)
class AccessKey:
    access_key_id: str
    access_key_secret: str = field(repr=False)
    security_token: str | None = field(default=None, repr=False)


def access_key_from_secret(secret_id: str, provider: Any = None) -> AccessKey:
    """Read `{"AccessKeyId", "AccessKeySecret"[, "SecurityToken"]}` from Secrets Manager via Powertools.

    Called once per instance (the CAMS client that uses it is cached), so the secret is fetched once.
    """
    from aws_lambda_powertools.utilities import parameters

    try:
        if provider is None:
            value = parameters.get_secret(secret_id, transform="json", max_age=3600)
        else:
            value = provider.get(secret_id, transform="json", max_age=3600)
    except parameters.exceptions.TransformParameterError:
        raise ConfigurationError(f"CAMS_CREDENTIALS_SECRET {secret_id!r} is not a JSON object") from None
    except parameters.exceptions.GetParameterError as exc:  # not found, denied, unreachable
        raise ConfigurationError(
            f"CAMS_CREDENTIALS_SECRET {secret_id!r} could not be read ({type(exc).__name__})"
        ) from None
    if not isinstance(value, dict):
        raise ConfigurationError(f"CAMS_CREDENTIALS_SECRET {secret_id!r} is not a JSON object")
    key_id, key_secret = value.get("AccessKeyId"), value.get("AccessKeySecret")
    if not isinstance(key_id, str) or not key_id or not isinstance(key_secret, str) or not key_secret:
        raise ConfigurationError(
            f"CAMS_CREDENTIALS_SECRET {secret_id!r} must hold non-empty strings AccessKeyId and AccessKeySecret"
        )
    token = value.get("SecurityToken")
    return AccessKey(key_id, key_secret, token if isinstance(token, str) and token else None)
