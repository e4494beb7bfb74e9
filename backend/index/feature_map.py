"""The 2-D map of decoder directions: UMAP, and k-means clusters on it.

Up to FIT_UP_TO features UMAP sees them all (on the build's own neighbour graph when it is exact).
Above that, UMAP is fitted on a random sample and every other feature is placed at the weighted mean
of its nearest sample points (blocked matmul, bf16 where that is fast): UMAP's own `transform` does the same kind of
placement but builds a search index and optimises each point, minutes more at 1M for a picture that
differs only inside clusters."""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import torch

from backend.index.neighbours import (
    BLOCK_BYTES,
    Neighbours,
    candidate_rows,
    exact_neighbours,
    row_topk,
    similarities,
    unit_rows,
)

FIT_UP_TO = 16_384  # UMAP fitted on at most this many points (a fit: 14 s here at 16k, 23 s at 32k)
PLACE_NEIGHBOURS = 3  # sample points a placed feature is averaged over
UMAP_NEIGHBOURS = 15
MINIBATCH_ABOVE = 100_000  # k-means on the map: full Lloyd below, mini-batch above


@dataclass(frozen=True)
class FeatureMap:
    x: np.ndarray  # float32 [d_sae]
    y: np.ndarray
    cluster: np.ndarray  # int64
    fitted: int  # points UMAP was fitted on (the rest placed)


def flat_map(n: int) -> FeatureMap:
    """The honest 'no map' answer (--no-umap): every feature at the origin in cluster 0."""
    return FeatureMap(np.zeros(n, np.float32), np.zeros(n, np.float32), np.zeros(n, np.int64), 0)


def umap_map(w_dec: torch.Tensor, seed: int = 0, n_clusters: int | None = None, graph: Neighbours | None = None,
             fit_up_to: int = FIT_UP_TO) -> FeatureMap:
    """UMAP (cosine) of the decoder rows; `graph` (exact neighbours of all rows, best first) saves UMAP
    its own neighbour search when every point is fitted."""
    w = unit_rows(w_dec)
    n = len(w)
    if n < 8:  # UMAP needs a few points; a circle is the honest map of almost nothing
        angle = np.linspace(0, 2 * np.pi, n, endpoint=False)
        return FeatureMap(np.cos(angle).astype(np.float32), np.sin(angle).astype(np.float32),
                          np.zeros(n, np.int64), n)
    if n <= fit_up_to:
        usable = graph is not None and graph.method == "exact" and graph.ids.shape[1] >= UMAP_NEIGHBOURS - 1 \
            and bool((graph.ids[:, : UMAP_NEIGHBOURS - 1] >= 0).all())
        xy = _fit(w, seed, graph if usable else None)
        fitted = n
    else:
        sample = np.sort(np.random.default_rng(seed).choice(n, fit_up_to, replace=False))
        xy = np.empty((n, 2), np.float32)
        xy[sample] = _fit(w[sample], seed, None)
        rest = np.setdiff1d(np.arange(n), sample)
        xy[rest] = place(w[rest], w[sample], xy[sample])
        fitted = fit_up_to
    return FeatureMap(xy[:, 0].copy(), xy[:, 1].copy(), clusters_on(xy, seed, n_clusters), fitted)


def _fit(w: torch.Tensor, seed: int, graph: Neighbours | None) -> np.ndarray:
    """UMAP on unit rows, always on an exact neighbour graph: the blocked matmul takes seconds at 32k points,
    where UMAP's own NN-descent takes longer and compiles its numba code first (~20 s a process)."""
    from umap import UMAP

    n_neighbors = min(UMAP_NEIGHBOURS, len(w) - 1)
    graph = graph or exact_neighbours(w, n_neighbors - 1)
    ids, dists = graph.umap_knn(n_neighbors)
    reducer = UMAP(n_components=2, metric="cosine", n_neighbors=n_neighbors, min_dist=0.05, random_state=seed,
                   low_memory=True, n_jobs=1, precomputed_knn=(ids, dists, None))
    with warnings.catch_warnings():  # "no search index: transform unavailable" (placement is ours)
        warnings.simplefilter("ignore", UserWarning)
        return reducer.fit_transform(w.numpy()).astype(np.float32)


@torch.no_grad()
def place(points: torch.Tensor, anchors: torch.Tensor, anchor_xy: np.ndarray) -> np.ndarray:
    """Each unit row of `points` at the mean of its PLACE_NEIGHBOURS most similar `anchors`' positions,
    weighted by exp(-gap / sigma) like UMAP's smooth kNN, with sigma half the mean gap to the nearest: sharper
    than UMAP's own (which gives the nearest only ~60%), so a point on top of an anchor lands near it."""
    low = candidate_rows(anchors)
    anchor_xy_t = torch.from_numpy(anchor_xy)
    block = max(256, BLOCK_BYTES // (len(anchors) * low.element_size()))
    out = np.empty((len(points), 2), np.float32)
    for start in range(0, len(points), block):
        sims = similarities(points[start : start + block].to(low.dtype), low)
        top_values, top_indices = row_topk(sims, PLACE_NEIGHBOURS)
        dist = 1.0 - top_values.float()
        gap = dist - dist[:, :1]
        sigma = 0.5 * gap.mean(dim=1, keepdim=True).clamp_min(1e-6)
        weight = torch.exp(-gap / sigma)
        weight = weight / weight.sum(dim=1, keepdim=True)
        out[start : start + block] = (anchor_xy_t[top_indices] * weight[..., None]).sum(dim=1).numpy()
    return out


def clusters_on(xy: np.ndarray, seed: int, n_clusters: int | None = None) -> np.ndarray:
    from sklearn.cluster import KMeans, MiniBatchKMeans

    n = len(xy)
    k = min(n_clusters or int(np.clip(round(np.sqrt(n / 4)), 2, 64)), n)
    if n > MINIBATCH_ABOVE:
        model = MiniBatchKMeans(n_clusters=k, batch_size=8192, n_init=3, random_state=seed)
    else:
        model = KMeans(n_clusters=k, n_init=3, random_state=seed)
    return model.fit_predict(xy).astype(np.int64)
