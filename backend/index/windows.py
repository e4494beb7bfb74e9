"""Example windows' activations, read at the end of a build instead of being carried in the builder's state.

The state keeps each example as (feature, value, global token index). Each window's activations of
its feature are looked up in the stream's own sparse activations, logged on disk
(backend/index/activation_log.py). Without the log (over its disk budget, or a distributed build) the
batches that hold examples are encoded once more with the same code and batch composition as the
stream, so the numbers agree exactly either way. Only the non-zero activations are kept (most of a
window is silent for its feature): a dense [examples, window] float array is 0.5 GB at 65k features.
The windows' tokens are read from the token rows when the examples table is written (tables.py).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from tqdm.auto import tqdm

from backend.index.activation_log import ActivationLookup
from backend.index.sparse import encode_sparse


@dataclass(frozen=True)
class WindowActivations:
    """The non-zero activations of each example window, CSR by example: example i's are
    index[starts[i]:starts[i + 1]] (positions in its window clipped to the row, ascending) and the same
    slice of values."""

    starts: np.ndarray  # int64 [n + 1]
    index: np.ndarray  # int16, position in the window's stored token list
    values: np.ndarray  # float32 (> 0)


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
) -> WindowActivations:
    """The activations of feature `feature` in the windows around global token index `token` (both [n]);
    they come from `logged` (the stream's own, on disk) when given, else from encoding each batch again."""
    n_ctx = token_rows.shape[1]
    offsets = np.arange(-before, after + 1)
    batch_of = token // (n_ctx * batch_size)
    order = np.argsort(batch_of, kind="stable")
    batches, starts = np.unique(batch_of[order], return_index=True)
    ends = np.append(starts[1:], len(order))
    found_slot, found_index, found_value = [], [], []
    bar = tqdm(total=len(batches), unit="batch", desc="windows", disable=not progress)
    for b, lo, hi in zip(batches.tolist(), starts.tolist(), ends.tolist(), strict=True):
        first = b * batch_size
        sel = order[lo:hi]
        local = token[sel] - first * n_ctx  # token index inside this batch
        p = (local % n_ctx)[:, None] + offsets
        inside = (p >= 0) & (p < n_ctx)
        at = (local // n_ctx)[:, None] * n_ctx + np.clip(p, 0, n_ctx - 1)
        feat = np.ascontiguousarray(np.broadcast_to(feature[sel][:, None], at.shape)).reshape(-1)
        if logged is not None:
            got = logged.values_at(first * n_ctx + at.reshape(-1), feat)
        else:
            batch_rows = torch.from_numpy(np.asarray(token_rows[first : first + batch_size], dtype=np.int64))
            sparse = encode_sparse(source, batch_rows, ~torch.isin(batch_rows, special), first)
            got = sparse.lookup(torch.from_numpy(at.reshape(-1)), torch.from_numpy(feat)).numpy()
        example, column = np.nonzero(inside & (got.reshape(at.shape) != 0))  # row-major: columns ascending
        first_inside = np.maximum(before - (local % n_ctx), 0)
        found_slot.append(sel[example])
        found_index.append((column - first_inside[example]).astype(np.int16))
        found_value.append(got.reshape(at.shape)[example, column].astype(np.float32))
        bar.update(1)
    bar.close()
    return _by_example(len(token), found_slot, found_index, found_value)


def _by_example(n: int, slot: list[np.ndarray], index: list[np.ndarray], value: list[np.ndarray]) -> WindowActivations:
    """Concatenate the per-batch finds and order them by example (an example's come from one batch, in order)."""
    slot_all = np.concatenate(slot) if slot else np.zeros(0, np.int64)
    order = np.argsort(slot_all, kind="stable")
    index_all = np.concatenate(index)[order] if index else np.zeros(0, np.int16)
    value_all = np.concatenate(value)[order] if value else np.zeros(0, np.float32)
    starts = np.concatenate([[0], np.cumsum(np.bincount(slot_all, minlength=n))]).astype(np.int64)
    return WindowActivations(starts, index_all, value_all)
