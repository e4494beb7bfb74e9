"""Which features steer well, measured once at index time.

- output score (Arad, Mueller & Belinkov 2025, "SAEs are good for steering - if you select the right
  features"): at the last token of a neutral prompt, add `amp` x (the largest SAE activation there) x
  W_dec[f]; score = (1 - best rank of f's top logit-lens tokens / vocab) x the highest probability among
  them, averaged over the prompts. Their code does exactly this (amp 10, top-20 logit-lens tokens).
- input score (same paper): the fraction of f's top examples whose peak token is one of those tokens.
- calibrated strength: the smallest multiplier m of the ladder at which adding m x max_act x W_dec[f] at
  every position (sampled like the Steer page) makes the generated tokens evoke f (its SAE encoding
  before the edit) >= `evoke_ratio` x the default continuation's, and at least `min_evoked` x max_act,
  on each of >= `min_prompts_evoked` of the `n_prompts` calibration prompts.

Every measurement puts one feature per batch row, so one forward pass serves `batch_rows` features.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import torch
from transformer_lens.cache.key_value_cache import TransformerLensKeyValueCache
from transformer_lens.cache.key_value_cache_entry import TransformerLensKeyValueCacheEntry

from backend.index.geometry import logit_effects
from backend.inference.batch_generation import RowSampling, generate_rows
from backend.inference.steering import RowSteeringHook
from backend.readout import Readout
from backend.sources import LoadedSource


@dataclass(frozen=True)
class SteerabilityConfig:
    logit_lens_k: int = 20
    amp: float = 10.0
    ladder: tuple[float, ...] = (1.0, 2.0, 4.0, 8.0, 16.0)
    evoke_ratio: float = 3.0
    min_evoked: float = 0.05  # of max act: a ratio over a default of ~0 alone is no evidence
    min_examples: int = 10  # the paper's floor for an input score
    n_prompts: int = 4  # calibration prompts (the output score uses all prompts given)
    min_prompts_evoked: int = 3  # a rung counts when this many calibration prompts are each evoked
    sampling: RowSampling = RowSampling()
    batch_rows: int = 256


@dataclass(frozen=True)
class Steerability:
    """One entry per measured feature; NaN where a value could not be measured."""

    feature_id: np.ndarray  # [n] int64
    output_score: np.ndarray  # [n] float32, 0..1
    input_score: np.ndarray  # [n] float32, 0..1; NaN with fewer than min_examples top examples
    calibrated_multiplier: np.ndarray  # [n] float32; NaN when no rung of the ladder evoked the feature
    calibrated_strength: np.ndarray  # [n] float32 = multiplier x max act
    evoked_ratio: np.ndarray  # [n] float32: steered / default mean at the chosen rung (the top rung if none)

    def summary(self) -> str:
        calibrated = ~np.isnan(self.calibrated_multiplier)
        rungs = ", ".join(f"x{m:g}: {int((self.calibrated_multiplier == m).sum())}"
                          for m in np.unique(self.calibrated_multiplier[calibrated]))
        return (f"{len(self.feature_id)} features scored: median output score {np.median(self.output_score):.4f}, "
                f"{int(calibrated.sum())} calibrated ({rungs}), {int((~calibrated).sum())} not evoked on the ladder")

    def to_arrow(self) -> pa.Table:
        return pa.table({
            "feature_id": pa.array(self.feature_id.astype(np.int32)),
            "output_score": pa.array(self.output_score.astype(np.float32), from_pandas=True),
            "input_score": pa.array(self.input_score.astype(np.float32), from_pandas=True),
            "calibrated_multiplier": pa.array(self.calibrated_multiplier.astype(np.float32), from_pandas=True),
            "calibrated_strength": pa.array(self.calibrated_strength.astype(np.float32), from_pandas=True),
            "evoked_ratio": pa.array(self.evoked_ratio.astype(np.float32), from_pandas=True),
        })


def neutral_prompts(texts, tokenizer, prepend_bos: bool, n: int = 4, length: int = 12) -> list[list[int]]:
    """`n` prompts of `length` tokens from the dataset: each starts at the first line break past the middle
    of a document long enough, so it is ordinary text rather than a file header."""
    prompts: list[list[int]] = []
    bos = [tokenizer.bos_token_id] if prepend_bos and tokenizer.bos_token_id is not None else []
    for text in texts:
        cut = text.find("\n", len(text) // 2)
        ids = tokenizer(text[cut + 1:], add_special_tokens=False)["input_ids"] if cut >= 0 else []
        if len(ids) >= length:
            prompts.append(bos + ids[:length])
        if len(prompts) == n:
            break
    return prompts


def compute_steerability(source: LoadedSource, feature_ids: torch.Tensor, max_acts: torch.Tensor,
                         prompts: list[list[int]], peak_tokens: torch.Tensor | None = None,
                         cfg: SteerabilityConfig = SteerabilityConfig()) -> Steerability:
    """feature_ids, max_acts: [n]; peak_tokens: [n, k] token ids of each feature's top examples (-1 = none)."""
    if not prompts:
        raise ValueError("Steerability needs at least one neutral prompt.")
    ids = feature_ids.long().cpu()
    w_dec = source.sae.W_dec.detach()
    lens_ids = logit_effects(Readout(source.model, source.hook_name), w_dec[ids.to(w_dec.device)].float(),
                             cfg.logit_lens_k).top_ids  # [n, k]
    output = output_scores(source, ids, lens_ids, prompts, cfg)
    inputs = input_scores(lens_ids, peak_tokens, cfg.min_examples) if peak_tokens is not None \
        else np.full(len(ids), np.nan, np.float32)
    calibration_prompts = prompts[: cfg.n_prompts]
    if len(calibration_prompts) >= cfg.min_prompts_evoked:
        multiplier, ratio = calibrate(source, ids, max_acts.float().cpu(), calibration_prompts, cfg)
    else:  # a dataset this small has too few neutral prompts to vouch for any strength
        multiplier, ratio = np.full(len(ids), np.nan, np.float32), np.full(len(ids), np.nan, np.float32)
    return Steerability(ids.numpy(), output, inputs, multiplier, multiplier * max_acts.float().cpu().numpy(), ratio)


