"""`make bench`: CAMS throughput, flow-control rejections and the budget's cost, scenario by scenario.

Each scenario (bench_scenarios.py) runs under the shared budget and two baselines, static shares and naive, each
with fresh stand-ins: instance processes run the real handlers (bench_instances.py), the CAMS emulator counts what
arrives. Figures are printed as a table and written to bench-results/ (.md, .json, a PNG chart per scenario and an
overview), with the issue's acceptance targets checked against the shared budget's figures.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from waba_local.bench import scenarios as bench_scenarios
from waba_local.bench.events import KILL_AFTER_SECONDS, SLOW_SECONDS
from waba_local.bench.figures import RunFigures, median_of
from waba_local.bench.run import one_run
from waba_local.bench.scenarios import SCENARIOS, SHARED, VARIANTS, Scenario
from waba_local.dev.console import heading, table
from waba_lookup.settings import Settings

RESULTS = Path("bench-results")
DOCS = Path(__file__).resolve().parents[3] / "docs" / "benchmarks.md"
DOCS_INTRO = """`make bench` measures the [shared budget](quota.md) scenario by scenario (the real handlers, one process per
instance, through the official SDKs to the local stand-ins), the budget's line in process under crowds of up to
200 waiters, the FC worker's drain, and the cold start on both platforms. Each budget scenario runs under the
shared budget on AWS and on FC, and beside baselines in the same run: no table (each process its own log), no
budget at all, and, for the crowds, the budget as it was before the ordered line (waiters racing). The
neighbour scenarios run three times under the shared budget (their figures are medians; see the runs column):
one run's share of a neighbour varies by several points. About 35 minutes on a 2-core machine. The local
DynamoDB (moto) answers one request at a time and slows under a crowd (see store ms/call): its figures are the
stand-in's, not DynamoDB's. In a crowd, the store requests a call are given for the reads served (the bound);
a read refused at once costs its join and its leave, and no call."""
HTTP_PERMIT_WAIT_SECONDS = Settings.http_permit_wait_seconds  # the deployed default
Results = dict[tuple[str, str], list[RunFigures]]


def summary(run: RunFigures) -> str:
    """One line on one run, as it ends."""
    line = (
        f"{run.calls} calls, {run.rejected} rejected, busiest second {run.busiest_second}, "
        f"{run.steady_per_s}/s steady, {run.end_to_end_per_s}/s end to end, {run.completed}/{run.backlog} done, "
        f"{run.store_requests_per_call} store requests and {run.store_ms_per_call} ms a call, {run.seconds} s"
    )
    if run.neighbour_kept_pct is not None:
        line += f", neighbour kept {run.neighbour_kept_pct}%"
    return line + "".join(f", {k} {v}" for k, v in run.extra.items() if not k.endswith(("_at", "_sent", "_pid")))


NEVER_IF_NONE = {"back_to_9_per_s_after_s"}  # extras where None means "never", the worst


def median_run(runs: list[RunFigures]) -> dict[str, Any]:
    """Medians over runs; the worst for rejections, the busiest second and completion."""
    med = lambda name: median_of([getattr(r, name) for r in runs])
    row: dict[str, Any] = {
        name: med(name) for name in ("calls", "steady_per_s", "end_to_end_per_s", "neighbour_kept_pct")
    }
    row |= {name: med(name) for name in ("store_requests_per_call", "store_ms_per_call", "seconds")}
    row |= {"rejected": max(r.rejected for r in runs), "busiest_second": max(r.busiest_second for r in runs)}
    row |= {"completed": min(r.completed for r in runs), "backlog": runs[0].backlog}
    row |= {"store_failures": max(r.store_failures for r in runs), "runs": len(runs)}
    numbers = {k for r in runs for k, v in r.extra.items() if isinstance(v, int | float) and not isinstance(v, bool)}
    row["extra"] = {k: median_of([r.extra.get(k) for r in runs]) for k in sorted(numbers)}
    for k in NEVER_IF_NONE & numbers:  # a run that never got there counts as the slowest, not as no run
        never = median_of([math.inf if r.extra.get(k) is None else r.extra[k] for r in runs])
        row["extra"][k] = None if never is None or math.isinf(never) else never
    row["extra"] |= {"outcomes": runs[0].extra["outcomes"]} if "outcomes" in runs[0].extra else {}
    return row


def main_table(rows: list[tuple[Scenario, str, dict[str, Any]]]) -> str:
    headers = ["scenario", "variant", "calls", "rejected", "busiest s", "steady/s", "end-to-end/s", "completed"]
    headers += ["neighbour kept", "store req/call", "store ms/call", "store failures", "seconds", "runs"]
    cells = [
        [s.name, variant, m["calls"], m["rejected"], m["busiest_second"], m["steady_per_s"], m["end_to_end_per_s"]]
        + [f"{m['completed']}/{m['backlog']}" if m["backlog"] else "-"]
        + [f"{m['neighbour_kept_pct']}%" if m["neighbour_kept_pct"] is not None else "-"]
        + [m["store_requests_per_call"], m["store_ms_per_call"], m["store_failures"], m["seconds"], m["runs"]]
        for s, variant, m in rows
    ]
    return table(headers, cells)


def specifics_table(rows: list[tuple[Scenario, str, dict[str, Any]]]) -> str:
    """What only some scenarios measure: interactive reads, hits, the kill."""
    cells = []
    for s, variant, m in rows:
        x = m["extra"]
        if s.readers:
            note = (
                f"permit wait p50 {x.get('permit_wait_p50')} s, p95 {x.get('permit_wait_p95')} s, "
                f"max {x.get('permit_wait_max')} s; read latency p50 {x.get('latency_p50')} s, "
                f"p95 {x.get('latency_p95')} s; answers {x.get('outcomes')}; store requests a read: "
                f"{x.get('store_per_served_read')} served, {x.get('store_per_refused_read')} refused"
            )
        elif s.hits:
            note = (
                f"{x.get('hits')}/{x.get('answered')} answered 200 HIT; {x.get('dynamodb_requests')} DynamoDB "
                f"requests (stand-in), {x.get('store_requests')} store requests (stats), {x.get('cams_calls')} "
                f"CAMS calls; latency p50 {x.get('latency_p50')} s, p95 {x.get('latency_p95')} s"
            )
        elif s.kill:
            note = (
                f"a worker SIGKILLed {x['killed_after_s']} s after our first call, {KILL_AFTER_SECONDS:g} s into a "
                f"{SLOW_SECONDS:g} s CAMS call, and replaced at once"
                if "killed_after_s" in x
                else "no kill happened"
            )
        else:
            continue
        if x.get("failed_instances"):
            note += f"; {x['failed_instances']} instance(s) failed"
        cells.append([s.name, variant, note])
    return table(["scenario", "variant", "figures"], cells)


def acceptance(shared: dict[str, dict[str, Any]], fc: dict[str, dict[str, Any]]) -> list[list[object]]:
    """The issue's targets, against the shared budget's figures: [target, measured, met]."""
    checks: list[list[object]] = []

    def check(target: str, measured: str, met: bool) -> None:
        checks.append([target, measured, "yes" if met else "NO"])

    for name, figures in shared.items():
        if not SCENARIOS[name].neighbour_rate:
            check(
                f"{name}: 0 rejected, busiest <= 10",
                f"{figures['rejected']}, {figures['busiest_second']}",
                not figures["rejected"] and figures["busiest_second"] <= 10,
            )
    if m := shared.get("alone"):
        check("alone: >= 9.5/s steady", f"{m['steady_per_s']}", (m["steady_per_s"] or 0) >= 9.5)
    if m := shared.get("k5"):
        met = (m["steady_per_s"] or 0) >= 9.5 and (m["end_to_end_per_s"] or 0) >= 9.0
        check("k5: >= 9.5/s steady, >= 9.0/s end to end", f"{m['steady_per_s']}, {m['end_to_end_per_s']}", met)
    if m := shared.get("reads"):
        wait, outcomes = m["extra"].get("permit_wait_p95"), m["extra"].get("outcomes", {})
        check("reads: permit wait p95 <= 1.0 s", f"{wait} s (answers: {outcomes})", wait is not None and wait <= 1.0)
    if m := shared.get("hits"):
        x = m["extra"]
        met = (
            x.get("hits") == 200
            and not x.get("dynamodb_requests")
            and not x.get("store_requests")
            and not x.get("cams_calls")
        )
        measured = f"{x.get('hits')} HIT, {x.get('dynamodb_requests')}+{x.get('store_requests')} store, {x.get('cams_calls')} CAMS"
        check("hits: 200 HIT, 0 store requests, 0 CAMS calls", measured, met)
    for name, m in shared.items():
        s = SCENARIOS[name]
        if not s.crowd:
            continue
        x, fits = m["extra"], s.demand_seconds <= HTTP_PERMIT_WAIT_SECONDS
        answered = x.get("outcomes", {})
        ok = sum(n for outcome, n in answered.items() if outcome.startswith("200"))
        # a refused read makes no CAMS call: the bound is on the calls made, and a refusal's own cost beside it
        p95, store, refusal = x.get("latency_p95"), x.get("store_per_served_read"), x.get("store_per_refused_read")
        met = (ok == x.get("reads") or not fits) and p95 is not None and p95 <= s.demand_seconds + 1.0
        met = met and m["busiest_second"] == 10 and store is not None and store <= 4.0
        target = (
            f"{name}: {'every read 200, ' if fits else ''}p95 <= {s.demand_seconds + 1:.1f} s, busiest 10, "
            "<= 4 store requests a call"
        )
        measured = (
            f"{ok}/{x.get('reads')} 200, p95 {p95} s, busiest {m['busiest_second']}, {store}/call "
            f"({refusal} a refusal; {m['store_requests_per_call']} all over calls)"
        )
        check(target, measured, met)
    if m := shared.get("leaves") or fc.get("leaves"):
        x = m["extra"]
        low, beside, back = (
            x.get("neighbour_min_10s_window_pct"),
            x.get("ours_beside_neighbour_per_s"),
            x.get("back_to_9_per_s_after_s"),
        )
        met = (
            (m["neighbour_kept_pct"] or 0) >= 95
            and (low or 0) >= 85
            and (beside or 0) >= 4.8
            and back is not None
            and back <= 20
        )
        target = "leaves: keeps >= 95% (>= 85% each 10 s), ours >= 4.8/s beside it, >= 9/s within 20 s of its leaving"
        check(target, f"{m['neighbour_kept_pct']}% ({low}%), {beside}/s, {back} s", met)
    if m := shared.get("neighbour"):
        kept, ours = m["neighbour_kept_pct"] or 0, m["steady_per_s"] or 0
        check("neighbour: keeps >= 95%, ours >= 4.8/s", f"{kept}%, {ours}/s", kept >= 95 and ours >= 4.8)
    return checks


def fc_acceptance(fc: dict[str, dict[str, Any]], aws: dict[str, dict[str, Any]]) -> list[list[object]]:
    """Issue 12's targets: on FC with Tablestore, no rejection and <= 10 a second without a neighbour, and the
    throughput and reads-first figures within 5% of the AWS path's in the same run."""
    checks: list[list[object]] = []
    for name, m in fc.items():
        if not SCENARIOS[name].neighbour_rate:
            met = not m["rejected"] and m["busiest_second"] <= 10
            checks.append([f"FC {name}: 0 rejected, busiest <= 10", f"{m['rejected']}, {m['busiest_second']}", met])
        theirs = aws.get(name)
        for key, label, lower_is_better in (
            ("steady_per_s", "steady/s", False),
            ("permit_wait_p95", "read wait p95", True),
        ):
            ours_value = m.get(key) if key in m else m["extra"].get(key)
            aws_value = (theirs.get(key) if key in theirs else theirs["extra"].get(key)) if theirs else None
            if ours_value is None or aws_value is None or not SCENARIOS[name].workers:
                continue
            within = ours_value <= aws_value * 1.05 if lower_is_better else ours_value >= aws_value * 0.95
            checks.append([f"FC {name}: {label} within 5% of AWS", f"{ours_value} vs {aws_value}", within])
    return [[target, measured, "yes" if met else "NO"] for target, measured, met in checks]


