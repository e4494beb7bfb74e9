"""Turn the finished accumulators and weight-derived facts into the index's Arrow tables."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import torch

from backend.index.accumulators import ExampleSet, FeatureStats, bin_of
from backend.index.feature_map import FeatureMap
from backend.index.geometry import LogitEffects
from backend.index.neighbours import Neighbours
from backend.index.sparse import rank_within_groups
from backend.index.windows import WindowActivations
from backend.tokens import single_token_text, visible_whitespace


def _list_column(matrix: np.ndarray, valid: np.ndarray | None = None) -> pa.Array:
    """[n, m] array -> list column; `valid` [n, m] drops padding entries per row."""
    if valid is None:
        return pa.FixedSizeListArray.from_arrays(pa.array(matrix.reshape(-1)), matrix.shape[1]).cast(
            pa.list_(pa.from_numpy_dtype(matrix.dtype))
        )
    lengths = valid.sum(axis=1)
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int32)
    return pa.ListArray.from_arrays(pa.array(offsets), pa.array(matrix[valid]))


def auto_labels(top: ExampleSet, rows: np.ndarray, vocab: list[bytes], dead: np.ndarray) -> tuple[list[str], list[str]]:
    """A short label from the tokens a feature peaks on most (summed activation of its top examples,
    tokens of the same text counted together): the three heaviest, and the heaviest alone."""
    d_sae = len(dead)
    texts = [single_token_text(i, vocab) for i in range(len(vocab))]
    unique_texts, text_of_token = np.unique(np.array(texts, dtype=object).astype(str), return_inverse=True)
    feature, slot = torch.isfinite(top.value).nonzero(as_tuple=True)
    value, token = top.value[feature, slot].numpy(), top.token[feature, slot].numpy()
    text = text_of_token[rows.reshape(-1)[token]]
    key = feature.numpy() * len(unique_texts) + text
    keys, inverse = np.unique(key, return_inverse=True)
    weight = np.bincount(inverse, weights=value.astype(np.float64))
    feat_of_key, text_of_key = keys // len(unique_texts), keys % len(unique_texts)
    order = np.lexsort((-weight, feat_of_key))  # by feature, heaviest first
    feat_sorted = feat_of_key[order]
    rank = rank_within_groups(torch.from_numpy(feat_sorted)).numpy()
    shown_text = [visible_whitespace(t) if t.strip() == "" else t.strip() for t in unique_texts]
    labels, tops = [""] * d_sae, [""] * d_sae
    picks = order[rank < 3]
    starts = np.searchsorted(feat_of_key[picks], np.arange(d_sae + 1))
    for f in np.flatnonzero(starts[1:] > starts[:-1]):  # features with examples (a loop over features, not tokens)
        mine = text_of_key[picks[starts[f]: starts[f + 1]]]
        labels[f] = " | ".join(shown_text[t] for t in mine)
        tops[f] = unique_texts[mine[0]]
    for f in np.flatnonzero(dead):
        labels[f] = "dead"
    return labels, tops


def feature_table(
    stats: FeatureStats,
    logits: LogitEffects,
    cosine: Neighbours,
    coact: Neighbours,
    fmap: FeatureMap,
    labels: list[str],
    top_tokens: list[str],
) -> pa.Table:
    d_sae = len(stats.count)
    count = stats.count.numpy()
    dead = count == 0
    density = count / max(stats.tokens, 1)
    mean = np.where(dead, 0.0, stats.total.numpy() / np.maximum(count, 1))
    n_bins = stats.n_bins
    last_bin = np.where(dead, -1, bin_of(stats.max.clamp_min(1e-30), stats.bound.clamp_min(1e-30), n_bins).numpy())
    hist_valid = np.arange(n_bins)[None, :] <= last_bin[:, None]
    cos_ids, coact_ids = cosine.ids.numpy(), coact.ids.numpy()
    return pa.table(
        {
            "feature_id": pa.array(np.arange(d_sae, dtype=np.int32)),
            "label": pa.array(labels),
            "top_token": pa.array(top_tokens),
            "dead": pa.array(dead),
            "fire_count": pa.array(count.astype(np.int64)),
            "density": pa.array(density.astype(np.float64)),
            "max_act": pa.array(stats.max.numpy().astype(np.float32)),
            "mean_act": pa.array(mean.astype(np.float32)),
            "hist_bound": pa.array(stats.bound.numpy().astype(np.float32)),
            "hist_counts": _list_column(stats.hist.numpy().astype(np.int64), hist_valid),
            "logit_pos_ids": _list_column(logits.top_ids.numpy().astype(np.int32)),
            "logit_pos_values": _list_column(logits.top_values.numpy().astype(np.float32)),
            "logit_neg_ids": _list_column(logits.bottom_ids.numpy().astype(np.int32)),
            "logit_neg_values": _list_column(logits.bottom_values.numpy().astype(np.float32)),
            "logit_hist_counts": _list_column(logits.hist_counts.numpy().astype(np.int64)),
            "logit_hist_lo": pa.array(logits.hist_lo.numpy().astype(np.float32)),
            "logit_hist_hi": pa.array(logits.hist_hi.numpy().astype(np.float32)),
            "cos_ids": _list_column(cos_ids.astype(np.int32), cos_ids >= 0),
            "cos_values": _list_column(cosine.scores.numpy().astype(np.float32), cos_ids >= 0),
            "coact_ids": _list_column(coact_ids.astype(np.int32), coact_ids >= 0),
            "coact_values": _list_column(coact.scores.numpy().astype(np.float32), coact_ids >= 0),
            "umap_x": pa.array(fmap.x.astype(np.float32)),
            "umap_y": pa.array(fmap.y.astype(np.float32)),
            "cluster": pa.array(fmap.cluster.astype(np.int32)),
        }
    )


@dataclass(frozen=True)
class ExampleSlots:
    """The filled example slots of a build, flat, in the examples table's order."""

    feature_id: np.ndarray  # int64
    interval_idx: np.ndarray  # int32, -1 for top examples
    rank: np.ndarray  # int32, within (feature, kind, interval)
    value: np.ndarray  # float32
    token: np.ndarray  # int64 global token index

    def __len__(self) -> int:
        return len(self.value)


