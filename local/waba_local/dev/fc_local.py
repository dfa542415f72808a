"""Function Compute locally: the event an FC 3.0 HTTP trigger passes (JSON bytes, `version: v1`), the Python 3.12
runtime's context object, and the environment FC sets for a function (its role's STS credentials among them)."""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass, field
from urllib.parse import parse_qsl, urlsplit

REGION = "ap-southeast-1"
ACCOUNT_ID = "5123456789012345"
FUNCTION_NAME = "waba-lookup-http"


@dataclass(frozen=True)
class FunctionMeta:
    name: str = FUNCTION_NAME
    handler: str = "app.handler"
    memory: int = 512
    timeout: int = 20  # seconds, as s.yaml declares the HTTP function
    version_id: str = ""
    qualifier: str = "LATEST"


@dataclass(frozen=True)
class LocalFcContext:
    """What FC's Python 3.12 runtime passes as `context` (no `credentials`: they are in the environment)."""

    request_id: str = field(default_factory=lambda: f"1-{int(time.time()):x}-{uuid.uuid4().hex[:24]}")
    function: FunctionMeta = FunctionMeta()
    region: str = REGION
    account_id: str = ACCOUNT_ID
    log_project: str = "waba-lookup-local"
    log_store: str = "function-logs"


def fc_invocation(
    method: str, target: str, headers: dict[str, str] | None = None, body: str | None = None
) -> tuple[bytes, LocalFcContext]:
    """The event and the context of one FC invocation for this request: one request id in both, as FC sets it."""
    context = LocalFcContext()
    return fc_http_event(method, target, headers, body, context.request_id), context


def fc_http_event(
    method: str,
    target: str,
    headers: dict[str, str] | None = None,
    body: str | None = None,
    request_id: str | None = None,
) -> bytes:
    """The FC HTTP trigger's event for `METHOD /path?query`: several values of a query parameter joined by commas,
    the path kept percent-encoded, as FC passes them."""
    url = urlsplit(target)
    query: dict[str, str] = {}
    for key, value in parse_qsl(url.query, keep_blank_values=True):
        query[key] = f"{query[key]},{value}" if key in query else value
    headers = dict(headers or {})
    host = headers.get("Host") or headers.get("host") or "localhost"
    event = {
        "version": "v1",
        "rawPath": url.path,
        "headers": headers,
        "queryParameters": query,
        "body": body or "",
        "isBase64Encoded": False,
        "requestContext": {
            "accountId": ACCOUNT_ID,
            "domainName": host,
            "domainPrefix": host.split(".")[0],
            "http": {
                "method": method.upper(),
                "path": url.path,
                "protocol": "HTTP/1.1",
                "sourceIp": "127.0.0.1",
                "userAgent": headers.get("User-Agent") or headers.get("user-agent") or "",
            },
            "requestId": request_id or LocalFcContext().request_id,
            "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "timeEpoch": str(int(time.time() * 1000)),
        },
    }
    return json.dumps(event).encode()


def fc_environment(function_name: str = FUNCTION_NAME) -> dict[str, str]:
    """The variables FC sets in every instance (the role's credentials come with the stand-ins' keys)."""
    return {"FC_FUNCTION_NAME": function_name, "FC_REGION": REGION, "FC_ACCOUNT_ID": ACCOUNT_ID}