def write_charts(results: Results, stamp: str, model: dict[str, Any]) -> list[Path]:
    from waba_local.bench.chart import crowd_chart, overview_chart, scenario_chart

    paths, rows = [], []
    for name in dict.fromkeys(s for s, _ in results):
        runs = [results[(name, v)][0] for v in VARIANTS if (name, v) in results]
        paths.append(RESULTS / f"bench-{stamp}-{name}.png")
        many = max(len(results[(name, v)]) for v in VARIANTS if (name, v) in results)
        scenario_chart(SCENARIOS[name].title + (f" (the first of {many} runs)" if many > 1 else ""), runs, paths[-1])
        rows.append((name, runs))
    paths.append(RESULTS / f"bench-{stamp}-overview.png")
    overview_chart(rows, paths[-1])
    crowds: dict[str, dict[str, float]] = {}
    for (name, variant), runs in results.items():
        if SCENARIOS[name].crowd and variant in ("shared", "race"):
            s = SCENARIOS[name]
            served = runs[0].extra.get("store_per_served_read")  # the bound: a refusal makes no call
            crowds.setdefault(variant, {})[str(s.readers)] = served or runs[0].store_requests_per_call
    if model:
        paths.append(RESULTS / f"bench-{stamp}-crowds.png")
        crowd_chart(model, crowds, paths[-1])
    return paths


