"""API Gateway locally: turn an HTTP request into the HTTP API (payload 2.0) event Lambda would receive,
and load a function's handler module from functions/<name>/app.py."""

from __future__ import annotations

import base64
import importlib.util
import os
import time
import uuid
from pathlib import Path
from types import ModuleType
from urllib.parse import parse_qsl, urlsplit

# the handlers' folder: this checkout's, or another version's (the benchmark's baseline runs an older commit)
FUNCTIONS = Path(os.environ.get("WABA_FUNCTIONS_DIR") or Path(__file__).resolve().parents[3] / "functions")


def load_handler(name: str) -> ModuleType:
    """functions/<name>/app.py as a module (both functions' modules are called `app`)."""
    spec = importlib.util.spec_from_file_location(f"{name}_app", FUNCTIONS / name / "app.py")
    if spec is None or spec.loader is None:
        raise ImportError(f"no handler at functions/{name}/app.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def http_event(
    method: str, target: str, headers: dict[str, str] | None = None, body: str | bytes | None = None
) -> dict[str, object]:
    """The payload-2.0 event for `METHOD /path?query` with these headers and body. A body in bytes is passed as
    text when it is UTF-8, else base64-encoded with isBase64Encoded, as API Gateway passes a binary body."""
    body, encoded = body_as_text(body)
    url = urlsplit(target)
    lowered = {k.lower(): v for k, v in (headers or {}).items()}
    event: dict[str, object] = {
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": url.path,
        "rawQueryString": url.query,
        "headers": lowered,
        "requestContext": {
            "accountId": "123456789012",
            "apiId": "local",
            "domainName": lowered.get("host", "localhost"),
            "http": {
                "method": method.upper(),
                "path": url.path,
                "protocol": "HTTP/1.1",
                "sourceIp": "127.0.0.1",
                "userAgent": lowered.get("user-agent", ""),
            },
            "requestId": str(uuid.uuid4()),
            "routeKey": "$default",
            "stage": "$default",
            "timeEpoch": int(time.time() * 1000),
        },
        "isBase64Encoded": encoded,
    }
    if url.query:
        event["queryStringParameters"] = dict(parse_qsl(url.query, keep_blank_values=True))
    if body:
        event["body"] = body
    return event


def body_as_text(body: str | bytes | None) -> tuple[str | None, bool]:
    """(the body as an event carries it, whether that is base64)."""
    if not isinstance(body, bytes):
        return body, False
    try:
        return body.decode("utf-8"), False
    except UnicodeDecodeError:
        return base64.b64encode(body).decode("ascii"), True
