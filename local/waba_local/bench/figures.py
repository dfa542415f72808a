"""The benchmark's figures for one run: from the emulator's call log (what CAMS saw) and the instances' own stats.

Windows are sliding seconds of arrivals, as CAMS counts them. Steady is the rate between the 10th and 90th
percentile of accepted arrivals (warm-up and tail left out); end to end is from the first accepted call to the last.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass, field
from typing import Any

from waba_local.stand_ins.emulator import Call
from waba_local.stand_ins.emulator_state import busiest_window

NEIGHBOUR_KEY = ("LTAI5tNeighbourClientKey", "neighbour-client-secret")
READ_PREFIX = "cs-read-"  # the CustSpaceIds of interactive reads


@dataclass
class RunFigures:
    scenario: str
    variant: str
    calls: int
    rejected: int
    busiest_second: int
    steady_per_s: float
    end_to_end_per_s: float
    completed: int
    backlog: int
    neighbour_calls: int
    neighbour_kept_pct: float | None
    store_requests_per_call: float
    store_ms_per_call: float
    store_failures: int
    seconds: float
    extra: dict[str, Any] = field(default_factory=dict)  # the scenario's own figures (reads, hits, the kill)
    store_by_kind: dict[str, int] = field(default_factory=dict)  # the budget's store requests by what they were for
    ours: list[float] = field(default_factory=list, repr=False)  # arrival times, for the chart
    rejected_at: list[float] = field(default_factory=list, repr=False)
    reads_at: list[float] = field(default_factory=list, repr=False)  # our calls for interactive reads
    theirs: list[float] = field(default_factory=list, repr=False)
    theirs_rejected_at: list[float] = field(default_factory=list, repr=False)


def percentile(values: list[float], q: float) -> float | None:
    """The q-th percentile (0-100), nearest rank; None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q / 100 * len(ordered)) - 1))]


def rates(accepted: list[float]) -> tuple[float, float]:
    """(steady, end to end) calls per second of these accepted arrival times."""
    accepted = sorted(accepted)
    if len(accepted) < 2 or accepted[-1] == accepted[0]:
        return 0.0, 0.0
    lo, hi = int(len(accepted) * 0.1), int(len(accepted) * 0.9)
    steady = (hi - lo) / (accepted[hi] - accepted[lo]) if hi > lo and accepted[hi] > accepted[lo] else 0.0
    return round(steady, 2), round(len(accepted) / (accepted[-1] - accepted[0]), 2)


def budget_cost(stats: list[dict[str, Any]], calls: int) -> tuple[float, float, int]:
    """(store requests, store milliseconds) per CAMS call, and store failures, over every instance's BudgetStats."""
    budgets = [s["budget"] for s in stats]
    requests = sum(b["store_requests"] for b in budgets)
    seconds = sum(b["store_seconds"] for b in budgets)
    per_call = lambda total: round(total / calls, 2) if calls else 0.0
    return per_call(requests), per_call(1000 * seconds), sum(b["store_failures"] for b in budgets)


def by_kind(budgets: list[dict[str, Any]]) -> dict[str, int]:
    """Store requests by what they were for (join, take, answer...), over every instance's BudgetStats."""
    kinds: dict[str, int] = {}
    for budget in budgets:
        for kind, n in budget.get("by_kind", {}).items():
            kinds[kind] = kinds.get(kind, 0) + n
    return dict(sorted(kinds.items()))


