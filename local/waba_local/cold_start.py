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
from moto import mock_aws  # test tooling; it loads boto3, which the Lambda runtime also provides
with mock_aws():
    t0 = time.perf_counter()
    from waba_local.apigw import load_handler
    app = load_handler("http_api")  # Powertools (Logger, Metrics, Tracer + X-Ray SDK), the library
    imported = time.perf_counter() - t0
    import boto3
    from waba_local.apigw import http_event
    from waba_local.poller import LocalLambdaContext
    from waba_lookup.cache import CacheEntry, WabaCache
    from waba_lookup.customer import Customer
    from waba_lookup.settings import get_settings
    s3 = boto3.client("s3", region_name="ap-southeast-1")
    s3.create_bucket(Bucket="cold-start-cache", CreateBucketConfiguration={"LocationConstraint": "ap-southeast-1"})
    settings = get_settings()
    WabaCache("cold-start-cache", settings.cache_prefix, settings.account_scope, s3).put(
        Customer(), CacheEntry(time.time(), body={"Code": "OK", "Data": {"Id": "1"}})
    )
    t1 = time.perf_counter()
    response = app.lambda_handler(http_event("GET", "/waba"), LocalLambdaContext())
    first = time.perf_counter() - t1
    sdk = any(m.startswith("alibabacloud") for m in sys.modules)
    print(json.dumps({"import": imported, "first_hit": first, "cache": response["headers"]["X-Cache"], "sdk": sdk}))
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
        [
            "import the HTTP handler (Powertools, Tracer, library)",
            ms(hits, "import"),
            "every cold start (boto3 loaded)",
        ],
        ["first request, a cache HIT (S3 client, GET)", ms(hits, "first_hit"), "Alibaba SDK not imported"],
        ["Alibaba SDK import, added by a first MISS", ms(sdks, "sdk_import"), "paid only when CAMS is called"],
    ]
