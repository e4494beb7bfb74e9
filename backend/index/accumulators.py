"""Bounded per-feature state updated one batch at a time (the streaming half of the index).

Memory is fixed by d_sae and the options, never by the number of tokens, and holds no token
windows: an example slot is (value, global token index); windows are read at the end from the
token rows kept on disk (backend/index/windows.py).

Activation ranges: a feature's histogram bins and interval groups are equal slices of
(0, bound], where bound is the smallest power of two at or above the feature's max and doubles
whenever a larger value arrives; doubling merges neighbouring bins exactly, so counts and samples
stay exact without knowing the final max in advance, and two states built on different tokens
share one grid of bounds (what makes them mergeable). Published bins stop at the bin holding max.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from backend.index.sparse import SparseBatch, rank_within_groups, sort_by_group_then

NEG_INF = float("-inf")


def bin_of(values: torch.Tensor, bound: torch.Tensor, n_bins: int) -> torch.Tensor:
    """Bin j holds values in (j·w, (j+1)·w] with w = bound / n_bins (zero never counts)."""
    return (torch.ceil(values / bound * n_bins).long() - 1).clamp(0, n_bins - 1)


def power_of_two_at_least(values: torch.Tensor) -> torch.Tensor:
    """The smallest power of two >= each (positive) value, computed exactly with frexp."""
    mantissa, exponent = torch.frexp(values)  # values = mantissa * 2**exponent, mantissa in [0.5, 1)
    exponent = torch.where(mantissa == 0.5, exponent - 1, exponent)
    return torch.ldexp(torch.ones_like(values), exponent)


def _halve_bins(hist: torch.Tensor) -> torch.Tensor:
    """[n, B] counts -> bins (2j, 2j+1) merged into j, upper half emptied."""
    n, b = hist.shape
    merged = hist.view(n, b // 2, 2).sum(2, dtype=hist.dtype)
    return torch.cat([merged, torch.zeros_like(merged)], dim=1)


class FeatureStats:
    """Count, sum, max and a histogram of nonzero activations per feature; owns the range."""

    def __init__(self, d_sae: int, n_bins: int):
        self.count = torch.zeros(d_sae, dtype=torch.long)
        self.total = torch.zeros(d_sae, dtype=torch.float64)
        self.max = torch.zeros(d_sae)
        self.bound = torch.zeros(d_sae)  # 0 = never fired
        self.hist = torch.zeros(d_sae, n_bins, dtype=torch.int32)  # int32: 2^31 firings per bin is plenty
        self.n_bins = n_bins
        self.tokens = 0

    def grow_bounds(self, batch_max: torch.Tensor, on_double) -> None:
        """Raise each feature's bound to cover `batch_max` [d_sae], doubling (and merging bins)."""
        self.raise_bounds(power_of_two_at_least(batch_max.clamp_min(torch.finfo(batch_max.dtype).tiny))
                          * (batch_max > 0), on_double)
        self.max = torch.maximum(self.max, batch_max)

    def raise_bounds(self, target: torch.Tensor, on_double) -> None:
        """Bounds become max(bound, target) (both powers of two or 0): a feature's first bound is set,
        a smaller one doubles until it gets there, merging bins (and, through `on_double`, intervals)."""
        first = (self.bound == 0) & (target > 0)
        self.bound[first] = target[first]
        while True:
            grow = (target > self.bound).nonzero().squeeze(1)
            if grow.numel() == 0:
                break
            self.hist[grow] = _halve_bins(self.hist[grow])
            on_double(grow)
            self.bound[grow] *= 2

    def merge(self, other: FeatureStats) -> None:
        """Add the counts of `other` (whose bounds were raised to this one's: see IndexState.merge)."""
        assert torch.equal(self.bound, other.bound), "raise both states' bounds to their maximum first"
        self.count += other.count
        self.total += other.total
        self.max = torch.maximum(self.max, other.max)
        self.hist += other.hist
        self.tokens += other.tokens

    def update(self, batch: SparseBatch, n_tokens: int) -> None:
        self.tokens += n_tokens
        self.count += torch.bincount(batch.feat, minlength=len(self.count))
        self.total.index_add_(0, batch.feat, batch.val.double())
        b = bin_of(batch.val, self.bound[batch.feat], self.n_bins)
        flat = batch.feat * self.n_bins + b
        self.hist.view(-1).index_add_(0, flat, torch.ones_like(flat, dtype=torch.int32))


