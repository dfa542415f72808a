"""Configuration: read from the environment once per instance, validated, typed."""

from __future__ import annotations

import dataclasses
import hashlib
import math
import os
from collections.abc import Mapping
from functools import lru_cache

from waba_lookup.credentials import access_key_from_env
from waba_lookup.errors import ConfigurationError

CAMS_MAX_QPS = 10  # CAMS's flow control for QueryChatappBindWaba, per account and second
MAX_PERMIT_WAIT_SECONDS = 10


@dataclasses.dataclass(frozen=True)
class Settings:
    cams_region: str = "ap-southeast-1"
    cams_endpoint: str | None = None
    cams_protocol: str = "https"
    cams_timeout_ms: int = 5000
    cams_credentials_secret: str | None = None
    cache_bucket: str | None = None
    cache_prefix: str = "waba/"
    cache_ttl_seconds: int = 300
    cache_stale_seconds: int = 86400
    cams_qps_budget: int = CAMS_MAX_QPS
    cams_budget_table: str | None = None
    tablestore_endpoint: str | None = None  # FC: where CAMS_BUDGET_TABLE lives
    tablestore_instance: str | None = None
    cams_interactive_reserve: int = 2
    cams_max_instances: int = 1
    refresh_queue_url: str | None = None
    refresh_dlq_url: str | None = None  # FC: where a refresh goes after its last attempt (SQS redrives by itself)
    refresh_min_interval_seconds: int = 60
    http_permit_wait_seconds: int = 5  # how long an HTTP read may wait for a CAMS permit before answering 429
    # the secret's name, the AccessKeyId, or the account for STS credentials (their key id changes at each renewal):
    # never the secret itself
    credential_source: str = "default-chain"
    platform: str = "aws"  # "fc" on Function Compute (FC_FUNCTION_NAME is set)
    cache_backend: str = "s3"
    oss_region: str | None = None
    oss_endpoint: str | None = None

    @property
    def calls_per_second(self) -> int:
        """Without a table, this instance's share of the quota: floor(budget / instances)."""
        return self.cams_qps_budget // self.cams_max_instances

    @property
    def on_fc(self) -> bool:
        return self.platform == "fc"

    @property
    def account_scope(self) -> str:
        """A short, stable name for the CAMS account this deployment calls as, used to partition the cache."""
        material = "|".join((self.cams_region, self.cams_endpoint or "", self.credential_source))
        return hashlib.sha256(material.encode()).hexdigest()[:16]

    @property
    def call_seconds(self) -> float:
        """The longest one CAMS call can take: connecting, then reading the answer."""
        return (self.connect_timeout_ms + self.cams_timeout_ms) / 1000

    @property
    def connect_timeout_ms(self) -> int:
        """Connecting is quick or not happening: a fifth of the read timeout, between 100 ms and 1 s."""
        return max(100, min(1000, self.cams_timeout_ms // 5))

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> Settings:
        """Build settings from environment variables; raise ConfigurationError naming the bad variable."""
        env = _Env(environ)
        settings = cls(
            cams_region=env.text("CAMS_REGION", cls.cams_region),
            cams_endpoint=env.optional("CAMS_ENDPOINT"),
            cams_protocol=env.choice("CAMS_PROTOCOL", cls.cams_protocol, ("https", "http")),
            cams_timeout_ms=env.integer("CAMS_TIMEOUT_MS", cls.cams_timeout_ms, low=100, high=60_000),
            cams_credentials_secret=env.optional("CAMS_CREDENTIALS_SECRET"),
            cache_bucket=env.optional("CACHE_BUCKET"),
            cache_prefix=env.text("CACHE_PREFIX", cls.cache_prefix),
            cache_ttl_seconds=env.integer("CACHE_TTL_SECONDS", cls.cache_ttl_seconds, low=0),
            cache_stale_seconds=env.integer("CACHE_STALE_SECONDS", cls.cache_stale_seconds, low=0),
            cams_qps_budget=env.integer("CAMS_QPS_BUDGET", cls.cams_qps_budget, low=1, high=CAMS_MAX_QPS),
            cams_budget_table=env.optional("CAMS_BUDGET_TABLE"),
            tablestore_endpoint=env.optional("TABLESTORE_ENDPOINT"),
            tablestore_instance=env.optional("TABLESTORE_INSTANCE"),
            cams_interactive_reserve=env.integer(
                "CAMS_INTERACTIVE_RESERVE", cls.cams_interactive_reserve, low=0, high=CAMS_MAX_QPS - 1
            ),
            cams_max_instances=env.integer("CAMS_MAX_INSTANCES", cls.cams_max_instances, low=1),
            refresh_queue_url=env.optional("REFRESH_QUEUE_URL"),
            refresh_dlq_url=env.optional("REFRESH_DLQ_URL"),
            refresh_min_interval_seconds=env.integer(
                "REFRESH_MIN_INTERVAL_SECONDS", cls.refresh_min_interval_seconds, low=0
            ),
            # the HTTP function's timeout (20 s on both clouds) must hold the wait, one whole call and the cache
            http_permit_wait_seconds=env.integer(
                "HTTP_PERMIT_WAIT_SECONDS", cls.http_permit_wait_seconds, low=0, high=MAX_PERMIT_WAIT_SECONDS
            ),
        )
        platform, backend, oss_region, oss_endpoint = _platform(env)
        settings = dataclasses.replace(
            settings, platform=platform, cache_backend=backend, oss_region=oss_region, oss_endpoint=oss_endpoint
        )
        key = access_key_from_env(environ)
        if settings.cams_credentials_secret:
            settings = dataclasses.replace(settings, credential_source=settings.cams_credentials_secret)
        elif key and key.security_token:  # STS: the key id is renewed with the token; the account is not
            account = env.optional("FC_ACCOUNT_ID") or "sts"
            settings = dataclasses.replace(settings, credential_source=f"account:{account}")
        elif key:
            settings = dataclasses.replace(settings, credential_source=key.access_key_id)
        if settings.on_fc and settings.cams_budget_table:
            for name, value in (
                ("TABLESTORE_ENDPOINT", settings.tablestore_endpoint),
                ("TABLESTORE_INSTANCE", settings.tablestore_instance),
            ):
                if not value:
                    raise ConfigurationError(
                        f"{name} must be set on Function Compute: CAMS_BUDGET_TABLE is a Tablestore table"
                    )
        if settings.cams_budget_table and settings.cams_interactive_reserve >= settings.cams_qps_budget:
            raise ConfigurationError(
                f"CAMS_INTERACTIVE_RESERVE={settings.cams_interactive_reserve} must be below "
                f"CAMS_QPS_BUDGET={settings.cams_qps_budget}: background refreshes would never get a permit"
            )
        # CAMS_MAX_INSTANCES sizes each instance's own log, without a table only
        if not settings.cams_budget_table and settings.cams_max_instances > settings.cams_qps_budget:
            raise ConfigurationError(
                f"CAMS_MAX_INSTANCES={settings.cams_max_instances} exceeds CAMS_QPS_BUDGET={settings.cams_qps_budget}: "
                "each instance needs at least one call per second; lower CAMS_MAX_INSTANCES or raise the budget"
            )
        return settings


def _platform(env: _Env) -> tuple[str, str, str | None, str | None]:
    """Where the function runs, and the cache backend with its endpoint (OSS: the region's internal one on FC)."""
    on_fc = env.optional("FC_FUNCTION_NAME") is not None
    backend = env.choice("CACHE_BACKEND", "oss" if on_fc else "s3", ("s3", "oss"))
    region = env.optional("OSS_REGION") or env.optional("FC_REGION")
    endpoint = env.optional("OSS_ENDPOINT")
    if backend == "oss" and env.optional("CACHE_BUCKET"):
        if region is None:
            raise ConfigurationError("OSS_REGION must be set for the OSS cache (FC_REGION is not set either)")
        if endpoint is None:
            endpoint = f"https://oss-{region}{'-internal' if on_fc else ''}.aliyuncs.com"
        elif not endpoint.startswith(("http://", "https://")):
            raise ConfigurationError(f"OSS_ENDPOINT must start with http:// or https://, not {endpoint!r}")
    return "fc" if on_fc else "aws", backend, region, endpoint


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The instance's settings, read from os.environ on first use."""
    return Settings.from_env(os.environ)


class _Env:
    """Typed reads of environment variables whose errors name the variable."""

    def __init__(self, environ: Mapping[str, str]) -> None:
        self._environ = environ

    def optional(self, name: str) -> str | None:
        value = self._environ.get(name, "").strip()
        return value or None

    def text(self, name: str, default: str) -> str:
        return self.optional(name) or default

    def choice(self, name: str, default: str, allowed: tuple[str, ...]) -> str:
        value = self.text(name, default).lower()
        if value not in allowed:
            raise ConfigurationError(f"{name} must be one of {', '.join(allowed)}, not {value!r}")
        return value

    def integer(self, name: str, default: int, low: int, high: float = math.inf) -> int:
        raw = self.optional(name)
        if raw is None:
            return default
        try:
            value = int(raw)
        except ValueError:
            raise ConfigurationError(f"{name} must be a whole number, not {raw!r}") from None
        if not low <= value <= high:
            bound = f"between {low} and {high}" if high != math.inf else f"at least {low}"
            raise ConfigurationError(f"{name} must be {bound}, not {value}")
        return value
