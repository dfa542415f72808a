"""AWS clients for the cache bucket, the refresh queue and the budget table: made on first use, failing fast.

A slow-failing S3 would hold up every read, and a slow SQS every bulk refresh; with these settings one call
takes at most FAIL_FAST_SECONDS, which the deadlines keep room for.

The clients are botocore's own, from one botocore session per instance: boto3 would add nothing these low-level
calls use, but its import (s3transfer with it) would cost every cold start. botocore resolves the region,
credentials and AWS_ENDPOINT_URL / AWS_ENDPOINT_URL_<SERVICE> exactly as boto3 does (boto3 delegates to it).
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

FAIL_FAST_SECONDS = 3.0  # 1 s to connect + 2 s to read, one attempt


def fail_fast_client(service: str) -> Any:
    """A botocore client (region, credentials and endpoint from the environment) that gives up quickly."""
    from botocore.config import Config

    # total_max_attempts, not max_attempts: botocore reads max_attempts as retries after the first attempt
    config = Config(connect_timeout=1, read_timeout=2, retries={"total_max_attempts": 1})
    return _session().create_client(service, config=config)


@lru_cache(maxsize=1)
def _session() -> Any:
    """The instance's botocore session: its loaded models and resolved credentials are shared by its clients."""
    from botocore.session import get_session

    return get_session()
