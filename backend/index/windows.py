"""Example windows, read at the end of a build instead of being carried in the builder's state.

The state keeps each example as (feature, value, global token index). Here the token rows are
read back from disk (memory-mapped), the batches that hold examples are encoded once more with
the same code and batch composition as the stream (so the numbers agree exactly), and each
example's window of token ids and activations is looked up in the sparse activations.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from tqdm.auto import tqdm

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
) -> ExampleWindows:
    """Windows around global token index `token` for feature `feature` (both [n])."""
    n_rows, n_ctx = token_rows.shape
    width = before + after + 1
    offsets = np.arange(-before, after + 1)
    row, pos = token // n_ctx, token % n_ctx
    p = pos[:, None] + offsets
    inside = (p >= 0) & (p < n_ctx)
    flat = np.where(inside, row[:, None] * n_ctx + np.clip(p, 0, n_ctx - 1), 0)
    tokens = np.where(inside, token_rows.reshape(-1)[flat], -1).astype(np.int32)
    acts = np.zeros((len(token), width), dtype=np.float32)
    batch_of = row // batch_size
    order = np.argsort(batch_of, kind="stable")
    batches, starts = np.unique(batch_of[order], return_index=True)
    ends = np.append(starts[1:], len(order))
    bar = tqdm(total=len(batches), unit="batch", desc="windows", disable=not progress)
    for b, lo, hi in zip(batches.tolist(), starts.tolist(), ends.tolist(), strict=True):
        first = b * batch_size
        rows = torch.from_numpy(np.asarray(token_rows[first : first + batch_size], dtype=np.int64))
        sparse = encode_sparse(source, rows, ~torch.isin(rows, special), first)
        sel = order[lo:hi]
        local = torch.from_numpy(flat[sel] - first * n_ctx)
        feat = torch.from_numpy(feature[sel]).long().unsqueeze(1).expand_as(local)
        got = sparse.lookup(local.reshape(-1), feat.reshape(-1)).view(local.shape).numpy()
        acts[sel] = np.where(inside[sel], got, 0.0)
        bar.update(1)
    bar.close()
    return ExampleWindows(tokens, acts)
