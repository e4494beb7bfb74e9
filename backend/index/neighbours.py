"""Decoder-cosine neighbours of every feature: exact by blocked matmul while that is fast, approximate
(NN-descent, the `pynndescent` that UMAP is built on) above it. Memory stays O(d_sae · k)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

EXACT_UP_TO = 262_144  # exact all-pairs below this: 65k features take ~15 s on 2 cores, 262k ~4 min
# extra bf16 candidates per row, re-scored in float32, so bf16 ties do not decide the order; only a feature with
# more than k + CANDIDATES near-copies (cosines within bf16's 2^-8 of each other) keeps an arbitrary k of them
CANDIDATES = 16
BLOCK_BYTES = 2**26  # one block's similarity matrix: 64 MB, bf16 or float32 (4x that buys no speed, costs 200 MB)


def fast_low_precision() -> bool:
    """Whether this CPU multiplies bf16 natively (AVX512-BF16 or AMX). Without it PyTorch converts and runs
    bf16 matmuls several times slower than float32 (3.6x on a 2-core AMD EPYC: 65k neighbours 166 s vs ~45 s)."""
    try:
        with open("/proc/cpuinfo") as f:
            flags = next((line for line in f if line.startswith("flags")), "").split()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def candidate_rows(unit: torch.Tensor) -> torch.Tensor:
    """The copy of unit rows that candidate matmuls use: bf16 where that is fast (accelerators, CPUs with bf16
    units), else the float32 rows themselves (no copy); the candidates are re-scored in float32 either way."""
    if unit.device.type != "cpu" or fast_low_precision():
        return unit.to(torch.bfloat16)
    return unit


@dataclass(frozen=True)
class Neighbours:
    """Each feature's k nearest other features, best first; -1 marks an empty slot."""

    ids: torch.Tensor  # [d_sae, k] int64
    scores: torch.Tensor  # [d_sae, k] float32 (cosine, or Jaccard for co-activation)
    method: str = "exact"

    def first(self, k: int) -> Neighbours:
        return Neighbours(self.ids[:, :k], self.scores[:, :k], self.method)

    def umap_knn(self, n_neighbors: int) -> tuple[np.ndarray, np.ndarray]:
        """UMAP's precomputed_knn form: each point its own first neighbour at distance 0, cosine distance after."""
        n = len(self.ids)
        ids = np.concatenate([np.arange(n)[:, None], self.ids[:, : n_neighbors - 1].numpy()], axis=1)
        dists = np.concatenate([np.zeros((n, 1), np.float32),
                                (1.0 - self.scores[:, : n_neighbors - 1].numpy()).clip(0.0, 2.0)], axis=1)
        return ids.astype(np.int64), dists.astype(np.float32)


def unit_rows(w_dec: torch.Tensor) -> torch.Tensor:
    return torch.nn.functional.normalize(w_dec.detach().float(), dim=1)


def decoder_neighbours(w_dec: torch.Tensor, k: int, exact_up_to: int = EXACT_UP_TO, seed: int = 0) -> Neighbours:
    """Top-k other features by decoder cosine; exact up to `exact_up_to` features, NN-descent above."""
    if len(w_dec) <= exact_up_to:
        return exact_neighbours(w_dec, k)
    return approximate_neighbours(w_dec, k, seed)


def similarities(rows: torch.Tensor, others: torch.Tensor, out: np.ndarray | None = None) -> torch.Tensor:
    """rows @ others.T. Float32 on a CPU goes through NumPy's OpenBLAS, which ran this 2-3x faster than
    PyTorch's MKL on the AMD EPYC we measured (148 vs 61-84 GFLOPS for 256 x 65,536 x 256); `out` reuses
    one buffer across blocks, so a block's similarity matrix is not allocated afresh each time."""
    if rows.device.type == "cpu" and rows.dtype == torch.float32:
        return torch.from_numpy(np.matmul(rows.numpy(), others.numpy().T, out=out))
    return rows @ others.T


def row_topk(sims: torch.Tensor, k: int, chunk: int = 64) -> tuple[torch.Tensor, torch.Tensor]:
    """`sims.topk(k, dim=1)` (values, indices), ~2x faster on wide rows: the k chunks of `chunk` columns with
    the highest maxima hold every one of a row's k largest values (each of those lies in a chunk whose maximum
    is at least the k-th value, and at most k chunks can), so the top k is taken among those k * chunk only."""
    b, n = sims.shape
    whole = n // chunk
    if whole <= 2 * k:
        top = sims.topk(k, dim=1)
        return top.values, top.indices
    maxima = sims[:, : whole * chunk].unflatten(1, (whole, chunk)).amax(dim=2)
    first = maxima.topk(k, dim=1).indices * chunk
    cols = (first[:, :, None] + torch.arange(chunk, device=sims.device)).reshape(b, -1)
    if whole * chunk < n:  # the ragged last columns are always candidates
        cols = torch.cat([cols, torch.arange(whole * chunk, n, device=sims.device).expand(b, -1)], dim=1)
    top = sims.gather(1, cols).topk(k, dim=1)
    return top.values, cols.gather(1, top.indices)


