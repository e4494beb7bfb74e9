"""The inference API says what it enforces: a property-based fuzz (schemathesis + hypothesis) of the served
/openapi.json against a real uvicorn server on loopback serving the tiny source. Requests the schema allows
never get a 5xx, never a 422, and a 4xx only for one of the few refusals no JSON Schema can state (listed in
the schema's own endpoint text); requests the schema forbids never get a 5xx either. Bounded: 30 examples per
operation and mode, no per-example deadline (a steer call on two shared cores takes a while)."""

from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.generation.modes import GenerationMode

from backend.inference.openapi_bounds import SEMANTIC_REFUSALS
from backend.server import BackgroundServer, create_app

EXAMPLES = 30
OPERATIONS = ["GET /health", "POST /tokenize", "POST /trace", "POST /steer"]


@pytest.fixture(scope="module")
def served(engine):
    with BackgroundServer(create_app(engine)) as running:
        yield running.url


@pytest.fixture(scope="module")
def operations(served):
    schema = schemathesis.openapi.from_url(f"{served}/openapi.json")
    found = {}
    for result in schema.get_all_operations():
        operation = result.ok()
        found[f"{operation.method.upper()} {operation.path}"] = operation
    assert sorted(found) == sorted(OPERATIONS)
    return found


def test_the_schema_declares_the_optional_bearer_token_and_the_source_bounds(served, engine):
    import httpx

    spec = httpx.get(f"{served}/openapi.json").json()
    assert spec["components"]["securitySchemes"]["HTTPBearer"] == {
        "type": "http", "scheme": "bearer", "description": "The service's BACKEND_TOKEN."}
    assert all(op["security"] == [{"HTTPBearer": []}] for path in spec["paths"].values() for op in path.values())
    schemas, health = spec["components"]["schemas"], engine.health()
    assert schemas["TraceRequest"]["properties"]["prompt"]["minLength"] == 1
    assert schemas["TraceRequest"]["properties"]["feature_ids"]["items"]["maximum"] == health.d_sae - 1
    assert schemas["TraceRequest"]["properties"]["feature_ids"]["maxItems"] == 64
    vector = schemas["SteerVector"]["properties"]["vector"]
    assert vector["minItems"] == vector["maxItems"] == health.d_model


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
@pytest.mark.parametrize("name", OPERATIONS)
def test_fuzzed_requests_get_no_5xx_and_valid_ones_no_unexplained_refusal(operations, served, name, mode):
    operation = operations[name]
    seen: list[int] = []

    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(max_examples=EXAMPLES, deadline=None, database=None, derandomize=True,
              suppress_health_check=list(HealthCheck))
    def check(case) -> None:
        response = case.call(base_url=served, timeout=120)
        seen.append(response.status_code)
        assert response.status_code < 500, f"{name} answered {response.status_code}: {response.text[:300]}"
        if mode is GenerationMode.POSITIVE and response.status_code >= 400:
            detail = response.json()["detail"]
            assert response.status_code in (400, 422) and detail.startswith(SEMANTIC_REFUSALS), (
                f"{name} refused a request its schema allows ({response.status_code}: {detail}); body {case.body!r}")

    check()
    assert seen
