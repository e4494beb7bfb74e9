"""Steer side by side with a concept vector, its top-k SAE reconstruction and its single best feature, through
the ordinary /steer request (in-process engine or HTTP service alike).

The three directions are added with the same norm (strength x |v|), so they differ only in direction. Each
arm's measured effect is the mean projection of the generated tokens' activations at the hook (before any
edit: what the text itself carries) on the unit concept vector, default vs steered. The reconstruction and
feature arms read that projection through a second vector of strength 0, which /steer measures but never adds.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch

from backend.concepts import ConceptInputError, Decomposition
from backend.inference.protocols import Inference
from backend.inference.schemas import SteerFeature, SteerRequest, SteerResponse, SteerVector

ArmKind = Literal["raw vector", "SAE reconstruction", "best feature"]
PROBE_NAME = "concept (measured)"


@dataclass(frozen=True)
class SideBySideSettings:
    prompt: str
    strength: float = 4.0  # multiplies the concept vector as computed
    k: int = 5  # features in the reconstruction
    max_new_tokens: int = 24
    temperature: float = 0.5
    seed: int = 16
    positions: Literal["all", "generated"] = "all"


@dataclass(frozen=True)
class SteerArm:
    kind: ArmKind
    description: str
    added_norm: float  # |what is added| at every steered position
    projection_default: float
    projection_steered: float
    response: SteerResponse

    @property
    def effect(self) -> float:
        """How far the steered text moved along the concept, in activation units."""
        return self.projection_steered - self.projection_default


@dataclass(frozen=True)
class SideBySide:
    default_text: str
    arms: list[SteerArm]
    notes: list[str]  # arms that could not run, and why


def check_strength(strength: float) -> float:
    if not isinstance(strength, int | float) or not math.isfinite(strength):
        raise ConceptInputError(f"The steering strength is {strength}; give a finite number.")
    return float(strength)


def steer_side_by_side(inference: Inference, vector: torch.Tensor, decomposition: Decomposition,
                       reconstruction: torch.Tensor, settings: SideBySideSettings) -> SideBySide:
    """`reconstruction`: the SAE's top-k reconstruction of `vector` (backend.concepts.sae_reconstruction)."""
    strength = check_strength(settings.strength)
    v = vector.float().cpu()
    norm = float(v.norm())
    target = abs(strength) * norm
    common = dict(prompt=settings.prompt, max_new_tokens=settings.max_new_tokens, temperature=settings.temperature,
                  seed=settings.seed, positions=settings.positions, stop_at_eos=False, top_logprobs=0)
    probe = SteerVector(vector=v.tolist(), strength=0.0, name=PROBE_NAME)
    raw = inference.steer(SteerRequest(vectors=[SteerVector(vector=v.tolist(), strength=strength, name="raw")],
                                       include_default=True, **common))
    summary = raw.vector_summary[0]
    default = summary.projection_default or 0.0
    arms = [SteerArm("raw vector", f"the concept vector x {strength:g}", target, default,
                     summary.projection_steered, raw)]
    notes: list[str] = []
    r_norm = float(reconstruction.norm())
    if r_norm > 0:
        scaled = reconstruction.float().cpu() * (norm / r_norm)
        res = inference.steer(SteerRequest(vectors=[SteerVector(vector=scaled.tolist(), strength=strength,
                                                                name=f"top-{settings.k}"), probe],
                                           include_default=False, **common))
        arms.append(SteerArm("SAE reconstruction", f"top {settings.k} features of the SAE's encoding, rescaled to "
                             f"the vector's norm (natural norm ratio {r_norm / norm:.2f})", target, default,
                             res.vector_summary[1].projection_steered, res))
    else:
        notes.append("The SAE's encoding reads none of the vector, so there is no reconstruction to steer with.")
    best = decomposition.best_feature
    feature_strength = math.copysign(target / max(best.decoder_norm, 1e-12), strength)
    res = inference.steer(SteerRequest(features=[SteerFeature(feature_id=best.feature_id, strength=feature_strength)],
                                       vectors=[probe], include_default=False, **common))
    arms.append(SteerArm("best feature", f"#{best.feature_id} (decoder cosine {best.cosine:.2f}) at strength "
                         f"{feature_strength:.2f}", target, default, res.vector_summary[0].projection_steered, res))
    return SideBySide(raw.default.text if raw.default else "", arms, notes)