def figures(
    scenario: str,
    variant: str,
    calls: list[Call],
    backlog: set[str],
    stats: list[dict[str, Any]],
    seconds: float,
) -> RunFigures:
    ours = [c for c in calls if c.access_key_id != NEIGHBOUR_KEY[0]]  # the deployment's key (AWS) or role (FC)
    accepted = [c.arrived_at for c in ours if c.accepted]
    steady, end_to_end = rates(accepted)
    # the neighbour's calls while ours were calling: its idle tail alone would flatter its figure
    first, last = (min(c.arrived_at for c in ours), max(c.arrived_at for c in ours)) if ours else (0.0, 0.0)
    theirs = [c for c in calls if c.access_key_id == NEIGHBOUR_KEY[0] and first <= c.arrived_at <= last]
    requests, ms, store_failures = budget_cost(stats, len(ours))
    return RunFigures(
        scenario=scenario,
        variant=variant,
        calls=len(ours),
        rejected=sum(1 for c in ours if c.code == "System.LimitControl"),
        busiest_second=busiest_window([c.arrived_at for c in ours], 1.0),
        steady_per_s=steady,
        end_to_end_per_s=end_to_end,
        completed=len({c.cust_space_id for c in ours if c.accepted} & backlog),
        backlog=len(backlog),
        neighbour_calls=len(theirs),
        neighbour_kept_pct=round(100 * sum(c.accepted for c in theirs) / len(theirs), 1) if theirs else None,
        store_requests_per_call=requests,
        store_ms_per_call=ms,
        store_failures=store_failures,
        seconds=round(seconds, 1),
        store_by_kind=by_kind([s["budget"] for s in stats]),
        ours=sorted(c.arrived_at for c in ours),
        rejected_at=sorted(c.arrived_at for c in ours if c.code == "System.LimitControl"),
        reads_at=sorted(c.arrived_at for c in ours if (c.cust_space_id or "").startswith(READ_PREFIX)),
        theirs=sorted(c.arrived_at for c in calls if c.access_key_id == NEIGHBOUR_KEY[0]),
        theirs_rejected_at=sorted(
            c.arrived_at for c in calls if c.access_key_id == NEIGHBOUR_KEY[0] and c.code == "System.LimitControl"
        ),
    )


def reads_figures(stats: list[dict[str, Any]]) -> dict[str, Any]:
    """Interactive reads: permit waits and latencies (p50, p95, seconds) and how they were answered."""
    waits = [w for s in stats for w in s["budget"]["interactive_waits"]]
    answers = [r for s in stats for r in s.get("reads", [])]
    latencies = [r["latency"] for r in answers]
    outcomes: dict[str, int] = {}
    for r in answers:
        key = f"{r['status']} {r['cache']}".strip()
        outcomes[key] = outcomes.get(key, 0) + 1
    p = lambda values, q: None if (v := percentile(values, q)) is None else round(v, 3)
    # the budget's store requests a read cost, by how it was answered: a refused read calls nothing, so with
    # refusals the requests per CAMS call grow with the crowd however cheap each refusal is
    served = [r["store_requests"] for r in answers if r["status"] == 200 and "store_requests" in r]
    refused = [r["store_requests"] for r in answers if r["status"] == 429 and "store_requests" in r]
    mean = lambda values: round(sum(values) / len(values), 2) if values else None
    return {
        "store_per_served_read": mean(served),
        "store_per_refused_read": mean(refused),
        "reads": len(answers),
        "permit_wait_p50": p(waits, 50),
        "permit_wait_p95": p(waits, 95),
        "permit_wait_max": p(waits, 100),
        "latency_p50": p(latencies, 50),
        "latency_p95": p(latencies, 95),
        "outcomes": outcomes,
    }


def leaving_figures(calls: list[Call]) -> dict[str, Any]:
    """A neighbour that stays, then leaves: the least it kept in any 10 s window while it called, our rate beside
    it, and how long after its last call our sliding second first held 9 calls again (None: never)."""
    theirs = sorted(c.arrived_at for c in calls if c.access_key_id == NEIGHBOUR_KEY[0])
    ours = sorted(c.arrived_at for c in calls if c.access_key_id != NEIGHBOUR_KEY[0] and c.accepted)
    if not theirs or not ours:
        return {}
    left, kept_by_window = theirs[-1], []
    for start in range(int(theirs[0]), int(left) - 9):
        window = [c for c in calls if c.access_key_id == NEIGHBOUR_KEY[0] and start <= c.arrived_at < start + 10]
        if window:
            kept_by_window.append(100 * sum(c.accepted for c in window) / len(window))
    beside = [t for t in ours if t <= left]
    back = next((t for i, t in enumerate(ours) if t > left and i >= 8 and t - ours[i - 8] < 1.0), None)
    return {
        "neighbour_min_10s_window_pct": round(min(kept_by_window), 1) if kept_by_window else None,
        "ours_beside_neighbour_per_s": round(len(beside) / (left - beside[0]), 2) if len(beside) > 1 else None,
        "back_to_9_per_s_after_s": round(back - left, 1) if back is not None else None,
    }


def median_of(values: list[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return round(statistics.median(present), 2) if present else None
