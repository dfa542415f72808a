"""openapi.yaml describes the API the code serves: the same routes, the statuses the code can answer, the limits."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from http_api import app

from waba_lookup.customer import CUST_SPACE_ID, ISV_CODE
from waba_lookup.queue.message import MAX_ITEMS

SPEC: dict[str, Any] = yaml.safe_load((Path(__file__).resolve().parents[2] / "openapi.yaml").read_text())


def served_routes() -> set[tuple[str, str]]:
    routes = [*app.http_api._static_routes, *app.http_api._dynamic_routes]
    return {(route.method.lower(), route.openapi_path) for route in routes}


def test_the_spec_and_the_code_have_the_same_routes() -> None:
    described = {(method, path) for path, item in SPEC["paths"].items() for method in item}
    assert described == served_routes()


@pytest.mark.parametrize(("method", "path"), sorted(served_routes()))
def test_every_status_the_code_maps_is_documented_for_reads(method: str, path: str) -> None:
    documented = {int(code) for code in SPEC["paths"][path][method]["responses"]}
    if method == "get":
        assert set(app.STATUSES) <= documented  # both reads take input to validate (?refresh)
    else:
        assert {202, 400, 502} <= documented
    assert 500 in documented  # the catch-all's answer


def test_the_documented_patterns_and_limits_are_the_codes() -> None:
    schema = SPEC["components"]["schemas"]["Customer"]["properties"]
    assert schema["CustSpaceId"]["pattern"] == f"^{CUST_SPACE_ID.pattern}$"
    assert schema["IsvCode"]["pattern"] == f"^{ISV_CODE.pattern}$"
    items = SPEC["paths"]["/waba/refresh"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert items["properties"]["Items"]["maxItems"] == MAX_ITEMS


@pytest.mark.parametrize(
    ("method", "path", "status", "code"),
    [("GET", "/nowhere", 404, "NotFound"), ("DELETE", "/waba", 405, "MethodNotAllowed")],
)
def test_the_answers_to_other_routes_are_documented(
    method: str, path: str, status: int, code: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from waba_local.dev.apigw import http_event
    from waba_local.dev.poller import LocalLambdaContext

    monkeypatch.setenv("POWERTOOLS_TRACE_DISABLED", "true")
    answer = app.lambda_handler(http_event(method, path, {}), LocalLambdaContext(10_000))
    documented = SPEC["components"]["responses"]["NotFound" if status == 404 else "MethodNotAllowed"]
    assert answer["statusCode"] == status and json.loads(answer["body"])["Code"] == code
    error = SPEC["components"]["schemas"]["Error"]
    assert documented["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/Error"}
    assert set(json.loads(answer["body"])) == set(error["required"])
    assert all(name.lower() in {h.lower() for h in answer["headers"]} for name in documented.get("headers", {}))
