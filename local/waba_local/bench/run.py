"""One benchmark run: fresh stand-ins, the scenario's instance processes under one variant, and its figures.

The CAMS emulator and the neighbour client run in this process; moto's server runs in a process of its own unless
asked otherwise (`make bench` measured both: on its own, it answers a little faster under load).
"""

from __future__ import annotations

import json
import os
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from waba_local.bench.events import SLOW_SECONDS, hits, kill_and_replace, neighbour
from waba_local.bench.figures import NEIGHBOUR_KEY, READ_PREFIX, RunFigures, figures, leaving_figures, reads_figures
from waba_local.bench.fleet import Fleet
from waba_local.bench.scenarios import Scenario, variant_env
from waba_local.dev.console import progress
from waba_local.stand_ins import launch as stand_ins
from waba_local.stand_ins.emulator import DEFAULT_ACCESS_KEY_ID, DEFAULT_ACCESS_KEY_SECRET, expected_isv_code

ACCOUNTS = {DEFAULT_ACCESS_KEY_ID: DEFAULT_ACCESS_KEY_SECRET, NEIGHBOUR_KEY[0]: NEIGHBOUR_KEY[1]}
READS_AFTER_CALLS = 15  # interactive reads begin once the backlog is this far under way
SLOW_CUSTOMER_AT = 0.6  # where in the backlog the killed call's customer sits: well into the drain, at full rate


def one_run(
    scenario: Scenario, variant: str, run: int, aws_own_process: bool, time_limit: float, logs: Path | None = None
) -> RunFigures:
    """One scenario under one variant; with `logs`, the instances' log streams go to files there."""
    local = stand_ins.start(
        visibility_timeout=scenario.visibility,
        max_receive_count=1000,
        accounts=ACCOUNTS,
        aws_own_process=aws_own_process,
        with_fc=variant == "fc",
        fc_visibility_timeout=scenario.visibility,
    )
    stop = threading.Event()
    with tempfile.TemporaryDirectory(prefix="waba-bench-") as workdir:
        if logs:
            logs = logs / f"{scenario.name}-{variant}-{run + 1}"
            logs.mkdir(parents=True, exist_ok=True)
        fleet = Fleet(Path(workdir), variant == "naive", logs)
        try:
            return _measure(scenario, variant, run, local, fleet, stop, time_limit)
        finally:
            stop.set()
            fleet.stop()
            local.stop()


def _measure(
    s: Scenario,
    variant: str,
    run: int,
    local: stand_ins.StandIns,
    fleet: Fleet,
    stop: threading.Event,
    time_limit: float,
) -> RunFigures:
    assert local.emulator is not None
    base = dict(os.environ) | (local.fc_environment() if variant == "fc" else local.environment())
    if s.hits:
        started = time.monotonic()
        return _figures(s, variant, local, fleet, set(), started, hits(s, variant, run, local, fleet, base))
    backlog = _queue_backlog(local, s, run)
    readers = _start_readers(s, variant, run, fleet, base) if s.readers else 0
    if s.crowd:
        fleet.go()
    if s.neighbour_rate:
        args = (local.emulator.endpoint, s.neighbour_rate, stop, s.neighbour_leaves_after)
        threading.Thread(target=neighbour, args=args, daemon=True).start()
    started = time.monotonic()
    worker_env = variant_env(base, variant, "worker", s.workers)
    worker_args = ["--batch", str(s.batch), "--time-limit", str(time_limit), *_platform(variant)]
    announce = fleet.workdir / "announce"
    slow = backlog[int(len(backlog) * SLOW_CUSTOMER_AT)] if backlog else ""
    for _ in range(s.workers):
        fleet.spawn(
            "worker",
            worker_env,
            *worker_args,
            *(["--announce", f"{slow}={announce}"] if s.kill else []),
        )
    extra: dict[str, Any] = {}
    if s.kill:
        local.emulator.set_behaviour(slow, f"slow:{SLOW_SECONDS}", times=1)
        args = (fleet, announce, lambda: fleet.spawn("worker", worker_env, *worker_args), extra, stop)
        threading.Thread(target=kill_and_replace, args=args, daemon=True).start()
    _watch(local, fleet, set(backlog), bool(readers), started + time_limit + 30)
    if readers:
        extra |= reads_figures([st for st in fleet.stats() if st["role"] == "reads"])
    if s.neighbour_leaves_after:
        extra |= leaving_figures(local.emulator.calls)
    return _figures(s, variant, local, fleet, set(backlog), started, extra)


