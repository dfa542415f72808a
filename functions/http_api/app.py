"""HTTP reads of WABAs, one router for every trigger: API Gateway HTTP API (v2), REST API (v1) and function URL
events on AWS (`lambda_handler`), and Function Compute's HTTP trigger (`handler`)."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable
from typing import Any, NamedTuple

from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, APIGatewayRestResolver, Response
from aws_lambda_powertools.event_handler.api_gateway import Router
from aws_lambda_powertools.event_handler.exceptions import NotFoundError
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.typing import LambdaContext

from waba_lookup.compose import get_refresh_queue
from waba_lookup.customer import Customer
from waba_lookup.errors import (
    BudgetUnavailable,
    ConfigurationError,
    Denied,
    InvalidRequest,
    Throttled,
    UpstreamFailed,
    UpstreamTimeout,
    WabaLookupError,
)
from waba_lookup.lookup import deadline_within, get_lookup
from waba_lookup.observability import count, logger, metrics, tracer
from waba_lookup.platforms import fc
from waba_lookup.queue.message import parse_refresh_request

router = Router()
# one Cache-Control directive and its comma: a token, optionally `=token` or `="quoted string"` (RFC 9111 5.2)
CACHE_DIRECTIVE = re.compile(r'\s*(?:([^\s=,"]+)\s*(?:=\s*(?:"(?:[^"\\]|\\.)*"|[^,"]*))?)?\s*(?:,|$)')
# the statuses a read may answer with, from the errors themselves (for the docs' and the dashboards' tests)
STATUSES = frozenset(
    cls.status for cls in (InvalidRequest, Denied, Throttled, BudgetUnavailable, UpstreamFailed, UpstreamTimeout)
)


def own_waba() -> Response[str]:
    return _answer(Customer())


def sub_customer_waba(custSpaceId: str) -> Response[str]:
    if custSpaceId == "refresh":
        raise NotFoundError  # GET /waba/refresh: the refresh route's path, with a method it does not take (405)
    return _answer(Customer.parse(custSpaceId, router.current_event.headers.get("X-Isv-Code")))


def bulk_refresh() -> Response[str]:
    event = router.current_event
    customers = parse_refresh_request(event.body, event.is_base64_encoded)
    deadline = deadline_within(router.lambda_context.get_remaining_time_in_millis())
    not_queued = get_refresh_queue().send(customers, deadline)
    answer: dict[str, object] = {"Queued": len(customers) - len(not_queued)}
    if not_queued:  # a retry of just these positions of Items queues each item once
        logger.warning("some refreshes could not be queued", extra={"not_queued": len(not_queued)})
        answer["NotQueued"] = not_queued
    return _json(202, answer)


class Route(NamedTuple):  # not a dataclass: `make serve` and the bench load this file outside sys.modules
    method: str
    rule: str  # Powertools' rule: <name> is one path segment
    handler: Callable[..., Response[str]]

    def matches(self, path: str) -> bool:
        return re.fullmatch(re.sub(r"<\w+>", "[^/]+", self.rule), path) is not None


# every route, once: registered with the router below, and read for the Allow header of a 405
ROUTES = (
    Route("GET", "/waba", own_waba),
    Route("GET", "/waba/<custSpaceId>", sub_customer_waba),
    Route("POST", "/waba/refresh", bulk_refresh),
)
for route in ROUTES:
    router.route(route.rule, route.method)(route.handler)


def allowed_methods(path: str) -> list[str]:
    """The methods some route takes at `path`; a literal path wins over a pattern, as in openapi.yaml (GET
    /waba/refresh is the refresh route's path with a method it does not take, not a customer called refresh)."""
    matching = [r for r in ROUTES if r.matches(path)]
    literal = [r for r in matching if "<" not in r.rule]
    return sorted({r.method for r in literal or matching})


def _answer(customer: Customer) -> Response[str]:
    event = router.current_event
    refresh = _refresh_asked(event.get_query_string_value("refresh"), event.headers.get("Cache-Control"))
    deadline = deadline_within(router.lambda_context.get_remaining_time_in_millis())
    lookup = get_lookup()
    answer = lookup.read(customer, deadline, refresh=refresh, wait_seconds=lookup.settings.http_permit_wait_seconds)
    tracer.put_annotation("cache", answer.cache)
    logger.info("answered", extra={"status": 200, "cache": answer.cache})  # the dashboards' requests by X-Cache
    return _json(200, answer.body, {"X-Cache": answer.cache, "Age": str(answer.age)})


@router.exception_handler(WabaLookupError)
def lookup_failed(error: WabaLookupError) -> Response[str]:
    status = error.status
    headers = {"Retry-After": str(round(error.retry_after + 0.49))} if isinstance(error, Throttled) else {}
    logger.info("lookup failed", extra={"status": status, "code": error.code})
    count(f"Http{status}")
    message = error.message
    if isinstance(error, Denied) and _sub_customer_without_isv_code():
        message += " (the request had no X-Isv-Code header: a sub-customer's WABA is read with its ISV code)"
    return _error(status, error.code, message, error.request_id, headers)


@router.exception_handler(ConfigurationError)
def misconfigured(error: ConfigurationError) -> Response[str]:
    logger.error("configuration error", extra={"reason": str(error)})  # names the variable; not for callers
    count("ConfigurationErrors")
    return _error(500, "ConfigurationError", "the function is misconfigured; its logs say how", None)


@router.exception_handler(NotFoundError)
def no_route(_: NotFoundError) -> Response[str]:
    """Powertools raises NotFoundError for an unknown path and for a known path with another method."""
    event = router.current_event
    allowed = allowed_methods(event.path)
    if allowed:
        headers = {"Allow": ", ".join(allowed)}
        return _error(405, "MethodNotAllowed", f"{event.http_method} is not allowed here", None, headers)
    return _error(404, "NotFound", "no such route", None)


@router.exception_handler(Exception)
def unexpected(error: Exception) -> Response[str]:
    """Any other failure: our 500, never a platform page or a traceback (the logs have it)."""
    logger.exception("unexpected failure", extra={"error_type": type(error).__name__})
    count("Http500")
    return _error(500, "InternalError", "the request failed unexpectedly; the function's logs say why", None)


def _sub_customer_without_isv_code() -> bool:
    event = router.current_event
    return event.path.startswith("/waba/") and not event.headers.get("X-Isv-Code")


def _refresh_asked(refresh: str | None, cache_control: str | None) -> bool:
    """`?refresh=true|false` (nothing else) or a `no-cache` directive in Cache-Control asks to skip a fresh entry."""
    if refresh not in (None, "true", "false"):
        raise InvalidRequest("refresh must be true or false")
    return refresh == "true" or "no-cache" in cache_directives(cache_control or "")


def cache_directives(value: str) -> set[str]:
    """The directive names of a Cache-Control value, lower case (RFC 9111 5.2): `no-cache` in `max-age=0, no-cache`,
    not in `private="no-cache"` or `x-no-cache-hint`. Whatever follows a malformed directive is ignored."""
    names, at = set(), 0
    while at < len(value) and (found := CACHE_DIRECTIVE.match(value, at)) and found.end() > at:
        names.add((found.group(1) or "").lower())
        at = found.end()
    return names - {""}


def _error(
    status: int, code: str, message: str, request_id: str | None, headers: dict[str, str] | None = None
) -> Response[str]:
    request_id = request_id or router.current_event.request_context.request_id
    return _json(status, {"Code": code, "Message": message, "RequestId": request_id}, headers)


def _json(status: int, body: object, headers: dict[str, str] | None = None) -> Response[str]:
    return Response(status, "application/json", json.dumps(body, ensure_ascii=False), headers or {})


http_api, rest_api = APIGatewayHttpResolver(), APIGatewayRestResolver()
http_api.include_router(router)
rest_api.include_router(router)


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_HTTP, log_event=False)
@tracer.capture_lambda_handler(capture_response=False)
@metrics.log_metrics
def lambda_handler(event: dict[str, object], context: LambdaContext) -> dict[str, object]:
    app = http_api if event.get("version") == "2.0" else rest_api
    return app.resolve(event, context)


def handler(event: bytes, context: Any) -> dict[str, Any]:
    """Function Compute's HTTP trigger: its event through the same router, as an API Gateway v2 event."""
    started = time.monotonic()
    return fc.http_answer(_resolve_fc(fc.http_event(event), fc.begin_invocation(context, started)))


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_HTTP, log_event=False)
def _resolve_fc(event: dict[str, Any], context: fc.FcContext) -> dict[str, Any]:
    return http_api.resolve(event, context)  # type: ignore[arg-type]  # FcContext reads as a LambdaContext
