"""Batched sampling with one steering edit per batch row (`RowSteeringHook`): what the index's steerability
stage and the Concepts page use to measure many directions in one set of forward passes.

Sampling follows the Steer page's defaults (temperature, frequency penalty, a seeded generator), so a
strength calibrated here behaves the same way there; it never changes the single-run engine path.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from transformer_lens.cache.key_value_cache import TransformerLensKeyValueCache

from backend.inference.steering import RowSteeringHook


@dataclass(frozen=True)
class RowSampling:
    new_tokens: int = 16
    temperature: float = 0.5  # 0 = greedy
    freq_penalty: float = 1.0
    seed: int = 16


@dataclass(frozen=True)
class RowRuns:
    tokens: torch.Tensor  # [batch, new_tokens] sampled token ids
    tracked_acts: torch.Tensor  # [batch, new_tokens, m]: the tracked features at each generated token, before the edit


def sample_rows(logits: torch.Tensor, counts: torch.Tensor, sampling: RowSampling,
                generator: torch.Generator) -> torch.Tensor:
    """logits, counts: [batch, vocab] float32 on CPU -> [batch] token ids (penalty, then greedy or temperature)."""
    adjusted = logits - sampling.freq_penalty * counts if sampling.freq_penalty else logits
    if sampling.temperature == 0:
        return adjusted.argmax(-1)
    probs = torch.softmax(adjusted / sampling.temperature, dim=-1)
    return torch.multinomial(probs, 1, generator=generator).squeeze(1)


@torch.no_grad()
def generate_rows(model, hook_name: str, hook_layer: int, prompt: torch.Tensor, hook: RowSteeringHook,
                  sampling: RowSampling) -> RowRuns:
    """prompt: [1, P] on the model's device, repeated for every row of `hook.vectors`."""
    batch = hook.vectors.shape[0]
    chunk = prompt.expand(batch, -1)
    generator = torch.Generator().manual_seed(sampling.seed)
    cache = TransformerLensKeyValueCache.init_cache(model.cfg, model.cfg.device, batch)
    counts = torch.zeros(batch, model.cfg.d_vocab)
    counts += torch.bincount(prompt[0].cpu(), minlength=model.cfg.d_vocab).float()
    sampled: list[torch.Tensor] = []
    rows = torch.arange(batch)
    with model.hooks(fwd_hooks=[(hook_name, hook)]):
        for _ in range(sampling.new_tokens):
            hook.prepare(chunk)
            logits = model(chunk, past_kv_cache=cache, attention_mask=torch.ones_like(chunk))[:, -1].float().cpu()
            token = sample_rows(logits, counts, sampling, generator)
            counts[rows, token] += 1
            sampled.append(token)
            chunk = token.unsqueeze(1).to(prompt.device)
        # the activation at the last sampled token needs one more pass, up to the hook's block only
        hook.prepare(chunk)
        model(chunk, past_kv_cache=cache, attention_mask=torch.ones_like(chunk), stop_at_layer=hook_layer + 1)
    start = prompt.shape[1]
    return RowRuns(torch.stack(sampled, dim=1), hook.recorded()[:, start:start + sampling.new_tokens].float().cpu())
