"""Schemathesis against the API document the market builds and serves: generated requests
to a real market never cause a server error, and every reply matches the document."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from livecd.market_process import MarketProcess
from market.app import openapi_document

schema = schemathesis.openapi.from_dict(openapi_document())


@pytest.fixture
def auth(market: MarketProcess, tmp_path: Path) -> dict[str, str]:
    """Authorization headers of an account and of a sell order on `market`."""
    api_key = market.account("lab").api_key
    order = market.order("lab", tmp_path / "lab.cpu")
    basic = base64.b64encode(f"{order.order_id}:{order.secret}".encode()).decode()
    return {"account": f"Bearer {api_key}", "order": f"Basic {basic}"}


@schema.parametrize()
@settings(
    max_examples=10,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
def test_generated_requests_get_documented_replies(
    case: schemathesis.Case, market: MarketProcess, auth: dict[str, str]
) -> None:
    if isinstance(case.body, dict) and isinstance(case.body.get("wait"), int | float):
        # Long polls are tested elsewhere; here they would only make the run slow.
        case.body["wait"] = min(case.body["wait"], 0.1)
    if case.path.startswith("/v1/lease"):
        case.headers = {**(case.headers or {}), "Authorization": auth["order"]}
    elif case.path not in ("/v1/health", "/v1/openapi.json"):
        case.headers = {**(case.headers or {}), "Authorization": auth["account"]}
    case.call_and_validate(
        base_url=market.url,
        checks=[
            not_a_server_error,
            status_code_conformance,
            content_type_conformance,
            response_schema_conformance,
        ],
    )
