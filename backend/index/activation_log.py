"""The streamed activations, kept on disk so that the windows pass looks them up instead of running
the model and the SAE over every batch a second time (at 65k features that second pass cost as much
as the stream itself).

    acts.key.i64   global token index x d_sae + feature of every active pair, ascending
    acts.val.f32   its activation

Pairs are appended batch by batch in stream order, and a batch's pairs are sorted by (token,
feature), so the key file is sorted and a lookup is one binary search. It costs 12 bytes per active
pair (a TopK SAE with k = 32: 384 bytes per token, 3.8 GB for 10M tokens); past the build's budget
the log deletes itself and the windows pass falls back to encoding again (same numbers, slower).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from backend.index.sparse import SparseBatch

KEY_FILE, VALUE_FILE = "acts.key.i64", "acts.val.f32"
BYTES_PER_PAIR = 12


class ActivationLog:
    """Appends a build's sparse activations; `lookup()` reads them back memory-mapped."""

    def __init__(self, folder: Path, d_sae: int, budget_bytes: int, mode: str):
        self.key_path, self.value_path = folder / KEY_FILE, folder / VALUE_FILE
        self.d_sae = d_sae
        self.budget_bytes = budget_bytes
        self._keys = self.key_path.open(mode)
        self._values = self.value_path.open(mode)
        self.pairs = self.key_path.stat().st_size // 8

    @classmethod
    def create(cls, folder: Path, d_sae: int, budget_bytes: int) -> ActivationLog | None:
        """A new, empty log; None when the budget is 0 (the windows pass encodes again)."""
        return cls(folder, d_sae, budget_bytes, "wb") if budget_bytes > 0 else None

    @classmethod
    def reopen(cls, folder: Path, d_sae: int, budget_bytes: int, tokens_done: int) -> ActivationLog | None:
        """The log of an interrupted build cut back to its checkpoint's `tokens_done` tokens; None when the
        build had none (or dropped it for its size)."""
        if budget_bytes <= 0 or not (folder / KEY_FILE).exists() or not (folder / VALUE_FILE).exists():
            return None
        log = cls(folder, d_sae, budget_bytes, "r+b")
        keep = int(np.searchsorted(log._read_keys(), tokens_done * d_sae)) if log.pairs else 0
        log._values.truncate(keep * 4)  # values first: a kill between the two leaves keys >= values, re-cut next time
        log._keys.truncate(keep * 8)
        log._keys.seek(0, os.SEEK_END)
        log._values.seek(0, os.SEEK_END)
        log.pairs = keep
        return log

    @property
    def dropped(self) -> bool:
        return self._keys is None

    def append(self, batch: SparseBatch) -> None:
        if self.dropped:
            return
        if (self.pairs + len(batch.val)) * BYTES_PER_PAIR > self.budget_bytes:
            self.drop()
            return
        keys = batch.global_token.long() * self.d_sae + batch.feat.long()
        self._keys.write(keys.numpy().astype(np.int64).tobytes())
        self._values.write(batch.val.numpy().astype(np.float32).tobytes())
        self.pairs += len(batch.val)

    def flush(self) -> None:
        """To disk before a checkpoint names the tokens it covers."""
        for f in (self._keys, self._values):
            if f is not None:
                f.flush()
                os.fsync(f.fileno())

    def drop(self) -> None:
        """Over budget: delete the files; the build goes on without them."""
        self.close()
        self._keys = self._values = None
        self.key_path.unlink(missing_ok=True)
        self.value_path.unlink(missing_ok=True)

    def close(self) -> None:
        for f in (self._keys, self._values):
            if f is not None:
                f.close()

    def lookup(self) -> ActivationLookup | None:
        """A reader of everything appended so far; None once dropped."""
        if self.dropped:
            return None
        self.flush()
        return ActivationLookup(self._read_keys(), self._read_values(), self.d_sae)

    def _read_keys(self) -> np.ndarray:
        self._keys.flush()
        return _mapped(self.key_path, np.int64, self.pairs)

    def _read_values(self) -> np.ndarray:
        return _mapped(self.value_path, np.float32, self.pairs)


def _mapped(path: Path, dtype, n: int) -> np.ndarray:
    return np.memmap(path, dtype=dtype, mode="r", shape=(n,)) if n else np.zeros(0, dtype=dtype)


class ActivationLookup:
    def __init__(self, keys: np.ndarray, values: np.ndarray, d_sae: int):
        self.keys, self.values, self.d_sae = keys, values, d_sae

    def values_at(self, global_token: np.ndarray, feature: np.ndarray) -> np.ndarray:
        """Activation of each (global token, feature) pair asked for, float32; 0 where it was not active."""
        want = global_token.astype(np.int64) * self.d_sae + feature.astype(np.int64)
        if len(self.keys) == 0:
            return np.zeros(want.shape, np.float32)
        at = np.minimum(np.searchsorted(self.keys, want), len(self.keys) - 1)
        return np.where(self.keys[at] == want, self.values[at], np.float32(0.0)).astype(np.float32)