def _figures(
    s: Scenario,
    variant: str,
    local: stand_ins.StandIns,
    fleet: Fleet,
    backlog: set[str],
    started: float,
    extra: dict[str, Any],
) -> RunFigures:
    assert local.emulator is not None
    seconds = time.monotonic() - started
    result = figures(s.name, variant, local.emulator.calls, backlog, fleet.stats(), seconds)
    result.extra = extra | ({"failed_instances": fleet.failed()} if fleet.failed() else {})
    if "killed_at" in extra and result.ours:
        result.extra["killed_after_s"] = round(extra["killed_at"] - result.ours[0], 1)
    return result


def _platform(variant: str) -> list[str]:
    """The instances' --platform argument."""
    return ["--platform", "fc" if variant == "fc" else "aws"]


def _queue_backlog(local: stand_ins.StandIns, s: Scenario, run: int) -> list[str]:
    customers = [f"cs-bench-{run}-{i:04d}" for i in range(s.backlog)]
    if local.smq is not None:  # FC: SMQ, as POST /waba/refresh would send them
        from waba_lookup.credentials import AccessKey, StaticCredentials
        from waba_lookup.queue.smq import SmqQueue

        smq = SmqQueue(local.smq.queue_url(stand_ins.FC_QUEUE), StaticCredentials(AccessKey(*stand_ins.ROLE)))
        bodies = [json.dumps({"CustSpaceId": c, "IsvCode": expected_isv_code(c)}) for c in customers]
        for start in range(0, len(bodies), smq.max_messages):
            smq.send_batch(bodies[start : start + smq.max_messages])
        return customers
    sqs = local.client("sqs")
    for start in range(0, len(customers), 10):
        entries = [
            {"Id": str(j), "MessageBody": json.dumps({"CustSpaceId": c, "IsvCode": expected_isv_code(c)})}
            for j, c in enumerate(customers[start : start + 10])
        ]
        sqs.send_message_batch(QueueUrl=local.queue_url, Entries=entries)
    return customers


def _start_readers(s: Scenario, variant: str, run: int, fleet: Fleet, base: dict[str, str]) -> int:
    """The HTTP instances, started and warm before the workers, so their imports do not slow the drain."""
    env = variant_env(base, variant, "http", s.readers)
    for p in range(s.readers):
        customers = ",".join(f"{READ_PREFIX}{run}-{p}-{i}" for i in range(s.reads_each))
        seed = ["--seed", str(run * 100 + p), *_platform(variant), *(["--gaps", "0", "0"] if s.crowd else [])]
        fleet.spawn("reads", env, "--customers", customers, "--go", str(fleet.go_file), *seed)
    fleet.wait_ready(s.readers)
    return s.readers


def _watch(local: stand_ins.StandIns, fleet: Fleet, backlog: set[str], reads: bool, give_up: float) -> None:
    """Show progress until every instance has ended; start the reads once the backlog is under way."""
    assert local.emulator is not None
    while fleet.running() and time.monotonic() < give_up:
        calls = [c for c in local.emulator.calls if c.access_key_id != NEIGHBOUR_KEY[0]]
        done = len({c.cust_space_id for c in calls if c.accepted} & backlog)
        if reads and not fleet.go_file.exists() and sum(c.accepted for c in calls) >= READS_AFTER_CALLS:
            fleet.go()
        rejected = sum(c.code == "System.LimitControl" for c in calls)
        progress(min(done, len(backlog) - 1), len(backlog), f"{len(calls)} calls, {rejected} rejected")
        time.sleep(0.5)
    if reads and not fleet.go_file.exists():
        fleet.go()  # the backlog ended before the reads began: let them run alone rather than hang
    print()
