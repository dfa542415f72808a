"""PNG charts of `make bench`: CAMS arrivals per sliding second over time, against the quota of 10.

One chart per scenario, a panel per variant (shared budget, static shares, naive), and an overview of them all.
The quota held wherever the line of our calls (plus the neighbour's, when there is one) stays at or under the red
line, and there are no crosses (calls CAMS flow-controlled: red ours, orange the neighbour's).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt
import numpy as np

from waba_local.bench.crowd import arrival_order, served_of
from waba_local.bench.figures import RunFigures

QUOTA = 10
STEP = 0.02  # seconds between points of the sliding-second curve
LABELS = {
    "shared": "shared budget",
    "fc": "Function Compute, Tablestore budget",
    "static": "no table: own logs at the old shares",
    "naive": "naive (no budget)",
    "race": "before the line: waiters race",
}


def sliding_counts(arrivals: list[float], t0: float, end: float) -> tuple[Any, Any]:
    """(t, n): n arrivals in the second up to each t, from t0 to end (seconds after t0)."""
    times = np.sort(np.asarray(arrivals, dtype=float)) - t0
    t = np.arange(0.0, end + STEP, STEP)
    return t, np.searchsorted(times, t, side="right") - np.searchsorted(times, t - 1.0, side="right")


def _span(run: RunFigures) -> tuple[float, float]:
    """(t0, seconds): from the first call, ours or the neighbour's, to a second after the last."""
    t0 = min(run.ours[:1] + run.theirs[:1] or [0.0])
    return t0, max(run.ours[-1:] + run.theirs[-1:] or [t0]) - t0 + 1.0


def _panel(ax: Any, run: RunFigures, compact: bool = False, end: float | None = None) -> None:
    t0, seconds = _span(run)
    end = max(seconds, end or 0.0, 1.0)
    t, ours = sliding_counts(run.ours, t0, end)
    ax.plot(t, ours, color="tab:blue", lw=1.2, label="our calls")
    if run.theirs:
        _, theirs = sliding_counts(run.theirs, t0, end)
        ax.plot(t, theirs, color="tab:orange", lw=1.0, label="neighbour's calls")
        ax.plot(t, ours + theirs, color="0.35", lw=0.8, ls="--", label="account total")
    if run.rejected_at:
        rejected = np.asarray(run.rejected_at) - t0
        ax.plot(rejected, np.full(len(rejected), QUOTA + 1.5), "x", color="red", ms=4, label="ours flow-controlled")
    if run.theirs_rejected_at:
        rejected = np.asarray(run.theirs_rejected_at) - t0
        ax.plot(
            rejected, np.full(len(rejected), QUOTA + 0.8), "x", color="tab:orange", ms=4, label="theirs flow-controlled"
        )
    if run.reads_at:
        reads = np.asarray(run.reads_at) - t0
        ax.plot(reads, np.full(len(reads), 0.6), "|", color="tab:green", ms=8, label="an interactive read's call")
    if "killed_at" in run.extra:
        ax.axvline(run.extra["killed_at"] - t0, color="purple", lw=1, ls=":", label="worker killed")
    ax.axhline(QUOTA, color="red", lw=1.2, label=f"quota {QUOTA}/s")
    ax.set_ylim(0, max(QUOTA + 3, int(ours.max(initial=0)) + 2))
    ax.set_xlim(0, end)
    ax.grid(alpha=0.3)
    note = f"busiest {run.busiest_second}, {run.rejected} rejected, steady {run.steady_per_s}/s"
    if "answered" in run.extra:  # the hits scenario: nothing should reach CAMS at all
        x = run.extra
        note = (
            f"{x['hits']}/{x['answered']} HIT, {x['cams_calls']} CAMS calls, {x['dynamodb_requests']} DynamoDB requests"
        )
    ax.set_title(f"{LABELS[run.variant]}: {note}", fontsize=8 if compact else 9, loc="left")
    if not compact:
        ax.set_ylabel("calls in the last second")
        ax.legend(fontsize=7, loc="upper right", ncol=3)


def scenario_chart(title: str, runs: list[RunFigures], path: Path) -> None:
    """One scenario: a panel per variant, on one time axis."""
    fig, axes = plt.subplots(len(runs), 1, figsize=(10, 2.6 * len(runs)), sharex=True, squeeze=False)
    end = max(_span(run)[1] for run in runs)
    for ax, run in zip(axes[:, 0], runs, strict=True):
        _panel(ax, run, end=end)
    axes[-1, 0].set_xlabel("seconds since the first CAMS call")
    fig.suptitle(f"CAMS arrivals per sliding second: {title}", fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def overview_chart(rows: list[tuple[str, list[RunFigures]]], path: Path) -> None:
    """Every scenario (a row) under every variant (a column)."""
    columns = max(len(runs) for _, runs in rows)
    fig, axes = plt.subplots(len(rows), columns, figsize=(5 * columns, 2.3 * len(rows)), squeeze=False)
    for r, (title, runs) in enumerate(rows):
        for c in range(columns):
            if c < len(runs):
                _panel(axes[r, c], runs[c], compact=True)
            else:
                axes[r, c].axis("off")
        axes[r, 0].set_ylabel(title, fontsize=8)
    fig.suptitle(f"make bench: CAMS arrivals per sliding second (red line: the quota, {QUOTA}/s)", fontsize=12)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def crowd_chart(model: dict[str, dict[int, dict[str, Any]]], crowds: dict[str, dict[str, float]], path: Path) -> None:
    """Two panels: each waiter's wait against its arrival order in the largest in-process crowd, per algorithm;
    store requests per CAMS call against crowd size, in process (lines, where no one is refused) and in the
    process crowds (points: per served read, since a refused read makes no call)."""
    figure, (waits, costs) = plt.subplots(1, 2, figsize=(13, 4.8))
    for name, by_size in model.items():
        largest = by_size[max(by_size)]
        served = served_of(largest)
        key, basis = arrival_order(largest)
        waits.scatter(
            [s[key] for s in served], [s["wait"] for s in served], s=8, label=f"{LABELS.get(name, name)} ({basis})"
        )
        sizes = sorted(by_size)
        costs.plot(
            sizes,
            [by_size[n]["store_requests_per_call"] for n in sizes],
            marker="o",
            label=f"{LABELS.get(name, name)}, in process",
        )
    for name, points in crowds.items():
        sizes = sorted(points, key=float)
        costs.scatter(
            [float(n) for n in sizes],
            [points[n] for n in sizes],
            marker="x",
            s=50,
            label=f"{LABELS.get(name, name)}, processes (a served read)",
        )
    waits.set(
        xlabel="arrival order: reaching the store (the line), or thread start (no line)",
        ylabel="wait for a permit (s)",
        title=f"{max(next(iter(model.values())))} waiters at once",
    )
    costs.axhline(4, color="red", linewidth=1, linestyle="--", label="target: 4")
    costs.set(xlabel="waiters at once", ylabel="store requests per CAMS call", title="What a permit costs the store")
    costs.set_yscale("log")
    for axes in (waits, costs):
        axes.legend(fontsize=8)
        axes.grid(alpha=0.3)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
