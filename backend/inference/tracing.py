"""The tensor work of a trace: one forward pass, the SAE encoding of every token, per-token and
prompt-level rankings, and each active feature's direct effect on the predicted token.

All rankings are batched tensor ops over [positions, d_sae]; no Python loop touches a token.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from backend.inference.schemas import DirectEffect, FeatureValue, PromptFeature, TokenFeatures
from backend.readout import Readout

FINAL_NORM_SCALE_HOOK = "ln_final.hook_scale"


@dataclass(frozen=True)
class TraceForward:
    feature_acts: torch.Tensor  # [positions, d_sae], float32
    logits: torch.Tensor  # [positions, vocab], float32
    final_norm_scale: torch.Tensor  # [positions]; ones when the model has no final norm


def run_trace_forward(model, sae, hook_name: str, tokens: torch.Tensor) -> TraceForward:
    """tokens: [1, positions]. Caches only the SAE's input and the final norm's scale."""
    names = [hook_name] + ([FINAL_NORM_SCALE_HOOK] if FINAL_NORM_SCALE_HOOK in model.hook_dict else [])
    logits, cache = model.run_with_cache(tokens, names_filter=names, return_type="logits")
    sae_input = cache[hook_name][0]
    feature_acts = sae.encode(sae_input.reshape(sae_input.shape[0], -1)).float()
    if FINAL_NORM_SCALE_HOOK in cache:
        scale = cache[FINAL_NORM_SCALE_HOOK][0, :, 0].float()
    else:
        scale = torch.ones(tokens.shape[1], device=logits.device)
    return TraceForward(feature_acts, logits[0].float(), scale)


def top_features_per_token(feature_acts: torch.Tensor, top_k: int) -> list[TokenFeatures]:
    values, ids = torch.topk(feature_acts, k=min(top_k, feature_acts.shape[1]), dim=1)
    rows: list[TokenFeatures] = []
    for position, (row_values, row_ids) in enumerate(zip(values.tolist(), ids.tolist(), strict=True)):
        active = [FeatureValue(feature_id=f, value=v) for f, v in zip(row_ids, row_values, strict=True) if v > 0]
        rows.append(TokenFeatures(position=position, features=active))
    return rows


@dataclass(frozen=True)
class PromptFeatureTable:
    """Per-feature statistics over the ranked positions (special tokens possibly left out)."""

    max_values: torch.Tensor  # [d_sae]
    max_positions: torch.Tensor  # [d_sae], positions in the full prompt
    sums: torch.Tensor  # [d_sae]
    active_counts: torch.Tensor  # [d_sae]

    @classmethod
    def build(cls, feature_acts: torch.Tensor, ranked_positions: torch.Tensor) -> PromptFeatureTable:
        if ranked_positions.numel() == 0:  # e.g. a prompt that is only special tokens
            zeros = torch.zeros(feature_acts.shape[1], device=feature_acts.device)
            return cls(zeros, zeros.long(), zeros, zeros.long())
        ranked = feature_acts[ranked_positions]
        max_values, argmax = ranked.max(dim=0)
        return cls(max_values, ranked_positions[argmax], ranked.sum(dim=0), (ranked > 0).sum(dim=0))

    def active_ids(self) -> list[int]:
        return torch.nonzero(self.max_values > 0).flatten().tolist()

    def ranking(self, allowed_ids: list[int], by: str, top_n: int,
                densities: dict[int, float]) -> list[PromptFeature]:
        if not allowed_ids:
            return []
        ids = torch.tensor(allowed_ids, dtype=torch.long, device=self.max_values.device)
        key = (self.max_values if by == "max" else self.sums)[ids]
        order = torch.argsort(key, descending=True, stable=True)[:top_n]
        chosen = ids[order]
        return [PromptFeature(feature_id=f, max_value=m, max_position=p, sum_value=s, active_tokens=c,
                              density=densities.get(f))
                for f, m, p, s, c in zip(chosen.tolist(), self.max_values[chosen].tolist(),
                                         self.max_positions[chosen].tolist(), self.sums[chosen].tolist(),
                                         self.active_counts[chosen].tolist(), strict=True)]


def direct_effects(model, sae, hook_name: str, forward: TraceForward, position: int, token_id: int,
                   top_n: int) -> list[DirectEffect]:
    """For each active feature f at `position`: a_f · (W_dec[f] read out, backend/readout.py) @ W_U[:, token] / the
    final norm's scale there."""
    acts = forward.feature_acts[position]
    active = torch.nonzero(acts > 0).flatten()
    if active.numel() == 0:
        return []
    readout = Readout(model, hook_name)
    if not readout.available:
        return []
    effects = acts[active] * readout.logit_of(sae.W_dec[active], token_id) / forward.final_norm_scale[position]
    order = torch.argsort(effects.abs(), descending=True, stable=True)[:top_n]
    return [DirectEffect(feature_id=f, activation=a, effect=e)
            for f, a, e in zip(active[order].tolist(), acts[active][order].tolist(), effects[order].tolist(),
                               strict=True)]
