"""Call the deployed HTTP function on Function Compute through a trigger with `authType: function`, signed.

    python -m waba_local.dev.call URL [-X METHOD] [-H 'Name: value']... [-d BODY | -d @FILE]

Prints the answer as `curl -i` would; exits 1 on an HTTP error status, 2 when nothing could be sent.
What is signed, with which credentials: docs/calling-fc.md.
"""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, datetime
from http.client import HTTPConnection, HTTPResponse, HTTPSConnection
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

ALGORITHM = "ACS3-HMAC-SHA256"
# set by the signer: a caller's own value would not be what was signed
RESERVED = ("authorization", "x-acs-date", "x-acs-security-token")
NO_CREDENTIALS = (
    "call: no Alibaba Cloud credentials: set ALIBABA_CLOUD_ACCESS_KEY_ID and ALIBABA_CLOUD_ACCESS_KEY_SECRET "
    "(and ALIBABA_CLOUD_SECURITY_TOKEN with STS credentials), or configure a profile with `aliyun configure`"
)


class CallError(Exception):
    """Nothing was sent: bad arguments, no credentials, or the trigger could not be reached."""


def signed_headers(method: str, url: str, credential: Any, now: datetime | None = None) -> dict[str, str]:
    """The headers that prove who calls: x-acs-date, x-acs-security-token (empty with an AccessKey), authorization.

    As FC's own examples build them: the path as it stands in the URL ('$' as %24), one value per query key, and an
    empty payload (FC does not sign the body)."""
    split = urlsplit(url)
    pairs = parse_qsl(split.query, keep_blank_values=True)
    query = dict(pairs)
    if len(query) != len(pairs):
        raise CallError("call: a query key given twice cannot be signed (FC's signer takes one value per key)")
    date = (now or datetime.now(UTC)).strftime("%Y-%m-%dT%H:%M:%SZ")
    headers = {"x-acs-date": date, "x-acs-security-token": credential.security_token or ""}
    from alibabacloud_tea_openapi.utils import Utils
    from darabonba.request import DaraRequest  # the SDK's request model, which the signer reads

    request = DaraRequest()
    request.method, request.pathname = method, split.path.replace("$", "%24")
    request.headers, request.query = dict(headers), query
    authorization = Utils.get_authorization(
        request, ALGORITHM, "", credential.access_key_id, credential.access_key_secret
    )
    return headers | {"authorization": authorization}


def credentials() -> Any:
    """The caller's credentials from the official default chain (environment variables first)."""
    from alibabacloud_credentials.client import Client
    from alibabacloud_credentials.exceptions import CredentialException

    try:
        credential = Client().get_credential()
    except CredentialException:
        raise CallError(NO_CREDENTIALS) from None  # its message lists every provider tried: noise here
    if not credential.access_key_id or not credential.access_key_secret:
        raise CallError(NO_CREDENTIALS)
    return credential


def send(method: str, url: str, headers: dict[str, str], body: bytes | None, timeout: float) -> HTTPResponse:
    """One request, as given: no redirect is followed (a signed request goes to the host it was signed for)."""
    split = urlsplit(url)
    if split.scheme not in ("http", "https") or not split.hostname:
        raise CallError(f"call: not an http(s) URL: {url}")
    connection = (HTTPSConnection if split.scheme == "https" else HTTPConnection)(
        split.hostname, split.port, timeout=timeout
    )
    target = (split.path or "/") + (f"?{split.query}" if split.query else "")
    try:
        connection.request(method, target, body=body, headers=headers)
        return connection.getresponse()
    except OSError as error:
        raise CallError(f"call: {split.netloc}: {error}") from None


def parse_header(text: str) -> tuple[str, str]:
    name, colon, value = text.partition(":")
    if not colon or not name.strip():
        raise CallError(f"call: a header is 'Name: value', not {text!r}")
    if name.strip().lower() in RESERVED:
        raise CallError(f"call: {name.strip()} is set by the signer")
    return name.strip(), value.strip()


def read_body(data: str | None) -> bytes | None:
    if data is None:
        return None
    if data == "@-":
        return sys.stdin.buffer.read()
    if data.startswith("@"):
        return Path(data[1:]).read_bytes()
    return data.encode()


def masked(access_key_id: str) -> str:
    return access_key_id[:4] + "****" + access_key_id[-3:] if len(access_key_id) > 10 else "****"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m waba_local.dev.call", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("url", help="the HTTP trigger's URL and the route, e.g. https://…fcapp.run/waba/{custSpaceId}")
    parser.add_argument("-X", "--request", dest="method", help="the method (default GET, or POST with --data)")
    parser.add_argument("-H", "--header", action="append", default=[], help="'Name: value', sent unsigned")
    parser.add_argument("-d", "--data", help="the body; @FILE reads a file, @- standard input")
    parser.add_argument("--timeout", type=float, default=30.0, help="seconds (default 30)")
    args = parser.parse_args(argv)
    method = (args.method or ("POST" if args.data is not None else "GET")).upper()
    try:
        extra = [parse_header(text) for text in args.header]
        body = read_body(args.data)
        if body is not None and not any(name.lower() == "content-type" for name, _ in extra):
            extra.append(("Content-Type", "application/json"))
        credential = credentials()
        headers = dict(extra) | signed_headers(method, args.url, credential)
        kind = "STS credentials" if credential.security_token else "AccessKey"
        print(f"call: {method} {args.url} signed with {kind} {masked(credential.access_key_id)}", file=sys.stderr)
        response = send(method, args.url, headers, body, args.timeout)
    except CallError as error:
        print(error, file=sys.stderr)
        return 2
    print(f"HTTP/{response.version / 10:.1f} {response.status} {response.reason}")
    for name, value in response.getheaders():
        print(f"{name}: {value}")
    print()
    sys.stdout.write(response.read().decode("utf-8", errors="replace"))
    sys.stdout.write("\n")
    return 1 if response.status >= 400 else 0


if __name__ == "__main__":
    sys.exit(main())
