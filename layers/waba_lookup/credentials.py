"""Where the Alibaba Cloud credentials come from, read again when they change or are rejected.

`FunctionCredentials` (the default: the invocation's, else `EnvironmentCredentials`, the ALIBABA_CLOUD_* variables)
and `SecretCredentials` (AWS: a Secrets Manager secret). Which is read when: docs/architecture.md#credentials.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from waba_lookup.errors import ConfigurationError

REREAD_AFTER_REJECTION_SECONDS = 60.0
ENV_KEY_ID, ENV_KEY_SECRET, ENV_TOKEN = (
    "ALIBABA_CLOUD_ACCESS_KEY_ID",
    "ALIBABA_CLOUD_ACCESS_KEY_SECRET",
    "ALIBABA_CLOUD_SECURITY_TOKEN",
)


@dataclass(frozen=True)
class AccessKey:
    access_key_id: str
    access_key_secret: str = field(repr=False)
    security_token: str | None = field(default=None, repr=False)


class Credentials(Protocol):
    """A source of credentials: None means the SDK's own default chain."""

    def current(self) -> AccessKey | None: ...

    def rejected(self) -> None:
        """CAMS (or OSS) refused the credentials last returned: read them again, within the source's limits."""


@dataclass(frozen=True)
class StaticCredentials:
    """Credentials given once (tests, the benchmark's neighbour)."""

    key: AccessKey | None

    def current(self) -> AccessKey | None:
        return self.key

    def rejected(self) -> None:
        pass


def access_key_from_env(environ: Mapping[str, str]) -> AccessKey | None:
    """The ALIBABA_CLOUD_* variables as they are now; ConfigurationError if only half a key is there."""
    key_id, key_secret = environ.get(ENV_KEY_ID, "").strip(), environ.get(ENV_KEY_SECRET, "").strip()
    if bool(key_id) != bool(key_secret):
        raise ConfigurationError(f"{ENV_KEY_ID} and {ENV_KEY_SECRET} must be set together")
    if not key_id:
        return None
    return AccessKey(key_id, key_secret, environ.get(ENV_TOKEN, "").strip() or None)


@dataclass
class EnvironmentCredentials:
    """The ALIBABA_CLOUD_* variables, read at every use: renewed STS credentials are seen at once."""

    environ: Mapping[str, str] = field(default_factory=lambda: os.environ)

    def current(self) -> AccessKey | None:
        return access_key_from_env(self.environ)

    def rejected(self) -> None:
        pass  # the next current() reads the variables again anyway


_invocation: list[AccessKey | None] = [None]  # the running invocation's, set by its platform adapter


def use_invocation_credentials(context: Any) -> None:
    """Take the credentials an invocation's context carries (`context.credentials` with `access_key_id`,
    `access_key_secret`, `security_token`), or none: each invocation replaces the last one's."""
    given = getattr(context, "credentials", None)
    key_id, secret = getattr(given, "access_key_id", None), getattr(given, "access_key_secret", None)
    token = getattr(given, "security_token", None)
    if isinstance(key_id, str) and key_id and isinstance(secret, str) and secret:
        _invocation[0] = AccessKey(key_id, secret, token if isinstance(token, str) and token else None)
    else:
        _invocation[0] = None


@dataclass
class FunctionCredentials:
    """The running invocation's credentials when its platform passed any, else the ALIBABA_CLOUD_* variables."""

    environment: EnvironmentCredentials = field(default_factory=EnvironmentCredentials)

    def current(self) -> AccessKey | None:
        return _invocation[0] or self.environment.current()

    def rejected(self) -> None:
        pass  # both are read again at every use


@dataclass
class SecretCredentials:
    """A Secrets Manager secret, fetched once, then again at most once a minute after a rejection."""

    secret_id: str
    provider: Any = None
    clock: Callable[[], float] = time.monotonic
    _key: AccessKey | None = field(default=None, init=False, repr=False)
    _read_at: float = field(default=-REREAD_AFTER_REJECTION_SECONDS, init=False)
    _stale: bool = field(default=False, init=False)

    def current(self) -> AccessKey:
        if self._key is None or (self._stale and self.clock() - self._read_at >= REREAD_AFTER_REJECTION_SECONDS):
            self._read_at, self._stale = self.clock(), False
            self._key = access_key_from_secret(self.secret_id, self.provider, max_age=0 if self._key else 3600)
        return self._key

    def rejected(self) -> None:
        self._stale = True


def access_key_from_secret(secret_id: str, provider: Any = None, max_age: int = 3600) -> AccessKey:
    """Read `{"AccessKeyId", "AccessKeySecret"[, "SecurityToken"]}` from Secrets Manager via Powertools."""
    from aws_lambda_powertools.utilities import parameters

    try:
        if provider is None:
            value = parameters.get_secret(secret_id, transform="json", max_age=max_age, force_fetch=max_age == 0)
        else:
            value = provider.get(secret_id, transform="json", max_age=max_age, force_fetch=max_age == 0)
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