def batch_max(batch: SparseBatch) -> torch.Tensor:
    return torch.zeros(batch.d_sae).scatter_reduce(0, batch.feat, batch.val, "amax")


@dataclass
class ExampleSet:
    """Fixed-shape example slots: [d_sae, slots] (or [d_sae, groups, slots]) tensors."""

    value: torch.Tensor  # float32, -inf = empty slot
    token: torch.Tensor  # int64 global token index (row * n_ctx + pos), -1 = empty

    @classmethod
    def empty(cls, shape: tuple[int, ...]) -> ExampleSet:
        return cls(torch.full(shape, NEG_INF), torch.full(shape, -1, dtype=torch.long))

    def take(self, index: torch.Tensor, dim: int) -> ExampleSet:
        return ExampleSet(torch.gather(self.value, dim, index), torch.gather(self.token, dim, index))

    @staticmethod
    def cat(a: ExampleSet, b: ExampleSet, dim: int) -> ExampleSet:
        return ExampleSet(torch.cat([a.value, b.value], dim), torch.cat([a.token, b.token], dim))

    def rows(self, features: torch.Tensor) -> ExampleSet:
        return ExampleSet(self.value[features], self.token[features])

    def assign(self, features: torch.Tensor, other: ExampleSet) -> None:
        """Overwrite the slots of `features` (first dim) with `other`."""
        self.value[features] = other.value
        self.token[features] = other.token


def best_first(examples: ExampleSet, k: int, dim: int) -> torch.Tensor:
    """Indices along `dim` of the k best entries: value descending, ties to the earlier token (a fixed
    tie-break, so that top examples merged from shards equal those of one stream)."""
    by_token = torch.sort(torch.where(examples.token < 0, torch.iinfo(torch.long).max, examples.token),
                          dim=dim, stable=True).indices
    by_value = torch.sort(torch.gather(examples.value, dim, by_token), dim=dim, descending=True, stable=True).indices
    return torch.gather(by_token, dim, by_value).narrow(dim, 0, k)


