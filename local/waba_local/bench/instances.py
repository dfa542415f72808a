"""The benchmark's instances: each runs in a process of its own, as one Lambda or FC instance, through the real
handlers (`--platform fc`: FC's entry points and events).

Roles: `worker` drains the refresh queue, `reads` reads uncached customers one after another, `hits` forks an HTTP
instance per customer for one read each, all at once. Each writes what it saw as JSON to --stats.
More: docs/architecture.md#the-benchmark.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import random
import time
import traceback
import warnings
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import asdict
from functools import partial
from pathlib import Path
from typing import Any

import boto3

from waba_local.bench.figures import by_kind
from waba_local.dev.apigw import http_event, load_handler
from waba_local.dev.poller import LocalLambdaContext, LocalPoller
from waba_local.stand_ins.emulator import expected_isv_code
from waba_lookup.budget import BudgetStats
from waba_lookup.platforms.aws import fail_fast_client

BATCH_WINDOW_SECONDS = 1.0  # template.yaml's MaximumBatchingWindowInSeconds
IDLE_POLL_SECONDS = 0.25  # an idle poller looks again this often (more would crowd the serialised moto server)
# Lambda leaves a failed record invisible for the queue's whole visibility timeout; here it comes back after this,
# so a naive run (most of its calls rejected) ends in a minute, not after several visibility timeouts
RETRY_DELAY_SECONDS = 2
HTTP_TIMEOUT_MS = 20_000  # template.yaml's HTTP function Timeout


class NoBudget:
    """The naive baseline's budget: every attempt goes at once, nothing is asked of any store."""

    release_seconds = 0.0  # nothing to write back

    def __init__(self) -> None:
        self.stats = BudgetStats()

    @contextmanager
    def permit(self, send_by: float, interactive: bool) -> Iterator[None]:
        self.stats.record_wait(0.0, interactive)
        yield

    def throttled(self) -> None: ...

    def succeeded(self) -> None: ...

    def settle(self, wait_until: float) -> None: ...


