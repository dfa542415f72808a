"""Cold start of the HTTP function on Function Compute, measured as waba_local.bench.cold_start measures it on AWS:

    python -m waba_local.bench.cold_start_fc [--samples 7]

A sample is a fresh, isolated interpreter (`python -I -S`) that calls `app.handler` with an FC HTTP event, with the
environment FC sets (FC_*, the role's STS credentials) and OSS on the local stand-in, which runs in this process,
not the measured one. The naive baseline imports at once what the FC function may use: the CAMS SDK, the OSS SDK
and Powertools' event handler. Figures are medians over the samples, the two kinds alternated.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from waba_local.bench.cold_start import ROOT, heavy_modules, run, warm_rows
from waba_local.dev.fc_local import fc_environment
from waba_local.stand_ins.oss_stand_in import OssStandIn

EVENT = ROOT / "events" / "fc-http-own.json"
BUCKET = "waba-lookup-cold-start"
STS = ("STS.ColdStartRole", "cold-start-sts-secret", "cold-start-sts-token")
# What a cache HIT on FC must never load: the CAMS SDK and its runtime, the OSS SDK (its one signed GET is the
# standard library's) with requests and pycryptodome, boto3 and botocore's modules, the X-Ray SDK, the Tablestore SDK
# (and its numpy and aiohttp).
# (Powertools probes `import botocore` for its user agent: the bare package, under a millisecond, and absent from
# the FC layer, which has no botocore. Its exceptions, sessions and clients are what cost.)
HEAVY_ON_FC = (
    "alibabacloud_cams",
    "alibabacloud_tea",
    "darabonba",
    "alibabacloud_credentials",
    "alibabacloud_oss_v2",
    "requests",
    "Crypto",
    "urllib3",
    "boto3",
    "botocore.",
    "s3transfer",
    "aws_xray_sdk",
    "tablestore",
    "numpy",
    "aiohttp",
)

FC_HIT = """
import app
imported = time.perf_counter()
import json
class Function:
    name, handler, memory, timeout, qualifier = "waba-lookup-http", "app.handler", 512, 20, "LATEST"
class FcContext:
    request_id, function, region, account_id = "1-cold-start", Function(), "ap-southeast-1", "5123456789012345"
event = sys.argv[1].encode()
answer = app.handler(event, FcContext())
answered, cpu = time.perf_counter(), time.process_time() - cpu_started
modules = sorted(sys.modules)
warm = []
for _ in range(int(sys.argv[2])):
    begun = time.perf_counter()
    app.handler(event, FcContext())
    warm.append(time.perf_counter() - begun)
looped = time.perf_counter() - answered
print({mark!r} + json.dumps({{
    "cold": answered - started, "cpu": cpu, "import": imported - started, "first": answered - imported,
    "status": answer["statusCode"], "cache": answer["headers"].get("X-Cache"), "modules": modules,
    "loaded_before": loaded_before, "warm": warm, "warm_seconds": looped,
}}))
"""

NAIVE_FC = """
import alibabacloud_cams20200606.client, alibabacloud_tea_openapi.utils_models, darabonba.runtime
import alibabacloud_oss_v2
import aws_lambda_powertools.event_handler
imported, cpu = time.perf_counter(), time.process_time() - cpu_started
import json
print({mark!r} + json.dumps({{"cold": imported - started, "cpu": cpu, "loaded_before": loaded_before}}))
"""


@contextmanager
def local_oss() -> Iterator[tuple[dict[str, str], Callable[[], None], OssStandIn]]:
    """The OSS stand-in (accepting the role's STS credentials) with the bucket; yields the FC function's deployed
    environment pointed at it, what writes a fresh entry for the sample event's customer, and the stand-in."""
    from waba_lookup.cache import CacheEntry, WabaCache
    from waba_lookup.cache.oss import OssObjectStore
    from waba_lookup.credentials import AccessKey, StaticCredentials
    from waba_lookup.customer import Customer
    from waba_lookup.settings import Settings

    with OssStandIn(credentials={}) as stand_in:
        stand_in.add_sts(*STS, expires_at=time.time() + 3600)
        stand_in.create_bucket(BUCKET)
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "LANG": "C.UTF-8",
            **fc_environment(),
            "ALIBABA_CLOUD_ACCESS_KEY_ID": STS[0],
            "ALIBABA_CLOUD_ACCESS_KEY_SECRET": STS[1],
            "ALIBABA_CLOUD_SECURITY_TOKEN": STS[2],
            "OSS_ENDPOINT": stand_in.endpoint,
            "CACHE_BUCKET": BUCKET,
            "CAMS_QPS_BUDGET": "10",
            # the shared budget as s.yaml deploys it; a HIT never reaches it (nothing listens there)
            "CAMS_BUDGET_TABLE": "cams_budget",
            "TABLESTORE_ENDPOINT": "http://127.0.0.1:9",
            "TABLESTORE_INSTANCE": "waba-lookup",
            "POWERTOOLS_SERVICE_NAME": "waba-lookup",
            "POWERTOOLS_LOG_LEVEL": "INFO",
        }
        settings = Settings.from_env(env)
        store = OssObjectStore(BUCKET, stand_in.region, stand_in.endpoint, StaticCredentials(AccessKey(*STS)))
        cache = WabaCache(store, settings.cache_prefix, settings.account_scope)  # keyed as the function keys it
        body = {"Code": "OK", "Success": True, "RequestId": "cold-start", "Data": {"Id": "1", "Name": "cold start"}}

        def fresh_entry() -> None:
            if not cache.put(Customer(), CacheEntry(time.time(), body=body)):
                raise RuntimeError("the cache entry could not be written to the OSS stand-in")

        yield env, fresh_entry, stand_in


