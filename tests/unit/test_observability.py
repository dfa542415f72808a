"""The lazy Tracer: with tracing off (POWERTOOLS_TRACE_DISABLED, or outside Lambda) it is never built."""

from __future__ import annotations

from typing import Any

import pytest

from waba_lookup.observability import LazyTracer


def test_with_tracing_off_a_handler_runs_as_it_is(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("POWERTOOLS_TRACE_DISABLED", "true")
    tracer = LazyTracer("waba-lookup")

    @tracer.capture_lambda_handler(capture_response=False)
    def handler(event: dict[str, Any], context: object) -> dict[str, Any]:
        tracer.put_annotation("cache", "HIT")
        return {"event": event, "context": context}

    assert handler({"a": 1}, "context") == {"event": {"a": 1}, "context": "context"}
    assert handler.__name__ == "handler"
    assert tracer.tracer is None


def test_outside_lambda_tracing_is_off_unless_asked_for(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("POWERTOOLS_TRACE_DISABLED", raising=False)
    monkeypatch.delenv("LAMBDA_TASK_ROOT", raising=False)
    assert LazyTracer("waba-lookup").tracer is None
