"""The streaming index build: token rows -> model (stopped at the SAE hook) -> SAE.encode ->
accumulators, then weight-derived facts, then one DuckDB file written atomically."""

from __future__ import annotations

import ctypes
import gc
import resource
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, fields
from functools import partial
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from backend.errors import UserError
from backend.index import tables, writer
from backend.index.activation_log import ActivationLookup
from backend.index.checkpoint import BuildIdentity, BuildWorkDir, RowSink
from backend.index.datasets import DEMO_HELDOUT, dataset_texts, prefetched, token_rows
from backend.index.feature_map import FIT_UP_TO, flat_map, umap_map
from backend.index.geometry import logit_effects
from backend.index.meta import IndexMeta
from backend.index.neighbours import EXACT_UP_TO, Neighbours, decoder_neighbours
from backend.index.sparse import encode_sparse, hook_activations
from backend.index.state import IndexState, StateShape
from backend.index.steerability import steerability_for_index
from backend.index.windows import read_windows
from backend.readout import Readout
from backend.sources import LoadedSource, SourceSpec, load_source, sae_weights_digest
from backend.tokens import token_bytes_table
from backend.versions import package_versions


@dataclass(frozen=True)
class IndexConfig:
    tokens: int = 1_000_000
    context_size: int | None = None  # default: the SAE's / model's context
    batch_size: int = 32  # rows per forward pass
    top_k: int = 20
    window_before: int = 24
    window_after: int = 8
    n_hist_bins: int = 100  # internal histogram bins (published up to the max: 50-100)
    n_intervals: int = 10  # activation intervals (published up to the max: 5-10)
    per_interval: int = 5
    coact_rows_per_batch: int = 4  # rows of each batch counted for co-activation
    n_neighbours: int = 10
    n_logits: int = 10
    umap: bool = True
    device: str | None = None
    dtype: str | None = None
    dataset: str | None = None  # None = the demo's held-out split
    seed: int = 0
    progress: bool = True
    checkpoint_every: int = 4_000_000  # tokens between checkpoints (0 = never)
    resume: bool = False  # continue an interrupted build of the same output from its last checkpoint
    steerability: bool = True  # output/input scores, calibrated strengths (index/steerability.py)
    exact_neighbours_up_to: int = EXACT_UP_TO  # decoder neighbours exact up to this d_sae, NN-descent above
    umap_fit_up_to: int = FIT_UP_TO  # UMAP fitted on at most this many features, the rest placed
    activation_log_gb: float = 4.0  # disk for the streamed activations the windows pass reads back (0 = encode again)

    def state_shape(self, d_sae: int) -> StateShape:
        names = {f.name for f in fields(StateShape)} - {"d_sae"}
        return StateShape(d_sae=d_sae, **{n: getattr(self, n) for n in names})

    def result_options(self) -> dict:
        """The options that change the finished index (what a resumed build must share)."""
        return {k: v for k, v in asdict(self).items() if k not in ("progress", "device", "checkpoint_every", "resume",
                                                                 "activation_log_gb")}


@torch.no_grad()
def encode_batch(source: LoadedSource, tokens: torch.Tensor) -> torch.Tensor:
    """Dense SAE activations [rows, ctx, d_sae] of a small batch (for tests and held-out scoring;
    the build itself never makes these: see sparse.encode_sparse)."""
    return source.sae.encode(hook_activations(source, tokens))


