"""The budget under a crowd, in process: N waiters (threads, each an instance with its own budget) want one permit
each at once, over one record whose requests are serialised and take 5-10 ms each, as writes to one item are.

`python -m waba_local.bench.crowd --waiters 200` prints one JSON line: who got a permit, when, after how long, in
what order they arrived, and the store requests it all cost. `--baseline DIR` runs the budget in DIR instead (an
older library, for `make bench`'s comparison; see bench_baseline.py), whose store has the older port.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import threading
import time
from typing import Any

CALL_SECONDS = 0.1  # each permit's CAMS call
STORE_SECONDS = (0.005, 0.010)
ARRIVAL_SPACING = 0.002  # waiters arrive this far apart, in order
STORE_METHODS = ("load", "update", "replace", "answer")  # the port's requests, today's and the older one's
MODEL_SIZES = (25, 50, 100, 200)


class SlowStore:
    """A LogStore whose every request waits its turn and takes 5-10 ms: one item's writes, serialised. It notes the
    order in which the `tickets` (their columns) first reach it (`joined`): the line's own order of arrival, which
    the threads' start order is not (a lock does not serve its waiters in order)."""

    def __init__(self, inner: Any, tickets: frozenset[str] = frozenset()) -> None:
        self.inner, self.requests, self.tickets = inner, 0, tickets
        self.answer_seconds = inner.answer_seconds
        self.joined: dict[str, int] = {}
        self._line = threading.Lock()

    def __getattr__(self, name: str) -> Any:
        request = getattr(self.inner, name)
        if name not in STORE_METHODS:
            return request

        def slow(*args: Any, **kwargs: Any) -> Any:
            with self._line:
                time.sleep(random.uniform(*STORE_SECONDS))
                self.requests += 1
                put = args[0] if name == "update" and args and isinstance(args[0], dict) else {}
                for column in self.tickets.intersection(put):  # a join (or a renewal, later)
                    self.joined.setdefault(column, len(self.joined))
                return request(*args, **kwargs)

        return slow


def _library() -> tuple[Any, Any, Any, Any, Any]:
    """SharedBudget, the in-memory store, Policy and Throttled, from whichever library is on the path, and the
    column a holder's ticket is written to (None: the older library keeps no line)."""
    from waba_lookup.errors import Throttled

    try:
        from waba_lookup.budget.log import Policy
        from waba_lookup.budget.shared import SharedBudget
        from waba_lookup.budget.store import MemoryLogStore, ticket_name
    except ImportError:  # the older library, before the budget became a package
        from waba_lookup.log_store import MemoryLogStore  # type: ignore[no-redef]
        from waba_lookup.shared_budget import SharedBudget  # type: ignore[no-redef]
        from waba_lookup.sliding_log import Policy  # type: ignore[no-redef]

        return SharedBudget, MemoryLogStore, Policy, Throttled, None
    return SharedBudget, MemoryLogStore, Policy, Throttled, ticket_name


