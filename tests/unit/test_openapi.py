"""openapi.yaml describes the API the code serves: the same routes, the statuses the code can answer, the limits."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from http_api import app

from waba_lookup.customer import CUST_SPACE_ID, ISV_CODE
from waba_lookup.refresh import MAX_ITEMS

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
        assert set(app.STATUS.values()) <= documented  # both reads take input to validate (?refresh)
    else:
        assert {202, 400, 502} <= documented
    assert 500 in documented  # the catch-all's answer


def test_the_documented_patterns_and_limits_are_the_codes() -> None:
    schema = SPEC["components"]["schemas"]["Customer"]["properties"]
    assert schema["CustSpaceId"]["pattern"] == f"^{CUST_SPACE_ID.pattern}$"
    assert schema["IsvCode"]["pattern"] == f"^{ISV_CODE.pattern}$"
    items = SPEC["paths"]["/waba/refresh"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert items["properties"]["Items"]["maxItems"] == MAX_ITEMS
