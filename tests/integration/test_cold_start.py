"""A cold cache HIT, in a fresh process as Lambda starts one, loads nothing it does not use.

The process (`python -I -S`) sees only the function, the layer's package and site-packages; S3 is moto's server in
a process of its own, so nothing of moto or boto3 is loaded there by the test. Module lists, unlike timings, stay
true on a noisy machine: the timings are `make bench`'s (waba_local.bench.cold_start).
"""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from typing import Any

import pytest

from waba_local.bench.cold_start import HEAVY, cold_hit, deployed_env, moto_server, seed, tracing_on
from waba_local.bench.cold_start_fc import HEAVY_ON_FC, STS, cold_fc_hit, local_oss


@pytest.fixture(scope="module")
def local_aws() -> Iterator[tuple[dict[str, str], Any]]:
    """moto's server, its bucket, and the HTTP function's deployed environment pointed at it."""
    with moto_server() as endpoint:
        env = deployed_env(endpoint)
        yield env, seed(endpoint, env)


@pytest.fixture(scope="module")
def cold(local_aws: tuple[dict[str, str], Any]) -> dict[str, Any]:
    """A fresh instance's first answer (tracing off, the shared budget's table configured)."""
    env, fresh_entry = local_aws
    fresh_entry()
    return cold_hit(env)


def test_a_cold_hit_is_answered_from_the_cache_alone(cold: dict[str, Any]) -> None:
    assert (cold["status"], cold["cache"]) == (200, "HIT")
    assert cold["store_requests"] == 0  # the budget's DynamoDB client is never made
    assert cold["queues"] == 0  # nor the refresh queue's SQS client


@pytest.mark.parametrize("package", HEAVY)
def test_a_cold_hit_never_loads(cold: dict[str, Any], package: str) -> None:
    assert [m for m in cold["modules"] if m.startswith(package)] == []


def test_the_measured_process_starts_with_nothing_of_the_function_loaded(cold: dict[str, Any]) -> None:
    """The cold-start figures' clock starts before boto3, botocore or Powertools could have been imported."""
    measured = ("boto3", "botocore", "moto", "aws_lambda_powertools", "waba_lookup", "app", "urllib3", "json", "re")
    assert [m for m in cold["loaded_before"] if m.split(".")[0] in measured] == []


def test_with_tracing_on_the_first_answer_is_traced(local_aws: tuple[dict[str, str], Any]) -> None:
    # Given tracing on, as in Lambda with Tracing: Active: a trace header, and an X-Ray daemon (a UDP socket)
    env, fresh_entry = local_aws
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as daemon:
        daemon.bind(("127.0.0.1", 0))
        daemon.settimeout(1.0)
        env = tracing_on(env, daemon.getsockname()[1])
        fresh_entry()
        # When a fresh instance answers
        traced = cold_hit(env)
        segments = [json.loads(document.partition("\n")[2]) for document in received(daemon)]
    # Then the answer is the same; the handler's subsegment carries its annotations, and S3's call is traced
    assert (traced["status"], traced["cache"]) == (200, "HIT")
    by_name = {s["name"]: s for s in segments}
    assert by_name["## lambda_handler"]["annotations"] == {"cache": "HIT", "ColdStart": True, "Service": "waba-lookup"}
    assert by_name["s3"]["aws"]["operation"] == "GetObject"


def received(daemon: socket.socket) -> Iterator[str]:
    """What was sent to the socket, until it stays quiet for its timeout."""
    while True:
        try:
            yield daemon.recv(65536).decode()
        except TimeoutError:
            return


@pytest.fixture(scope="module")
def cold_fc() -> dict[str, Any]:
    """A fresh FC instance's first answer, OSS on the stand-in, the role's STS credentials in its environment."""
    with local_oss() as (env, fresh_entry, stand_in):
        fresh_entry()
        stand_in.clear_requests()
        return cold_fc_hit(env) | {"oss_requests": stand_in.requests}


def test_a_cold_hit_on_fc_is_answered_from_oss(cold_fc: dict[str, Any]) -> None:
    assert (cold_fc["status"], cold_fc["cache"]) == (200, "HIT")
    # one GET, its OSS4-HMAC-SHA256 signature (with the role's STS token) checked by the stand-in
    [(operation, status, key_id)] = [(r.operation, r.status, r.access_key_id) for r in cold_fc["oss_requests"]]
    assert (operation, status, key_id) == ("GetObject", 200, STS[0])


@pytest.mark.parametrize("package", HEAVY_ON_FC)
def test_a_cold_hit_on_fc_never_loads(cold_fc: dict[str, Any], package: str) -> None:
    assert [m for m in cold_fc["modules"] if m.startswith(package)] == []
