"""Example windows, read at the end of a build instead of being carried in the builder's state.

The state keeps each example as (feature, value, global token index). Here the token rows are
read back from disk (memory-mapped), and each window's activations are looked up in the stream's
own sparse activations, logged on disk (backend/index/activation_log.py). Without the log (over
its disk budget, or a distributed build) the batches that hold examples are encoded once more with
the same code and batch composition as the stream, so the numbers agree exactly either way.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from tqdm.auto import tqdm

from backend.index.activation_log import ActivationLookup
from backend.index.sparse import encode_sparse


@dataclass(frozen=True)
class ExampleWindows:
    """[n, before + after + 1] windows, one per example asked for; token -1 outside the row."""

    tokens: np.ndarray  # int32
    acts: np.ndarray  # float32, this feature's activation at each window token


def read_windows(
    source,
    token_rows: np.ndarray,
    special: torch.Tensor,
    feature: np.ndarray,
    token: np.ndarray,
    batch_size: int,
    before: int,
    after: int,
    progress: bool = True,
    logged: ActivationLookup | None = None,
) -> ExampleWindows:
    """Windows around global token index `token` for feature `feature` (both [n]); their activations
    come from `logged` (the stream's own, on disk) when given, else from encoding each batch again."""
    n_rows, n_ctx = token_rows.shape
    offsets = np.arange(-before, after + 1)
    tokens = np.empty((len(token), len(offsets)), dtype=np.int32)
    acts = np.zeros((len(token), len(offsets)), dtype=np.float32)
    batch_of = token // (n_ctx * batch_size)
    order = np.argsort(batch_of, kind="stable")
    batches, starts = np.unique(batch_of[order], return_index=True)
    ends = np.append(starts[1:], len(order))
    bar = tqdm(total=len(batches), unit="batch", desc="windows", disable=not progress)
    for b, lo, hi in zip(batches.tolist(), starts.tolist(), ends.tolist(), strict=True):
        first = b * batch_size
        rows = np.asarray(token_rows[first : first + batch_size], dtype=np.int64)
        sel = order[lo:hi]
        local = token[sel] - first * n_ctx  # token index inside this batch
        p = (local % n_ctx)[:, None] + offsets
        inside = (p >= 0) & (p < n_ctx)
        at = (local // n_ctx)[:, None] * n_ctx + np.clip(p, 0, n_ctx - 1)
        tokens[sel] = np.where(inside, rows.reshape(-1)[at], -1)
        feat = np.ascontiguousarray(np.broadcast_to(feature[sel][:, None], at.shape)).reshape(-1)
        if logged is not None:
            got = logged.values_at(first * n_ctx + at.reshape(-1), feat)
        else:
            batch_rows = torch.from_numpy(rows)
            sparse = encode_sparse(source, batch_rows, ~torch.isin(batch_rows, special), first)
            got = sparse.lookup(torch.from_numpy(at.reshape(-1)), torch.from_numpy(feat)).numpy()
        acts[sel] = np.where(inside, got.reshape(at.shape), 0.0)
        bar.update(1)
    bar.close()
    return ExampleWindows(tokens, acts)
