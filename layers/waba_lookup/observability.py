"""The one Logger, Metrics and Tracer of the package: service name from POWERTOOLS_SERVICE_NAME (default
`waba-lookup`), metrics namespace from POWERTOOLS_METRICS_NAMESPACE (default `WabaLookup`), read by Powertools when
each is made, as it always does.

Logs are JSON lines on stdout on both platforms (Function Compute ships them to Simple Log Service). EMF metrics and
X-Ray are AWS's: on Function Compute nothing is counted and the tracer is never built (it is off outside Lambda).
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from functools import cached_property
from typing import Any, TypeVar, cast

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit, single_metric
from aws_lambda_powertools.metrics.functions import is_metrics_disabled

SERVICE, NAMESPACE = "waba-lookup", "WabaLookup"
# Tracer's default patches every module X-Ray knows, requests among them: a trace header on each CAMS and OSS call
TRACED_MODULES = ("botocore",)
Handler = TypeVar("Handler", bound=Callable[..., Any])


class LazyTracer:
    """Powertools' Tracer, built at the first invocation and only when tracing is on.

    Tracer's constructor imports the X-Ray SDK, and botocore's session with it, even with
    POWERTOOLS_TRACE_DISABLED=true: about a quarter of a cold start, for nothing. Off (Powertools' own rule:
    POWERTOOLS_TRACE_DISABLED, outside Lambda, SAM local), handlers run undecorated and annotations are dropped.
    """

    def __init__(self, service: str | None = None) -> None:
        self.service = service

    @cached_property
    def tracer(self) -> Tracer | None:
        """The real Tracer, or None when tracing is off (decided once per instance)."""
        if Tracer._is_tracer_disabled():
            return None
        return Tracer(
            service=self.service or _powertools("POWERTOOLS_SERVICE_NAME", SERVICE), patch_modules=TRACED_MODULES
        )

    def capture_lambda_handler(self, *, capture_response: bool | None = None) -> Callable[[Handler], Handler]:
        """Tracer.capture_lambda_handler, applied at the first invocation when tracing is on."""

        def decorate(handler: Handler) -> Handler:
            traced: Callable[..., Any] | None = None

            @functools.wraps(handler)
            def invoke(event: Any, context: Any) -> Any:
                nonlocal traced
                if self.tracer is None:
                    return handler(event, context)
                if traced is None:
                    traced = self.tracer.capture_lambda_handler(handler, capture_response=capture_response)
                return traced(event, context)

            return cast(Handler, invoke)

        return decorate

    @property
    def on(self) -> bool:
        return self.tracer is not None

    def put_annotation(self, key: str, value: str | bool) -> None:
        """Tracer.put_annotation when tracing is on."""
        if self.tracer is not None:
            self.tracer.put_annotation(key, value)


def _powertools(variable: str, default: str) -> str:
    """A Powertools variable's value, or this package's default (Powertools' own default is "service_undefined")."""
    return os.environ.get(variable) or default


logger = Logger(service=_powertools("POWERTOOLS_SERVICE_NAME", SERVICE))
metrics = Metrics(
    namespace=_powertools("POWERTOOLS_METRICS_NAMESPACE", NAMESPACE),
    service=_powertools("POWERTOOLS_SERVICE_NAME", SERVICE),
)
tracer = LazyTracer()


def counting() -> bool:
    """Whether metrics are recorded: not on Function Compute (no EMF there, and nothing would flush them), nor when
    Powertools' own POWERTOOLS_METRICS_DISABLED says so."""
    return "FC_FUNCTION_NAME" not in os.environ and not is_metrics_disabled()


def count(name: str, value: int = 1) -> None:
    """Add one to a counter metric."""
    if not counting():
        return
    metrics.add_metric(name=name, unit=MetricUnit.Count, value=value)


def count_error(code: str) -> None:
    """Count a CAMS error under its code, as its own metric line so the dimension stays with it."""
    if not counting():  # single_metric flushes at once and does not check POWERTOOLS_METRICS_DISABLED
        return
    namespace, service = metrics.provider.namespace, metrics.provider.service
    with single_metric(name="CamsErrors", unit=MetricUnit.Count, value=1, namespace=namespace) as metric:
        metric.add_dimension(name="Code", value=code)
        metric.add_dimension(name="service", value=str(service))  # the alarm reads (Code, service)