def main() -> None:
    sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr]  # progress in order with the tables
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scenarios", default=",".join(SCENARIOS), help=f"some of {','.join(SCENARIOS)}")
    parser.add_argument("--variants", default=",".join(VARIANTS), help=f"some of {','.join(VARIANTS)}")
    parser.add_argument("--runs", type=int, default=1, help="runs per scenario and variant; figures are medians")
    parser.add_argument("--time-limit", type=float, default=300.0, help="seconds a worker may run")
    parser.add_argument("--aws-in-process", action="store_true", help="run moto's server in this process")
    parser.add_argument("--logs", type=Path, help="keep the instances' log streams (Powertools) in this directory")
    parser.add_argument("--no-cold-start", dest="cold_start", action="store_false", help="skip the cold-start figures")
    parser.add_argument("--no-fc", dest="fc", action="store_false", help="skip the FC worker's drain")
    parser.add_argument("--fc-items", type=int, default=300, help="refreshes in the FC worker's backlog")
    parser.add_argument("--no-crowd-model", dest="crowd_model", action="store_false", help="skip the in-process crowds")
    args = parser.parse_args()
    chosen, variants = args.scenarios.split(","), args.variants.split(",")
    if unknown := [n for n in chosen if n not in SCENARIOS] + [v for v in variants if v not in VARIANTS]:
        parser.error(f"no such scenario or variant: {', '.join(unknown)}")
    if idle := [n for n in chosen if not set(variants) & set(SCENARIOS[n].variants)]:
        runs_under = "; ".join(f"{n} runs under {','.join(SCENARIOS[n].variants)}" for n in idle)
        parser.error(f"nothing to run for {', '.join(idle)} under --variants {args.variants} ({runs_under})")
    results: Results = {}
    for name in chosen:
        scenario = SCENARIOS[name]
        heading(f"{scenario.title} ({scenario.describe()})")
        for variant in (v for v in variants if v in scenario.variants):
            runs = max(args.runs, scenario.runs if variant in SHARED else 1)  # the baselines vary less than they lose
            for run in range(runs):
                print(f"  {variant}, run {run + 1}/{runs}:")
                figures = one_run(scenario, variant, run, not args.aws_in_process, args.time_limit, args.logs)
                print(f"    {summary(figures)}")
                results.setdefault((name, variant), []).append(figures)
    report_fc = report_cold = report_model = ""
    model: dict[str, Any] = {}
    if args.crowd_model:
        from waba_local.bench import crowd as bench_crowd

        heading(
            f"The budget's line in process: up to {max(bench_crowd.MODEL_SIZES)} waiters at once, 5-10 ms a store request"
        )
        model = bench_crowd.measure()
        headers = ["algorithm", "waiters", "permits", "store req/call", "calls/s", "busiest s", "most places jumped"]
        report_model = table(headers, bench_crowd.model_table(model))
        print(report_model)
    if args.fc:
        from waba_local.bench import fc as bench_fc

        heading(f"Function Compute: {args.fc_items} refreshes drained by the FC worker (as s.yaml deploys it)")
        report_fc = bench_fc.measure(args.fc_items)
        print(report_fc)
    if args.cold_start:
        from waba_local.bench import cold_start, cold_start_fc

        heading("Cold start of the HTTP function, AWS then Function Compute (fresh processes, medians of 7)")
        report_cold = table(["what", "ms", "note"], cold_start.measure() + cold_start_fc.measure())
        print(report_cold)
    report(args, results, "\n\n".join(t for t in (report_model, report_fc, report_cold) if t), model)


