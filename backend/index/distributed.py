"""The index build spread over a Ray cluster: one task per shard of rows, merged on the driver.

    python -m backend index --source ... --ray auto|local|ADDRESS --shards N

The token stream is cut into N shards of whole batches by row range (deterministic from the
dataset, the token budget and the shard count). Each task loads the source once per worker
process (on a GPU when the cluster has them: `num_gpus=1`), streams its rows into a fresh
IndexState and returns it with its token rows; Ray retries a task whose worker died. The driver
saves every finished shard to the build's work folder as it arrives (temp file, then rename),
so re-running the same command after the driver itself was killed submits only the missing
shards. Then it merges the shards in order and finalizes like a single-process build: the index
equals the single-process one in every deterministic table.

Nothing here is imported unless --ray is given.
"""

from __future__ import annotations

import math
import os
import shutil
import signal
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from backend.errors import UserError
from backend.index.build import IndexConfig, stream, write_index
from backend.index.checkpoint import BuildIdentity
from backend.index.sparse import SparseBatch
from backend.index.state import IndexState
from backend.sources import SourceSpec, load_source, sae_weights_digest

# Fault injection for the tests: "SHARD:MARKER_FILE" makes the worker of that shard SIGKILL itself
# halfway through its rows the first time (when the marker file does not exist yet).
KILL_SHARD_ONCE_ENV = "SAE_EXPLORER_KILL_SHARD_ONCE"
# ... and N makes the driver SIGKILL itself right after saving its N-th shard.
KILL_DRIVER_AFTER_SHARDS_ENV = "SAE_EXPLORER_KILL_DRIVER_AFTER_SHARDS"


@dataclass(frozen=True)
class Shard:
    index: int
    first_row: int
    end_row: int  # exclusive; whole batches, except that the data may end sooner


def plan_shards(cfg: IndexConfig, ctx: int, n_shards: int) -> list[Shard]:
    """N contiguous ranges of whole batches covering the rows the token budget asks for."""
    if n_shards < 1:
        raise UserError("--shards must be at least 1.")
    rows = math.ceil(cfg.tokens / ctx)
    batches = math.ceil(rows / cfg.batch_size)
    n_shards = min(n_shards, batches)
    bounds = [round(i * batches / n_shards) * cfg.batch_size for i in range(n_shards + 1)]
    bounds[-1] = rows  # the last batch may be short
    return [Shard(i, bounds[i], bounds[i + 1]) for i in range(n_shards)]


@dataclass
class ShardResult:
    """What a task sends back: its state's tensors and its token rows."""

    shard: Shard
    state: dict
    token_rows: np.ndarray  # [rows, ctx] int32


class _RowsInMemory:
    """A shard's token rows, kept in memory: they travel back with the state."""

    def __init__(self) -> None:
        self.parts: list[np.ndarray] = []
        self.n_rows = 0

    def append_batch(self, rows: torch.Tensor, acts: SparseBatch) -> None:  # activations stay with the task
        self.parts.append(rows.to(torch.int32).numpy())
        self.n_rows += len(rows)
        _maybe_fail(self)

    def checkpoint(self, state: IndexState, identity: BuildIdentity) -> None:  # shards checkpoint whole
        pass

    def array(self, ctx: int) -> np.ndarray:
        return np.concatenate(self.parts) if self.parts else np.zeros((0, ctx), dtype=np.int32)


_CURRENT_SHARD: Shard | None = None


def _maybe_fail(sink: _RowsInMemory) -> None:
    spec = os.environ.get(KILL_SHARD_ONCE_ENV)
    if not spec or _CURRENT_SHARD is None:
        return
    index, marker = spec.split(":", 1)
    half = (_CURRENT_SHARD.end_row - _CURRENT_SHARD.first_row) // 2
    if int(index) == _CURRENT_SHARD.index and sink.n_rows >= half and not os.path.exists(marker):
        Path(marker).write_text(f"killed shard {index} after {sink.n_rows} rows\n")
        os.kill(os.getpid(), signal.SIGKILL)


def build_shard(spec: str, cfg: IndexConfig, shard: Shard) -> ShardResult:
    """One Ray task: stream one shard's rows into a fresh state (the source is loaded once per process)."""
    global _CURRENT_SHARD
    source = load_source(SourceSpec.parse(spec), cfg.device, cfg.dtype)
    ctx = cfg.context_size or source.context_size
    state = IndexState.create(cfg.state_shape(source.d_sae).for_shard(shard.index))
    state.first_row = shard.first_row
    sink = _RowsInMemory()
    _CURRENT_SHARD = shard
    try:
        stream(source, cfg, ctx, sink, None, state, end_row=shard.end_row)
    finally:
        _CURRENT_SHARD = None
    return ShardResult(shard, state.tensors(), sink.array(ctx))


