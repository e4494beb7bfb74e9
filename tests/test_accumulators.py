"""Unit checks of the streaming state pieces that the end-to-end brute-force test cannot
isolate: sparse pair-table merges, range doubling, and ranks within groups."""

from __future__ import annotations

import torch

from backend.index.accumulators import (
    CoActivation,
    FeatureStats,
    IntervalSamples,
    TopExamples,
    batch_max,
    bin_of,
    power_of_two_at_least,
)
from backend.index.sparse import SparseBatch, rank_within_groups


def test_pair_table_merges_exactly_across_flushes():
    table = CoActivation(d_sae=100, rows_per_batch=1, batch_size=4, flush_at=50)
    expected: dict[int, int] = {}
    gen = torch.Generator().manual_seed(0)
    for _ in range(40):
        keys = torch.randint(0, 300, (37,), generator=gen).to(table.key_dtype)
        for k in keys.tolist():
            expected[k] = expected.get(k, 0) + 1
        table._pending.append(keys)
        table._pending_n += len(keys)
        if table._pending_n >= table.flush_at:
            table.flush()
    table.flush()
    assert table.keys.tolist() == sorted(expected)
    assert table.counts.tolist() == [expected[k] for k in sorted(expected)]


def _batch(values: list[float], feature: int = 0) -> SparseBatch:
    n = len(values)
    return SparseBatch(rows=torch.zeros(n, dtype=torch.long), pos=torch.arange(n), feat=torch.full((n,), feature),
                       val=torch.tensor(values), n_rows=1, n_ctx=n, d_sae=2, row_offset=0)


def test_histogram_and_intervals_survive_bound_doubling():
    stats = FeatureStats(d_sae=2, n_bins=8)
    intervals = IntervalSamples(d_sae=2, n_groups=4, per_group=3, seed=0)
    seen: list[float] = []  # float32 values, as the accumulators store them
    for values in ([0.5, 1.0, 0.25], [3.0, 0.1], [7.5, 7.0, 2.0, 0.9]):  # the max grows twice, by x3 then x2.5
        batch = _batch(values)
        stats.grow_bounds(batch_max(batch), intervals.on_double)
        stats.update(batch, len(values))
        intervals.update(batch, stats.bound)
        seen += torch.tensor(values).tolist()
    bound = stats.bound[0].item()
    assert stats.max[0].item() == 7.5 and bound == 8.0, "bounds are powers of two: shards share one grid"
    everything = torch.tensor(seen)
    assert stats.hist[0].tolist() == torch.bincount(bin_of(everything, torch.tensor(bound), 8), minlength=8).tolist()
    width = bound / 4
    for g in range(4):
        members = [v for v in seen if g * width < v <= (g + 1) * width]
        kept = intervals.examples.value[0, g]
        kept = kept[torch.isfinite(kept)].tolist()
        assert len(kept) == min(3, len(members)) and set(kept) <= set(members)
    assert stats.hist[1].sum() == 0 and stats.bound[1] == 0


def test_rank_within_groups():
    assert rank_within_groups(torch.tensor([0, 0, 0, 2, 2, 5])).tolist() == [0, 1, 2, 0, 1, 0]
    assert rank_within_groups(torch.tensor([], dtype=torch.long)).tolist() == []


def test_power_of_two_bounds_are_exact():
    values = torch.tensor([0.3, 0.5, 1.0, 1.0001, 7.5, 8.0, 1e-20, 3e30])
    bounds = power_of_two_at_least(values)
    assert bounds.tolist() == [0.5, 0.5, 1.0, 2.0, 8.0, 8.0, 2.0 ** -66, 2.0 ** 102]
    assert ((bounds >= values) & (bounds / 2 < values)).all()


def test_top_examples_break_ties_by_the_earlier_token():
    top = TopExamples(d_sae=2, k=2, before=0, after=0)
    for offset in (0, 1, 2):  # three batches of one row; feature 0 ties at 2.0 in every one of them
        top.update(SparseBatch(rows=torch.zeros(2, dtype=torch.long), pos=torch.tensor([0, 3]),
                               feat=torch.tensor([0, 0]), val=torch.tensor([2.0, 2.0]), n_rows=1, n_ctx=4, d_sae=2,
                               row_offset=offset))
    assert top.examples.value[0].tolist() == [2.0, 2.0]
    assert top.examples.token[0].tolist() == [0, 3], "equal values: the earliest tokens win, in order"
    assert top.examples.token[1].tolist() == [-1, -1]
