"""Held-out tokens: rows of text the index never saw, encoded with the SAE, kept as sparse firings.

Explanations are scored here, never on the index's own examples. By default the rows come from the index's
dataset after the rows the builder used (meta `rows`); the demo's held-out split is mostly used up by its
index, so for it the LM's training split follows (documents sampled across the split, not its first files).
The rows are split in two halves: the offline explainer chooses its rules on the first (`mining`) and is
scored on the second (`scoring`), which nothing else touched."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch
from tqdm.auto import tqdm

from backend.errors import UserError
from backend.index.build import encode_batch
from backend.index.datasets import DEMO_HELDOUT, DEMO_TRAIN, dataset_texts, token_rows
from backend.index.meta import IndexMeta
from backend.sources import LoadedSource, sae_weights_digest

FALLBACK_DOCUMENT_STRIDE = 10  # the demo's training split: every 10th file, so rows span the whole stdlib


@dataclass(frozen=True)
class HeldOutPart:
    """Where held-out rows come from: `dataset`, after skipping `skip_rows` rows, every `stride`-th document."""

    dataset: str
    skip_rows: int = 0
    stride: int = 1

    def describe(self) -> str:
        skip = f" after row {self.skip_rows}" if self.skip_rows else ""
        every = f", every {self.stride}th document" if self.stride > 1 else ""
        return f"{self.dataset}{skip}{every}"


def heldout_plan(meta: IndexMeta, dataset: str | None) -> list[HeldOutPart]:
    """The parts to read, in order, until enough tokens are gathered."""
    indexed = meta.dataset
    if dataset:
        return [HeldOutPart(dataset, meta.rows if dataset == indexed else 0)]
    plan = [HeldOutPart(indexed, meta.rows)]
    if indexed == DEMO_HELDOUT:
        plan.append(HeldOutPart(DEMO_TRAIN, 0, FALLBACK_DOCUMENT_STRIDE))
    return plan


@dataclass(frozen=True)
class HeldOut:
    """Token rows [rows, ctx] and the SAE's nonzero activations on them, sorted by (feature, position).

    A position is `row * ctx + column`. Special tokens (BOS, ...) are excluded everywhere (`keep` False and
    no firing), as in the index."""

    tokens: np.ndarray  # [rows, ctx] int64
    keep: np.ndarray  # [rows, ctx] bool
    fire_feature: np.ndarray  # [nnz] int32, sorted
    fire_pos: np.ndarray  # [nnz] int64, sorted within a feature
    fire_act: np.ndarray  # [nnz] float32
    d_sae: int
    description: str

    @property
    def rows(self) -> int:
        return int(self.tokens.shape[0])

    @property
    def ctx(self) -> int:
        return int(self.tokens.shape[1])

    @property
    def n_kept(self) -> int:
        return int(self.keep.sum())

    def fire_counts(self) -> np.ndarray:
        return np.bincount(self.fire_feature, minlength=self.d_sae)

    def feature_slice(self, feature_id: int) -> slice:
        lo, hi = np.searchsorted(self.fire_feature, [feature_id, feature_id + 1])
        return slice(int(lo), int(hi))

    def halves(self) -> tuple[HeldOut, HeldOut]:
        """(mining, scoring): the first and the second half of the rows."""
        cut = self.rows // 2
        return self._rows(0, cut, "mining"), self._rows(cut, self.rows, "scoring")

    def _rows(self, lo: int, hi: int, name: str) -> HeldOut:
        sel = (self.fire_pos >= lo * self.ctx) & (self.fire_pos < hi * self.ctx)
        return HeldOut(
            self.tokens[lo:hi],
            self.keep[lo:hi],
            self.fire_feature[sel],
            self.fire_pos[sel] - lo * self.ctx,
            self.fire_act[sel],
            self.d_sae,
            f"{self.description} [{name}: rows {lo}-{hi - 1}]",
        )


def check_same_sae(source: LoadedSource, meta: IndexMeta) -> None:
    """Scores are only meaningful for the SAE the index was built from."""
    recorded = meta.sae_weights_sha256
    if recorded and sae_weights_digest(source.spec) not in (None, recorded):
        raise UserError("The SAE's weights changed since this index was built; rebuild the index first.")
    if source.d_sae != meta.d_sae:
        raise UserError(f"The source's SAE has {source.d_sae} features but the index has {meta.d_sae}.")


def _rows_from(part: HeldOutPart, source: LoadedSource, ctx: int, batch_rows: int) -> Iterator[torch.Tensor]:
    texts = dataset_texts(part.dataset)
    if part.stride > 1:
        texts = itertools.islice(texts, 0, None, part.stride)
    skipped = 0
    # token_rows stops at max_tokens; the bound only has to exceed what we will ever read
    for batch in token_rows(texts, source.tokenizer, ctx, source.prepend_bos, batch_rows, 1 << 62):
        if skipped + len(batch) <= part.skip_rows:
            skipped += len(batch)
            continue
        start = max(part.skip_rows - skipped, 0)
        skipped += len(batch)
        yield batch[start:]


def encode_heldout(
    source: LoadedSource,
    meta: IndexMeta,
    tokens: int,
    dataset: str | None = None,
    batch_rows: int = 32,
    min_tokens: int = 0,
    progress: bool = True,
) -> HeldOut:
    """Read about `tokens` held-out tokens (whole rows) and encode them; fewer than `min_tokens` is an error."""
    check_same_sae(source, meta)
    ctx = meta.context_size
    want_rows = max(1, -(-tokens // ctx))
    special = torch.tensor(source.special_token_ids(), dtype=torch.long)
    token_parts, keep_parts, feats, poss, acts = [], [], [], [], []
    used: list[str] = []
    have = 0
    bar = tqdm(total=want_rows * ctx, unit="tok", unit_scale=True, desc="held-out", disable=not progress)
    with source.lock:
        for part in heldout_plan(meta, dataset):
            before = have
            for batch in _rows_from(part, source, ctx, batch_rows):
                batch = batch[: want_rows - have]
                act = encode_batch(source, batch).float().cpu()
                keep = ~torch.isin(batch, special)
                act[~keep] = 0.0
                row, col, feat = act.nonzero(as_tuple=True)
                feats.append(feat.numpy().astype(np.int32))
                poss.append(((row + have) * ctx + col).numpy().astype(np.int64))
                acts.append(act[row, col, feat].numpy().astype(np.float32))
                token_parts.append(batch.numpy())
                keep_parts.append(keep.numpy())
                have += len(batch)
                bar.update(len(batch) * ctx)
                if have >= want_rows:
                    break
            if have > before:
                used.append(part.describe())
            if have >= want_rows:
                break
    bar.close()
    if have * ctx < max(min_tokens, 1):
        raise UserError(
            f"Only {have * ctx:,} held-out tokens are left after the index's rows (at least {max(min_tokens, 1):,} "
            "needed); pass another dataset with --heldout-dataset."
        )
    feature = np.concatenate(feats)
    pos = np.concatenate(poss)
    order = np.lexsort((pos, feature))
    return HeldOut(
        np.concatenate(token_parts).astype(np.int64),
        np.concatenate(keep_parts),
        feature[order],
        pos[order],
        np.concatenate(acts)[order],
        source.d_sae,
        " + ".join(used),
    )
