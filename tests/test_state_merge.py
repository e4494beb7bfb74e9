"""Mergeable state: state(A) ⊕ state(B) equals state(A ∪ B) exactly for every deterministic statistic,
and interval samples stay valid, uniform samples (chi-square over a fixed set of seeds)."""

from __future__ import annotations

import pytest
import torch
from scipy.stats import chisquare

from backend.index.accumulators import bin_of
from backend.index.sparse import SparseBatch
from backend.index.state import IndexState, StateShape

D_SAE, N_CTX, BATCH_ROWS = 12, 16, 4
SHAPE = StateShape(d_sae=D_SAE, n_hist_bins=16, top_k=4, window_before=2, window_after=1, n_intervals=4,
                   per_interval=3, coact_rows_per_batch=2, batch_size=BATCH_ROWS, seed=0)


def random_batches(n: int, seed: int) -> list[SparseBatch]:
    """Batches of rows whose features fire at random, with ranges that grow from batch to batch (so bounds
    double inside one stream and differ between the two halves) and some exact ties."""
    gen = torch.Generator().manual_seed(seed)
    out = []
    for b in range(n):
        dense = torch.rand(BATCH_ROWS, N_CTX, D_SAE, generator=gen)
        dense = torch.where(dense > 0.8, dense * (1 + b) ** 1.5, torch.zeros(()))
        dense[..., 0] = torch.where(dense[..., 0] > 0, 2.0, 0.0)  # feature 0: ties everywhere
        dense[..., -1] = 0  # a dead feature
        out.append(SparseBatch.from_dense(dense, row_offset=b * BATCH_ROWS))
    return out


def stream(batches: list[SparseBatch], shape: StateShape, first_row: int = 0) -> IndexState:
    state = IndexState.create(shape)
    state.first_row = first_row
    for batch in batches:
        state.update(batch, torch.ones(batch.n_rows, batch.n_ctx, dtype=torch.bool))
    return state


@pytest.fixture(scope="module")
def merged_and_whole():
    batches = random_batches(10, seed=3)
    whole = stream(batches, SHAPE)
    a = stream(batches[:4], SHAPE.for_shard(0))
    b = stream(batches[4:], SHAPE.for_shard(1), first_row=4 * BATCH_ROWS)
    a.merge(b)
    return a, whole, batches


def test_counts_sums_maxima_histograms_equal_one_stream(merged_and_whole):
    merged, whole, _ = merged_and_whole
    assert merged.rows == whole.rows and merged.stats.tokens == whole.stats.tokens
    assert torch.equal(merged.stats.count, whole.stats.count)
    torch.testing.assert_close(merged.stats.total, whole.stats.total, rtol=1e-12, atol=0)
    assert torch.equal(merged.stats.max, whole.stats.max)
    assert torch.equal(merged.stats.bound, whole.stats.bound)
    assert torch.equal(merged.stats.hist, whole.stats.hist)


def test_top_examples_equal_one_stream_with_the_fixed_tie_break(merged_and_whole):
    merged, whole, _ = merged_and_whole
    assert torch.equal(merged.top.examples.value, whole.top.examples.value)
    assert torch.equal(merged.top.examples.token, whole.top.examples.token)


def test_coactivation_equals_one_stream(merged_and_whole):
    merged, whole, _ = merged_and_whole
    whole.coact.flush()
    assert torch.equal(merged.coact.keys, whole.coact.keys)
    assert torch.equal(merged.coact.counts, whole.coact.counts)
    assert torch.equal(merged.coact.fires, whole.coact.fires) and merged.coact.tokens == whole.coact.tokens


def test_merged_interval_samples_are_valid(merged_and_whole):
    merged, _, batches = merged_and_whole
    values = {(int(t), int(f)): float(v) for b in batches
              for t, f, v in zip(b.global_token.tolist(), b.feat.tolist(), b.val.tolist(), strict=True)}
    for f in range(D_SAE):
        bound = merged.stats.bound[f]
        mine = torch.tensor([v for (_, g), v in values.items() if g == f])
        for j in range(SHAPE.n_intervals):
            kept_v = merged.intervals.examples.value[f, j]
            kept_t = merged.intervals.examples.token[f, j]
            filled = torch.isfinite(kept_v)
            in_interval = int((bin_of(mine, bound, SHAPE.n_intervals) == j).sum()) if len(mine) else 0
            assert int(filled.sum()) == min(SHAPE.per_interval, in_interval), "counts per interval add up"
            for v, t in zip(kept_v[filled].tolist(), kept_t[filled].tolist(), strict=True):
                assert values[(t, f)] == v, "each kept example is a real activation"
                assert int(bin_of(torch.tensor([v]), bound, SHAPE.n_intervals)) == j, "inside its interval"


def test_merged_interval_inclusion_is_uniform_over_seeds():
    """20 equal-interval entries of one feature, 8 in shard A and 12 in B; over 300 seeds each entry
    is kept 300 * 3 / 20 = 45 times on average: chi-square against uniform."""
    shape = StateShape(d_sae=1, n_hist_bins=4, top_k=1, window_before=0, window_after=0, n_intervals=1,
                       per_interval=3, coact_rows_per_batch=0, batch_size=1, seed=0)
    values = torch.linspace(0.5, 0.9, 20)

    def batch(lo: int, hi: int) -> SparseBatch:
        n = hi - lo
        return SparseBatch(rows=torch.zeros(n, dtype=torch.long), pos=torch.arange(lo, hi),
                           feat=torch.zeros(n, dtype=torch.long), val=values[lo:hi], n_rows=1, n_ctx=20, d_sae=1,
                           row_offset=0)

    counts = torch.zeros(20)
    for seed in range(300):
        s = StateShape(**{**shape.__dict__, "seed": seed})
        a, b = IndexState.create(s.for_shard(0)), IndexState.create(s.for_shard(1))
        a.stats.grow_bounds(torch.tensor([1.0]), a.intervals.on_double)
        b.stats.grow_bounds(torch.tensor([1.0]), b.intervals.on_double)
        a.intervals.update(batch(0, 8), a.stats.bound)
        b.intervals.update(batch(8, 20), b.stats.bound)
        a.intervals.merge(b.intervals)
        kept = a.intervals.examples.token[0, 0]
        counts[kept[kept >= 0]] += 1
    assert counts.sum() == 300 * 3
    assert chisquare(counts.numpy()).pvalue > 0.001, counts.tolist()


def test_a_shard_that_does_not_follow_is_refused():
    a, b = IndexState.create(SHAPE), IndexState.create(SHAPE)
    a.rows, b.first_row = 4, 8
    with pytest.raises(ValueError, match="does not follow"):
        a.merge(b)
