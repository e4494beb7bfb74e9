"""`LocalInference`: health, tokenize, trace and steer on a loaded source, in this process.

One engine per source is shared by every UI session and by the HTTP service. Each model call
holds `source.lock`, so concurrent requests never see each other's hooks; requests are checked
against the source (feature ids, context size) and `InferenceLimits` before any work starts.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch

from backend.errors import UserError, check_feature_id
from backend.inference.deadline import Deadline
from backend.inference.display import TokenRenderer
from backend.inference.errors import InferenceBusyError
from backend.inference.generation import GenerationRun, SamplingSettings, generate
from backend.inference.protocols import IndexFeatureLookup
from backend.inference.schemas import (
    FeatureTrace,
    GeneratedToken,
    Generation,
    HealthResponse,
    InferenceLimits,
    Prediction,
    SteeredFeatureSummary,
    SteeredVectorSummary,
    SteerRequest,
    SteerResponse,
    SteerVector,
    StrengthBasis,
    TokenizeRequest,
    TokenizeResponse,
    TokenLogprob,
    TokenProbability,
    TraceRequest,
    TraceResponse,
)
from backend.inference.steering import SaeHook, SteeringPlan
from backend.inference.tracing import PromptFeatureTable, direct_effects, run_trace_forward, top_features_per_token
from backend.sources import LoadedSource
from backend.versions import package_versions

PREDICTION_ALTERNATIVES = 5


@dataclass(frozen=True)
class DensityFilter:
    allowed_ids: list[int]
    densities: dict[int, float]  # feature id -> density, for the ids the index knows
    applied: bool
    hidden: int


@dataclass(frozen=True)
class ResolvedStrength:
    feature_id: int
    value: float  # after the index default and the multiplier; 0 when ablating
    basis: StrengthBasis


@dataclass(frozen=True)
class ResolvedVectors:
    added: torch.Tensor | None  # [d_in] sum of strength x vector
    directions: torch.Tensor | None  # [m, d_in] unit vectors, for the projections
    strengths: list[float]
    norms: list[float]


class LocalInference:
    def __init__(self, source: LoadedSource, stats: IndexFeatureLookup | None = None,
                 limits: InferenceLimits | None = None):
        self.source = source
        self.stats = stats
        self.limits = limits or InferenceLimits()
        self._renderer = TokenRenderer(source.tokenizer, source.special_token_ids())
        self._special_ids = torch.tensor(source.special_token_ids(), dtype=torch.long, device=source.device)

    # ---- health and tokens ---------------------------------------------------------------------

    def health(self) -> HealthResponse:
        return HealthResponse(
            **self.source.info().model_dump(), hook_layer=self.source.hook_layer, context_size=self.context_size,
            prepend_bos=self.source.prepend_bos, feature_stats=self.stats is not None, limits=self.limits,
            versions=package_versions())

    @property
    def context_size(self) -> int:
        return min(int(self.source.model.cfg.n_ctx), self.source.context_size)

    def tokenize(self, request: TokenizeRequest) -> TokenizeResponse:
        with self._model_turn(Deadline(self.limits.timeout_s)):
            ids = self._token_ids(request.prompt)
        return TokenizeResponse(tokens=self._renderer.render(ids), count=len(ids))

    def _token_ids(self, prompt: str) -> list[int]:
        # Call with the lock held: TransformerLens sets padding/truncation on the shared Rust
        # tokenizer, which fails ("Already borrowed") when two threads do it at once.
        tokens = self.source.model.to_tokens(prompt, prepend_bos=self.source.prepend_bos, truncate=False)
        return tokens[0].tolist()

    def _prompt_tensor(self, prompt: str, new_tokens: int = 0) -> torch.Tensor:
        if new_tokens >= self.context_size:
            raise UserError(f"max_new_tokens is {new_tokens} but the model's context holds {self.context_size} tokens, "
                            "prompt included; ask for fewer new tokens.")
        ids = self._token_ids(prompt)
        if not ids:
            raise UserError("The prompt produced no tokens; enter some text.")
        cap = min(self.limits.max_prompt_tokens, self.context_size - new_tokens)
        if len(ids) > cap:
            room = f" beside {new_tokens} new tokens" if new_tokens else ""
            raise UserError(f"The prompt has {len(ids)} tokens but at most {cap} fit{room} (the model's context is "
                            f"{self.context_size} tokens, the prompt cap {self.limits.max_prompt_tokens}); shorten it.")
        return torch.tensor([ids], dtype=torch.long, device=self.source.device)

    def _check_feature_ids(self, ids: list[int]) -> None:
        for feature_id in ids:
            check_feature_id(feature_id, self.source.d_sae)

    @contextmanager
    def _model_turn(self, deadline: Deadline) -> Iterator[None]:
        """Hold the source's lock (waiting at most the request's time budget) with autograd off."""
        if not self.source.lock.acquire(timeout=max(deadline.remaining(), 0.0)):
            raise InferenceBusyError("The model stayed busy with other requests for the whole "
                                     f"{deadline.seconds:g} s time limit; try again in a moment.")
        try:
            with torch.inference_mode():
                yield
        finally:
            self.source.lock.release()

    # ---- trace ---------------------------------------------------------------------------------

    def trace(self, request: TraceRequest) -> TraceResponse:
        deadline = Deadline(self.limits.timeout_s)
        self._check_feature_ids(request.feature_ids)
        with self._model_turn(deadline):
            tokens = self._prompt_tensor(request.prompt)
            length = tokens.shape[1]
            position = length - 1 if request.position is None else request.position
            if not -length <= position < length:
                raise UserError(f"Position {request.position} is outside the prompt's {length} tokens.")
            position %= length
            forward = run_trace_forward(self.source.model, self.source.sae, self.source.hook_name, tokens)
            probs = torch.softmax(forward.logits[position], dim=-1)
            top_probs, top_ids = torch.topk(probs, k=min(PREDICTION_ALTERNATIVES, probs.shape[0]))
            predicted = int(top_ids[0])
            effects = direct_effects(self.source.model, self.source.sae, self.source.hook_name, forward, position,
                                     predicted, request.top_n)
        ranked = torch.arange(length, device=tokens.device)
        if request.ignore_bos:
            ranked = ranked[~torch.isin(tokens[0], self._special_ids)]
        table = PromptFeatureTable.build(forward.feature_acts, ranked)
        density = self._density_filter(table.active_ids(), request.density_threshold)
        prediction = Prediction(
            position=position, token=self._renderer.render_one(predicted), probability=float(top_probs[0]),
            alternatives=[TokenProbability(token=self._renderer.render_one(i), probability=p)
                          for i, p in zip(top_ids.tolist(), top_probs.tolist(), strict=True)],
            direct_effects=effects)
        top_by_max = table.ranking(density.allowed_ids, "max", request.top_n, density.densities)
        traced = list(request.feature_ids)
        if request.trace_top_feature and top_by_max and top_by_max[0].feature_id not in traced:
            traced.append(top_by_max[0].feature_id)
        requested = forward.feature_acts[:, traced].T.tolist() if traced else []
        return TraceResponse(
            tokens=self._renderer.render(tokens[0].tolist()),
            token_features=top_features_per_token(forward.feature_acts, request.top_k),
            top_by_max=top_by_max,
            top_by_sum=table.ranking(density.allowed_ids, "sum", request.top_n, density.densities),
            density_filter_applied=density.applied, hidden_by_density=density.hidden,
            feature_traces=[FeatureTrace(feature_id=f, values=v) for f, v in zip(traced, requested, strict=True)],
            prediction=prediction)

    def _density_filter(self, ids: list[int], threshold: float | None) -> DensityFilter:
        if self.stats is None or not ids:
            return DensityFilter(ids, {}, applied=False, hidden=0)
        densities = self.stats.density(ids)
        if threshold is None:
            return DensityFilter(ids, densities, applied=False, hidden=0)
        allowed = [f for f in ids if densities.get(f, 0.0) <= threshold]
        return DensityFilter(allowed, densities, applied=True, hidden=len(ids) - len(allowed))

    # ---- steer ---------------------------------------------------------------------------------

    def steer(self, request: SteerRequest) -> SteerResponse:
        deadline = Deadline(self.limits.timeout_s)
        feature_ids = [f.feature_id for f in request.features]
        self._check_feature_ids(feature_ids)
        if request.max_new_tokens > self.limits.max_new_tokens:
            raise UserError(f"max_new_tokens is {request.max_new_tokens} but this service generates at most "
                            f"{self.limits.max_new_tokens} tokens.")
        strengths = self._resolve_strengths(request)
        vectors = self._vectors(request)
        settings = SamplingSettings(
            max_new_tokens=request.max_new_tokens, temperature=request.temperature, top_p=request.top_p,
            freq_penalty=request.freq_penalty, seed=request.seed, top_logprobs=request.top_logprobs,
            stop_token_ids=frozenset(self._stop_ids() if request.stop_at_eos else ()))
        with self._model_turn(deadline):
            tokens = self._prompt_tensor(request.prompt, new_tokens=request.max_new_tokens)
            plan = SteeringPlan(feature_ids, [s.value for s in strengths], request.mode, request.positions,
                                tokens.shape[1], vectors.added)
            default_run = self._generate(tokens, feature_ids, None, settings, deadline, vectors.directions) \
                if request.include_default else None
            steered_run = self._generate(tokens, feature_ids, plan, settings, deadline, vectors.directions)
        prompt_ids = tokens[0].tolist()
        return SteerResponse(
            prompt_tokens=self._renderer.render(prompt_ids), feature_ids=feature_ids, mode=request.mode,
            default=self._generation(prompt_ids, default_run) if default_run else None,
            steered=self._generation(prompt_ids, steered_run),
            summary=[_summary(i, strength, default_run, steered_run) for i, strength in enumerate(strengths)],
            vector_summary=[_vector_summary(i, vector, strength, norm, default_run, steered_run)
                            for i, (vector, strength, norm) in enumerate(zip(request.vectors, vectors.strengths,
                                                                             vectors.norms, strict=True))])

    def _vectors(self, request: SteerRequest) -> ResolvedVectors:
        """Raw vectors checked against the hook's width, summed (x strength) into one addition."""
        if not request.vectors:
            return ResolvedVectors(None, None, [], [])
        width = int(self.source.sae.W_dec.shape[1])
        for i, vector in enumerate(request.vectors):
            if len(vector.vector) != width:
                raise UserError(f"Vector {i + 1} has {len(vector.vector)} values but the hook {self.source.hook_name} "
                                f"is {width} wide; send one value per dimension.")
        matrix = torch.tensor([v.vector for v in request.vectors], dtype=torch.float32, device=self.source.device)
        norms = matrix.norm(dim=1)
        if bool((norms == 0).any()):
            raise UserError("A vector is all zeros, so it has no direction to steer along.")
        strengths = [v.strength * request.strength_multiplier for v in request.vectors]
        for i, value in enumerate(strengths):
            if abs(value) > self.limits.max_abs_strength:
                raise UserError(f"The strength of vector {i + 1} is {value:g}, beyond the "
                                f"±{self.limits.max_abs_strength:g} this service accepts.")
        added = (torch.tensor(strengths, device=matrix.device).unsqueeze(1) * matrix).sum(0)
        return ResolvedVectors(added, matrix / norms.unsqueeze(1), strengths, norms.tolist())

    def _generate(self, tokens: torch.Tensor, feature_ids: list[int], plan: SteeringPlan | None,
                  settings: SamplingSettings, deadline: Deadline,
                  directions: torch.Tensor | None = None) -> GenerationRun:
        hook = SaeHook(self.source.sae, feature_ids, plan, self._special_ids, directions)
        return generate(self.source.model, self.source.hook_name, self.source.hook_layer, tokens, hook, settings,
                        deadline)

    def _stop_ids(self) -> list[int]:
        eos = getattr(self.source.tokenizer, "eos_token_id", None)
        return [eos] if eos is not None else []

    def _resolve_strengths(self, request: SteerRequest) -> list[ResolvedStrength]:
        if request.mode == "ablate":
            return [ResolvedStrength(f.feature_id, 0.0, "request") for f in request.features]
        missing = [f.feature_id for f in request.features if f.strength is None]
        known = self.stats.max_activation(missing) if (missing and self.stats is not None) else {}
        # adding: the index's calibrated strength (the smallest that visibly evokes the feature) when it has one;
        # clamping sets the activation itself, so the max activation stays its natural default
        calibrated = self.stats.calibrated_strength(missing) \
            if (missing and request.mode == "add" and self.stats is not None) else {}
        strengths: list[ResolvedStrength] = []
        for feature in request.features:
            basis: StrengthBasis = "request" if feature.strength is not None else \
                "calibrated" if feature.feature_id in calibrated else "max_activation"
            base = {"request": feature.strength, "calibrated": calibrated.get(feature.feature_id),
                    "max_activation": known.get(feature.feature_id)}[basis]
            if base is None or (feature.strength is None and base <= 0):
                why = "no index is loaded" if self.stats is None else "the index has no positive max activation for it"
                raise UserError(f"Feature {feature.feature_id} has no strength and {why}; give an explicit strength.")
            value = base * request.strength_multiplier
            if abs(value) > self.limits.max_abs_strength:
                raise UserError(f"The strength of feature {feature.feature_id} is {value:g}, beyond the "
                                f"±{self.limits.max_abs_strength:g} this service accepts.")
            strengths.append(ResolvedStrength(feature.feature_id, value, basis))
        return strengths

    def _generation(self, prompt_ids: list[int], run: GenerationRun) -> Generation:
        generated_ids = [c.token_id for c in run.choices]
        # Render with the prompt so a character split across the boundary still reads right.
        rendered = self._renderer.render(prompt_ids + generated_ids)[len(prompt_ids):]
        tokens = [
            GeneratedToken(token=info, logprob=choice.logprob, feature_activations=acts,
                           feature_activations_after_edit=edited_acts,
                           alternatives=[TokenLogprob(token=self._renderer.render_one(i), logprob=lp)
                                         for i, lp in zip(choice.alternative_ids, choice.alternative_logprobs,
                                                          strict=True)])
            for info, choice, acts, edited_acts in zip(rendered, run.choices, run.feature_acts.tolist(),
                                                       run.feature_acts_after_edit.tolist(), strict=True)]
        text = "".join(t.text for t in rendered if not t.special)
        return Generation(text=text, tokens=tokens, stopped_at_eos=run.stopped_at_eos)


