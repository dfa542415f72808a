"""boto3 clients for the cache bucket and the refresh queue: made on first use, failing fast.

A slow-failing S3 would hold up every read, and a slow SQS every bulk refresh; with these settings one call
takes at most FAIL_FAST_SECONDS, which the deadlines keep room for.
"""

from __future__ import annotations

from typing import Any

FAIL_FAST_SECONDS = 3.0  # 1 s to connect + 2 s to read, no retry


def fail_fast_client(service: str) -> Any:
    """A boto3 client (endpoint from boto3's defaults, so AWS_ENDPOINT_URL works) that gives up quickly."""
    import boto3
    from botocore.config import Config

    config = Config(connect_timeout=1, read_timeout=2, retries={"max_attempts": 1})
    return boto3.client(service, config=config)  # type: ignore[call-overload]  # stubs overload per literal name
