"""Per-feature facts that come from the weights alone: decoder-cosine neighbours, output
(logit) effects, and the 2-D map. All are blocked so d_sae = 131k never needs a d_sae² matrix."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch


@dataclass
class Neighbours:
    ids: torch.Tensor  # [d_sae, k] (-1 = none)
    scores: torch.Tensor  # [d_sae, k]


def decoder_cosine_neighbours(w_dec: torch.Tensor, k: int, block: int = 2048) -> Neighbours:
    """Top-k other features by cosine similarity of decoder rows, one block of rows at a time."""
    w = torch.nn.functional.normalize(w_dec.float(), dim=1)
    n = len(w)
    k_eff = min(k, n - 1)
    ids = torch.full((n, k), -1, dtype=torch.long)
    scores = torch.zeros((n, k))
    for start in range(0, n, block):
        sims = w[start : start + block] @ w.T  # [block, n]
        rows = torch.arange(sims.shape[0])
        sims[rows, rows + start] = float("-inf")  # never your own neighbour
        top = sims.topk(k_eff, dim=1)
        ids[start : start + block, :k_eff] = top.indices
        scores[start : start + block, :k_eff] = top.values
    return Neighbours(ids, scores)


@dataclass
class LogitEffects:
    top_ids: torch.Tensor  # [d_sae, n] most promoted tokens
    top_values: torch.Tensor
    bottom_ids: torch.Tensor  # [d_sae, n] most suppressed tokens
    bottom_values: torch.Tensor
    hist_counts: torch.Tensor  # [d_sae, bins]
    hist_lo: torch.Tensor  # [d_sae]
    hist_hi: torch.Tensor
    through_final_ln: bool


def logit_effects(model, w_dec: torch.Tensor, n: int = 10, bins: int = 50, block: int = 1024) -> LogitEffects:
    """Direct effect of each decoder direction on the logits: W_dec[f] @ W_U.

    With a final LayerNorm, its learned scale (w) is applied first (centring is a no-op for
    direct-path reasoning on a single direction; the per-token norm division is a positive
    scalar that cannot change the ranking), so the table matches what the model reads out."""
    w_u = model.W_U.detach().float()
    w_dec = w_dec.to(w_u.device)
    ln = getattr(model, "ln_final", None)
    ln_w = getattr(ln, "w", None)
    centre = model.cfg.normalization_type in ("LN", "LNPre")
    through_ln = ln_w is not None
    d_sae = len(w_dec)
    out = LogitEffects(
        torch.zeros(d_sae, n, dtype=torch.long),
        torch.zeros(d_sae, n),
        torch.zeros(d_sae, n, dtype=torch.long),
        torch.zeros(d_sae, n),
        torch.zeros(d_sae, bins, dtype=torch.long),
        torch.zeros(d_sae),
        torch.zeros(d_sae),
        through_ln,
    )
    for start in range(0, d_sae, block):
        d = w_dec[start : start + block].float()
        if centre:
            d = d - d.mean(dim=1, keepdim=True)
        if through_ln:
            d = d * ln_w.detach().float()
        logits = d @ w_u  # [block, vocab]
        sl = slice(start, start + len(d))
        top = logits.topk(n, dim=1)
        bottom = logits.topk(n, dim=1, largest=False)
        out.top_ids[sl], out.top_values[sl] = top.indices.cpu(), top.values.cpu()
        out.bottom_ids[sl], out.bottom_values[sl] = bottom.indices.cpu(), bottom.values.cpu()
        lo, hi = logits.min(dim=1).values, logits.max(dim=1).values
        out.hist_lo[sl], out.hist_hi[sl] = lo.cpu(), hi.cpu()
        width = (hi - lo).clamp_min(1e-12).unsqueeze(1)
        b = ((logits - lo.unsqueeze(1)) / width * bins).long().clamp(0, bins - 1)
        counts = torch.zeros(len(d), bins, dtype=torch.long, device=b.device).scatter_add_(1, b, torch.ones_like(b))
        out.hist_counts[sl] = counts.cpu()
    return out


@dataclass
class FeatureMap:
    x: np.ndarray
    y: np.ndarray
    cluster: np.ndarray


def flat_map(n: int) -> FeatureMap:
    """A placeholder-free 'no map' answer: every feature at the origin in cluster 0."""
    return FeatureMap(np.zeros(n, np.float32), np.zeros(n, np.float32), np.zeros(n, np.int64))


def umap_map(w_dec: torch.Tensor, seed: int = 0, n_clusters: int | None = None) -> FeatureMap:
    """2-D UMAP of decoder directions (cosine metric) and k-means clusters on the map."""
    from sklearn.cluster import KMeans
    from umap import UMAP

    w = torch.nn.functional.normalize(w_dec.float(), dim=1).numpy()
    n = len(w)
    if n < 8:  # UMAP needs a few points; a circle is the honest map of almost nothing
        angle = np.linspace(0, 2 * np.pi, n, endpoint=False)
        return FeatureMap(np.cos(angle), np.sin(angle), np.zeros(n, dtype=np.int64))
    reducer = UMAP(
        n_components=2,
        metric="cosine",
        n_neighbors=min(15, n - 1),
        min_dist=0.05,
        random_state=seed,
        low_memory=True,
        n_jobs=1,
    )
    xy = reducer.fit_transform(w)
    k = n_clusters or int(np.clip(round(np.sqrt(n / 4)), 2, 64))
    clusters = KMeans(n_clusters=min(k, n), n_init=3, random_state=seed).fit_predict(xy)
    return FeatureMap(xy[:, 0].astype(np.float32), xy[:, 1].astype(np.float32), clusters.astype(np.int64))
