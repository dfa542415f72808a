"""The one CAMS call, QueryChatappBindWaba, through the official SDK, with errors classified by CAMS Code.

The SDK (about 0.3 s of imports) is imported when the first client is built, so a cache hit never pays for it.
Its exceptions carry the signed request (AccessKey, signature, IsvCode): nothing of them leaves this module
but the CAMS code, message and request id.
"""

from __future__ import annotations

import json
import logging
import re
import socket
from typing import Any
from urllib.parse import quote

from waba_lookup.credentials import AccessKey, Credentials, FunctionCredentials, SecretCredentials
from waba_lookup.errors import AUTH_CODE_PREFIXES, UpstreamFailed, UpstreamTimeout, WabaLookupError, error_for_code
from waba_lookup.settings import Settings

ACTION = "QueryChatappBindWaba"
VERSION = "2020-06-06"
_MAX_MESSAGE = 300
# the SDK's debug dump (DEBUG=sdk) and urllib3's request lines: loggers whose records we redact
SDK_LOGGERS = ("darabonba-core", "alibabacloud-tea", "urllib3.connectionpool")
_SECRET_HEADER = re.compile(
    r"^([<>] [\w-]*(?:authorization|token|signature|secret|credential)[\w-]* : ).*$", re.IGNORECASE | re.MULTILINE
)
_SECRET_PARAM = re.compile(r"((?:IsvCode|SecurityToken|Signature|AccessKeySecret)=)[^&\s\"']*", re.IGNORECASE)


class CamsClient:
    """Calls QueryChatappBindWaba and returns the CAMS body as CAMS sent it (unknown fields kept)."""

    def __init__(self, settings: Settings, credentials: Credentials) -> None:
        self._settings = settings
        self._credentials = credentials
        self._sdk: Any = None
        self._access_key: AccessKey | None = None  # what the SDK client was built with

    def query(self, cust_space_id: str | None, isv_code: str | None) -> dict[str, Any]:
        """One attempt (the SDK's own retries are off). Raises a WabaLookupError subclass on any failure."""
        sdk = self._client()
        from alibabacloud_tea_openapi import utils_models
        from darabonba.runtime import RuntimeOptions

        query = {k: v for k, v in (("CustSpaceId", cust_space_id), ("IsvCode", isv_code)) if v}
        key = self._access_key
        secrets = [s for s in (isv_code, key and key.access_key_secret, key and key.security_token) if s]
        try:
            answer = sdk.call_api(query_params(), utils_models.OpenApiRequest(query=query), RuntimeOptions())
        except Exception as exc:  # noqa: BLE001 - whatever the SDK raises is classified, never passed on
            error = classify_exception(exc, secrets, self._settings.cams_timeout_ms)
        else:
            return _checked_body(answer.get("body"), secrets)
        if error.code.startswith(AUTH_CODE_PREFIXES):
            self._credentials.rejected()
            self._sdk = None  # the next attempt reads the credentials again and builds a client with them
        raise error  # outside the except block, so the SDK exception is not chained as __context__

    def ready(self) -> None:
        """Read the credentials (ConfigurationError if they cannot be), without calling CAMS."""
        self._credentials.current()

    def prepare(self) -> None:
        """Load the SDK, read the credentials and build the client, without calling CAMS: done before a permit
        starts, so that the permit's second is spent on the call alone (a Secrets Manager read can take longer)."""
        self._client()

    def _client(self) -> Any:
        """The SDK client, built again whenever the credentials changed (an STS token renewed, a key rotated)."""
        key = self._credentials.current()
        if self._sdk is None or key != self._access_key:
            self._sdk, self._access_key = build_sdk_client(self._settings, key), key
        return self._sdk


def query_params() -> Any:
    """The SDK's own Params for QueryChatappBindWaba. The generated query_chatapp_bind_waba() maps the body onto
    a model that drops fields it does not know; call_api with the same Params returns the body as CAMS sent it."""
    from alibabacloud_tea_openapi import utils_models

    return utils_models.Params(
        action=ACTION,
        version=VERSION,
        protocol="HTTPS",
        pathname="/",
        method="POST",
        auth_type="AK",
        style="RPC",
        req_body_type="formData",
        body_type="json",
    )


def build_sdk_client(settings: Settings, access_key: AccessKey | None) -> Any:
    """The SDK client: region, endpoint override, protocol, timeouts, no SDK retries, credentials."""
    guard_sdk_logs()
    from alibabacloud_cams20200606.client import Client
    from alibabacloud_tea_openapi import utils_models

    config = utils_models.Config(
        region_id=settings.cams_region,
        endpoint=settings.cams_endpoint,
        protocol=settings.cams_protocol,
        read_timeout=settings.cams_timeout_ms,
        connect_timeout=settings.connect_timeout_ms,
        retry_options=None,  # no SDK retries: every attempt must pass through our pacer
    )
    if access_key is not None:
        config.access_key_id = access_key.access_key_id
        config.access_key_secret = access_key.access_key_secret
        config.security_token = access_key.security_token
    else:
        # The SDK's default chain: profiles, OIDC, instance roles, credentials URI.
        from alibabacloud_credentials.client import Client as CredentialClient

        config.credential = CredentialClient()
    return Client(config)


