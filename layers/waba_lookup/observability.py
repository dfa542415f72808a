"""The one Logger, Metrics and Tracer of the package (service name from POWERTOOLS_SERVICE_NAME)."""

from __future__ import annotations

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit, single_metric
from aws_lambda_powertools.metrics.functions import is_metrics_disabled

SERVICE = "waba-lookup"

logger = Logger(service=SERVICE)
metrics = Metrics(namespace="WabaLookup", service=SERVICE)
tracer = Tracer(service=SERVICE)


def count(name: str, value: int = 1) -> None:
    """Add one to a counter metric."""
    metrics.add_metric(name=name, unit=MetricUnit.Count, value=value)


def count_error(code: str) -> None:
    """Count a CAMS error under its code, as its own metric line so the dimension stays with it."""
    if is_metrics_disabled():  # single_metric flushes at once and does not check POWERTOOLS_METRICS_DISABLED
        return
    with single_metric(name="CamsErrors", unit=MetricUnit.Count, value=1, namespace="WabaLookup") as metric:
        metric.add_dimension(name="Code", value=code)
