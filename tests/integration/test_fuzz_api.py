"""`make fuzz`: Schemathesis 4 (`st run`, every check, a fixed seed, a bounded number of examples) against
`make serve` on each platform in turn, from openapi.yaml. Any failure, server error or mismatch with the schema fails.

Skipped in `make test` (it takes minutes); `make fuzz` sets WABA_FUZZ=1. Two things `make serve` is not:
- the authorizer. Authentication is API Gateway's (IAM or JWT) and the FC trigger's (`authType: function` or jwt),
  not the function's, and `make serve` has none: Schemathesis does not generate the `Authorization` header and
  the `ignored_auth` check is left out. Every other check runs.
- a drained queue. Nothing consumes `make serve`'s refresh queue, and moto's SQS slows as a queue grows (half a
  second a batch at 2,500 messages, 0.2 ms a message): the run purges it five times a second, so bulk refreshes
  of 1,000 items are timed against a short queue, as against SQS with its worker consuming it.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest

from tests.integration.serving import Served, start_serve

ROOT = Path(__file__).resolve().parents[2]
SEED = 20261127
MAX_EXAMPLES = int(os.environ.get("FUZZ_MAX_EXAMPLES", "300"))

pytestmark = pytest.mark.skipif(not os.environ.get("WABA_FUZZ"), reason="Schemathesis runs in `make fuzz`")


def schemathesis(served: Served) -> list[str]:
    st = shutil.which("st", path=str(Path(sys.executable).parent)) or "st"
    return [
        st,
        "run",
        str(ROOT / "openapi.yaml"),
        f"--url=http://{served.host}:{served.port}",
        "--checks=all",
        "--exclude-checks=ignored_auth",
        "--generation-with-security-parameters=false",
        f"--max-examples={MAX_EXAMPLES}",
        f"--seed={SEED}",
        "--generation-database=none",
        "--workers=1",  # one request at a time, as make serve (one instance) answers them
        "--max-response-time=20",  # the function's timeout (template.yaml, s.yaml): no answer may take longer
        "--request-timeout=30",  # API Gateway's integration timeout
        "--no-color",
    ]


def purge_sqs_queue(served: Served, stop: threading.Event) -> None:
    """Empty make serve's SQS refresh queue (moto, named in the banner) five times a second until stopped."""
    endpoint = next(m[1] for line in served.banner if (m := re.search(r"moto at (http://[\d.:]+)", line)))
    sqs = boto3.client(
        "sqs", endpoint_url=endpoint, region_name="ap-southeast-1", aws_access_key_id="l", aws_secret_access_key="l"
    )
    url = sqs.get_queue_url(QueueName="waba-refresh")["QueueUrl"]
    while not stop.wait(0.2):
        sqs.purge_queue(QueueUrl=url)


@pytest.fixture(params=["aws", "fc"])
def served(request: pytest.FixtureRequest) -> Iterator[Served]:
    # moto allows one PurgeQueue a minute, as SQS does, unless told otherwise (its server runs in make serve's process)
    process, server = start_serve(request.param, MOTO_SQS_ENFORCE_STRICT_QUEUE_PURGE_BEHAVIOUR="false")
    stop = threading.Event()
    if request.param == "aws":
        threading.Thread(target=purge_sqs_queue, args=(server, stop), daemon=True).start()
    yield server
    stop.set()
    process.terminate()
    process.wait(timeout=30)


@pytest.mark.timeout(900)
def test_schemathesis_finds_nothing(served: Served, tmp_path: Path) -> None:
    print(f"\n$ {' '.join(schemathesis(served))}", flush=True)
    run = subprocess.run(schemathesis(served), check=False, timeout=600, cwd=tmp_path)  # its .schemathesis/ too
    assert run.returncode == 0, "Schemathesis found failures (its report is above)"