@torch.no_grad()
def exact_neighbours(w_dec: torch.Tensor, k: int, block: int | None = None) -> Neighbours:
    """All pairs, one block of rows at a time. Where bf16 is fast (accelerators, CPUs with AMX/AVX-512-BF16)
    a bf16 matmul picks k + CANDIDATES candidates that are re-scored in float32; elsewhere the float32
    similarities are exact already and give the top k directly. (Multiplying only the upper triangle halves
    the matmul, but torch's column-wise top-k then costs more than that saves: measured, 27 s vs 25 s at 65k.)"""
    w = unit_rows(w_dec)
    n = len(w)
    k_eff = min(k, n - 1)
    ids = torch.full((n, k), -1, dtype=torch.long)
    scores = torch.zeros((n, k))
    if k_eff <= 0:
        return Neighbours(ids, scores)
    low = candidate_rows(w)
    rescore = low.dtype != torch.float32
    n_cand = min(k_eff + CANDIDATES, n) if rescore else k_eff
    block = block or max(256, BLOCK_BYTES // (n * low.element_size()))
    buffer = np.empty((min(block, n), n), np.float32) if not rescore and w.device.type == "cpu" else None
    for start in range(0, n, block):
        stop = min(start + block, n)
        sims = similarities(low[start:stop], low, None if buffer is None else buffer[: stop - start])  # [block, n]
        rows = torch.arange(stop - start)
        sims[rows, rows + start] = float("-inf")  # never your own neighbour
        top_values, cand = row_topk(sims, n_cand)
        if rescore:
            exact = torch.einsum("bd,bcd->bc", w[start:stop], w[cand])
            exact[cand == (rows + start)[:, None]] = float("-inf")
            best = exact.topk(k_eff, dim=1)
            ids[start:stop, :k_eff] = cand.gather(1, best.indices)
            scores[start:stop, :k_eff] = best.values
        else:
            ids[start:stop, :k_eff], scores[start:stop, :k_eff] = cand, top_values
    return Neighbours(ids, scores, "exact")


def approximate_neighbours(w_dec: torch.Tensor, k: int, seed: int = 0, n_neighbors: int = 30) -> Neighbours:
    """NN-descent on unit rows with the dot metric (= cosine). `n_neighbors` > k widens the search,
    which buys recall for the cost of time; the graph is then cut to k."""
    from pynndescent import NNDescent

    w = unit_rows(w_dec).numpy()
    n = len(w)
    search = NNDescent(w, metric="dot", n_neighbors=min(max(n_neighbors, k + 1), n - 1), random_state=seed,
                       low_memory=True, n_jobs=None, compressed=True, verbose=False)
    graph_ids, graph_dists = search.neighbor_graph
    del search
    ids, scores = _drop_self(graph_ids, 1.0 - graph_dists, k)
    return Neighbours(torch.from_numpy(ids), torch.from_numpy(scores.astype(np.float32)), "nndescent")


def _drop_self(ids: np.ndarray, scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Remove each row's own id (and NN-descent's -1 padding), keep the first k, best first."""
    n = len(ids)
    own = (ids == np.arange(n)[:, None]) | (ids < 0)
    scores = np.where(own, -np.inf, scores)
    order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    out_ids = np.take_along_axis(ids, order, axis=1).astype(np.int64)
    out_scores = np.take_along_axis(scores, order, axis=1)
    empty = ~np.isfinite(out_scores)
    out_ids[empty], out_scores[empty] = -1, 0.0
    if out_ids.shape[1] < k:  # fewer candidates than k: pad
        pad = k - out_ids.shape[1]
        out_ids = np.pad(out_ids, ((0, 0), (0, pad)), constant_values=-1)
        out_scores = np.pad(out_scores, ((0, 0), (0, pad)))
    return out_ids, out_scores


def recall_at_k(found: torch.Tensor, exact: torch.Tensor) -> float:
    """Fraction of the exact top-k ids (rows of `exact`, -1 ignored) that `found` also has."""
    hits = total = 0
    for got, want in zip(found.tolist(), exact.tolist(), strict=True):
        want = {i for i in want if i >= 0}
        hits += len(want & set(got))
        total += len(want)
    return hits / max(total, 1)
