"""The domain's errors. They know nothing of HTTP or SQS; each trigger maps them once."""

from __future__ import annotations


class ConfigurationError(Exception):
    """The deployment's configuration cannot work; raised at start, naming the variable."""


class WabaLookupError(Exception):
    """A lookup that did not produce a WABA. Carries only what is safe to show a caller."""

    default_code = "InternalError"
    status = 500  # the HTTP status a read answers with (the worker maps none)

    def __init__(self, message: str, code: str | None = None, request_id: str | None = None) -> None:
        super().__init__(message)
        self.code = code or self.default_code
        self.message = message
        self.request_id = request_id

    def __str__(self) -> str:
        suffix = f" (RequestId {self.request_id})" if self.request_id else ""
        return f"{self.code}: {self.message}{suffix}"


class InvalidRequest(WabaLookupError):
    """The caller's input is malformed; nothing was spent on it."""

    default_code = "InvalidParameter"
    status = 400


class Denied(WabaLookupError):
    """CAMS answered with a permanent refusal (permission, subscription, unknown owner)."""

    status = 403


class Throttled(WabaLookupError):
    """CAMS flow-controlled the call, or no pacing slot was free in time. Retry after `retry_after` seconds."""

    default_code = "Throttling"
    status = 429

    def __init__(
        self, message: str, code: str | None = None, request_id: str | None = None, retry_after: float = 1.0
    ) -> None:
        super().__init__(message, code, request_id)
        self.retry_after = retry_after


class BudgetUnavailable(Throttled):
    """The shared budget's store cannot be reached and this instance may not call CAMS without it."""

    default_code = "BudgetUnavailable"
    status = 503


class UpstreamFailed(WabaLookupError):
    """CAMS could not be reached, failed, or answered something unreadable. Transient."""

    default_code = "UpstreamFailed"
    status = 502


class UpstreamRejected(UpstreamFailed):
    """CAMS refused the request with a 4xx code it does not document for this action: the same request cannot do
    better a second time, so it is not retried (a rejection of the credentials themselves is: they are read again)."""

    default_code = "UpstreamRejected"


class UpstreamTimeout(UpstreamFailed):
    """CAMS did not answer within CAMS_TIMEOUT_MS."""

    default_code = "UpstreamTimeout"
    status = 504


PERMANENT_CODES = frozenset({"Ram.PermissionDeny", "Product.Unsubscript", "Unknown.ResourceOwnerId"})
THROTTLING_CODES = frozenset({"System.LimitControl"})
# codes with which CAMS refuses the credentials themselves: an expired STS token, a rotated or deleted key
AUTH_CODE_PREFIXES = ("InvalidAccessKeyId", "SignatureDoesNotMatch", "InvalidSecurityToken", "IncompleteSignature")


def error_for_code(code: str, message: str, request_id: str | None, status: int | None = None) -> WabaLookupError:
    """Classify a CAMS error answer by its Code (not by exception class or message text)."""
    if code in PERMANENT_CODES:
        return Denied(message, code, request_id)
    if code in THROTTLING_CODES or code.startswith("Throttling"):
        return Throttled(message, code, request_id)
    if status is not None and 400 <= status < 500 and not code.startswith(AUTH_CODE_PREFIXES):
        return UpstreamRejected(message, code, request_id)
    return UpstreamFailed(message, code, request_id)