def build_index(spec: SourceSpec, cfg: IndexConfig, out: str | Path) -> Path:
    out = Path(out)
    if cfg.tokens <= 0:
        raise UserError("--tokens must be a positive number of tokens.")
    start = time.time()
    source = load_source(spec, cfg.device, cfg.dtype)
    ctx = cfg.context_size or source.context_size
    if ctx > source.model.cfg.n_ctx:
        raise UserError(f"Context size {ctx} exceeds the model's maximum of {source.model.cfg.n_ctx} tokens.")
    identity = BuildIdentity(str(spec), sae_weights_digest(spec), cfg.result_options())
    work = BuildWorkDir(out, ctx, source.d_sae, int(cfg.activation_log_gb * 2**30))
    shape = cfg.state_shape(source.d_sae)
    state = work.resume(identity, shape) if cfg.resume else None  # a mismatch keeps the checkpoint
    if state is None:
        work.start_fresh()
        state = IndexState.create(shape)
    try:
        stream_start = time.time()
        state = stream(source, cfg, ctx, work, identity, state)
        if state.rows == 0:
            raise UserError("The dataset produced no complete row of tokens; give it more text.")
        if cfg.checkpoint_every:
            work.checkpoint(state, identity)  # a crash while finalizing resumes straight to finalizing
        path = write_index(source, cfg, state, out, ctx, time.time() - stream_start, work.token_rows(),
                           setup_seconds=stream_start - start, activations=work.activation_lookup())
    except UserError:
        work.discard()  # bad input: resuming would meet the same error
        raise
    finally:
        work.close()
    work.discard()
    return path


def stream(source: LoadedSource, cfg: IndexConfig, ctx: int, sink: RowSink, identity: BuildIdentity | None,
           state: IndexState, end_row: int | None = None) -> IndexState:
    """The streaming pass: the batches of rows from `state.next_row` up to `end_row` (the end of the
    data when None), encoded sparsely, into `state`; their tokens go to `sink`. Rows before
    `state.next_row` (a resumed build's, or earlier shards') are tokenized and skipped."""
    special = torch.tensor(source.special_token_ids(), dtype=torch.long)
    texts = dataset_texts(cfg.dataset)
    total = cfg.tokens if end_row is None else (end_row - state.first_row) * ctx
    bar = tqdm(total=total, initial=state.rows * ctx, unit="tok", unit_scale=True, desc="index",
               disable=not cfg.progress)
    row, since_checkpoint = 0, 0
    with source.lock:
        batches = token_rows(texts, source.tokenizer, ctx, source.prepend_bos, cfg.batch_size, cfg.tokens)
        for tokens in prefetched(batches):
            row += len(tokens)
            if row <= state.next_row:  # checkpoints and shards fall on batch boundaries
                continue
            if end_row is not None and row > end_row:
                break
            keep = ~torch.isin(tokens, special)
            acts = encode_sparse(source, tokens, keep, state.next_row)
            state.update(acts, keep)
            sink.append_batch(tokens, acts)
            bar.update(tokens.numel())
            since_checkpoint += tokens.numel()
            if identity is not None and cfg.checkpoint_every and since_checkpoint >= cfg.checkpoint_every:
                sink.checkpoint(state, identity)
                since_checkpoint = 0
    bar.close()
    return state


