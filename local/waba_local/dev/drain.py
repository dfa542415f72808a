"""`make serve`'s queue worker: drains the refresh queue into functions/queue_worker, as the platform would.

It runs as a process of its own beside the HTTP function, until it is stopped or the process that started it has
gone. How it is fed on each platform: docs/architecture.md#make-serve.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable

from waba_local.dev.apigw import load_handler
from waba_local.dev.poller import WORKER_BATCH

WORKER_TIMEOUT_MS = 60_000  # template.yaml's and s.yaml's worker timeout
FC_WORKER_NAME = "waba-lookup-worker"
IDLE_SECONDS = 1.0  # between looks at an empty queue (nothing local long-polls moto: see local_aws)
FAILED_SECONDS = 2.0  # after a failed round (a failed invocation, an unreachable stand-in)


def aws_round() -> Callable[[], object]:
    """One round: receive and invoke until the SQS queue is empty."""
    import boto3

    from waba_local.dev.poller import LocalPoller

    worker = load_handler("queue_worker")
    sqs = boto3.client("sqs")  # AWS_ENDPOINT_URL and the region from the environment, as the HTTP function's
    poller = LocalPoller(
        sqs, os.environ["REFRESH_QUEUE_URL"], worker.lambda_handler, WORKER_TIMEOUT_MS, batch_size=WORKER_BATCH
    )
    return lambda: poller.drain(until_empty_for=0)


def fc_round() -> Callable[[], object]:
    """One round: batches pushed to the FC worker until a batch window passes with nothing to deliver."""
    from waba_local.build.s_yaml import queue_trigger
    from waba_local.dev.eventbridge import LocalSmqTrigger
    from waba_lookup.credentials import EnvironmentCredentials
    from waba_lookup.queue.smq import build_queue, parse_queue_url

    os.environ["FC_FUNCTION_NAME"] = FC_WORKER_NAME
    worker, trigger = load_handler("queue_worker"), queue_trigger()
    endpoint, queue_name = parse_queue_url(os.environ["REFRESH_QUEUE_URL"])
    _, dlq_name = parse_queue_url(os.environ["REFRESH_DLQ_URL"])
    credentials = EnvironmentCredentials()  # the role's, as the trigger reads the queue with its own role
    local_trigger = LocalSmqTrigger(
        build_queue(endpoint, queue_name, credentials),
        build_queue(endpoint, dlq_name, credentials),
        worker.handler,
        batch_size=trigger.batch_size,
        batch_window_seconds=trigger.batch_window_seconds,
        retry_attempts=trigger.retry_attempts,
        timeout_seconds=trigger.worker_timeout_seconds,
    )
    return lambda: local_trigger.drain(until_empty_for=0.1)


def run(platform: str, parent: int | None = None) -> None:
    """Drain until interrupted, or until `parent` (the process that started this one) has gone."""
    drain_once = fc_round() if platform == "fc" else aws_round()
    while parent is None or os.getppid() == parent:
        try:
            drain_once()
        except Exception as error:  # noqa: BLE001 - a failed invocation or an unreachable queue: try again later
            if parent is not None and os.getppid() != parent:
                break  # make serve has gone, and its stand-ins with it
            print(f"waba_local.dev.drain: {type(error).__name__}: {error}", file=sys.stderr, flush=True)
            time.sleep(FAILED_SECONDS)
            continue
        time.sleep(IDLE_SECONDS)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--platform", choices=("aws", "fc"), default=os.environ.get("PLATFORM") or "aws")
    parser.add_argument("--parent", type=int, help="stop once this process has gone (make serve passes its own)")
    args = parser.parse_args()
    try:
        run(args.platform, args.parent)
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
