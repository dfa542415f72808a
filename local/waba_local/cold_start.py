"""Cold start of the HTTP function, measured in fresh processes: a cache HIT, and the SDK import a MISS adds.

Run by `make bench`; each figure is the median of several fresh interpreters.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys

HIT = """
import json, os, sys, time
t0 = time.perf_counter()
from moto import mock_aws
with mock_aws():
    import boto3
    s3 = boto3.client("s3", region_name="ap-southeast-1")
    s3.create_bucket(Bucket="cold-start-cache", CreateBucketConfiguration={"LocationConstraint": "ap-southeast-1"})
    from waba_lookup.cache import CacheEntry, WabaCache
    from waba_lookup.customer import Customer
    from waba_lookup.settings import get_settings
    settings = get_settings()
    WabaCache("cold-start-cache", settings.cache_prefix, settings.account_scope, s3).put(
        Customer(), CacheEntry(time.time(), body={"Code": "OK", "Data": {"Id": "1"}})
    )
    setup = time.perf_counter() - t0
    t1 = time.perf_counter()
    from waba_local.apigw import http_event, load_handler
    from waba_local.poller import LocalLambdaContext
    app = load_handler("http_api")
    imported = time.perf_counter() - t1
    response = app.lambda_handler(http_event("GET", "/waba"), LocalLambdaContext())
    total = time.perf_counter() - t1
    sdk = any(m.startswith("alibabacloud") for m in sys.modules)
    print(json.dumps({"import": imported, "first_hit": total, "cache": response["headers"]["X-Cache"], "sdk": sdk}))
"""

SDK = """
import json, time
t0 = time.perf_counter()
import alibabacloud_cams20200606.client, alibabacloud_tea_openapi.utils_models, darabonba.runtime  # noqa
print(json.dumps({"sdk_import": time.perf_counter() - t0}))
"""

ENV = {
    "CACHE_BUCKET": "cold-start-cache",
    "AWS_DEFAULT_REGION": "ap-southeast-1",
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "POWERTOOLS_TRACE_DISABLED": "true",
    "POWERTOOLS_METRICS_DISABLED": "true",
    "POWERTOOLS_LOG_LEVEL": "CRITICAL",
    "PATH": "/usr/bin:/bin",
}


def sample(script: str) -> dict[str, object]:
    done = subprocess.run(
        [sys.executable, "-c", script], env=ENV, capture_output=True, text=True, check=True, timeout=120
    )
    result: dict[str, object] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def measure(times: int = 5) -> list[list[object]]:
    """Rows: what, median milliseconds, note."""
    hits = [sample(HIT) for _ in range(times)]
    sdks = [sample(SDK) for _ in range(times)]
    assert all(h["cache"] == "HIT" and h["sdk"] is False for h in hits), "a cache hit imported the SDK"
    ms = lambda rows, key: round(1000 * statistics.median(float(r[key]) for r in rows))  # type: ignore[arg-type]
    return [
        ["import the HTTP handler (Powertools, library)", ms(hits, "import"), "every cold start"],
        ["import + first request, a cache HIT", ms(hits, "first_hit"), "Alibaba SDK not imported"],
        ["Alibaba SDK import, added by a first MISS", ms(sdks, "sdk_import"), "paid only when CAMS is called"],
    ]
