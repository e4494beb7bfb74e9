"""Re-seed dead SAE latents between SAELens training runs (Anthropic's resampling, adapted to TopK).

A TopK latent that never wins one of the k slots gets no gradient from the reconstruction loss;
its encoder stays at its small initial norm while the live latents' grow, so it never catches up.
SAELens' auxiliary loss alone did not bring ours back (37% dead after 10M tokens). So each dead
latent is re-seeded on one poorly reconstructed token, drawn with probability proportional to
the squared reconstruction loss: its decoder row becomes the direction of that token's
reconstruction error, and its encoder column the same direction, with the encoder·decoder gain of
a typical live latent (raised where needed so the latent beats the k-th largest pre-activation on
its seed token, i.e. it competes for a slot from the start). The next training run then shapes the
new latents like any other.

Why the typical gain, not the least that wins a slot: a latent seeded at the margin stayed there
(encoder·decoder ~0.2 after training, against ~0.5 for the others), so adding its decoder
direction hardly moved its own activation and steering it did nothing (issue #4).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from backend.readout import HookSite


@dataclass(frozen=True)
class ResampleReport:
    tokens_seen: int
    dead_before: int
    resampled: int
    resampled_firing_after: int  # resampled latents that fire on the same tokens right after re-seeding


@torch.no_grad()
def collect_activations(model, rows: torch.Tensor, hook_name: str, n_tokens: int, special_ids: list[int],
                        batch_rows: int = 32) -> torch.Tensor:
    """[n, d_in] activations at `hook_name` for the first rows holding `n_tokens` non-special tokens."""
    layer = HookSite.parse(hook_name).layer
    special = torch.tensor(special_ids, dtype=torch.long)
    chunks, total = [], 0
    for start in range(0, len(rows), batch_rows):
        batch = rows[start:start + batch_rows].to(model.cfg.device)
        _, cache = model.run_with_cache(batch, names_filter=hook_name, stop_at_layer=layer + 1)
        keep = ~torch.isin(batch.cpu(), special)
        chunks.append(cache[hook_name].cpu()[keep])
        total += int(keep.sum())
        if total >= n_tokens:
            break
    return torch.cat(chunks)[:n_tokens].float()


def _pre_activations(sae, x: torch.Tensor) -> torch.Tensor:
    """The TopK SAE's scores before the top-k cut (SAELens' inference SAE does not return them)."""
    pre = sae.process_sae_in(x) @ sae.W_enc + sae.b_enc
    if getattr(sae.cfg, "rescale_acts_by_decoder_norm", False):
        pre = pre * sae.W_dec.norm(dim=-1)
    return pre


@torch.no_grad()
def firing_counts(sae, acts: torch.Tensor, chunk: int = 8192) -> torch.Tensor:
    """[d_sae] how many of `acts` each latent fires on."""
    counts = torch.zeros(sae.cfg.d_sae, dtype=torch.long)
    for start in range(0, len(acts), chunk):
        x = acts[start:start + chunk].to(sae.W_enc.device)
        counts += (sae.encode(x) > 0).sum(0).cpu()
    return counts


@torch.no_grad()
def resample_dead_latents(sae, acts: torch.Tensor, seed: int, chunk: int = 8192) -> ResampleReport:
    """Re-seed, in place, every latent of a TopK `sae` that fires on none of `acts` ([n, d_in])."""
    k = sae.cfg.k
    device = sae.W_enc.device
    counts = torch.zeros(sae.cfg.d_sae, dtype=torch.long)
    losses, kth_values = [], []
    for start in range(0, len(acts), chunk):
        x = acts[start:start + chunk].to(device)
        pre = _pre_activations(sae, x)
        feature_acts = sae.activation_fn(pre)  # what sae.encode(x) returns, without a second encoder pass
        counts += (feature_acts > 0).sum(0).cpu()
        losses.append((x - sae.decode(feature_acts)).pow(2).sum(-1).cpu())
        kth_values.append(pre.topk(k, dim=-1).values[:, -1].cpu())
    dead = torch.nonzero(counts == 0).squeeze(-1)
    if len(dead) == 0:
        return ResampleReport(len(acts), 0, 0, 0)
    loss = torch.cat(losses)
    generator = torch.Generator().manual_seed(seed)
    seeds = torch.multinomial(loss.pow(2), min(len(dead), len(acts)), replacement=False, generator=generator)
    dead = dead[: len(seeds)]
    x_seed = acts[seeds].to(device)
    error = x_seed - sae.decode(sae.encode(x_seed))
    directions = torch.nn.functional.normalize(error, dim=-1)
    projection = (sae.process_sae_in(x_seed) * directions).sum(-1)
    live = counts > 0
    live_norm = sae.W_enc[:, live].norm(dim=0).mean()
    live_gain = (sae.W_enc[:, live].T * sae.W_dec[live]).sum(-1).median().clamp_min(1e-3)  # decoder rows unit-norm
    # the typical gain, or enough to reach 1.2x the seed token's k-th pre-activation, at most 4x a live norm
    target = torch.cat(kth_values)[seeds].to(device).clamp_min(1e-3) * 1.2
    reach = torch.where(projection > 0, target / projection.clamp_min(1e-6), live_norm)
    scale = torch.maximum(reach, live_gain).clamp_max(4.0 * live_norm)
    sae.W_dec.data[dead] = directions
    sae.W_enc.data[:, dead] = (directions * scale.unsqueeze(-1)).T
    sae.b_enc.data[dead] = 0.0
    firing_after = int((firing_counts(sae, acts, chunk)[dead] > 0).sum())
    return ResampleReport(len(acts), int((counts == 0).sum()), len(dead), firing_after)