def input_scores(lens_ids: torch.Tensor, peak_tokens: torch.Tensor, min_examples: int) -> np.ndarray:
    peaks = peak_tokens.long()
    valid = peaks >= 0
    hit = (peaks.unsqueeze(-1) == lens_ids.unsqueeze(1)).any(-1) & valid  # [n, k_examples]
    n_valid = valid.sum(1)
    score = hit.sum(1).float() / n_valid.clamp_min(1)
    return torch.where(n_valid >= min_examples, score, torch.nan).numpy().astype(np.float32)


@torch.no_grad()
def output_scores(source: LoadedSource, ids: torch.Tensor, lens_ids: torch.Tensor, prompts: list[list[int]],
                  cfg: SteerabilityConfig) -> np.ndarray:
    """Mean over prompts of the paper's rank x probability score. Only the last position is edited, so the
    prefix runs once and its key/value cache is shared by every row."""
    model, sae, device = source.model, source.sae, source.device
    total = torch.zeros(len(ids))
    for prompt in prompts:
        tokens = torch.tensor([prompt], device=device)
        _, acts_cache = model.run_with_cache(tokens, names_filter=source.hook_name, stop_at_layer=source.hook_layer + 1)
        last = acts_cache[source.hook_name][:, -1].reshape(1, -1)
        strength = cfg.amp * float(sae.encode(last.to(source.dtype)).max())
        prefix = TransformerLensKeyValueCache.init_cache(model.cfg, model.cfg.device, 1)
        if tokens.shape[1] > 1:
            model(tokens[:, :-1], past_kv_cache=prefix, attention_mask=torch.ones_like(tokens[:, :-1]))
        for start in range(0, len(ids), cfg.batch_rows):
            rows = ids[start:start + cfg.batch_rows]
            vectors = strength * sae.W_dec[rows.to(sae.W_dec.device)].detach()
            hook = _add_at_every_position(vectors)
            last_token = tokens[:, -1:].expand(len(rows), 1)
            with model.hooks(fwd_hooks=[(source.hook_name, hook)]):
                logits = model(last_token, past_kv_cache=_expanded(prefix, len(rows)),
                               attention_mask=torch.ones_like(last_token))[:, -1].float()
            probs = logits.softmax(-1).cpu()
            lens = lens_ids[start:start + len(rows)]
            best = probs.gather(1, lens).max(1).values  # [rows]
            best_rank = (probs > best.unsqueeze(1)).sum(1).float()  # rank of the likeliest lens token (0 = top)
            total[start:start + len(rows)] += (1 - best_rank / probs.shape[1]) * best
    return (total / len(prompts)).numpy().astype(np.float32)


def _add_at_every_position(vectors: torch.Tensor):
    def hook(activation: torch.Tensor, hook=None) -> torch.Tensor:
        flat = activation.reshape(*activation.shape[:2], -1)
        return (flat + vectors.to(flat.dtype).unsqueeze(1)).reshape(activation.shape)

    return hook


def _expanded(cache: TransformerLensKeyValueCache, batch: int) -> TransformerLensKeyValueCache:
    """A fresh cache holding `batch` copies of a one-row cache (views, no copy)."""
    entries = [TransformerLensKeyValueCacheEntry(e.past_keys.expand(batch, -1, -1, -1),
                                                 e.past_values.expand(batch, -1, -1, -1)) for e in cache.entries]
    return TransformerLensKeyValueCache(entries, cache.previous_attention_mask.expand(batch, -1))