def example_slots(top: ExampleSet, intervals: ExampleSet) -> ExampleSlots:
    """Top examples (already best first) then interval samples, ordered by value inside an interval.
    Works from the filled slots only: at 1M features most slots of a short build are empty."""
    top_f, top_r = torch.isfinite(top.value).nonzero(as_tuple=True)
    order = intervals.value.sort(dim=2, descending=True, stable=True).indices
    ordered = intervals.take(order, dim=2)
    iv_f, iv_g, iv_r = torch.isfinite(ordered.value).nonzero(as_tuple=True)
    feature = torch.cat([top_f, iv_f])
    by_feature = torch.sort(feature, stable=True).indices  # per feature: top examples, then intervals 0, 1, ...
    interval = torch.cat([torch.full_like(top_f, -1), iv_g])
    rank = torch.cat([top_r, iv_r])
    value = torch.cat([top.value[top_f, top_r], ordered.value[iv_f, iv_g, iv_r]])
    token = torch.cat([top.token[top_f, top_r], ordered.token[iv_f, iv_g, iv_r]])
    pick = lambda t, dtype: t[by_feature].numpy().astype(dtype)  # noqa: E731
    return ExampleSlots(pick(feature, np.int64), pick(interval, np.int32), pick(rank, np.int32),
                        pick(value, np.float32), pick(token, np.int64))


EXAMPLE_BATCH_ROWS = 65_536  # rows of one Arrow batch of the examples table (~10 MB at 33-token windows)
_KINDS = pa.array(["top", "interval"])


def example_batches(slots: ExampleSlots, acts: WindowActivations, token_rows: np.ndarray, before: int, after: int,
                    batch_rows: int = EXAMPLE_BATCH_ROWS) -> pa.RecordBatchReader:
    """The examples table (kind 'top' and 'interval' in one), as batches already in its key order
    (`slots`' order), so DuckDB writes it without sorting and no whole-table Arrow copy exists.
    Each window keeps its tokens (clipped to the row) and only its non-zero activations, as positions
    in that token list (act_index) and values (act_values)."""
    n_ctx = token_rows.shape[1]
    batches = (_example_batch(slots, acts, token_rows, before, after, n_ctx, lo, min(lo + batch_rows, len(slots)))
               for lo in range(0, len(slots), batch_rows))
    return pa.RecordBatchReader.from_batches(EXAMPLE_SCHEMA, batches)


EXAMPLE_SCHEMA = pa.schema([
    ("feature_id", pa.int32()), ("kind", pa.string()), ("interval_idx", pa.int32()), ("rank", pa.int32()),
    ("value", pa.float32()), ("row_id", pa.int64()), ("pos", pa.int32()), ("center", pa.int32()),
    ("token_ids", pa.list_(pa.int32())), ("act_index", pa.list_(pa.int16())), ("act_values", pa.list_(pa.float32())),
])


def _example_batch(slots: ExampleSlots, acts: WindowActivations, token_rows: np.ndarray, before: int, after: int,
                   n_ctx: int, lo: int, hi: int) -> pa.RecordBatch:
    token = slots.token[lo:hi]
    row, pos = token // n_ctx, token % n_ctx
    first, stop = np.maximum(pos - before, 0), np.minimum(pos + after + 1, n_ctx)
    lengths = stop - first
    token_offsets = np.concatenate([[0], np.cumsum(lengths)])
    # flat row position of every stored window token: each window's first, then +1 along the window
    step = np.arange(token_offsets[-1]) - np.repeat(token_offsets[:-1], lengths)
    flat_tokens = np.asarray(token_rows.reshape(-1)[np.repeat(row * n_ctx + first, lengths) + step], dtype=np.int32)
    act_lo, act_hi = acts.starts[lo], acts.starts[hi]
    act_offsets = (acts.starts[lo : hi + 1] - act_lo).astype(np.int32)
    is_top = slots.interval_idx[lo:hi] < 0
    kind = pa.DictionaryArray.from_arrays(pa.array(np.where(is_top, 0, 1).astype(np.int8)), _KINDS).cast(pa.string())
    columns = [
        pa.array(slots.feature_id[lo:hi].astype(np.int32)),
        kind,
        pa.array(slots.interval_idx[lo:hi], mask=is_top, type=pa.int32()),
        pa.array(slots.rank[lo:hi]),
        pa.array(slots.value[lo:hi]),
        pa.array(row),
        pa.array(pos.astype(np.int32)),
        pa.array((pos - first).astype(np.int32)),
        pa.ListArray.from_arrays(pa.array(token_offsets.astype(np.int32)), pa.array(flat_tokens)),
        pa.ListArray.from_arrays(pa.array(act_offsets), pa.array(acts.index[act_lo:act_hi])),
        pa.ListArray.from_arrays(pa.array(act_offsets), pa.array(acts.values[act_lo:act_hi])),
    ]
    return pa.RecordBatch.from_arrays(columns, schema=EXAMPLE_SCHEMA)


def vocab_table(vocab: list[bytes]) -> pa.Table:
    return pa.table({"token_id": pa.array(np.arange(len(vocab), dtype=np.int32)), "token_bytes": pa.array(vocab)})