def write_index(
    source: LoadedSource, cfg: IndexConfig, state: IndexState, out: Path, ctx: int, stream_seconds: float,
    rows: np.ndarray, setup_seconds: float = 0.0, extra_meta: dict | None = None,
    activations: ActivationLookup | None = None,
) -> Path:
    """Finalize: weight-derived tables, example windows read back from `rows` (the streamed token rows)
    and `activations` (the streamed activations; None: encoded again), one DuckDB file written atomically."""
    t0 = time.time()
    release_freed_memory()  # what the stream freed
    stages = _Stages()
    w_dec = source.sae.W_dec.detach().float().cpu()
    cosine = stages.run("neighbours", lambda: decoder_neighbours(w_dec, max(cfg.n_neighbours, 14),
                                                                 cfg.exact_neighbours_up_to, cfg.seed))
    coact = Neighbours(*state.coact.top_neighbours(cfg.n_neighbours), method="jaccard")
    state.coact.free_pairs()  # the state was checkpointed already; finalize reads only the neighbours from here
    logits = stages.run("logits", lambda: logit_effects(Readout(source.model, source.hook_name), w_dec, cfg.n_logits))
    fmap = stages.run("map", lambda: umap_map(w_dec, cfg.seed, graph=cosine, fit_up_to=cfg.umap_fit_up_to)
                      if cfg.umap else flat_map(len(w_dec)))
    cosine = cosine.first(cfg.n_neighbours)  # the map used 14, the index keeps what was asked for
    vocab = token_bytes_table(source.tokenizer)
    dead = (state.stats.count == 0).numpy()
    labels, top_tokens = tables.auto_labels(state.top.examples, rows, vocab, dead)
    slots = tables.example_slots(state.top.examples, state.intervals.examples)
    special = torch.tensor(source.special_token_ids(), dtype=torch.long)
    windows = stages.run("windows", partial(read_windows, source, rows, special, slots.feature_id, slots.token,
                                            cfg.batch_size, cfg.window_before, cfg.window_after, cfg.progress,
                                            activations))
    top = state.top.examples
    flat_rows = torch.from_numpy(np.asarray(rows).reshape(-1))
    peaks = torch.where(top.value.isfinite(), flat_rows[top.token.clamp_min(0)].long(), -1)  # token ids peaked on
    steer = stages.run("steerability", lambda: steerability_for_index(
        source, state.stats.max, peaks, dataset_texts(cfg.dataset))) if cfg.steerability else None
    meta = IndexMeta(
        **source.info().model_dump(),
        sae_weights_sha256=sae_weights_digest(source.spec),
        dataset=cfg.dataset or DEMO_HELDOUT,
        tokens_requested=cfg.tokens,
        tokens_processed=state.rows * ctx,
        tokens_counted=state.stats.tokens,
        rows=state.rows,
        context_size=ctx,
        coactivation_tokens=state.coact.tokens,
        logits_through_final_ln=logits.through_final_ln,
        build_seconds_stream=stream_seconds,
        build_seconds_windows=stages.seconds.get("windows", 0.0),
        windows_read_from="activation log" if activations is not None else "encoding again",
        neighbour_method=cosine.method,
        umap_fitted_on=fmap.fitted,
        build_seconds_finalize=time.time() - t0,
        build_seconds_total=setup_seconds + stream_seconds + time.time() - t0,  # set again once written
        versions=package_versions().model_dump(),
        config=asdict(cfg),
        excluded_token_ids=source.special_token_ids(),
        built_at=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        schema_version=writer.SCHEMA_VERSION,
        **(extra_meta or {}),
    )
    with writer.atomic_index_file(out) as con:
        # key order (feature_id, kind DESC, interval_idx, rank) is the slots' order; examples first, so the
        # slots and windows are freed before the features' Arrow table exists (the build's peak is here)
        writer.write_batches(con, "examples", tables.example_batches(slots, windows, rows, cfg.window_before,
                                                                     cfg.window_after))
        del slots, windows
        release_freed_memory()
        # already in feature_id order: streamed in without DuckDB's sort buffers
        writer.write_batches(con, "features", tables.feature_table(state.stats, logits, cosine, coact, fmap, labels,
                                                                   top_tokens).to_reader(max_chunksize=16_384))
        writer.write_table(con, "vocab", tables.vocab_table(vocab), "token_id")
        if steer is not None:
            writer.write_table(con, "steerability", steer.to_arrow(), "feature_id")
        stages.mark("write")
        meta = meta.with_values(**stages.as_meta(), build_seconds_finalize=time.time() - t0,
                                build_seconds_total=setup_seconds + stream_seconds + time.time() - t0)
        writer.write_meta(con, meta.stored())
    return out


def release_freed_memory() -> None:
    """Hand freed heap back to the OS. glibc keeps what a stage freed in its arenas (130 MB after a 65k stream),
    and RSS, the build's peak with it, would carry that into every later stage; elsewhere this does nothing."""
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


class _Stages:
    """Seconds and the process's peak RSS after each finalize stage, kept in the index's meta: where a
    large build spends its time and memory is then on record, not guessed."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self.peak_rss_mb: dict[str, float] = {}
        self._since = time.time()

    def run(self, name: str, work: Callable):
        start = time.time()
        result = work()
        release_freed_memory()
        self.seconds[name] = time.time() - start
        self.peak_rss_mb[name] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        self._since = time.time()
        return result

    def mark(self, name: str) -> None:
        """A stage that ran inline since the last one (e.g. writing the tables)."""
        self.seconds[name] = time.time() - self._since
        self.peak_rss_mb[name] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    def as_meta(self) -> dict:
        return {**{f"build_seconds_{k}": v for k, v in self.seconds.items()}, "build_peak_rss_mb": self.peak_rss_mb}