@torch.no_grad()
def calibrate(source: LoadedSource, ids: torch.Tensor, max_acts: torch.Tensor, prompts: list[list[int]],
              cfg: SteerabilityConfig) -> tuple[np.ndarray, np.ndarray]:
    """The smallest rung at which >= `min_prompts_evoked` of the prompts are each evoked on their own (one
    lucky prompt cannot carry a mean). Every feature is first screened at the top rung: one not evoked there
    has no strength on the ladder, so it leaves before the walk up from the bottom rung."""
    if len(prompts) < cfg.min_prompts_evoked:
        raise ValueError(f"Calibration needs at least {cfg.min_prompts_evoked} prompts, got {len(prompts)}.")
    special = torch.tensor(source.special_token_ids(), dtype=torch.long, device=source.device)
    d_sae = source.d_sae
    default = torch.zeros(len(prompts), d_sae)
    for p, prompt in enumerate(prompts):  # one unsteered run per prompt serves every feature
        tokens = torch.tensor([prompt], device=source.device)
        hook = RowSteeringHook(source.sae, torch.zeros(1, source.sae.W_dec.shape[1], device=source.device),
                               torch.arange(d_sae, device=source.device).unsqueeze(0), special)
        run = generate_rows(source.model, source.hook_name, source.hook_layer, tokens, hook, cfg.sampling)
        default[p] = run.tracked_acts[0].mean(0)
    base = default[:, ids]  # [prompts, n]
    multiplier = np.full(len(ids), np.nan, np.float32)
    ratio = np.zeros(len(ids), np.float32)

    def rung_passes(pending: torch.Tensor, rung: float) -> torch.Tensor:
        evoked = _steered_means(source, ids[pending], rung * max_acts[pending], prompts, special, cfg)
        b = base[:, pending]
        each = (evoked >= cfg.evoke_ratio * b) & (evoked >= cfg.min_evoked * max_acts[pending]) & (evoked > 0)
        ratio[pending.numpy()] = (evoked.mean(0) / b.mean(0).clamp_min(1e-12)).clamp_max(1e6).numpy()
        return each.sum(0) >= cfg.min_prompts_evoked

    top = cfg.ladder[-1]
    everyone = torch.arange(len(ids))
    pending = everyone[rung_passes(everyone, top)]
    top_ratio = ratio.copy()  # the ratio reported for a feature that needs the top rung
    for rung in cfg.ladder[:-1]:
        if len(pending) == 0:
            break
        ok = rung_passes(pending, rung)
        multiplier[pending[ok].numpy()] = rung
        pending = pending[~ok]
    multiplier[pending.numpy()] = top
    ratio[pending.numpy()] = top_ratio[pending.numpy()]
    return multiplier, ratio


def _steered_means(source: LoadedSource, ids: torch.Tensor, strengths: torch.Tensor, prompts: list[list[int]],
                   special: torch.Tensor, cfg: SteerabilityConfig) -> torch.Tensor:
    """[len(prompts), len(ids)] mean activation of each feature on its own steered continuation, per prompt."""
    out = torch.zeros(len(prompts), len(ids))
    w_dec = source.sae.W_dec.detach()
    for p, prompt in enumerate(prompts):
        tokens = torch.tensor([prompt], device=source.device)
        for start in range(0, len(ids), cfg.batch_rows):
            rows = ids[start:start + cfg.batch_rows].to(w_dec.device)
            vectors = strengths[start:start + len(rows)].to(w_dec.device, w_dec.dtype).unsqueeze(1) * w_dec[rows]
            hook = RowSteeringHook(source.sae, vectors, rows.unsqueeze(1), special)
            run = generate_rows(source.model, source.hook_name, source.hook_layer, tokens, hook, cfg.sampling)
            out[p, start:start + len(rows)] = run.tracked_acts[:, :, 0].mean(1)
    return out


def steerability_for_index(source: LoadedSource, max_acts: torch.Tensor, top_tokens: torch.Tensor,
                           texts, cfg: SteerabilityConfig = SteerabilityConfig()) -> Steerability:
    """Every live feature of an index. max_acts: [d_sae]; top_tokens: [d_sae, k] the peak token of each
    top example (-1 = none); texts: the index's dataset, for the neutral prompts."""
    live = torch.nonzero(max_acts > 0).squeeze(1)
    prompts = neutral_prompts(texts, source.tokenizer, source.prepend_bos, n=max(4, cfg.n_prompts))
    return compute_steerability(source, live, max_acts[live], prompts, top_tokens[live], cfg)


def add_steerability(index_path: str, device: str | None = None) -> str:
    """Score an existing index (built without the stage, or before it existed) and write its table."""
    from pathlib import Path

    from backend.index import writer
    from backend.index.datasets import dataset_texts
    from backend.sources import load_source
    from backend.store import IndexStore

    with IndexStore.open(index_path) as store:
        max_acts, peaks = store.steerability_inputs()
        spec, dataset = store.meta.source, store.meta.dataset
    source = load_source(spec, device)
    with source.lock:
        result = steerability_for_index(source, torch.from_numpy(max_acts), torch.from_numpy(peaks),
                                        dataset_texts(dataset))
    writer.replace_table(Path(index_path), "steerability", result.to_arrow(), "feature_id")
    return result.summary()
