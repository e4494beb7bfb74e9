"""All the bounded per-feature state of one build, as one object that updates, saves and loads.

Saved as plain tensors (torch.save of a dict), so a checkpoint is the state itself and a
resumed build continues bit for bit where the killed one stopped.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch

from backend.index.accumulators import CoActivation, FeatureStats, IntervalSamples, TopExamples, batch_max
from backend.index.sparse import SparseBatch


@dataclass(frozen=True)
class StateShape:
    """The options that fix the state's tensors (a subset of IndexConfig)."""

    d_sae: int
    n_hist_bins: int
    top_k: int
    window_before: int
    window_after: int
    n_intervals: int
    per_interval: int
    coact_rows_per_batch: int
    batch_size: int
    seed: int

    def for_shard(self, index: int) -> StateShape:
        """Shard i draws its own interval-sample keys (shards with one seed would draw the same ones)."""
        return replace(self, seed=self.seed * 1_000_003 + index + 1)


@dataclass
class IndexState:
    stats: FeatureStats
    top: TopExamples
    intervals: IntervalSamples
    coact: CoActivation
    rows: int = 0  # rows streamed so far
    first_row: int = 0  # global id of the first row (a shard's start)

    @property
    def next_row(self) -> int:
        return self.first_row + self.rows

    @classmethod
    def create(cls, shape: StateShape) -> IndexState:
        return cls(
            FeatureStats(shape.d_sae, shape.n_hist_bins),
            TopExamples(shape.d_sae, shape.top_k, shape.window_before, shape.window_after),
            IntervalSamples(shape.d_sae, shape.n_intervals, shape.per_interval, shape.seed),
            CoActivation(shape.d_sae, shape.coact_rows_per_batch, shape.batch_size),
        )

    def update(self, batch: SparseBatch, keep: torch.Tensor) -> None:
        """One batch's sparse activations (special tokens already left out; `keep` marks the others)."""
        self.stats.grow_bounds(batch_max(batch), self.intervals.on_double)
        self.stats.update(batch, int(keep.sum()))
        self.top.update(batch)
        self.intervals.update(batch, self.stats.bound)
        self.coact.update(batch, keep)
        self.rows += batch.n_rows

    def merge(self, other: IndexState) -> None:
        """Fold in the state of the rows that follow this one's (a later shard): the result equals the
        state of one stream over both, exactly for counts, sums, maxima, histograms, top examples and
        co-activation, and as a valid uniform sample for interval samples."""
        if other.first_row != self.next_row:
            raise ValueError(f"shard starting at row {other.first_row} does not follow rows up to {self.next_row}")
        target = torch.maximum(self.stats.bound, other.stats.bound)
        self.stats.raise_bounds(target, self.intervals.on_double)
        other.stats.raise_bounds(target, other.intervals.on_double)
        self.stats.merge(other.stats)
        self.top.merge(other.top)
        self.intervals.merge(other.intervals)
        self.coact.merge(other.coact)
        self.rows += other.rows

    def tensors(self) -> dict[str, object]:
        self.coact.flush()
        s, c = self.stats, self.coact
        return {
            "rows": self.rows,
            "first_row": self.first_row,
            "stats": {"count": s.count, "total": s.total, "max": s.max, "bound": s.bound, "hist": s.hist,
                      "tokens": s.tokens},
            "top": {"value": self.top.examples.value, "token": self.top.examples.token},
            "intervals": {"value": self.intervals.examples.value, "token": self.intervals.examples.token,
                          "priority": self.intervals.priority, "rng": self.intervals.generator.get_state()},
            "coact": {"keys": c.keys, "counts": c.counts, "fires": c.fires, "tokens": c.tokens},
        }

    @classmethod
    def from_tensors(cls, shape: StateShape, saved: dict) -> IndexState:
        state = cls.create(shape)
        st, top, iv, co = saved["stats"], saved["top"], saved["intervals"], saved["coact"]
        state.stats.count, state.stats.total, state.stats.max = st["count"], st["total"], st["max"]
        state.stats.bound, state.stats.hist, state.stats.tokens = st["bound"], st["hist"], st["tokens"]
        state.top.examples.value, state.top.examples.token = top["value"], top["token"]
        state.intervals.examples.value, state.intervals.examples.token = iv["value"], iv["token"]
        state.intervals.priority = iv["priority"]
        state.intervals.generator.set_state(iv["rng"])
        state.coact.keys, state.coact.counts, state.coact.fires = co["keys"], co["counts"], co["fires"]
        state.coact.tokens = co["tokens"]
        state.rows, state.first_row = saved["rows"], saved.get("first_row", 0)
        return state
