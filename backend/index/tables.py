"""Turn the finished accumulators and weight-derived facts into the index's Arrow tables."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pyarrow as pa
import torch

from backend.index.accumulators import ExampleSet, FeatureStats, bin_of
from backend.index.geometry import FeatureMap, LogitEffects, Neighbours
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


def auto_labels(examples: ExampleSet, before: int, vocab: list[bytes], dead: np.ndarray) -> tuple[list[str], list[str]]:
    """A short label from the tokens a feature peaks on most (weighted by activation)."""
    centers = examples.tokens[..., before].numpy()
    values = examples.value.numpy()
    labels, tops = [], []
    for f in range(len(centers)):
        if dead[f]:
            labels.append("dead")
            tops.append("")
            continue
        weights: Counter[str] = Counter()
        for tok, v in zip(centers[f], values[f], strict=True):
            if tok >= 0 and np.isfinite(v):
                weights[single_token_text(int(tok), vocab)] += float(v)
        ranked = [t for t, _ in weights.most_common(3)]
        shown = [visible_whitespace(t) if t.strip() == "" else t.strip() for t in ranked]
        labels.append(" | ".join(shown) if shown else "")
        tops.append(ranked[0] if ranked else "")
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


def example_table(top: ExampleSet, intervals: ExampleSet, before: int) -> pa.Table:
    """Top examples (kind 'top') and interval samples (kind 'interval') in one long table."""
    parts = []
    d_sae, k = top.value.shape
    parts.append(
        _examples_part(
            top,
            torch.arange(d_sae).unsqueeze(1).expand(d_sae, k),
            torch.full((d_sae, k), -1),
            torch.arange(k).expand(d_sae, k),
            "top",
            before,
        )
    )
    _, n_groups, per = intervals.value.shape
    feat = torch.arange(d_sae).view(-1, 1, 1).expand(d_sae, n_groups, per)
    group = torch.arange(n_groups).view(1, -1, 1).expand(d_sae, n_groups, per)
    # order samples inside an interval by value, highest first
    order = intervals.value.sort(dim=2, descending=True).indices
    ordered = intervals.take(order, dim=2)
    rank = torch.arange(per).view(1, 1, -1).expand(d_sae, n_groups, per)
    parts.append(_examples_part(ordered, feat, group, rank, "interval", before))
    return pa.concat_tables(parts)


def _examples_part(ex: ExampleSet, feat, group, rank, kind: str, before: int) -> pa.Table:
    valid = torch.isfinite(ex.value).reshape(-1).numpy()
    width = ex.tokens.shape[-1]
    tokens = ex.tokens.reshape(-1, width).numpy()[valid]
    acts = ex.acts.reshape(-1, width).numpy()[valid].astype(np.float32)
    inside = tokens >= 0
    first_inside = inside.argmax(axis=1)
    n = int(valid.sum())
    return pa.table(
        {
            "feature_id": pa.array(feat.reshape(-1).numpy()[valid].astype(np.int32)),
            "kind": pa.array([kind] * n),
            "interval_idx": pa.array(
                np.where(group.reshape(-1).numpy()[valid] < 0, None, group.reshape(-1).numpy()[valid]), type=pa.int32()
            ),
            "rank": pa.array(rank.reshape(-1).numpy()[valid].astype(np.int32)),
            "value": pa.array(ex.value.reshape(-1).numpy()[valid].astype(np.float32)),
            "row_id": pa.array(ex.row.reshape(-1).numpy()[valid].astype(np.int64)),
            "pos": pa.array(ex.pos.reshape(-1).numpy()[valid].astype(np.int32)),
            "center": pa.array((before - first_inside).astype(np.int32)),
            "token_ids": _list_column(tokens.astype(np.int32), inside),
            "acts": _list_column(acts, inside),
        }
    )


def vocab_table(vocab: list[bytes]) -> pa.Table:
    return pa.table({"token_id": pa.array(np.arange(len(vocab), dtype=np.int32)), "token_bytes": pa.array(vocab)})
