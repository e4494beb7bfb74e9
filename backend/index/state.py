"""All the bounded per-feature state of one build, as one object that updates, saves and loads.

Saved as plain tensors (torch.save of a dict), so a checkpoint is the state itself and a
resumed build continues bit for bit where the killed one stopped.
"""

from __future__ import annotations

from dataclasses import dataclass

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


@dataclass
class IndexState:
    stats: FeatureStats
    top: TopExamples
    intervals: IntervalSamples
    coact: CoActivation
    rows: int = 0  # rows streamed so far; the next batch's first global row id

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

    def tensors(self) -> dict[str, object]:
        self.coact.flush()
        s, c = self.stats, self.coact
        return {
            "rows": self.rows,
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
        state.rows = saved["rows"]
        return state
