"""A build's work folder beside its output: the token rows streamed so far and the last checkpoint.

    cache/.demo.duckdb.build/
        tokens.i32      every streamed row, int32, appended batch by batch (read back memory-mapped)
        acts.*          the streamed sparse activations, within a disk budget (backend/index/activation_log.py)
        state.pt        the IndexState and what it was built from, written to a temp file then renamed

A checkpoint is taken at a batch boundary, so resuming truncates tokens.i32 to the checkpoint's
rows (and the activation log to their tokens), skips that many rows of the (deterministic) token
stream and continues with the same random state: the finished index equals that of an
uninterrupted build. The folder is removed
once the index is written.
"""

from __future__ import annotations

import os
import shutil
import signal
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
import torch

from backend.errors import UserError
from backend.index.activation_log import ActivationLog, ActivationLookup
from backend.index.sparse import SparseBatch
from backend.index.state import IndexState, StateShape

# Fault injection for the kill-and-resume tests: the process SIGKILLs itself right after writing
# this many checkpoints (the way a crash, OOM kill or lost machine would stop it).
KILL_AFTER_CHECKPOINTS_ENV = "SAE_EXPLORER_KILL_AFTER_CHECKPOINTS"


@dataclass(frozen=True)
class BuildIdentity:
    """What a checkpoint must match to be resumed: the source, its SAE weights and the options."""

    source: str
    sae_weights_sha256: str | None
    options: dict  # the IndexConfig fields that change the result

    def differences(self, other: BuildIdentity) -> list[str]:
        out = [name for name in ("source", "sae_weights_sha256") if getattr(self, name) != getattr(other, name)]
        keys = sorted(set(self.options) | set(other.options))
        return out + [k for k in keys if self.options.get(k) != other.options.get(k)]


class RowSink(Protocol):
    """Where the streaming pass puts the token rows it has encoded, their activations (a sink may keep
    them for the windows pass) and its checkpoints."""

    def append_batch(self, rows: torch.Tensor, acts: SparseBatch) -> None: ...

    def checkpoint(self, state: IndexState, identity: BuildIdentity) -> None: ...


class BuildWorkDir:
    def __init__(self, out: Path, n_ctx: int, d_sae: int, activation_budget_bytes: int = 0):
        self.path = out.parent / f".{out.name}.build"
        self.n_ctx = n_ctx
        self.d_sae = d_sae
        self.activation_budget_bytes = activation_budget_bytes
        self.activations: ActivationLog | None = None
        self.tokens_path = self.path / "tokens.i32"
        self.state_path = self.path / "state.pt"
        self.checkpoints_written = 0
        self._tokens_file = None

    # ---- starting ------------------------------------------------------------------------------
    def start_fresh(self) -> None:
        self.discard()
        self.path.mkdir(parents=True)
        self._tokens_file = self.tokens_path.open("wb")
        self.activations = ActivationLog.create(self.path, self.d_sae, self.activation_budget_bytes)

    def resume(self, identity: BuildIdentity, shape: StateShape) -> IndexState | None:
        """The checkpointed state, with tokens.i32 cut back to it; None when there is nothing to resume."""
        if not self.state_path.exists():
            return None
        saved = torch.load(self.state_path, weights_only=False)
        before = BuildIdentity(**saved["identity"])
        changed = before.differences(identity)
        if changed:
            raise UserError(
                f"The interrupted build in {self.path} was made with a different {', '.join(changed)}; "
                "run the same command as before, or leave out --resume to start again."
            )
        state = IndexState.from_tensors(shape, saved["state"])
        self._tokens_file = self.tokens_path.open("r+b")
        self._tokens_file.truncate(state.rows * self.n_ctx * 4)
        self._tokens_file.seek(0, os.SEEK_END)
        self.activations = ActivationLog.reopen(self.path, self.d_sae, self.activation_budget_bytes,
                                                state.rows * self.n_ctx)
        return state

    # ---- streaming -----------------------------------------------------------------------------
    def append_batch(self, rows: torch.Tensor, acts: SparseBatch) -> None:
        self._tokens_file.write(rows.to(torch.int32).numpy().tobytes())
        if self.activations is not None:
            self.activations.append(acts)

    def checkpoint(self, state: IndexState, identity: BuildIdentity) -> None:
        self._tokens_file.flush()
        os.fsync(self._tokens_file.fileno())
        if self.activations is not None:
            self.activations.flush()
        tmp = self.state_path.with_suffix(".tmp")
        torch.save({"identity": identity.__dict__, "state": state.tensors()}, tmp)
        os.replace(tmp, self.state_path)
        self.checkpoints_written += 1
        kill_after = os.environ.get(KILL_AFTER_CHECKPOINTS_ENV)
        if kill_after and self.checkpoints_written >= int(kill_after):
            os.kill(os.getpid(), signal.SIGKILL)

    def token_rows(self) -> np.ndarray:
        """Every streamed row, [rows, n_ctx] int32, memory-mapped (nothing is read until used)."""
        self._tokens_file.flush()
        n = self.tokens_path.stat().st_size // (4 * self.n_ctx)
        if n == 0:
            return np.zeros((0, self.n_ctx), dtype=np.int32)
        return np.memmap(self.tokens_path, dtype=np.int32, mode="r", shape=(n, self.n_ctx))

    def activation_lookup(self) -> ActivationLookup | None:
        """The streamed activations for the windows pass; None when the log was off or over budget."""
        return self.activations.lookup() if self.activations is not None else None

    # ---- ending --------------------------------------------------------------------------------
    def close(self) -> None:
        if self._tokens_file is not None:
            self._tokens_file.close()
            self._tokens_file = None
        if self.activations is not None:
            self.activations.close()

    def discard(self) -> None:
        self.close()
        shutil.rmtree(self.path, ignore_errors=True)
