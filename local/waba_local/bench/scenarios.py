"""What `make bench` measures: the scenarios, and the three budgets each one runs under.

Variants, in the same run:
- shared: the shared budget (CAMS_BUDGET_TABLE on the local DynamoDB), the deployed default on AWS;
- fc: the same scenario on Function Compute: the FC handlers, SMQ through the local EventBridge trigger, OSS, and
  the shared budget in Tablestore (the stand-in), the deployed default on FC;
- static: no table: each process keeps its own log (the in-memory store), sized as the old template's static
  shares. The worker had 6 calls/s over at
  most 2 instances (3 each): with more worker processes, those 6 are split over them (floor(6 / K): 2 each for 3,
  1 each for 5). The HTTP function had 4 calls/s over at most 4 instances (1 each): every HTTP process gets
  1 call/s, so 8 of them may call up to 8/s (the old reserved concurrency, which refused a fifth instance, is not
  modelled);
- naive: no budget at all (bench_instances.NoBudget);
- race: the shared budget as it was before the ordered line (bench_baseline.py), for the crowds.
"""

from __future__ import annotations

from dataclasses import dataclass

VARIANTS = ("shared", "fc", "static", "naive", "race")
SHARED = ("shared", "fc")  # the shared budget, on AWS and on FC
# the old template's static shares: (calls per second of the function, most instances)
STATIC_SHARES = {"worker": (6, 2), "http": (4, 4)}
COMMON_ENV = {
    "CAMS_QPS_BUDGET": "10",
    "CAMS_TIMEOUT_MS": "3000",
    "POWERTOOLS_LOG_LEVEL": "CRITICAL",
    "POWERTOOLS_METRICS_DISABLED": "true",
}


@dataclass(frozen=True)
class Scenario:
    name: str
    title: str
    workers: int = 0  # worker processes draining the backlog
    backlog: int = 0  # refreshes queued before they start
    batch: int = 30  # records per worker invocation (template.yaml's BatchSize)
    visibility: int = 60  # the queue's visibility timeout: longer than a batch at 1 call/s
    neighbour_rate: float = 0.0  # another client on the same CAMS account, calls per second
    neighbour_leaves_after: float = 0.0  # seconds after the start when it stops calling; 0: it stays
    readers: int = 0  # HTTP processes making interactive misses while the backlog drains
    reads_each: int = 0
    kill: bool = False  # SIGKILL a worker in the middle of a CAMS call and start a fresh one at once
    hits: int = 0  # concurrent cache hits
    hit_processes: int = 0  # processes that fork the hits' instances (one per hit)
    crowd: bool = False  # the HTTP instances all begin at once and read one customer after another, no gap
    variants: tuple[str, ...] = ("shared", "fc", "static", "naive")
    runs: int = 1  # at least this many runs, figures their medians: a neighbour's share varies by points a run

    @property
    def demand_seconds(self) -> float:
        """A crowd's calls at the whole budget: how long it takes at best."""
        return self.readers * self.reads_each / int(COMMON_ENV["CAMS_QPS_BUDGET"])

    def describe(self) -> str:
        parts = [f"{self.workers} worker(s), backlog {self.backlog}, batch {self.batch}"] if self.workers else []
        if self.readers:
            parts.append(f"{self.readers} HTTP instances x {self.reads_each} misses{', all at once' * self.crowd}")
        if self.neighbour_rate:
            parts.append(f"neighbour at {self.neighbour_rate:g}/s")
        if self.neighbour_leaves_after:
            parts.append(f"gone after {self.neighbour_leaves_after:g} s")
        if self.kill:
            parts.append("one worker SIGKILLed mid-call, replaced at once")
        if self.hits:
            parts.append(f"{self.hits} instances (processes), one hit each, all at once")
        return "; ".join(parts)


SCENARIOS = {
    s.name: s
    for s in (
        Scenario("alone", "one worker instance alone", workers=1, backlog=120),
        Scenario("k5", "K=5 workers draining 300", workers=5, backlog=300),
        Scenario(
            "reads", "8 HTTP instances' misses while 3 workers drain", workers=3, backlog=200, readers=8, reads_each=4
        ),
        Scenario(
            "neighbour", "K=5 workers beside a neighbour at 4/s", workers=5, backlog=150, neighbour_rate=4.0, runs=3
        ),
        Scenario(
            "leaves",
            "K=5 workers; a neighbour at 4/s for two minutes, then gone",
            workers=5,
            backlog=900,
            neighbour_rate=4.0,
            neighbour_leaves_after=120.0,
            runs=3,
            variants=("fc",),  # moto's SQS, one request at a time, times out with 900 messages queued
        ),
        Scenario(
            "killed", "a worker killed mid-call, replaced", workers=3, backlog=120, batch=10, visibility=10, kill=True
        ),
        Scenario("hits", "200 concurrent cache hits", hits=200, hit_processes=2),
        *(
            Scenario(
                f"crowd{n}x{k}",
                f"{n} HTTP instances miss {k} customers each, all at once",
                readers=n,
                reads_each=k,
                crowd=True,
                variants=("shared", "fc", "race"),
            )
            for n, k in ((12, 3), (24, 2), (48, 2))
        ),
    )
}


def variant_env(base: dict[str, str], variant: str, function: str, instances: int) -> dict[str, str]:
    """The environment of one `function` ("worker" or "http") process under `variant`, with `instances` of them."""
    env = base | COMMON_ENV
    if variant == "race":
        from waba_local.bench.baseline import race_library

        library = race_library()
        if library is None:
            raise RuntimeError("the race baseline needs this repository's git history")
        env["PYTHONPATH"] = f"{library}:{env.get('PYTHONPATH', '')}".rstrip(":")
        env["WABA_FUNCTIONS_DIR"] = str(library.parent / "functions")
        return env
    if variant not in SHARED:
        env.pop("CAMS_BUDGET_TABLE", None)
    if variant == "static":
        budget, cap = STATIC_SHARES[function]
        spread = max(cap, instances) if function == "worker" else cap
        env |= {"CAMS_QPS_BUDGET": str(budget), "CAMS_MAX_INSTANCES": str(spread)}
    elif variant in SHARED and function == "worker":
        env["CAMS_MAX_INSTANCES"] = str(instances)  # as WorkerMaxInstances caps them (sizes the log without a table)
    return env


def static_share(function: str, instances: int) -> int:
    """Calls per second one instance gets in the static baseline."""
    budget, cap = STATIC_SHARES[function]
    return budget // (max(cap, instances) if function == "worker" else cap)
