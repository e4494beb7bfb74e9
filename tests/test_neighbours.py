"""Decoder neighbours (exact blocked, NN-descent above the threshold) and the map at scale, against brute force."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from backend.index.feature_map import clusters_on, place, umap_map
from backend.index.neighbours import (
    approximate_neighbours,
    decoder_neighbours,
    exact_neighbours,
    recall_at_k,
    row_topk,
    unit_rows,
)


def brute_top(w: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    u = unit_rows(w)
    sims = u @ u.T
    sims.fill_diagonal_(float("-inf"))
    top = sims.topk(k, dim=1)
    return top.indices, top.values


def families(n_families: int, per_family: int, d: int, spread: float, seed: int = 0) -> torch.Tensor:
    """Decoder rows in tight families around random centres: the structure feature splitting gives real SAEs."""
    gen = torch.Generator().manual_seed(seed)
    centres = torch.randn(n_families, d, generator=gen)
    rows = centres.repeat_interleave(per_family, 0) + spread * torch.randn(n_families * per_family, d, generator=gen)
    return rows[torch.randperm(len(rows), generator=gen)]


def test_exact_neighbours_equal_brute_force_in_small_blocks():
    w = torch.randn(1000, 48, generator=torch.Generator().manual_seed(1))
    got = exact_neighbours(w, 10, block=97)  # blocks that do not divide n
    ids, values = brute_top(w, 10)
    assert torch.equal(got.ids, ids)
    assert torch.allclose(got.scores, values, atol=1e-5)
    assert got.method == "exact"
    assert not (got.ids == torch.arange(1000)[:, None]).any()


def test_exact_neighbours_pad_when_there_are_fewer_features_than_k():
    got = exact_neighbours(torch.randn(4, 8), 10)
    assert got.ids.shape == (4, 10)
    assert (got.ids[:, :3] >= 0).all() and (got.ids[:, 3:] == -1).all()
    assert (got.scores[:, 3:] == 0).all()


def test_exact_neighbours_rescore_in_float32_so_near_ties_keep_their_order():
    # 20 near-copies (fewer than k + CANDIDATES) and 200 others: bf16 sees the copies tied, float32 orders them
    gen = torch.Generator().manual_seed(2)
    base = torch.randn(1, 64, generator=gen)
    w = torch.cat([base, base + 0.02 * torch.randn(20, 64, generator=gen), torch.randn(200, 64, generator=gen)])
    got = exact_neighbours(w, 5)
    ids, values = brute_top(w, 5)
    assert torch.equal(got.ids[0], ids[0])  # differences far below bf16's resolution
    assert torch.allclose(got.scores, values, atol=1e-6)


def test_nn_descent_recall_on_feature_families():
    w = families(n_families=400, per_family=12, d=64, spread=0.35)
    found = approximate_neighbours(w, 10, seed=0)
    exact, _ = brute_top(w, 10)
    assert found.method == "nndescent"
    assert recall_at_k(found.ids, exact) >= 0.95
    u = unit_rows(w)
    rows = torch.arange(len(w))[:, None]
    assert torch.allclose(found.scores, (u[rows] * u[found.ids]).sum(-1), atol=1e-4)  # scores are real cosines
    assert not (found.ids == rows).any()


def test_decoder_neighbours_switch_at_the_threshold():
    w = families(50, 8, 32, 0.3)
    assert decoder_neighbours(w, 5, exact_up_to=len(w)).method == "exact"
    assert decoder_neighbours(w, 5, exact_up_to=len(w) - 1).method == "nndescent"


def test_recall_at_k_counts_shared_ids():
    assert recall_at_k(torch.tensor([[1, 2, 3]]), torch.tensor([[3, 4, 1]])) == pytest.approx(2 / 3)
    assert recall_at_k(torch.tensor([[1, -1]]), torch.tensor([[1, -1]])) == 1.0


def test_place_is_the_weighted_mean_of_the_nearest_anchors():
    gen = torch.Generator().manual_seed(3)
    anchors = unit_rows(torch.randn(50, 16, generator=gen))
    anchor_xy = np.random.default_rng(0).normal(size=(50, 2)).astype(np.float32)
    points = unit_rows(torch.randn(7, 16, generator=gen))
    got = place(points, anchors, anchor_xy)
    for p, xy in zip(points, got, strict=True):
        sims = (anchors.bfloat16() @ p.bfloat16()).float()
        top = sims.topk(3)
        lo, hi = anchor_xy[top.indices.numpy()].min(0), anchor_xy[top.indices.numpy()].max(0)
        assert np.all(xy >= lo - 1e-5) and np.all(xy <= hi + 1e-5)  # inside the box of its three anchors
    assert np.allclose(place(anchors[:5], anchors, anchor_xy), anchor_xy[:5], atol=0.5)  # an anchor stays near itself


def test_umap_on_a_sample_places_every_feature_near_its_family():
    w = families(n_families=6, per_family=120, d=32, spread=0.15)
    fmap = umap_map(w, seed=0, n_clusters=6, fit_up_to=240)
    assert fmap.fitted == 240
    assert len(fmap.x) == len(w) and np.isfinite(fmap.x).all() and np.isfinite(fmap.y).all()
    # same family -> same k-means cluster on the map, for nearly all features
    u = unit_rows(w)
    family = (u @ u.T > 0.8).float().argmax(1).numpy()  # first member of a feature's family
    agree = [np.bincount(fmap.cluster[family == f]).max() / (family == f).sum() for f in np.unique(family)]
    assert np.mean(agree) >= 0.9


def test_umap_uses_the_exact_graph_when_it_fits_everything():
    w = families(8, 30, 32, 0.2)
    graph = exact_neighbours(w, 14)
    fmap = umap_map(w, seed=0, graph=graph)
    assert fmap.fitted == len(w)
    assert np.isfinite(fmap.x).all()


def test_clusters_on_uses_minibatch_above_its_threshold(monkeypatch):
    import backend.index.feature_map as fm

    xy = np.concatenate([np.random.default_rng(0).normal(c, 0.1, size=(200, 2)) for c in (0, 5, 10)])
    monkeypatch.setattr(fm, "MINIBATCH_ABOVE", 100)
    labels = clusters_on(xy.astype(np.float32), seed=0, n_clusters=3)
    assert [len(set(labels[i * 200:(i + 1) * 200])) for i in range(3)] == [1, 1, 1]


@pytest.mark.parametrize("width", [50, 1000, 4096 + 37])
def test_row_topk_equals_torch_topk_on_wide_ragged_and_tied_rows(width):
    """The chunk-maxima shortcut is exact: same values as topk, and indices holding those values."""
    gen = torch.Generator().manual_seed(width)
    sims = torch.randn(33, width, generator=gen)
    sims[:, ::7] = sims[:, :1]  # ties across chunks
    sims[0] = float("-inf")
    sims[0, width - 3 :] = 1.0  # a row whose best lie only in the ragged tail
    for k in (1, 3, 14):
        values, indices = row_topk(sims, k)
        want = sims.topk(k, dim=1)
        assert torch.equal(values, want.values)
        assert torch.equal(sims.gather(1, indices), values)
        assert all(len(set(row)) == k for row in indices.tolist())