def _summary(index: int, strength: ResolvedStrength, default_run: GenerationRun | None,
             steered_run: GenerationRun) -> SteeredFeatureSummary:
    def mean_and_fraction(acts: torch.Tensor) -> tuple[float, float]:
        values = acts[:, index]
        if values.numel() == 0:
            return 0.0, 0.0
        return float(values.mean()), float((values > 0).float().mean())

    steered_mean, steered_fraction = mean_and_fraction(steered_run.feature_acts)
    default_mean, default_fraction = mean_and_fraction(default_run.feature_acts) if default_run else (None, None)
    return SteeredFeatureSummary(feature_id=strength.feature_id, strength=strength.value,
                                 strength_from_index=strength.basis != "request", strength_basis=strength.basis,
                                 mean_default=default_mean, mean_steered=steered_mean,
                                 mean_steered_after_edit=mean_and_fraction(steered_run.feature_acts_after_edit)[0],
                                 active_fraction_default=default_fraction, active_fraction_steered=steered_fraction)


def _vector_summary(index: int, vector: SteerVector, strength: float, norm: float, default_run: GenerationRun | None,
                    steered_run: GenerationRun) -> SteeredVectorSummary:
    def mean(run: GenerationRun) -> float:
        values = run.projections[:, index] if run.projections is not None else torch.zeros(0)
        return float(values.mean()) if values.numel() else 0.0

    return SteeredVectorSummary(name=vector.name or f"vector {index + 1}", strength=strength, norm=norm,
                                projection_default=mean(default_run) if default_run else None,
                                projection_steered=mean(steered_run))
