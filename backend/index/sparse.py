"""SAE activations in sparse form, made on the device that computed them.

`encode_sparse` runs the model to the SAE's hook and the SAE's encoder on token chunks small
enough that a chunk's dense [tokens, d_sae] block stays bounded, takes the non-zeros of each
chunk where it lives (GPU or CPU), and hands on only (token, feature, value) triples. All index
bookkeeping then works on that list with whole-batch tensor ops, so its cost follows the number
of active (token, feature) pairs, never d_sae × tokens.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    from backend.sources import LoadedSource

# Dense elements per encoder chunk: 64 MB of float32 on a CPU, 2 GB on an accelerator (SAELens's
# encode holds about three such blocks at once). At least 64 tokens, though: every chunk reads the
# whole encoder (1 GB at 1M features), so tiny chunks would spend their time re-reading it.
CPU_CHUNK_ELEMENTS = 2**24
DEVICE_CHUNK_ELEMENTS = 2**29
MIN_CHUNK_TOKENS = 64

# SAELens builds its sparse TopK output with torch.sparse_coo_tensor, whose first call warns that
# invariant checks are off; the indices come straight from topk, so they are valid by construction.
warnings.filterwarnings("ignore", message="Sparse invariant checks are implicitly disabled")


@dataclass
class SparseBatch:
    """Every active (token, feature) pair of one batch of rows, sorted by (row, pos, feature)."""

    rows: torch.Tensor  # [N] row within the batch
    pos: torch.Tensor  # [N] position within the row
    feat: torch.Tensor  # [N] feature id
    val: torch.Tensor  # [N] activation (> 0), float32
    n_rows: int
    n_ctx: int
    d_sae: int
    row_offset: int  # global id of the batch's first row

    @classmethod
    def from_flat(cls, token: torch.Tensor, feat: torch.Tensor, val: torch.Tensor, n_rows: int, n_ctx: int,
                  d_sae: int, row_offset: int) -> SparseBatch:
        return cls(token // n_ctx, token % n_ctx, feat, val, n_rows, n_ctx, d_sae, row_offset)

    @classmethod
    def from_dense(cls, acts: torch.Tensor, row_offset: int) -> SparseBatch:
        """acts [R, T, F] (SAE activations are >= 0, so non-zero means active)."""
        r, t, f = acts.shape
        flat = acts.reshape(-1)
        idx = flat.nonzero().squeeze(1)  # sorted, i.e. by (row, pos, feature)
        return cls.from_flat(idx // f, idx % f, flat[idx].float(), r, t, f, row_offset)

    @property
    def token(self) -> torch.Tensor:
        """Token index within the batch (row * n_ctx + pos)."""
        return self.rows * self.n_ctx + self.pos

    @property
    def global_token(self) -> torch.Tensor:
        """Token index in the whole stream ((row_offset + row) * n_ctx + pos)."""
        return (self.rows + self.row_offset) * self.n_ctx + self.pos

    def lookup(self, token: torch.Tensor, feat: torch.Tensor) -> torch.Tensor:
        """Activation of each (batch token, feature) pair asked for; 0 where it is not active.

        The list is sorted by token * d_sae + feature, so this is one binary search per query."""
        keys = self.token * self.d_sae + self.feat
        want = token * self.d_sae + feat
        at = torch.searchsorted(keys, want).clamp(max=max(len(keys) - 1, 0))
        if len(keys) == 0:
            return torch.zeros(want.shape)
        return torch.where(keys[at] == want, self.val[at], torch.zeros((), dtype=self.val.dtype))


def chunk_tokens(d_sae: int, device: str) -> int:
    budget = CPU_CHUNK_ELEMENTS if str(device) == "cpu" else DEVICE_CHUNK_ELEMENTS
    return max(MIN_CHUNK_TOKENS, budget // d_sae)


@torch.no_grad()
def hook_activations(source: LoadedSource, tokens: torch.Tensor) -> torch.Tensor:
    """The residual (or other hook) activations the SAE reads, [rows, ctx, d_in], on the source's device;
    the model stops right after the hook's layer."""
    _, cache = source.model.run_with_cache(
        tokens.to(source.device), names_filter=source.hook_name, stop_at_layer=source.hook_layer + 1
    )
    return cache[source.hook_name].to(source.dtype)


@torch.no_grad()
def encode_sparse(source: LoadedSource, tokens: torch.Tensor, keep: torch.Tensor, row_offset: int) -> SparseBatch:
    """Sparse SAE activations of a [rows, ctx] batch; tokens where `keep` is False (special tokens)
    count nowhere. Only the non-zeros leave the device."""
    n_rows, n_ctx = tokens.shape
    x = hook_activations(source, tokens).reshape(n_rows * n_ctx, -1)
    keep_dev = keep.reshape(-1).to(x.device)
    step = chunk_tokens(source.d_sae, source.device)
    tok_parts, feat_parts, val_parts = [], [], []
    with source.lock:  # _encode_chunk may switch the SAE's activation to its sparse mode for a moment
        for start in range(0, len(x), step):
            tok, feat, val = _encode_chunk(source.sae, x[start : start + step])
            kept = keep_dev[start + tok]  # special tokens count nowhere: dropped from the short list
            tok_parts.append((tok[kept] + start).cpu())
            feat_parts.append(feat[kept].cpu())
            val_parts.append(val[kept].float().cpu())
    return SparseBatch.from_flat(torch.cat(tok_parts), torch.cat(feat_parts), torch.cat(val_parts),
                                 n_rows, n_ctx, source.d_sae, row_offset)


def _encode_chunk(sae, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(token, feature, value) of the non-zero activations of x [tokens, d_in], sorted by (token, feature).

    A TopK SAE is asked for SAELens's own sparse output (its k values per token, the same numbers as
    the dense path), which skips writing and scanning a dense [tokens, d_sae] block; every other
    architecture (ReLU, JumpReLU, gated, BatchTopK at inference, ...) is encoded densely and scanned."""
    from sae_lens.saes.topk_sae import TopK

    act_fn = getattr(sae, "activation_fn", None)
    if isinstance(act_fn, TopK) and not act_fn.use_sparse_activations:
        act_fn.use_sparse_activations = True
        try:
            out = sae.encode(x)
        finally:
            act_fn.use_sparse_activations = False
        tok, feat = out._indices()
        val = out._values()
        nonzero = val > 0
        tok, feat, val = tok[nonzero], feat[nonzero], val[nonzero]
        order = torch.argsort(tok * out.shape[1] + feat)
        return tok[order], feat[order], val[order]
    acts = sae.encode(x)
    tok, feat = acts.nonzero(as_tuple=True)  # row-major: sorted by (token, feature)
    return tok, feat, acts[tok, feat]


def rank_within_groups(group: torch.Tensor) -> torch.Tensor:
    """For a tensor already sorted by group, each element's rank inside its group (0, 1, ...)."""
    n = group.numel()
    if n == 0:
        return group.new_zeros(0)
    idx = torch.arange(n, device=group.device)
    starts = torch.ones(n, dtype=torch.bool, device=group.device)
    starts[1:] = group[1:] != group[:-1]
    start_idx = torch.cummax(torch.where(starts, idx, torch.zeros_like(idx)), dim=0).values
    return idx - start_idx


def sort_by_group_then(group: torch.Tensor, key: torch.Tensor, descending: bool) -> torch.Tensor:
    """Permutation sorting by group, and inside a group by key (a stable two-pass sort)."""
    order = torch.sort(key, descending=descending, stable=True).indices
    return order[torch.sort(group[order], stable=True).indices]
