"""Cold start of the HTTP function, measured honestly: `make bench` prints it, as does

    python -m waba_local.bench.cold_start [--samples 7] [--importtime]

How a sample is taken: docs/architecture.md#the-benchmark.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import sysconfig
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from waba_local.bench.figures import percentile
from waba_local.stand_ins.local_aws import LocalAws

ROOT = Path(__file__).resolve().parents[3]
FUNCTION = ROOT / "functions" / "http_api"
LAYER = ROOT / "layers"
EVENT = ROOT / "events" / "http-v2-own.json"
REGION = "ap-southeast-1"
BUCKET = "waba-lookup-cold-start"
# What a cache HIT must never load (tracing off): the X-Ray SDK, boto3 and its s3transfer, the CAMS SDK, and
# botocore's modules and urllib3 (its one signed GET is the standard library's). Powertools probes `import botocore`
# for its user agent: the bare package, under a millisecond; its sessions, clients and models are what cost.
HEAVY = ("aws_xray_sdk", "boto3", "s3transfer", "alibabacloud", "darabonba", "botocore.", "urllib3")
MARK = "COLD-START "

PRELUDE = """
import sys
sys.path[:0] = {paths!r}
class Context:
    function_name, memory_limit_in_mb, aws_request_id = "waba-lookup-http", 512, "cold-start"
    invoked_function_arn = "arn:aws:lambda:{region}:123456789012:function:waba-lookup-http"
    def get_remaining_time_in_millis(self): return 20_000
import time
started, cpu_started = time.perf_counter(), time.process_time()
loaded_before = sorted(sys.modules)
"""

HIT = """
import app
imported = time.perf_counter()
import json
event = json.loads(sys.argv[1])
answer = app.lambda_handler(event, Context())
answered, cpu = time.perf_counter(), time.process_time() - cpu_started
modules = sorted(sys.modules)
print("FIRST-ANSWER", file=sys.stderr, flush=True)  # --importtime: what follows is not the cold start's
warm = []
for _ in range(int(sys.argv[2])):
    begun = time.perf_counter()
    app.lambda_handler(event, Context())
    warm.append(time.perf_counter() - begun)
looped = time.perf_counter() - answered
from waba_lookup.lookup import get_lookup
from waba_lookup.compose import get_refresh_queue
sdk_started = time.perf_counter()
import alibabacloud_cams20200606.client, alibabacloud_tea_openapi.utils_models, darabonba.runtime
sdk = time.perf_counter() - sdk_started
print({mark!r} + json.dumps({{
    "cold": answered - started, "cpu": cpu, "import": imported - started, "first": answered - imported,
    "status": answer["statusCode"], "cache": answer["headers"].get("X-Cache"), "modules": modules,
    "loaded_before": loaded_before, "warm": warm, "warm_seconds": looped, "sdk": sdk,
    "store_requests": get_lookup().budget.stats.store_requests, "queues": get_refresh_queue.cache_info().currsize,
}}))
"""

NAIVE = """
import boto3
import alibabacloud_cams20200606.client, alibabacloud_tea_openapi.utils_models, darabonba.runtime
import aws_lambda_powertools.event_handler
imported, cpu = time.perf_counter(), time.process_time() - cpu_started
import json
print({mark!r} + json.dumps({{"cold": imported - started, "cpu": cpu, "loaded_before": loaded_before}}))
"""


@contextmanager
def moto_server() -> Iterator[str]:
    """moto's server in a process of its own (local_aws, as the benchmark runs it); yields its endpoint."""
    local = LocalAws(own_process=True).start()
    try:
        yield local.endpoint
    finally:
        local.stop()


def deployed_env(endpoint: str) -> dict[str, str]:
    """The HTTP function's environment as the template and Lambda set it (tracing off), AWS pointed at moto."""
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "LANG": "C.UTF-8",
        "AWS_REGION": REGION,
        "AWS_DEFAULT_REGION": REGION,
        "AWS_EXECUTION_ENV": "AWS_Lambda_python3.12",
        "AWS_LAMBDA_FUNCTION_NAME": "waba-lookup-http",
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "512",
        "LAMBDA_TASK_ROOT": str(FUNCTION),
        "AWS_ACCESS_KEY_ID": "local",
        "AWS_SECRET_ACCESS_KEY": "local",
        "AWS_ENDPOINT_URL": endpoint,
        "POWERTOOLS_SERVICE_NAME": "waba-lookup",
        "POWERTOOLS_METRICS_NAMESPACE": "WabaLookup",
        "POWERTOOLS_LOG_LEVEL": "INFO",
        "POWERTOOLS_TRACE_DISABLED": "true",
        "CACHE_BUCKET": BUCKET,
        "CAMS_BUDGET_TABLE": "waba-lookup-budget",
        "REFRESH_QUEUE_URL": f"{endpoint}/123456789012/waba-refresh",
        "CAMS_CREDENTIALS_SECRET": f"arn:aws:secretsmanager:{REGION}:123456789012:secret:waba-cams-key",
    }