def _touched(features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The distinct features among `features`, and each entry's row in that short list.

    Merging only these rows keeps the per-batch cost proportional to what changed."""
    touched, slot_row = torch.unique(features, return_inverse=True)
    return touched, slot_row


class TopExamples:
    """The k highest activations per feature whose windows never overlap.

    An entry is eligible only if it is the peak of its own window neighbourhood: strictly
    above every activation of the same feature in the `span` tokens before it and at least
    every one in the `span` tokens after it (span = before + after), so two eligible entries
    of one row are always more than `span` apart and their windows are disjoint."""

    def __init__(self, d_sae: int, k: int, before: int, after: int):
        self.k, self.before, self.after = k, before, after
        self.examples = ExampleSet.empty((d_sae, k))

    def peaks(self, batch: SparseBatch, among: torch.Tensor) -> torch.Tensor:
        """The entries of `among` that are peaks of their neighbourhood within `among`."""
        span = self.before + self.after
        grp_all = batch.feat[among] * batch.n_rows + batch.rows[among]
        perm = sort_by_group_then(grp_all, batch.pos[among], descending=False)
        order, grp = among[perm], grp_all[perm]
        pos, val = batch.pos[order], batch.val[order]
        keep = torch.ones(len(order), dtype=torch.bool)
        for shift in range(1, span + 1):
            same = (grp[shift:] == grp[:-shift]) & (pos[shift:] - pos[:-shift] <= span)
            if not same.any():
                break
            left, right = val[:-shift], val[shift:]
            keep[shift:] &= ~(same & (left >= right))  # an earlier value at least as large wins
            keep[:-shift] &= ~(same & (right > left))
        return order[keep].sort().values  # back in stream order: the tie-break relies on it

    def update(self, batch: SparseBatch) -> None:
        # Only values above a feature's k-th best so far can enter. Filtering before the peak test
        # is exact: any neighbour that could out-rank a surviving entry is larger, so it survives too.
        floor = self.examples.value[:, -1]  # slots are kept sorted, so this is the k-th best so far
        above = (batch.val > floor[batch.feat]).nonzero().squeeze(1)
        if above.numel() == 0:
            return
        cand = self.peaks(batch, above)
        cand = cand[sort_by_group_then(batch.feat[cand], batch.val[cand], descending=True)]  # stable: ties by token
        rank = rank_within_groups(batch.feat[cand])
        cand, rank = cand[rank < self.k], rank[rank < self.k]
        touched, row = _touched(batch.feat[cand])
        fresh = ExampleSet.empty((len(touched), self.k))
        fresh.value[row, rank] = batch.val[cand]
        fresh.token[row, rank] = batch.global_token[cand]
        self.merge_rows(touched, fresh)

    def merge_rows(self, features: torch.Tensor, fresh: ExampleSet) -> None:
        merged = ExampleSet.cat(self.examples.rows(features), fresh, 1)
        self.examples.assign(features, merged.take(best_first(merged, self.k, 1), 1))

    def merge(self, other: TopExamples) -> None:
        """The k best of both (built on disjoint rows, so their windows cannot overlap)."""
        self.merge_rows(torch.arange(len(self.examples.value)), other.examples)


class IntervalSamples:
    """Up to `per_group` examples per activation interval, a uniform sample without
    replacement inside each interval (priority sampling: keep the smallest random keys,
    which merges exactly across batches, interval doublings and shards)."""

    def __init__(self, d_sae: int, n_groups: int, per_group: int, seed: int):
        self.n_groups, self.per_group = n_groups, per_group
        self.examples = ExampleSet.empty((d_sae, n_groups, per_group))
        self.priority = torch.full((d_sae, n_groups, per_group), float("inf"))
        self.generator = torch.Generator().manual_seed(seed)

    def on_double(self, features: torch.Tensor) -> None:
        """Intervals (2j, 2j+1) become interval j: keep the smallest keys of the union."""
        n, g, s = len(features), self.n_groups, self.per_group
        pri = self.priority[features].view(n, g // 2, 2 * s)
        keep = pri.topk(s, dim=2, largest=False).indices
        pairs = self.examples.rows(features)
        pairs = ExampleSet(pairs.value.view(n, g // 2, 2 * s), pairs.token.view(n, g // 2, 2 * s))
        merged = ExampleSet.cat(pairs.take(keep, dim=2), ExampleSet.empty((n, g - g // 2, s)), dim=1)
        self.examples.assign(features, merged)
        self.priority[features] = torch.cat(
            [torch.gather(pri, 2, keep), torch.full((n, g - g // 2, s), float("inf"))], 1
        )

    def update(self, batch: SparseBatch, bound: torch.Tensor) -> None:
        key = torch.rand(len(batch.val), generator=self.generator)
        group = bin_of(batch.val, bound[batch.feat], self.n_groups)
        cell = batch.feat * self.n_groups + group
        ceiling = self.priority.view(-1, self.per_group).amax(dim=1)  # inf while a cell has room
        entering = (key < ceiling[cell]).nonzero().squeeze(1)
        if entering.numel() == 0:
            return
        order = entering[sort_by_group_then(cell[entering], key[entering], descending=False)]
        rank = rank_within_groups(cell[order])
        sel, rank = order[rank < self.per_group], rank[rank < self.per_group]
        touched, row = _touched(batch.feat[sel])
        shape = (len(touched), self.n_groups, self.per_group)
        fresh = ExampleSet.empty(shape)
        fresh.value[row, group[sel], rank] = batch.val[sel]
        fresh.token[row, group[sel], rank] = batch.global_token[sel]
        fresh_pri = torch.full(shape, float("inf"))
        fresh_pri[row, group[sel], rank] = key[sel]
        self.merge_rows(touched, fresh, fresh_pri)

    def merge_rows(self, features: torch.Tensor, fresh: ExampleSet, fresh_pri: torch.Tensor) -> None:
        """Each cell of `features` keeps the smallest priority keys of its current and fresh entries."""
        pri = torch.cat([self.priority[features], fresh_pri], dim=2)
        keep = pri.topk(self.per_group, dim=2, largest=False).indices
        self.priority[features] = torch.gather(pri, 2, keep)
        merged = ExampleSet.cat(self.examples.rows(features), fresh, 2)
        self.examples.assign(features, merged.take(keep, 2))

    def merge(self, other: IntervalSamples) -> None:
        """Smallest keys of both per interval (bounds raised to the same grid first): a uniform sample
        of the union, since every key is an independent uniform draw."""
        self.merge_rows(torch.arange(len(self.priority)), other.examples, other.priority)


class CoActivation:
    """Exact co-firing counts of feature pairs on a fixed subsample of rows, kept sparse
    (sorted pair keys + counts), so memory follows the pairs that occur, not d_sae²."""

    def __init__(self, d_sae: int, rows_per_batch: int, batch_size: int, flush_at: int = 8_000_000):
        # rows sampled by their global id (row % batch_size < rows_per_batch), so the sample does not
        # depend on where batches or shards start
        self.d_sae, self.rows_per_batch, self.batch_size, self.flush_at = d_sae, rows_per_batch, batch_size, flush_at
        # pair key a * d_sae + b; int32 halves sort traffic whenever it fits (d_sae <= 46,340)
        self.key_dtype = torch.int32 if d_sae * d_sae < 2**31 else torch.long
        self.keys = torch.zeros(0, dtype=self.key_dtype)
        self.counts = torch.zeros(0, dtype=torch.long)
        self.fires = torch.zeros(d_sae, dtype=torch.long)
        self.tokens = 0
        self._pending: list[torch.Tensor] = []
        self._pending_n = 0

    def update(self, batch: SparseBatch, keep_tokens: torch.Tensor) -> None:
        if self.rows_per_batch <= 0:
            return
        row_sampled = (torch.arange(batch.n_rows) + batch.row_offset) % self.batch_size < self.rows_per_batch
        sampled = row_sampled[batch.rows]
        self.tokens += int(keep_tokens[row_sampled].sum())
        tok, feat = batch.token[sampled], batch.feat[sampled].to(self.key_dtype)  # sorted by token, then feature
        self.fires += torch.bincount(feat.long(), minlength=self.d_sae)
        shift = 1
        while shift < len(tok):
            same = tok[shift:] == tok[:-shift]
            if not same.any():
                break
            keys = feat[:-shift][same] * self.d_sae + feat[shift:][same]
            self._pending.append(keys)
            self._pending_n += len(keys)
            shift += 1
        if self._pending_n >= self.flush_at:
            self.flush()

    def flush(self) -> None:
        """Fold pending keys into the sorted table with binary searches (no re-sort of the table)."""
        if not self._pending:
            return
        new_keys, new_counts = torch.unique(torch.cat(self._pending), return_counts=True)
        self._pending, self._pending_n = [], 0
        pos = torch.searchsorted(self.keys, new_keys)
        hit = pos < len(self.keys)
        hit[hit.clone()] = self.keys[pos[hit]] == new_keys[hit]
        self.counts.index_add_(0, pos[hit], new_counts[hit])
        fresh_keys, fresh_counts = new_keys[~hit], new_counts[~hit]
        if len(fresh_keys):
            old_dest = torch.arange(len(self.keys)) + torch.searchsorted(fresh_keys, self.keys)
            new_dest = torch.arange(len(fresh_keys)) + torch.searchsorted(self.keys, fresh_keys)
            keys = torch.empty(len(self.keys) + len(fresh_keys), dtype=self.key_dtype)
            counts = torch.empty(len(keys), dtype=torch.long)
            keys[old_dest], keys[new_dest] = self.keys, fresh_keys
            counts[old_dest], counts[new_dest] = self.counts, fresh_counts
            self.keys, self.counts = keys, counts

    def merge(self, other: CoActivation) -> None:
        self.flush()
        other.flush()
        keys, inverse = torch.unique(torch.cat([self.keys, other.keys]), return_inverse=True)
        self.counts = torch.zeros(len(keys), dtype=torch.long).index_add_(0, inverse,
                                                                          torch.cat([self.counts, other.counts]))
        self.keys = keys
        self.fires += other.fires
        self.tokens += other.tokens

    def free_pairs(self) -> None:
        """Drop the pair table once the neighbours are taken (50 MB at 65k features, held into the build's peak
        otherwise); counts of fires and tokens stay."""
        self.flush()
        self.keys = torch.zeros(0, dtype=self.key_dtype)
        self.counts = torch.zeros(0, dtype=torch.long)

    def top_neighbours(self, k: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Top-k partners of each feature by Jaccard index of firing: [d_sae, k] ids (-1 = none), scores."""
        self.flush()
        keys = self.keys.long()
        a, b = (keys // self.d_sae).int(), (keys % self.d_sae).int()  # int32 ids: this runs at the build's peak
        del keys
        jac = self.counts.double() / (self.fires[a] + self.fires[b] - self.counts).double()
        src = torch.cat([a, b])
        dst = torch.cat([b, a])
        del a, b
        score = torch.cat([jac, jac])
        del jac
        order = sort_by_group_then(src, score, descending=True)
        src, dst, score = src[order], dst[order], score[order]
        rank = rank_within_groups(src)
        keep = rank < k
        ids = torch.full((self.d_sae, k), -1, dtype=torch.long)
        scores = torch.zeros((self.d_sae, k))
        ids[src[keep], rank[keep]] = dst[keep].long()
        scores[src[keep], rank[keep]] = score[keep].float()
        return ids, scores
