"""Our own sampling loop over a TransformerLens model with a KV cache.

Why not `model.generate`: we need the SAE hook to see every position exactly once (the cache
makes each forward call carry only the new token), per-token logprobs, a seeded generator per
run, and a deadline checked between steps.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from transformer_lens.cache.key_value_cache import TransformerLensKeyValueCache

from backend.inference.deadline import Deadline
from backend.inference.steering import SaeHook


@dataclass(frozen=True)
class SamplingSettings:
    max_new_tokens: int
    temperature: float  # 0 = greedy
    top_p: float
    freq_penalty: float
    seed: int
    top_logprobs: int
    stop_token_ids: frozenset[int]


@dataclass(frozen=True)
class TokenChoice:
    token_id: int
    logprob: float  # under the model's own distribution
    alternative_ids: list[int]
    alternative_logprobs: list[float]


@dataclass(frozen=True)
class GenerationRun:
    choices: list[TokenChoice]
    feature_acts: torch.Tensor  # [n_generated, n_features], at each generated token's own position, before the edit
    feature_acts_after_edit: torch.Tensor  # the same, encoded from the edited residual
    stopped_at_eos: bool
    projections: torch.Tensor | None = None  # [n_generated, m] on the hook's directions, before the edit


def choose_next_token(logits: torch.Tensor, counts: torch.Tensor, settings: SamplingSettings,
                      generator: torch.Generator) -> int:
    """logits, counts: [vocab] float32 on CPU. Penalty, then greedy or temperature + top-p sampling."""
    adjusted = logits - settings.freq_penalty * counts if settings.freq_penalty else logits
    if settings.temperature == 0:
        return int(adjusted.argmax())
    scaled = adjusted / settings.temperature
    if not bool(torch.isfinite(scaled).all()):  # a temperature so small it overflows: its limit, greedy (fuzz-found)
        return int(adjusted.argmax())
    probs = torch.softmax(scaled, dim=-1)
    if settings.top_p < 1:
        sorted_probs, order = probs.sort(descending=True)
        # keep the smallest prefix whose mass reaches top_p (the token crossing it included)
        outside = (sorted_probs.cumsum(0) - sorted_probs) >= settings.top_p
        sorted_probs = sorted_probs.masked_fill(outside, 0.0)
        return int(order[torch.multinomial(sorted_probs, 1, generator=generator)])
    return int(torch.multinomial(probs, 1, generator=generator))


def _describe_choice(logits: torch.Tensor, token_id: int, top_logprobs: int) -> TokenChoice:
    logprobs = torch.log_softmax(logits, dim=-1)
    alt_ids: list[int] = []
    alt_values: list[float] = []
    if top_logprobs:
        values, ids = torch.topk(logprobs, k=min(top_logprobs, logprobs.shape[0]))
        alt_ids, alt_values = ids.tolist(), values.tolist()
    return TokenChoice(token_id, float(logprobs[token_id]), alt_ids, alt_values)


def generate(model, hook_name: str, hook_layer: int, prompt_tokens: torch.Tensor, sae_hook: SaeHook,
             settings: SamplingSettings, deadline: Deadline) -> GenerationRun:
    """prompt_tokens: [1, P] on the model's device. The SAE hook is attached only for this call."""
    generator = torch.Generator().manual_seed(settings.seed)
    cache = TransformerLensKeyValueCache.init_cache(model.cfg, model.cfg.device, 1)
    counts = torch.bincount(prompt_tokens[0].cpu(), minlength=model.cfg.d_vocab).float()
    chunk, start = prompt_tokens, 0
    choices: list[TokenChoice] = []
    stopped = False
    with model.hooks(fwd_hooks=[(hook_name, sae_hook)]):  # removed on exit, exceptions included
        for _ in range(settings.max_new_tokens):
            deadline.check()
            sae_hook.prepare(chunk, start)
            # An explicit all-ones mask: TransformerLens would otherwise mask a generated token equal
            # to the pad id (often EOS/BOS) as trailing padding.
            logits = model(chunk, past_kv_cache=cache, attention_mask=torch.ones_like(chunk))[0, -1].float().cpu()
            start += chunk.shape[1]
            token_id = choose_next_token(logits, counts, settings, generator)
            choices.append(_describe_choice(logits, token_id, settings.top_logprobs))
            counts[token_id] += 1
            chunk = torch.tensor([[token_id]], device=prompt_tokens.device)
            if token_id in settings.stop_token_ids:
                stopped = True
                break
        # One more pass up to the hook's block records the activation at the last generated token.
        sae_hook.prepare(chunk, start)
        model(chunk, past_kv_cache=cache, attention_mask=torch.ones_like(chunk), stop_at_layer=hook_layer + 1)
    prompt_length = prompt_tokens.shape[1]
    generated = slice(prompt_length, prompt_length + len(choices))
    projections = sae_hook.recorded_projections()[0, generated].float().cpu() \
        if sae_hook.directions is not None else None
    return GenerationRun(choices, sae_hook.recorded()[0, generated].float().cpu(),
                         sae_hook.recorded_after_edit()[0, generated].float().cpu(), stopped, projections)
