"""A cache hit must not pay for importing the Alibaba SDK (about 0.3 s of a cold start)."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

SCRIPT = textwrap.dedent(
    """
    import json, os, sys, time
    sys.path[:0] = [os.path.join(ROOT, "functions", "http_api"), os.path.join(ROOT, "tests")]
    from moto import mock_aws
    import boto3
    with mock_aws():
        s3 = boto3.client("s3", region_name="ap-southeast-1")
        s3.create_bucket(Bucket="cold-start-cache", CreateBucketConfiguration={"LocationConstraint": "ap-southeast-1"})
        from waba_lookup.cache import CacheEntry, WabaCache
        from waba_lookup.customer import Customer
        from waba_lookup.settings import get_settings
        settings = get_settings()
        cache = WabaCache("cold-start-cache", settings.cache_prefix, settings.account_scope, s3)
        cache.put(Customer(), CacheEntry(time.time(), body={"Code": "OK", "Data": {"Id": "1"}}))
        import app
        from conftest import FakeLambdaContext, load_event
        response = app.lambda_handler(load_event("http-v2-own"), FakeLambdaContext())
        loaded = sorted(m for m in sys.modules if m.startswith(("alibabacloud", "darabonba")))
        print(json.dumps({"status": response["statusCode"], "cache": response["headers"]["X-Cache"], "sdk": loaded}))
    """
)


def test_a_cache_hit_never_imports_the_sdk(tmp_path: Path) -> None:
    env = {
        "PATH": "/usr/bin:/bin",
        "CACHE_BUCKET": "cold-start-cache",
        "AWS_DEFAULT_REGION": "ap-southeast-1",
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "POWERTOOLS_TRACE_DISABLED": "true",
        "POWERTOOLS_LOG_LEVEL": "WARNING",
        "ALIBABA_CLOUD_ACCESS_KEY_ID": "LTAI5tLocalEmulatorKey",
        "ALIBABA_CLOUD_ACCESS_KEY_SECRET": "local-emulator-secret",
    }
    script = f"ROOT = {str(ROOT)!r}\n" + SCRIPT
    done = subprocess.run(
        [sys.executable, "-c", script], check=False, env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert (result["status"], result["cache"]) == (200, "HIT")
    assert result["sdk"] == []