def cold_fc_hit(env: dict[str, str], warm: int = 0) -> dict[str, Any]:
    """One fresh FC instance: its first answer (a cache HIT), then `warm` more."""
    result = run(FC_HIT, env, EVENT.read_text(), str(warm))
    if (result["status"], result["cache"]) != (200, "HIT"):
        raise RuntimeError(f"the FC cold start answered {result['status']} {result['cache']}, not 200 HIT")
    return result


def measure(samples: int = 7, warm: int = 200) -> list[list[object]]:
    """Rows: what, milliseconds (medians of `samples` fresh processes), note. Progress goes to stderr."""
    hits, naive = [], []
    with local_oss() as (env, fresh_entry, _):
        for i in range(samples):
            fresh_entry()
            print(f"  FC cold start: sample {i + 1}/{samples} (a cold HIT and the naive baseline)", file=sys.stderr)
            pair = [lambda: hits.append(cold_fc_hit(env, warm)), lambda: naive.append(run(NAIVE_FC, env))]
            for take in pair if i % 2 == 0 else pair[::-1]:
                take()
    ms = lambda rows, key: round(1000 * statistics.median(r[key] for r in rows))
    cold, baseline = ms(hits, "cold"), ms(naive, "cold")
    heavy = ", ".join(heavy_modules([m for h in hits for m in h["modules"]], HEAVY_ON_FC)) or "none"
    rows: list[list[object]] = [
        ["FC cold HIT: first import to first answer", cold, f"deployed config; heavy modules: {heavy}"],
        ["  importing the handler", ms(hits, "import"), "Powertools (Logger, event handler), the library"],
        ["  its first request", ms(hits, "first"), "one signed GET from the OSS stand-in (no OSS SDK)"],
        ["FC naive baseline: eager imports", baseline, "CAMS SDK + OSS SDK + Powertools event handler"],
        ["FC cold HIT / naive baseline", f"{cold / baseline:.2f}", "a ratio, not ms"],
        ["  target: at most 0.5", "met" if cold <= baseline / 2 else "NOT MET", "issue 14's acceptance"],
    ]
    return rows + warm_rows(hits, warm, "FC ", "OSS on the stand-in")


def main() -> None:
    from waba_local.dev.console import table

    parser = argparse.ArgumentParser(
        prog="python -m waba_local.bench.cold_start_fc", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--samples", type=int, default=7, help="fresh processes per figure (medians)")
    parser.add_argument("--warm", type=int, default=200, help="warm HITs served by each sample")
    args = parser.parse_args()
    print(table(["what", "ms", "note"], measure(args.samples, args.warm)))


if __name__ == "__main__":
    main()
