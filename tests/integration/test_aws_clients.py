"""The AWS clients: botocore's own, configured by the environment as boto3's would be, and failing fast."""

from __future__ import annotations

import socket
import threading

import pytest
from botocore.exceptions import BotoCoreError

from waba_lookup.platforms.aws import fail_fast_client


def test_each_client_takes_its_endpoint_and_region_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:4566")
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", "http://127.0.0.1:9000")
    s3, sqs = fail_fast_client("s3"), fail_fast_client("sqs")
    assert (s3.meta.endpoint_url, sqs.meta.endpoint_url) == ("http://127.0.0.1:9000", "http://127.0.0.1:4566")
    assert s3.meta.region_name == sqs.meta.region_name == "ap-southeast-1"


def test_a_failed_request_is_not_retried(monkeypatch: pytest.MonkeyPatch) -> None:
    # Given an endpoint that hangs up on every connection
    with socket.create_server(("127.0.0.1", 0)) as server:
        connections = []

        def hang_up() -> None:
            while True:
                try:
                    connection, _ = server.accept()
                except OSError:
                    return
                connections.append(connection)
                connection.close()

        threading.Thread(target=hang_up, daemon=True).start()
        monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{server.getsockname()[1]}")
        # When a client calls it, Then the call fails after one attempt (FAIL_FAST_SECONDS assumes one)
        with pytest.raises(BotoCoreError):
            fail_fast_client("sqs").list_queues()
    assert len(connections) == 1