class ShardStore:
    """Finished shards in the build's work folder: shard-0003.pt, each written to a temp file and renamed."""

    def __init__(self, out: Path, identity: BuildIdentity, n_shards: int):
        self.path = out.parent / f".{out.name}.build" / f"ray-{n_shards}-shards"
        self.identity = identity

    def finished(self) -> dict[int, ShardResult]:
        done: dict[int, ShardResult] = {}
        for file in sorted(self.path.glob("shard-*.pt")):
            saved = torch.load(file, weights_only=False)
            changed = BuildIdentity(**saved["identity"]).differences(self.identity)
            if changed:
                raise UserError(f"The shards in {self.path} were built with a different {', '.join(changed)}; "
                                "run the same command as before, or delete that folder to start again.")
            done[saved["result"].shard.index] = saved["result"]
        return done

    def save(self, result: ShardResult) -> None:
        self.path.mkdir(parents=True, exist_ok=True)
        final = self.path / f"shard-{result.shard.index:04d}.pt"
        tmp = final.with_suffix(".tmp")
        torch.save({"identity": self.identity.__dict__, "result": result}, tmp)
        os.replace(tmp, final)


def build_index_ray(spec: SourceSpec, cfg: IndexConfig, out: str | Path, address: str, n_shards: int) -> Path:
    import ray

    out = Path(out)
    start = time.time()
    source = load_source(spec, cfg.device, cfg.dtype)  # the driver finalizes: it needs the weights too
    ctx = cfg.context_size or source.context_size
    identity = BuildIdentity(str(spec), sae_weights_digest(spec), cfg.result_options())
    shards = plan_shards(cfg, ctx, n_shards)
    store = ShardStore(out, identity, len(shards))
    done = store.finished()
    reused = len(done)
    started_ray = not ray.is_initialized()
    if started_ray:
        ray.init(address=None if address == "local" else address, include_dashboard=False,
                 log_to_driver=False, runtime_env={"env_vars": _worker_env()})
    try:
        gpus = ray.cluster_resources().get("GPU", 0) > 0
        task_cfg = replace(cfg, device="cuda" if gpus else "cpu", progress=False)
        remote = ray.remote(num_gpus=1 if gpus else 0, num_cpus=1, max_retries=3)(build_shard)
        pending = {remote.remote(str(spec), task_cfg, s): s for s in shards if s.index not in done}
        bar = tqdm(total=len(shards), initial=len(done), unit="shard", desc="shards", disable=not cfg.progress)
        while pending:
            ready, _ = ray.wait(list(pending), num_returns=1)
            result: ShardResult = ray.get(ready[0])
            store.save(result)
            done[result.shard.index] = result
            if os.environ.get(KILL_DRIVER_AFTER_SHARDS_ENV) == str(len(done) - reused):
                os.kill(os.getpid(), signal.SIGKILL)
            del pending[ready[0]]
            bar.update(1)
        bar.close()
    finally:
        if started_ray:
            ray.shutdown()
    stream_seconds = time.time() - start
    merge_start = time.time()
    state, rows = merge_shards([done[s.index] for s in shards], cfg, source.d_sae, ctx)
    merge_seconds = time.time() - merge_start
    if state.rows == 0:
        raise UserError("The dataset produced no complete row of tokens; give it more text.")
    path = write_index(source, cfg, state, out, ctx, stream_seconds, rows,
                       extra_meta={"ray_shards": len(shards), "ray_shards_reused": reused,
                                   "build_seconds_merge": merge_seconds})
    shutil.rmtree(store.path.parent, ignore_errors=True)
    return path


def _worker_env() -> dict[str, str]:
    """Workers import this project from the same folder (a cluster's machines need the repo at that
    path), stay offline like the driver, and see the tests' fault switch."""
    root = str(Path(__file__).resolve().parents[2])
    env = {"PYTHONPATH": os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH", "")) if p)}
    for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_HOME", KILL_SHARD_ONCE_ENV):
        if name in os.environ:
            env[name] = os.environ[name]
    return env


def merge_shards(results: list[ShardResult], cfg: IndexConfig, d_sae: int, ctx: int) -> tuple[IndexState, np.ndarray]:
    """The shards' states folded in row order, and their token rows end to end."""
    shape = cfg.state_shape(d_sae)
    merged: IndexState | None = None
    for result in results:
        state = IndexState.from_tensors(shape.for_shard(result.shard.index), result.state)
        if merged is None:
            merged = state
        elif state.rows:
            merged.merge(state)
    rows = np.concatenate([r.token_rows for r in results]) if results else np.zeros((0, ctx), dtype=np.int32)
    return merged, rows
