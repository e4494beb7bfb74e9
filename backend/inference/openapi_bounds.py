"""The served OpenAPI schema states the bounds that depend on the loaded source, not only the static ones.

Pydantic writes the static bounds (lengths, ranges, list sizes) from `schemas.py`. What only the running
service knows — feature ids below d_sae, vectors exactly d_model wide and not all zero, new tokens that
leave room for a prompt in the context, strengths within the deployment's cap — is written into the schema
here from `/health`'s answer, so a client (or a fuzzer) that follows the schema is not refused for them.
The few checks no JSON Schema can state are listed in `SEMANTIC_REFUSALS` and in each endpoint's text."""

from __future__ import annotations

from typing import Any

from backend.inference.schemas import HealthResponse

# refusals a JSON Schema cannot express, as the start of the one sentence the service answers with
SEMANTIC_REFUSALS = (
    "The prompt has",  # more tokens than fit: the cap is in tokens (x-max-prompt-tokens), the schema counts characters
    "The prompt produced no tokens",
    "Position ",  # trace position outside the prompt's tokens
    "The strength of",  # strength x strength_multiplier beyond the cap (a product of two fields)
    "Feature ",  # listed twice in one steer request; or no strength given and none in the index
)

SEMANTIC_TEXT = (" Also refused with 400 (422 for a repeated feature), one sentence each, since no schema can say it: "
                 "a prompt of more tokens "
                 "than `x-max-prompt-tokens` (with `max_new_tokens`, for steer), a `position` outside the prompt, "
                 "`strength` × `strength_multiplier` beyond the cap, a feature listed twice, a feature without a "
                 "strength when no index is loaded.")


def _set(schema: dict[str, Any], **bounds: Any) -> None:
    """Bounds on a property, on the non-null branch of an optional one."""
    for branch in schema.get("anyOf", [schema]):
        if branch.get("type") != "null":
            branch.update(bounds)


def add_source_bounds(openapi: dict[str, Any], health: HealthResponse) -> dict[str, Any]:
    schemas = openapi["components"]["schemas"]
    last_feature = health.d_sae - 1
    cap = health.limits.max_abs_strength
    bos = 1 if health.prepend_bos else 0
    prompt_tokens = min(health.limits.max_prompt_tokens, health.context_size)
    for name in ("TraceRequest", "SteerRequest", "TokenizeRequest"):
        schemas[name]["x-max-prompt-tokens"] = prompt_tokens
    schemas["TraceRequest"]["properties"]["feature_ids"]["items"]["maximum"] = last_feature
    feature = schemas["SteerFeature"]["properties"]
    feature["feature_id"]["maximum"] = last_feature
    _set(feature["strength"], minimum=-cap, maximum=cap)
    vector = schemas["SteerVector"]["properties"]
    vector["vector"].update(minItems=health.d_model, maxItems=health.d_model, contains={"not": {"const": 0}})
    _set(vector["strength"], minimum=-cap, maximum=cap)
    steer = schemas["SteerRequest"]
    # at least one prompt token (BOS included) must fit beside the new ones
    new_tokens = steer["properties"]["max_new_tokens"]
    new_tokens["maximum"] = min(health.limits.max_new_tokens, health.context_size - 1 - bos)
    if new_tokens.get("default", 0) > new_tokens["maximum"]:  # a small context: the default does not fit, so ask
        del new_tokens["default"]
        steer.setdefault("required", []).append("max_new_tokens")
    steer["anyOf"] = [{"required": ["features"], "properties": {"features": {"minItems": 1}}},
                      {"required": ["vectors"], "properties": {"vectors": {"minItems": 1}}}]
    for path in ("/trace", "/steer"):
        operation = openapi["paths"][path]["post"]
        operation["description"] = (operation.get("description") or "") + SEMANTIC_TEXT
    return openapi