def client_from_settings(settings: Settings) -> CamsClient:
    """A CamsClient with the settings' credentials: the Secrets Manager secret, else the ALIBABA_CLOUD_* variables
    (on Function Compute, the function role's), else the SDK's default chain (profiles, OIDC, instance roles)."""
    if settings.cams_credentials_secret:
        return CamsClient(settings, SecretCredentials(settings.cams_credentials_secret))
    return CamsClient(settings, FunctionCredentials())


def _checked_body(body: Any, secrets: list[str]) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise UpstreamFailed("CAMS answered with something that is not a JSON object", "UpstreamUnparseable")
    code = body.get("Code")
    if code != "OK" or body.get("Success") is False:
        raise error_for_code(
            str(code), _safe_message(body.get("Message"), secrets), _text_or_none(body.get("RequestId"))
        )
    return body


def classify_exception(exc: BaseException, secrets: list[str], timeout_ms: int) -> WabaLookupError:
    """Turn an SDK exception into a domain error carrying only code, message and request id."""
    code = getattr(exc, "code", None)
    status = getattr(exc, "status_code", None)
    if isinstance(code, str) and code and code != "None" and isinstance(status, int):
        data = getattr(exc, "data", None)
        raw_message = data.get("Message") if isinstance(data, dict) else None
        message = _safe_message(raw_message, secrets)
        request_id = _text_or_none(getattr(exc, "request_id", None))
        if status >= 500:
            return UpstreamFailed(message, code, request_id)
        return error_for_code(code, message, request_id, status)
    causes = list(_causes(exc))
    if any(isinstance(c, (TimeoutError, socket.timeout)) or _is_requests_timeout(c) for c in causes):
        return UpstreamTimeout(f"CAMS did not answer within {timeout_ms} ms")
    if any(isinstance(c, (json.JSONDecodeError, UnicodeDecodeError)) for c in causes):
        return UpstreamFailed("CAMS answered with something that is not JSON", "UpstreamUnparseable")
    if isinstance(code, str) and code and code != "None":  # the SDK's own ClientException, e.g. no credentials
        return UpstreamFailed(f"the CAMS SDK refused the call ({code})", code)
    return UpstreamFailed("CAMS could not be reached", "UpstreamUnreachable")


def _causes(exc: BaseException) -> Any:
    seen: set[int] = set()
    stack: list[BaseException | None] = [exc]
    while stack:
        current = stack.pop()
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        stack.extend([getattr(current, "inner_exception", None), current.__cause__, current.__context__])


def _is_requests_timeout(exc: BaseException) -> bool:
    # requests' Timeout is an IOError; the SDK re-raises it as RetryError(str(e)) inside the except block,
    # so the original stays reachable as __context__.
    return any(cls.__name__ in ("Timeout", "ReadTimeout", "ConnectTimeout") for cls in type(exc).__mro__)


def _safe_message(message: Any, secrets: list[str]) -> str:
    """CAMS's message with each secret masked where it stands as a whole token (an IsvCode `i` must not turn
    "failed" into "fa***led"), in clear or URL-encoded, then cut short."""
    text = str(message) if message is not None else "no message"
    for secret in {form for s in secrets for form in (s, quote(s, safe=""))}:
        before = r"(?<![A-Za-z0-9])" if secret[0].isalnum() else ""
        after = r"(?![A-Za-z0-9])" if secret[-1].isalnum() else ""
        text = re.sub(f"{before}{re.escape(secret)}{after}", "***", text)
    return text[:_MAX_MESSAGE]


class _RedactSdkRecords(logging.Filter):
    """Masks credentials in the SDK's debug dump of each request (DEBUG=sdk prints every header, Authorization and
    x-acs-security-token among them) and the IsvCode in request lines (CAMS takes it in the query string)."""

    def filter(self, record: logging.LogRecord) -> bool:
        text = record.getMessage()
        record.msg, record.args = _SECRET_PARAM.sub(r"\1***", _SECRET_HEADER.sub(r"\1***", text)), ()
        return True


_REDACT = _RedactSdkRecords()


def guard_sdk_logs() -> None:
    """Put the redacting filter on the SDK's loggers (once; before the SDK makes them, getLogger makes them)."""
    for name in SDK_LOGGERS:
        sdk_logger = logging.getLogger(name)
        if _REDACT not in sdk_logger.filters:
            sdk_logger.addFilter(_REDACT)


def _text_or_none(value: Any) -> str | None:
    return str(value) if value not in (None, "", "None") else None
