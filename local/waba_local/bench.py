"""`make bench`: K worker processes drain a local queue of N refreshes through the real queue handler.

Each worker is one Lambda instance (its own imports, its own pacer) polling a moto-server SQS queue the way
Lambda's poller does, calling the CAMS emulator through the official SDK. Scenarios: paced, paced beside a
neighbour client on the same CAMS account calling at a steady rate, and the same two without the pacer (the
naive baseline). Figures are medians over --runs runs; printed as a table and written to bench-results/.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import boto3

from waba_local import stand_ins
from waba_local.console import heading, table
from waba_local.emulator import DEFAULT_ACCESS_KEY_ID, DEFAULT_ACCESS_KEY_SECRET, Call

NEIGHBOUR_KEY = ("LTAI5tNeighbourClientKey", "neighbour-client-secret")
RESULTS = Path("bench-results")
# longer than a batch takes (30 records at 2 calls/s), or another worker would receive them again mid-batch;
# a record returned for retry reappears after it, so workers wait that long for an empty queue
VISIBILITY_TIMEOUT = 20


@dataclass
class RunFigures:
    scenario: str
    calls: int
    rejected: int
    end_to_end_per_s: float
    steady_per_s: float
    busiest_second: int
    completed: int
    neighbour_calls: int
    neighbour_kept_pct: float
    seconds: float


def worker(args: argparse.Namespace) -> None:
    """One instance: drain the queue until it stays empty, then exit."""
    from waba_local.apigw import load_handler
    from waba_local.poller import WORKER_BATCH, LocalPoller

    handler = load_handler("queue_worker")
    if args.naive:
        from waba_lookup.lookup import get_lookup

        get_lookup().pacer = NoPacer()  # type: ignore[assignment]
    sqs = boto3.client("sqs")  # the environment points boto3 at the stand-ins, as in the function itself
    LocalPoller(
        sqs, os.environ["REFRESH_QUEUE_URL"], handler.lambda_handler, timeout_ms=60_000, batch_size=WORKER_BATCH
    ).drain(until_empty_for=VISIBILITY_TIMEOUT + 2.0, time_limit=args.time_limit)


class NoPacer:
    """The naive baseline: every attempt goes at once."""

    from contextlib import nullcontext as _nothing

    def slot(self, send_by: float) -> Any:
        return self._nothing()

    def throttled(self) -> None: ...

    def succeeded(self) -> None: ...

    def quiesce(self, wait_until: float) -> None: ...


def neighbour(endpoint: str, rate: float, stop: threading.Event) -> None:
    """Another system on the same CAMS account, calling at a steady rate."""
    from waba_lookup.cams import CamsClient
    from waba_lookup.credentials import AccessKey
    from waba_lookup.errors import WabaLookupError
    from waba_lookup.settings import Settings

    client = CamsClient(Settings(cams_endpoint=endpoint, cams_protocol="http"), AccessKey(*NEIGHBOUR_KEY))
    started = time.monotonic()
    sent = 0
    while not stop.is_set():
        delay = started + sent / rate - time.monotonic()
        if delay > 0:
            stop.wait(delay)
            continue
        sent += 1
        try:
            client.query(None, None)
        except WabaLookupError:
            pass  # the emulator's log records what happened


def one_run(
    scenario: str, n: int, k: int, naive: bool, neighbour_rate: float, run: int, time_limit: float
) -> RunFigures:
    accounts = {DEFAULT_ACCESS_KEY_ID: DEFAULT_ACCESS_KEY_SECRET, NEIGHBOUR_KEY[0]: NEIGHBOUR_KEY[1]}
    local = stand_ins.start(visibility_timeout=VISIBILITY_TIMEOUT, max_receive_count=1000, accounts=accounts)
    assert local.emulator is not None
    try:
        sqs = local.client("sqs")
        customers = [f"cs-bench-{run}-{i:04d}" for i in range(n)]
        for start in range(0, n, 10):
            entries = [
                {"Id": str(j), "MessageBody": json.dumps({"CustSpaceId": c, "IsvCode": f"isv-{c}"})}
                for j, c in enumerate(customers[start : start + 10])
            ]
            sqs.send_message_batch(QueueUrl=local.queue_url, Entries=entries)
        env = (
            os.environ
            | local.environment()
            | {
                "CAMS_MAX_INSTANCES": str(k),
                "CAMS_QPS_BUDGET": "10",
                "CAMS_TIMEOUT_MS": "3000",
                "POWERTOOLS_LOG_LEVEL": "CRITICAL",
                "POWERTOOLS_METRICS_DISABLED": "true",
            }
        )
        stop = threading.Event()
        neighbour_thread = None
        if neighbour_rate:
            neighbour_thread = threading.Thread(target=neighbour, args=(local.emulator.endpoint, neighbour_rate, stop))
            neighbour_thread.start()
        started = time.monotonic()
        command = [sys.executable, "-m", "waba_local.bench", "--worker", "--time-limit", str(time_limit)]
        # a worker's stdout is its Lambda log stream (Powertools logs, EMF metrics): not for this report
        workers = [
            subprocess.Popen([*command, *(["--naive"] if naive else [])], env=env, stdout=subprocess.DEVNULL)
            for _ in range(k)
        ]
        for process in workers:
            process.wait()
        seconds = time.monotonic() - started
        stop.set()
        if neighbour_thread:
            neighbour_thread.join()
        return figures(scenario, local.emulator.calls, set(customers), seconds)
    finally:
        local.stop()


def figures(scenario: str, calls: list[Call], customers: set[str], seconds: float) -> RunFigures:
    ours = [c for c in calls if c.access_key_id == DEFAULT_ACCESS_KEY_ID]
    # the neighbour's calls while our workers were calling: the idle tail would flatter its figure
    first, last = min(c.arrived_at for c in ours), max(c.arrived_at for c in ours)
    theirs = [c for c in calls if c.access_key_id == NEIGHBOUR_KEY[0] and first <= c.arrived_at <= last]
    accepted = sorted(c.arrived_at for c in ours if c.accepted)
    span = (accepted[-1] - accepted[0]) if len(accepted) > 1 else 0.0
    lo, hi = int(len(accepted) * 0.1), int(len(accepted) * 0.9)
    steady = (hi - lo) / (accepted[hi] - accepted[lo]) if hi > lo and accepted[hi] > accepted[lo] else 0.0
    arrivals = sorted(c.arrived_at for c in ours)
    busiest, end = 0, 0
    for start, arrived in enumerate(arrivals):
        while end < len(arrivals) and arrivals[end] < arrived + 1.0:
            end += 1
        busiest = max(busiest, end - start)
    completed = len({c.cust_space_id for c in ours if c.accepted} & customers)
    return RunFigures(
        scenario=scenario,
        calls=len(ours),
        rejected=sum(1 for c in ours if c.code == "System.LimitControl"),
        end_to_end_per_s=round(len(accepted) / span, 2) if span else 0.0,
        steady_per_s=round(steady, 2),
        busiest_second=busiest,
        completed=completed,
        neighbour_calls=len(theirs),
        neighbour_kept_pct=round(100 * sum(c.accepted for c in theirs) / len(theirs), 1) if theirs else 100.0,
        seconds=round(seconds, 1),
    )


def median_row(runs: list[RunFigures], n: int) -> list[object]:
    med = lambda f: statistics.median(getattr(r, f) for r in runs)
    rejected_pct = statistics.median(100 * r.rejected / max(1, r.calls) for r in runs)
    return [
        runs[0].scenario,
        len(runs),
        med("end_to_end_per_s"),
        med("steady_per_s"),
        f"{med('rejected')} ({rejected_pct:.1f}%)",
        max(r.busiest_second for r in runs),
        f"{min(r.completed for r in runs)}/{n}",
        f"{med('neighbour_kept_pct')}%" if runs[0].neighbour_calls else "-",
        med("seconds"),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=300, help="refreshes to drain")
    parser.add_argument("--k", type=int, default=5, help="worker processes (instances)")
    parser.add_argument("--runs", type=int, default=3, help="runs per scenario; figures are medians")
    parser.add_argument("--neighbour-rate", type=float, default=4.0, help="the neighbour's calls per second")
    parser.add_argument("--scenarios", default="paced,paced+neighbour,naive,naive+neighbour")
    parser.add_argument("--time-limit", type=float, default=300.0, help="seconds a worker may run")
    parser.add_argument("--no-cold-start", dest="cold_start", action="store_false", help="skip the cold-start figures")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--naive", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        return worker(args)
    rows, raw = [], []
    for scenario in args.scenarios.split(","):
        heading(
            f"{scenario}: N={args.n}, K={args.k}, budget 10"
            + (f", neighbour at {args.neighbour_rate}/s" if "neighbour" in scenario else "")
        )
        runs = []
        for run in range(args.runs):
            figures_ = one_run(
                scenario,
                args.n,
                args.k,
                scenario.startswith("naive"),
                args.neighbour_rate if "neighbour" in scenario else 0.0,
                run,
                args.time_limit,
            )
            print(
                f"  run {run + 1}/{args.runs}: {figures_.steady_per_s} calls/s steady, {figures_.rejected} rejected, "
                f"busiest second {figures_.busiest_second}, {figures_.completed}/{args.n} done in {figures_.seconds} s"
                + (f", neighbour kept {figures_.neighbour_kept_pct}%" if figures_.neighbour_calls else ""),
                flush=True,
            )
            runs.append(figures_)
        rows.append(median_row(runs, args.n))
        raw += [asdict(r) for r in runs]
    report_cold = ""
    if args.cold_start:
        from waba_local.cold_start import measure

        heading("Cold start of the HTTP function (fresh processes, medians of 5)")
        report_cold = table(["what", "ms", "note"], measure())
        print(report_cold)
    headers = [
        "scenario",
        "runs",
        "end-to-end calls/s",
        "steady calls/s",
        "rejected (of our calls)",
        "busiest second",
        "completed",
        "neighbour kept",
        "seconds",
    ]
    report = table(headers, rows)
    heading("Results (medians)")
    print(report)
    RESULTS.mkdir(exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    (RESULTS / f"bench-{stamp}.md").write_text(
        f"# make bench, {stamp}\n\nN={args.n} K={args.k} runs={args.runs}\n\n```\n{report}\n```\n\n```\n{report_cold}\n```\n"
    )
    (RESULTS / f"bench-{stamp}.json").write_text(json.dumps({"args": vars(args), "runs": raw}, indent=2))
    print(f"\nwritten to {RESULTS}/bench-{stamp}.md and .json")


if __name__ == "__main__":
    main()