class BenchPoller(LocalPoller):
    """LocalPoller with Lambda's batching window, a short retry delay, and an end when the queue is drained."""

    def drain_all(self, time_limit: float) -> None:
        """Invoke batch after batch (receiving the next meanwhile) until nothing is visible or in flight."""
        started = time.monotonic()
        with ThreadPoolExecutor(max_workers=1) as queue_io:
            upcoming = queue_io.submit(self._receive_batch, 0)
            while time.monotonic() - started < time_limit:
                messages = upcoming.result()
                upcoming = queue_io.submit(self._receive_batch, 0)
                if messages:
                    done = self._invoke(messages)
                    queue_io.submit(self._settle_batch, messages, done)
                elif self._drained():
                    break

    def _receive_batch(self, wait_seconds: int) -> list[dict[str, Any]]:
        messages: list[dict[str, Any]] = []
        opened = time.monotonic()
        while len(messages) < self.batch_size:
            received = self.sqs.receive_message(
                QueueUrl=self.queue_url,
                MaxNumberOfMessages=min(10, self.batch_size - len(messages)),
                WaitTimeSeconds=0,
                AttributeNames=["All"],
            ).get("Messages", [])
            messages += received
            if received:
                continue
            if not messages or time.monotonic() - opened >= BATCH_WINDOW_SECONDS:
                break
            time.sleep(IDLE_POLL_SECONDS)
        if not messages:
            time.sleep(IDLE_POLL_SECONDS)
        return messages

    def _settle_batch(self, messages: list[dict[str, Any]], done: list[dict[str, Any]]) -> None:
        self._delete(done)
        succeeded = {m["MessageId"] for m in done}
        failed = [m for m in messages if m["MessageId"] not in succeeded]
        for start in range(0, len(failed), 10):
            entries = [
                {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"], "VisibilityTimeout": RETRY_DELAY_SECONDS}
                for i, m in enumerate(failed[start : start + 10])
            ]
            self.sqs.change_message_visibility_batch(QueueUrl=self.queue_url, Entries=entries)

    def _drained(self) -> bool:
        names = ["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]
        counts = self.sqs.get_queue_attributes(QueueUrl=self.queue_url, AttributeNames=names)["Attributes"]
        return all(int(counts[name]) == 0 for name in names)


def _instance(naive: bool) -> Any:
    """This process's WabaLookup, with NoBudget for the naive baseline."""
    from waba_lookup.lookup import get_lookup

    lookup = get_lookup()
    if naive:
        lookup.budget = NoBudget()
    return lookup


def _announce_calls_for(cust_space_id: str, path: Path) -> None:
    """Write this process's id to `path` just before it sends a CAMS call for `cust_space_id` (after its permit),
    so the benchmark knows whom to kill in the middle of that call."""
    from waba_lookup.cams import CamsClient

    query = CamsClient.query

    def announcing(self: CamsClient, cust_space_id_: str | None, isv_code: str | None) -> dict[str, Any]:
        if cust_space_id_ == cust_space_id:
            path.with_suffix(".tmp").write_text(str(os.getpid()))
            path.with_suffix(".tmp").rename(path)
        return query(self, cust_space_id_, isv_code)

    CamsClient.query = announcing  # type: ignore[method-assign,unused-ignore]


def worker(args: argparse.Namespace) -> dict[str, Any]:
    handler = load_handler("queue_worker")
    lookup = _instance(args.naive)
    if args.announce:
        customer, _, path = args.announce.partition("=")
        _announce_calls_for(customer, Path(path))
    if args.platform == "fc":
        polled = _fc_worker(handler, args)  # before the budget's stats are read
        return {"budget": asdict(lookup.budget.stats), "poll": polled}
    sqs = boto3.client("sqs")  # the environment points boto3 at the stand-ins, as in the function itself
    poller = BenchPoller(sqs, os.environ["REFRESH_QUEUE_URL"], handler.lambda_handler, 60_000, args.batch)
    poller.drain_all(args.time_limit)
    return {"budget": asdict(lookup.budget.stats), "poll": asdict(poller.stats)}


def _fc_worker(handler: Any, args: argparse.Namespace) -> dict[str, Any]:
    """The local EventBridge trigger on the refresh queue, until the queue holds no message (none visible, delayed
    or in flight) or the time limit."""
    from waba_local.build.s_yaml import queue_trigger
    from waba_local.dev.eventbridge import LocalSmqTrigger
    from waba_lookup.credentials import EnvironmentCredentials
    from waba_lookup.queue.smq import build_queue, parse_queue_url

    endpoint, name = parse_queue_url(os.environ["REFRESH_QUEUE_URL"])
    queue = build_queue(endpoint, name, EnvironmentCredentials())
    dlq = build_queue(*parse_queue_url(os.environ["REFRESH_DLQ_URL"]), EnvironmentCredentials())
    deployed = queue_trigger()  # s.yaml's batches: at most its CountBasedWindow, over its TimeBasedWindow
    batch, window = min(args.batch, deployed.batch_size), deployed.batch_window_seconds
    trigger = LocalSmqTrigger(queue, dlq, handler.handler, batch_size=batch, batch_window_seconds=window)
    started = time.monotonic()
    while time.monotonic() - started < args.time_limit:
        trigger.drain(until_empty_for=1.0, time_limit=args.time_limit)
        with warnings.catch_warnings():  # aliyun-mns-sdk 1.3 marks QueueMeta's counts deprecated (in Chinese),
            warnings.simplefilter("ignore", DeprecationWarning)  # at every read; SMQ still answers them
            meta = queue.get_attributes()
            left = meta.active_messages + meta.inactive_messages + meta.delay_messages
        if left == 0:
            break
    return asdict(trigger.stats)


def _read(api: Any, customer: str, platform: str = "aws") -> dict[str, Any]:
    """One GET /waba/{customer} through the handler: status, X-Cache and seconds taken."""
    from waba_local.dev.fc_local import fc_invocation

    headers = {"X-Isv-Code": expected_isv_code(customer)}
    started = time.perf_counter()
    try:
        if platform == "fc":
            response = api.handler(*fc_invocation("GET", f"/waba/{customer}", headers))
        else:
            response = api.lambda_handler(
                http_event("GET", f"/waba/{customer}", headers), LocalLambdaContext(HTTP_TIMEOUT_MS)
            )
    except Exception as error:  # noqa: BLE001 - a failed invocation (API Gateway would answer 502): count it, go on
        traceback.print_exc()
        return {"status": type(error).__name__, "cache": "", "latency": time.perf_counter() - started}
    latency = time.perf_counter() - started
    return {"status": response["statusCode"], "cache": response["headers"].get("X-Cache", ""), "latency": latency}


def _ready_then_go(go: Path) -> None:
    """Tell the benchmark this instance is warm (`go`.ready), then wait for `go` and the wall time it holds."""
    go.with_suffix(f".ready-{os.getpid()}").touch()
    while not go.exists():
        time.sleep(0.02)
    time.sleep(max(0.0, float(go.read_text()) - time.time()))


def reads(args: argparse.Namespace) -> dict[str, Any]:
    api = load_handler("http_api")
    lookup = _instance(args.naive)
    import alibabacloud_cams20200606.client  # noqa: F401  # a warm instance: the SDK import is not a permit wait

    _warm_budget_store(args.platform)

    rng = random.Random(args.seed)
    _ready_then_go(args.go)
    answers = []
    for customer in args.customers.split(","):
        time.sleep(rng.uniform(*args.gaps))
        before = lookup.budget.stats.store_requests
        answer = _read(api, customer, args.platform)
        answers.append(answer | {"store_requests": lookup.budget.stats.store_requests - before})
    return {"budget": asdict(lookup.budget.stats), "reads": answers}


def _warm_budget_store(platform: str) -> None:
    """A warm instance has loaded its budget store's client: its first permit wait is not an import. (On FC the
    Tablestore SDK's import, about 0.3 s with numpy and aiohttp, is paid by an instance's first CAMS call.)"""
    if platform == "fc":
        import tablestore  # noqa: F401
    else:
        fail_fast_client("dynamodb")  # the session keeps the loaded model for the budget's own client


def hits(args: argparse.Namespace) -> dict[str, Any]:
    """One forked instance per customer, all reading at once. Forked, not threads: Powertools keeps the current
    event in a class attribute, so one process serves one request at a time, as a Lambda instance does; and forks
    share this process's imports, so 200 instances start in seconds on 2 cores."""
    api = load_handler("http_api")  # imported here, before the forks
    if args.platform == "fc":
        import alibabacloud_oss_v2  # noqa: F401  # loaded once, shared by the forks, as a warm FC instance has it
    else:
        # the library's AWS session, with the S3 model loaded, is shared by the forks (a warm Lambda instance has
        # it already); the client made for that is never used, so no connection crosses a fork
        fail_fast_client("s3")
    gc.freeze()  # the forks' collector leaves the shared heap alone, so its pages stay shared, not copied
    children = [_fork(partial(_hit_instance, api, customer, args)) for customer in args.customers.split(",")]
    seen = [_collect(pid, pipe) for pid, pipe in children]
    stats = [s["budget"] for s in seen]
    budget = {k: sum(b[k] for b in stats) for k in ("permits", "store_requests", "store_seconds", "store_failures")}
    budget["by_kind"] = by_kind(stats)
    budget |= {k: [w for b in stats for w in b[k]] for k in ("waits", "interactive_waits")}
    return {"budget": budget, "reads": [s["read"] for s in seen]}


def _hit_instance(api: Any, customer: str, args: argparse.Namespace) -> dict[str, Any]:
    lookup = _instance(args.naive)
    _read(api, customer, args.platform)  # a warm instance: its cache client and connection exist
    _ready_then_go(args.go)
    read = _read(api, customer, args.platform)
    return {"budget": asdict(lookup.budget.stats), "read": read}


def _fork(instance: Callable[[], dict[str, Any]]) -> tuple[int, int]:
    """Run `instance` in a child process; (its pid, the pipe its result comes back on)."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid:
        os.close(write_end)
        return pid, read_end
    os.close(read_end)
    try:
        result = instance()
    except BaseException as error:  # noqa: BLE001 - the parent reports it; a child never returns into its loop
        traceback.print_exc()
        read = {"status": type(error).__name__, "cache": "", "latency": 0.0}
        result = {"budget": asdict(BudgetStats()), "read": read}
    with os.fdopen(write_end, "w") as pipe:
        json.dump(result, pipe)
    os._exit(0)


def _collect(pid: int, pipe: int) -> dict[str, Any]:
    with os.fdopen(pipe) as answer:
        result: dict[str, Any] = json.load(answer)
    os.waitpid(pid, 0)
    return result


ROLES: dict[str, Callable[[argparse.Namespace], dict[str, Any]]] = {"worker": worker, "reads": reads, "hits": hits}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("role", choices=sorted(ROLES))
    parser.add_argument("--stats", type=Path, required=True, help="where to write what this instance saw (JSON)")
    parser.add_argument("--naive", action="store_true", help="no budget: every attempt goes at once")
    parser.add_argument("--batch", type=int, default=30, help="worker: records per invocation")
    parser.add_argument("--time-limit", type=float, default=300.0, help="worker: seconds it may run")
    parser.add_argument("--announce", default="", help="worker: CUSTOMER=PATH, see _announce_calls_for")
    parser.add_argument("--customers", default="", help="reads, hits: comma-separated CustSpaceIds")
    parser.add_argument("--go", type=Path, help="reads, hits: begin once this file names a wall time")
    parser.add_argument("--gaps", type=float, nargs=2, default=(0.5, 2.5), help="reads: seconds between reads")
    parser.add_argument("--seed", type=int, default=0, help="reads: seed of the gaps")
    parser.add_argument("--platform", choices=("aws", "fc"), default="aws", help="whose handlers and events")
    args = parser.parse_args()
    seen = ROLES[args.role](args)
    args.stats.write_text(json.dumps({"role": args.role, "pid": os.getpid(), **seen}))


if __name__ == "__main__":
    main()
