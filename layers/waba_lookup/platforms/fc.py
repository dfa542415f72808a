"""Function Compute 3.0 adapters: the HTTP trigger's event in and its answer out, the SMQ trigger's CloudEvents,
and FC's context as Lambda's.

The HTTP function keeps one router: an FC HTTP event (JSON bytes, `version: v1`) becomes the API Gateway HTTP API
(v2) event the router already takes, and the router's answer becomes FC's. Both shapes join several values of a
header or query parameter with commas and keep the path percent-encoded, so nothing is lost either way.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from waba_lookup.credentials import use_invocation_credentials

FC_ANSWER_KEYS = ("statusCode", "headers", "isBase64Encoded", "body")


def http_event(event: bytes | str | Mapping[str, Any]) -> dict[str, Any]:
    """The API Gateway HTTP API (v2) event for an FC HTTP trigger's event."""
    fc: Mapping[str, Any] = json.loads(event) if isinstance(event, (bytes, str)) else event
    context = fc.get("requestContext") or {}
    http = context.get("http") or {}
    query = {str(k): str(v) for k, v in (fc.get("queryParameters") or {}).items()}
    return {
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": fc.get("rawPath") or http.get("path") or "/",
        "rawQueryString": urlencode(query),
        "headers": {str(k).lower(): str(v) for k, v in (fc.get("headers") or {}).items()},
        "queryStringParameters": query or None,
        "body": fc.get("body"),
        "isBase64Encoded": bool(fc.get("isBase64Encoded")),
        "requestContext": {
            "accountId": context.get("accountId"),
            "apiId": "fc",
            "domainName": context.get("domainName"),
            "http": {
                "method": http.get("method", "GET"),
                "path": http.get("path"),
                "protocol": http.get("protocol"),
                "sourceIp": http.get("sourceIp"),
                "userAgent": http.get("userAgent"),
            },
            "requestId": context.get("requestId"),
            "routeKey": "$default",
            "stage": "$default",
            "time": context.get("time"),
            "timeEpoch": context.get("timeEpoch"),
        },
    }


def http_answer(response: Mapping[str, Any]) -> dict[str, Any]:
    """FC's HTTP answer for the router's API Gateway v2 answer."""
    return {key: response.get(key) for key in FC_ANSWER_KEYS} | {
        "headers": dict(response.get("headers") or {}),
        "isBase64Encoded": bool(response.get("isBase64Encoded")),
    }


@dataclass(frozen=True)
class QueueMessage:
    """One SMQ message as the EventBridge trigger delivers it: a CloudEvent whose data holds the message."""

    message_id: str
    body: str


def queue_messages(event: bytes | str | Mapping[str, Any] | list[Any]) -> list[QueueMessage]:
    """The messages of an SMQ trigger's event: a JSON array of CloudEvents (batched) or a single one."""
    parsed = json.loads(event) if isinstance(event, (bytes, str)) else event
    events = parsed if isinstance(parsed, list) else [parsed]
    messages = []
    for cloud_event in events:
        data = cloud_event.get("data") if isinstance(cloud_event, Mapping) else None
        if not isinstance(data, Mapping):
            raise TypeError("an SMQ trigger event must be CloudEvents with a data object")  # the trigger's, not ours
        body = data.get("messageBody")
        messages.append(QueueMessage(str(data.get("messageId") or cloud_event.get("id") or ""), str(body or "")))
    return messages


def begin_invocation(context: Any, started: float) -> FcContext:
    """FC's context as Lambda's. The credentials it carries, if any, become the ones the CAMS, OSS, SMQ and Tablestore
    clients use for this invocation; without them (Python 3.12) they read the ALIBABA_CLOUD_* variables."""
    use_invocation_credentials(context)
    return FcContext.of(context, started)


@dataclass(frozen=True)
class FcContext:
    """FC's invocation context in the shape Powertools and the handlers read from Lambda's.

    FC has no remaining-time method: the deadline is the invocation's start plus the function's timeout."""

    aws_request_id: str
    function_name: str
    memory_limit_in_mb: int
    invoked_function_arn: str
    function_version: str
    deadline: float
    clock: Callable[[], float] = time.monotonic

    @classmethod
    def of(cls, context: Any, started: float | None = None, clock: Callable[[], float] = time.monotonic) -> FcContext:
        """Adapt FC's context; `started` is when the invocation began (by `clock`), now if not given."""
        function = getattr(context, "function", None)
        name = str(getattr(function, "name", "") or "")
        region, account = getattr(context, "region", ""), getattr(context, "account_id", "")
        return cls(
            aws_request_id=str(getattr(context, "request_id", "") or ""),
            function_name=name,
            memory_limit_in_mb=int(getattr(function, "memory", 0) or 0),
            invoked_function_arn=f"acs:fc:{region}:{account}:functions/{name}",
            function_version=str(getattr(function, "qualifier", "") or "LATEST"),
            deadline=(clock() if started is None else started) + float(getattr(function, "timeout", 0) or 0),
            clock=clock,
        )

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self.deadline - self.clock()) * 1000))