def report(args: argparse.Namespace, results: Results, report_more: str, model: dict[str, Any]) -> None:
    rows = [(SCENARIOS[name], variant, median_run(runs)) for (name, variant), runs in results.items()]
    shared = {s.name: m for s, variant, m in rows if variant == "shared"}
    specifics = specifics_table(rows) if any(s.readers or s.hits or s.kill for s, _, _ in rows) else ""
    fc = {s.name: m for s, variant, m in rows if variant == "fc"}
    checks = acceptance(shared, fc) + fc_acceptance(fc, shared)
    targets = table(["target", "measured", "met"], checks) if checks else ""
    text = [t for t in (main_table(rows), specifics, targets) if t]
    heading(f"Results ({'medians of ' + str(args.runs) + ' runs' if args.runs > 1 else 'medians where runs > 1'})")
    print("\n\n".join(text))
    RESULTS.mkdir(exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    charts = write_charts(results, stamp, model)
    scenarios = "\n".join(f"- {s.name}: {s.title} ({s.describe()})" for s in dict.fromkeys(s for s, _, _ in rows))
    scenarios += "\n\n" + (bench_scenarios.__doc__ or "").split("\n\n", 1)[-1].strip()
    blocks = "\n\n".join(f"```\n{t}\n```" for t in [*text, *report_more.split("\n\n")] if t)
    images = "\n".join(f"![{p.stem}]({p.name})" for p in charts)
    (RESULTS / f"bench-{stamp}.md").write_text(f"# make bench, {stamp}\n\n{scenarios}\n\n{blocks}\n\n{images}\n")
    raw = {f"{n}/{v}": [asdict(r) for r in runs] for (n, v), runs in results.items()}
    (RESULTS / f"bench-{stamp}.json").write_text(json.dumps({"args": vars(args), "runs": raw}, indent=1))
    print(f"\nwritten to {RESULTS}/bench-{stamp}.md and .json; charts: {', '.join(str(p) for p in charts)}")
    if complete(args):
        write_docs(stamp, scenarios, blocks, charts)
        print(f"and to {DOCS}, with its charts in {DOCS.parent / 'images'}")


def complete(args: argparse.Namespace) -> bool:
    """Whether this run measured everything docs/benchmarks.md shows."""
    everything = set(args.scenarios.split(",")) == set(SCENARIOS) and set(args.variants.split(",")) == set(VARIANTS)
    return everything and args.fc and args.cold_start and args.crowd_model


def write_docs(stamp: str, scenarios: str, blocks: str, charts: list[Path]) -> None:
    """docs/benchmarks.md, the latest complete run's figures and charts: written here, never by hand."""
    images = DOCS.parent / "images"
    for old in images.glob("bench-*.png"):
        old.unlink()
    shown = []
    for chart in charts:
        name = chart.name.replace(f"bench-{stamp}-", "bench-")
        shutil.copyfile(chart, images / name)
        shown.append(f"![{name.removesuffix('.png')}](images/{name})")
    when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    DOCS.write_text(
        f"# Benchmarks\n\n<!-- written by `make bench` ({stamp}); edits here are lost at the next run -->\n\n"
        f"{DOCS_INTRO}\n\nThe latest complete run: {when}, on {os.cpu_count()} cores.\n\n## Scenarios\n\n{scenarios}\n\n"
        f"## Figures\n\n{blocks}\n\n## Charts\n\n" + "\n\n".join(shown) + "\n"
    )


if __name__ == "__main__":
    main()
