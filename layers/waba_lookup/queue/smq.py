"""Simple Message Queue (SMQ, formerly MNS) behind the refresh-queue port: BatchSendMessage through aliyun-mns-sdk.

A queue is named by its URL, `http(s)://{account}.mns.{region}.aliyuncs.com/queues/{name}`. Credentials are the
ALIBABA_CLOUD_* variables, read at every request (on Function Compute, the function role's, renewed by FC). The
SDK keeps one HTTP connection per client, so each thread has its own client. It has no retry policy, but sends a
request once more when the connection closed without an answer; a refresh is idempotent, so a duplicate is harmless.
"""

from __future__ import annotations

import threading
from typing import Any
from urllib.parse import urlsplit

from waba_lookup.credentials import Credentials, FunctionCredentials
from waba_lookup.errors import ConfigurationError
from waba_lookup.queue import QueueSendFailed

TIMEOUT_SECONDS = 3.0  # the SDK has one socket timeout, for connecting and for each read


def parse_queue_url(url: str) -> tuple[str, str]:
    """(endpoint, queue name) of an SMQ queue URL; ConfigurationError naming the URL's problem."""
    parts = urlsplit(url)
    segments = parts.path.strip("/").split("/")
    if parts.scheme not in ("http", "https") or not parts.netloc or len(segments) != 2 or segments[0] != "queues":
        raise ConfigurationError(f"an SMQ queue URL must be http(s)://host/queues/<name>, not {url!r}")
    return f"{parts.scheme}://{parts.netloc}", segments[1]


class SmqQueue:
    """One SMQ queue: batches of up to 16 messages and 64 KiB, SMQ's limits, each with its own delay."""

    max_messages = 16
    max_bytes = 64 * 1024
    call_seconds = 2 * TIMEOUT_SECONDS  # the SDK sends once more when the connection closed without an answer

    def __init__(self, url: str, credentials: Credentials | None = None) -> None:
        self.url = url
        self.endpoint, self.name = parse_queue_url(url)
        self._credentials = credentials or FunctionCredentials()
        self._local = threading.local()

    def send_batch(self, bodies: list[str], delays: list[int] | None = None) -> list[int]:
        """Send the bodies in one BatchSendMessage; the positions SMQ refused. QueueSendFailed if none went."""
        from mns.mns_exception import MNSExceptionBase, MNSServerException
        from mns.queue import Message

        messages = [Message(body, delay) for body, delay in zip(bodies, delays or [0] * len(bodies), strict=True)]
        try:
            self._queue().batch_send_message(messages)
        except MNSServerException as error:
            refused = [i for i, entry in enumerate(error.sub_errors or []) if "ErrorCode" in entry]
            if refused and len(error.sub_errors or []) == len(bodies):
                return refused
            raise QueueSendFailed(str(error.type)) from None
        except MNSExceptionBase as error:
            raise QueueSendFailed(str(error.type)) from None
        return []

    def _queue(self) -> Any:
        queue = getattr(self._local, "queue", None)
        if queue is None:
            queue = self._local.queue = build_queue(self.endpoint, self.name, self._credentials)
        return queue


def build_queue(endpoint: str, name: str, credentials: Credentials) -> Any:
    """An SDK queue client: plain text bodies (the trigger is told not to decode), short timeouts, credentials read
    at every request."""
    from mns.account import Account
    from mns.auth import Credentials as SmqCredentials
    from mns.auth import CredentialsProvider

    class Current(CredentialsProvider):  # type: ignore[misc]
        def get_credentials(self) -> Any:
            key = credentials.current()
            if key is None:
                raise ConfigurationError("no credentials for SMQ: ALIBABA_CLOUD_ACCESS_KEY_ID/_SECRET are not set")
            return SmqCredentials(key.access_key_id, key.access_key_secret, key.security_token or "")

    account = Account(endpoint, credentials_provider=Current())
    http = account.mns_client.http
    http.set_connection_timeout(TIMEOUT_SECONDS)
    if http.is_https:  # the SDK's HTTPS connection ignores set_connection_timeout; http.client reads .timeout
        http.conn.timeout = TIMEOUT_SECONDS
    queue = account.get_queue(name)
    queue.set_encoding(False)
    return queue