def crowd(waiters: int, wait_seconds: float, interactive: bool) -> dict[str, Any]:
    shared_budget, memory_store, policy, throttled, ticket_name = _library()
    holders = {n: f"w{n}" for n in range(waiters)}  # each waiter's id, named after its arrival
    tickets = {n: ticket_name(holder) for n, holder in holders.items()} if ticket_name else {}
    store = SlowStore(memory_store(), frozenset(tickets.values()))
    served: list[dict[str, Any]] = []
    lock = threading.Lock()
    begin = time.monotonic() + 0.5

    def waiter(arrival: int) -> None:
        # named, so that its ticket's column says who joined when; not with the older library, whose new_id also
        # versions the record (one id a waiter would let a stale write pass its condition)
        named = {"new_id": lambda: holders[arrival]} if tickets else {}
        budget = shared_budget(store, policy(10, 2, 3.0), **named)
        time.sleep(max(0.0, begin + arrival * ARRIVAL_SPACING - time.monotonic()))
        asked = time.monotonic()
        try:
            with budget.permit(asked + wait_seconds, interactive):
                sent = time.monotonic()
                time.sleep(CALL_SECONDS)
        except throttled:
            sent = None
        with lock:
            served.append({"arrival": arrival, "sent": sent and sent - begin, "wait": (sent or asked) - asked})

    threads = [threading.Thread(target=waiter, args=(n,)) for n in range(waiters)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for s in served:  # its place in the line's order of arrival, where it joined one
        s["joined"] = store.joined.get(tickets.get(s["arrival"], ""))
    sends = sorted(s["sent"] for s in served if s["sent"] is not None)
    busiest = max((sum(1 for t in sends[i:] if t < a + 1.0) for i, a in enumerate(sends)), default=0)
    permits = len(sends)
    return {
        "waiters": waiters,
        "permits": permits,
        "refused": waiters - permits,
        "store_requests": store.requests,
        "store_requests_per_call": round(store.requests / permits, 2) if permits else None,
        "busiest_second": busiest,
        "per_s": round((permits - 1) / (sends[-1] - sends[0]), 2) if permits > 1 and sends[-1] > sends[0] else 0.0,
        "served": sorted(served, key=lambda s: s["arrival"]),
    }


def measure(sizes: tuple[int, ...] = MODEL_SIZES) -> dict[str, dict[int, dict[str, Any]]]:
    """The model at each crowd size, today's budget and the race before the line, each in a fresh process."""
    import os
    import subprocess

    from waba_local.bench.baseline import race_library

    libraries = {"shared": None, "race": race_library()}
    results: dict[str, dict[int, dict[str, Any]]] = {}
    for name, library in libraries.items():
        if name == "race" and library is None:
            continue  # not a git checkout: no baseline
        env = dict(os.environ) | ({"PYTHONPATH": str(library)} if library else {})
        for size in sizes:
            command = [sys.executable, "-m", "waba_local.bench.crowd", "--waiters", str(size)]
            answer = subprocess.run(command, env=env, check=True, capture_output=True, text=True).stdout
            results.setdefault(name, {})[size] = json.loads(answer.splitlines()[-1])
            figures = results[name][size]
            print(
                f"  {name}, {size} waiters: {figures['store_requests_per_call']} store requests a call, "
                f"{figures['per_s']}/s, busiest second {figures['busiest_second']}, {figures['refused']} refused"
            )
    return results


def model_table(results: dict[str, dict[int, dict[str, Any]]]) -> list[list[object]]:
    """Rows: algorithm, waiters, permits, store requests a call, calls a second, busiest second, FIFO."""
    rows: list[list[object]] = []
    for name, by_size in results.items():
        for size, r in sorted(by_size.items()):
            rows.append(
                [name, size, r["permits"], r["store_requests_per_call"], r["per_s"], r["busiest_second"], fifo(r)]
            )
    return rows


def served_of(result: dict[str, Any]) -> list[dict[str, Any]]:
    """The waiters that had a permit."""
    return [s for s in result["served"] if s["sent"] is not None]


def arrival_order(result: dict[str, Any]) -> tuple[str, str]:
    """What each served waiter's arrival is: the order its ticket reached the store (the line's order), where
    every waiter joined a line; else the order the threads started in (the older library keeps no line)."""
    served = served_of(result)
    if served and all(s.get("joined") is not None for s in served):
        return "joined", "store arrival"
    return "arrival", "thread start"


def fifo(result: dict[str, Any]) -> str:
    """How far anyone was served out of arrival order: the most places anyone jumped ahead of those that arrived
    before it, among those served."""
    key, basis = arrival_order(result)
    served = sorted(served_of(result), key=lambda s: s["sent"])
    ranks = {s[key]: rank for rank, s in enumerate(sorted(served, key=lambda s: s[key]))}
    jumps = [ranks[s[key]] - position for position, s in enumerate(served)]
    most = max(jumps, default=0)
    return f"{most} place{'s' * (most != 1)} ({basis} order)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--waiters", type=int, default=200)
    parser.add_argument("--wait", type=float, default=60.0, help="seconds each waiter may wait for its permit")
    parser.add_argument("--background", action="store_true", help="the waiters are background work, not reads")
    args = parser.parse_args()
    print(json.dumps(crowd(args.waiters, args.wait, not args.background)))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
