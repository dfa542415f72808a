"""`make bench`, Function Compute: a backlog of refreshes in SMQ drained by the FC worker at s.yaml's deployed
configuration (its reserved concurrency, the CAMS budget shared through Tablestore), beside the same drain with no
budget, measured in the same run:

    python -m waba_local.bench.fc [--items 300]

Each worker instance is a process of its own running the local EventBridge trigger on the shared queue; the CAMS
emulator and the OSS and SMQ stand-ins run in this process. Figures come from what the emulator saw.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from typing import Any

from waba_local.bench.figures import rates
from waba_local.build.s_yaml import queue_trigger, rendered, worker_function
from waba_local.dev.console import heading, table
from waba_local.stand_ins import launch as stand_ins
from waba_local.stand_ins.emulator_state import busiest_window

DEPLOYED = "as s.yaml deploys it (Tablestore budget)"
NO_BUDGET_LIMIT_SECONDS = 90  # the baseline's re-sends wait out their delays: it is stopped, and its progress shown


def run(items: int, variant: str) -> list[object]:
    """One drain of `items` refreshes; a table row."""
    trigger = queue_trigger()
    worker_env = {k: str(v) for k, v in worker_function(rendered())["environmentVariables"].items()}
    local = stand_ins.start(with_fc=True)
    try:
        assert local.emulator is not None and local.smq is not None and local.oss is not None
        env = dict(os.environ) | local.fc_environment() | {"POWERTOOLS_LOG_LEVEL": "CRITICAL"}
        env |= {k: worker_env[k] for k in ("CAMS_QPS_BUDGET", "CAMS_TIMEOUT_MS")}
        env["FC_FUNCTION_NAME"] = "waba-lookup-worker"
        sender = _sender(local)
        bodies = [
            json.dumps({"CustSpaceId": f"cs-bench-{i:04d}", "IsvCode": f"isv-cs-bench-{i:04d}"}) for i in range(items)
        ]
        for start in range(0, items, 16):
            sender.send_batch(bodies[start : start + 16])
        started = time.monotonic()
        limit = NO_BUDGET_LIMIT_SECONDS if variant == "no budget" else 600
        command = [sys.executable, "-m", "waba_local.bench.fc", "--instance", "--limit", str(limit)]
        command += ["--naive"] if variant == "no budget" else []
        fleet = [subprocess.Popen(command, env=env) for _ in range(trigger.worker_max_instances)]
        while any(p.poll() is None for p in fleet) and local.smq.messages(stand_ins.FC_QUEUE):
            time.sleep(0.5)  # until every message is deleted: refreshed, dead-lettered, or the baseline's limit
        if any(p.poll() not in (None, 0) for p in fleet):
            raise RuntimeError(f"an FC worker instance failed ({variant})")
        for process in fleet:
            process.terminate()
            process.wait()
        calls = local.emulator.calls
        elapsed = max((c.answered_at for c in calls), default=started) - started
        done = sum(1 for key in local.oss.objects(local.bucket) if "/cs-bench-" in key)
        dead = len(local.smq.messages(stand_ins.FC_DLQ))
    finally:
        local.stop()
    accepted = sorted(c.arrived_at for c in calls if c.accepted)
    rejected = sum(1 for c in calls if c.code == "System.LimitControl")
    busiest = busiest_window([c.arrived_at for c in calls], 1.0)
    steady, end_to_end = rates(accepted)
    return [
        variant,
        f"{trigger.worker_max_instances}",
        f"{end_to_end:.2f}",
        f"{steady:.2f}",
        f"{rejected} ({100 * rejected / max(1, len(calls)):.1f}%)",
        busiest,
        f"{done}/{items} cached, {dead} dead-lettered",
        f"{elapsed:.0f} s",
    ]


def _sender(local: stand_ins.StandIns) -> Any:
    from waba_lookup.credentials import AccessKey, StaticCredentials
    from waba_lookup.queue.smq import SmqQueue

    assert local.smq is not None
    return SmqQueue(local.smq.queue_url(stand_ins.FC_QUEUE), StaticCredentials(AccessKey(*stand_ins.ROLE)))


def instance(limit: float, naive: bool) -> None:
    """One FC worker instance: the local trigger on the shared queue, until it stays empty (or the limit)."""
    from waba_local.bench.instances import NoBudget
    from waba_local.dev.apigw import load_handler
    from waba_local.dev.eventbridge import LocalSmqTrigger
    from waba_lookup.credentials import EnvironmentCredentials
    from waba_lookup.lookup import get_lookup
    from waba_lookup.queue.smq import build_queue, parse_queue_url

    if naive:
        get_lookup().budget = NoBudget()  # type: ignore[misc]
    trigger = queue_trigger()
    endpoint, queue_name = parse_queue_url(os.environ["REFRESH_QUEUE_URL"])
    _, dlq_name = parse_queue_url(os.environ["REFRESH_DLQ_URL"])
    credentials = EnvironmentCredentials()
    local_trigger = LocalSmqTrigger(
        build_queue(endpoint, queue_name, credentials),
        build_queue(endpoint, dlq_name, credentials),
        load_handler("queue_worker").handler,
        batch_size=trigger.batch_size,
        batch_window_seconds=trigger.batch_window_seconds,
        retry_attempts=trigger.retry_attempts,
        timeout_seconds=trigger.worker_timeout_seconds,
    )
    local_trigger.drain(until_empty_for=limit, time_limit=limit)  # the bench ends it once the queue is empty


def measure(items: int = 300) -> str:
    rows = []
    for variant in (DEPLOYED, "no budget"):
        print(f"  FC drain of {items} refreshes: {variant} ...", file=sys.stderr, flush=True)
        rows.append(run(items, variant))
    headers = [
        "FC worker",
        "worker instances",
        "end-to-end calls/s",
        "steady calls/s",
        "rejected",
        "busiest second",
        "completed",
        "first request to last answer",
    ]
    return table(headers, rows)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m waba_local.bench.fc", description=__doc__.split("\n")[0])
    parser.add_argument("--items", type=int, default=300)
    parser.add_argument("--instance", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--naive", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--limit", type=float, default=600, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.instance:
        instance(args.limit, args.naive)
        return
    heading(f"Function Compute: {args.items} refreshes drained by the FC worker")
    print(measure(args.items))


if __name__ == "__main__":
    main()
