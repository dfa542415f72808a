"""What happens in a run besides the drain: a neighbour on the CAMS account, a worker killed mid-call, and a burst
of cache hits."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

from waba_local.bench.figures import NEIGHBOUR_KEY, percentile
from waba_local.bench.fleet import Fleet
from waba_local.bench.scenarios import Scenario, variant_env
from waba_local.stand_ins import launch as stand_ins
from waba_local.stand_ins.emulator import expected_isv_code

SLOW_SECONDS = 2.5  # the emulator holds the killed call this long (under CAMS_TIMEOUT_MS)...
KILL_AFTER_SECONDS = 1.0  # ...and its sender is killed this long after sending it


def neighbour(endpoint: str, rate: float, stop: threading.Event, leaves_after: float = 0.0) -> None:
    """Another system on the same CAMS account, calling at a steady rate (for `leaves_after` seconds, if given)."""
    import alibabacloud_cams20200606.client  # noqa: F401  # imported before its first tick, not during it

    from waba_lookup.cams import CamsClient
    from waba_lookup.credentials import AccessKey, StaticCredentials
    from waba_lookup.errors import WabaLookupError
    from waba_lookup.settings import Settings

    client = CamsClient(
        Settings(cams_endpoint=endpoint, cams_protocol="http"), StaticCredentials(AccessKey(*NEIGHBOUR_KEY))
    )
    started = time.monotonic()
    sent = 0
    while not stop.is_set() and not (leaves_after and time.monotonic() - started >= leaves_after):
        delay = started + sent / rate - time.monotonic()
        if delay > 0:
            stop.wait(delay)
            continue
        sent = max(sent, int((time.monotonic() - started) * rate))  # a tick missed is skipped, never made up in a burst
        sent += 1
        try:
            client.query(None, None)
        except WabaLookupError:
            pass  # the emulator's log records what happened


def kill_and_replace(fleet: Fleet, announce: Path, replace: Any, extra: dict[str, Any], stop: threading.Event) -> None:
    """SIGKILL the worker that sends the slow call, KILL_AFTER_SECONDS after it sent it; start a fresh one."""
    while not announce.exists():
        if stop.wait(0.01):
            return
    pid = int(announce.read_text())
    sent = time.monotonic()
    time.sleep(KILL_AFTER_SECONDS)
    fleet.kill(pid)
    extra["killed_at"] = time.monotonic()
    replace()
    extra |= {"slow_call_sent": sent, "killed_pid": pid}


def hits(
    s: Scenario, variant: str, run: int, local: stand_ins.StandIns, fleet: Fleet, base: dict[str, str]
) -> dict[str, Any]:
    """s.hits concurrent reads of cached customers: every answer should be a HIT, with no store or CAMS request."""
    assert local.emulator is not None
    env = variant_env(base, variant, "http", s.hit_processes)
    customers = [f"cs-hit-{run}-{i:03d}" for i in range(s.hits)]
    prepopulate(local, env, customers)
    each, platform = s.hits // s.hit_processes, "fc" if local.oss is not None else "aws"
    for p in range(s.hit_processes):
        chunk = ",".join(customers[p * each : (p + 1) * each])
        fleet.spawn("hits", env, "--customers", chunk, "--go", str(fleet.go_file), "--platform", platform)
    fleet.wait_ready(s.hits)
    requests, cams_calls = local.budget_store_requests(), len(local.emulator.calls)
    fleet.go(delay=0.3)
    for process, _ in fleet.processes:
        process.wait()
    after, stats = local.budget_store_requests(), fleet.stats()
    answers = [r for st in stats for r in st["reads"]]
    latencies = [a["latency"] for a in answers]
    return {
        "hits": sum(1 for a in answers if a["status"] == 200 and a["cache"] == "HIT"),
        "answered": len(answers),
        "dynamodb_requests": after - requests,  # the budget store's (Tablestore's on FC), as its server counts
        "store_requests": sum(st["budget"]["store_requests"] for st in stats),
        "cams_calls": len(local.emulator.calls) - cams_calls,
        "latency_p50": round(percentile(latencies, 50) or 0.0, 3),
        "latency_p95": round(percentile(latencies, 95) or 0.0, 3),
    }


def prepopulate(local: stand_ins.StandIns, env: dict[str, str], customers: list[str]) -> None:
    """Fresh cache entries for these customers, under the key the HTTP instances will compute."""
    from waba_local.stand_ins.emulator import generated_waba
    from waba_local.stand_ins.emulator_protocol import new_request_id, success_body
    from waba_lookup.cache import CacheEntry, ObjectStore, WabaCache
    from waba_lookup.customer import Customer
    from waba_lookup.settings import Settings

    settings = Settings.from_env(env)
    assert settings.cache_bucket
    store: ObjectStore
    if local.oss is not None:
        from waba_lookup.cache.oss import OssObjectStore
        from waba_lookup.credentials import AccessKey, StaticCredentials

        role = StaticCredentials(AccessKey(*stand_ins.ROLE))
        store = OssObjectStore(settings.cache_bucket, local.oss.region, local.oss.endpoint, role)
    else:
        from waba_lookup.cache.s3 import S3ObjectStore

        store = S3ObjectStore(settings.cache_bucket, local.client("s3"))
    cache = WabaCache(store, settings.cache_prefix, settings.account_scope)
    for customer in customers:
        body = success_body(generated_waba(customer), new_request_id())
        cache.put(Customer(customer, expected_isv_code(customer)), CacheEntry(time.time(), body=body))
