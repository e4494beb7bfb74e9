"""Request and response shapes of the inference API, shared by the engine, the HTTP service and its client.

These models are the documentation: the OpenAPI spec is generated from them, and static bounds
live here so that a bad request is refused before it reaches the model. Bounds that depend on the
loaded source (feature ids, context length) are checked by the engine against `InferenceLimits`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator, model_validator

from backend.versions import Versions

# Hard caps: beyond these a request is absurd for any source, so the schema refuses it outright.
MAX_PROMPT_CHARS = 20_000
MAX_ABS_STRENGTH = 1_000.0
MAX_TOP_K = 64
MAX_TOP_N = 200
MAX_TRACE_FEATURES = 64
MAX_STEER_FEATURES = 16
MAX_STEER_VECTORS = 4
MAX_VECTOR_WIDTH = 65_536
MAX_NEW_TOKENS_CAP = 512
MAX_TOP_LOGPROBS = 20

SteerMode = Literal["add", "clamp", "ablate"]
SteerPositions = Literal["all", "generated"]
StrengthBasis = Literal["request", "calibrated", "max_activation"]


def _non_empty(prompt: str) -> str:
    if prompt == "":
        raise ValueError("The prompt is empty; enter some text.")
    return prompt


Prompt = Annotated[
    str,
    # minLength in the schema, while the validator below keeps its own sentence for an empty prompt
    Field(max_length=MAX_PROMPT_CHARS, json_schema_extra={"minLength": 1},
          description=f"Text to run through the model (at most {MAX_PROMPT_CHARS} characters; the token cap is in "
                      "/health limits and in the request schema's x-max-prompt-tokens)."),
    AfterValidator(_non_empty),
]
FeatureId = Annotated[int, Field(ge=0, description="Index of an SAE feature (0 to d_sae - 1).")]


class _Request(BaseModel):
    # Unknown fields are refused so that a typo ("max_tokens") is not silently ignored.
    model_config = ConfigDict(extra="forbid")


class ErrorResponse(BaseModel):
    detail: str = Field(description="What was wrong with the request, in one sentence.")


# ---- shared pieces -------------------------------------------------------------------------------

class InferenceLimits(BaseModel, frozen=True):
    """Caps a deployment can tighten; the engine enforces them and /health reports them."""

    max_prompt_tokens: int = Field(256, ge=1, le=8192, description="Most prompt tokens (BOS included); the "
                                                                   "model's context size caps it further.")
    max_new_tokens: int = Field(128, ge=1, le=MAX_NEW_TOKENS_CAP, description="Most tokens one steer call generates.")
    max_abs_strength: float = Field(MAX_ABS_STRENGTH, gt=0, le=MAX_ABS_STRENGTH,
                                    description="Largest |strength × strength_multiplier| accepted.")
    timeout_s: float = Field(60.0, gt=0, le=3600, description="Longest one request may take, waiting included.")


class TokenInfo(BaseModel):
    id: int = Field(description="Vocabulary id.")
    text: str = Field(description="Readable text of the token; a multi-byte character is shown whole on the token "
                                  "that completes it.")
    special: bool = Field(False, description="BOS/EOS/pad or another special token.")
    partial: bool = Field(False, description="The token holds only part of a multi-byte character: in a sequence its "
                                             "text is empty (a later token shows the character); shown alone (a "
                                             "prediction or alternative) its bytes read as <0xNN>.")


class FeatureValue(BaseModel):
    feature_id: int
    value: float = Field(description="SAE activation (encoder output) of the feature.")


class HealthResponse(BaseModel):
    status: Literal["ok"] = "ok"
    source: str = Field(description="Source spec the service was started with.")
    model: str
    hook: str = Field(description="TransformerLens hook the SAE reads and steering writes.")
    hook_layer: int
    d_model: int
    d_sae: int
    n_layers: int
    context_size: int = Field(description="Most tokens (prompt + generated) the model accepts.")
    vocab_size: int
    architecture: str
    prepend_bos: bool
    device: str
    dtype: str
    feature_stats: bool = Field(description="An index is loaded, so default strengths and density filters work.")
    versions: Versions
    limits: InferenceLimits


# ---- tokenize ------------------------------------------------------------------------------------

class TokenizeRequest(_Request):
    prompt: Prompt


class TokenizeResponse(BaseModel):
    tokens: list[TokenInfo] = Field(description="The tokens the model sees, BOS included when the source uses it.")
    count: int


# ---- trace ---------------------------------------------------------------------------------------

class TraceRequest(_Request):
    prompt: Prompt
    top_k: int = Field(5, ge=1, le=MAX_TOP_K, description="Features listed per token (active ones only).")
    top_n: int = Field(20, ge=1, le=MAX_TOP_N, description="Features in each prompt-level ranking and in the "
                                                          "direct-effect list.")
    feature_ids: list[FeatureId] = Field(default_factory=list, max_length=MAX_TRACE_FEATURES,
                                         description="Features whose activation is returned at every token.")
    density_threshold: float | None = Field(None, gt=0, le=1, description="Hide features firing on more than this "
                                                                          "fraction of index tokens (needs an index).")
    ignore_bos: bool = Field(True, description="Leave BOS and other special tokens out of the prompt rankings.")
    position: int | None = Field(None, description="Token whose next-token prediction is explained (direct "
                                                   "effects); default the last one, negative counts from the end.")
    trace_top_feature: bool = Field(False, description="Also return, after `feature_ids`, the activations at every "
                                                      "token of the prompt's top feature by max activation (density "
                                                      "filter applied), so one call can shade the prompt by it.")


class TokenFeatures(BaseModel):
    position: int
    features: list[FeatureValue] = Field(description="Top active features at this token, strongest first.")


class PromptFeature(BaseModel):
    feature_id: int
    max_value: float = Field(description="Highest activation over the ranked tokens.")
    max_position: int = Field(description="Token position of that highest activation.")
    sum_value: float = Field(description="Sum of activations over the ranked tokens.")
    active_tokens: int = Field(description="Ranked tokens where the feature is non-zero.")
    density: float | None = Field(None, description="Fraction of index tokens where it fires, when known.")


class FeatureTrace(BaseModel):
    feature_id: int
    values: list[float] = Field(description="Activation at every prompt token.")


class DirectEffect(BaseModel):
    feature_id: int
    activation: float
    effect: float = Field(description="activation × (W_dec[f] through the frozen final norm) @ W_U[:, predicted]: the "
                                      "logit this feature adds to the predicted token through the residual stream.")


class TokenProbability(BaseModel):
    token: TokenInfo
    probability: float


class Prediction(BaseModel):
    position: int = Field(description="Token position whose output is predicted.")
    token: TokenInfo = Field(description="Most likely next token (argmax).")
    probability: float
    alternatives: list[TokenProbability] = Field(description="Most likely next tokens, with probabilities.")
    direct_effects: list[DirectEffect] = Field(description="Active features at the position, largest |effect| "
                                                           "first, at most top_n.")


class TraceResponse(BaseModel):
    tokens: list[TokenInfo]
    token_features: list[TokenFeatures]
    top_by_max: list[PromptFeature]
    top_by_sum: list[PromptFeature]
    density_filter_applied: bool = Field(description="The density threshold was applied (False without a threshold "
                                                     "or without an index).")
    hidden_by_density: int = Field(0, description="Active features left out because they are denser than the "
                                                  "threshold.")
    feature_traces: list[FeatureTrace] = Field(description="One per requested feature id, in order, then the top "
                                                           "feature when `trace_top_feature` added it.")
    prediction: Prediction


# ---- steer ---------------------------------------------------------------------------------------

class SteerFeature(_Request):
    feature_id: FeatureId
    strength: float | None = Field(None, ge=-MAX_ABS_STRENGTH, le=MAX_ABS_STRENGTH, allow_inf_nan=False,
                                   description="In activation units; None means the index's default: for 'add' its "
                                               "calibrated strength when it has one, else the feature's max "
                                               "activation. Ignored by 'ablate'.")


class SteerVector(_Request):
    vector: list[float] = Field(min_length=1, max_length=MAX_VECTOR_WIDTH,
                                description="A direction at the SAE's hook (one value per dimension, e.g. a concept "
                                            "vector); added as strength x vector at the steered positions in every "
                                            "mode.")
    strength: float = Field(1.0, ge=-MAX_ABS_STRENGTH, le=MAX_ABS_STRENGTH, allow_inf_nan=False,
                            description="Multiplies the vector as given (not normalised); 0 adds nothing but still "
                                        "reports the generated tokens' projection on it (a probe).")
    name: str = Field("", max_length=200, description="Shown in the summary.")

    @field_validator("vector")
    @classmethod
    def _finite(cls, vector: list[float]) -> list[float]:
        if not all(math.isfinite(v) for v in vector):
            raise ValueError("The vector holds a value that is not finite (NaN or infinity); send finite numbers.")
        return vector


class SteerRequest(_Request):
    prompt: Prompt
    features: list[SteerFeature] = Field(default_factory=list, max_length=MAX_STEER_FEATURES)
    vectors: list[SteerVector] = Field(default_factory=list, max_length=MAX_STEER_VECTORS,
                                       description="Raw directions to add besides (or instead of) features.")
    mode: SteerMode = Field("add", description="add: + strength·W_dec[f]; clamp: set the feature's activation to "
                                               "strength; ablate: set it to 0.")
    positions: SteerPositions = Field(
        "all", description="all: every prompt and generated token; generated: only the last prompt token and the "
                           "generated ones (the positions whose output is sampled). Special tokens are never steered.")
    strength_multiplier: float = Field(1.0, ge=-100, le=100, allow_inf_nan=False,
                                       description="Multiplies every strength (handy with default strengths).")
    max_new_tokens: int = Field(32, ge=1, le=MAX_NEW_TOKENS_CAP)
    temperature: float = Field(0.5, ge=0, le=5, allow_inf_nan=False, description="0 means greedy.")
    top_p: float = Field(1.0, gt=0, le=1, allow_inf_nan=False, description="Nucleus sampling mass.")
    freq_penalty: float = Field(1.0, ge=-2, le=5, allow_inf_nan=False,
                                description="Subtracted from a token's logit once per earlier occurrence in the prompt "
                                            "and the generated text (as TransformerLens does).")
    seed: int = Field(16, ge=0, le=2**32 - 1, description="Each run (default and steered) restarts from this seed.")
    top_logprobs: int = Field(5, ge=0, le=MAX_TOP_LOGPROBS, description="Alternatives listed per generated token.")
    include_default: bool = Field(True, description="Also generate without steering, for comparison.")
    stop_at_eos: bool = True

    @field_validator("features")
    @classmethod
    def _distinct_features(cls, features: list[SteerFeature]) -> list[SteerFeature]:
        seen: set[int] = set()
        for feature in features:
            if feature.feature_id in seen:
                raise ValueError(f"Feature {feature.feature_id} is listed twice; list each feature once.")
            seen.add(feature.feature_id)
        return features

    @model_validator(mode="after")
    def _something_to_steer(self) -> SteerRequest:
        if not self.features and not self.vectors:
            raise ValueError("Give at least one feature or vector to steer with.")
        return self


class TokenLogprob(BaseModel):
    token: TokenInfo
    logprob: float


class GeneratedToken(BaseModel):
    token: TokenInfo
    logprob: float = Field(description="Log-probability of this token under the model (before temperature, top-p "
                                       "and penalty).")
    alternatives: list[TokenLogprob] = Field(description="Most likely tokens at this step.")
    feature_activations: list[float] = Field(description="Activation of each steered feature (in request order) at "
                                                         "this token, encoded from the residual before the steering "
                                                         "edit: what the text itself evokes.")
    feature_activations_after_edit: list[float] = Field(
        description="The same features encoded from the residual after the steering edit: what the rest of the "
                    "model reads. Equal to feature_activations in the default run and at unsteered positions.")


class Generation(BaseModel):
    text: str = Field(description="The generated continuation (special tokens left out).")
    tokens: list[GeneratedToken]
    stopped_at_eos: bool


class SteeredFeatureSummary(BaseModel):
    feature_id: int
    strength: float = Field(description="Strength used (after defaults and the multiplier); 0 when ablating.")
    strength_from_index: bool = Field(description="The strength came from the index (calibrated or max activation).")
    strength_basis: StrengthBasis = Field("request", description="Where the strength came from: the request, the "
                                                                 "index's calibrated add strength, or the feature's "
                                                                 "max activation.")
    mean_default: float | None = Field(description="Mean activation over default generated tokens.")
    mean_steered: float = Field(description="Mean activation over steered generated tokens, before the edit (what "
                                            "the steered text evokes).")
    mean_steered_after_edit: float = Field(description="Mean activation over steered generated tokens, encoded "
                                                       "from the edited residual (what the model reads).")
    active_fraction_default: float | None
    active_fraction_steered: float


class SteeredVectorSummary(BaseModel):
    name: str
    strength: float = Field(description="Strength used (after the multiplier).")
    norm: float = Field(description="Norm of the vector as sent.")
    projection_default: float | None = Field(description="Mean projection of the default generated tokens' "
                                                         "activations (before any edit) on the unit vector.")
    projection_steered: float = Field(description="The same on the steered generated tokens: what the steered "
                                                  "text itself evokes along the vector.")


class SteerResponse(BaseModel):
    prompt_tokens: list[TokenInfo]
    feature_ids: list[int] = Field(description="Steered features, in request order.")
    mode: SteerMode
    default: Generation | None
    steered: Generation
    summary: list[SteeredFeatureSummary]
    vector_summary: list[SteeredVectorSummary] = Field(default_factory=list,
                                                       description="One per raw vector, in request order.")



def describe_validation_error(errors: Sequence[Mapping[str, Any]]) -> str:
    """One sentence for the first problem pydantic (or FastAPI) found in a request."""
    if not errors:
        return "The request is not valid."
    error = errors[0]
    field = ".".join(str(part) for part in error.get("loc", ()) if part != "body")
    kind, message = str(error.get("type", "")), str(error.get("msg", "is not valid"))
    if kind == "json_invalid":
        return "The request body is not valid JSON."
    if kind == "missing":
        return f"The field '{field}' is required." if field else "The request needs a JSON body."
    if kind == "extra_forbidden":
        return f"'{field}' is not a field of this request; see /openapi.json for the fields."
    if kind == "value_error":  # our own validators already speak in sentences
        return message.removeprefix("Value error, ")
    message = message[:1].lower() + message[1:].rstrip(".")
    if not field:
        return f"The request body is invalid: {message}."
    return f"Invalid '{field}': {message} (got {error.get('input')!r:.60})."
