"""Powertools' own settings are honoured (service name, metrics namespace), with this package's defaults; the
tracer patches botocore only, so no trace header is added to CAMS or OSS requests. Each case runs in a new
interpreter: Powertools reads its variables when the Logger, Metrics and Tracer are made, as a new instance would."""

from __future__ import annotations

import json
import os
import subprocess
import sys

PROBE = """
import json
from waba_lookup.observability import count_error, logger, metrics
count_error("System.LimitControl")
print(json.dumps({"service": logger.service, "namespace": metrics.provider.namespace,
                  "metrics_service": metrics.provider.service}))
"""


def run(code: str, **env: str) -> list[str]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("POWERTOOLS_", "FC_", "AWS_LAMBDA"))}
    environ |= {"POWERTOOLS_TRACE_DISABLED": "true"} | env
    done = subprocess.run(
        [sys.executable, "-c", code], check=False, env=environ, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip().splitlines()


def test_the_defaults_are_the_package_s_names() -> None:
    *emf, names = run(PROBE)
    assert json.loads(names) == {"service": "waba-lookup", "namespace": "WabaLookup", "metrics_service": "waba-lookup"}
    [metric] = [json.loads(line) for line in emf]
    assert metric["_aws"]["CloudWatchMetrics"][0]["Namespace"] == "WabaLookup"
    assert (metric["Code"], metric["service"]) == ("System.LimitControl", "waba-lookup")  # as the alarm reads it


def test_powertools_service_name_and_metrics_namespace_are_honoured() -> None:
    *emf, names = run(PROBE, POWERTOOLS_SERVICE_NAME="waba-prod", POWERTOOLS_METRICS_NAMESPACE="Acme/Waba")
    assert json.loads(names) == {"service": "waba-prod", "namespace": "Acme/Waba", "metrics_service": "waba-prod"}
    [metric] = [json.loads(line) for line in emf]
    assert metric["_aws"]["CloudWatchMetrics"][0]["Namespace"] == "Acme/Waba"  # CamsErrors too, not a fixed name
    assert metric["service"] == "waba-prod"


def test_the_tracer_patches_botocore_only() -> None:
    code = """
import json
from aws_xray_sdk.core import patcher
from waba_lookup.observability import tracer
assert tracer.tracer is not None
print(json.dumps({"patched": sorted(patcher._PATCHED_MODULES), "service": tracer.tracer.service}))
"""
    [line] = run(
        code, POWERTOOLS_TRACE_DISABLED="false", LAMBDA_TASK_ROOT="/var/task", AWS_XRAY_CONTEXT_MISSING="IGNORE_ERROR"
    )
    assert json.loads(line) == {"patched": ["botocore"], "service": "waba-lookup"}