def seed(endpoint: str, env: dict[str, str]) -> Callable[[], None]:
    """The bucket; returns what writes a fresh entry for the account's own WABA (the sample event's), keyed as
    the function keys it."""
    import boto3

    from waba_lookup.cache import CacheEntry, WabaCache
    from waba_lookup.cache.s3 import S3ObjectStore
    from waba_lookup.customer import Customer
    from waba_lookup.settings import Settings

    s3 = boto3.client(
        "s3", endpoint_url=endpoint, region_name=REGION, aws_access_key_id="local", aws_secret_access_key="local"
    )
    s3.create_bucket(Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": REGION})
    settings = Settings.from_env(env)
    body = {"Code": "OK", "Success": True, "RequestId": "cold-start", "Data": {"Id": "1", "Name": "cold start"}}
    cache = WabaCache(S3ObjectStore(BUCKET, s3), settings.cache_prefix, settings.account_scope)

    def fresh_entry() -> None:
        if not cache.put(Customer(), CacheEntry(time.time(), body=body)):
            raise RuntimeError("the cache entry could not be written to moto's server")

    return fresh_entry


def run(script: str, env: dict[str, str], *args: str, options: tuple[str, ...] = ()) -> dict[str, Any]:
    """Run a sample script in a fresh, isolated interpreter; its result (and stderr, for --importtime)."""
    paths = [str(FUNCTION), str(LAYER), *dict.fromkeys(sysconfig.get_paths()[k] for k in ("purelib", "platlib"))]
    source = PRELUDE.format(paths=paths, region=REGION) + script.format(mark=MARK)
    command = [sys.executable, "-I", "-S", *options, "-c", source, *args]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300, check=False)
    lines = [line for line in done.stdout.splitlines() if line.startswith(MARK)]
    if done.returncode or not lines:
        raise RuntimeError(f"a cold-start sample failed:\n{done.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(lines[-1].removeprefix(MARK))
    result["stderr"] = done.stderr
    return result


def cold_hit(env: dict[str, str], warm: int = 0, options: tuple[str, ...] = ()) -> dict[str, Any]:
    """One fresh instance: its first answer (a cache HIT), then `warm` more."""
    result = run(HIT, env, EVENT.read_text(), str(warm), options=options)
    if (result["status"], result["cache"]) != (200, "HIT"):
        raise RuntimeError(f"the cold start answered {result['status']} {result['cache']}, not 200 HIT")
    return result


def tracing_on(env: dict[str, str], daemon_port: int) -> dict[str, str]:
    """The environment with XRayTracing=Active: Powertools' Tracer on, a sampled trace, the X-Ray daemon's port."""
    return {k: v for k, v in env.items() if k != "POWERTOOLS_TRACE_DISABLED"} | {
        "POWERTOOLS_TRACE_DISABLED": "false",
        "_X_AMZN_TRACE_ID": "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1",
        "AWS_XRAY_DAEMON_ADDRESS": f"127.0.0.1:{daemon_port}",
    }


def heavy_modules(modules: list[str], heavy: tuple[str, ...] = HEAVY) -> list[str]:
    """The top-level heavy packages among these module names."""
    return sorted({m.split(".")[0] for m in modules if m.startswith(heavy)})


def measure(samples: int = 7, warm: int = 200) -> list[list[object]]:
    """Rows: what, milliseconds (medians of `samples` fresh processes), note. Progress goes to stderr."""
    hits, naive, traced = [], [], []
    with moto_server() as endpoint, socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as daemon:
        env = deployed_env(endpoint)
        daemon.bind(("127.0.0.1", 0))  # an X-Ray daemon's port for the traced samples (nothing reads it)
        traced_env = tracing_on(env, daemon.getsockname()[1])
        fresh_entry = seed(endpoint, env)
        for i in range(samples):
            fresh_entry()  # each sample finds an entry well inside CACHE_TTL_SECONDS
            print(
                f"  cold start: sample {i + 1}/{samples} (a cold HIT, the naive baseline, a traced HIT)",
                file=sys.stderr,
            )
            kinds = [
                lambda: hits.append(cold_hit(env, warm)),
                lambda: naive.append(run(NAIVE, env)),
                lambda: traced.append(cold_hit(traced_env)),
            ]
            for take in kinds[i % 3 :] + kinds[: i % 3]:  # rotate, so drift in load falls on all alike
                take()
    ms = lambda rows, key: round(1000 * statistics.median(r[key] for r in rows))
    cold, baseline = ms(hits, "cold"), ms(naive, "cold")
    cpu_ratio = ms(hits, "cpu") / ms(naive, "cpu")
    heavy = ", ".join(heavy_modules([m for h in hits for m in h["modules"]])) or "none"
    rows: list[list[object]] = [
        ["cold HIT: first import to first answer", cold, f"deployed config (tracing off); heavy modules: {heavy}"],
        ["  importing the handler", ms(hits, "import"), "Powertools (Logger, Metrics, event handler), the library"],
        ["  its first request", ms(hits, "first"), "one signed GET from moto's server (no botocore)"],
        ["naive baseline: eager imports", baseline, "boto3 + CAMS SDK + Powertools event handler, imports only"],
        ["cold HIT / naive baseline", f"{cold / baseline:.2f}", f"a ratio, not ms (in CPU time: {cpu_ratio:.2f})"],
        ["  target: at most 0.5", "met" if cold <= baseline / 2 else "NOT MET", "issue 14's acceptance"],
        ["cold HIT with XRayTracing=Active", ms(traced, "cold"), "the X-Ray SDK, botocore and its S3 client added"],
        ["CAMS SDK import, added by the first MISS", ms(hits, "sdk"), "paid only when CAMS is called"],
    ]
    return rows + warm_rows(hits, warm, "", "S3 on moto's server")


def warm_rows(hits: list[dict[str, Any]], warm: int, label: str, store: str) -> list[list[object]]:
    """A warm HIT's p50 and p99 inside the handler and one instance's HITs per second, from the samples' warm loops."""
    latencies = sorted(t for h in hits for t in h["warm"])
    if not latencies:
        return []
    per_second = statistics.median(len(h["warm"]) / h["warm_seconds"] for h in hits)
    note = f"{len(latencies)} warm HITs, {warm} in each instance"
    return [
        [f"{label}warm HIT inside the handler, p50", round(1000 * statistics.median(latencies), 1), note],
        [f"{label}warm HIT inside the handler, p99", round(1000 * (percentile(latencies, 99) or 0), 1), note],
        [f"{label}HITs per second, one instance", round(per_second), f"hits/s, one at a time ({store})"],
    ]


def import_breakdown(top: int = 15) -> list[list[object]]:
    """Where a cold HIT's import time goes (`python -X importtime`, self times summed per package)."""
    with moto_server() as endpoint:
        env = deployed_env(endpoint)
        seed(endpoint, env)()
        result = cold_hit(env, options=("-X", "importtime"))
    totals: Counter[str] = Counter()
    for line in result["stderr"].partition("FIRST-ANSWER")[0].splitlines():
        fields = line.removeprefix("import time:").split("|")
        if not line.startswith("import time:") or not fields[0].strip().isdigit():
            continue
        name = fields[2].strip()
        parts = name.split(".")
        totals[".".join(parts[:2]) if parts[0] == "aws_lambda_powertools" else parts[0]] += int(fields[0])
    everything = sum(totals.values())
    rows: list[list[object]] = [[name, round(us / 1000, 1)] for name, us in totals.most_common(top)]
    return [*rows, ["(all imports)", round(everything / 1000, 1)]]


def main() -> None:
    from waba_local.dev.console import table

    parser = argparse.ArgumentParser(prog="python -m waba_local.bench.cold_start", description=__doc__.split("\n")[0])
    parser.add_argument("--samples", type=int, default=7, help="fresh processes per figure (medians)")
    parser.add_argument("--warm", type=int, default=200, help="warm HITs served by each sample")
    parser.add_argument("--importtime", action="store_true", help="also: where a cold HIT's import time goes")
    args = parser.parse_args()
    print(table(["what", "ms", "note"], measure(args.samples, args.warm)))
    if args.importtime:
        print()
        print(table(["package (import, self time)", "ms"], import_breakdown()))


if __name__ == "__main__":
    main()
