"""The streaming index build: token rows -> model (stopped at the SAE hook) -> SAE.encode ->
accumulators, then weight-derived facts, then one DuckDB file written atomically."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from tqdm.auto import tqdm

from backend.errors import UserError
from backend.index import schema, tables
from backend.index.accumulators import CoActivation, FeatureStats, IntervalSamples, TopExamples
from backend.index.datasets import DEMO_HELDOUT, dataset_texts, token_rows
from backend.index.geometry import Neighbours, decoder_cosine_neighbours, flat_map, logit_effects, umap_map
from backend.index.sparse import SparseBatch
from backend.index.steerability import steerability_for_index
from backend.sources import LoadedSource, SourceSpec, load_source, sae_weights_digest
from backend.tokens import token_bytes_table


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
    steerability: bool = True  # output/input scores, calibrated strengths (index/steerability.py)


@dataclass
class IndexState:
    """All the bounded per-feature state of one build."""

    stats: FeatureStats
    top: TopExamples
    intervals: IntervalSamples
    coact: CoActivation
    rows: int = 0

    @classmethod
    def create(cls, d_sae: int, cfg: IndexConfig) -> IndexState:
        return cls(
            FeatureStats(d_sae, cfg.n_hist_bins),
            TopExamples(d_sae, cfg.top_k, cfg.window_before, cfg.window_after),
            IntervalSamples(d_sae, cfg.n_intervals, cfg.per_interval, cfg.window_before, cfg.window_after, cfg.seed),
            CoActivation(d_sae, cfg.coact_rows_per_batch),
        )

    def update(self, tokens: torch.Tensor, acts: torch.Tensor, keep: torch.Tensor) -> None:
        acts[~keep] = 0.0  # special tokens count nowhere, windows included (touches only those rows)
        batch = SparseBatch.from_dense(acts, self.rows)
        self.stats.grow_bounds(batch, self.intervals.on_double)
        self.stats.update(batch, int(keep.sum()))
        self.top.update(batch, tokens, acts)
        self.intervals.update(batch, self.stats.bound, tokens, acts)
        self.coact.update(batch, keep)
        self.rows += len(tokens)


@torch.no_grad()
def encode_batch(source: LoadedSource, tokens: torch.Tensor) -> torch.Tensor:
    """SAE activations [rows, ctx, d_sae]; the model stops right after the hook's layer."""
    _, cache = source.model.run_with_cache(
        tokens.to(source.device), names_filter=source.hook_name, stop_at_layer=source.hook_layer + 1
    )
    return source.sae.encode(cache[source.hook_name].to(source.dtype))


def build_index(spec: SourceSpec, cfg: IndexConfig, out: str | Path) -> Path:
    out = Path(out)
    if cfg.tokens <= 0:
        raise UserError("--tokens must be a positive number of tokens.")
    start = time.time()
    source = load_source(spec, cfg.device, cfg.dtype)
    ctx = cfg.context_size or source.context_size
    if ctx > source.model.cfg.n_ctx:
        raise UserError(f"Context size {ctx} exceeds the model's maximum of {source.model.cfg.n_ctx} tokens.")
    state = IndexState.create(source.d_sae, cfg)
    special = torch.tensor(source.special_token_ids(), dtype=torch.long)
    texts = dataset_texts(cfg.dataset)
    bar = tqdm(total=cfg.tokens, unit="tok", unit_scale=True, desc="index", disable=not cfg.progress)
    with source.lock:
        for tokens in token_rows(texts, source.tokenizer, ctx, source.prepend_bos, cfg.batch_size, cfg.tokens):
            acts = encode_batch(source, tokens).float().cpu()
            keep = ~torch.isin(tokens, special)
            state.update(tokens, acts, keep)
            bar.update(tokens.numel())
    bar.close()
    if state.rows == 0:
        raise UserError("The dataset produced no complete row of tokens; give it more text.")
    return write_index(source, cfg, state, out, ctx, time.time() - start)


def write_index(
    source: LoadedSource, cfg: IndexConfig, state: IndexState, out: Path, ctx: int, stream_seconds: float
) -> Path:
    t0 = time.time()
    w_dec = source.sae.W_dec.detach().float().cpu()
    cosine = decoder_cosine_neighbours(w_dec, cfg.n_neighbours)
    coact = Neighbours(*state.coact.top_neighbours(cfg.n_neighbours))
    logits = logit_effects(source.model, w_dec, cfg.n_logits)
    fmap = umap_map(w_dec, cfg.seed) if cfg.umap else flat_map(len(w_dec))
    vocab = token_bytes_table(source.tokenizer)
    dead = (state.stats.count == 0).numpy()
    labels, top_tokens = tables.auto_labels(state.top.examples, cfg.window_before, vocab, dead)
    peaks = state.top.examples.tokens[..., cfg.window_before].where(state.top.examples.value.isfinite(), -1)
    steer = steerability_for_index(source, state.stats.max, peaks, dataset_texts(cfg.dataset)) \
        if cfg.steerability else None
    meta = {
        "source": str(source.spec),
        **source.describe(),
        "sae_weights_sha256": sae_weights_digest(source.spec),
        "dataset": cfg.dataset or DEMO_HELDOUT,
        "tokens_requested": cfg.tokens,
        "tokens_processed": state.rows * ctx,
        "tokens_counted": state.stats.tokens,
        "rows": state.rows,
        "context_size": ctx,
        "coactivation_tokens": state.coact.tokens,
        "logits_through_final_ln": logits.through_final_ln,
        "build_seconds_stream": stream_seconds,
        "build_seconds_finalize": time.time() - t0,
        "versions": _versions(),
        "config": asdict(cfg),
        "excluded_token_ids": source.special_token_ids(),
        "built_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    with schema.atomic_index_file(out) as con:
        schema.write_table(
            con,
            "features",
            tables.feature_table(state.stats, logits, cosine, coact, fmap, labels, top_tokens),
            "feature_id",
        )
        schema.write_table(
            con,
            "examples",
            tables.example_table(state.top.examples, state.intervals.examples, cfg.window_before),
            "feature_id, kind DESC, interval_idx, rank",
        )
        schema.write_table(con, "vocab", tables.vocab_table(vocab), "token_id")
        if steer is not None:
            schema.write_table(con, "steerability", steer.to_arrow(), "feature_id")
        meta["build_seconds_total"] = stream_seconds + time.time() - t0
        schema.write_meta(con, meta)
    return out


def _versions() -> dict[str, str]:
    from importlib.metadata import version

    return {p: version(p) for p in ("torch", "transformer-lens", "sae-lens", "duckdb")}
